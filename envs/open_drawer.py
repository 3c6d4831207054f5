"""OpenDrawer: pull open the drawer of the named colour in a two-drawer cabinet."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from envs.tabletop import COLORS, TabletopEnv

DRAWERS = ("drawer0", "drawer1")
OPENED = 0.09
"""Slide (m, of 0.12) at which a drawer counts as open."""
SLOT_Y = -0.107
"""The gap between drawer front and handle bar, in the drawer's frame (y)."""
HOOK_Z = 0.032
"""Fingertip height for hooking the handle bar (bar centre at 0.05)."""
ABOVE_Z = 0.13
"""Fingertip height that clears the cabinet top."""


class OpenDrawerEnv(TabletopEnv):
    """Hook the named drawer's handle with the closed fingers and pull it out."""

    model_path = Path(__file__).with_name("open_drawer.xml")
    instruction_templates = (
        "open the {color} drawer",
        "pull open the {color} drawer",
        "pull out the {color} drawer",
        "slide the {color} drawer open",
    )

    def _reset_task(self, rng: np.random.Generator) -> dict[str, str]:
        colors = [str(c) for c in rng.permutation(list(COLORS))[: len(DRAWERS)]]
        self.place_fixture(
            "cabinet", np.array([rng.uniform(-0.06, 0.06), rng.uniform(0.1, 0.14), 0])
        )
        self.drawer_color = {}
        for name, color in zip(DRAWERS, colors, strict=True):
            self.set_color(name, color)
            self.drawer_color[color] = name
        self._slide_qpos = {c: self.model.joint(n).qposadr[0] for c, n in self.drawer_color.items()}
        return {"color": colors[rng.integers(len(DRAWERS))]}

    def _possible_goals(self) -> list[dict[str, str]]:
        return [{"color": c} for c in self.drawer_color]

    def _opening(self, color: str) -> float:
        return float(self.data.qpos[self._slide_qpos[color]])

    def _goal_satisfied(self, goal: dict[str, str]) -> bool:
        return self._opening(goal["color"]) > OPENED

    def _slot(self) -> np.ndarray:
        drawer = self.body_pos(self.drawer_color[self.goal["color"]])
        return np.array([drawer[0], drawer[1] + SLOT_Y, HOOK_Z])

    def _reward_terms(self) -> dict[str, float]:
        return {
            "reach_dist": -float(np.linalg.norm(self.tip_pos() - self._slot())),  # to the handle
            "opening": 5.0 * self._opening(self.goal["color"]),  # slide (m x 5)
            "success": float(self._goal_satisfied(self.goal)),
        }

    def expert_action(self) -> np.ndarray:
        slot = self._slot()
        tip = self.tip_pos()
        err = np.abs(tip[:2] - slot[:2])
        slack = self.expert_slack
        if tip[2] < ABOVE_Z - 0.03:  # down at handle height
            if err[0] < 0.01 * slack and err[1] < 0.02 * slack:
                if tip[2] > HOOK_Z + 0.01:
                    return self.move_to(slot, 1.0)  # straight down into the slot
                return self.move_to(slot - [0, 0.15, 0], 1.0)  # pull
            if tip[1] > slot[1] - 0.03 and abs(tip[0] - slot[0]) < 0.12:
                return self.move_to([*tip[:2], ABOVE_Z], 1.0)  # clear the handle first
        if max(err) > 0.006 * slack:
            return self.move_to([*slot[:2], ABOVE_Z], 1.0)
        return self.move_to(slot, 1.0)

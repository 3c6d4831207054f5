"""PressButton: press the button of the named colour among three spring-loaded buttons."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from envs.tabletop import COLORS, TabletopEnv

BUTTONS = ("button0", "button1", "button2")
PRESSED = -0.008
"""Cap travel (m, of 0.012) at which a button counts as pressed."""
CAP_TOP = 0.032
"""Height of a released cap's top face."""


class PressButtonEnv(TabletopEnv):
    """Push the named button's cap down; the other two buttons are distractors."""

    model_path = Path(__file__).with_name("press_button.xml")
    instruction_templates = (
        "press the {color} button",
        "push the {color} button",
        "push down the {color} button",
        "hit the {color} button",
    )

    def _reset_task(self, rng: np.random.Generator) -> dict[str, str]:
        colors = [str(c) for c in rng.permutation(list(COLORS))[: len(BUTTONS)]]
        xy = self.sample_xy(rng, len(BUTTONS), (-0.16, -0.09), (0.16, 0.12), min_dist=0.12)
        self.button_color = {}
        for name, color, (x, y) in zip(BUTTONS, colors, xy, strict=True):
            self.place_fixture(name, np.array([x, y, 0.0]))
            self.set_color(name, color)
            self.button_color[color] = name
        self._cap_qpos = {c: self.model.joint(n).qposadr[0] for c, n in self.button_color.items()}
        return {"color": colors[rng.integers(len(BUTTONS))]}

    def _possible_goals(self) -> list[dict[str, str]]:
        return [{"color": c} for c in self.button_color]

    def _travel(self, color: str) -> float:
        return float(self.data.qpos[self._cap_qpos[color]])

    def _goal_satisfied(self, goal: dict[str, str]) -> bool:
        return self._travel(goal["color"]) < PRESSED

    def _reward_terms(self) -> dict[str, float]:
        cap = self.body_pos(self.button_color[self.goal["color"]]) + [0, 0, CAP_TOP]
        return {
            "reach_dist": -float(np.linalg.norm(self.tip_pos() - cap)),  # get to the cap
            "press_depth": 10.0 * -self._travel(self.goal["color"]),  # cap travel (m x 10)
            "success": float(self._goal_satisfied(self.goal)),
        }

    def expert_action(self) -> np.ndarray:
        cap = self.body_pos(self.button_color[self.goal["color"]]) + [0, 0, CAP_TOP]
        tip = self.tip_pos()
        if np.linalg.norm(tip[:2] - cap[:2]) > 0.01 * self.expert_slack:
            height = cap[2] + (0.03 if np.linalg.norm(tip[:2] - cap[:2]) > 0.04 else 0.01)
            return self.move_to([*cap[:2], height], 1.0)
        return self.move_to(cap - [0, 0, 0.016], 1.0)

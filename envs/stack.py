"""StackCube: put the cube of one named colour on top of the cube of another named colour."""

from __future__ import annotations

from itertools import permutations
from pathlib import Path

import numpy as np

from envs.grasping import HALF, carry_action, grasp_action, grasp_report, is_grasped
from envs.tabletop import COLORS, TabletopEnv

CUBES = ("cube0", "cube1", "cube2")
XY_TOL = 0.015
"""Horizontal offset between the two cube centres that still counts as stacked."""


class StackCubeEnv(TabletopEnv):
    """Grasp the named cube and leave it resting on the other named cube (three cubes)."""

    model_path = Path(__file__).with_name("stack.xml")
    instruction_templates = (
        "stack the {color} cube on the {base} cube",
        "put the {color} cube on top of the {base} cube",
        "place the {color} cube on the {base} cube",
        "stack the {color} cube onto the {base} cube",
    )

    def _reset_task(self, rng: np.random.Generator) -> dict[str, str]:
        colors = [str(c) for c in rng.permutation(list(COLORS))[: len(CUBES)]]
        xy = self.sample_xy(rng, len(CUBES), (-0.15, -0.08), (0.15, 0.1), min_dist=0.1)
        self.cube_color = {}
        for name, color, (x, y) in zip(CUBES, colors, xy, strict=True):
            self.place_object(name, np.array([x, y, HALF]))
            self.set_color(name, color)
            self.cube_color[color] = name
        self._cube_geoms = {c: self.body_geoms(n) for c, n in self.cube_color.items()}
        return {"color": colors[0], "base": colors[1]}

    def _possible_goals(self) -> list[dict[str, str]]:
        return [{"color": a, "base": b} for a, b in permutations(self.cube_color, 2)]

    def _stacked(self, goal: dict[str, str]) -> bool:
        top = self.body_pos(self.cube_color[goal["color"]])
        base = self.body_pos(self.cube_color[goal["base"]])
        height = top[2] - base[2]
        return bool(
            np.linalg.norm(top[:2] - base[:2]) < XY_TOL
            and 2 * HALF - 0.005 < height < 2 * HALF + 0.008
            and base[2] < HALF + 0.005
        )

    def _goal_satisfied(self, goal: dict[str, str]) -> bool:
        return (
            self._stacked(goal)
            and not self.touching(self.finger_geoms, self._cube_geoms[goal["color"]])
            and self.body_speed(self.cube_color[goal["color"]]) < 0.05
        )

    def _info(self) -> dict:
        info = super()._info()
        info.update(grasp_report(self, self._cube_geoms, self.goal["color"]))
        return info

    def _reward_terms(self) -> dict[str, float]:
        top = self.body_pos(self.cube_color[self.goal["color"]])
        base = self.body_pos(self.cube_color[self.goal["base"]])
        return {
            "reach_dist": -0.5 * float(np.linalg.norm(self.tip_pos() - top)),  # get to the cube
            "grasped": 0.2 * float(is_grasped(self, self._cube_geoms[self.goal["color"]])),
            "stack_dist": -float(np.linalg.norm(top - base - [0, 0, 2 * HALF])),  # onto the base
            "success": float(self._goal_satisfied(self.goal)),
        }

    def expert_action(self) -> np.ndarray:
        top = self.body_pos(self.cube_color[self.goal["color"]])
        base = self.body_pos(self.cube_color[self.goal["base"]])
        if is_grasped(self, self._cube_geoms[self.goal["color"]]):
            place = base + np.array([0.0, 0.0, 2 * HALF + 0.003])
            return carry_action(self, top, place, carry_z=4 * HALF + 0.03)
        if self._stacked(self.goal):  # let go and back off
            return self.move_to(self.tip_pos() + [0, 0, 0.04], -1.0)
        return grasp_action(self, top)

"""PickPlaceCube: pick up the cube of the named colour and put it in the bin."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from envs.grasping import HALF, carry_action, grasp_action, grasp_report, is_grasped
from envs.tabletop import COLORS, TabletopEnv

CUBES = ("cube0", "cube1", "cube2")
BIN_INNER = 0.054
"""Half width of the bin's inside (m)."""
WALL_TOP = 0.04


class PickPlaceCubeEnv(TabletopEnv):
    """Grasp the named cube (one of three colours), carry it over the bin and drop it in."""

    model_path = Path(__file__).with_name("pick_place.xml")
    instruction_templates = (
        "put the {color} cube in the bin",
        "place the {color} cube in the bin",
        "pick up the {color} cube and put it in the bin",
        "drop the {color} cube into the bin",
    )

    def _reset_task(self, rng: np.random.Generator) -> dict[str, str]:
        colors = [str(c) for c in rng.permutation(list(COLORS))[: len(CUBES)]]
        low, high = np.array([-0.15, -0.08]), np.array([0.15, 0.1])
        while True:  # the open fingers must clear the bin walls while grasping a cube
            bin_xy = rng.uniform(low, high)
            cubes = self.sample_xy(rng, len(CUBES), low, high, min_dist=0.1, avoid=[bin_xy])
            if np.abs(cubes - bin_xy).max(axis=1).min() > BIN_INNER + 0.075:
                break
        self.place_fixture("bin", np.array([*bin_xy, 0.0]))
        self.cube_color = {}
        for name, color, xy in zip(CUBES, colors, cubes, strict=True):
            self.place_object(name, np.array([*xy, HALF]))
            self.set_color(name, color)
            self.cube_color[color] = name
        self._cube_geoms = {c: self.body_geoms(n) for c, n in self.cube_color.items()}
        return {"color": colors[0]}

    def _possible_goals(self) -> list[dict[str, str]]:
        return [{"color": c} for c in self.cube_color]

    def _in_bin(self, color: str) -> bool:
        cube = self.body_pos(self.cube_color[color])
        inside = np.all(np.abs(cube[:2] - self.body_pos("bin")[:2]) < BIN_INNER - HALF * 0.5)
        return bool(inside and cube[2] < WALL_TOP + HALF)

    def _goal_satisfied(self, goal: dict[str, str]) -> bool:
        released = not self.touching(self.finger_geoms, self._cube_geoms[goal["color"]])
        return self._in_bin(goal["color"]) and released

    def _info(self) -> dict:
        info = super()._info()
        info.update(grasp_report(self, self._cube_geoms, self.goal["color"]))
        return info

    def _reward_terms(self) -> dict[str, float]:
        cube = self.body_pos(self.cube_color[self.goal["color"]])
        to_bin = np.linalg.norm(cube[:2] - self.body_pos("bin")[:2])
        return {
            "reach_dist": -0.5 * float(np.linalg.norm(self.tip_pos() - cube)),  # get to the cube
            "grasped": 0.2 * float(is_grasped(self, self._cube_geoms[self.goal["color"]])),
            "bin_dist": -float(to_bin),  # cube to the bin (horizontal)
            "success": float(self._goal_satisfied(self.goal)),
        }

    def expert_action(self) -> np.ndarray:
        color = self.goal["color"]
        cube = self.body_pos(self.cube_color[color])
        if is_grasped(self, self._cube_geoms[color]):
            place = self.body_pos("bin") + np.array([0.0, 0.0, WALL_TOP + HALF + 0.01])
            return carry_action(self, cube, place, carry_z=WALL_TOP + 2 * HALF + 0.04)
        if self._in_bin(color):  # let go and back off
            return self.move_to(self.tip_pos() + [0, 0, 0.04], -1.0)
        return grasp_action(self, cube)

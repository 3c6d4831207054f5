"""PushCube: push the cube of the named colour into the white goal square."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from envs.tabletop import COLORS, TabletopEnv

CUBES = ("cube0", "cube1", "cube2")
HALF = 0.02
"""Cube half size (m)."""
GOAL_TOL = 0.03
"""Cube-centre to goal-centre distance (xy) that counts as inside the 9 cm goal square."""
PUSH_Z = 0.012
"""Fingertip height while pushing."""
SAFE_Z = 2 * HALF + 0.03
"""Fingertip height for moving above the cubes."""
PUSH_SPEED = 0.6
"""Largest action (fraction of a full move) while pushing."""
BEHIND = HALF + 0.014 + 0.012
"""How far behind the cube centre the fingertip lines up before pushing."""


def _segment_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    t = np.clip(np.dot(p - a, b - a) / np.dot(b - a, b - a), 0.0, 1.0)
    return float(np.linalg.norm(p - (a + t * (b - a))))


class PushCubeEnv(TabletopEnv):
    """Push the named cube (one of three colours) until it sits inside the goal square."""

    model_path = Path(__file__).with_name("push.xml")
    instruction_templates = (
        "push the {color} cube onto the white square",
        "push the {color} cube to the white square",
        "slide the {color} cube into the white square",
        "move the {color} cube onto the white square",
    )

    def _reset_task(self, rng: np.random.Generator) -> dict[str, str]:
        colors = [str(c) for c in rng.permutation(list(COLORS))[: len(CUBES)]]
        low, high = np.array([-0.15, -0.08]), np.array([0.15, 0.1])
        while True:
            target, goal = self.sample_xy(rng, 2, low, high, min_dist=0.12)
            start = target - BEHIND * (goal - target) / np.linalg.norm(goal - target)
            others = self.sample_xy(rng, len(CUBES) - 1, low, high, 0.07, avoid=[target, goal])
            if all(_segment_dist(o, start, goal) > 0.075 for o in others):
                break
        self.place_fixture("goal", np.array([*goal, 0.0]))
        self.cube_color = {}
        for name, color, xy in zip(CUBES, colors, [target, *others], strict=True):
            self.place_object(name, np.array([*xy, HALF]))
            self.set_color(name, color)
            self.cube_color[color] = name
        return {"color": colors[0]}

    def _possible_goals(self) -> list[dict[str, str]]:
        return [{"color": c} for c in self.cube_color]

    def _goal_dist(self, color: str) -> float:
        cube = self.body_pos(self.cube_color[color])
        return float(np.linalg.norm(cube[:2] - self.body_pos("goal")[:2]))

    def _goal_satisfied(self, goal: dict[str, str]) -> bool:
        cube = self.body_pos(self.cube_color[goal["color"]])
        return self._goal_dist(goal["color"]) < GOAL_TOL and cube[2] < HALF + 0.01

    def _reward_terms(self) -> dict[str, float]:
        cube = self.body_pos(self.cube_color[self.goal["color"]])
        return {
            "reach_dist": -0.5 * float(np.linalg.norm(self.tip_pos() - cube)),  # get to the cube
            "goal_dist": -float(self._goal_dist(self.goal["color"])),  # cube to the goal
            "success": float(self._goal_satisfied(self.goal)),
        }

    def expert_action(self) -> np.ndarray:
        cube = self.body_pos(self.cube_color[self.goal["color"]])[:2]
        goal = self.body_pos("goal")[:2]
        tip = self.tip_pos()
        u = (goal - cube) / max(np.linalg.norm(goal - cube), 1e-6)
        rel = tip[:2] - cube
        along = float(rel @ u)
        lateral = float(np.linalg.norm(rel - along * u))
        behind = cube - BEHIND * u
        low = tip[2] < SAFE_Z - 0.01
        slack = self.expert_slack
        if low and along < -HALF - 0.004 and lateral < 0.012 * slack:  # lined up behind the cube
            if tip[2] > PUSH_Z + 0.005:
                return self.move_to([*tip[:2], PUSH_Z], 1.0)  # straight down first
            push = self.move_to([*(goal - (BEHIND - 0.01) * u), PUSH_Z], 1.0)
            push[:3] = np.clip(push[:3], -PUSH_SPEED, PUSH_SPEED)  # steady, so it does not tip
            return push
        if low and np.linalg.norm(rel) < 0.07:
            if along < -HALF - 0.01:  # still behind it: shift sideways back onto the line
                return self.move_to([*behind, PUSH_Z], 1.0)
            return self.move_to([*tip[:2], SAFE_Z], 1.0)  # beside or in front of it: lift clear
        if np.linalg.norm(tip[:2] - behind) > 0.01 * slack:  # go behind the cube, above the objects
            return self.move_to([*behind, SAFE_Z], 1.0)
        return self.move_to([*behind, PUSH_Z], 1.0)

"""ReachBall: touch the ball of the named colour among three balls of different colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from envs.tabletop import COLORS, TabletopEnv

BALLS = ("ball0", "ball1", "ball2")
RADIUS = 0.03
TOUCH_DIST = RADIUS + 0.02
"""Fingertip-to-ball-centre distance that counts as touching."""


class ReachBallEnv(TabletopEnv):
    """Move the fingertip onto the named ball; the other balls are distractors."""

    model_path = Path(__file__).with_name("reach.xml")
    instruction_templates = (
        "touch the {color} ball",
        "reach the {color} ball",
        "move the gripper to the {color} ball",
        "go to the {color} ball",
    )

    def _reset_task(self, rng: np.random.Generator) -> dict[str, str]:
        colors = rng.permutation(list(COLORS))[: len(BALLS)]
        xy = self.sample_xy(rng, len(BALLS), (-0.17, -0.1), (0.17, 0.12), min_dist=0.1)
        self.ball_color = {}
        for name, color, (x, y) in zip(BALLS, colors, xy, strict=True):
            self.place_fixture(name, np.array([x, y, RADIUS]))
            self.set_color(name, str(color))
            self.ball_color[str(color)] = name
        return {"color": str(colors[rng.integers(len(BALLS))])}

    def _possible_goals(self) -> list[dict[str, str]]:
        return [{"color": c} for c in self.ball_color]

    def _distance(self, color: str) -> float:
        return float(np.linalg.norm(self.tip_pos() - self.body_pos(self.ball_color[color])))

    def _goal_satisfied(self, goal: dict[str, str]) -> bool:
        return self._distance(goal["color"]) < TOUCH_DIST

    def _reward_terms(self) -> dict[str, float]:
        return {
            "reach_dist": -self._distance(self.goal["color"]),  # dense: metres to the target
            "success": float(self._goal_satisfied(self.goal)),  # sparse: 1 when touching
        }

    def expert_action(self) -> np.ndarray:
        ball = self.body_pos(self.ball_color[self.goal["color"]])
        tip = self.tip_pos()
        above = ball + np.array([0.0, 0.0, RADIUS + 0.005])
        if np.linalg.norm(tip[:2] - ball[:2]) > 0.03 and tip[2] < ball[2] + RADIUS + 0.03:
            above[2] = ball[2] + RADIUS + 0.04  # come in from above, not through the ball
        return self.move_to(above, gripper=1.0)

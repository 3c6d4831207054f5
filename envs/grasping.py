"""Shared scripted-expert moves for tasks that pick a cube up: grasp it, carry it, let go."""

from __future__ import annotations

import numpy as np

from envs.tabletop import TabletopEnv

HALF = 0.02
"""Half size of the graspable cubes (m)."""
GRASP_Z = 0.012
"""Fingertip height above the cube's bottom face when grasping."""
CLEAR_Z = 2 * HALF + 0.035
"""Fingertip height for moving above cubes on the table."""
OPEN, CLOSE = -1.0, 1.0


def is_grasped(env: TabletopEnv, cube_geoms: frozenset[int]) -> bool:
    """Both fingers touch the cube and the gripper is (nearly) closed on it."""
    left, right = sorted(env.finger_geoms)
    return (
        env.touching(frozenset([left]), cube_geoms)
        and env.touching(frozenset([right]), cube_geoms)
        and env.finger_gap() < 2 * HALF + 0.006
    )


def grasp_report(env: TabletopEnv, cube_geoms: dict[str, frozenset[int]], named: str) -> dict:
    """What the gripper holds now, for `info`: `grasp/named` (1.0 when the named cube is
    grasped) and `grasp/other` (1.0 when another cube is): where a grasp task's episodes fail
    (no grasp, the wrong cube, still holding, let go elsewhere) is read from these."""
    other = any(is_grasped(env, geoms) for color, geoms in cube_geoms.items() if color != named)
    return {
        "grasp/named": float(is_grasped(env, cube_geoms[named])),
        "grasp/other": float(other),
    }


def grasp_action(env: TabletopEnv, cube: np.ndarray) -> np.ndarray:
    """Next action towards grasping the cube at `cube` (centre): above it, down, close."""
    tip = env.tip_pos()
    bottom = cube[2] - HALF
    slack = env.expert_slack
    off = np.linalg.norm(tip[:2] - cube[:2])
    if off > 0.008 * slack:
        if tip[2] < bottom + 2 * HALF + 0.01 and off > 0.02 * slack:
            return env.move_to([*tip[:2], CLEAR_Z], OPEN)  # lift clear before moving over
        return env.move_to([*cube[:2], CLEAR_Z], OPEN)
    if tip[2] > bottom + GRASP_Z + 0.006:
        return env.move_to([*cube[:2], bottom + GRASP_Z], OPEN)
    return env.move_to([*cube[:2], bottom + GRASP_Z], CLOSE)


def carry_action(
    env: TabletopEnv, cube: np.ndarray, place: np.ndarray, carry_z: float
) -> np.ndarray:
    """Next action carrying a grasped cube (centre `cube`) to rest its centre at `place`; then open."""
    tip = env.tip_pos()
    offset = tip - cube  # the grasp holds the cube at a fixed offset from the fingertip
    slack = env.expert_slack
    off = np.linalg.norm(cube[:2] - place[:2])
    if off > 0.006 * slack:
        if tip[2] < carry_z - 0.01 and off > 0.02 * slack:
            return env.move_to([*tip[:2], carry_z], CLOSE)  # lift first
        return env.move_to([*(place[:2] + offset[:2]), carry_z], CLOSE)
    if cube[2] > place[2] + 0.006:
        return env.move_to(place + offset, CLOSE)
    return env.move_to(tip, OPEN)

""" "Where next" targets: for every step of a recorded episode, where the fingertip will be at the
episode's next keyframes, computed from its states and actions alone (no task hook), so
demonstrations, verified rollouts and relabelled episodes all carry them.

Keyframes (as C2F-ARM and PerAct define them for a gripper): the steps whose finger command
differs in sign from the step before (a grasp or a release), optionally the ends of straight-line
moves (a step after a move that is not saturated, following a saturated one: where a scripted
move slows down onto its goal; push has no finger change, so its approach needs these), and the
last step. The target of step t is the fingertip position (`states[k, :3]`, the observation at
which keyframe k's command is issued) of the next keyframes k > t.
"""

from __future__ import annotations

import numpy as np

from agent.action_tokens import bins_to_actions
from train.collect.guidance import expert_labels
from verifiers.episode import Episode

KEYFRAME_KINDS = ("gripper", "gripper_and_moves")
"""Which steps are keyframes of the waypoint targets (`keyframes`): `gripper`
(finger changes and the last step) or `gripper_and_moves` (also the ends of moves)."""

SATURATED = 0.99
"""A move whose largest axis command reaches this is saturated (the experts move at full speed
until their last, partial step onto a goal)."""


def keyframes(actions: np.ndarray, kind: str = "gripper") -> np.ndarray:
    """int64 [k]: the keyframe steps of an episode whose actions are `actions` [T, 4], ascending,
    the last step (T - 1) always among them."""
    if kind not in KEYFRAME_KINDS:
        raise ValueError(f"unknown keyframe kind {kind!r}; expected one of {KEYFRAME_KINDS}")
    actions = np.asarray(actions, dtype=np.float32)
    n = len(actions)
    if n == 0:
        raise ValueError("an episode without steps has no keyframes")
    fingers = np.sign(actions[:, 3])
    keys = np.flatnonzero(fingers[1:] != fingers[:-1]) + 1
    if kind == "gripper_and_moves" and n >= 3:
        speed = np.abs(actions[:, :3]).max(axis=1)
        t = np.arange(2, n)
        ends = t[(speed[t - 1] < SATURATED) & (speed[t - 2] >= SATURATED)]
        keys = np.union1d(keys, ends)
    return np.union1d(keys, [n - 1]).astype(np.int64)


def waypoint_targets(
    actions: np.ndarray, states: np.ndarray, count: int = 2, kind: str = "gripper"
) -> np.ndarray:
    """float32 [T, count, 3]: for each step t of an episode (`actions` [T, 4], `states` [T(+1), k]
    with the fingertip's x, y, z first), the fingertip position at the `count` next keyframes
    after t; past the last keyframe, the last one again."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    n = len(actions)
    keys = keyframes(actions, kind)
    tips = np.asarray(states, dtype=np.float32)[keys, :3]  # [k, 3]
    first = np.searchsorted(keys, np.arange(n), side="right")  # the first keyframe > t
    rows = np.minimum(first[:, None] + np.arange(count), len(keys) - 1)
    return tips[rows]


def episode_waypoints(
    episode: Episode, count: int = 2, kind: str = "gripper", labelled_failures: bool = True
) -> np.ndarray:
    """`waypoint_targets` of an episode, from the actions it was trained to take (its action
    bins: a noise-injected demonstration's clean labels, a rollout's own actions, a dagger
    episode's expert labels).

    `labelled_failures=False`: a failed dagger episode trained on the expert's labels
    (`is_labelled_failure`) gets NaN targets (unknown, left out of the waypoint loss): its
    states follow the policy's actions, not the labels, so the fingertip at the labels'
    keyframes is where the policy went (hovering over a cube it never grasped), not where the
    expert leads."""
    if not labelled_failures and is_labelled_failure(episode):
        return np.full((episode.length, count, 3), np.nan, dtype=np.float32)
    return waypoint_targets(bins_to_actions(episode.action_bins), episode.states, count, kind)


def is_labelled_failure(episode: Episode) -> bool:
    """Whether `episode` is a failed guided episode whose action bins are the expert's labels
    of its states (`train.organize.round_data.expert_labelled`), not what ran."""
    if episode.is_success or episode.relabelled_from is not None:
        return False
    labels = expert_labels(episode)
    return labels is not None and bool(np.array_equal(labels, episode.action_bins))

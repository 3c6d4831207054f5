"""Diagnostics of what a policy's actions depend on: does it read the camera image, the instruction?

A from-scratch policy can fit its demonstrations from the instruction and the proprioceptive state
alone (the average motion of the task) and ignore the image; or read the image but not which object
the instruction names (and go to any ball). `input_reliance` measures how much each input informs
the actions: the cross-entropy of the taken action bins with each step's own inputs, with the
frames permuted among the steps (instruction and state kept), and with the instructions permuted
(frame and state kept). Each difference is ~0 for a policy that ignores that input and grows as
the policy grounds its actions in it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from train.updates.batching import (
    StepSet,
    chunks,
    episode_steps,
    forward_logprobs_and_waypoints,
    step_logprobs,
)
from verifiers.episode import Episode


def input_reliance(
    policy, data: Sequence[Episode] | StepSet, max_steps: int = 512, seed: int = 0
) -> dict[str, float]:
    """Action cross-entropy with true, shuffled images and shuffled instructions, on up to
    `max_steps` steps of `data`.

    `data` is episodes with frames loaded, or a `StepSet`. Steps are subsampled evenly when there
    are more than `max_steps`; the permutations are drawn from `seed`. Returns, in nats per action
    token, `diag/action_ce`, `diag/action_ce_images_shuffled`, `diag/action_ce_instructions_shuffled`
    and the gains over the true inputs, `diag/image_gain` and `diag/instruction_gain` (0 when all
    steps share one instruction). The policy's train/eval mode is left as it was (eval mode while
    measuring).
    """
    steps = data if isinstance(data, StepSet) else episode_steps(data, policy.chunk, acted=True)
    if max_steps < 2:
        raise ValueError(f"max_steps must be >= 2 (a permutation needs two steps), got {max_steps}")
    if len(steps) < 2:
        raise ValueError(f"need at least 2 steps to shuffle images between, got {len(steps)}")
    if len(steps) > max_steps:
        steps = steps.select(np.linspace(0, len(steps) - 1, max_steps).round().astype(int))
    rng = np.random.default_rng(seed)
    images = steps.select(slice(None))
    images.images = steps.images[rng.permutation(len(steps))]
    instructions = steps.select(slice(None))
    instructions.instructions = [steps.instructions[i] for i in rng.permutation(len(steps))]
    with policy.mode(training=False):
        ce, ce_images, ce_instructions = (
            -float(step_logprobs(policy, s).mean()) for s in (steps, images, instructions)
        )
    return {
        "diag/action_ce": ce,
        "diag/action_ce_images_shuffled": ce_images,
        "diag/action_ce_instructions_shuffled": ce_instructions,
        "diag/image_gain": ce_images - ce,
        "diag/instruction_gain": ce_instructions - ce,
    }


@torch.no_grad()
def waypoint_error(policy, episodes, kind: str = "gripper") -> float | None:
    """Median distance (cm) between the policy's "where next" estimate and the episodes'
    keyframe targets (`train.organize.waypoints`, keyframes of `kind`), over every step and
    waypoint; None for a policy without a waypoint head. Eval mode while measuring."""
    if not policy.waypoints:
        return None
    steps = episode_steps(episodes, policy.chunk, policy.waypoints, kind, acted=True)
    found = []
    with policy.mode(training=False):
        for rows in chunks(len(steps), 128):
            part = steps.select(rows)
            found.append(
                forward_logprobs_and_waypoints(policy, part, teacher_waypoints=False)[1]
                .float()
                .cpu()
                .numpy()
            )
    error = np.linalg.norm(np.concatenate(found) - steps.waypoints, axis=-1)
    return float(np.median(error)) * 100.0

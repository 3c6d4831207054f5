"""Diagnostics of what a policy's actions depend on: does it read the camera image?

A from-scratch policy can fit its demonstrations from the instruction and the proprioceptive state
alone (the average motion of the task) and ignore the image. `image_reliance` measures how much
the image informs the actions: the cross-entropy of the taken action bins with each step's own
frame, and with the frames permuted among the steps (instruction and state kept). The difference
is ~0 for a policy that ignores the image and grows as the policy grounds its actions in it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from train.batching import StepSet, episode_steps, step_logprobs
from verifiers.episode import Episode


def image_reliance(
    policy, data: Sequence[Episode] | StepSet, max_steps: int = 512, seed: int = 0
) -> dict[str, float]:
    """Action cross-entropy with true and with shuffled images, on up to `max_steps` steps of `data`.

    `data` is episodes with frames loaded, or a `StepSet`. Steps are subsampled evenly when there
    are more than `max_steps`; the permutation of the frames is drawn from `seed`. Returns, in nats
    per action token, `diag/action_ce`, `diag/action_ce_images_shuffled` and their difference
    `diag/image_gain`. The policy's train/eval mode is left as it was (eval mode while measuring).
    """
    steps = data if isinstance(data, StepSet) else episode_steps(data)
    if max_steps < 2:
        raise ValueError(f"max_steps must be >= 2 (a permutation needs two steps), got {max_steps}")
    if len(steps) < 2:
        raise ValueError(f"need at least 2 steps to shuffle images between, got {len(steps)}")
    if len(steps) > max_steps:
        steps = steps.select(np.linspace(0, len(steps) - 1, max_steps).round().astype(int))
    rng = np.random.default_rng(seed)
    shuffled = steps.select(slice(None))
    shuffled.images = steps.images[rng.permutation(len(steps))]
    training = policy.model.training
    policy.model.eval()
    try:
        ce = -float(step_logprobs(policy, steps).mean())
        ce_shuffled = -float(step_logprobs(policy, shuffled).mean())
    finally:
        policy.model.train(training)
    return {
        "diag/action_ce": ce,
        "diag/action_ce_images_shuffled": ce_shuffled,
        "diag/image_gain": ce_shuffled - ce,
    }

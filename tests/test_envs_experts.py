"""Scripted experts succeed (with actions quantized to 256 bins, as demos are recorded); random fails."""

from __future__ import annotations

import numpy as np
import pytest

import envs

TASKS = envs.task_ids()


def _quantize(action: np.ndarray) -> np.ndarray:
    """Snap each dimension to the centre of its bin among 256 uniform bins over [-1, 1]."""
    bins = np.clip(np.floor((np.asarray(action) + 1.0) / 2.0 * 256), 0, 255)
    return (-1.0 + (bins + 0.5) * 2.0 / 256).astype(np.float32)


def _success_rate(task: str, seeds: range, policy: str) -> float:
    env = envs.make(task)
    successes = []
    for seed in seeds:
        env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        done = False
        while not done:
            if policy == "expert":
                action = _quantize(env.unwrapped.expert_action())
            else:
                action = rng.uniform(-1, 1, 4).astype(np.float32)
            _, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        assert terminated == info["is_success"]
        successes.append(info["is_success"])
    env.close()
    return float(np.mean(successes))


@pytest.mark.parametrize("task", TASKS)
def test_expert_succeeds_quickly(task):
    assert _success_rate(task, range(1000, 1010), "expert") >= 0.9


@pytest.mark.parametrize("task", TASKS)
def test_expert_success_marks_the_instruction_achieved(task):
    env = envs.make(task)
    obs, _ = env.reset(seed=11)
    terminated = truncated = False
    while not (terminated or truncated):
        obs, _, terminated, truncated, info = env.step(env.unwrapped.expert_action())
    assert terminated and info["is_success"] and info["reward/success"] == 1.0
    assert env.unwrapped.is_satisfied(obs["instruction"])
    canonical = env.unwrapped.instruction_templates[0].format(**env.unwrapped.goal)
    assert canonical in env.unwrapped.achieved_instructions()


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_expert_succeeds_on_95_of_100_seeds(task):
    assert _success_rate(task, range(100), "expert") >= 0.95


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_random_policy_succeeds_on_at_most_10_of_100_seeds(task):
    assert _success_rate(task, range(100), "random") <= 0.10

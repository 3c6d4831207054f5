"""Scripted experts succeed (with actions quantized to 256 bins, as demos are recorded); random fails."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from envs.contract import quantize_action, success_rate

TASKS = envs.task_ids()


def _success_rate(task: str, seeds: range, policy: str) -> float:
    """Success rate over `seeds`; `success_rate` raises if termination and success disagree."""
    env = envs.make(task)
    try:
        return success_rate(env, seeds, policy)[0]
    finally:
        env.close()


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


def test_envs_quantizer_matches_the_policys_action_bins():
    from agent.action_tokens import N_BINS, actions_to_bins, bins_to_actions
    from envs.contract import ACTION_BINS

    actions = np.random.default_rng(0).uniform(-1.2, 1.2, (1000, 4)).astype(np.float32)
    assert ACTION_BINS == N_BINS
    np.testing.assert_allclose(
        quantize_action(actions), bins_to_actions(actions_to_bins(actions)), atol=1e-6
    )

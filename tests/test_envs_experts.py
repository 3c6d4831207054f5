"""Scripted experts succeed (with actions quantized to the policy's action bins, recorded by the
campaign's collector as demonstrations are); random actions fail."""

from __future__ import annotations

import pytest

import envs
from train.cli.check_task import success_rate

TASKS = envs.task_ids()


def _success_rate(task: str, seeds: range, policy: str) -> float:
    """Success rate over `seeds`; `success_rate` raises if termination and success disagree."""
    return success_rate(task, seeds, policy)[0]


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

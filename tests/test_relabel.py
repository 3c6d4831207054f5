"""Hindsight relabelling: a failure that achieved another instruction becomes a success for it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from episodes_helper import episodes

import envs
from train.organize.datasets import build_sft_set
from verifiers import EnvironmentVerifier, relabel


@pytest.fixture(scope="module")
def distracted():
    return list(episodes("reach", (0, 1, 2, 3), "distracted"))


def replay_final_env(episode):
    """The env after resetting with the episode's seed and replaying its actions."""
    env = envs.make(episode.task_id, image_size=32)
    env.reset(seed=episode.env_seed)
    for action in episode.actions:
        env.step(action)
    return env


def test_failed_episode_becomes_success_for_what_it_achieved(distracted):
    assert all(not e.is_success and e.achieved for e in distracted)
    relabelled = relabel(distracted)
    # One relabelling per instruction achieved at the end or on the way (`achieved_at`), each the
    # episode's prefix up to the step that first achieved it.
    goals = {e.episode_id: list(dict.fromkeys([*e.achieved, *e.achieved_at])) for e in distracted}
    assert len(relabelled) == sum(len(g) for g in goals.values())
    originals = {e.episode_id: e for e in distracted}
    for new in relabelled:
        base, _, k = new.episode_id.rpartition("/relabel:")
        original = originals[base]
        assert new.instruction == goals[base][int(k)] and new.instruction != original.instruction
        assert new.relabelled_from == original.instruction
        assert new.is_success and not new.truncated
        t = min(original.achieved_at.get(new.instruction, original.length), original.length)
        assert new.length == t
        np.testing.assert_array_equal(new.actions, original.actions[:t])
        np.testing.assert_array_equal(new.frames, original.frames[: t + 1])
        assert not original.is_success and original.relabelled_from is None
    assert all(v.passed for v in EnvironmentVerifier().verify(relabelled))


def test_relabelled_instruction_really_holds_when_replayed(distracted):
    for new in relabel(distracted):
        env = replay_final_env(new)
        try:
            assert env.unwrapped.is_satisfied(new.instruction)
            assert not env.unwrapped.is_satisfied(new.relabelled_from)
        finally:
            env.close()


def test_successes_and_unachieving_failures_yield_nothing():
    expert = list(episodes("reach", (0, 1), "expert"))
    random = [e for e in episodes("reach", (0, 1, 2, 3), "random") if not e.achieved]
    assert random, "every random episode touched a ball"
    assert relabel(expert + random) == []
    assert relabel(relabel(list(episodes("reach", (0,), "distracted")))) == []


def test_relabelled_episodes_enter_the_sft_set(distracted):
    relabelled = relabel(distracted)
    sft = build_sft_set(distracted + relabelled)
    assert [e.episode_id for e in sft] == [e.episode_id for e in relabelled]


def test_relabel_needs_a_list_of_achieved_instructions(distracted):
    with pytest.raises(ValueError, match=f"{distracted[0].episode_id!r} has achieved=None"):
        relabel([replace(distracted[0], achieved=None)])


def test_instruction_achieved_mid_episode_relabels_that_prefix(distracted):
    """A policy that touched the blue ball and moved on did reach the blue ball: the relabelled
    episode is the prefix up to the first touch, and replaying it satisfies the new instruction."""
    source = distracted[0]
    actions = np.concatenate([source.actions, np.tile([0.0, 0.0, 1.0, -1.0], (4, 1))]).astype(
        np.float32
    )
    env = envs.make(source.task_id, image_size=32)
    obs, _ = env.reset(seed=source.env_seed)
    frames, states, achieved_at = [obs["image"]], [obs["state"]], {}
    for t, action in enumerate(actions, 1):
        obs, *_ = env.step(action)
        frames.append(obs["image"])
        states.append(obs["state"])
        for instruction in env.unwrapped.achieved_instructions():
            achieved_at.setdefault(instruction, t)
    final = env.unwrapped.achieved_instructions()
    episode = replace(
        source,
        actions=actions,
        action_bins=np.zeros((len(actions), 4), np.int64),
        logprobs=np.full((len(actions), 4), np.nan, np.float32),
        rewards=np.zeros(len(actions), np.float32),
        frames=np.stack(frames),
        states=np.stack(states),
        step_info={},
        achieved=final,
        achieved_at=achieved_at,
    )
    assert achieved_at and not set(achieved_at) <= set(final)  # touched, then left
    (new,) = [r for r in relabel([episode]) if r.instruction not in final]
    t = achieved_at[new.instruction]
    assert new.length == t < episode.length and new.frames.shape[0] == new.states.shape[0] == t + 1
    np.testing.assert_array_equal(new.actions, actions[:t])
    assert replay_final_env(new).unwrapped.is_satisfied(new.instruction)
    assert not replay_final_env(episode).unwrapped.is_satisfied(new.instruction)

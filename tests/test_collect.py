"""Rollout collection over vector envs: expert, random and the MLLM policy."""

import numpy as np
import pytest

import envs
from agent import Policy
from train.collect.episodes import TaskSlot, all_goal_jobs, collect_episodes, make_vector_env
from verifiers.episode import Job

REACH = envs.resolve("reach")


@pytest.fixture(scope="module")
def expert_episodes():
    jobs = [Job(REACH, s) for s in range(6)]
    return jobs, collect_episodes(jobs, "expert", num_envs=4)


def test_expert_episodes_are_complete_records(expert_episodes):
    jobs, episodes = expert_episodes
    assert [(e.task_id, e.env_seed) for e in episodes] == [(j.task_id, j.seed) for j in jobs]
    assert all(e.is_success for e in episodes)
    for e in episodes:
        T = e.length
        assert e.actions.shape == (T, 4) and e.action_bins.shape == (T, 4)
        assert e.frames.shape[0] == T + 1 and e.frames.dtype == np.uint8
        assert e.states.shape == (T + 1, 4) and e.rewards.shape == (T,)
        assert np.isnan(e.logprobs).all()  # not the MLLM: no log-probs
        assert e.step_info["is_success"][-1] == 1.0 and "contact_force" in e.step_info
        assert e.achieved  # the final state satisfies (the canonical form of) its instruction
        assert set(e.achieved_at) == set(e.achieved) and max(e.achieved_at.values()) == T
        assert not e.truncated and e.policy_id == "expert"
    assert len({e.episode_id for e in episodes}) == len(episodes)


def test_collection_matches_a_plain_env_loop(expert_episodes):
    """Slots, masks and partial resets change nothing: a single env replaying the recorded actions
    sees the same frames."""
    _, episodes = expert_episodes
    e = episodes[3]
    env = envs.make(REACH)
    obs, _ = env.reset(seed=e.env_seed)
    assert obs["instruction"] == e.instruction
    np.testing.assert_array_equal(obs["image"], e.frames[0])
    for t, action in enumerate(e.actions):
        obs, *_ = env.step(action)
        np.testing.assert_array_equal(obs["image"], e.frames[t + 1])
    env.close()


def test_random_policy_is_seeded_and_mostly_fails():
    jobs = [Job(REACH, 100 + s) for s in range(4)]
    a = collect_episodes(jobs, "random", num_envs=2, seed=7)
    c = collect_episodes(jobs, "random", num_envs=2, seed=7)
    for x, y in zip(a, c, strict=True):
        np.testing.assert_array_equal(x.action_bins, y.action_bins)
    assert sum(e.is_success for e in a) <= 2


def test_policy_rollouts_are_deterministic_and_carry_logprobs():
    policy = Policy.from_preset("tiny", seed=0)
    jobs = [Job(REACH, 200 + s, f"k{g}") for s in range(2) for g in range(2)]
    a = collect_episodes(jobs, policy, num_envs=4, seed=3, temperature=1.0)
    b = collect_episodes(jobs, policy, num_envs=4, seed=3, temperature=1.0)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.action_bins, y.action_bins)
        assert np.isfinite(x.logprobs).all() and (x.logprobs <= 0).all()
    # two samples from the same seed differ (the policy samples)
    assert not np.array_equal(a[0].action_bins, a[1].action_bins)


def test_a_reused_vector_env_gives_the_same_episodes_and_parks_idle_slots():
    """A campaign keeps one vector env: what earlier calls left in it (ended episodes, slots never
    reset, parked slots) changes nothing, and slots without a job do not simulate."""
    policy = Policy.from_preset("tiny", seed=0)
    press = envs.resolve("press_button")
    jobs = [Job(REACH, 300), Job(press, 301), Job(REACH, 302), Job(press, 303), Job(REACH, 304)]
    fresh = collect_episodes(jobs, policy, num_envs=4, seed=5)
    vec = make_vector_env([REACH, press], 4)
    try:
        collect_episodes([Job(press, 9)], "expert", vector_env=vec)  # 3 slots idle, 1 ends
        assert list(vec.get_attr("parked")) == [False, True, True, True]
        again = collect_episodes(jobs, policy, vector_env=vec, seed=5)
        parked = list(vec.get_attr("parked"))
    finally:
        vec.close()
    for x, y in zip(fresh, again, strict=True):
        np.testing.assert_array_equal(x.frames, y.frames)
        np.testing.assert_array_equal(x.action_bins, y.action_bins)
        assert x.achieved_at == y.achieved_at and x.is_success == y.is_success
    assert sum(parked) == 3  # five jobs on four slots: at the end one slot ran the fifth


def test_slots_that_keep_one_environment_open_give_the_same_episodes():
    """A slot closes the task environment it used least recently once it holds `open_envs //
    num_envs`, and re-makes it when that task comes back: the episodes do not change."""
    policy = Policy.from_preset("tiny", seed=0)
    tasks = [REACH, envs.resolve("press_button"), envs.resolve("pick_place")]
    jobs = [Job(tasks[i % 3], 400 + i) for i in range(9)]  # every slot changes task each time
    wide = make_vector_env(tasks, 3)
    narrow = make_vector_env(tasks, 3, open_envs=3)
    try:
        a = collect_episodes(jobs, policy, vector_env=wide, seed=2, max_episode_steps=12)
        b = collect_episodes(jobs, policy, vector_env=narrow, seed=2, max_episode_steps=12)
        assert [len(e) for e in narrow.get_attr("_envs")] == [1, 1, 1]
        assert max(len(e) for e in wide.get_attr("_envs")) == 3
    finally:
        wide.close()
        narrow.close()
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.frames, y.frames)
        np.testing.assert_array_equal(x.action_bins, y.action_bins)
        assert x.is_success == y.is_success
    with pytest.raises(ValueError, match="max_envs must be >= 1"):
        TaskSlot(tasks, max_envs=0)


def test_all_goal_jobs_give_expert_demos_of_every_goal_of_one_scene():
    jobs = all_goal_jobs(REACH, [7, 8])
    assert [j.seed for j in jobs] == [7, 7, 7, 8, 8, 8]  # ReachBall: three balls, three goals
    assert len({j.episode_id(0) for j in jobs}) == 6
    # A forced instruction sticks to its slot's job only: the drawn job after it keeps its own.
    drawn = Job(REACH, 7, "drawn")
    episodes = collect_episodes([*jobs[:3], drawn], "expert", num_envs=2)
    assert [e.instruction for e in episodes[:3]] == [j.instruction for j in jobs[:3]]
    assert len({e.instruction for e in episodes[:3]}) == 3
    env = envs.make(REACH)
    assert episodes[3].instruction == env.reset(seed=7)[0]["instruction"]
    env.close()
    assert all(e.is_success for e in episodes)
    np.testing.assert_array_equal(episodes[0].frames[0], episodes[1].frames[0])  # same scene
    tips = [e.states[-1][:3] for e in episodes[:2]]
    assert np.linalg.norm(tips[0] - tips[1]) > 0.05  # the tip ends at a different ball


def test_async_vector_env_gives_the_same_episodes():
    jobs = [Job(REACH, s) for s in range(3)]
    sync = collect_episodes(jobs, "expert", num_envs=2)
    asyn = collect_episodes(jobs, "expert", num_envs=2, vectorization="async")
    for x, y in zip(sync, asyn, strict=True):
        np.testing.assert_array_equal(x.frames, y.frames)


def test_bad_policy_name():
    with pytest.raises(ValueError, match="unknown policy 'exprt'"):
        collect_episodes([Job(REACH, 0)], "exprt")


def test_collect_takes_a_policy_an_actor_or_a_name_and_names_anything_else():
    from train.collect.episodes import ExpertActor, PolicyActor, as_actor

    actor = ExpertActor()
    assert as_actor(actor) is actor and isinstance(as_actor("expert"), ExpertActor)
    from agent import Policy

    assert isinstance(as_actor(Policy.from_preset("tiny", seed=0)), PolicyActor)

    class NoStart:
        policy_id = "x"

        def act(self, obs, active, vec):
            raise AssertionError

    with pytest.raises(TypeError, match="expected an agent.Policy, an actor"):
        as_actor(NoStart())
    with pytest.raises(ValueError, match="unknown policy 'greedy'"):
        as_actor("greedy")

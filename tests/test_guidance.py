"""Guided collection (`train.collect.guidance`): the expert takes over or labels the policy's
states; each step records who acted; RL and DPO see only the policy's own steps."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from agent import Policy
from train.collect.chunks import Chunk, collect_chunk
from train.collect.episodes import ExpertActor, PolicyActor, collect_episodes
from train.collect.guidance import EXPERT_KEY, LABEL_KEYS, Guidance
from train.collect.guided import GuidedActor, first_start_steps, next_start_steps
from train.collect.store import EpisodeStore
from train.organize.datasets import DPOPair
from train.organize.round_data import expert_labelled
from train.organize.waypoints import is_labelled_failure
from train.updates.batching import episode_steps, step_logprobs
from train.updates.config import SFTConfig
from train.updates.dpo import pair_steps
from train.updates.rl import group_steps
from train.updates.sft import sft_update
from verifiers.episode import Job

MAX_STEPS = 24


@pytest.fixture(scope="module")
def policy():
    return Policy.from_preset("tiny", seed=0)


@pytest.fixture(scope="module")
def chunk_policy():
    return Policy.from_preset("tiny_grasp", seed=0)


def _guided(policy, guidance, jobs, num_envs=3, seed=1, round=1):
    actor = GuidedActor(PolicyActor(policy, seed=seed), guidance, seed=seed, round=round)
    return collect_episodes(jobs, actor, num_envs=num_envs, max_episode_steps=MAX_STEPS)


def test_the_expert_takes_over_after_the_set_steps_and_finishes_what_the_policy_cannot(policy):
    jobs = [Job("reach", s) for s in range(6)]
    alone = collect_episodes(jobs, policy, num_envs=3, seed=1, max_episode_steps=MAX_STEPS)
    guided = _guided(policy, Guidance(mode="takeover", trigger="steps", steps=3), jobs)
    for e in guided:
        who = e.step_info[EXPERT_KEY]
        np.testing.assert_array_equal(who[:3], 0.0)  # the policy's first three steps
        assert (who[3:] == 1.0).all()
        assert np.isfinite(e.logprobs[:3]).all() and np.isnan(e.logprobs[3:]).all()
        assert e.policy_id == policy.policy_id
    # the first three steps are the policy's own, as it samples alone (the first batch's: later
    # episodes start beside other episodes, so their sampling differs)
    for a, g in zip(alone[:3], guided[:3], strict=True):
        np.testing.assert_array_equal(a.action_bins[:3], g.action_bins[:3])
    assert sum(e.is_success for e in guided) >= 5 > sum(e.is_success for e in alone)


def test_a_drawn_takeover_step_belongs_to_the_episode_not_the_batch(policy):
    jobs = [Job("reach", s) for s in range(5)]
    guidance = Guidance(mode="takeover", trigger="drawn", steps=10)
    one = _guided(policy, guidance, jobs, num_envs=1)
    three = _guided(policy, guidance, jobs, num_envs=3)
    switches = [int((e.step_info[EXPERT_KEY] == 0).sum()) for e in one]
    assert switches == [int((e.step_info[EXPERT_KEY] == 0).sum()) for e in three]
    assert len(set(switches)) > 1 and max(switches) <= 10


def test_a_stalled_policy_hands_over():
    class Still:  # a policy that never moves: the bins of a zero move, fingers open
        policy_id = "still"

        def start(self, slots, jobs):
            pass

        def act(self, obs, active, vec):
            bins = np.full((vec.num_envs, 4), 128, dtype=np.int64)
            bins[:, 3] = 0
            return bins, np.zeros((vec.num_envs, 4), np.float32)

    guidance = Guidance(mode="takeover", trigger="stall", steps=100, stall_steps=4, stall_cm=0.5)
    actor = GuidedActor(Still(), guidance)
    (episode,) = collect_episodes([Job("reach", 0)], actor, num_envs=1, max_episode_steps=20)
    who = episode.step_info[EXPERT_KEY]
    assert who[:4].sum() == 0 and who[4:].all()  # four still steps measured, then the expert


def test_dagger_labels_and_acts_with_the_experts_slack(policy):
    """With `expert_slack` the expert's labels (and the steps it acts) are the lenient expert's:
    it comes down onto the cube while still centring, where the strict one centres first."""
    jobs = [Job("pick_place", s) for s in range(3)]
    runs = {}
    for slack in (1.0, 3.0):
        guidance = Guidance(mode="dagger", beta=1.0, expert_slack=slack)
        runs[slack] = _guided(policy, guidance, jobs)
        for e in runs[slack]:  # the expert acted every step: what ran is its label
            labels = np.stack([e.step_info[k] for k in LABEL_KEYS], axis=1)
            np.testing.assert_array_equal(e.action_bins, labels)
    strict, lenient = runs[1.0], runs[3.0]
    assert any(
        not np.array_equal(a.action_bins, b.action_bins)
        for a, b in zip(strict, lenient, strict=True)
    )
    with pytest.raises(ValueError, match="expert_slack must be > 0"):
        Guidance(mode="dagger", expert_slack=0.0)


def test_dagger_labels_every_state_and_mixes_the_expert_in(policy):
    jobs = [Job("pick_place", s) for s in range(3)]
    episodes = _guided(policy, Guidance(mode="dagger", beta=0.5), jobs)
    who = np.concatenate([e.step_info[EXPERT_KEY] for e in episodes])
    assert 0.3 < who.mean() < 0.7
    for e in episodes:
        labels = np.stack([e.step_info[k] for k in LABEL_KEYS], axis=1).astype(np.int64)
        by_expert = e.step_info[EXPERT_KEY] == 1
        np.testing.assert_array_equal(e.action_bins[by_expert], labels[by_expert])
        assert np.isnan(e.logprobs[by_expert]).all()
        assert np.isfinite(e.logprobs[~by_expert]).all()
    later = _guided(policy, Guidance(mode="dagger", beta=0.5, beta_decay=0.5), jobs, round=3)
    assert np.concatenate([e.step_info[EXPERT_KEY] for e in later]).mean() < 0.25


def test_failed_dagger_episodes_can_leave_the_waypoint_estimate_alone(chunk_policy):
    """`labelled_failure_waypoints=False`: a failed dagger episode trained on the expert's labels
    gets no waypoint targets (its fingertip went where the policy led), a success and the raw
    episode keep theirs; SFT trains on the mix, the labels still teach the actions."""
    jobs = [Job("pick_place", s) for s in range(2)]
    raw = _guided(chunk_policy, Guidance(mode="dagger", beta=0.5), jobs)
    assert not any(e.is_success for e in raw)  # a fresh policy does not finish pick_place
    labelled = [expert_labelled(e) for e in raw]
    assert all(is_labelled_failure(e) for e in labelled)
    assert not any(is_labelled_failure(e) for e in raw)  # its own actions: not labelled
    assert not is_labelled_failure(replace(labelled[0], is_success=True))
    kept = episode_steps(labelled, chunk=4, waypoints=2, keyframes="gripper_and_moves")
    left = episode_steps(labelled, 4, 2, "gripper_and_moves", labelled_failure_waypoints=False)
    assert np.isfinite(kept.waypoints).all() and np.isnan(left.waypoints).all()
    np.testing.assert_array_equal(kept.chunk_bins, left.chunk_bins)  # the same action targets
    (demo,) = collect_episodes([Job("pick_place", 7)], ExpertActor(noise=0.1, seed=5), num_envs=1)
    config = SFTConfig(
        max_steps=2, batch_size=8, keyframes="gripper_and_moves", labelled_failure_waypoints=False
    )
    metrics = sft_update(Policy.from_preset("tiny_grasp", seed=1), labelled + [demo], config)
    assert np.isfinite(metrics["train/sft_loss"]) and np.isfinite(metrics["train/waypoint_loss"])


def test_rl_scores_only_the_policys_own_steps_at_ratio_one(chunk_policy):
    jobs = [Job("pick_place", 0, f"g{g}") for g in range(2)]
    guidance = Guidance(mode="dagger", beta=0.4)
    episodes = _guided(chunk_policy, guidance, jobs, num_envs=2)
    steps = episode_steps(episodes, chunk=chunk_policy.chunk, acted=True)
    own = sum(int((e.step_info[EXPERT_KEY] == 0).sum()) for e in episodes)
    assert len(steps) == own < sum(e.length for e in episodes)
    assert np.isfinite(steps.old_logprobs).all()
    with chunk_policy.mode(training=False):
        now = step_logprobs(chunk_policy, steps)
    ratio = torch.exp(now - torch.from_numpy(steps.old_logprobs))
    torch.testing.assert_close(ratio, torch.ones_like(ratio), atol=1e-4, rtol=0)

    class Group:  # an RL group of the two episodes with mixed outcomes
        task_id, env_seed = "pick_place", 0
        rewards = [1.0, 0.0]

    Group.episodes = episodes
    group_set, advantages, skipped = group_steps([Group()], chunk=chunk_policy.chunk)
    assert skipped == 0 and len(group_set) == own and len(advantages) == own
    # DPO's trajectories are scored on the same steps: the expert's are never among them
    pair = pair_steps([DPOPair(episodes[0], episodes[1])], chunk=chunk_policy.chunk)
    assert len(pair) == own and np.isfinite(pair.old_logprobs).all()


def test_guidance_none_collects_todays_episodes(policy):
    jobs = (Job("reach", 0), Job("reach", 1))
    plain = collect_chunk(Chunk(0, jobs, 1, seed=3), policy, vec=None)
    unguided = collect_chunk(Chunk(0, jobs, 1, seed=3, guidance=Guidance()), policy, vec=None)
    for a, b in zip(plain, unguided, strict=True):
        np.testing.assert_array_equal(a.action_bins, b.action_bins)
        np.testing.assert_array_equal(a.logprobs, b.logprobs)
        assert EXPERT_KEY not in b.step_info


def test_bad_guidance_is_refused():
    with pytest.raises(ValueError, match="unknown guidance mode 'teacher'"):
        Guidance(mode="teacher")
    with pytest.raises(ValueError, match="beta and beta_decay must lie in"):
        Guidance(mode="dagger", beta=1.5)
    with pytest.raises(ValueError, match="'takeover\\+dagger' do not combine"):
        Guidance(mode="takeover+dagger")
    with pytest.raises(ValueError, match="unknown guidance mode 'hint' in 'demo_start\\+hint'"):
        Guidance(mode="demo_start+hint")
    assert Guidance(mode="dagger+demo_start").modes == ("dagger", "demo_start")


def test_a_demo_start_reproduces_the_demonstrations_frame_at_its_start_step(policy):
    jobs = [Job("pick_place", s) for s in range(2)] + [Job("reach", 0)]
    demos = collect_episodes(jobs, "expert", num_envs=3, max_episode_steps=MAX_STEPS)
    guidance = Guidance(mode="demo_start", start_step=6)
    actor = GuidedActor(PolicyActor(policy, seed=1), guidance, start_steps={"reach": 2})
    started = collect_episodes(jobs, actor, num_envs=3, max_episode_steps=MAX_STEPS)
    for demo, episode, s in zip(demos, started, [6, 6, 2], strict=True):
        who = episode.step_info[EXPERT_KEY]
        assert who[:s].all() and not who[s:].any()  # the demonstration leads s steps
        np.testing.assert_array_equal(episode.action_bins[:s], demo.action_bins[:s])
        # the policy's first observation is the demonstration's frame and state at step s
        np.testing.assert_array_equal(episode.frames[s], demo.frames[s])
        np.testing.assert_array_equal(episode.states[s], demo.states[s])
        assert np.isfinite(episode.logprobs[s:]).all()


@pytest.mark.parametrize("slack", [1.0, 3.0])
def test_a_demonstration_leads_then_the_combined_mode_runs(policy, slack):
    """The lead is the demonstrations' expert whatever dagger's `expert_slack`."""
    jobs = [Job("pick_place", s) for s in range(3)]
    demos = collect_episodes(jobs, "expert", num_envs=3, max_episode_steps=MAX_STEPS)
    lead = 6
    guidance = Guidance(mode="demo_start+dagger", start_step=lead, beta=0.5, expert_slack=slack)
    mixed = _guided(policy, guidance, jobs)
    policy_part = []
    for demo, episode in zip(demos, mixed, strict=True):
        who = episode.step_info[EXPERT_KEY]
        assert who[:lead].all()  # the demonstration's steps, its frame at the start step
        np.testing.assert_array_equal(episode.frames[lead], demo.frames[lead])
        labels = np.stack([episode.step_info[k] for k in LABEL_KEYS], axis=1)
        np.testing.assert_array_equal(labels[:lead], demo.action_bins[:lead])  # every state
        assert np.isfinite(labels).all()
        policy_part.append(who[lead:])
    assert 0.25 < np.concatenate(policy_part).mean() < 0.75  # then dagger's coin
    handed = _guided(
        policy,
        Guidance(mode="demo_start+takeover", start_step=lead, trigger="steps", steps=3),
        jobs,
    )
    for episode in handed:  # the takeover step counts the policy's own steps
        who = episode.step_info[EXPERT_KEY]
        assert who[:lead].all() and not who[lead : lead + 3].any() and who[lead + 3 :].all()
        assert np.isfinite(episode.logprobs[lead : lead + 3]).all()


def test_a_start_fraction_sets_each_tasks_first_start_from_its_demonstrations():
    jobs = [Job(t, s) for t in ("reach", "pick_place") for s in range(4)]
    demos = collect_episodes(jobs, "expert", num_envs=4, max_episode_steps=60)
    median = {
        t: np.median([e.length for e in demos if e.task_id == t]) for t in ("reach", "pick_place")
    }
    guidance = Guidance(mode="demo_start", start_fraction=0.5, start_back=4, start_success=0.5)
    first = first_start_steps(guidance, demos)
    assert first == {t: int(round(0.5 * m)) for t, m in median.items()}
    assert first["pick_place"] > first["reach"] + 4  # one setting, two lengths of task
    assert first_start_steps(Guidance(mode="demo_start"), demos) == {}  # start_step as set
    tasks = ("reach", "pick_place", "push")  # push has no demonstration: start_step
    rounds = [{"guide/success_rate/pick_place": 0.6, "guide/success_rate/reach": 0.2}]
    steps = next_start_steps(guidance, tasks, rounds, first)
    assert steps == {
        "reach": first["reach"],
        "pick_place": first["pick_place"] - 4,
        "push": guidance.start_step,
    }
    with pytest.raises(ValueError, match="start_fraction must lie in"):
        Guidance(mode="demo_start", start_fraction=1.5)


GUIDED = [
    "--preset",
    "tiny",
    "rounds=2",
    'optimize.sequence=["sft"]',
    "eval.videos_per_task=0",
    'collect.guidance.mode="demo_start"',
    "collect.guidance.start_step=6",
    "collect.guidance.start_back=4",
    "collect.guidance.start_success=0.0",
]


def _campaign(args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cli = [sys.executable, "-m", "train.cli", "run"]
    return subprocess.run(cli + args, env=env, capture_output=True, text=True, timeout=1200)


def _metrics(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.endswith(("per_s", "seconds"))} for r in rows]


@pytest.fixture(scope="module")
def guided_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("guided") / "run"
    proc = _campaign([*GUIDED, "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_a_guided_campaign_records_who_acted_and_moves_its_start_back(guided_run):
    rows = _metrics(guided_run)
    assert "guide/expert_share" not in rows[0]  # demonstrations are not guided
    names = sorted(k.split("/")[-1] for k in rows[1] if k.startswith("guide/start_step/"))
    assert names and [rows[1][f"guide/start_step/{n}"] for n in names] == [6.0] * len(names)
    assert [rows[2][f"guide/start_step/{n}"] for n in names] == [2.0] * len(names)
    assert 0 < rows[2]["guide/expert_share"] < rows[1]["guide/expert_share"] < 1
    rollouts = EpisodeStore(guided_run / "episodes").load(where={"round": 2})
    assert all((e.step_info[EXPERT_KEY][:2] == 1).all() for e in rollouts)
    assert all(not e.step_info[EXPERT_KEY][2:].any() for e in rollouts)
    # held-out evaluation is never guided: the final checkpoint evaluated on its own (as the
    # campaign evaluates: its env slots and chunks) gives the campaign's held-out rates
    assert "eval/success_rate" in rows[2] and "guide/success_rate/ReachBall-v0" in rows[2]
    cli = [sys.executable, "-m", "train.cli", "eval", str(guided_run / "checkpoints" / "round_2")]
    args = ["--tasks", "reach", "press_button", "--episodes", "6", "--num-envs", "16"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [*cli, *args, "--chunk-episodes", "8", "--json"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    alone = json.loads(proc.stdout)
    for key in ("eval/success_rate/ReachBall-v0", "eval/success_rate/PressButton-v0"):
        assert alone[key] == rows[2][key]


@pytest.mark.slow
def test_a_killed_guided_campaign_resumes_to_the_same_result(guided_run, tmp_path):
    out = tmp_path / "killed"
    cli = [sys.executable, "-m", "train.cli", "run", *GUIDED, "--out", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cli, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 900
    while time.time() < deadline and not (out / "partial" / "round_1.json").is_file():
        assert proc.poll() is None, "campaign ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # after round 1's record, before round 2's start steps
    proc.wait()
    resumed = _campaign(["--resume", "--out", str(out)])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _metrics(out) == _metrics(guided_run)

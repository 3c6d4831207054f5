"""Verification is one stage: each episode's decision is computed once (every verifier runs once
over the round's episodes) and organize learns from those decisions without verifying again."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from episodes_helper import episodes

from train.campaign.config import OrganizeSection
from train.organize.round_data import build_round_data
from verifiers import EnvironmentVerifier, TimeLimitRule
from verifiers.episode import Verdict, Verified
from verifiers.stage import (
    decide,
    decisions_from_verdicts,
    verdicts_of,
    verify_metrics,
    verify_round,
)


class Counting:
    """The environment's verdicts, counting the episodes it was asked about."""

    name = "environment"
    judges_outcome = True

    def __init__(self):
        self.seen: list[str] = []

    def verify(self, eps):
        self.seen += [e.episode_id for e in eps]
        return EnvironmentVerifier().verify(eps)


class Veto:
    """A rule that fails the episodes it names (and has no opinion on the others)."""

    name = "veto"
    judges_outcome = False

    def __init__(self, ids):
        self.ids = set(ids)
        self.calls = 0

    def verify(self, eps):
        self.calls += 1
        return [
            Verdict(e.episode_id, self.name, False, 0.0, "vetoed")
            if e.episode_id in self.ids
            else Verdict(e.episode_id, self.name, None, 0.5, "no opinion")
            for e in eps
        ]


@pytest.fixture(scope="module")
def round_episodes():
    """Reach, per seed: an expert success, and the same run told to reach another
    ball (a failure that reached a ball it was not asked for: relabelling turns it into a
    success)."""
    out = []
    for seed in (0, 1, 2):
        (success,) = episodes("reach", (seed,), "expert", tag="k0")
        other = next(g for g in ("red", "green", "blue", "yellow") if g not in success.instruction)
        wrong = replace(
            success,
            instruction=success.instruction.replace(success.instruction.split()[-2], other),
            is_success=False,
            truncated=True,
            achieved=list(success.achieved),
            achieved_at={},
            episode_id=success.episode_id.replace("/k0", "/k1"),
        )
        out += [success, wrong]
    return out


def test_each_decision_is_computed_once_and_organize_uses_it(round_episodes, monkeypatch):
    success = next(e for e in round_episodes if e.is_success)
    failures = [e for e in round_episodes if not e.is_success]
    counting, veto = Counting(), Veto({success.episode_id, failures[0].episode_id})
    decisions = decide(round_episodes, [counting, veto])
    assert counting.seen == [e.episode_id for e in round_episodes] and veto.calls == 1
    assert [d.passed for d in decisions] == [
        e.is_success and e.episode_id != success.episode_id for e in round_episodes
    ]
    verified = verify_round(round_episodes, decisions, relabel_failures=True)
    relabelled_from = {e.episode_id.split("/relabel")[0] for e in verified.relabelled}
    assert failures[0].episode_id not in relabelled_from  # a rule failure is not relabelled
    assert {f.episode_id for f in failures[1:]} <= relabelled_from

    def no_verifying(*args, **kwargs):
        raise AssertionError("organize verified an episode again")

    monkeypatch.setattr(EnvironmentVerifier, "verify", no_verifying)
    data = build_round_data(Verified([], []), [verified], OrganizeSection(dedup=False), seed=0)
    assert len(counting.seen) == len(round_episodes) and veto.calls == 1
    sft_ids = {e.episode_id for e in data.sft}
    assert success.episode_id not in sft_ids  # the vetoed success is not learnt from
    assert {
        e.episode_id for e, d in zip(round_episodes, decisions, strict=True) if d.passed
    } <= sft_ids
    assert {e.episode_id for e in verified.relabelled} <= sft_ids
    assert verify_metrics(decisions)["verify/passed"] == sum(d.passed for d in decisions)


def test_uniform_rl_groups_are_kept_only_on_request(round_episodes):
    """A learned value baseline (`optimize.rl.baseline = "value"`) learns from RL groups whose
    outcomes are all equal; the group baseline's organize stage drops them."""
    failures = [e for e in round_episodes if not e.is_success]
    twice = failures + [replace(e, episode_id=e.episode_id + "/again") for e in failures]
    eps = [e for e in round_episodes if e.is_success] + twice
    decisions = decide(eps, [EnvironmentVerifier()])
    verified = verify_round(eps, decisions, relabel_failures=False)
    organize = OrganizeSection(dedup=False)
    dropped = build_round_data(Verified([], []), [verified], organize, seed=0)
    kept = build_round_data(Verified([], []), [verified], organize, 0, uniform_rl_groups=True)
    assert dropped.rl == [] and dropped.metrics["organize/rl_groups"] == 0
    assert len(kept.rl) == len(failures) and kept.metrics["organize/rl_groups"] == len(failures)
    assert all(g.rewards.tolist() == [0.0, 0.0] for g in kept.rl)


def test_stored_verdicts_give_back_the_same_decisions(round_episodes):
    verifiers = [EnvironmentVerifier(), TimeLimitRule(), Veto({round_episodes[0].episode_id})]
    decisions = decide(round_episodes, verifiers)
    outcome = {v.name for v in verifiers if v.judges_outcome}
    assert outcome == {"environment", "time_limit"}
    again = decisions_from_verdicts(round_episodes, verdicts_of(decisions), outcome)
    assert again == decisions
    assert decisions[0].rule_failed and not any(d.rule_failed for d in decisions[1:])
    with pytest.raises(ValueError, match="no verdict for 1 episode"):
        stored = [v for v in verdicts_of(decisions) if v.episode_id != decisions[0].episode_id]
        decisions_from_verdicts(round_episodes, stored, outcome)


def test_a_verifier_that_skips_an_episode_or_is_not_one_is_named(round_episodes):
    class Short:
        name = "short"
        judges_outcome = False

        def verify(self, eps):
            return []

    with pytest.raises(ValueError, match="'short' returned 0 verdicts for 6 episodes"):
        decide(round_episodes, [Short()])
    with pytest.raises(TypeError, match="expected a `verifiers.base.Verifier`"):
        decide(round_episodes, [lambda eps: []])
    with pytest.raises(ValueError, match="no verifiers"):
        decide(round_episodes, [])
    with pytest.raises(ValueError, match="do not follow the episodes"):
        Verified(round_episodes, decide(round_episodes[1:], [EnvironmentVerifier()]))


@pytest.mark.slow
def test_a_campaign_verifies_each_rollout_once(tmp_path):
    from train.campaign.config import load_campaign_config
    from train.campaign.loop import Campaign
    from train.collect.store import EpisodeStore

    config = load_campaign_config(
        preset="tiny",
        overrides=[
            'tasks=["reach"]',
            'optimize.sequence=["sft"]',
            "demos.episodes_per_task=2",
            "eval.episodes_per_task=2",
            "eval.videos_per_task=0",
        ],
    )
    campaign = Campaign(config, tmp_path / "run")
    counting = Counting()
    campaign._verifiers = [counting, TimeLimitRule()]
    campaign.run()
    rollouts = EpisodeStore(tmp_path / "run" / "episodes").load(with_frames=False)
    ids = sorted(e.episode_id for e in rollouts if e.round >= 1)
    assert len(ids) == config.rounds * config.collect.episodes_per_task
    assert sorted(counting.seen) == ids  # round 2 replays round 1's successes unverified
    assert np.all(np.unique(counting.seen, return_counts=True)[1] == 1)


def test_the_organize_section_shapes_the_round_data(round_episodes):
    decisions = decide(round_episodes, [EnvironmentVerifier()])
    verified = verify_round(round_episodes, decisions, relabel_failures=True)
    full = build_round_data(Verified([], []), [verified], OrganizeSection(dedup=False), seed=0)
    capped = build_round_data(
        Verified([], []), [verified], OrganizeSection(dedup=False, max_per_task=2), seed=0
    )
    assert len(full.sft) == 6 and len(capped.sft) == 2  # 3 successes + 3 relabelled, capped


def test_rl_groups_by_scene_hold_a_scene_under_its_different_instructions(round_episodes):
    from train.organize.datasets import build_rl_groups, mixed_groups

    decisions = decide(round_episodes, [EnvironmentVerifier()])
    assert build_rl_groups(round_episodes, decisions, drop_uniform=True) == []
    groups = build_rl_groups(round_episodes, decisions, drop_uniform=True, by="scene")
    assert [g.env_seed for g in groups] == [0, 1, 2]
    for group in groups:  # the success and the run told to reach another ball
        assert group.rewards.tolist() == [1.0, 0.0] and group.instruction == ""
        assert len({e.instruction for e in group.episodes}) == 2
    assert mixed_groups(round_episodes, "scene") == {"autodidact/ReachBall-v0": 3}
    with pytest.raises(ValueError, match="unknown grouping 'task'"):
        build_rl_groups(round_episodes, decisions, by="task")
    config = OrganizeSection(rl_groups="scene", dedup=False)
    data = build_round_data(
        Verified([], []), [verify_round(round_episodes, decisions, False)], config, seed=0
    )
    assert len(data.rl) == 3

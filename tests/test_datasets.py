"""The three dataset builders: SFT set, RL groups, DPO pairs, on real episodes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from episodes_helper import episodes

from train.organize.datasets import (
    DPOPair,
    RLGroup,
    build_dpo_pairs,
    build_rl_groups,
    build_sft_set,
)
from verifiers import AllOf, ContactForceRule, EnvironmentVerifier, relabel
from verifiers.stage import decide

SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def pool():
    """Per reach seed: two identical expert demos, two perturbed-expert runs, two random runs."""
    out = []
    for tag in ("k0", "k1"):
        for mode in ("expert", "perturbed", "random"):
            out += episodes("reach", SEEDS, mode, tag=tag)
    return out


def key(e):
    return (e.task_id, e.env_seed, e.instruction)


def test_sft_set_keeps_verified_successes_without_duplicates(pool):
    sft = build_sft_set(pool)
    assert sft and all(e.is_success for e in sft)
    assert len(sft) < sum(e.is_success for e in pool), (
        "identical expert demos were not deduplicated"
    )
    signatures = [(*key(e), e.action_bins.tobytes()) for e in sft]
    assert len(set(signatures)) == len(signatures)
    assert {e.episode_id for e in sft} >= {
        e.episode_id for e in pool if e.policy_id == "expert" and e.episode_id.endswith("k0")
    }
    assert len(build_sft_set(pool, dedup=False)) == sum(e.is_success for e in pool)


def test_sft_set_applies_decisions(pool):
    decisions = decide(pool, [EnvironmentVerifier(), ContactForceRule(max_force=100.0)])
    sft = build_sft_set(pool, decisions, dedup=False)
    rough = {
        e.episode_id for e in pool if e.step_info["contact_force"].max() > 100.0 and e.is_success
    }
    assert rough, "no successful episode had a contact above 100 N"
    assert {e.episode_id for e in sft} == {e.episode_id for e in pool if e.is_success} - rough
    with pytest.raises(ValueError, match="one decision per episode"):
        build_sft_set(pool, decisions[:-1])
    combined = decide(pool, [AllOf(EnvironmentVerifier(), ContactForceRule(max_force=100.0))])
    assert [d.passed for d in combined] == [d.passed for d in decisions]


def test_sft_set_balances_tasks():
    reach = list(episodes("reach", tuple(range(6)), "expert"))
    push = [e for m in ("expert", "perturbed") for e in episodes("push", tuple(range(6)), m)]
    push = [e for e in push if e.is_success][:3]
    assert all(e.is_success for e in reach) and push
    down = Counter(e.task_id for e in build_sft_set(reach + push, balance="downsample"))
    assert list(down.values()) == [len(push), len(push)]
    up = build_sft_set(reach + push, balance="upsample")
    assert list(Counter(e.task_id for e in up).values()) == [6, 6]
    assert {e.episode_id for e in up} == {e.episode_id for e in reach + push}
    capped = Counter(e.task_id for e in build_sft_set(reach + push, max_per_task=3))
    assert sorted(capped.values()) == sorted([3, min(3, len(push))])
    with pytest.raises(ValueError, match="unknown balance mode 'even'"):
        build_sft_set(reach, balance="even")


def test_rl_groups_share_seed_and_instruction(pool):
    groups = build_rl_groups(pool)
    assert len(groups) == len(SEEDS)
    for group in groups:
        assert isinstance(group, RLGroup) and len(group.episodes) == 6
        assert {key(e) for e in group.episodes} == {
            (group.task_id, group.env_seed, group.instruction)
        }
        assert group.rewards.dtype == np.float32
        np.testing.assert_array_equal(group.rewards, [float(e.is_success) for e in group.episodes])
    assert sum(len(g.episodes) for g in groups) == len(pool)
    sized = build_rl_groups(pool, group_size=4)
    assert all(len(g.episodes) == 4 for g in sized)
    assert build_rl_groups(pool, group_size=7) == []
    mixed = build_rl_groups(pool, drop_uniform=True)
    assert all(0 < g.rewards.sum() < len(g.rewards) for g in mixed)


def test_rl_groups_leave_out_relabelled_episodes():
    distracted = list(episodes("reach", (0, 1), "distracted"))
    extra = relabel(distracted)
    groups = build_rl_groups(distracted + extra, min_group_size=1)
    assert all(e.relabelled_from is None for g in groups for e in g.episodes)
    with_relabelled = build_rl_groups(distracted + extra, min_group_size=1, include_relabelled=True)
    assert sum(len(g.episodes) for g in with_relabelled) == len(distracted) + len(extra)


def test_dpo_pairs_pair_a_success_with_a_failure_of_the_same_start(pool):
    pairs = build_dpo_pairs(pool)
    assert pairs
    expected = 0
    for seed in SEEDS:
        members = [e for e in pool if e.env_seed == seed]
        wins = sum(e.is_success for e in members)
        expected += wins * (len(members) - wins)
    assert len(pairs) == expected
    for pair in pairs:
        assert isinstance(pair, DPOPair)
        assert pair.chosen.is_success and not pair.rejected.is_success
        assert key(pair.chosen) == key(pair.rejected)
    capped = build_dpo_pairs(pool, max_pairs_per_group=2)
    per_seed = Counter(p.chosen.env_seed for p in capped)
    assert max(per_seed.values()) <= 2
    for seed in per_seed:
        chosen = [p.chosen.episode_id for p in capped if p.chosen.env_seed == seed]
        rejected = [p.rejected.episode_id for p in capped if p.chosen.env_seed == seed]
        assert len(set(chosen)) == len(chosen) and len(set(rejected)) == len(rejected)


def test_dpo_pairs_follow_decisions(pool):
    decisions = decide(pool, [ContactForceRule(max_force=100.0)])
    outcome = {d.episode_id: d.passed for d in decisions}
    for pair in build_dpo_pairs(pool, decisions):
        assert outcome[pair.chosen.episode_id] and not outcome[pair.rejected.episode_id]


def test_hindsight_views_judge_every_sample_against_every_instruction_of_its_scene():
    """Four samples of one scene, told in the scene's template ("reach the ... ball"; the
    environment names what a state achieved canonically, "touch the ... ball"): a success told
    red; a failure told blue that reached red; a failure told red that reached nothing; a
    failure told blue that reached green. Under each goal the scene's four samples are judged
    anew, every view phrased as its sample was told."""
    from dataclasses import replace

    from train.organize.datasets import hindsight_views
    from verifiers.relabel import relabelled_source

    (base,) = episodes("reach", (0,), "expert")
    red, blue, green = (f"reach the {c} ball" for c in ("red", "blue", "green"))
    touch = {c: f"touch the {c} ball" for c in ("red", "blue", "green")}

    def sample(k, told, success, achieved):
        return replace(
            base, instruction=told, is_success=success, truncated=not success,
            achieved=[touch[c] for c in achieved], achieved_at={},
            episode_id=f"{base.episode_id}/k{k}",
            logprobs=np.full(base.logprobs.shape, -0.5, dtype=np.float32),
        )  # fmt: skip

    scene = [
        sample(0, red, True, ["red"]),
        sample(1, blue, False, ["red"]),
        sample(2, red, False, []),
        sample(3, blue, False, ["green"]),
    ]
    relabelled = relabel(scene)
    assert [relabelled_source(e) for e in relabelled] == [scene[1].episode_id, scene[3].episode_id]
    views = hindsight_views(scene, None, relabelled)
    key = (base.task_id, int(base.env_seed))
    assert list(views) == [(*key, touch["red"]), (*key, touch["blue"]), (*key, touch["green"])]
    red_view, blue_view, green_view = views.values()
    assert [ok for _, ok in red_view] == [True, True, False, False]
    assert [ok for _, ok in blue_view] == [False] * 4
    assert [ok for _, ok in green_view] == [False, False, False, True]
    for instruction, view in zip((red, blue, green), views.values(), strict=True):
        assert all(e.instruction == instruction for e, _ in view)
        for (e, _), source in zip(view, scene, strict=True):
            sampled = e is source  # only a sample under the instruction it was told keeps it all
            assert sampled == (source.instruction == instruction)
            assert np.isfinite(e.logprobs).all() == sampled, e.episode_id
            assert (e.relabelled_from is None) == sampled
            np.testing.assert_array_equal(e.action_bins, source.action_bins)
    # a relabelled view is the relabelling (the environment's decision); a failure view is named
    assert red_view[1][0].episode_id == relabelled[0].episode_id
    assert relabelled[0].instruction == touch["red"]  # the view rephrases it as told
    assert red_view[3][0].episode_id == f"{scene[3].episode_id}/as:{red}"

    groups = build_rl_groups(scene, by="hindsight", drop_uniform=True, relabelled=relabelled)
    assert [(g.instruction, g.rewards.tolist()) for g in groups] == [
        (touch["red"], [1.0, 1.0, 0.0, 0.0]),
        (touch["green"], [0.0, 0.0, 0.0, 1.0]),
    ]
    # per sample, judged against the scene's instructions (red, blue, green): only the samples
    # that achieved something carry signal, and none that achieved nothing is pushed down
    per_sample = build_rl_groups(scene, by="trajectory", drop_uniform=True, relabelled=relabelled)
    assert [(g.instruction, g.rewards.tolist()) for g in per_sample] == [
        ("sample 0", [1.0, 0.0, 0.0]),
        ("sample 1", [1.0, 0.0, 0.0]),
        ("sample 3", [0.0, 0.0, 1.0]),
    ]
    assert [e.instruction for e in per_sample[2].episodes] == [red, blue, green]
    assert {e.action_bins.tobytes() for e in per_sample[2].episodes[:2]} == {
        scene[3].action_bins.tobytes()
    }
    # without the verified relabellings, the environment's are made (dynamic sampling counts)
    same = build_rl_groups(scene, by="hindsight", drop_uniform=True)
    assert [g.rewards.tolist() for g in same] == [g.rewards.tolist() for g in groups]
    # per told instruction, only the two samples told red carry signal
    assert [g.rewards.tolist() for g in build_rl_groups(scene, drop_uniform=True)] == [[1.0, 0.0]]
    pairs = build_dpo_pairs(scene, by="hindsight", relabelled=relabelled)
    assert len(pairs) == 2 * 2 + 1 * 3
    assert all(p.chosen.instruction == p.rejected.instruction for p in pairs)
    assert all(p.rejected.is_success is False for p in pairs)
    assert len(build_dpo_pairs(scene)) == 1 * 1  # told red: the success and the failure
    with pytest.raises(ValueError, match="unknown DPO pairing 'scene'"):
        build_dpo_pairs(scene, by="scene")
    with pytest.raises(ValueError, match="got relabelled ones"):
        hindsight_views(scene + relabelled)

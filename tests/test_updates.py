"""SFT, RL and DPO updates on real ReachBall episodes: weights move (only LoRA's when LoRA is on),
each update improves its own objective, and runs are deterministic under a seed."""

import copy

import numpy as np
import pytest
import torch

import envs
from agent.policy import Policy
from train.collect.episodes import collect_episodes
from train.organize.datasets import DPOPair, RLGroup
from train.updates.batching import episode_steps, step_logprobs
from train.updates.config import DPOConfig, RLConfig, SFTConfig
from train.updates.dpo import (
    backward_pairs,
    dpo_objective,
    dpo_update,
    first_split,
    pair_steps,
    step_pairs,
)
from train.updates.rl import rl_objective, rl_update, tree_steps
from train.updates.sft import sft_objective, sft_update
from verifiers.episode import Episode, Job

TASK = "reach"
SEEDS = (0, 1, 2)
MAX_STEPS = 10


def rollout(seed: int, actor, policy: Policy | None = None) -> Episode:
    """One episode of `actor` ("expert", "random" or "policy": sampled at temperature 1),
    recorded by the campaign's collector."""
    (episode,) = collect_episodes(
        [Job(envs.resolve(TASK), seed, actor)],
        policy if actor == "policy" else actor,
        seed=seed,
        max_episode_steps=MAX_STEPS,
    )
    return episode


@pytest.fixture(scope="module")
def demos() -> list[Episode]:
    episodes = [rollout(s, "expert") for s in SEEDS]
    assert all(e.is_success for e in episodes)
    return episodes


@pytest.fixture(scope="module")
def failures() -> list[Episode]:
    episodes = [rollout(s, "random") for s in SEEDS]
    assert not any(e.is_success for e in episodes)
    return episodes


@pytest.fixture(scope="module")
def rl_groups(demos) -> list[RLGroup]:
    """Per seed: an episode sampled by a fresh tiny policy (recorded log-probs; a failure) and the
    expert's success scored under that policy, as if it had sampled it."""
    policy = Policy.from_preset("tiny", seed=0)
    groups = []
    for demo in demos:
        sampled = rollout(demo.env_seed, "policy", policy)
        success = copy.copy(demo)
        success.logprobs = step_logprobs(policy, episode_steps([demo])).numpy()
        members = [success, sampled]
        rewards = np.array([float(e.is_success) for e in members], dtype=np.float32)
        assert rewards.tolist() == [1.0, 0.0]
        groups.append(RLGroup(demo.task_id, demo.env_seed, demo.instruction, members, rewards))
    return groups


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread while these tests run (restored after): on a shared, loaded 2-core
    machine two spinning threads are several times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def snapshot(policy: Policy) -> dict[str, torch.Tensor]:
    """Every weight by its name in the plain model (peft's wrapper prefixes are removed)."""
    return {
        name.replace("base_model.model.", "").replace(".base_layer", ""): p.detach().clone()
        for name, p in policy.model.named_parameters()
    }


def check_moved(policy: Policy, before: dict[str, torch.Tensor], lora: bool) -> None:
    """Weights moved; with LoRA only adapter weights moved and every base weight is unchanged."""
    after = snapshot(policy)
    changed = {n for n, p in after.items() if n not in before or not torch.equal(p, before[n])}
    assert changed, "no weight moved"
    if lora:
        assert all("lora_" in n for n in changed), sorted(n for n in changed if "lora_" not in n)
        assert any("lora_B" in n for n in changed)
        assert before.keys() <= after.keys()
    else:
        assert len(changed) > 0.5 * len(before), f"only {len(changed)} of {len(before)} moved"


@pytest.mark.parametrize("lora", [False, True])
def test_sft_update_moves_weights_and_lowers_its_loss(demos, lora):
    policy = Policy.from_preset("tiny", seed=0)
    before_loss = sft_objective(policy, demos)
    before = snapshot(policy)
    config = SFTConfig(lr=2e-3, epochs=3, batch_size=8, lora=lora, lora_rank=4)
    metrics = sft_update(policy, demos, config, seed=1)
    check_moved(policy, before, lora)
    policy.model.eval()
    after_loss = sft_objective(policy, demos)
    assert after_loss < before_loss - 0.5, (before_loss, after_loss)
    assert metrics["train/sft_loss"] < metrics["train/sft_loss_first_epoch"]
    assert metrics["train/sft_samples"] == 3 * sum(e.length for e in demos)
    assert {"train/sft_grad_norm", "train/sft_lr", "train/sft_samples_per_s"} <= metrics.keys()


@pytest.mark.parametrize("lora", [False, True])
def test_rl_update_raises_the_advantaged_episodes(rl_groups, lora):
    policy = Policy.from_preset("tiny", seed=0)
    before_obj = rl_objective(policy, rl_groups)
    assert before_obj == pytest.approx(-np.mean(advantage_per_step(rl_groups)), abs=1e-3)
    before = snapshot(policy)
    config = RLConfig(lr=1e-3, epochs=2, batch_size=16, lora=lora, kl_coef=0.1 if lora else 0.0)
    metrics = rl_update(policy, rl_groups, config)
    check_moved(policy, before, lora)
    policy.model.eval()
    assert rl_objective(policy, rl_groups) < before_obj - 0.05
    success_logprob = step_logprobs(policy, episode_steps([g.episodes[0] for g in rl_groups]))
    recorded = np.concatenate([g.episodes[0].logprobs for g in rl_groups])
    assert success_logprob.sum() > recorded.sum()
    # and the failures' actions, sampled by the policy itself, lost probability
    failure_logprob = step_logprobs(policy, episode_steps([g.episodes[1] for g in rl_groups]))
    failure_recorded = np.concatenate([g.episodes[1].logprobs for g in rl_groups])
    assert failure_logprob.sum() < failure_recorded.sum()
    assert 0.0 < metrics["train/rl_clip_frac"] < 1.0
    assert (metrics["train/kl"] > 0.0) == lora
    assert metrics["train/rl_groups_used"] == len(rl_groups)
    # the diagnostics logged every round: finite, and showing that the policy moved
    assert metrics["train/rl_approx_kl"] > 0.0 and metrics["train/rl_ratio_max"] > 1.0
    assert 0.0 < metrics["train/rl_entropy"] < np.log(256) + 1.0
    assert metrics["train/rl_advantage_std"] > 0.0 and np.isfinite(metrics["train/rl_grad_norm"])


def advantage_per_step(groups: list[RLGroup]) -> np.ndarray:
    """RLOO advantage of each step (success: 1 - 0 = 1, failure: 0 - 1 = -1)."""
    return np.concatenate(
        [[1.0 if e.is_success else -1.0] * e.length for g in groups for e in g.episodes]
    )


def test_rl_update_skips_uniform_groups_and_rejects_missing_logprobs(rl_groups, demos):
    policy = Policy.from_preset("tiny", seed=0)
    failure = rl_groups[0].episodes[1]
    uniform = RLGroup("t", 0, "x", [failure, failure], np.zeros(2, dtype=np.float32))
    before = snapshot(policy)
    metrics = rl_update(policy, [uniform], RLConfig())
    assert metrics == {"train/rl_groups_used": 0.0, "train/rl_groups_skipped": 1.0}
    assert all(torch.equal(p, before[n]) for n, p in policy.model.named_parameters())
    expert_group = RLGroup("t", 0, "x", [demos[0], rl_groups[0].episodes[1]], np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="log-probs"):
        rl_update(policy, [expert_group], RLConfig())


@pytest.mark.parametrize("lora", [False, True])
def test_dpo_update_prefers_the_successes(demos, failures, lora):
    pairs = [DPOPair(c, r) for c, r in zip(demos, failures, strict=True)]
    policy = Policy.from_preset("tiny", seed=0)
    reference = None if lora else copy.deepcopy(policy)
    before = snapshot(policy)
    config = DPOConfig(lr=1e-3, epochs=3, batch_size=2, beta=0.1, lora=lora, forward_chunk=16)
    metrics = dpo_update(policy, pairs, config)
    check_moved(policy, before, lora)
    policy.model.eval()
    result = dpo_objective(policy, pairs, config, reference=reference)
    assert result["dpo_loss"] < np.log(2) - 0.1 and result["dpo_accuracy"] == 1.0
    assert metrics["train/dpo_margin"] > 0 and 0.0 <= metrics["train/dpo_accuracy"] <= 1.0


@pytest.mark.parametrize("length_norm, nll_weight", [(False, 0.0), (True, 0.0), (False, 1.0)])
def test_dpo_chunked_backward_equals_single_pass(demos, failures, length_norm, nll_weight):
    """The two-pass chunked gradient (long trajectories) equals the one-pass gradient, for
    summed and length-normalised trajectory scores, and with the chosen NLL term."""
    pairs = [DPOPair(c, r) for c, r in zip(demos, failures, strict=True)]
    steps = pair_steps(pairs)
    policy = Policy.from_preset("tiny", seed=0)
    ref = torch.linspace(-30.0, -20.0, 2 * len(pairs)) / (30.0 if length_norm else 1.0)
    grads, losses = [], []
    for chunk in (256, 5):
        policy.model.zero_grad()
        config = DPOConfig(
            beta=0.5, forward_chunk=chunk, length_norm=length_norm, nll_weight=nll_weight
        )
        loss, metrics = backward_pairs(policy, steps, ref, config)
        assert ("chosen_nll" in metrics) == (nll_weight > 0)
        losses.append(loss)
        grads.append({n: p.grad.clone() for n, p in policy.model.named_parameters()})
    assert torch.allclose(losses[0], losses[1])
    assert any(g.abs().max() > 0 for g in grads[0].values())
    for name, grad in grads[0].items():
        assert torch.allclose(grad, grads[1][name], rtol=1e-4, atol=1e-7), name


def test_accumulation_and_chunking_equal_the_larger_batch(demos):
    """Two accumulated micro-batches of n/2 steps, each in forward chunks of 5, give the gradient
    (its norm, before clipping) and the step of one batch of n in one forward pass."""
    data = demos + demos  # an even number of steps
    n = sum(e.length for e in data)
    results, norms = [], []
    for batch_size, accum, chunk in ((n, 1, 64), (n // 2, 2, 5)):
        policy = Policy.from_preset("tiny", seed=0)
        config = SFTConfig(
            lr=1e-3, batch_size=batch_size, grad_accum_steps=accum, forward_chunk=chunk,
            max_steps=1, max_grad_norm=None,
        )  # fmt: skip
        norms.append(sft_update(policy, data, config)["train/sft_grad_norm"])
        results.append(snapshot(policy))
    assert norms[0] == pytest.approx(norms[1], rel=1e-5)
    # Adam's first step is lr * sign(g) except where |g| ~ eps; allow rounding there
    for name, value in results[0].items():
        assert torch.allclose(value, results[1][name], atol=1e-4), name


def test_same_seed_same_weights(demos):
    weights = []
    for seed in (3, 3, 4):
        policy = Policy.from_preset("tiny", seed=0)
        sft_update(policy, demos, SFTConfig(lr=1e-3, batch_size=4, max_steps=3), seed=seed)
        weights.append(snapshot(policy))
    assert all(torch.equal(weights[0][n], weights[1][n]) for n in weights[0])
    assert not all(torch.equal(weights[0][n], weights[2][n]) for n in weights[0])


def test_updates_reject_episodes_without_frames(demos):
    bare = copy.copy(demos[0])
    bare.frames = None
    with pytest.raises(ValueError, match="no frames"):
        sft_update(Policy.from_preset("tiny", seed=0), [bare], SFTConfig())


def test_dpo_length_norm_scores_the_mean_token_log_prob(demos, failures):
    pairs = [DPOPair(c, r) for c, r in zip(demos, failures, strict=True)]
    policy = Policy.from_preset("tiny", seed=0)
    steps = pair_steps(pairs)
    per_step = step_logprobs(policy, steps).sum(-1)
    trajectory = torch.from_numpy(steps.episode_index)
    n = 2 * len(pairs)
    sums = torch.zeros(n).index_add(0, trajectory, per_step)
    tokens = torch.bincount(trajectory, minlength=n) * steps.bins.shape[-1]
    from train.updates.dpo import trajectory_weights

    assert torch.allclose(trajectory_weights(trajectory, n, 4, True) * sums, sums / tokens)
    assert torch.equal(trajectory_weights(trajectory, n, 4, False), torch.ones(n))
    # with the policy as its own reference every implicit reward is 0: loss log 2 either way
    for length_norm in (False, True):
        m = dpo_objective(policy, pairs, DPOConfig(length_norm=length_norm))
        assert m["dpo_loss"] == pytest.approx(np.log(2), abs=1e-5)


def test_rl_target_kl_stops_the_update_early(rl_groups):
    runs = {}
    for target in (0.0, 1e-4):
        policy = Policy.from_preset("tiny", seed=0)
        config = RLConfig(lr=1e-3, epochs=4, batch_size=4, target_kl=target)
        runs[target] = rl_update(policy, rl_groups, config)
    assert runs[0.0]["train/rl_stopped_by_kl"] == 0.0
    assert runs[1e-4]["train/rl_stopped_by_kl"] == 1.0
    steps = "train/rl_optimizer_steps"
    assert 1 <= runs[1e-4][steps] < runs[0.0][steps]
    with pytest.raises(ValueError, match="target_kl must be >= 0"):
        RLConfig(target_kl=-1.0)


def test_rl_hindsight_views_take_the_entering_policys_logprobs(rl_groups):
    """A hindsight view (`train.organize.datasets.hindsight_views`: an episode judged against an
    instruction it was not told) has no behaviour log-probs: its ratio starts at 1 against the
    policy entering the update, and the update raises its actions under that instruction."""
    from dataclasses import replace

    views = [
        RLGroup(
            g.task_id, g.env_seed, g.instruction,
            [replace(g.episodes[0], relabelled_from="told something else",
                     logprobs=np.full_like(g.episodes[0].logprobs, np.nan)), g.episodes[1]],
            g.rewards,
        )
        for g in rl_groups
    ]  # fmt: skip
    policy = Policy.from_preset("tiny", seed=0)
    assert rl_objective(policy, views) == pytest.approx(
        -np.mean(advantage_per_step(views)), abs=1e-3
    )
    entering = step_logprobs(policy, episode_steps([g.episodes[0] for g in views]))
    metrics = rl_update(policy, views, RLConfig(lr=1e-3, epochs=2, batch_size=16))
    view_steps = sum(g.episodes[0].length for g in views)
    total = sum(e.length for g in views for e in g.episodes)
    assert metrics["train/rl_hindsight_step_frac"] == pytest.approx(view_steps / total)
    policy.model.eval()
    after = step_logprobs(policy, episode_steps([g.episodes[0] for g in views]))
    assert after.sum() > entering.sum()
    # an episode the policy did not sample, with no relabelling behind it, is still refused
    with pytest.raises(ValueError, match="log-probs"):
        rl_update(policy, [replace(views[0], episodes=[replace(views[0].episodes[0],
                  relabelled_from=None), views[0].episodes[1]])], RLConfig())  # fmt: skip


def test_rl_demo_weight_learns_the_demonstrations_beside_the_groups(rl_groups, demos, failures):
    """`demo_weight` adds the demonstrations' cross-entropy to every minibatch (DAPG): their
    actions rise; with `pg_weight=0` the rollouts' outcomes are ignored (the control), so the
    sampled failures' actions are not pushed down as they are with the policy-gradient term."""
    demo_steps = episode_steps(failures)  # demonstrations the groups do not hold
    runs = {}
    for pg_weight in (1.0, 0.0):
        policy = Policy.from_preset("tiny", seed=0)
        before = step_logprobs(policy, demo_steps)
        config = RLConfig(lr=1e-3, epochs=2, batch_size=8, demo_weight=1.0, pg_weight=pg_weight)
        metrics = rl_update(policy, rl_groups, config, demos=failures)
        policy.model.eval()
        assert step_logprobs(policy, demo_steps).sum() > before.sum() + 1.0
        assert np.isfinite(metrics["train/rl_demo_nll"]) and metrics["train/rl_demo_nll"] > 0
        runs[pg_weight] = step_logprobs(policy, episode_steps([g.episodes[1] for g in rl_groups]))
    recorded = np.concatenate([g.episodes[1].logprobs for g in rl_groups])
    assert runs[1.0].sum() < recorded.sum() and runs[1.0].sum() < runs[0.0].sum()
    with pytest.raises(ValueError, match="needs demonstrations"):
        rl_update(Policy.from_preset("tiny", seed=0), rl_groups, RLConfig(demo_weight=1.0))
    with pytest.raises(ValueError, match="pg_weight=0 needs demo_weight"):
        RLConfig(pg_weight=0.0)


def test_dpo_demo_weight_learns_the_demonstrations(demos, failures):
    """`demo_weight` adds the demonstrations' cross-entropy: here the demonstrations stand-in is
    the rejected trajectories, which DPO alone pushes down and the demo term lifts."""
    pairs = [DPOPair(c, r) for c, r in zip(demos, failures, strict=True)]
    rejected = episode_steps(failures)
    after = {}
    for weight in (0.0, 5.0):
        policy = Policy.from_preset("tiny", seed=0)
        config = DPOConfig(lr=1e-3, epochs=2, batch_size=2, demo_weight=weight)
        metrics = dpo_update(policy, pairs, config, seed=0, demos=failures)
        policy.model.eval()
        after[weight] = step_logprobs(policy, rejected).sum()
        assert ("train/dpo_demo_nll" in metrics) == (weight > 0)
    assert after[5.0] > after[0.0] + 1.0
    assert np.isfinite(metrics["train/dpo_demo_nll"])
    with pytest.raises(ValueError, match="needs demonstrations"):
        dpo_update(policy, pairs, config)


def test_rl_augment_shift_moves_the_images_and_still_learns(rl_groups):
    """`augment_shift` translates the update's images (the ratio stays against the recorded
    log-probs): the update differs from the unshifted one, repeats with its seed, and still
    raises the successes' actions."""
    weights = {}
    for shift, seed in ((0, 0), (2, 0), (2, 0)):
        policy = Policy.from_preset("tiny", seed=0)
        rl_update(policy, rl_groups, RLConfig(lr=1e-3, epochs=2, batch_size=8,
                  augment_shift=shift), seed=seed)  # fmt: skip
        weights.setdefault(shift, []).append(snapshot(policy))
    same = weights[2][0].keys()
    assert all(torch.equal(weights[2][0][n], weights[2][1][n]) for n in same)
    assert not all(torch.equal(weights[0][0][n], weights[2][0][n]) for n in same)
    policy.model.eval()
    success = step_logprobs(policy, episode_steps([g.episodes[0] for g in rl_groups]))
    assert success.sum() > np.concatenate([g.episodes[0].logprobs for g in rl_groups]).sum()
    with pytest.raises(ValueError, match="augment_shift must be >= 0"):
        RLConfig(augment_shift=-1)


def test_rl_value_baseline_learns_from_every_group_with_per_step_credit(rl_groups):
    """With a learned critic (`baseline="value"`) a group whose samples all failed is used (the
    group baseline skips it), the successes' actions gain probability and the failures' lose
    it (lambda 1: every success step's advantage is 1 - V > 0, every failure's -V < 0), and the
    critic's diagnostics are finite."""
    failure = rl_groups[0].episodes[1]
    uniform = RLGroup("t", 0, "x", [failure, failure], np.zeros(2, dtype=np.float32))
    config = RLConfig(lr=1e-3, epochs=2, batch_size=16, baseline="value", gae_lambda=1.0)
    policy = Policy.from_preset("tiny", seed=0)
    metrics = rl_update(policy, [uniform], config)
    assert metrics["train/rl_groups_used"] == 1.0 and metrics["train/rl_groups_skipped"] == 0.0
    assert metrics["train/rl_advantage_mean"] < 0.0  # a failure's every step: -V < 0
    policy.model.eval()
    assert step_logprobs(policy, episode_steps([failure])).sum() < failure.logprobs.sum()

    policy = Policy.from_preset("tiny", seed=0)
    metrics = rl_update(policy, rl_groups, config, seed=3)
    policy.model.eval()
    successes = [g.episodes[0] for g in rl_groups]
    failures = [g.episodes[1] for g in rl_groups]
    success_before = np.concatenate([e.logprobs for e in successes]).sum()
    failure_before = np.concatenate([e.logprobs for e in failures]).sum()
    assert step_logprobs(policy, episode_steps(successes)).sum() > success_before
    assert step_logprobs(policy, episode_steps(failures)).sum() < failure_before
    for key in ("train/value_loss", "train/value_explained_variance", "train/value_mean"):
        assert np.isfinite(metrics[key]), key
    assert 0.0 < metrics["train/value_mean"] < 1.0
    assert metrics["train/value_steps"] == sum(e.length for g in rl_groups for e in g.episodes)
    assert metrics["train/rl_seconds"] > 0.0
    with pytest.raises(ValueError, match="baseline"):
        RLConfig(baseline="critic")
    with pytest.raises(ValueError, match="gae_lambda"):
        RLConfig(gae_lambda=1.5)


def test_rl_tree_baseline_credits_only_where_the_samples_part(rl_groups):
    """With the prefix-tree baseline (`baseline="tree"`) a group's credit sits on the tokens
    where its samples first differ (here the expert's success and the policy's failure part at
    some token of their first steps; everything after is 0), the success's token gains
    probability there and the failure's loses it."""
    steps, advantages, skipped = tree_steps(rl_groups, chunk=1)
    assert skipped == 0 and advantages.shape == (len(steps), steps.bins.shape[1])
    for g in range(len(rl_groups)):
        rows = np.isin(steps.episode_index, [2 * g, 2 * g + 1])
        credited = advantages[torch.from_numpy(rows)]
        assert (credited != 0).sum() == 2  # one token each: they are alone after the split
        assert sorted(credited[credited != 0].tolist()) == [-0.5, 0.5]
    config = RLConfig(lr=1e-3, epochs=2, batch_size=16, baseline="tree")
    policy = Policy.from_preset("tiny", seed=0)
    metrics = rl_update(policy, rl_groups, config, seed=3)
    assert metrics["train/rl_groups_used"] == len(rl_groups)
    policy.model.eval()
    new = step_logprobs(policy, steps)
    old = torch.from_numpy(steps.old_logprobs)
    split = advantages != 0
    assert (
        (new - old)[split] * advantages[split]
    ).min() > 0  # up for the success, down for the failure


def test_dpo_step_level_compares_the_step_where_the_pair_parts(demos, failures):
    """`level="step"` cuts each pair to the step where the success and the failure first took
    different tokens (same scene: the same observation up to there), scores that one step, and
    raises the chosen step's log-prob against the rejected one's; a pair that never parts is
    dropped and counted."""
    pairs = [DPOPair(c, r) for c, r in zip(demos, failures, strict=True)]
    cut = step_pairs(pairs)
    assert len(cut) == len(pairs)
    for pair, short in zip(pairs, cut, strict=True):
        t = first_split(pair.chosen, pair.rejected)
        assert (pair.chosen.action_bins[:t] == pair.rejected.action_bins[:t]).all()
        assert short.chosen.length == short.rejected.length == 1
        np.testing.assert_array_equal(short.chosen.frames[0], pair.chosen.frames[t])
        np.testing.assert_array_equal(short.chosen.action_bins[0], pair.chosen.action_bins[t])
        np.testing.assert_array_equal(short.rejected.action_bins[0], pair.rejected.action_bins[t])
    same = DPOPair(demos[0], demos[0])
    assert first_split(demos[0], demos[0]) is None and step_pairs([same]) == []

    policy = Policy.from_preset("tiny", seed=0)
    reference = copy.deepcopy(policy)
    config = DPOConfig(lr=1e-3, epochs=5, batch_size=2, beta=0.5, level="step")
    metrics = dpo_update(policy, [*pairs, same], config)
    assert metrics["train/dpo_pairs_used"] == len(pairs)
    assert metrics["train/dpo_pairs_offered"] == len(pairs) + 1
    policy.model.eval()
    result = dpo_objective(policy, cut, config, reference=reference)
    assert result["dpo_loss"] < np.log(2) - 0.1 and result["dpo_accuracy"] == 1.0
    assert dpo_update(Policy.from_preset("tiny", seed=0), [same], config) == {
        "train/dpo_pairs_used": 0.0,
        "train/dpo_pairs_offered": 1.0,
    }
    with pytest.raises(ValueError, match="level"):
        DPOConfig(level="token")

"""The losses against hand-computed values on small tensors, and the schedule's shape."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from train.updates.config import OptimConfig, RLConfig
from train.updates.losses import dpo_loss, group_advantages, grpo_loss, kl_k3, sft_loss
from train.updates.optim import lr_factor, num_optimizer_steps
from train.updates.rl import rl_objective, tree_advantages


def test_sft_loss_is_mean_negative_logprob_over_unmasked_tokens():
    logprobs = torch.log(torch.tensor([[0.5, 0.25], [0.125, 1.0]]))
    assert sft_loss(logprobs).item() == pytest.approx(
        (math.log(2) + math.log(4) + math.log(8) + 0.0) / 4
    )
    mask = torch.tensor([[True, False], [True, False]])
    assert sft_loss(logprobs, mask).item() == pytest.approx((math.log(2) + math.log(8)) / 2)


def test_sft_loss_rejects_mismatched_mask():
    with pytest.raises(ValueError, match="one shape"):
        sft_loss(torch.zeros(2, 4), torch.ones(2, 3))


def test_group_advantages_are_leave_one_out():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 7.0])
    groups = torch.tensor([3, 3, 3, 8, 8, 5])
    adv = group_advantages(rewards, groups)
    # group 3: 1 - (0+0)/2 = 1; 0 - (1+0)/2 = -0.5; group 8: equal rewards -> 0; group 5: alone -> 0
    assert torch.allclose(adv, torch.tensor([1.0, -0.5, -0.5, 0.0, 0.0, 0.0]))


def test_group_advantages_rejects_bad_shapes():
    with pytest.raises(ValueError, match="group_ids"):
        group_advantages(torch.zeros(3), torch.zeros(4, dtype=torch.long))


def test_grpo_loss_matches_hand_computation_with_clipping():
    old = torch.zeros(1, 4)
    # ratios 1.5, 0.5, 1.1, 0.9 ; eps 0.2 -> clipped 1.2, 0.8, 1.1, 0.9
    new = torch.log(torch.tensor([[1.5, 0.5, 1.1, 0.9]])).requires_grad_()
    loss, m = grpo_loss(new, old, torch.tensor([1.0]), clip_eps=0.2)
    # A = +1: min(r, clip(r)) = 1.2, 0.5, 1.1, 0.9
    assert loss.item() == pytest.approx(-(1.2 + 0.5 + 1.1 + 0.9) / 4)
    assert m["clip_frac"].item() == pytest.approx(0.25)
    loss.backward()
    # d/dnew of -ratio*A/4 = -ratio/4 where unclipped; 0 where the clip is active (token 0)
    assert torch.allclose(new.grad, torch.tensor([[0.0, -0.5 / 4, -1.1 / 4, -0.9 / 4]]))

    new = new.detach().requires_grad_()
    loss, m = grpo_loss(new, old, torch.tensor([-2.0]), clip_eps=0.2)
    # A = -2: -min(-2r, -2 clip(r)) = 2 max(r, clip(r)) = 2 * (1.5, 0.8, 1.1, 0.9)
    assert loss.item() == pytest.approx(2 * (1.5 + 0.8 + 1.1 + 0.9) / 4)
    assert m["clip_frac"].item() == pytest.approx(0.25)
    loss.backward()
    assert new.grad[0, 1].item() == 0.0 and new.grad[0, 0].item() == pytest.approx(2 * 1.5 / 4)


def test_grpo_loss_mask_and_per_token_advantages():
    old = torch.zeros(2, 2)
    new = torch.zeros(2, 2)
    adv = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    mask = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    loss, _ = grpo_loss(new, old, adv, mask=mask)
    assert loss.item() == pytest.approx(-(1 + 2 + 4) / 3)


def test_kl_k3_value_and_penalty_term():
    new = torch.log(torch.tensor([[0.5, 0.2]]))
    ref = torch.log(torch.tensor([[0.25, 0.2]]))
    # k3 = r - log r - 1 with r = ref/new: r = 0.5 -> 0.5 + log 2 - 1 ; r = 1 -> 0
    expected = 0.5 + math.log(2) - 1
    assert torch.allclose(kl_k3(new, ref), torch.tensor([[expected, 0.0]]), atol=1e-6)
    adv = torch.tensor([1.0])
    base, _ = grpo_loss(new, new, adv)
    loss, m = grpo_loss(new, new, adv, ref_logprobs=ref, kl_coef=0.5)
    assert m["kl"].item() == pytest.approx(expected / 2, rel=1e-5)
    assert (loss - base).item() == pytest.approx(0.5 * expected / 2, rel=1e-5)
    assert kl_k3(ref, ref).abs().max().item() == 0.0


def test_grpo_loss_requires_reference_for_kl():
    x = torch.zeros(1, 4)
    with pytest.raises(ValueError, match="ref_logprobs"):
        grpo_loss(x, x, torch.ones(1), kl_coef=0.1)


def test_dpo_loss_hand_value_and_metrics():
    pc, pr = torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -1.0])
    rc, rr = torch.tensor([-1.5, -2.0]), torch.tensor([-1.5, -2.0])
    loss, m = dpo_loss(pc, pr, rc, rr, beta=0.5)
    # margins: 0.5*((-1+1.5) - (-2+1.5)) = 0.5 ; 0.5*((-3+2) - (-1+2)) = -1.0
    expected = (math.log1p(math.exp(-0.5)) + math.log1p(math.exp(1.0))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert m["accuracy"].item() == pytest.approx(0.5)
    assert m["margin"].item() == pytest.approx(-0.25)


def test_dpo_loss_agrees_with_standard_sigmoid_formula():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(16, generator=g) * 5 for _ in range(4))
    beta = 0.1
    # the formula as written in Rafailov et al. (2023) / TRL's sigmoid loss
    pi_logratios = pc - pr
    ref_logratios = rc - rr
    standard = -F.logsigmoid(beta * (pi_logratios - ref_logratios)).mean()
    loss, _ = dpo_loss(pc, pr, rc, rr, beta=beta)
    assert torch.allclose(loss, standard)
    # at the reference, the loss is log 2 whatever the log-probs
    loss, m = dpo_loss(rc, rr, rc, rr, beta=beta)
    assert loss.item() == pytest.approx(math.log(2)) and m["margin"].item() == 0.0


def test_dpo_gradient_raises_chosen_and_lowers_rejected():
    pc = torch.tensor([-2.0], requires_grad=True)
    pr = torch.tensor([-2.0], requires_grad=True)
    loss, _ = dpo_loss(pc, pr, torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.2)
    loss.backward()
    # d/dpc of -logsigmoid(beta*(pc - pr + ...)) at margin 0 = -beta * sigmoid(0) = -0.1
    assert pc.grad.item() == pytest.approx(-0.1) and pr.grad.item() == pytest.approx(0.1)


def test_cosine_schedule_warms_up_then_decays_to_floor():
    config = OptimConfig(lr=1.0, warmup_steps=2, min_lr_ratio=0.1)
    factors = [lr_factor(s, 10, config) for s in range(10)]
    assert factors[0] == pytest.approx(1 / 3) and factors[1] == pytest.approx(2 / 3)
    assert factors[2] == pytest.approx(1.0) and factors[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[2:], factors[3:], strict=False))
    constant = OptimConfig(schedule="constant")
    assert {lr_factor(s, 10, constant) for s in range(10)} == {1.0}


def test_num_optimizer_steps_counts_accumulation_and_cap():
    assert num_optimizer_steps(100, OptimConfig(batch_size=32, epochs=2, grad_accum_steps=2)) == 4
    assert num_optimizer_steps(100, OptimConfig(batch_size=32, epochs=2, max_steps=3)) == 3


def test_configs_reject_bad_values():
    with pytest.raises(ValueError, match="schedule"):
        OptimConfig(schedule="linear")
    with pytest.raises(ValueError, match="batch_size"):
        OptimConfig(batch_size=0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        rl_objective(None, [], temperature=0.0)


def test_asymmetric_clipping_lets_good_tokens_grow_further_than_bad_ones_shrink():
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[1.25, 1.25]]))  # ratio 1.25 on both tokens
    advantages = torch.tensor([[1.0, 1.0]])
    symmetric, m = grpo_loss(new, old, advantages, clip_eps=0.2)
    asymmetric, m2 = grpo_loss(new, old, advantages, clip_eps=0.2, clip_high=0.28)
    assert symmetric.item() == pytest.approx(-1.2)  # clipped at 1 + 0.2
    assert asymmetric.item() == pytest.approx(-1.25)  # inside 1 + 0.28: not clipped
    assert m["clip_frac"].item() == 1.0 and m2["clip_frac"].item() == 0.0
    assert m["ratio_max"].item() == pytest.approx(1.25)
    # the lower end stays at 1 - clip_eps for a negative advantage
    low, _ = grpo_loss(-new, old, -advantages, clip_eps=0.2, clip_high=0.28)
    assert low.item() == pytest.approx(0.8)


def test_grpo_diagnostics_measure_the_move_from_the_acting_policy():
    old = torch.log(torch.tensor([[0.5, 0.25]]))
    _, same = grpo_loss(old.clone(), old, torch.ones(1))
    assert same["approx_kl"].item() == pytest.approx(0.0, abs=1e-7)
    assert same["entropy"].item() == pytest.approx(-old.mean().item())
    _, moved = grpo_loss(old + 0.3, old, torch.ones(1))
    assert moved["approx_kl"].item() == pytest.approx(math.exp(0.3) - 0.3 - 1.0, rel=1e-5)


def test_advantages_normalized_per_group_or_batch():
    from train.updates.rl import normalize_advantages

    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    adv = group_advantages(rewards, groups)
    per_group = normalize_advantages(adv, rewards, groups, "group")
    std = rewards[:4].std(unbiased=False)
    torch.testing.assert_close(per_group[:4], adv[:4] / std)
    torch.testing.assert_close(per_group[4:], adv[4:])  # equal outcomes: left as they are
    batch = normalize_advantages(adv, rewards, groups, "batch")
    assert batch.std(unbiased=False).item() == pytest.approx(1.0)
    assert torch.equal(normalize_advantages(adv, rewards, groups, "none"), adv)
    with pytest.raises(ValueError, match="unknown advantage_norm 'rank'"):
        RLConfig(advantage_norm="rank")


def test_episode_aggregation_weighs_every_episode_alike():
    from train.updates.rl import episode_weights

    index = np.array([0, 0, 0, 1])  # an episode of three steps and one of one
    weights = episode_weights(index)
    assert weights.mean().item() == pytest.approx(1.0)
    assert weights[:3].sum().item() == pytest.approx(weights[3].item())
    new = torch.zeros(4, 2)
    advantages = torch.tensor([1.0, 1.0, 1.0, -1.0])
    token, _ = grpo_loss(new, new, advantages)
    episode, _ = grpo_loss(new, new, advantages, weights=weights)
    assert token.item() == pytest.approx(-0.5)  # three good steps outweigh one bad
    assert episode.item() == pytest.approx(0.0)  # one good episode, one bad: they cancel
    with pytest.raises(ValueError, match="unknown aggregation 'sum'"):
        RLConfig(aggregation="sum")


def test_negative_weight_scales_only_the_failures_advantages():
    from train.organize.datasets import RLGroup
    from train.updates.rl import group_steps
    from verifiers.episode import Episode

    def episode(i: int, success: bool) -> Episode:
        n = 3 + i
        return Episode(
            task_id="t",
            env_seed=0,
            instruction="x",
            actions=np.zeros((n, 4), np.float32),
            action_bins=np.zeros((n, 4), np.int64),
            logprobs=np.full((n, 4), -1.0, np.float32),
            rewards=np.zeros(n, np.float32),
            is_success=success,
            truncated=not success,
            states=np.zeros((n + 1, 4), np.float32),
            frames=np.zeros((n + 1, 8, 8, 3), np.uint8),
            episode_id=f"e{i}",
        )

    members = [episode(0, True), episode(1, False), episode(2, False)]
    group = RLGroup("t", 0, "x", members, np.array([1.0, 0.0, 0.0], np.float32))
    _, full, _ = group_steps([group])
    _, half, _ = group_steps([group], negative_weight=0.5)
    _, none, _ = group_steps([group], negative_weight=0.0)
    assert torch.equal(half[full > 0], full[full > 0]) and (full > 0).sum() == 3
    assert torch.allclose(half[full < 0], 0.5 * full[full < 0])
    assert torch.all(none[full < 0] == 0.0)
    with pytest.raises(ValueError, match="negative_weight must be in"):
        RLConfig(negative_weight=1.5)


def test_tree_advantages_by_hand():
    """Four samples of one scene, two steps of two tokens: they part at step 0's second token
    (2: samples 0 and 1, value 0.5; 9: samples 2 and 3, value 1) and again below; each token
    where the samples differed gets its branch's value minus its node's, every other token 0,
    and a sample's advantages add up to its outcome minus the group's mean (0.75)."""
    bins = [
        np.array([[1, 2], [3, 4]]),
        np.array([[1, 2], [3, 5]]),
        np.array([[1, 9], [3, 4]]),
        np.array([[1, 9], [7, 7]]),
    ]
    rewards = np.array([1.0, 0.0, 1.0, 1.0])
    got = tree_advantages(bins, rewards)
    want = [
        [[0.0, -0.25], [0.0, 0.5]],
        [[0.0, -0.25], [0.0, -0.5]],
        [[0.0, 0.25], [0.0, 0.0]],
        [[0.0, 0.25], [0.0, 0.0]],
    ]
    for g, w, r in zip(got, want, rewards, strict=True):
        np.testing.assert_allclose(g, w)
        assert g.sum() == pytest.approx(r - rewards.mean())
    # a shorter sample (a relabelled prefix) ends at its node; identical samples share every token
    short = tree_advantages([np.array([[1, 2]]), np.array([[1, 2], [3, 4]])], np.array([1.0, 0.0]))
    assert all(not a.any() for a in short)
    with pytest.raises(ValueError, match="one reward per sample"):
        tree_advantages(bins, rewards[:3])

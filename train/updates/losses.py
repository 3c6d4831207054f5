"""The training losses as pure functions of tensors: SFT, group-relative policy gradient, DPO.

Each takes log-probabilities of action tokens (one per action dimension) and returns a scalar
loss; those with diagnostics return `(loss, metrics)` where metrics are detached scalar tensors
keyed without a namespace (the updates add `train/`). Nothing here knows about models or data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items() if t is not None}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"expected tensors of one shape, got {shapes}")


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def _masked_max(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is not None:
        values = values.masked_fill(~mask.bool(), float("-inf"))
    return values.max() if values.numel() else torch.zeros((), dtype=values.dtype)


def sft_loss(logprobs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the target action tokens: the mean of `-logprobs` over unmasked tokens.

    `logprobs` [B, d] are the teacher-forced log-probs of the demonstrated action tokens (the
    prompt is not among them, so it is masked by construction); `mask` [B, d] (bool or 0/1) drops
    tokens, e.g. padding steps. Behaviour cloning on filtered successes is this loss.
    """
    _check_same_shape(logprobs=logprobs, mask=mask)
    return _masked_mean(-logprobs, mask)


def waypoint_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Auxiliary loss of the "where next" estimate: mean squared error in decimetres (the
    reference probe's scale: a 1 cm error costs 0.01) over the known entries of `target` (NaN:
    unknown). Both [N, W, 3], in metres; 0 when nothing is known."""
    _check_same_shape(predicted=predicted, target=target)
    known = ~torch.isnan(target)
    if not bool(known.any()):
        return predicted.sum() * 0.0
    return F.mse_loss(predicted[known].float() * 10.0, target[known].float() * 10.0)


def group_advantages(rewards: torch.Tensor, group_ids: torch.Tensor) -> torch.Tensor:
    """Leave-one-out (RLOO) advantages: each outcome minus the mean of its group's *others*.

    `rewards` [N] float, `group_ids` [N] int (one id per seed-and-instruction group). A member
    of a group of one has no baseline and gets advantage 0. Equivalent to
    `K / (K - 1) * (r_i - mean(group))` for a group of size K.

    >>> group_advantages(torch.tensor([1.0, 0.0, 0.0, 5.0]), torch.tensor([0, 0, 0, 1])).tolist()
    [1.0, -0.5, -0.5, 0.0]
    """
    if rewards.dim() != 1 or rewards.shape != group_ids.shape:
        raise ValueError(
            f"expected rewards [N] and group_ids [N], got {tuple(rewards.shape)} and "
            f"{tuple(group_ids.shape)}"
        )
    _, inverse = torch.unique(group_ids, return_inverse=True)
    num_groups = int(inverse.max()) + 1 if inverse.numel() else 0
    rewards = rewards.to(torch.float32)
    sums = torch.zeros(num_groups, dtype=rewards.dtype).index_add_(0, inverse, rewards)
    counts = torch.zeros(num_groups, dtype=rewards.dtype).index_add_(
        0, inverse, torch.ones_like(rewards)
    )
    others = counts[inverse] - 1
    baseline = (sums[inverse] - rewards) / others.clamp_min(1.0)
    return torch.where(others > 0, rewards - baseline, torch.zeros_like(rewards))


def kl_k3(new_logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(new || ref) from sampled tokens: `exp(ref - new) - (ref - new) - 1`.

    Unbiased when tokens are drawn from `new`, always >= 0, and 0 exactly where the two agree
    (Schulman, "Approximating KL divergence", 2020; the estimator GRPO uses).
    """
    delta = ref_logprobs - new_logprobs
    return torch.exp(delta) - delta - 1.0


def grpo_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor | None = None,
    clip_eps: float = 0.2,
    ref_logprobs: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    clip_high: float | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Token-level PPO-clip policy-gradient loss with an optional k3 KL penalty to a reference.

    `new_logprobs`, `old_logprobs` (recorded at rollout), `ref_logprobs` and `mask`: [B, d];
    `advantages`: [B] (one per sample, shared by its d tokens) or [B, d]. Per token, with
    `ratio = exp(new - old)`: `-min(ratio * A, clip(ratio, 1 - eps, 1 + eps_high) * A)
    + kl_coef * k3(new, ref)`, averaged over unmasked tokens; `eps_high` is `clip_high` when
    given (asymmetric clipping, as DAPO and SimpleVLA-RL use: [0.8, 1.28] lets rare good tokens
    grow further than bad ones shrink), else `clip_eps`. `weights` [B] scale each sample's
    policy-gradient terms (episode-level aggregation: 1 / the episode's length, rescaled).

    Metrics: `pg_loss`, `clip_frac` (tokens whose clipped term was the one taken and differs),
    `ratio_mean`, `ratio_max`, `kl` (mean k3 to the reference; 0 without one), `approx_kl` (mean
    k3 of the acting policy from the current one: how far the update has moved), `entropy`
    (minus the mean log-prob of the sampled tokens: a Monte Carlo estimate of the policy's
    per-token entropy while it is near the acting policy).
    """
    _check_same_shape(new=new_logprobs, old=old_logprobs, ref=ref_logprobs, mask=mask)
    if clip_eps <= 0:
        raise ValueError(f"clip_eps must be > 0, got {clip_eps}")
    high = clip_eps if clip_high is None else clip_high
    if high <= 0:
        raise ValueError(f"clip_high must be > 0, got {clip_high}")
    if advantages.dim() == 1:
        if advantages.shape[0] != new_logprobs.shape[0]:
            raise ValueError(
                f"expected advantages [{new_logprobs.shape[0]}] or "
                f"{tuple(new_logprobs.shape)}, got {tuple(advantages.shape)}"
            )
        advantages = advantages[:, None].expand_as(new_logprobs)
    _check_same_shape(new=new_logprobs, advantages=advantages)
    advantages = advantages.to(new_logprobs.dtype)

    ratio = torch.exp(new_logprobs - old_logprobs.detach())
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + high) * advantages
    per_token = -torch.minimum(unclipped, clipped)
    if weights is not None:
        if weights.shape != new_logprobs.shape[:1]:
            raise ValueError(
                f"expected weights [{new_logprobs.shape[0]}], got {tuple(weights.shape)}"
            )
        per_token = per_token * weights.to(per_token.dtype)[:, None]
    pg_loss = _masked_mean(per_token, mask)
    loss = pg_loss
    kl = torch.zeros((), dtype=new_logprobs.dtype)
    if ref_logprobs is not None:
        kl = _masked_mean(kl_k3(new_logprobs, ref_logprobs.detach()), mask)
        loss = loss + kl_coef * kl
    elif kl_coef != 0.0:
        raise ValueError(f"kl_coef={kl_coef} needs ref_logprobs; got None")
    was_clipped = (clipped < unclipped).to(new_logprobs.dtype)
    metrics = {
        "pg_loss": pg_loss.detach(),
        "clip_frac": _masked_mean(was_clipped, mask).detach(),
        "ratio_mean": _masked_mean(ratio.detach(), mask),
        "ratio_max": _masked_max(ratio.detach(), mask),
        "kl": kl.detach(),
        # KL(acting || current) from the acting policy's samples: k3 with the roles swapped
        "approx_kl": _masked_mean(kl_k3(old_logprobs.detach(), new_logprobs.detach()), mask),
        "entropy": _masked_mean(-new_logprobs.detach(), mask),
    }
    return loss, metrics


def dpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float = 0.1,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sigmoid DPO loss on sequence log-probs: `-logsigmoid(beta * ((pc - rc) - (pr - rr)))`, mean over pairs.

    All inputs [P]: the summed action-token log-probs of each pair's chosen (success) and
    rejected (failure) trajectory under the policy (`pc`, `pr`) and the frozen reference
    (`rc`, `rr`). Metrics: `accuracy` (share of pairs whose implicit reward ranks chosen first),
    `margin` (mean `beta * ((pc - rc) - (pr - rr))`), `chosen_reward`, `rejected_reward`.
    """
    _check_same_shape(
        chosen=chosen_logps, rejected=rejected_logps, ref_chosen=ref_chosen_logps,
        ref_rejected=ref_rejected_logps,
    )  # fmt: skip
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    chosen_rewards = beta * (chosen_logps - ref_chosen_logps.detach())
    rejected_rewards = beta * (rejected_logps - ref_rejected_logps.detach())
    margins = chosen_rewards - rejected_rewards
    loss = -F.logsigmoid(margins).mean()
    metrics = {
        "accuracy": (margins > 0).to(margins.dtype).mean().detach(),
        "margin": margins.mean().detach(),
        "chosen_reward": chosen_rewards.mean().detach(),
        "rejected_reward": rejected_rewards.mean().detach(),
    }
    return loss, metrics

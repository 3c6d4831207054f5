"""DPO on trajectory pairs: prefer the verified success over the failure, against a frozen reference.

A trajectory's log-prob is the sum of its action-token log-probs over all its steps. Reference
log-probs are computed once, before training (with LoRA: the policy with its adapter disabled).
A batch of pairs whose steps do not fit one forward pass (`config.forward_chunk`) is trained in
two passes with bounded memory: score every trajectory without gradients, take the DPO loss's
gradient with respect to each trajectory's log-prob, then back-propagate it chunk by chunk.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from train.collect.guidance import policy_acted
from train.updates.batching import (
    StepSet,
    chunks,
    demo_nll,
    demo_step_set,
    episode_steps,
    forward_logprobs,
    minibatches,
    step_logprobs,
)
from train.updates.config import DPOConfig
from train.updates.losses import dpo_loss
from train.updates.optim import (
    Optimization,
    num_optimizer_steps,
    trainable_parameters,
    training_mode,
)
from train.updates.rl import reference_logprobs
from verifiers.episode import Episode, episode_window


def first_split(chosen: Episode, rejected: Episode) -> int | None:
    """The first step at which two episodes of one scene took different action tokens (both
    acted by the policy), or None when they agree over the shorter one's length. Up to that
    step they saw the same observations (one start, a deterministic simulator)."""
    n = min(chosen.length, rejected.length)
    differ = np.flatnonzero((chosen.action_bins[:n] != rejected.action_bins[:n]).any(axis=1))
    if not len(differ):
        return None
    t = int(differ[0])
    if not (policy_acted(chosen)[t] and policy_acted(rejected)[t]):
        return None  # an expert step of a guided episode: not the policy's choice
    return t


def step_pairs(pairs: Sequence, chunk: int = 1) -> list:
    """Step-level DPO pairs (`DPOConfig.level = "step"`): each trajectory pair cut to the step
    where the success and the failure first part ways (the same observation, two choices, one
    of which went on to succeed); pairs that never part are dropped. Needs a policy deciding one
    step at a time (a chunk policy's step is not a decision of its own)."""
    if chunk != 1:
        raise ValueError(
            f"step-level DPO needs a policy deciding one step at a time; this one decides "
            f'{chunk} (use optimize.dpo.level = "trajectory")'
        )
    out = []
    for pair in pairs:
        t = first_split(pair.chosen, pair.rejected)
        if t is not None:
            out.append(
                replace(
                    pair,
                    chosen=episode_window(pair.chosen, t, t + 1),
                    rejected=episode_window(pair.rejected, t, t + 1),
                )
            )
    return out


def pair_steps(pairs: Sequence, chunk: int = 1) -> StepSet:
    """Steps of the chosen trajectories (pairs 0..P-1) then the rejected ones (P..2P-1), as a
    policy deciding `chunk` steps at a time took them."""
    if not pairs:
        raise ValueError("no DPO pairs; expected at least one")
    return episode_steps(
        [p.chosen for p in pairs] + [p.rejected for p in pairs], chunk=chunk, acted=True
    )


def trajectory_sums(step_values: torch.Tensor, trajectory: torch.Tensor, n: int) -> torch.Tensor:
    """Sum per-step values [N, d] into per-trajectory totals [n] (`trajectory` [N] in 0..n-1)."""
    totals = torch.zeros(n, dtype=step_values.dtype, device=step_values.device)
    return totals.index_add(0, trajectory.to(step_values.device), step_values.sum(-1))


def trajectory_weights(trajectory: torch.Tensor, n: int, d: int, length_norm: bool) -> torch.Tensor:
    """[n] factors that turn a trajectory's summed log-prob into its score: 1, or with
    `length_norm` 1 / its number of action tokens (steps x d)."""
    if not length_norm:
        return torch.ones(n)
    return 1.0 / (torch.bincount(trajectory, minlength=n).to(torch.float32) * d)


def backward_pairs(
    policy, steps: StepSet, ref: torch.Tensor, config: DPOConfig, loss_scale: float = 1.0
):
    """Back-propagate `loss_scale` x the DPO loss of one batch of b pairs; return (loss, metrics).

    `steps` hold the batch's chosen then rejected trajectories, numbered 0..2b-1 in
    `steps.episode_index`; `ref` [2b] are their reference scores (summed log-probs, or with
    `config.length_norm` the mean per action token). Steps beyond
    `config.forward_chunk` are handled in two passes (see the module docstring); the gradient
    is the same either way.
    """
    b = len(ref) // 2
    trajectory = torch.from_numpy(steps.episode_index)
    d = steps.bins.shape[-1]
    scale = trajectory_weights(trajectory, 2 * b, d, config.length_norm)
    per_token = trajectory_weights(trajectory, 2 * b, d, True)

    def loss_of(sums: torch.Tensor):
        """The batch's loss from its trajectories' summed log-probs [2b]."""
        logps = sums * scale.to(sums.device)
        target = ref.to(sums.device)
        loss, metrics = dpo_loss(logps[:b], logps[b:], target[:b], target[b:], config.beta)
        if config.nll_weight > 0:
            nll = -(sums[:b] * per_token[:b].to(sums.device)).mean()
            loss = loss + config.nll_weight * nll
            metrics["chosen_nll"] = nll.detach()
        return loss, metrics

    if len(steps) <= config.forward_chunk:
        new = forward_logprobs(policy, steps, config.temperature)
        loss, metrics = loss_of(trajectory_sums(new, trajectory, 2 * b))
        (loss * loss_scale).backward()
        return loss.detach(), metrics
    scores = step_logprobs(policy, steps, config.temperature, config.forward_chunk)
    sums = trajectory_sums(scores, trajectory, 2 * b).requires_grad_()
    loss, metrics = loss_of(sums)
    (loss * loss_scale).backward()
    weight = sums.grad
    for rows in chunks(len(steps), config.forward_chunk):
        part = forward_logprobs(policy, steps.select(rows), config.temperature).sum(-1)
        (part * weight[trajectory[rows]].to(part.device)).sum().backward()
    return loss.detach(), metrics


def dpo_update(
    policy,
    pairs: Sequence,
    config: DPOConfig | None = None,
    reference=None,
    *,
    seed: int = 0,
    demos: Sequence = (),
) -> dict[str, float]:
    """Train `policy` in place by DPO on `pairs` (DPOPairs of episodes with frames loaded);
    `seed` seeds the shuffling and any dropout. `demos`: successful demonstrations; with
    `config.demo_weight` > 0 each minibatch also learns some of their steps by cross-entropy
    (`train/dpo_demo_nll`).

    `reference` (an agent.Policy) overrides the default reference (the adapter-disabled model
    with LoRA, else the policy as it is before this update). Returns `train/dpo_loss`,
    `train/dpo_accuracy`, `train/dpo_margin`, `train/dpo_chosen_reward`,
    `train/dpo_rejected_reward` (means over the last epoch), the optimizer's metrics,
    `train/dpo_pairs_used` (of `train/dpo_pairs_offered`: with `config.level = "step"` the
    pairs that part ways), `train/dpo_samples` (trajectory steps trained on),
    `train/dpo_samples_per_s`, `train/dpo_pairs_per_s`.
    """
    config = config or DPOConfig()
    start = time.perf_counter()
    offered = len(pairs)
    if config.level == "step":
        pairs = step_pairs(pairs, policy.chunk)
        if not pairs:
            return {"train/dpo_pairs_used": 0.0, "train/dpo_pairs_offered": float(offered)}
    steps = pair_steps(pairs, policy.chunk)
    num_pairs = len(pairs)
    ref_steps = reference_logprobs(
        policy, steps, config.temperature, config.forward_chunk, reference
    )
    trajectory = torch.from_numpy(steps.episode_index)
    ref = trajectory_sums(ref_steps, trajectory, 2 * num_pairs) * trajectory_weights(
        trajectory, 2 * num_pairs, steps.bins.shape[-1], config.length_norm
    )
    rows_of = np.split(np.arange(len(steps)), np.cumsum(np.bincount(steps.episode_index))[:-1])
    demo_steps = demo_step_set(demos, policy.chunk, config.demo_weight, "optimize.dpo")
    params = trainable_parameters(policy, config)
    opt = Optimization(params, config, num_optimizer_steps(num_pairs, config), name="dpo")
    generator = torch.Generator().manual_seed(seed)
    keys = (
        "loss",
        "accuracy",
        "margin",
        "chosen_reward",
        "rejected_reward",
        "chosen_nll",
        "demo_nll",
    )
    samples, pairs_seen = 0, 0
    with training_mode(policy, seed):
        for _ in range(config.epochs):
            if opt.done:
                break
            sums, count = dict.fromkeys(keys, 0.0), 0
            for index in minibatches(num_pairs, config.batch_size, generator):
                if opt.done:
                    break
                trajectories = np.concatenate([index, index + num_pairs])
                batch = steps.select(np.concatenate([rows_of[t] for t in trajectories]))
                batch.episode_index = np.repeat(
                    np.arange(len(trajectories)), [len(rows_of[t]) for t in trajectories]
                )
                loss, m = backward_pairs(
                    policy, batch, ref[torch.from_numpy(trajectories)], config, opt.loss_scale
                )
                if demo_steps is not None:
                    n = min(sum(len(rows_of[t]) for t in index), config.forward_chunk)
                    nll = demo_nll(policy, demo_steps, n, generator)
                    (config.demo_weight * nll * opt.loss_scale).backward()
                    m["demo_nll"] = nll.detach()
                for key, value in {"loss": loss, **m}.items():
                    sums[key] += float(value) * len(index)
                count += len(index)
                samples += len(batch)
                opt.accumulated()
            pairs_seen += count
        opt.flush()
    elapsed = time.perf_counter() - start
    mean = {key: value / max(count, 1) for key, value in sums.items()}
    return {
        "train/dpo_loss": mean["loss"],
        "train/dpo_accuracy": mean["accuracy"],
        "train/dpo_margin": mean["margin"],
        "train/dpo_chosen_reward": mean["chosen_reward"],
        "train/dpo_rejected_reward": mean["rejected_reward"],
        **({"train/dpo_chosen_nll": mean["chosen_nll"]} if config.nll_weight > 0 else {}),
        **({"train/dpo_demo_nll": mean["demo_nll"]} if demo_steps is not None else {}),
        **opt.metrics(),
        "train/dpo_pairs_used": float(num_pairs),
        "train/dpo_pairs_offered": float(offered),
        "train/dpo_samples": float(samples),
        "train/dpo_samples_per_s": samples / elapsed,
        "train/dpo_pairs_per_s": pairs_seen / elapsed,
    }


@torch.no_grad()
def dpo_objective(
    policy, pairs: Sequence, config: DPOConfig | None = None, reference=None
) -> dict[str, float]:
    """DPO loss and accuracy of `policy` on all `pairs` against the reference (see `dpo_update`)."""
    config = config or DPOConfig()
    steps = pair_steps(pairs, policy.chunk)
    trajectory = torch.from_numpy(steps.episode_index)
    n = 2 * len(pairs)
    scale = trajectory_weights(trajectory, n, steps.bins.shape[-1], config.length_norm)
    ref = scale * trajectory_sums(
        reference_logprobs(policy, steps, config.temperature, config.forward_chunk, reference),
        trajectory,
        n,
    )
    logps = scale * trajectory_sums(
        step_logprobs(policy, steps, config.temperature, config.forward_chunk), trajectory, n
    )
    loss, m = dpo_loss(logps[: n // 2], logps[n // 2 :], ref[: n // 2], ref[n // 2 :], config.beta)
    return {"dpo_loss": float(loss), "dpo_accuracy": float(m["accuracy"])}

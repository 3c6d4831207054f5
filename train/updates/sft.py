"""Filtered behaviour cloning (rejection-sampling fine-tuning): cross-entropy on the action tokens of verified episodes.

Each step of each episode is one sample: (frame_t, instruction, state_t) -> action_bins_t. The
prompt (image, instruction, state) is context only: the loss is on the action tokens.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from train.updates.batching import (
    chunks,
    episode_steps,
    forward_outputs,
    minibatches,
    shift_images,
    step_logprobs,
    token_mask,
)
from train.updates.config import SFTConfig
from train.updates.losses import sft_loss, waypoint_loss
from train.updates.optim import (
    Optimization,
    num_optimizer_steps,
    trainable_parameters,
    training_mode,
)
from verifiers.episode import Episode


def sft_update(
    policy, episodes: Sequence[Episode], config: SFTConfig | None = None, *, seed: int = 0
) -> dict[str, float]:
    """Train `policy` in place to imitate the action tokens of `episodes` (frames loaded);
    `seed` seeds the shuffling and any dropout (same seed, data and policy: same weights).

    Returns `train/sft_loss` (mean over the last epoch), `train/sft_loss_first_epoch`,
    `train/sft_grad_norm`, `train/sft_lr`, `train/sft_optimizer_steps`, `train/sft_samples` (steps
    trained on, epochs included) and `train/sft_samples_per_s`; for a policy that estimates
    waypoints, also `train/waypoint_loss` and `train/waypoint_error_cm` (the last epoch's median
    distance between the estimate and the target, over the steps and waypoints).

    A chunk policy (`policy.chunk` = K > 1) learns each step's next K actions of its episode
    (steps past the episode's end masked). The loss is the action tokens' cross-entropy plus
    `config.waypoint_weight` times the waypoint loss (`losses.waypoint_loss`; targets from
    `train.organize.waypoints`, keyframes of kind `config.keyframes`); for a policy that writes
    its waypoints as tokens, the waypoint tokens' cross-entropy under teacher forcing.
    """
    config = config or SFTConfig()
    waypoints = policy.waypoints if config.waypoint_weight > 0 else 0
    steps = episode_steps(
        episodes,
        policy.chunk,
        waypoints,
        config.keyframes,
        labelled_failure_waypoints=config.labelled_failure_waypoints,
    )
    params = trainable_parameters(policy, config)
    opt = Optimization(params, config, num_optimizer_steps(len(steps), config), name="sft")
    generator = torch.Generator().manual_seed(seed)
    epoch_losses: list[float] = []
    waypoint_metrics: dict[str, float] = {}
    samples = 0
    start = time.perf_counter()
    with training_mode(policy, seed):
        for _ in range(config.epochs):
            if opt.done:
                break
            total, count, aux_total, errors = 0.0, 0, 0.0, []
            for index in minibatches(len(steps), config.batch_size, generator):
                if opt.done:
                    break
                batch = steps.select(index)
                for rows in chunks(len(batch), config.forward_chunk):
                    part = batch.select(rows)
                    part.images = shift_images(part.images, config.augment_shift, generator)
                    out = forward_outputs(policy, part)
                    logprobs, predicted = out.logprobs, out.waypoints
                    loss = sft_loss(logprobs, token_mask(part, policy.action_dim, logprobs.device))
                    total += loss.item() * len(part)
                    if waypoints and predicted is not None:
                        target = torch.from_numpy(part.waypoints).to(predicted.device)
                        if out.waypoint_logprobs is not None:  # tokens: their cross-entropy
                            aux = sft_loss(out.waypoint_logprobs, out.waypoint_known)
                        else:
                            aux = waypoint_loss(predicted, target)
                        loss = loss + config.waypoint_weight * aux
                        aux_total += aux.item() * len(part)
                        errors.append((predicted.detach().float() - target).norm(dim=-1).cpu())
                    (loss * (len(part) / len(batch)) * opt.loss_scale).backward()
                count += len(batch)
                opt.accumulated()
            samples += count
            epoch_losses.append(total / max(count, 1))
            if errors:
                waypoint_metrics = {
                    "train/waypoint_loss": aux_total / max(count, 1),
                    # over the known targets (NaN: a target left out)
                    "train/waypoint_error_cm": float(torch.cat(errors).nanmedian()) * 100.0,
                }
        opt.flush()
    elapsed = time.perf_counter() - start
    return {
        "train/sft_loss": epoch_losses[-1],
        "train/sft_loss_first_epoch": epoch_losses[0],
        **opt.metrics(),
        "train/sft_samples": float(samples),
        "train/sft_samples_per_s": samples / elapsed,
        **waypoint_metrics,
    }


def sft_objective(
    policy, episodes: Sequence[Episode], temperature: float = 1.0, chunk: int = 64
) -> float:
    """The SFT loss of `policy` on all steps of `episodes`, without gradients (eval mode as is)."""
    steps = episode_steps(episodes, policy.chunk, acted=True)
    return float(sft_loss(step_logprobs(policy, steps, temperature, chunk)))

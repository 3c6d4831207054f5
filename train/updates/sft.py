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
    forward_logprobs,
    minibatches,
    shift_images,
    step_logprobs,
)
from train.updates.config import SFTConfig
from train.updates.losses import sft_loss
from train.updates.optim import (
    Optimization,
    num_optimizer_steps,
    trainable_parameters,
    training_mode,
)
from verifiers.episode import Episode


def sft_update(
    policy, episodes: Sequence[Episode], config: SFTConfig | None = None
) -> dict[str, float]:
    """Train `policy` in place to imitate the action tokens of `episodes` (frames loaded).

    Returns `train/sft_loss` (mean over the last epoch), `train/sft_loss_first_epoch`,
    `train/sft_grad_norm`, `train/sft_lr`, `train/sft_optimizer_steps`, `train/sft_samples` (steps
    trained on, epochs included) and `train/sft_samples_per_s`.
    """
    config = config or SFTConfig()
    steps = episode_steps(episodes)
    params = trainable_parameters(policy, config)
    opt = Optimization(params, config, num_optimizer_steps(len(steps), config), name="sft")
    generator = torch.Generator().manual_seed(config.seed)
    epoch_losses: list[float] = []
    samples = 0
    start = time.perf_counter()
    with training_mode(policy, config.seed):
        for _ in range(config.epochs):
            if opt.done:
                break
            total, count = 0.0, 0
            for index in minibatches(len(steps), config.batch_size, generator):
                if opt.done:
                    break
                batch = steps.select(index)
                for rows in chunks(len(batch), config.forward_chunk):
                    part = batch.select(rows)
                    part.images = shift_images(part.images, config.augment_shift, generator)
                    loss = sft_loss(forward_logprobs(policy, part))
                    (loss * (len(part) / len(batch)) * opt.loss_scale).backward()
                    total += loss.item() * len(part)
                count += len(batch)
                opt.accumulated()
            samples += count
            epoch_losses.append(total / max(count, 1))
        opt.flush()
    elapsed = time.perf_counter() - start
    return {
        "train/sft_loss": epoch_losses[-1],
        "train/sft_loss_first_epoch": epoch_losses[0],
        **opt.metrics(),
        "train/sft_samples": float(samples),
        "train/sft_samples_per_s": samples / elapsed,
    }


def sft_objective(
    policy, episodes: Sequence[Episode], temperature: float = 1.0, chunk: int = 64
) -> float:
    """The SFT loss of `policy` on all steps of `episodes`, without gradients (eval mode as is)."""
    return float(sft_loss(step_logprobs(policy, episode_steps(episodes), temperature, chunk)))

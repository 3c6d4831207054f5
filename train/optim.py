"""What every update shares: typed configs, the optimizer, the learning-rate schedule, one clipped step.

`SFTConfig`, `RLConfig` and `DPOConfig` extend `OptimConfig` with their losses' knobs. An update
builds an `Optimization` (optimizer + schedule over its known number of optimizer steps) and
calls `step()` after accumulating `grad_accum_steps` micro-batches of gradients.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from peft import PeftModel

from agent.runtime import adapt_threads


@dataclass
class OptimConfig:
    """Optimisation settings shared by SFT, RL and DPO updates."""

    lr: float = 3e-4
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    schedule: str = "cosine"
    """`cosine` (decay from `lr` to `lr * min_lr_ratio` after warm-up) or `constant`."""
    warmup_steps: int = 0
    """Optimizer steps of linear warm-up from 0 to `lr`."""
    min_lr_ratio: float = 0.1
    """Final learning rate of the cosine schedule, as a fraction of `lr`."""
    batch_size: int = 32
    """Samples per micro-batch: steps for SFT and RL, pairs for DPO."""
    grad_accum_steps: int = 1
    """Micro-batches whose gradients are summed (each scaled by 1/n) before one optimizer step."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm to this before each step; None disables clipping."""
    epochs: int = 1
    """Passes over the update's data."""
    max_steps: int | None = None
    """Stop after this many optimizer steps even if epochs remain; None: run all epochs."""
    seed: int = 0
    """Seeds the shuffling and any dropout: same seed + same data + same policy -> same weights."""
    lora: bool = False
    """Train a LoRA adapter (added if the policy has none) instead of all parameters."""
    lora_rank: int = 8
    """LoRA rank r, used when an adapter is added."""
    lora_alpha: int = 16
    """LoRA scaling alpha, used when an adapter is added."""
    forward_chunk: int = 64
    """Most steps (frames) in one forward pass; bounds memory when a trajectory is long."""

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}; expected 'cosine' or 'constant'")
        for name in ("batch_size", "grad_accum_steps", "epochs", "forward_chunk", "lora_rank"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")


@dataclass
class SFTConfig(OptimConfig):
    """Filtered behaviour cloning: cross-entropy on the action tokens of (successful) episodes."""

    augment_shift: int = 0
    """Translate each training image by up to this many pixels (random per sample; 0: off)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.augment_shift < 0:
            raise ValueError(f"augment_shift must be >= 0, got {self.augment_shift}")


@dataclass
class RLConfig(OptimConfig):
    """Group-relative policy gradient (RLOO advantages, PPO-clip, optional KL to a reference)."""

    lr: float = 1e-4
    """Peak learning rate of AdamW (lower than SFT: on-policy data, ratio clipping)."""
    temperature: float = 1.0
    """Sampling temperature of the rollout; the recorded log-probs were taken at it."""
    clip_eps: float = 0.2
    """PPO ratio clipping: the ratio is clipped to [1 - clip_eps, 1 + clip_eps] per token."""
    kl_coef: float = 0.0
    """Weight of the k3 KL penalty to the reference policy; 0 skips the reference entirely."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")


@dataclass
class DPOConfig(OptimConfig):
    """DPO on (success, failure) trajectory pairs against a frozen reference."""

    lr: float = 1e-4
    """Peak learning rate of AdamW."""
    batch_size: int = 4
    """Pairs per micro-batch."""
    beta: float = 0.1
    """DPO inverse temperature: scales the implicit reward `log pi - log pi_ref`."""
    temperature: float = 1.0
    """Softmax temperature of the action logits when scoring trajectories."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


def lr_factor(step: int, total_steps: int, config: OptimConfig) -> float:
    """Multiplier of `config.lr` at optimizer step `step` (0-based) of `total_steps`."""
    if step < config.warmup_steps:
        return (step + 1) / (config.warmup_steps + 1)
    if config.schedule == "constant":
        return 1.0
    decay_steps = max(1, total_steps - config.warmup_steps - 1)
    progress = min(1.0, (step - config.warmup_steps) / decay_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine


def num_optimizer_steps(num_samples: int, config: OptimConfig) -> int:
    """Optimizer steps an update takes over `num_samples` samples (micro-batches are not dropped)."""
    micro_per_epoch = math.ceil(num_samples / config.batch_size)
    total = math.ceil(micro_per_epoch * config.epochs / config.grad_accum_steps)
    return total if config.max_steps is None else min(total, config.max_steps)


class Optimization:
    """AdamW over `params` with the config's schedule, clipping and accumulation bookkeeping."""

    def __init__(self, params: list[torch.nn.Parameter], config: OptimConfig, total_steps: int):
        if not params:
            raise ValueError("no trainable parameters: expected at least one with requires_grad")
        self.params = params
        self.config = config
        self.total_steps = max(1, total_steps)
        self.optimizer = torch.optim.AdamW(
            params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
        )
        self.steps_taken = 0
        self.micro_batches = 0
        self.grad_norms: list[float] = []
        self._set_lr()

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    @property
    def done(self) -> bool:
        return self.steps_taken >= self.total_steps

    def _set_lr(self) -> None:
        lr = self.config.lr * lr_factor(self.steps_taken, self.total_steps, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self) -> None:
        """Clip the accumulated gradients, take one AdamW step, advance the schedule, zero grads."""
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm is not None else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        self.grad_norms.append(float(norm))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps_taken += 1
        self._set_lr()

    def accumulated(self) -> None:
        """Call after each micro-batch's backward (loss scaled by `loss_scale`); steps every
        `grad_accum_steps` micro-batches."""
        self.micro_batches += 1
        if self.micro_batches % self.config.grad_accum_steps == 0:
            self.step()
            adapt_threads()  # follow the machine's load (agent.runtime)

    def flush(self) -> None:
        """Step on gradients left from an unfinished accumulation (end of the data)."""
        if self.micro_batches % self.config.grad_accum_steps and not self.done:
            self.step()

    @property
    def loss_scale(self) -> float:
        """Factor on each micro-batch's loss so that accumulated gradients average micro-batches."""
        return 1.0 / self.config.grad_accum_steps

    def metrics(self) -> dict[str, float]:
        """`grad_norm` (mean pre-clip norm over steps), `lr` (after the last step), `optimizer_steps`."""
        mean_norm = sum(self.grad_norms) / len(self.grad_norms) if self.grad_norms else 0.0
        return {
            "train/grad_norm": mean_norm,
            "train/lr": self.lr,
            "train/optimizer_steps": float(self.steps_taken),
        }


def has_lora(policy) -> bool:
    """Whether the policy's model carries a peft (LoRA) adapter."""
    return isinstance(policy.model, PeftModel)


def trainable_parameters(policy, config: OptimConfig) -> list[torch.nn.Parameter]:
    """The parameters the update trains; adds a LoRA adapter first when `config.lora` asks for one.

    With `lora=False` on a policy that already has an adapter, the adapter is what is trained
    (merge it with `policy.merge_lora()` first to train all weights).
    """
    if config.lora and not has_lora(policy):
        policy.add_lora(r=config.lora_rank, alpha=config.lora_alpha)
    params = [p for p in policy.trainable_parameters() if p.requires_grad]
    if not params:
        raise ValueError("the policy has no trainable parameters; expected some with requires_grad")
    return params


@contextlib.contextmanager
def training_mode(policy, seed: int) -> Iterator[None]:
    """Train mode and a seeded torch RNG (dropout) for the update; both restored afterwards."""
    was_training = policy.model.training
    devices = [policy.device] if torch.device(policy.device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        policy.model.train()
        try:
            yield
        finally:
            policy.model.train(was_training)

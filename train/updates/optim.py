"""What every update shares: the optimizer, the learning-rate schedule, one clipped step.

An update builds an `Optimization` (optimizer + schedule over its known number of optimizer
steps) and calls `step()` after accumulating `grad_accum_steps` micro-batches of gradients. The
updates' configs (`SFTConfig`, `RLConfig`, `DPOConfig`) live in `train.updates.config`, which
imports no torch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch

from agent.runtime import adapt_threads
from train.progress import Progress
from train.updates.config import OptimConfig


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

    def __init__(
        self,
        params: list[torch.nn.Parameter],
        config: OptimConfig,
        total_steps: int,
        name: str = "update",
    ):
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
        self.name = name
        """The update's name: its metrics are `train/{name}_...`, its progress lines `{name}: ...`."""
        self.progress = Progress(self.total_steps, name, unit="steps")
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
        self.progress.update(1)
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
        """`train/{name}_grad_norm` (mean pre-clip norm over steps), `_lr` (after the last step),
        `_optimizer_steps`: named after the update, so a round's sequence keeps all. Ends the
        progress display."""
        self.progress.close()
        mean_norm = sum(self.grad_norms) / len(self.grad_norms) if self.grad_norms else 0.0
        return {
            f"train/{self.name}_grad_norm": mean_norm,
            f"train/{self.name}_lr": self.lr,
            f"train/{self.name}_optimizer_steps": float(self.steps_taken),
        }


def trainable_parameters(policy, config: OptimConfig) -> list[torch.nn.Parameter]:
    """The parameters the update trains; adds a LoRA adapter first when `config.lora` asks for one.

    With `lora=False` on a policy that already has an adapter, the adapter is what is trained
    (merge it with `policy.merge_lora()` first to train all weights).
    """
    if config.lora and not policy.has_lora:
        policy.add_lora(r=config.lora_rank, alpha=config.lora_alpha)
    params = [p for p in policy.trainable_parameters() if p.requires_grad]
    if not params:
        raise ValueError("the policy has no trainable parameters; expected some with requires_grad")
    return params


@contextlib.contextmanager
def training_mode(policy, seed: int) -> Iterator[None]:
    """Train mode and a seeded torch RNG (dropout) for the update; both restored afterwards."""
    devices = [policy.device] if torch.device(policy.device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices), policy.mode(training=True):
        torch.manual_seed(seed)
        yield

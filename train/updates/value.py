"""A learned value baseline for RL (`optimize.rl.baseline = "value"`): per-step advantages.

Group-relative advantages (RLOO) give every step of an episode the same credit, and a group
whose samples all fail or all succeed gives none. A critic V(s_t), the probability that an
episode in state s_t under its instruction still succeeds, gives each step its own advantage by
generalised advantage estimation over the episode's 0/1 outcome (reward only at the last step,
no discount):

    delta_t = V(s_{t+1}) - V(s_t)  (t < T - 1),   delta_{T-1} = R - V(s_{T-1}),
    A_t = sum_k lambda^k delta_{t+k},

so lambda = 1 is the Monte-Carlo advantage R - V(s_t) and lambda < 1 credits the steps where
the predicted chance of success rises or falls (PPO's baseline, which RL4VLA found beat
group-relative ones on manipulation). Every group then carries signal, whatever its outcomes.

The critic is a small CNN over the step's frame, its features modulated by the instruction's
words (FiLM, as the success classifier's), joined with the proprioceptive state and the step
number. It is fitted afresh each update on the update's own episodes by binary cross-entropy
against their outcomes, **cross-fitted**: the scenes are split into `value_folds` folds and each
fold's values come from a critic trained on the other folds, so an episode's baseline never saw
its own outcome (a critic fitted and read on the same episodes learns them by heart and returns
advantages near 0). `value_folds = 1` fits one critic on everything and reads it in-sample, as
does an update whose episodes all come from one scene.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from train.progress import progress_bar
from train.updates.batching import check_episode
from verifiers.classifier import InstructedConvNet, batch_text
from verifiers.episode import Episode
from verifiers.text import encode_instructions

TEXT_BUCKETS = 512
"""Hash buckets of the critic's instruction words."""
STEP_SCALE = 100.0
"""The step number enters the critic as t / STEP_SCALE (how much time has gone by)."""


class ValueNetwork(InstructedConvNet):
    """Frame + instruction (FiLM on the first layer) + state + step -> a success logit."""

    def __init__(self, state_dim: int, channels: int = 32, text_dim: int = 32) -> None:
        super().__init__(channels, TEXT_BUCKETS, text_dim)
        self.head = nn.Sequential(
            nn.Linear(4 * channels + state_dim + 1, 64), nn.ReLU(inplace=True), nn.Linear(64, 1)
        )

    def forward(self, images, ids, offsets, states, steps) -> torch.Tensor:
        """images float [B, 3, H, W] in [0, 1]; ids / offsets of the instructions' words
        (`batch_text`); states [B, k]; steps [B] -> logits [B]."""
        pooled = self.features(images, ids, offsets)
        extra = torch.cat([states, (steps / STEP_SCALE)[:, None]], dim=-1)
        return self.head(torch.cat([pooled, extra], dim=-1)).squeeze(-1)


class _Steps:
    """Every step of some episodes as the critic reads it, with its episode's outcome."""

    def __init__(self, episodes: Sequence[Episode], rewards: np.ndarray) -> None:
        for episode in episodes:
            check_episode(episode)  # frames loaded, >= 1 step, as every update's steps
        lengths = np.array([e.length for e in episodes])
        self.episode_index = np.repeat(np.arange(len(episodes)), lengths)
        self.t = np.concatenate([np.arange(n) for n in lengths]).astype(np.float32)
        self.frames = np.concatenate([e.frames[: e.length] for e in episodes])
        self.states = np.concatenate([e.states[: e.length] for e in episodes]).astype(np.float32)
        self.targets = np.repeat(np.asarray(rewards, dtype=np.float32), lengths)
        words = [encode_instructions([e.instruction], TEXT_BUCKETS) for e in episodes]
        self.words = [words[i] for i in self.episode_index]

    def batch(self, rows: np.ndarray):
        ids, offsets = batch_text([self.words[i] for i in rows])
        images = torch.from_numpy(self.frames[rows]).permute(0, 3, 1, 2).float() / 255.0
        return (
            images,
            ids,
            offsets,
            torch.from_numpy(self.states[rows]),
            torch.from_numpy(self.t[rows]),
        )


def fit_critic(
    data: _Steps,
    rows: np.ndarray,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    channels: int,
    seed: int,
) -> tuple[ValueNetwork, float]:
    """A critic trained on `rows` of `data` by binary cross-entropy against the outcomes; also
    its last epoch's mean training loss."""
    torch.manual_seed(seed)
    network = ValueNetwork(data.states.shape[1], channels)
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    targets = torch.from_numpy(data.targets)
    network.train()
    loss_sum = 0.0
    with progress_bar(epochs * len(rows), "value critic", "steps") as bar:
        for _ in range(epochs):
            order = rows[torch.randperm(len(rows), generator=generator).numpy()]
            loss_sum = 0.0
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                logits = network(*data.batch(batch))
                loss = F.binary_cross_entropy_with_logits(logits, targets[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                loss_sum += float(loss.detach()) * len(batch)
                bar.update(len(batch))
    network.eval()
    return network, loss_sum / max(len(rows), 1)


@torch.no_grad()
def predict(network: ValueNetwork, data: _Steps, rows: np.ndarray, chunk: int = 512) -> np.ndarray:
    """float32 [len(rows)]: the critic's success probability at each of `rows`."""
    out = [
        torch.sigmoid(network(*data.batch(rows[i : i + chunk]))).numpy()
        for i in range(0, len(rows), chunk)
    ]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def gae_advantages(values: np.ndarray, reward: float, lam: float) -> np.ndarray:
    """float32 [T]: generalised advantage estimates of one episode whose only reward is its
    outcome `reward` after the last step (no discount), from the critic's `values` [T]."""
    values = np.asarray(values, dtype=np.float64)
    next_values = np.append(values[1:], 0.0)
    deltas = next_values - values
    deltas[-1] += reward
    advantages = np.empty_like(values)
    running = 0.0
    for t in range(len(values) - 1, -1, -1):
        running = deltas[t] + lam * running
        advantages[t] = running
    return advantages.astype(np.float32)


def scene_folds(episodes: Sequence[Episode], folds: int, seed: int) -> np.ndarray:
    """int64 [E]: each episode's fold, one fold per scene (task and seed: every sample and
    hindsight view of a scene shares its frames, so they are held out together), scenes
    assigned round-robin in a seeded order."""
    scenes = sorted({(e.task_id, int(e.env_seed)) for e in episodes})
    order = np.random.default_rng(seed).permutation(len(scenes))
    fold_of = {scenes[i]: k % folds for k, i in enumerate(order)}
    return np.array([fold_of[(e.task_id, int(e.env_seed))] for e in episodes], dtype=np.int64)


def value_advantages(
    episodes: Sequence[Episode],
    rewards: np.ndarray,
    *,
    lam: float = 0.95,
    folds: int = 2,
    epochs: int = 3,
    lr: float = 2e-3,
    batch_size: int = 64,
    channels: int = 32,
    seed: int = 0,
) -> tuple[list[np.ndarray], dict[str, float]]:
    """Per episode, its steps' advantages [T] (`gae_advantages` from cross-fitted critics), and
    the critic's diagnostics: `train/value_loss` (binary cross-entropy of the values each step
    got, out of fold when `folds` > 1), `train/value_explained_variance` (1 - Var(R - V) / Var(R)
    over the steps: 0 is no better than the mean outcome), `train/value_mean`,
    `train/value_steps`, `train/value_seconds`."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"gae_lambda must be in [0, 1], got {lam}")
    if folds < 1:
        raise ValueError(f"value_folds must be >= 1, got {folds}")
    rewards = np.asarray(rewards, dtype=np.float32)
    if rewards.shape != (len(episodes),):
        raise ValueError(f"expected {len(episodes)} rewards, got shape {rewards.shape}")
    start = time.perf_counter()
    data = _Steps(episodes, rewards)
    values = np.zeros(len(data.t), dtype=np.float32)
    fold_of_step = scene_folds(episodes, folds, seed)[data.episode_index]
    used = sorted(set(fold_of_step.tolist()))
    for k in used:
        held = np.flatnonzero(fold_of_step == k)
        train = np.flatnonzero(fold_of_step != k) if len(used) > 1 else held
        network, _ = fit_critic(
            data,
            train,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            channels=channels,
            seed=seed + k,
        )
        values[held] = predict(network, data, held)
    bounds = np.concatenate([[0], np.cumsum([e.length for e in episodes])])
    advantages = [
        gae_advantages(values[a:b], float(r), lam)
        for a, b, r in zip(bounds[:-1], bounds[1:], rewards, strict=True)
    ]
    clipped = np.clip(values, 1e-6, 1 - 1e-6)
    targets = data.targets
    bce = -(targets * np.log(clipped) + (1 - targets) * np.log(1 - clipped)).mean()
    spread = float(targets.var())
    explained = 1.0 - float((targets - values).var()) / spread if spread > 0 else 0.0
    return advantages, {
        "train/value_loss": float(bce),
        "train/value_explained_variance": explained,
        "train/value_mean": float(values.mean()),
        "train/value_steps": float(len(values)),
        "train/value_seconds": time.perf_counter() - start,
    }

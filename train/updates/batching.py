"""Turning episodes into step batches: flatten (frame, instruction, state, action bins) per step, shuffle, score.

Every update trains on steps: step t of an episode is the sample (frame_t, instruction,
state_t) -> action_bins_t. `episode_steps` flattens episodes into a `StepSet`,
`minibatches` shuffles it with a seeded generator, and `step_logprobs` runs the policy over
any number of steps in chunks of bounded size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from verifiers.episode import Episode


@dataclass
class StepSet:
    """The steps of some episodes, one row per (episode, t), in episode order then step order."""

    images: np.ndarray
    """uint8 [N, H, W, 3]: the frame before each step."""
    instructions: list[str]
    """N instructions (the episode's, repeated over its steps)."""
    states: np.ndarray
    """float32 [N, k]: proprioception before each step."""
    bins: np.ndarray
    """int64 [N, d]: the action-token bins taken (the targets)."""
    episode_index: np.ndarray
    """int64 [N]: which input episode each step came from."""
    old_logprobs: np.ndarray
    """float32 [N, d]: the log-probs recorded at rollout (NaN for non-MLLM policies)."""

    def __len__(self) -> int:
        return int(self.bins.shape[0])

    def select(self, index: np.ndarray | slice) -> StepSet:
        """The rows `index` (an index array or a slice), as a new StepSet."""
        rows = np.arange(len(self))[index]
        return StepSet(
            images=self.images[rows],
            instructions=[self.instructions[i] for i in rows],
            states=self.states[rows],
            bins=self.bins[rows],
            episode_index=self.episode_index[rows],
            old_logprobs=self.old_logprobs[rows],
        )


def _check_episode(episode: Episode) -> None:
    name = episode.episode_id or f"{episode.task_id} seed {episode.env_seed}"
    if episode.frames is None:
        raise ValueError(
            f"episode {name!r} has no frames; expected them loaded (EpisodeStore.with_frames)"
        )
    t = episode.length
    if t == 0:
        raise ValueError(f"episode {name!r} has no steps; expected length >= 1")
    if (
        episode.frames.shape[0] < t
        or episode.states.shape[0] < t
        or episode.action_bins.shape[0] != t
    ):
        raise ValueError(
            f"episode {name!r}: expected >= {t} frames and states and {t} action_bins rows, got "
            f"{episode.frames.shape[0]}, {episode.states.shape[0]} and {episode.action_bins.shape[0]}"
        )


def episode_steps(episodes: Sequence[Episode]) -> StepSet:
    """Flatten `episodes` (frames loaded) into one `StepSet` of all their steps."""
    if not episodes:
        raise ValueError("no episodes; expected at least one")
    for episode in episodes:
        _check_episode(episode)
    lengths = [e.length for e in episodes]
    return StepSet(
        images=np.concatenate([e.frames[: e.length] for e in episodes]),
        instructions=[e.instruction for e in episodes for _ in range(e.length)],
        states=np.concatenate([e.states[: e.length] for e in episodes]).astype(np.float32),
        bins=np.concatenate([e.action_bins for e in episodes]).astype(np.int64),
        episode_index=np.repeat(np.arange(len(episodes)), lengths),
        old_logprobs=np.concatenate([e.logprobs for e in episodes]).astype(np.float32),
    )


def minibatches(
    num_samples: int, batch_size: int, generator: torch.Generator, shuffle: bool = True
) -> list[np.ndarray]:
    """One epoch of index batches over `num_samples`, shuffled by `generator`; the last may be short."""
    order = (
        torch.randperm(num_samples, generator=generator).numpy()
        if shuffle
        else np.arange(num_samples)
    )
    return [order[i : i + batch_size] for i in range(0, num_samples, batch_size)]


def chunks(num_samples: int, size: int) -> Iterator[slice]:
    """Consecutive slices of at most `size` rows covering `num_samples`."""
    for start in range(0, num_samples, size):
        yield slice(start, min(start + size, num_samples))


def shift_images(images: np.ndarray, pad: int, generator: torch.Generator) -> np.ndarray:
    """Each image translated by a random offset in [-pad, pad]^2 pixels, edges replicated
    (DrQ-style augmentation: the scene moves as a whole, so where the gripper is relative to the
    objects, which decides the action, is unchanged)."""
    if pad <= 0:
        return images
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator).numpy()
    return np.stack([padded[i, y : y + h, x : x + w] for i, (y, x) in enumerate(offsets)])


def forward_logprobs(policy, steps: StepSet, temperature: float = 1.0) -> torch.Tensor:
    """Teacher-forced log-probs [N, d] of `steps.bins` under `policy`, in one forward pass."""
    inputs = policy.prepare_inputs(steps.images, steps.instructions, steps.states, steps.bins)
    return policy.logprobs_from_inputs(inputs, temperature=temperature)


@torch.no_grad()
def step_logprobs(
    policy, steps: StepSet, temperature: float = 1.0, chunk: int = 64
) -> torch.Tensor:
    """Log-probs [N, d] of every step without gradients, `chunk` steps per forward pass (float32, CPU)."""
    parts = [
        forward_logprobs(policy, steps.select(rows), temperature).float().cpu()
        for rows in chunks(len(steps), chunk)
    ]
    return torch.cat(parts)

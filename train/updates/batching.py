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

from train.collect.guidance import policy_acted
from train.organize.waypoints import episode_waypoints
from train.updates.losses import sft_loss
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
    chunk_bins: np.ndarray | None = None
    """int64 [N, K, d]: for a chunk policy, each step's bins and the next K - 1 steps' of its
    episode (the targets of one decision); None when collected for one step per decision."""
    chunk_mask: np.ndarray | None = None
    """bool [N, K]: which of `chunk_bins` lie inside the episode (past its end: padding)."""
    waypoints: np.ndarray | None = None
    """float32 [N, W, 3]: the fingertip position (m) at each step's next W keyframes
    (`train.organize.waypoints`); None when not collected."""
    slot: np.ndarray | None = None
    """int64 [N]: for the steps of a chunk policy as it acted (`episode_steps(acted=True)`), each
    step's place in the chunk of the decision that produced it; `images`, `states` and
    `chunk_bins` are then that decision's, and a step's log-probs are its slot's. None: every
    step is scored as a decision of its own (SFT's chunk targets)."""

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
            chunk_bins=None if self.chunk_bins is None else self.chunk_bins[rows],
            chunk_mask=None if self.chunk_mask is None else self.chunk_mask[rows],
            waypoints=None if self.waypoints is None else self.waypoints[rows],
            slot=None if self.slot is None else self.slot[rows],
        )


def check_episode(episode: Episode) -> None:
    """Raise unless `episode` has its frames loaded, >= 1 step, and frames, states and action
    bins for every step (what an update reads)."""
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


def chunk_targets(bins: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """An episode's bins [T, d] as per-step chunks: (int64 [T, K, d], each step's bins and the
    next K - 1 steps'; bool [T, K], False past the episode's end, where the bins repeat the last)."""
    t = len(bins)
    rows = np.arange(t)[:, None] + np.arange(chunk)
    return bins[np.minimum(rows, t - 1)], rows < t


def episode_steps(
    episodes: Sequence[Episode],
    chunk: int = 1,
    waypoints: int = 0,
    keyframes: str = "gripper",
    acted: bool = False,
    labelled_failure_waypoints: bool = True,
) -> StepSet:
    """Flatten `episodes` (frames loaded) into one `StepSet` of all their steps; with `chunk` > 1
    also each step's chunk of targets (`chunk_targets`), with `waypoints` > 0 each step's next
    keyframes' fingertip positions (`train.organize.waypoints`, keyframes of kind `keyframes`;
    NaN for failed dagger episodes unless `labelled_failure_waypoints`).

    `acted` (chunk > 1): each step as the chunk policy produced it, for log-probs of the actions
    it took (RL, DPO, diagnostics): the observation and chunk of the decision the step came
    from (`step_info["chunk/offset"]` steps before; a step without it is a decision of its own)
    and its place in that chunk (`StepSet.slot`). `acted` also leaves out the steps the expert
    acted in a guided episode (`step_info["guide/expert"]`, `train.collect.guidance`): RL and
    DPO score only the actions the policy took."""
    if not episodes:
        raise ValueError("no episodes; expected at least one")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    for episode in episodes:
        check_episode(episode)
    lengths = [e.length for e in episodes]
    decisions = [
        _decision_steps(e) if acted and chunk > 1 else np.arange(e.length) for e in episodes
    ]
    steps = StepSet(
        images=np.concatenate([e.frames[d] for e, d in zip(episodes, decisions, strict=True)]),
        instructions=[e.instruction for e in episodes for _ in range(e.length)],
        states=np.concatenate(
            [e.states[d] for e, d in zip(episodes, decisions, strict=True)]
        ).astype(np.float32),
        bins=np.concatenate([e.action_bins for e in episodes]).astype(np.int64),
        episode_index=np.repeat(np.arange(len(episodes)), lengths),
        old_logprobs=np.concatenate([e.logprobs for e in episodes]).astype(np.float32),
    )
    if chunk > 1:
        targets = [chunk_targets(e.action_bins.astype(np.int64), chunk) for e in episodes]
        steps.chunk_bins = np.concatenate(
            [c[d] for (c, _), d in zip(targets, decisions, strict=True)]
        )
        steps.chunk_mask = np.concatenate(
            [m[d] for (_, m), d in zip(targets, decisions, strict=True)]
        )
        if acted:
            steps.slot = np.concatenate(
                [np.arange(e.length) - d for e, d in zip(episodes, decisions, strict=True)]
            )
    if waypoints:
        steps.waypoints = np.concatenate(  # where each row's observation should say it goes
            [
                episode_waypoints(e, waypoints, keyframes, labelled_failure_waypoints)[d]
                for e, d in zip(episodes, decisions, strict=True)
            ]
        ).astype(np.float32)
    if acted:
        own = np.concatenate([policy_acted(e) for e in episodes])
        if not own.all():
            steps = steps.select(np.flatnonzero(own))
    return steps


def _decision_steps(episode: Episode) -> np.ndarray:
    """int64 [T]: the step whose decision produced each step (`step_info["chunk/offset"]`)."""
    t = np.arange(episode.length)
    offset = episode.step_info.get("chunk/offset")
    if offset is None:
        return t
    decision = t - np.asarray(offset, dtype=np.int64)
    if (decision < 0).any():
        raise ValueError(
            f"episode {episode.episode_id!r}: a chunk offset reaches before the first step"
        )
    return decision


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
    """Teacher-forced log-probs [N, d] of `steps.bins` under `policy`, in one forward pass
    (a chunk policy: [N, K * d] of `steps.chunk_bins`, or [N, d] of each step's slot when
    `steps.slot` is set)."""
    return forward_logprobs_and_waypoints(policy, steps, temperature)[0]


def forward_logprobs_and_waypoints(
    policy, steps: StepSet, temperature: float = 1.0, teacher_waypoints: bool = True
):
    """`forward_logprobs` and the policy's waypoint estimate [N, W, 3] (None without one)."""
    out = forward_outputs(policy, steps, temperature, teacher_waypoints)
    return out.logprobs, out.waypoints


def forward_outputs(
    policy, steps: StepSet, temperature: float = 1.0, teacher_waypoints: bool = True
):
    """`agent.policy.ForwardOutput` of `steps` under `policy`, in one forward pass (see
    `forward_logprobs`). A waypoint-token policy reads `steps.waypoints` as its waypoint tokens
    when they are given and `teacher_waypoints` (SFT's teacher forcing), else the tokens it
    decodes itself (RL and DPO score the actions it would take; the waypoint error measures
    its own decode)."""
    bins = steps.bins
    if policy.chunk > 1:
        if steps.chunk_bins is None or steps.chunk_bins.shape[1] != policy.chunk:
            have = None if steps.chunk_bins is None else steps.chunk_bins.shape[1]
            raise ValueError(
                f"the policy decides {policy.chunk} steps at a time; expected steps with chunk "
                f"targets of that length (episode_steps(..., chunk={policy.chunk})), got {have}"
            )
        bins = steps.chunk_bins
    waypoints = None
    if policy.waypoint_tokens and teacher_waypoints and steps.waypoints is not None:
        waypoints = steps.waypoints
    inputs = policy.prepare_inputs(
        steps.images, steps.instructions, steps.states, bins, waypoints=waypoints
    )
    out = policy.forward_outputs(inputs, temperature=temperature)
    if policy.chunk > 1 and steps.slot is not None:  # each step's own slot of its chunk
        d = policy.action_dim
        slot = torch.from_numpy(steps.slot).to(out.logprobs.device)
        out.logprobs = out.logprobs.view(len(steps), -1, d)[torch.arange(len(steps)), slot]
    return out


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


def demo_step_set(
    demos: Sequence[Episode], chunk: int, weight: float, where: str
) -> StepSet | None:
    """The steps of the demonstrations an update learns beside with `weight` > 0 (`demo_nll`);
    None when `weight` is 0. Raises when the weight asks for demonstrations and there are none
    (`where`: the config section, for the message)."""
    if weight <= 0:
        return None
    if not demos:
        raise ValueError(f"{where}.demo_weight={weight} needs demonstrations; none given")
    return episode_steps(demos, chunk)


def demo_nll(
    policy, demo_steps: StepSet, n: int, generator: torch.Generator, shift: int = 0
) -> torch.Tensor:
    """The action-token cross-entropy of `n` demonstration steps drawn with `generator` (images
    shifted by up to `shift` pixels), with gradients (a chunk policy: the steps' chunks, past
    the episode's end masked): the term RL and DPO add with `demo_weight` to learn beside the
    demonstrations."""
    rows = torch.randint(len(demo_steps), (n,), generator=generator).numpy()
    part = demo_steps.select(rows)
    part.images = shift_images(part.images, shift, generator)
    logprobs = forward_outputs(policy, part).logprobs
    return sft_loss(logprobs, token_mask(part, policy.action_dim, logprobs.device))


def token_mask(steps: StepSet, action_dim: int, device) -> torch.Tensor | None:
    """[N, K * d] which action tokens of a chunk policy's targets are real (the steps'
    `chunk_mask` per token: steps past the episode's end are not); None without a chunk."""
    if steps.chunk_mask is None:
        return None
    mask = torch.from_numpy(steps.chunk_mask).to(device)
    return mask.repeat_interleave(action_dim, dim=1)

"""What a verifier is: an object with a `name` and `verify(episodes) -> list[Verdict]`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from verifiers.episode import Episode, Verdict


@runtime_checkable
class Verifier(Protocol):
    """Judges episodes: one `Verdict` per episode, in order. `passed=None` means no opinion."""

    name: str
    """The name its verdicts carry (`Verdict.verifier`)."""
    judges_outcome: bool
    """True when its verdict says whether the instruction was achieved (the environment, a time
    limit, a learned success judge); False for a rule about how it was done. Hindsight
    relabelling redefines the instruction, so only a failing rule blocks it."""

    def verify(self, episodes: Sequence[Episode]) -> list[Verdict]: ...


def require_step_info(episode: Episode, key: str, verifier: str) -> np.ndarray:
    """`episode.step_info[key]` as float32 [T], or a ValueError naming the episode and the field."""
    if key not in episode.step_info:
        known = ", ".join(sorted(episode.step_info)) or "none"
        raise ValueError(
            f"verifier {verifier!r} needs step_info[{key!r}] but episode "
            f"{episode.episode_id!r} ({episode.task_id}) has none; its step_info keys: {known}"
        )
    return np.asarray(episode.step_info[key], dtype=np.float32)


def require_frames(episode: Episode, verifier: str) -> np.ndarray:
    """`episode.frames` as uint8 [T + 1, H, W, 3], or a ValueError naming the episode."""
    if episode.frames is None:
        raise ValueError(
            f"verifier {verifier!r} needs frames but episode {episode.episode_id!r} "
            f"({episode.task_id}) has frames=None; load them with EpisodeStore.load(with_frames=True)"
        )
    frames = np.asarray(episode.frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(
            f"verifier {verifier!r}: episode {episode.episode_id!r} has frames of dtype "
            f"{frames.dtype} shape {frames.shape}; expected uint8 [T + 1, H, W, 3]"
        )
    return frames


def all_passed(verdicts: Sequence[Verdict]) -> bool | None:
    """The pass rule: True when every verdict with an opinion passed, False when one failed, None
    when none had an opinion. A verified episode is one whose verdicts give True."""
    opinions = [v.passed for v in verdicts if v.passed is not None]
    return all(opinions) if opinions else None


def verdicts_by_episode(verdicts: Sequence[Verdict]) -> dict[str, list[Verdict]]:
    """Group verdicts by `episode_id` (several verifiers may judge one episode)."""
    grouped: dict[str, list[Verdict]] = {}
    for verdict in verdicts:
        grouped.setdefault(verdict.episode_id, []).append(verdict)
    return grouped


def probability_verdicts(
    episodes: Sequence[Episode],
    probs: Sequence[float],
    verifier: str,
    threshold: float,
    describe: Callable[[float, str], str],
) -> list[Verdict]:
    """One verdict per episode from a success probability: passed when p >= `threshold`;
    `describe(p, comparison)` (comparison is ">=" or "<" against the threshold) gives the reason."""
    return [
        Verdict(
            e.episode_id,
            verifier,
            bool(p >= threshold),
            float(p),
            describe(p, ">=" if p >= threshold else "<"),
        )
        for e, p in zip(episodes, probs, strict=True)
    ]

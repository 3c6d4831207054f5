"""Hindsight relabelling: a failed episode becomes a success for an instruction its final state achieved."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from verifiers.episode import Episode, episode_window

RELABEL_SUFFIX = "/relabel:"
"""A relabelled copy's `episode_id` is its source's, this, and the copy's index."""


def relabel(episodes: Sequence[Episode]) -> list[Episode]:
    """New successful episodes, one per (failed episode, instruction its final state achieved).

    Reads `episode.achieved` (filled by the collector from `env.unwrapped.achieved_instructions()`
    at the final step: the canonical instructions of the task that the final state satisfies) and
    `episode.achieved_at` (each instruction satisfied at some step, with the first such step): an
    instruction first satisfied after t steps yields the episode's first t steps.
    The copy has `instruction` = the achieved one, `relabelled_from` = the original,
    `is_success=True`, `truncated=False` and an `episode_id` with a `/relabel:<k>` suffix; actions,
    frames, states, rewards and `step_info` are those of the original, or of its first t steps
    (rewards were computed for the original instruction). The original episode is untouched. Successful and already
    relabelled episodes yield nothing: a failed episode cannot have achieved its own goal.
    """
    relabelled = []
    for episode in episodes:
        if episode.relabelled_from is not None:
            continue
        if episode.is_success:
            continue
        if not isinstance(episode.achieved, (list, tuple)):
            raise ValueError(
                f"relabel: episode {episode.episode_id!r} has achieved={episode.achieved!r}; "
                "expected a list of instructions"
            )
        goals = dict.fromkeys(episode.achieved, episode.length)
        for instruction, t in episode.achieved_at.items():  # first achieved: relabel that prefix
            goals[instruction] = min(int(t), goals.get(instruction, episode.length))
        for k, (instruction, t) in enumerate(goals.items()):
            relabelled.append(
                replace(
                    episode_prefix(episode, t),
                    instruction=instruction,
                    is_success=True,
                    truncated=False,
                    relabelled_from=episode.instruction,
                    episode_id=f"{episode.episode_id}{RELABEL_SUFFIX}{k}",
                    achieved=[instruction] if t < episode.length else list(episode.achieved),
                    achieved_at={instruction: t},
                )
            )
    return relabelled


def relabelled_source(episode: Episode) -> str:
    """The `episode_id` of the sampled episode that relabelled `episode` was made from."""
    source, found, _ = episode.episode_id.rpartition(RELABEL_SUFFIX)
    if not found or episode.relabelled_from is None:
        raise ValueError(
            f"episode {episode.episode_id!r} is not a relabelling (expected an id ending "
            f"{RELABEL_SUFFIX!r}<k> and relabelled_from set)"
        )
    return source


def episode_prefix(episode: Episode, t: int) -> Episode:
    """The first `t` steps of `episode` (frames and states through the observation after step t)."""
    if not 1 <= t <= episode.length:
        raise ValueError(
            f"relabel: episode {episode.episode_id!r} has achieved_at step {t}; expected 1..{episode.length}"
        )
    return episode_window(episode, 0, t)

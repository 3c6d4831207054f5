"""Hindsight relabelling: a failed episode becomes a success for an instruction its final state achieved."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from verifiers.episode import Episode


def relabel(episodes: Sequence[Episode]) -> list[Episode]:
    """New successful episodes, one per (failed episode, instruction its final state achieved).

    Reads `episode.achieved` (filled by the collector from `env.unwrapped.achieved_instructions()`
    at the final step: the canonical instructions of the task that the final state satisfies).
    The copy has `instruction` = the achieved one, `relabelled_from` = the original,
    `is_success=True`, `truncated=False` and an `episode_id` with a `/relabel:<k>` suffix; actions,
    frames, states, rewards and `step_info` are those of the original (rewards were computed for
    the original instruction). The original episode is untouched. Successful and already
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
        for k, instruction in enumerate(dict.fromkeys(episode.achieved)):
            relabelled.append(
                replace(
                    episode,
                    instruction=instruction,
                    is_success=True,
                    truncated=False,
                    relabelled_from=episode.instruction,
                    episode_id=f"{episode.episode_id}/relabel:{k}",
                    achieved=list(episode.achieved),
                    step_info=dict(episode.step_info),
                )
            )
    return relabelled

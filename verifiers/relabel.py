"""Hindsight relabelling: a failed episode becomes a success for an instruction its end state achieved."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from verifiers.episode import Episode


def relabel(episodes: Sequence[Episode], *, include_successes: bool = False) -> list[Episode]:
    """New successful episodes, one per (episode, other instruction its final state achieved).

    Reads `episode.achieved` (filled by the collector from `env.unwrapped.achieved_instructions()`
    at the final step). The copy has `instruction` = the achieved one, `relabelled_from` = the
    original, `is_success=True`, `truncated=False` and an `episode_id` with a `/relabel:<k>` suffix;
    actions, frames and states are shared with the original. The original episode itself is
    untouched. Failed episodes only, unless `include_successes` (a success that also achieved
    another instruction — e.g. touched two balls — then yields that one too).
    """
    relabelled = []
    for episode in episodes:
        if episode.relabelled_from is not None:
            continue
        if episode.is_success and not include_successes:
            continue
        if not isinstance(episode.achieved, (list, tuple)):
            raise ValueError(
                f"relabel: episode {episode.episode_id!r} has achieved={episode.achieved!r}; "
                "expected a list of instructions"
            )
        others = [a for a in dict.fromkeys(episode.achieved) if a != episode.instruction]
        for k, instruction in enumerate(others):
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

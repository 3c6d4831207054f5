"""A round's middle: organize the verified episodes of this and earlier rounds into what the
updates learn from (SFT episodes, RL groups, DPO pairs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from train.organize.datasets import (
    DPOPair,
    RLGroup,
    build_dpo_pairs,
    build_rl_groups,
    build_sft_set,
    passed_episodes,
)
from verifiers.base import verdicts_by_episode
from verifiers.environment import EnvironmentVerifier
from verifiers.episode import Episode, Verdict
from verifiers.registry import OUTCOME_VERIFIERS
from verifiers.relabel import relabel


@dataclass
class RoundData:
    """What a round's updates learn from, and counts for the log."""

    sft: list[Episode]
    rl: list[RLGroup]
    dpo: list[DPOPair]
    metrics: dict[str, float] = field(default_factory=dict)


def build_round_data(
    demos: list[Episode],
    rounds: Sequence[tuple[list[Episode], list[Verdict]]],
    organize: Any,
    seed: int,
) -> RoundData:
    """Organize a round from plain values: the demonstrations, and the episodes and verdicts of
    the rounds whose successes are replayed (oldest first, the current round last).

    The SFT set holds the verified successes of those rounds, the demonstrations and the
    hindsight relabellings of failures (`organize.relabel`); RL groups and DPO pairs come from the
    current round alone. `seed` draws the dedup / balance and DPO pairing choices."""
    pool, pool_verdicts = demos, EnvironmentVerifier().verify(demos)
    n_relabelled = 0
    for round_episodes, round_verdicts in rounds:
        relabelled = _relabel_failures(round_episodes, round_verdicts) if organize.relabel else []
        n_relabelled = len(relabelled)
        pool = pool + round_episodes + relabelled
        pool_verdicts = pool_verdicts + round_verdicts + EnvironmentVerifier().verify(relabelled)
    episodes, verdicts = rounds[-1]
    balance = "downsample" if organize.balance else "none"
    sft = build_sft_set(pool, pool_verdicts, dedup=organize.dedup, balance=balance, seed=seed)
    rl = build_rl_groups(episodes, verdicts, drop_uniform=True)
    dpo = build_dpo_pairs(episodes, verdicts, seed=seed)
    passed = passed_episodes(episodes, verdicts)
    metrics = {
        "verify/passed": int(sum(passed)),
        "verify/pass_rate": float(sum(passed)) / max(1, len(episodes)),
        "organize/relabelled": n_relabelled,
        "organize/sft_episodes": len(sft),
        "organize/sft_steps": int(sum(e.length for e in sft)),
        "organize/rl_groups": len(rl),
        "organize/dpo_pairs": len(dpo),
    }
    return RoundData(sft, rl, dpo, metrics)


def _relabel_failures(episodes: list[Episode], verdicts: list[Verdict]) -> list[Episode]:
    """Hindsight relabellings of the episodes the environment failed but no other verifier
    rejected (relabelling can turn a miss into a success, but not undo a rule violation)."""
    by_episode = verdicts_by_episode(verdicts)
    candidates = [
        e
        for e in episodes
        if not e.is_success
        and not any(
            v.passed is False and v.verifier not in OUTCOME_VERIFIERS
            for v in by_episode.get(e.episode_id, [])
        )
    ]
    return relabel(candidates)

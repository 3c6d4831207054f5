"""A round's middle: organize the verified episodes of this and earlier rounds into what the
updates learn from (SFT episodes, RL groups, DPO pairs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from train.collect.guidance import LABEL_KEYS
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
    labelled_failures: list[Episode] = []
    for round_episodes, round_verdicts in rounds:
        relabelled = _relabel_failures(round_episodes, round_verdicts) if organize.relabel else []
        n_relabelled = len(relabelled)
        # dagger: an episode's states with the expert's labels stand in for the policy's own
        # actions; those of failures are learnt from too (the labels are the expert's)
        labelled = [expert_labelled(e) for e in round_episodes]
        passed_round = passed_episodes(round_episodes, round_verdicts)
        labelled_failures += [
            e
            for e, o, ok in zip(labelled, round_episodes, passed_round, strict=True)
            if e is not o and not ok
        ]
        pool = pool + labelled + relabelled
        pool_verdicts = pool_verdicts + round_verdicts + EnvironmentVerifier().verify(relabelled)
    episodes, verdicts = rounds[-1]
    balance = "downsample" if organize.balance else "none"
    sft = build_sft_set(pool, pool_verdicts, dedup=organize.dedup, balance=balance, seed=seed)
    sft = sft + labelled_failures
    rl = build_rl_groups(episodes, verdicts, drop_uniform=True)
    dpo = build_dpo_pairs(episodes, verdicts, seed=seed)
    passed = passed_episodes(episodes, verdicts)
    metrics = {
        "verify/passed": int(sum(passed)),
        "verify/pass_rate": float(sum(passed)) / max(1, len(episodes)),
        "organize/relabelled": n_relabelled,
        "organize/expert_labelled_failures": len(labelled_failures),
        "organize/sft_episodes": len(sft),
        "organize/sft_steps": int(sum(e.length for e in sft)),
        "organize/rl_groups": len(rl),
        "organize/dpo_pairs": len(dpo),
    }
    return RoundData(sft, rl, dpo, metrics)


def expert_labelled(episode: Episode) -> Episode:
    """A dagger episode (`train.collect.guided`) with the expert's label of every visited state
    as its action bins; any other episode as it is. What ran (`actions`), the outcome, the states
    and the `episode_id` (its verdicts) are the episode's own."""
    if not all(key in episode.step_info for key in LABEL_KEYS):
        return episode
    labels = np.stack([episode.step_info[key] for key in LABEL_KEYS], axis=1)
    return replace(
        episode,
        action_bins=labels.astype(np.int64),
        logprobs=np.full(labels.shape, np.nan, dtype=np.float32),
    )


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

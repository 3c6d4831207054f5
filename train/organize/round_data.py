"""A round's middle: organize the verified episodes of this and earlier rounds into what the
updates learn from (SFT episodes, RL groups, DPO pairs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from train.collect.guidance import expert_labels
from train.organize.datasets import (
    DPOPair,
    RLGroup,
    build_dpo_pairs,
    build_rl_groups,
    build_sft_set,
)
from verifiers.episode import Episode, Verified


@dataclass
class RoundData:
    """What a round's updates learn from, and counts for the log."""

    sft: list[Episode]
    rl: list[RLGroup]
    dpo: list[DPOPair]
    metrics: dict[str, float] = field(default_factory=dict)


def build_round_data(
    demos: Verified,
    rounds: Sequence[Verified],
    organize: Any,
    seed: int,
    uniform_rl_groups: bool = False,
) -> RoundData:
    """Organize a round from the verify stage's values: the demonstrations, and the rounds whose
    successes are replayed (oldest first, the current round last), each with its decisions and
    relabelled successes (`verifiers.stage.verify_round`). Nothing is verified here.
    `uniform_rl_groups` keeps the RL groups whose outcomes are all equal (a learned value
    baseline, `optimize.rl.baseline = "value"`, learns from them; the group baseline cannot).

    The SFT set holds the verified successes of those rounds, the demonstrations and the
    hindsight relabellings of failures; RL groups and DPO pairs come from the current round
    alone. `seed` draws the dedup / balance and DPO pairing choices."""
    pool, pool_decisions = list(demos.episodes), list(demos.decisions)
    labelled_failures: list[Episode] = []
    for verified in rounds:
        # dagger: an episode's states with the expert's labels stand in for the policy's own
        # actions; those of failures are learnt from too (the labels are the expert's)
        labelled = [expert_labelled(e) for e in verified.episodes]
        labelled_failures += [
            e
            for e, o, d in zip(labelled, verified.episodes, verified.decisions, strict=True)
            if e is not o and not d.passed
        ]
        pool = pool + labelled + verified.relabelled
        pool_decisions = pool_decisions + verified.decisions + verified.relabelled_decisions
    current = rounds[-1]
    sft = build_sft_set(
        pool,
        pool_decisions,
        dedup=organize.dedup,
        balance=organize.balance,
        max_per_task=organize.max_per_task,
        seed=seed,
    )
    sft = sft + labelled_failures
    rl = build_rl_groups(
        current.episodes,
        current.decisions,
        drop_uniform=not uniform_rl_groups,
        by=organize.rl_groups,
        relabelled=current.relabelled,
        relabelled_decisions=current.relabelled_decisions,
    )
    dpo = build_dpo_pairs(
        current.episodes,
        current.decisions,
        max_pairs_per_group=organize.max_pairs_per_group,
        seed=seed,
        by=organize.dpo_pairs,
        relabelled=current.relabelled,
        relabelled_decisions=current.relabelled_decisions,
    )
    metrics = {
        "organize/relabelled": len(current.relabelled),
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
    labels = expert_labels(episode)
    if labels is None:
        return episode
    return replace(
        episode,
        action_bins=labels,
        logprobs=np.full(labels.shape, np.nan, dtype=np.float32),
    )

"""A round's middle: verify the collected episodes, organize them into SFT / RL / DPO data, and run
the configured updates on the policy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from train.datasets import (
    DPOPair,
    RLGroup,
    build_dpo_pairs,
    build_rl_groups,
    build_sft_set,
    passed_episodes,
)
from train.dpo import dpo_update
from train.rl import rl_update
from train.sft import sft_update
from train.store import EpisodeStore
from verifiers.base import verdicts_by_episode
from verifiers.environment import EnvironmentVerifier
from verifiers.episode import Episode, Verdict
from verifiers.relabel import relabel
from verifiers.rules import default_rules

UPDATES = {"sft": sft_update, "rl": rl_update, "dpo": dpo_update}
OUTCOME_VERIFIERS = {"environment", "time_limit"}
"""Verifiers that judge whether the instruction was achieved (in time): relabelling redefines the
instruction, so their failing verdicts do not block it; every other rule's verdict does."""


def verifier_names() -> list[str]:
    return ["environment", "rules", *[rule.name for rule in default_rules()]]


def build_verifiers(names: Sequence[str]) -> list:
    """The verifiers named in a campaign config: `environment`, `rules` (all rules), or one rule's name."""
    rules = {rule.name: rule for rule in default_rules()}
    built = []
    for name in names:
        if name == "environment":
            built.append(EnvironmentVerifier())
        elif name == "rules":
            built.extend(rules.values())
        elif name in rules:
            built.append(rules[name])
        else:
            raise ValueError(f"unknown verifier {name!r}; expected one of {verifier_names()}")
    return built


def verify(episodes: Sequence[Episode], names: Sequence[str]) -> list[Verdict]:
    """Every configured verifier's verdict on every episode (an episode is verified if all pass)."""
    return [v for verifier in build_verifiers(names) for v in verifier.verify(episodes)]


@dataclass
class RoundData:
    """What a round's updates learn from, and counts for the log."""

    sft: list[Episode]
    rl: list[RLGroup]
    dpo: list[DPOPair]
    metrics: dict[str, float] = field(default_factory=dict)

    def payload(self, name: str) -> list:
        return {"sft": self.sft, "rl": self.rl, "dpo": self.dpo}[name]

    def why_empty(self, name: str) -> str:
        return {
            "sft": "no verified success",
            "rl": "no group of one seed and instruction with mixed outcomes",
            "dpo": "no seed and instruction with both a success and a failure",
        }[name]


def build_round_data(
    store: EpisodeStore,
    runlog: Any,
    k: int,
    episodes: list[Episode],
    verdicts: list[Verdict],
    config: Any,
) -> RoundData:
    """Organize round k: the SFT set (verified successes of this and past rounds, plus the
    demonstrations and hindsight relabellings), RL groups and DPO pairs (this round's episodes)."""
    org = config.organize
    first = 1 if org.replay_rounds < 0 else max(1, k - org.replay_rounds + 1)
    demos = store.load(where={"round": 0}, with_frames=True)
    pool, pool_verdicts = demos, EnvironmentVerifier().verify(demos)
    n_relabelled = 0
    for j in range(first, k + 1):
        if j == k:
            round_episodes, round_verdicts = episodes, verdicts
        else:
            round_episodes, round_verdicts = (
                store.load(where={"round": j}, with_frames=True),
                runlog.read_verdicts(j),
            )
        relabelled = _relabel_failures(round_episodes, round_verdicts) if org.relabel else []
        n_relabelled = len(relabelled)
        pool = pool + round_episodes + relabelled
        pool_verdicts = pool_verdicts + round_verdicts + EnvironmentVerifier().verify(relabelled)
    balance = "downsample" if org.balance else "none"
    sft = build_sft_set(pool, pool_verdicts, dedup=org.dedup, balance=balance, seed=config.seed + k)
    rl = build_rl_groups(episodes, verdicts, drop_uniform=True)
    dpo = build_dpo_pairs(episodes, verdicts, seed=config.seed + k)
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


def run_update(name: str, policy: Any, data: list, config: Any, seed: int) -> dict[str, float]:
    """One configured update (`sft`, `rl` or `dpo`) with its seed set; returns its metrics, the
    generic ones named after the update (`train/lr` -> `train/rl_lr`) so a sequence keeps all."""
    metrics = UPDATES[name](policy, data, replace(config, seed=seed))
    named = {}
    for key, value in metrics.items():
        space, rest = key.split("/", 1)
        named[key if rest.startswith(name) or rest == "kl" else f"{space}/{name}_{rest}"] = value
    return named

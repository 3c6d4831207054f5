"""The verify stage: each episode's decision computed once, and the round's verified set.

`decide` runs every verifier once over the episodes and turns their verdicts into one `Decision`
per episode by the one pass rule (`verifiers.base.all_passed`). `verify_round` adds the
hindsight relabellings of the failures no rule rejected (each a new, successful episode, decided
by the environment), so organize receives decisions for every episode it may learn from.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from verifiers.base import Verifier, all_passed, verdicts_by_episode
from verifiers.environment import EnvironmentVerifier
from verifiers.episode import Decision, Episode, Verdict, Verified
from verifiers.relabel import relabel


def decide(episodes: Sequence[Episode], verifiers: Sequence[Verifier]) -> list[Decision]:
    """Every verifier's verdict on every episode (each verifier runs once over all of them) and
    each episode's decision."""
    for verifier in verifiers:
        if not isinstance(verifier, Verifier):
            raise TypeError(
                f"verifier {verifier!r}: expected a `verifiers.base.Verifier` (an object with "
                "`name`, `judges_outcome` and `verify(episodes)`)"
            )
    if not verifiers:
        raise ValueError("decide: no verifiers; name at least one (e.g. `environment`)")
    per_verifier = []
    for verifier in verifiers:
        verdicts = verifier.verify(episodes)
        if [v.episode_id for v in verdicts] != [e.episode_id for e in episodes]:
            raise ValueError(
                f"verifier {verifier.name!r} returned {len(verdicts)} verdicts for "
                f"{len(episodes)} episodes (or out of order); expected one per episode, in order"
            )
        per_verifier.append(verdicts)
    outcome = {v.name for v in verifiers if v.judges_outcome}
    return [
        _decision(episode.episode_id, [verdicts[i] for verdicts in per_verifier], outcome)
        for i, episode in enumerate(episodes)
    ]


def decisions_from_verdicts(
    episodes: Sequence[Episode], verdicts: Sequence[Verdict], outcome_verifiers: Collection[str]
) -> list[Decision]:
    """The decisions of episodes verified earlier, from their stored verdicts (a campaign's
    `verdicts/round_K.jsonl`); `outcome_verifiers` names the verifiers that judge the outcome.
    Raises when an episode has no verdict."""
    grouped = verdicts_by_episode(verdicts)
    missing = [e.episode_id for e in episodes if e.episode_id not in grouped]
    if missing:
        raise ValueError(
            f"no verdict for {len(missing)} episode(s), e.g. {missing[0]!r}; "
            "pass one or more verdicts for every episode"
        )
    return [_decision(e.episode_id, grouped[e.episode_id], outcome_verifiers) for e in episodes]


def verdicts_of(decisions: Sequence[Decision]) -> list[Verdict]:
    """The decisions' verdicts, verifier by verifier (the order `verifiers/round_K.jsonl` keeps)."""
    width = max((len(d.verdicts) for d in decisions), default=0)
    return [d.verdicts[i] for i in range(width) for d in decisions if i < len(d.verdicts)]


def verify_round(
    episodes: Sequence[Episode], decisions: Sequence[Decision], relabel_failures: bool
) -> Verified:
    """A round's verified set: its episodes and decisions, and (`relabel_failures`) the hindsight
    relabellings of its failures that no rule rejected, decided by the environment."""
    relabelled: list[Episode] = []
    if relabel_failures:
        relabelled = relabel(
            [e for e, d in zip(episodes, decisions, strict=True) if not d.rule_failed]
        )
    return Verified(
        list(episodes),
        list(decisions),
        relabelled,
        decide(relabelled, [EnvironmentVerifier()]) if relabelled else [],
    )


def verify_metrics(decisions: Sequence[Decision]) -> dict[str, float]:
    """`verify/passed` and `verify/pass_rate` of a round's decisions."""
    passed = sum(d.passed for d in decisions)
    return {
        "verify/passed": int(passed),
        "verify/pass_rate": float(passed) / max(1, len(decisions)),
    }


def _decision(episode_id: str, verdicts: Sequence[Verdict], outcome: Collection[str]) -> Decision:
    return Decision(
        episode_id,
        passed=all_passed(verdicts) is True,
        rule_failed=any(v.passed is False and v.verifier not in outcome for v in verdicts),
        verdicts=tuple(verdicts),
    )

"""Composing verifiers: `AllOf`, `AnyOf` and `Weighted` are verifiers made of verifiers."""

from __future__ import annotations

from collections.abc import Sequence

from verifiers.base import Verifier, all_passed
from verifiers.episode import Episode, Verdict


def _run_all(verifiers: Sequence[Verifier], episodes: Sequence[Episode]) -> list[list[Verdict]]:
    """Per episode, the verdicts of every verifier (checked to line up with the episodes)."""
    per_verifier = []
    for verifier in verifiers:
        verdicts = verifier.verify(episodes)
        if len(verdicts) != len(episodes):
            raise ValueError(
                f"verifier {verifier.name!r} returned {len(verdicts)} verdicts for "
                f"{len(episodes)} episodes; expected one per episode"
            )
        per_verifier.append(verdicts)
    return [list(column) for column in zip(*per_verifier, strict=True)] if per_verifier else []


def _check_members(kind: str, verifiers: Sequence[Verifier]) -> list[Verifier]:
    verifiers = list(verifiers)
    if not verifiers:
        raise ValueError(f"{kind} needs at least one verifier; got none")
    for verifier in verifiers:
        if not isinstance(verifier, Verifier):
            raise TypeError(
                f"{kind} got {verifier!r}; expected a `verifiers.base.Verifier`: an object with `name`, `judges_outcome` and `verify(episodes)`"
            )
    return verifiers


def _explain(verdicts: Sequence[Verdict]) -> str:
    return "; ".join(f"{v.verifier}: {v.reason}" for v in verdicts)


class AllOf:
    """Passes when every verifier with an opinion passes; score is the lowest score.

    Verifiers answering `passed=None` are ignored; if none has an opinion the verdict is None.
    """

    def __init__(self, *verifiers: Verifier, name: str | None = None) -> None:
        self.verifiers = _check_members("AllOf", verifiers)
        self.judges_outcome = all(v.judges_outcome for v in self.verifiers)
        self.name = name or "all(" + ",".join(v.name for v in self.verifiers) + ")"

    def verify(self, episodes: Sequence[Episode]) -> list[Verdict]:
        results = []
        for episode, verdicts in zip(episodes, _run_all(self.verifiers, episodes), strict=True):
            opinions = [v for v in verdicts if v.passed is not None]
            failed = [v for v in opinions if not v.passed]
            passed = all_passed(verdicts)
            score = min((v.score for v in opinions), default=0.5)
            reason = "failed " + _explain(failed) if failed else "passed " + _explain(opinions)
            results.append(Verdict(episode.episode_id, self.name, passed, score, reason))
        return results


class AnyOf:
    """Passes when at least one verifier passes; score is the highest score."""

    def __init__(self, *verifiers: Verifier, name: str | None = None) -> None:
        self.verifiers = _check_members("AnyOf", verifiers)
        self.judges_outcome = all(v.judges_outcome for v in self.verifiers)
        self.name = name or "any(" + ",".join(v.name for v in self.verifiers) + ")"

    def verify(self, episodes: Sequence[Episode]) -> list[Verdict]:
        results = []
        for episode, verdicts in zip(episodes, _run_all(self.verifiers, episodes), strict=True):
            opinions = [v for v in verdicts if v.passed is not None]
            passing = [v for v in opinions if v.passed]
            passed = None if not opinions else bool(passing)
            score = max((v.score for v in opinions), default=0.5)
            reason = "passed " + _explain(passing) if passing else "failed " + _explain(opinions)
            results.append(Verdict(episode.episode_id, self.name, passed, score, reason))
        return results


class Weighted:
    """Passes when the weighted mean score of the verifiers with an opinion reaches `threshold`."""

    def __init__(
        self,
        verifiers: Sequence[tuple[Verifier, float]],
        threshold: float = 0.5,
        name: str | None = None,
    ) -> None:
        pairs = list(verifiers)
        self.verifiers = _check_members("Weighted", [v for v, _ in pairs])
        self.weights = [float(w) for _, w in pairs]
        if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise ValueError(
                f"Weighted needs non-negative weights with a positive sum; got {self.weights}"
            )
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"Weighted threshold must be in [0, 1]; got {threshold}")
        self.threshold = threshold
        self.judges_outcome = all(v.judges_outcome for v in self.verifiers)
        self.name = (
            name
            or "weighted("
            + ",".join(f"{v.name}:{w:g}" for v, w in zip(self.verifiers, self.weights, strict=True))
            + ")"
        )

    def verify(self, episodes: Sequence[Episode]) -> list[Verdict]:
        results = []
        for episode, verdicts in zip(episodes, _run_all(self.verifiers, episodes), strict=True):
            used = [
                (v, w)
                for v, w in zip(verdicts, self.weights, strict=True)
                if v.passed is not None and w > 0
            ]
            if not used:
                results.append(
                    Verdict(episode.episode_id, self.name, None, 0.5, "no verifier had an opinion")
                )
                continue
            score = sum(v.score * w for v, w in used) / sum(w for _, w in used)
            passed = score >= self.threshold
            reason = (
                f"weighted score {score:.3f} {'>=' if passed else '<'} {self.threshold:g} "
                f"({_explain([v for v, _ in used])})"
            )
            results.append(Verdict(episode.episode_id, self.name, passed, score, reason))
        return results

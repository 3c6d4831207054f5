"""Agreement of a verifier with the environment's ground truth: precision, recall, accuracy."""

from __future__ import annotations

from collections.abc import Sequence

from verifiers.episode import Episode, Verdict


def agreement(verdicts: Sequence[Verdict], episodes: Sequence[Episode]) -> dict[str, float]:
    """Precision, recall and accuracy of `verdicts` against `episode.is_success`.

    Verdicts are matched to episodes by `episode_id`; those with `passed=None` count as
    abstentions (`abstained`) and are left out of the rates. Precision is NaN when the verifier
    passed nothing, recall NaN when no episode succeeded.
    """
    truth = {e.episode_id: bool(e.is_success) for e in episodes}
    counts = {"tp": 0, "fp": 0, "tn": 0, "fn": 0, "abstained": 0}
    for verdict in verdicts:
        if verdict.episode_id not in truth:
            raise ValueError(
                f"verdict for episode {verdict.episode_id!r} from {verdict.verifier!r} matches "
                "none of the given episodes"
            )
        if verdict.passed is None:
            counts["abstained"] += 1
            continue
        actual = truth[verdict.episode_id]
        key = ("t" if verdict.passed == actual else "f") + ("p" if verdict.passed else "n")
        counts[key] += 1
    tp, fp, tn, fn = counts["tp"], counts["fp"], counts["tn"], counts["fn"]
    judged = tp + fp + tn + fn
    return {
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
        "accuracy": (tp + tn) / judged if judged else float("nan"),
        "n": float(judged),
        **{k: float(v) for k, v in counts.items()},
    }

"""`autodidact compare`: the difference in held-out success between campaigns, or rounds of one,
paired seed by seed.

Every campaign evaluates on the same held-out seeds (`verifiers.episode.EVAL_SEED_BASE` + i), and
records each round's outcomes in `evals/round_K.jsonl`; so two policies' outcomes pair up by
(task, seed), and their difference is measured far more tightly than by two independent rates.
Each side is `RUN_DIR` (its last evaluated round) or `RUN_DIR:K`. The first side is the baseline;
every other side is compared with it, per task and pooled over tasks: B - A with a 95% paired
bootstrap interval and the exact McNemar p-value (significant when p < 0.05).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envs import task_name
from train.results.stats import paired_difference
from train.rundir.runlog import RunLog


@dataclass
class Side:
    """One policy's held-out outcomes: (task id, seed) -> success."""

    run_dir: Path
    round: int
    outcomes: dict[tuple[str, int], bool]

    @property
    def label(self) -> str:
        return f"{self.run_dir}:{self.round}"


def load_side(spec: str) -> Side:
    """`RUN_DIR` or `RUN_DIR:K` (K a round number, or `last`)."""
    path, round_ = Path(spec), "last"
    if not path.is_dir() and ":" in spec:
        head, _, tail = spec.rpartition(":")
        path, round_ = Path(head), tail
    if not (path / "metrics.jsonl").is_file() or not (path / "config.toml").is_file():
        raise ValueError(
            f"{spec!r} is not a campaign directory (expected config.toml and metrics.jsonl in "
            f"{str(path)!r}); give RUN_DIR or RUN_DIR:ROUND"
        )
    runlog = RunLog(path)
    evaluated = [row["round"] for row in runlog.rows() if "eval/success_rate" in row]
    if round_ == "last":
        if not evaluated:
            raise ValueError(f"{str(path)!r} has no evaluated round yet")
        k = max(evaluated)
    elif round_.isdigit() and int(round_) in evaluated:
        k = int(round_)
    else:
        raise ValueError(
            f"round {round_!r} of {str(path)!r} is not an evaluated round; expected one of "
            f"{evaluated} or 'last'"
        )
    outcomes = {
        (o["task_id"], int(o["env_seed"])): bool(o["is_success"])
        for o in runlog.read_eval_outcomes(k)
    }
    return Side(path, k, outcomes)


def compare_sides(a: Side, b: Side) -> dict[str, Any]:
    """B - A per task and pooled, over the tasks both sides evaluated and, within each, the
    seeds both evaluated; `notes` name every task and seed left out, and `mean_over` the tasks
    the mean pools."""
    tasks_a, tasks_b = {t for t, _ in a.outcomes}, {t for t, _ in b.outcomes}
    tasks = sorted(tasks_a & tasks_b)
    notes = [
        f"{task_name(task)}: only {side.label} evaluated it; left out of the comparison"
        for side, only in ((a, tasks_a - tasks_b), (b, tasks_b - tasks_a))
        for task in sorted(only)
    ]
    if not tasks:
        raise ValueError(
            f"{a.label} and {b.label} share no evaluated task: nothing to pair (A: "
            f"{_names(tasks_a)}; B: {_names(tasks_b)})"
        )
    per_task, strata = {}, []
    for task in tasks:
        seeds_a = {s for t, s in a.outcomes if t == task}
        seeds_b = {s for t, s in b.outcomes if t == task}
        seeds = sorted(seeds_a & seeds_b)
        if not seeds:
            notes.append(
                f"{task_name(task)}: no held-out seed in common (A: {_seeds(seeds_a)}, B: "
                f"{_seeds(seeds_b)}); left out of the comparison"
            )
            continue
        if seeds_a != seeds_b:
            notes.append(
                f"{task_name(task)}: {len(seeds_a)} and {len(seeds_b)} held-out seeds; "
                f"paired on the {len(seeds)} both have"
            )
        pair = ([a.outcomes[task, s] for s in seeds], [b.outcomes[task, s] for s in seeds])
        strata.append(pair)
        per_task[task_name(task)] = paired_difference([pair])
    if not strata:
        raise ValueError(
            f"{a.label} and {b.label} share no held-out seed on any task: nothing to pair ("
            + "; ".join(notes)
            + ")"
        )
    left_out = sorted({task_name(t) for t in tasks_a | tasks_b} - set(per_task))
    if left_out:
        notes.append(
            f"mean (shared tasks): over the {len(per_task)} tasks both sides evaluated on shared "
            f"seeds ({', '.join(per_task)}); without {', '.join(left_out)}"
        )
    return {
        "a": a.label,
        "b": b.label,
        "tasks": per_task,
        "mean": paired_difference(strata),
        "left_out": left_out,
        "notes": notes,
    }


def _names(tasks: set[str]) -> str:
    return ", ".join(task_name(t) for t in sorted(tasks)) or "none"


def _seeds(seeds: set[int]) -> str:
    """A seed set, short: `10000000..10000005 (6 seeds)`."""
    low, high = min(seeds), max(seeds)
    return f"{low}..{high} ({len(seeds)} seeds)" if len(seeds) > 1 else str(low)


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"A = {result['a']}   B = {result['b']}",
        f"{'task':<22} {'n':>4} {'A':>6} {'B':>6} {'B - A':>7}  {'95% paired interval':<20}"
        f" {'McNemar p':>9}  significant",
    ]
    mean = "mean (shared tasks)" if result["left_out"] else "mean"
    rows = [*result["tasks"].items(), (mean, result["mean"])]
    for name, r in rows:
        interval = f"[{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]"
        lines.append(
            f"{name:<22} {r['n']:>4} {100 * r['rate_a']:>5.1f}% {100 * r['rate_b']:>5.1f}% "
            f"{100 * r['difference']:>+6.1f}  {interval:<20} {r['p_value']:>9.3g}  "
            f"{'yes' if r['significant'] else 'no'}"
        )
    lines += [f"note: {note}" for note in result["notes"]]
    return "\n".join(lines)


def compare_runs(specs: Sequence[str]) -> tuple[Side, list[dict[str, Any]]]:
    """Every side after the first against the first (`RUN[:ROUND]` specs): the baseline and one
    `compare_sides` result per other side."""
    if len(specs) < 2:
        raise ValueError("compare needs at least two sides: RUN_A[:ROUND] RUN_B[:ROUND] ...")
    sides = [load_side(spec) for spec in specs]
    return sides[0], [compare_sides(sides[0], side) for side in sides[1:]]


def format_report(results: Sequence[dict[str, Any]]) -> str:
    """The tables `autodidact compare` prints, after a line saying how they were computed."""
    head = (
        "points of held-out success; interval: paired bootstrap over seeds (10,000 resamples); "
        "p: exact McNemar"
    )
    return "\n\n".join([head, *(format_table(result) for result in results)])

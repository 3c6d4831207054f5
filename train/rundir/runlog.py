"""A campaign's records on disk: per-round metrics (JSONL + TensorBoard), verdicts, the summary table.

Every write goes to a temporary file that is then renamed over the target, so a campaign killed at
any instant leaves each file either as it was or as it should be.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from envs import task_name
from train.rundir.files import RecordError, atomic_write_text, read_jsonl
from train.rundir.integrity import record_checksums
from verifiers.episode import Verdict


def fix_for_metrics_line(line: int) -> str:
    """What to do about a metrics.jsonl line that does not read back (a resume refuses it)."""
    return (
        f"remove line {line} of metrics.jsonl (`autodidact run --resume` then evaluates that "
        "round again and writes its record anew) or restore the file from a copy"
    )


class RunLog:
    """The records of one campaign directory."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.metrics_path = self.out / "metrics.jsonl"

    def rows(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        rows = read_jsonl(self.metrics_path)
        for n, row in enumerate(rows, 1):
            if isinstance(row.get("round"), bool) or not isinstance(row.get("round"), int):
                raise RecordError(
                    f"{str(self.metrics_path)!r} record {n} has no integer 'round': "
                    f"{json.dumps(row)[:80]}",
                    self.metrics_path,
                    _line_of_record(self.metrics_path, n),
                )
        return rows

    def check(self) -> None:
        """Raise RecordError, saying what to do, for a metrics.jsonl that does not read back."""
        try:
            self.rows()
        except RecordError as err:
            raise RecordError(
                f"{err}; {fix_for_metrics_line(err.line)}", err.path, err.line
            ) from None

    def has_round(self, k: int) -> bool:
        return any(row["round"] == k for row in self.rows())

    def append(self, k: int, record: dict[str, Any]) -> None:
        """Add round k's record (rewriting the file atomically) and mirror it to TensorBoard."""
        rows = [row for row in self.rows() if row["round"] != k]
        rows.append({"round": k, **record})
        rows.sort(key=lambda row: row["round"])
        atomic_write_text(self.metrics_path, "".join(json.dumps(row) + "\n" for row in rows))
        last = rows[-1]["round"]
        atomic_write_text(self.out / "state.json", json.dumps({"completed_round": last}) + "\n")
        _tensorboard(self.out / "tb", [{"round": k, **record}])

    def rebuild_tensorboard(self) -> None:
        """Make `tb/` hold exactly the rounds of metrics.jsonl, each once (a resume starts here:
        a kill between the two writes of `append`, or a metrics.jsonl rebuilt after it was lost,
        would otherwise leave a round missing or twice)."""
        tb, tmp = self.out / "tb", self.out / ".tb.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        rows = self.rows()
        if rows:
            _tensorboard(tmp, rows)
        shutil.rmtree(tb, ignore_errors=True)
        if rows:
            tmp.rename(tb)

    def save_partial(self, k: int, record: dict[str, Any]) -> None:
        """Round k's record before evaluation, so a resume after its checkpoint keeps it."""
        atomic_write_text(self.out / "partial" / f"round_{k}.json", json.dumps(record) + "\n")

    def has_partial(self, k: int) -> bool:
        return (self.out / "partial" / f"round_{k}.json").is_file()

    def partial(self, k: int) -> dict[str, Any]:
        path = self.out / "partial" / f"round_{k}.json"
        return read_jsonl(path)[0] if path.is_file() else {}

    def write_verdicts(self, k: int, verdicts: list[Verdict]) -> None:
        lines = "".join(json.dumps(dataclasses.asdict(v)) + "\n" for v in verdicts)
        atomic_write_text(self.out / "verdicts" / f"round_{k}.jsonl", lines)

    def read_verdicts(self, k: int) -> list[Verdict]:
        path = self.out / "verdicts" / f"round_{k}.jsonl"
        if not path.is_file():
            return []
        return [Verdict(**record) for record in read_jsonl(path)]

    def write_eval_outcomes(self, k: int, episodes: list) -> None:
        """Round k's held-out episodes, one line each (task, seed, success, length): what a paired
        comparison of two rounds or campaigns (`train.results.compare`) pairs seed by seed."""
        lines = "".join(
            json.dumps(
                {
                    "task_id": e.task_id,
                    "env_seed": e.env_seed,
                    "is_success": bool(e.is_success),
                    "length": e.length,
                }
            )
            + "\n"
            for e in episodes
        )
        path = self.out / "evals" / f"round_{k}.jsonl"
        atomic_write_text(path, lines)
        record_checksums(path)

    def read_eval_outcomes(self, k: int) -> list[dict[str, Any]]:
        path = self.out / "evals" / f"round_{k}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(
                f"{str(path)!r} not found: round {k} of {str(self.out)!r} has no stored held-out "
                "outcomes (campaigns record them from this version on; evaluate its checkpoint "
                "with `autodidact eval` instead)"
            )
        return read_jsonl(path)

    def summary_table(self, task_ids: list[str]) -> str:
        """Markdown: per task (and pooled), seed-policy success -> final success with 95% intervals,
        then one sentence on the mean: what rose (or fell) by how much, and whether the two
        intervals are separate."""
        rows = [row for row in self.rows() if "eval/success_rate" in row]
        first, last = rows[0], rows[-1]
        lines = [
            f"| task | seed policy (round {first['round']}) | final (round {last['round']}) | change |",
            "| --- | --- | --- | --- |",
        ]
        for name in [task_name(t) for t in task_ids] + [None]:
            suffix = f"/{name}" if name else ""
            a, b = first[f"eval/success_rate{suffix}"], last[f"eval/success_rate{suffix}"]
            lines.append(
                f"| {name or '**mean**'} | {_cell(first, suffix)} | {_cell(last, suffix)} | {100 * (b - a):+.0f} pts |"
            )
        lines += ["", _change_sentence(first, last)]
        return "\n".join(lines)


def _line_of_record(path: Path, n: int) -> int:
    """The line number of the n-th non-blank line of `path`."""
    lines = [i for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    return lines[n - 1]


def _tensorboard(log_dir: Path, rows: list[dict[str, Any]]) -> None:
    """The numeric metrics of `rows` as TensorBoard scalars, each at its round."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(log_dir))
    for row in rows:
        for key, value in row.items():
            if key != "round" and isinstance(value, (int, float)) and not isinstance(value, bool):
                writer.add_scalar(key, value, global_step=row["round"])
    writer.close()


def _change_sentence(first: dict[str, Any], last: dict[str, Any]) -> str:
    """The mean's change from the seed round to the last, and whether it is more than noise."""
    a, b = first["eval/success_rate"], last["eval/success_rate"]
    verb = "rose" if b > a else "fell" if b < a else "stayed"
    separate = (
        last["eval/ci_low"] > first["eval/ci_high"] or first["eval/ci_low"] > last["eval/ci_high"]
    )
    verdict = (
        "the 95% intervals are separate"
        if separate
        else "the 95% intervals overlap: not a clear change"
    )
    return (
        f"Mean held-out success {verb} from {_cell(first, '')} (round {first['round']}) to "
        f"{_cell(last, '')} (round {last['round']}), {100 * (b - a):+.0f} points; {verdict}."
    )


def _cell(row: dict[str, Any], suffix: str) -> str:
    rate = row[f"eval/success_rate{suffix}"]
    return f"{100 * rate:.0f}% [{100 * row[f'eval/ci_low{suffix}']:.0f}, {100 * row[f'eval/ci_high{suffix}']:.0f}]"

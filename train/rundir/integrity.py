"""What a campaign's checkpoints and held-out outcomes must be, checked wherever they are read: the
size and SHA-256 of every file, recorded beside it when it is written, and the outcomes against
the round's record in metrics.jsonl.

Records formats (`records.json` in the campaign directory)::

    1  written before these checks: a store without manifest.json loads unchecked (it predates
       the manifest), checkpoints and outcome files carry no checksum record
    2  a store that holds episodes always has its manifest; every checkpoint has
       checkpoints/round_K.checksums.json and every outcome file evals/round_K.checksums.json

A campaign started in a new directory writes `{"format": 2}` before anything else; resuming a
directory without records.json writes the format its files show, so that the rule below keeps
giving the same answer after this version adds checksum records to an old run's new rounds.
The rule, for a directory without records.json: format 2 if any checksum record exists (the file
was lost, and the records show which version wrote the run), else 1. Only a format-1 run may
lack a manifest or a checksum record; its files are still checked in every other way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from envs import task_name
from train.collect.store import sha256
from train.rundir.files import RecordError, atomic_write_text, read_jsonl
from verifiers.episode import eval_jobs

RECORDS_FORMAT = 2
RECORDS_FILE = "records.json"
CHECKSUMS_SUFFIX = ".checksums.json"
OUTCOME_KEYS = {"task_id": str, "env_seed": int, "is_success": bool, "length": int}


def records_format(run: str | Path) -> int:
    """The records format of the campaign at `run` (see the module docstring for the rule)."""
    run = Path(run)
    path = run / RECORDS_FILE
    if path.is_file():
        text = path.read_text(errors="replace")
        try:
            value = json.loads(text).get("format")
        except (ValueError, AttributeError):
            value = None
        if value not in (1, RECORDS_FORMAT) or isinstance(value, bool):
            raise ValueError(
                f"{str(path)!r} holds {text.strip()[:80]!r}; expected "
                f'{{"format": 1}} or {{"format": {RECORDS_FORMAT}}} (delete the file: a resume '
                "writes it anew from what the run's records show)"
            )
        return value
    return RECORDS_FORMAT if checksum_records(run) else 1


def write_records_format(run: str | Path, value: int) -> None:
    atomic_write_text(Path(run) / RECORDS_FILE, json.dumps({"format": value}) + "\n")


def checksum_records(run: Path) -> list[Path]:
    """Every checkpoint and outcome checksum record under `run`."""
    return [
        p
        for folder in (run / "checkpoints", run / "evals")
        if folder.is_dir()
        for p in folder.glob(f"round_*{CHECKSUMS_SUFFIX}")
    ]


def checksums_path(path: str | Path) -> Path:
    """Where the checksum record of a checkpoint directory or an outcome file lies: beside it."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".jsonl") + CHECKSUMS_SUFFIX)


def file_checksums(root: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {"bytes", "sha256"}} of every file under `root` (or of `root`, a file)."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {
        (p.name if p == root else str(p.relative_to(root))): {
            "bytes": p.stat().st_size,
            "sha256": sha256(p),
        }
        for p in files
    }


def record_checksums(written: Path, final: Path | None = None) -> None:
    """Record the checksums of `written` (a checkpoint directory or an outcome file) beside
    `final` (where it is about to be renamed to; itself by default), atomically."""
    final = final or written
    files = file_checksums(written)
    if written.is_file():
        files = {final.name: files[written.name]}
    atomic_write_text(checksums_path(final), json.dumps({"files": files}, indent=1) + "\n")


def read_checksums(path: str | Path) -> dict[str, dict[str, Any]] | None:
    """The recorded checksums of `path` (a checkpoint directory or outcome file), or None."""
    record = checksums_path(path)
    if not record.is_file():
        return None
    try:
        files = json.loads(record.read_text())["files"]
        if not isinstance(files, dict) or not all(
            isinstance(v, dict) and {"bytes", "sha256"} <= set(v) for v in files.values()
        ):
            raise ValueError("expected {'files': {name: {'bytes': N, 'sha256': HEX}}}")
        return files
    except (ValueError, KeyError, TypeError) as err:
        raise ChecksumRecordError(f"{record.name} is unreadable ({err})") from None


class ChecksumRecordError(ValueError):
    """A checksum record that does not read back."""


def checksum_problem(path: Path, required: bool) -> str | None:
    """What is wrong with `path` (a checkpoint directory or outcome file) against its recorded
    checksums: a file missing, truncated, changed or corrupt; no record where one is `required`;
    None when it matches (or, not required, has no record to check)."""
    try:
        recorded = read_checksums(path)
    except ChecksumRecordError as err:
        return str(err)
    if recorded is None:
        return f"no checksum record ({checksums_path(path).name})" if required else None
    root = path if path.is_dir() else path.parent
    for name, want in recorded.items():
        file = root / name
        if not file.is_file():
            return f"{name} is missing"
        size = file.stat().st_size
        if size != want["bytes"]:
            how = "truncated" if size < want["bytes"] else "changed"
            return f"{name} is {how} ({size} bytes; {want['bytes']} recorded)"
        if sha256(file) != want["sha256"]:
            return (
                f"{name} is corrupt (its SHA-256 differs from the one recorded when it was written)"
            )
    return None


def checkpoint_problem(checkpoint: Path, required: bool) -> str | None:
    """What is wrong with a checkpoint directory, or None (see `checksum_problem`)."""
    if not checkpoint.is_dir():
        return "missing"
    problem = checksum_problem(checkpoint, required)
    if problem is None and not (checkpoint / "config.json").is_file():
        return "config.json is missing"
    return problem


def outcomes_problem(
    path: Path, row: dict[str, Any], task_ids: list[str], episodes_per_task: int, required: bool
) -> str | None:
    """What is wrong with round `row["round"]`'s held-out outcomes file: against its checksum
    record, as JSON lines of (task_id, env_seed, is_success, length), as the fixed held-out seeds
    of every task, and against the success rates metrics.jsonl records for the round."""
    if not path.is_file():
        return "missing"
    try:
        outcomes = read_jsonl(path)
    except RecordError as err:
        return f"line {err.line} is not a JSON object"
    for n, outcome in enumerate(outcomes, 1):
        for key, kind in OUTCOME_KEYS.items():
            value = outcome.get(key)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                return f"outcome {n} has {key}={value!r}; expected a {kind.__name__}"
    expected = {(j.task_id, j.seed) for j in eval_jobs(task_ids, episodes_per_task)}
    held = [(o["task_id"], o["env_seed"]) for o in outcomes]
    if sorted(held) != sorted(expected):
        missing = len(expected - set(held))
        return (
            f"holds {len(held)} outcomes ({missing} of the {len(expected)} held-out "
            f"(task, seed) pairs missing, {len(held) - len(set(held) & expected)} unexpected)"
        )
    for task_id in task_ids:
        mine = [o for o in outcomes if o["task_id"] == task_id]
        rate = sum(o["is_success"] for o in mine) / len(mine)
        key = f"eval/success_rate/{task_name(task_id)}"
        if key in row and row[key] != rate:
            return (
                f"gives {task_name(task_id)} a success rate of {rate:.3f}; metrics.jsonl records "
                f"{row[key]:.3f} for round {row['round']}"
            )
    problem = checksum_problem(path, required)
    return None if problem is None else problem.removeprefix(f"{path.name} is ")

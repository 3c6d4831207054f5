"""`autodidact verify-run`: whether a campaign directory (copied, moved, or left by a crash) holds
what its records say: its config, its per-round records, every stored part as written, each
round's episodes, checkpoint and held-out outcomes; whether it is finished; and, for each problem,
what repairs it (`run --resume` repairs all it can, `train.campaign.repair`)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import envs
from train.campaign.config import load_campaign_config
from train.collect.store import MANIFEST, EpisodeStore, StoreError
from train.rundir.files import RecordError
from train.rundir.integrity import (
    RECORDS_FILE,
    RECORDS_FORMAT,
    checkpoint_problem,
    outcomes_problem,
    records_format,
)
from train.rundir.runlog import RunLog, fix_for_metrics_line


@dataclass
class Problem:
    text: str
    """One line naming the file and what is wrong with it."""
    fix: str | None = None
    """What to do, where `run --resume` refuses the run as it is; None: `--resume` repairs it."""


@dataclass
class Audit:
    problems: list[Problem] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    not_run: list[int] = field(default_factory=list)
    """Rounds the config asks for that metrics.jsonl does not record (a run killed or stopped)."""


def audit_run(run_dir: str | Path) -> Audit:
    """Everything `verify-run` checks of the campaign at `run_dir`."""
    run = Path(run_dir)
    if not (run / "config.toml").is_file():
        raise FileNotFoundError(
            f"{str(run / 'config.toml')!r} not found; is {str(run)!r} a campaign directory?"
        )
    audit = Audit()
    problems, facts = audit.problems, audit.facts
    try:
        config = load_campaign_config(run / "config.toml")
        facts.append(f"config.toml: {len(config.tasks)} tasks, {config.rounds} rounds")
    except ValueError as err:
        fix = "correct the value it names in config.toml, or restore the file from a copy"
        problems.append(Problem(str(err), fix))
        config = None
    try:
        fmt = records_format(run)
    except ValueError as err:
        problems.append(Problem(str(err), f"delete {RECORDS_FILE}"))
        fmt = RECORDS_FORMAT
    if fmt >= 2 and not (run / RECORDS_FILE).is_file():
        problems.append(
            Problem(
                f"{RECORDS_FILE}: missing (the run's checksum records show this version wrote it)"
            )
        )
    try:
        rows = {row["round"]: row for row in RunLog(run).rows()}
        facts.append(f"metrics.jsonl: rounds {sorted(rows)} complete")
    except RecordError as err:
        problems.append(Problem(str(err), fix_for_metrics_line(err.line)))
        rows = None
    if config is not None and rows is not None:
        audit.not_run = [k for k in range(config.rounds + 1) if k not in rows]
    _audit_store(run, fmt, rows or {}, audit)
    rounds = range(config.rounds + 1) if config is not None else sorted(rows or {})
    for k in rounds:
        row = (rows or {}).get(k)
        checkpoint = run / "checkpoints" / f"round_{k}"
        if row is not None or checkpoint.exists():
            problem = checkpoint_problem(checkpoint, required=fmt >= 2)
            if problem is not None:
                complete = f"round {k} is complete" if row else f"round {k} is not evaluated yet"
                problems.append(Problem(f"checkpoints/round_{k}: {problem} ({complete})"))
        if row is None:
            continue
        path = run / "evals" / f"round_{k}.jsonl"
        if config is None:
            problem = None if path.is_file() else "missing"
        else:
            task_ids = [envs.resolve(t) for t in config.tasks]
            episodes = config.eval.episodes_per_task
            problem = outcomes_problem(path, row, task_ids, episodes, required=fmt >= 2)
        if problem is not None:
            problems.append(Problem(f"evals/round_{k}.jsonl: {problem} (round {k} is complete)"))
    if not problems and fmt >= 2:
        facts.append("checkpoints/, evals/: every file matches its recorded size and SHA-256")
    elif not problems:
        facts.append(
            "checkpoints/, evals/: no checksum records (a run written before them): outcomes "
            "checked against metrics.jsonl only"
        )
    return audit


def _audit_store(run: Path, fmt: int, rows: dict[int, dict], audit: Audit) -> None:
    """The episode store: its manifest, every part against it, each round's episode count
    against metrics.jsonl (read from the parts themselves when there is no manifest)."""
    problems, facts = audit.problems, audit.facts
    store = EpisodeStore(run / "episodes")
    unreadable = False
    try:
        manifest = store.manifest()
    except StoreError as err:
        problems.append(Problem(f"episodes/: {err}"))
        manifest, unreadable = None, True
    if manifest is None:
        on_disk = store.files_on_disk()
        wrote = on_disk or rows or (run / "checkpoints" / "round_0").exists()
        if fmt >= 2 and wrote and not unreadable:
            problems.append(
                Problem(
                    f"episodes/{MANIFEST}: missing (this campaign's store always has one: "
                    f"nothing records what its {len(on_disk)} part file(s) should hold)"
                )
            )
        elif on_disk and fmt < 2:
            facts.append(
                "episodes/: no manifest.json (written before parts had checksums): unchecked"
            )
        try:
            stored = store.episodes_per_round(on_disk)
        except StoreError as err:
            fix = None  # resume sets it aside and collects its chunk again
            if fmt < 2 and not unreadable:
                fix = "restore that part file from a copy (nothing records what it held)"
            problems.append(Problem(f"episodes/: {err}", fix))
            stored = None
    else:
        damaged = store.check()
        for p in damaged:
            label = p.entry.get("label") or {}
            fix = None  # resume collects the chunk again
            if "round" not in label or "chunk" not in label:
                fix = f"restore {p.file} from a copy (it records no round and chunk to collect)"
            problems.append(Problem(f"episodes/: {p.describe()}", fix))
        count = sum(entry["rows"] for entry in manifest["parts"])
        facts.append(f"episodes/: {len(manifest['parts'])} parts, {count} episodes recorded")
        if not damaged:
            facts.append("episodes/: every part matches its recorded size and SHA-256")
        uncommitted = store.uncommitted_files()
        if uncommitted:
            facts.append(
                f"episodes/: {len(uncommitted)} part file(s) the manifest does not list (appends "
                f"a kill interrupted; ignored): {', '.join(p.name for p in uncommitted)}"
            )
        stored = {}
        for entry in manifest["parts"]:
            k = (entry.get("label") or {}).get("round")
            stored[k] = stored.get(k, 0) + entry["rows"]
    for k, row in sorted(rows.items()):
        key = "demos/episodes" if k == 0 else "rollout/episodes"
        if stored is not None and key in row and stored.get(k, 0) != row[key]:
            where = "recorded" if manifest is not None else "in the part files on disk"
            problems.append(
                Problem(
                    f"episodes/: round {k} has {stored.get(k, 0)} episodes {where}; "
                    f"metrics.jsonl says {row[key]} were collected"
                )
            )


def verify_run(args: argparse.Namespace) -> int:
    """The CLI: what was checked, each problem on its own line, what to do; exit 1 if the run is
    damaged or unfinished, 0 if it is sound and finished."""
    run = args.run_dir
    audit = audit_run(run)
    for fact in audit.facts:
        print(f"ok: {fact}")
    for problem in audit.problems:
        print(f"problem: {problem.text}")
    resume = f"`autodidact run --resume --out {run}`"
    unfinished = ""
    if audit.not_run:
        unfinished = f"unfinished: {_rounds(audit.not_run)} not run"
    if not audit.problems:
        if unfinished:
            print(f"{run}: {unfinished}; {resume} finishes it")
            return 1
        print(f"{run}: sound")
        return 0
    fixes = [p.fix for p in audit.problems if p.fix]
    repairs = "repairs the rest" if fixes else "repairs them"
    todo = [repairs] if len(fixes) < len(audit.problems) else []
    does = " and ".join(todo + (["finishes it"] if unfinished else []))
    head = f"{len(audit.problems)} problem(s) in {run}" + (f"; {unfinished}" if unfinished else "")
    if not fixes:
        print(f"{head}; {resume} {does}")
    else:
        after = f"; then {resume} {does}" if does else ""
        print(f"{head}; {resume} refuses the run as it is: first {'; '.join(fixes)}{after}")
    return 1


def _rounds(ks: list[int]) -> str:
    """`round 2`, `rounds 1-2`, `rounds 0, 2-3`."""
    spans, start = [], ks[0]
    for a, b in zip(ks, [*ks[1:], None], strict=True):
        if b != a + 1:
            spans.append(f"{start}" if start == a else f"{start}-{a}")
            start = b
    word = "round" if len(ks) == 1 else "rounds"
    return f"{word} {', '.join(spans)}"

"""`autodidact verify-run`: whether a campaign directory (copied, moved, or left by a crash) holds
what its records say: its config, its per-round records, every stored part as written, each
round's episodes, checkpoint and held-out outcomes."""

from __future__ import annotations

import argparse
from pathlib import Path

from train.campaign.config import load_campaign_config
from train.campaign.runlog import RunLog
from train.collect.store import EpisodeStore, StoreError


def audit_run(run_dir: str | Path) -> tuple[list[str], list[str]]:
    """(problems, facts) of the campaign at `run_dir`: each problem one line naming the file."""
    run = Path(run_dir)
    if not (run / "config.toml").is_file():
        raise FileNotFoundError(
            f"{str(run / 'config.toml')!r} not found; is {str(run)!r} a campaign directory?"
        )
    problems, facts = [], []
    try:
        config = load_campaign_config(run / "config.toml")
        facts.append(f"config.toml: {len(config.tasks)} tasks, {config.rounds} rounds")
    except ValueError as err:
        problems.append(str(err))
    try:
        rows = RunLog(run).rows()
        facts.append(f"metrics.jsonl: rounds {[row['round'] for row in rows]} complete")
    except ValueError as err:
        problems.append(str(err))
        rows = []
    store = EpisodeStore(run / "episodes")
    try:
        manifest = store.manifest()
        damaged = store.check()
    except StoreError as err:
        problems.append(str(err))
        return problems, facts
    problems += [f"episodes/: {p.describe()}" for p in damaged]
    if manifest is None and store.part_files():
        facts.append("episodes/: no manifest.json (written before parts had checksums): unchecked")
    elif manifest is not None:
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
    stored: dict[int, int] = {}
    for entry in manifest["parts"] if manifest else []:
        k = (entry.get("label") or {}).get("round")
        stored[k] = stored.get(k, 0) + entry["rows"]
    for row in rows:
        k = row["round"]
        key = "demos/episodes" if k == 0 else "rollout/episodes"
        if manifest is not None and key in row and stored.get(k, 0) != row[key]:
            problems.append(
                f"episodes/: round {k} has {stored.get(k, 0)} episodes recorded; metrics.jsonl "
                f"says {row[key]} were collected"
            )
        if not (run / "checkpoints" / f"round_{k}" / "config.json").is_file():
            problems.append(f"checkpoints/round_{k}/config.json: missing (round {k} is complete)")
        if not (run / "evals" / f"round_{k}.jsonl").is_file():
            problems.append(f"evals/round_{k}.jsonl: missing (round {k} is complete)")
    return problems, facts


def verify_run(args: argparse.Namespace) -> int:
    """The CLI: what was checked, each problem on its own line; exit 1 if any."""
    problems, facts = audit_run(args.run_dir)
    for fact in facts:
        print(f"ok: {fact}")
    for problem in problems:
        print(f"problem: {problem}")
    if problems:
        print(
            f"{len(problems)} problem(s) in {args.run_dir}; `autodidact run --resume --out "
            f"{args.run_dir}` collects missing or damaged parts again"
        )
        return 1
    print(f"{args.run_dir}: sound")
    return 0

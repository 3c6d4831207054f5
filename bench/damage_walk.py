"""The damage walk of issue 32: one finished tiny campaign, each damage applied to a copy of it,
`verify-run` on the copy (what it names, what it advises), `run --resume` on it (what it made
again), and the repaired copy compared with the untouched run: metrics.jsonl (timings aside), the
episodes (each part's SHA-256 by round and chunk), the checkpoints and the held-out outcomes
(their files' SHA-256); then `verify-run` again.

    .venv/bin/python bench/damage_walk.py [--dir DIR] [--only NAME ...]

Where resume refuses a damage (a bad metrics.jsonl line, a bad config value), the walk follows
verify-run's advice and resumes again. Set AUTODIDACT_THREADS=1 (training is deterministic at a
fixed thread count). Takes about five minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "train.cli"]
TIMING = ("per_s", "seconds", "time")
REPAIRS = ("store:", "checkpoints/", "evals/", "records.json")
"""The log lines of what a resume made again; and of the rounds it ran (" success_rate=")."""


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(CLI + list(args), env=env, cwd=ROOT, capture_output=True, text=True)


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def parts(run: Path) -> list[dict]:
    return json.loads((run / "episodes" / "manifest.json").read_text())["parts"]


def part_file(run: Path, round: int, chunk: int) -> Path:
    entry = next(p for p in parts(run) if p["label"] == {"round": round, "chunk": chunk})
    return run / "episodes" / entry["file"]


def edit_lines(path: Path, edit: Callable[[list[str]], list[str]]) -> None:
    path.write_text("".join(line + "\n" for line in edit(path.read_text().splitlines())))


def flip_success(lines: list[str]) -> list[str]:
    first = json.loads(lines[0])
    first["is_success"] = not first["is_success"]
    return [json.dumps(first), *lines[1:]]


def drop_last_round(run: Path) -> None:
    edit_lines(run / "metrics.jsonl", lambda lines: lines[:-1])


def bad_metrics_line(run: Path) -> None:
    """Round 1's record cut short, as a write without the atomic rename could leave it."""
    edit_lines(run / "metrics.jsonl", lambda lines: [lines[0], lines[1][:40]])


def remove_line_2(run: Path) -> None:
    edit_lines(run / "metrics.jsonl", lambda lines: [lines[0], *lines[2:]])


def bad_config(run: Path) -> None:
    path = run / "config.toml"
    path.write_text(path.read_text().replace("rounds = 1", 'rounds = "x"'))


def good_config(run: Path) -> None:
    path = run / "config.toml"
    path.write_text(path.read_text().replace('rounds = "x"', "rounds = 1"))


def unlink(*names: str) -> Callable[[Path], None]:
    return lambda run: [(run / name).unlink() for name in names] and None


DAMAGES: list[tuple[str, Callable[[Path], None], Callable[[Path], None] | None]] = [
    # (name, damage, what verify-run advises doing first where resume refuses)
    ("manifest + round 1 chunk 0 deleted",
     lambda r: [part_file(r, 1, 0).unlink(), (r / "episodes/manifest.json").unlink()], None),
    ("manifest deleted", unlink("episodes/manifest.json"), None),
    ("manifest garbage", lambda r: (r / "episodes/manifest.json").write_text("{garbage"), None),
    ("part r0c1 deleted", lambda r: part_file(r, 0, 1).unlink(), None),
    ("part r1c0 truncated", lambda r: os.truncate(part_file(r, 1, 0), 1000), None),
    ("part r1c1 byte flipped", lambda r: flip_byte(part_file(r, 1, 1)), None),
    ("ckpt 1 weights deleted", unlink("checkpoints/round_1/model.safetensors"), None),
    ("ckpt 1 weights byte flipped",
     lambda r: flip_byte(r / "checkpoints/round_1/model.safetensors"), None),
    ("ckpt 0 weights byte flipped",
     lambda r: flip_byte(r / "checkpoints/round_0/model.safetensors"), None),
    ("ckpt 1 directory deleted",
     lambda r: shutil.rmtree(r / "checkpoints/round_1"), None),
    ("ckpt 1 checksum record deleted", unlink("checkpoints/round_1.checksums.json"), None),
    ("ckpt 0 byte flipped + part r1c0 deleted",
     lambda r: [flip_byte(r / "checkpoints/round_0/model.safetensors"),
                part_file(r, 1, 0).unlink()], None),
    ("evals 1 garbage line",
     lambda r: edit_lines(r / "evals/round_1.jsonl", lambda ls: [*ls, "garbage"]), None),
    ("evals 1 truncated (head -6)",
     lambda r: edit_lines(r / "evals/round_1.jsonl", lambda ls: ls[:6]), None),
    ("evals 1 one is_success flipped",
     lambda r: edit_lines(r / "evals/round_1.jsonl", flip_success), None),
    ("evals 1 deleted", unlink("evals/round_1.jsonl"), None),
    ("evals 1 checksum record deleted", unlink("evals/round_1.checksums.json"), None),
    ("records.json deleted", unlink("records.json"), None),
    ("killed before round 1's record", drop_last_round, None),
    ("metrics.jsonl bad line", bad_metrics_line, remove_line_2),
    ("config.toml bad value", bad_config, good_config),
]  # fmt: skip


def fingerprint(run: Path) -> dict[str, object]:
    """What the walk compares with the untouched run."""
    rows = [
        {k: v for k, v in json.loads(line).items() if not any(t in k for t in TIMING)}
        for line in (run / "metrics.jsonl").read_text().splitlines()
    ]
    episodes = {(p["label"]["round"], p["label"]["chunk"]): p["sha256"] for p in parts(run)}

    def records(folder: str) -> dict[str, str]:
        return {
            p.name: p.read_text() for p in sorted((run / folder).glob("round_*.checksums.json"))
        }

    return {
        "metrics": rows,
        "episodes": episodes,
        "checkpoints": records("checkpoints"),
        "evals": records("evals"),
    }


def same(a: dict, b: dict) -> dict[str, str]:
    return {key: "same" if a.get(key) == b.get(key) else "DIFFERS" for key in b}


def walk(damage: Callable, fix: Callable | None, reference: Path, run: Path) -> dict:
    shutil.copytree(reference, run)
    damage(run)
    before = cli("verify-run", str(run))
    named = [line.removeprefix("problem: ") for line in before.stdout.splitlines()]
    named = [line for line in named if not line.startswith("ok: ")]
    start = time.perf_counter()
    resume = cli("run", "--resume", "--out", str(run))
    refused = ""
    if resume.returncode != 0 and fix is not None:
        refused = resume.stderr.strip().splitlines()[-1]
        fix(run)
        resume = cli("run", "--resume", "--out", str(run))
    seconds = time.perf_counter() - start
    did = [line.split(" ", 1)[1] for line in resume.stdout.splitlines() if " " in line]
    did = [line for line in did if line.startswith(REPAIRS) or " success_rate=" in line]
    after = cli("verify-run", str(run))
    result = {
        "verify_exit": before.returncode,
        "named": named,
        "refused": refused,
        "resume_exit": resume.returncode,
        "resume_s": seconds,
        "repairs": did,
        "error": resume.stderr.strip().splitlines()[-1:] if resume.returncode else [],
        "after": after.stdout.strip().splitlines()[-1],
    }
    if resume.returncode == 0:
        result.update(same(fingerprint(run), fingerprint(reference)))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--only", nargs="+", default=None, help="only damages whose name has this")
    args = parser.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="damage-walk-"))
    reference = work / "untouched"
    if not (reference / "summary.md").is_file():
        shutil.rmtree(reference, ignore_errors=True)
        proc = cli("run", "--preset", "tiny", "--out", str(reference), "rounds=1",
                   "eval.videos_per_task=0")  # fmt: skip
        if proc.returncode != 0:
            print(proc.stderr[-3000:])
            return 1
    ok = True
    rows = []
    for i, (name, damage, fix) in enumerate(DAMAGES):
        if args.only and not any(o in name for o in args.only):
            continue
        run = work / f"damage_{i:02d}"
        shutil.rmtree(run, ignore_errors=True)
        result = walk(damage, fix, reference, run)
        rows.append((name, result))
        print(f"## {name}")
        print(f"verify-run: exit {result['verify_exit']}")
        for line in result["named"]:
            print(f"    {line}")
        if result["refused"]:
            print(f"resume refused: {result['refused']}")
            print("    (followed verify-run's advice, resumed again)")
        print(f"resume: exit {result['resume_exit']} in {result['resume_s']:.0f} s")
        for line in result["repairs"] + result["error"]:
            print(f"    {line}")
        print(f"after: {result['after']}")
        print()
        keys = ("metrics", "episodes", "checkpoints", "evals")
        repaired = result["resume_exit"] == 0 and all(result.get(k) == "same" for k in keys)
        ok &= result["verify_exit"] == 1 and repaired and result["after"].endswith(": sound")
    print("| damage | verify-run | resume | metrics | episodes | checkpoints | evals | after |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows:
        resume = f"exit {r['resume_exit']}" + (" (after the advice)" if r["refused"] else "")
        cells = [r.get(k, "-") for k in ("metrics", "episodes", "checkpoints", "evals")]
        after = "sound" if r["after"].endswith(": sound") else r["after"][-40:]
        print(
            f"| {name} | exit {r['verify_exit']}, {len(r['named']) - 1} named | {resume} | "
            + " | ".join(cells)
            + f" | {after} |"
        )
    print(f"\nwork directory: {work}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

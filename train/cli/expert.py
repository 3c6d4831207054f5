"""The task subcommands: `envs` (list), `expert` (run a scripted expert), `new-task` (write a
skeleton) and `check-task` (the contract and success-rate checks of one task).

`autodidact expert TASK` runs the task's scripted expert with its actions quantized to the
policy's 256 action bins (as demonstrations are recorded), reports the success rate and can
write an MP4 of the first episode. Each command takes `--import MODULE` to register tasks that
live outside `envs/` first.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

import envs

VIDEO_SCALE = 4
"""Nearest-neighbour upscaling of the 64x64 frames so the video is watchable."""


@dataclass
class ExpertReport:
    """Outcome of running a task's scripted expert over consecutive seeds."""

    task: str
    episodes: int
    success_rate: float
    mean_length: float
    """Mean episode length in steps (successful episodes end early)."""
    seed: int
    """Seed of the first episode; episode i uses seed + i."""


def describe_tasks() -> list[dict]:
    """Every registered task: id, short name, an example instruction, action dim, max steps; a
    task that fails to load or reset gets `error` (the reason) instead, and the others are
    still described."""
    rows = []
    for task_id in envs.task_ids():
        row = {"id": task_id, "short_name": envs.short_name(task_id)}
        try:
            env = envs.make(task_id)
            try:
                obs, _ = env.reset(seed=0)
                row.update(
                    instruction=obs["instruction"],
                    action_dim=int(env.action_space.shape[0]),
                    max_episode_steps=int(env.spec.max_episode_steps),
                )
            finally:
                env.close()
        except Exception as err:  # noqa: BLE001 -- one broken task must not hide the others
            row["error"] = f"{type(err).__name__}: {err}"
        rows.append(row)
    return rows


def import_task_modules(modules: list[str] | None) -> None:
    """Import modules that register tasks (`--import`); a clear error if one does not import."""
    for module in modules or []:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ValueError(
                f"--import {module!r}: {err}; expected a module on the Python path that calls "
                "envs.register_task"
            ) from err


def run_expert(
    task: str, episodes: int, seed: int = 0, video: str | Path | None = None
) -> ExpertReport:
    """Run the scripted expert for `episodes` episodes (seeds seed, seed+1, ...), recorded by the
    campaign's collector (actions quantized to action bins, as a perfect imitator would act)."""
    from train.collect.episodes import collect_episodes
    from train.results.evaluate import write_video
    from verifiers.episode import Job

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    task_id = envs.resolve(task)
    jobs = [Job(task_id, seed + i, "expert") for i in range(episodes)]
    recorded = collect_episodes(jobs, "expert", num_envs=min(8, episodes))
    if video is not None:
        write_video(
            recorded[0],
            video,
            scale=VIDEO_SCALE,
            fps=envs.load_task(task_id).metadata.get("render_fps", 10),
        )
    return ExpertReport(
        task=task_id,
        episodes=episodes,
        success_rate=float(np.mean([e.is_success for e in recorded])),
        mean_length=float(np.mean([e.length for e in recorded])),
        seed=seed,
    )


def main(args: argparse.Namespace) -> int:
    """Entry point for the task subcommands (parsed by train.cli)."""
    import_task_modules(getattr(args, "imports", None))
    if args.command == "envs":
        return list_tasks(args)
    if args.command == "new-task":
        return write_new_task(args)
    if args.command == "check-task":
        return check_one_task(args)
    try:
        report = run_expert(args.task, args.episodes, args.seed, args.video)
    except ValueError as err:
        print(f"autodidact expert: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        print(
            f"{report.task}: expert success rate {report.success_rate:.2f} over "
            f"{report.episodes} episodes (mean length {report.mean_length:.1f} steps)"
        )
        if args.video:
            print(f"video of the first episode: {args.video}")
    return 0


def list_tasks(args: argparse.Namespace) -> int:
    """`autodidact envs`: a table (or JSON) of every task; exit 1 if any task fails to load."""
    rows = describe_tasks()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'short name':<14} {'id':<30} {'steps':>5}  example instruction")
        for r in rows:
            if "error" in r:
                continue
            print(
                f"{r['short_name']:<14} {r['id']:<30} {r['max_episode_steps']:>5}  "
                f"{r['instruction']}"
            )
        broken = [r for r in rows if "error" in r]
        if broken:
            print(f"\n{len(broken)} task(s) failed to load:")
            for r in broken:
                print(f"  {r['short_name'] or '-':<14} {r['id']}: {r['error']}")
    return 1 if any("error" in r for r in rows) else 0


def write_new_task(args: argparse.Namespace) -> int:
    """`autodidact new-task NAME`: the module, the MJCF and the registration line."""
    from envs.scaffold import new_task

    made = new_task(args.name, args.dir, args.package)
    print(f"wrote {made.module}\nwrote {made.mjcf}\nregistered in {made.registration}: {made.line}")
    package = made.line.split('"')[5].split(":")[0].rsplit(".", 1)[0]
    imports, plugin = ("", "") if package == "envs" else (f" --import {package}", f" -p {package}")
    print(
        f"next: fill in the TODOs, then `autodidact check-task {args.name}{imports}` and "
        f"`python -m pytest{plugin} tests/test_envs_contract.py tests/test_envs_experts.py "
        f'-k "{made.task_id}"`'
    )
    return 0


def check_one_task(args: argparse.Namespace) -> int:
    """`autodidact check-task NAME`: the contract and success-rate checks as a pass/fail table."""
    from train.cli.check_task import check_task

    task_id = envs.resolve(args.task)
    results = check_task(task_id, episodes=args.episodes)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(f"{task_id}")
        width = max(len(r.check) for r in results)
        for r in results:
            print(f"  {'PASS' if r.passed else 'FAIL'}  {r.check:<{width}}  {r.detail}")
        failed = sum(not r.passed for r in results)
        print(f"{len(results) - failed} passed, {failed} failed")
    return 0 if all(r.passed for r in results) else 1

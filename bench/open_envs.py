"""Memory and speed of a vector env's open task environments (`make_vector_env(open_envs=...)`).

Usage: python bench/open_envs.py [--tasks reach push pick_place stack press_button open_drawer]
       [--num-envs 64] [--episodes-per-task 64] [--passes 2] [--budgets 0 128 64]

A campaign's collection in miniature: the jobs task after task (as a round orders them),
collected `passes` times through one kept vector env (the rounds after the first reuse it), by
the scripted expert (the cheapest actor, so re-making environments weighs the most). Each budget
runs in a fresh process (peak RSS is per process); budget 0 keeps every task's environment open
in every slot (what a slot did before the budget). Prints a markdown table: budget, open
environments at the end, peak RSS, env-steps per CPU second of the collection, and the episodes'
fingerprint (equal across budgets: the same episodes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time


def _run(args: argparse.Namespace, budget: int) -> dict:
    import numpy as np

    from train.collect.episodes import collect_episodes, make_vector_env
    from verifiers.episode import Job

    jobs = [Job(t, 1000 + s) for t in args.tasks for s in range(args.episodes_per_task)]
    vec = make_vector_env(args.tasks, args.num_envs, open_envs=budget or 10**9)
    digest = hashlib.sha256()
    steps, cpu = 0, 0.0
    try:
        for _ in range(args.passes):
            start = time.process_time()
            episodes = collect_episodes(jobs, "expert", vector_env=vec)
            cpu += time.process_time() - start
            steps += sum(e.length for e in episodes)
        for e in episodes:
            digest.update(np.ascontiguousarray(e.frames).tobytes())
        open_now = sum(len(envs) for envs in vec.get_attr("_envs"))
    finally:
        vec.close()
    return {
        "budget": budget,
        "open": open_now,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "steps_per_cpu_s": steps / cpu,
        "fingerprint": digest.hexdigest()[:12],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=["reach", "push", "pick_place", "stack", "press_button", "open_drawer"],
    )
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--episodes-per-task", type=int, default=64)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--budgets", type=int, nargs="+", default=[0, 128, 64])
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(_run(args, args.one)))
        return
    rows = []
    for budget in args.budgets:
        cmd = [sys.executable, __file__, "--one", str(budget), "--tasks", *args.tasks]
        cmd += ["--num-envs", str(args.num_envs), "--passes", str(args.passes)]
        cmd += ["--episodes-per-task", str(args.episodes_per_task)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print("| open_envs budget | open at the end | peak RSS | env-steps / CPU s | episodes |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        name = "none (every task in every slot)" if r["budget"] == 0 else str(r["budget"])
        print(
            f"| {name} | {r['open']} | {r['peak_rss_gb']:.2f} GB | "
            f"{r['steps_per_cpu_s']:.0f} | {r['fingerprint']} |"
        )


if __name__ == "__main__":
    main()

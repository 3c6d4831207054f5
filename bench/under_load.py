"""Collection and SFT alone and beside a busy process, with torch threads chosen by
`agent.runtime` (auto) and fixed at the CPU count, in one run.

Phases, each in a fresh child process: for each threading mode, the child measures
- collection: `collect_episodes` of the `tiny_vision` policy (fresh weights, sampled) on ReachBall,
  `--num-envs` env slots, `--episodes` episodes (vector env made and warmed up first), env-steps/s;
- SFT: `sft_update` on expert demonstrations, `--sft-steps` steps of batch 32, samples/s.
First every mode alone, then every mode again while a competing process (one thread, pure CPU:
a Python busy loop this bench starts and stops) runs. Wall-clock rates; run it on an otherwise
idle machine.

Usage: python bench/under_load.py [--episodes 128] [--sft-steps 60]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
from agent import Policy
from agent.runtime import adapt_threads
from train.collect.episodes import collect_episodes, make_vector_env
from verifiers.episode import Job
from train.updates.config import SFTConfig
from train.updates.sft import sft_update
episodes, num_envs, sft_steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
task = "autodidact/ReachBall-v0"
policy = Policy.from_preset("tiny_vision", seed=0)
demos = collect_episodes([Job(task, s) for s in range(64)], "expert", num_envs=16)
vec = make_vector_env([task], num_envs, 64)
collect_episodes([Job(task, i) for i in range(num_envs)], "expert", vector_env=vec)
threads_start = adapt_threads(force=True)
start = time.perf_counter()
collected = collect_episodes([Job(task, 5000 + i) for i in range(episodes)], policy,
                             vector_env=vec, temperature=1.0, seed=0)
collect_s = time.perf_counter() - start
threads_collect = adapt_threads()
vec.close()
config = SFTConfig(lr=1e-3, batch_size=32, epochs=1000, max_steps=sft_steps)
metrics = sft_update(policy, demos, config)
print(json.dumps({"threads": [threads_start, threads_collect, adapt_threads()],
    "env_steps_per_s": sum(e.length for e in collected) / collect_s,
    "sft_samples_per_s": metrics["train/sft_samples_per_s"]}))
"""

BUSY = "while True: pass"


def child(mode: str, args: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",)}
    env.pop("AUTODIDACT_THREADS", None)
    if mode != "auto":
        env["AUTODIDACT_THREADS"] = mode
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(args.episodes), str(args.num_envs), str(args.sft_steps)],
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=128)
    parser.add_argument("--num-envs", type=int, default=32)
    parser.add_argument("--sft-steps", type=int, default=60)
    parser.add_argument(
        "--modes", nargs="+", default=["auto", str(os.cpu_count())], help="auto or a thread count"
    )
    args = parser.parse_args()
    rows = []
    for load in ("alone", "busy"):
        busy = subprocess.Popen([sys.executable, "-c", BUSY]) if load == "busy" else None
        try:
            if busy is not None:
                time.sleep(2)  # let the load average and the scheduler see it
            for mode in args.modes:
                row = {"load": load, "mode": mode, **child(mode, args)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    print(
        "\n| threads | alone: env-steps/s | beside a busy process | fall | alone: SFT samples/s "
        "| beside a busy process | fall | threads used (alone / busy) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for mode in args.modes:
        alone = next(r for r in rows if r["mode"] == mode and r["load"] == "alone")
        busy = next(r for r in rows if r["mode"] == mode and r["load"] == "busy")
        print(
            f"| {mode} | {alone['env_steps_per_s']:.1f} | {busy['env_steps_per_s']:.1f} | "
            f"{alone['env_steps_per_s'] / busy['env_steps_per_s']:.2f}x | "
            f"{alone['sft_samples_per_s']:.1f} | {busy['sft_samples_per_s']:.1f} | "
            f"{alone['sft_samples_per_s'] / busy['sft_samples_per_s']:.2f}x | "
            f"{alone['threads']} / {busy['threads']} |"
        )


if __name__ == "__main__":
    main()

"""Env-steps/s per task: physics alone, physics plus a 64x64 render, and an async vector env.

Usage: python bench/env_throughput.py [--seconds 2] [--workers 1 2] [--tasks reach push]

Seeded uniform random actions (the most contact-heavy regime); episodes reset on termination or
truncation, resets included in the time. Columns:
- physics: `TabletopEnv._simulate` (action -> 10 physics substeps -> info), no image;
- physics+render: `env.unwrapped.step` (adds the 64x64 frame and the observation);
- gym.make: the registered env with gymnasium's wrappers (TimeLimit, order and passive checks);
- async xN: `gymnasium.make_vec(..., vectorization_mode="async")`, N worker processes, total
  env-steps/s over all workers.
The first three columns are steps per CPU second of this process (robust to other jobs on a
shared machine; llvmpipe renders in the calling thread, so the frame is included); the
"wall" and async columns are steps per wall-clock second. Prints a markdown table (plus the
CPU ms per step of physics+render) for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import time

import gymnasium
import numpy as np

import envs


def _steps_per_s(step, reset, seconds: float, batch: int | None = None) -> tuple[float, float]:
    """Call `step(actions)` for about `seconds`; `reset(seed)` when it reports the episode ended.

    Every column replays the same seeded actions and reset seeds, so columns are comparable.
    `batch=None` steps one env with actions [4]; `batch=n` a vector env with actions [n, 4].
    Returns steps per wall-clock second and per CPU second of this process.
    """
    rng = np.random.default_rng(0)
    episodes = 0
    reset(episodes)
    shape = (4,) if batch is None else (batch, 4)
    steps, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        for _ in range(20):
            if step(rng.uniform(-1, 1, shape).astype(np.float32)):
                episodes += 1
                reset(episodes)
            steps += batch or 1
    return steps / (time.perf_counter() - start), steps / (time.process_time() - cpu_start)


def bench_task(task: str, seconds: float, workers: list[int]) -> dict[str, float]:
    wrapped = gymnasium.make(task)
    env = wrapped.unwrapped
    limit = wrapped.spec.max_episode_steps
    counter = {"t": 0}

    def reset(seed: int):
        counter["t"] = 0
        env.reset(seed=seed)

    def physics(a):
        counter["t"] += 1
        return env._simulate(a)["is_success"] or counter["t"] >= limit

    def full(a):
        counter["t"] += 1
        return env.step(a)[2] or counter["t"] >= limit

    def wrapped_step(a):
        _, _, terminated, truncated, _ = wrapped.step(a)
        return terminated or truncated

    rendered_wall, rendered_cpu = _steps_per_s(full, reset, seconds)
    row = {
        "physics": _steps_per_s(physics, reset, seconds)[1],
        "physics+render": rendered_cpu,
        "gym.make": _steps_per_s(wrapped_step, lambda s: wrapped.reset(seed=s), seconds)[1],
        "physics+render, wall": rendered_wall,
    }
    wrapped.close()
    for n in workers:
        vec = gymnasium.make_vec(task, num_envs=n, vectorization_mode="async")
        row[f"async x{n}"] = _steps_per_s(
            lambda a, vec=vec: (vec.step(a), False)[1],  # workers reset themselves
            lambda s, vec=vec, n=n: vec.reset(seed=[s * n + i for i in range(n)]),
            seconds,
            batch=n,
        )[0]
        vec.close()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget per cell")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--tasks", nargs="*", default=list(envs.TASK_IDS))
    args = parser.parse_args()
    rows = {
        envs.resolve(t): bench_task(envs.resolve(t), args.seconds, args.workers) for t in args.tasks
    }
    columns = list(next(iter(rows.values())))
    print("| task | " + " | ".join(columns) + " | ms/step (physics+render, CPU) |")
    print("| --- " * (len(columns) + 2) + "|")
    for task, row in rows.items():
        cells = " | ".join(f"{row[c]:.0f}" for c in columns)
        print(f"| {task} | {cells} | {1000 / row['physics+render']:.2f} |")


if __name__ == "__main__":
    main()

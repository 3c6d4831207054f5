"""How far rollout log-probs taken with a bfloat16 copy of the policy (`collect.dtype =
"bfloat16"`) are from the float32 learner's, which RL's importance ratio compares them with.

Collects sampled episodes with the policy cast to bfloat16 (as a campaign's collector does),
then scores the very same steps with the float32 policy (`train.updates.batching.step_logprobs`,
the RL update's first forward pass before any change) and reports the per-token log-ratio
`float32 - recorded`: at unchanged weights it is 0 for float32 rollouts, so whatever it is here
is the bias the bfloat16 rounding puts into every ratio. Also the share of tokens whose ratio
already lies outside PPO's [0.8, 1.2] before the update has moved anything.

Usage: python bench/behaviour_logprobs.py CHECKPOINT [--tasks reach press_button]
       [--episodes 16] [--dtypes float32 bfloat16]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

import envs
from agent import Policy
from agent.runtime import adapt_threads
from train.collect.episodes import collect_episodes
from train.updates.batching import episode_steps, step_logprobs
from verifiers.episode import Job


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--tasks", nargs="+", default=["reach", "press_button"])
    parser.add_argument("--episodes", type=int, default=16, help="per task")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    adapt_threads(force=True)
    learner = Policy.from_pretrained(args.checkpoint)
    learner.model.eval()
    jobs = [
        Job(envs.resolve(t), 2_000_000 + i, "g0") for t in args.tasks for i in range(args.episodes)
    ]
    for dtype in args.dtypes:
        actor = learner.with_dtype(dtype)
        start = time.perf_counter()
        episodes = collect_episodes(jobs, actor, num_envs=16, seed=args.seed)
        seconds = time.perf_counter() - start
        steps = episode_steps(episodes, chunk=learner.chunk, acted=True)
        with torch.no_grad():
            now = step_logprobs(learner, steps).numpy()
        log_ratio = now - steps.old_logprobs
        ratio = np.exp(log_ratio)
        print(
            json.dumps(
                {
                    "checkpoint": args.checkpoint,
                    "cpu": cpu_model(),
                    "rollout_dtype": dtype,
                    "tokens": int(log_ratio.size),
                    "mean_abs_log_ratio": float(np.abs(log_ratio).mean()),
                    "max_abs_log_ratio": float(np.abs(log_ratio).max()),
                    "mean_log_ratio": float(log_ratio.mean()),
                    "ratio_outside_0.8_1.2": float(((ratio < 0.8) | (ratio > 1.2)).mean()),
                    "collect_seconds": round(seconds, 1),
                }
            )
        )


if __name__ == "__main__":
    main()

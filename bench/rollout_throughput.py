"""Rollout throughput: env-steps/s of campaign collection against a naive loop and the compute bound.

In one run, for each policy given (built-in presets, fresh weights), on one task:
- `campaign`: `train.collect.episodes.collect_episodes` as a campaign round runs it: N env slots in a
  gymnasium vector env (made and warmed up before timing, as a campaign keeps one per run), the
  policy acting on all of them as one batch (fast prompt path, KV-cached decoding of the 4 action
  tokens, instruction prefix reused within an episode), sampled.
- `naive`: one env; every step runs the model's processor on the observation and then plain
  `model.generate(max_new_tokens=4)`, as a first script would.
- compute bound: matmul FLOP/s measured now / the policy's FLOPs per action (the same count as
  `bench/policy_throughput.py`: vision encoder, connector, the text tokens run per step, head).

Both loops include physics and rendering. With `--dtype bfloat16` the campaign loop runs a bf16
copy of the policy (a campaign's `collect.dtype`) and the naive loop is timed in both dtypes; the
speed-up is against the faster naive loop. The compute bound is the float32 one (matmul peak
measured in float32). Wall-clock seconds; run it on an idle machine.

With `--ray-workers 1 2` it instead compares where collection runs, in one run, on the same
chunks of jobs (`train.collect.workers`): the local collector at one torch thread and at the
process's automatic count, then the Ray backend with each number of workers (a local Ray
instance, one CPU per worker, every worker with its own vector env of `--num-envs` slots). Each
is warmed up (envs made, weights held) before timing; the weight broadcast (bytes, seconds) and
the workers' start-up are reported apart.

Usage: python bench/rollout_throughput.py [--presets tiny idefics3_tiny] [--task reach]
       [--num-envs 16] [--dtype float32|bfloat16]
       python bench/rollout_throughput.py --presets tiny_vision --ray-workers 1 2
       [--episodes 128] [--chunk-episodes 32] [--num-envs 32]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from policy_throughput import flops_per_action, matmul_flops_per_s

import envs
from agent import Policy
from agent.action_tokens import bins_to_actions
from agent.families import processor_inputs
from agent.prompt import prompt_text
from train.campaign.config import ROLLOUT_DTYPES
from train.collect.chunks import LocalCollector, make_chunks
from train.collect.episodes import collect_episodes, make_vector_env
from train.collect.workers import RayCollector
from verifiers.episode import Job


def campaign_steps_per_s(
    policy: Policy, task: str, num_envs: int, episodes: int
) -> tuple[float, int]:
    # A campaign makes its vector env once per run (~0.1 s per slot) and keeps it; so does this.
    vec = make_vector_env([task], num_envs, policy.settings.image_size)
    try:
        collect_episodes([Job(task, i) for i in range(num_envs)], "expert", vector_env=vec)
        jobs = [Job(task, 5_000 + i) for i in range(episodes)]
        start = time.perf_counter()
        collected = collect_episodes(jobs, policy, vector_env=vec, temperature=1.0, seed=0)
        seconds = time.perf_counter() - start
    finally:
        vec.close()
    steps = sum(e.length for e in collected)
    return steps / seconds, steps


def naive_steps_per_s(policy: Policy, task: str, steps: int) -> float:
    env = envs.make(task, image_size=policy.settings.image_size)
    obs, _ = env.reset(seed=0)
    action_ids = policy.action_token_ids.cpu().numpy()
    pad = policy.tokenizer.pad_token_id
    start = time.perf_counter()
    for _ in range(steps):
        text = prompt_text(obs["instruction"], obs["state"], policy.family.image_placeholder)
        inputs = processor_inputs(policy.processor, policy.family, obs["image"][None], [text])
        inputs["pixel_values"] = inputs["pixel_values"].to(policy.backbone.dtype)
        with torch.inference_mode():
            out = policy.model.generate(
                **inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=pad
            )
        tokens = out[0, -4:].numpy()
        bins = np.array(
            [int(np.flatnonzero(action_ids == t)[0]) if t in action_ids else 128 for t in tokens]
        )
        obs, _, terminated, truncated, _ = env.step(bins_to_actions(bins))
        if terminated or truncated:
            obs, _ = env.reset()
    return steps / (time.perf_counter() - start)


def backend_steps_per_s(collector, policy, chunks, warmup) -> float:
    list(collector.collect(warmup, policy))  # envs rendered once, weights held
    start = time.perf_counter()
    episodes = [e for _, chunk in collector.collect(chunks, policy) for e in chunk]
    seconds = time.perf_counter() - start
    return sum(e.length for e in episodes) / seconds


def compare_backends(args: argparse.Namespace, preset: str) -> None:
    import ray

    from agent.runtime import adapt_threads

    policy = Policy.from_preset(preset, seed=0)
    task = envs.resolve(args.task)
    size = args.chunk_episodes
    jobs = [Job(task, 5_000 + i) for i in range(args.episodes)]
    chunks = make_chunks(jobs, size, 1, lambda c: c, temperature=1.0)
    # One warm-up chunk per worker (each renders its envs once and loads the weights).
    warmup_jobs = [Job(task, 9_000 + i) for i in range(size * max(args.ray_workers))]
    warmup = make_chunks(warmup_jobs, size, 1, lambda c: 99)
    row: dict = {
        "preset": preset,
        "task": task,
        "episodes": args.episodes,
        "chunk_episodes": size,
        "envs_per_collector": args.num_envs,
        "dtype": args.dtype,
    }
    local = LocalCollector([task], args.num_envs)
    try:
        # One thread, as one Ray worker with one CPU has (Ray sets its OMP_NUM_THREADS=1).
        os.environ["AUTODIDACT_THREADS"] = "1"
        row["local_1thread_steps_per_s"] = round(
            backend_steps_per_s(local, policy.with_dtype(args.dtype), chunks, warmup[:1]), 1
        )
        del os.environ["AUTODIDACT_THREADS"]
        row["local_auto_threads"] = adapt_threads(force=True)
        row["local_auto_steps_per_s"] = round(
            backend_steps_per_s(local, policy.with_dtype(args.dtype), chunks, warmup[:1]), 1
        )
    finally:
        local.close()
    start = time.perf_counter()
    ray.init(num_cpus=max(args.ray_workers), include_dashboard=False, log_to_driver=False)
    row["ray_init_s"] = round(time.perf_counter() - start, 2)
    try:
        for n in args.ray_workers:
            collector = RayCollector([task], args.num_envs, num_workers=n)
            try:
                start = time.perf_counter()
                collector.start()
                row[f"ray{n}_start_s"] = round(time.perf_counter() - start, 2)
                rate = backend_steps_per_s(collector, policy, chunks, warmup[:n])
                row[f"ray{n}_steps_per_s"] = round(rate, 1)
                sent = collector.broadcasts[0]
                row["broadcast_MB"] = round(sent["bytes"] / 1e6, 2)
                row[f"ray{n}_broadcast_s"] = round(sent["seconds"], 3)
            finally:
                collector.close()
    finally:
        ray.shutdown()
    base = row["local_1thread_steps_per_s"]
    for n in args.ray_workers:
        row[f"ray{n}_vs_local_1thread"] = round(row[f"ray{n}_steps_per_s"] / base, 3)
    print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "idefics3_tiny"])
    parser.add_argument("--task", default="reach")
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--naive-steps", type=int, default=60)
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=ROLLOUT_DTYPES,
        help="the policy's weights in campaign collection (a campaign's collect.dtype)",
    )
    parser.add_argument(
        "--ray-workers",
        nargs="+",
        type=int,
        default=None,
        help="compare the local collector with the Ray backend at these numbers of workers",
    )
    parser.add_argument("--chunk-episodes", type=int, default=32)
    args = parser.parse_args()
    if args.ray_workers:
        for preset in args.presets:
            compare_backends(args, preset)
        return

    peak = matmul_flops_per_s()
    for preset in args.presets:
        fp32 = Policy.from_preset(preset, seed=0)
        policy = fp32.with_dtype(args.dtype)
        task = envs.resolve(args.task)
        obs, _ = envs.make(task).reset(seed=0)
        prefix = len(policy._pieces.instruction_ids(obs["instruction"]))
        run = len(policy._pieces.suffix_ids(obs["state"])) + policy.action_dim - 1
        flops = flops_per_action(policy, run, prefix + run)
        # The naive loop in float32 (what a first script runs) and in --dtype; the speed-up is taken
        # against the faster of the two (at batch 1, bfloat16 can be the slower one).
        naive = {"float32": naive_steps_per_s(fp32, task, args.naive_steps)}
        if args.dtype != "float32":
            naive[args.dtype] = naive_steps_per_s(policy, task, args.naive_steps)
        campaign, steps = campaign_steps_per_s(policy, task, args.num_envs, args.episodes)
        row = {
            "preset": preset,
            "params_M": round(policy.num_parameters() / 1e6, 2),
            "task": task,
            "num_envs": args.num_envs,
            "dtype": args.dtype,
            "threads": torch.get_num_threads(),
            "campaign_steps_per_s": round(campaign, 1),
            "campaign_steps": steps,
            **{f"naive_steps_per_s_{d}": round(v, 2) for d, v in naive.items()},
            "speedup_vs_naive": round(campaign / max(naive.values()), 1),
            "bound_steps_per_s": round(peak / flops, 1),
            "fraction_of_bound": round(campaign / (peak / flops), 3),
            "matmul_gflops_per_s": round(peak / 1e9, 1),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

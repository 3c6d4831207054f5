"""One update, screened in minutes: apply a campaign's update (SFT, RL or DPO) with given settings
to the policy that collected a stored round, on that round's own data, and measure the result
greedily on the round's own scenes (did the update learn what it was shown?) and on the
held-out seeds (does it carry over?), without collecting again.

A campaign round costs minutes of collection and the curve moves by a few points; this replays
the organize and optimize stages of round K of a finished run (`--data-run`) from the checkpoint
of round K-1 of `--seed-run` (by default the same run), so settings can be compared on the same
data in one run of this script each. The round is organized by the campaign's own code (its
stored verdicts for the earlier rounds SFT replays, its demonstrations, its update seed), so
with the data run's own settings it reproduces the data run's round-K policy and held-out rate
exactly.

Usage:
    python bench/update_screen.py --data-run RUN --round 1 --update rl \\
        optimize.rl.lr=1e-4 'optimize.rl.baseline="tree"'

Prints one JSON line: `train_greedy` (greedy success on the round's scenes, each told the
instruction it was told when collected), `heldout` and per task, the update's seconds and its
metrics (`train/...`). BENCHMARKS.md, "RL's sampling temperature, and what the outcomes can
teach", lists screens made with it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

import envs
from agent import Policy
from train.campaign.config import load_campaign_config
from train.campaign.loop import Campaign
from train.collect.episodes import collect_episodes
from train.organize import round_data as organize
from train.results.evaluate import evaluate
from train.updates import UPDATES
from verifiers.episode import Job
from verifiers.stage import decide, verify_round


def success_by_task(episodes) -> dict[str, float]:
    tasks = sorted({e.task_id for e in episodes})
    return {
        t.split("/")[-1]: float(np.mean([e.is_success for e in episodes if e.task_id == t]))
        for t in tasks
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-run", required=True, help="a campaign directory with round K")
    parser.add_argument("--seed-run", help="whose round K-1 checkpoint to start from")
    parser.add_argument("--round", type=int, default=1, help="K (>= 1)")
    parser.add_argument("--update", choices=sorted(UPDATES), default="rl")
    parser.add_argument("--eval-episodes", type=int, default=None, help="held-out per task")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads, fixed (AUTODIDACT_THREADS)"
    )
    parser.add_argument("overrides", nargs="*", help="key=value settings over the data run's")
    args = parser.parse_args(argv)
    if args.round < 1:
        parser.error(f"--round must be >= 1 (the round whose data is replayed), got {args.round}")
    # fixed, not the runtime's choice from the machine's load (`agent.runtime.adapt_threads`,
    # which the collection and the optimizers call): screens compared must run alike
    os.environ["AUTODIDACT_THREADS"] = str(args.threads)
    torch.set_num_threads(args.threads)
    k = args.round
    cfg = load_campaign_config(path=f"{args.data_run}/config.toml", overrides=args.overrides)
    campaign = Campaign(cfg, args.data_run)  # read only: its store, verdicts and demonstrations
    sampled = [
        e
        for e in campaign.store.load(where={"round": k}, with_frames=True)
        if e.relabelled_from is None
    ]
    if not sampled:
        parser.error(f"{args.data_run} holds no episodes of round {k}")
    current = verify_round(sampled, decide(sampled, campaign.verifiers), cfg.organize.relabel)
    data = organize.build_round_data(
        campaign.verified_demos(),
        campaign.replayed_rounds(k, current),
        cfg.organize,
        cfg.organize_seed(k),
        uniform_rl_groups=args.update == "rl" and cfg.optimize.rl.baseline == "value",
    )
    policy = Policy.from_pretrained(f"{args.seed_run or args.data_run}/checkpoints/round_{k - 1}")
    update = UPDATES[args.update]
    context = campaign.round_context(k)
    start = time.perf_counter()
    metrics = update.run(
        policy, getattr(data, update.data), getattr(cfg.optimize, args.update), context
    )
    seconds = time.perf_counter() - start
    scenes = sorted({(e.task_id, int(e.env_seed), e.instruction) for e in sampled})
    jobs = [Job(t, s, f"screen{i}", instruction=text) for i, (t, s, text) in enumerate(scenes)]
    own = collect_episodes(jobs, policy, num_envs=cfg.collect.num_envs, greedy=True)
    task_ids = [envs.resolve(t) for t in cfg.tasks]
    _, held = evaluate(
        policy,
        task_ids,
        args.eval_episodes or cfg.eval.episodes_per_task,
        num_envs=cfg.collect.num_envs,
        chunk_episodes=cfg.collect.chunk_episodes,
    )
    print(
        json.dumps(
            {
                "update": args.update,
                "overrides": args.overrides,
                "train_greedy": float(np.mean([e.is_success for e in own])),
                "train_greedy_by_task": success_by_task(own),
                "heldout": float(np.mean([e.is_success for e in held])),
                "heldout_by_task": success_by_task(held),
                "seconds": seconds,
                **{key: float(value) for key, value in metrics.items()},
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""SFT on scripted-expert demonstrations: does the policy learn to use the image and the instruction,
and does it act well?

For each recipe (batch size x optimizer steps), a fresh policy is trained with `train.updates.sft.sft_update`
on the demonstrations of one task (or of several: one multi-task policy), then measured on
demonstrations of other seeds
(`train.results.diagnostics.input_reliance`: action cross-entropy with true vs shuffled frames and
instructions; how often the greedy action moves the expert's way, per axis, on all steps and on
first steps) and by greedy success on the held-out evaluation seeds (per task, 95% Wilson
intervals), beside a uniformly random policy on the same seeds.

Manipulation (issue 31): `--noise` records noise-injected demonstrations (DART), `--keyframes`
and `--waypoint-weight` set the waypoint targets of a preset with a waypoint head, and
`--executions` evaluates a chunk preset under several greedy execution modes on the same seeds
(`train.collect.chunking`); the grasp breakdown and the waypoint error are printed per mode.

Usage: python bench/sft_grounding.py [--preset tiny] [--tasks reach [push ...]] [--demos 1000]
       [--goals drawn|all] [--recipes 32x600 8x2400] [--noise 0.1] [--seed 0]
       [--executions ensemble ensemble_all replan open_loop]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import envs
from agent.policy import Policy
from agent.presets import get_preset
from train.collect.chunking import EXECUTIONS
from train.collect.episodes import ExpertActor, PolicyActor, all_goal_jobs, collect_episodes
from train.results.diagnostics import input_reliance, waypoint_error
from train.results.evaluate import episode_metrics, evaluate, task_name, wilson_interval
from train.updates.batching import chunks, episode_steps
from train.updates.config import SFTConfig
from train.updates.sft import sft_update
from verifiers.episode import Job
from verifiers.relabel import episode_prefix

VALIDATION_SEED_BASE = 500_000
"""Demonstrations for the image-reliance measurement: seeds disjoint from training and evaluation."""


def recipe(text: str) -> tuple[int, int]:
    """`BxS` -> (batch size B, optimizer steps S)."""
    try:
        batch, steps = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"recipe {text!r}: expected BATCHxSTEPS, e.g. 8x2400"
        ) from None
    return batch, steps


def direction_agreement(policy, validation) -> dict[str, float | None]:
    """How often the greedy action moves the same way as the expert's, per movement axis, on every
    validation step and on first steps only (where the target's place is known from the image alone:
    the fingertip has not moved yet). Steps whose expert action on that axis is ~0 are left out."""
    steps = episode_steps(validation)
    chosen = np.concatenate(
        [
            policy.act(part.images, part.instructions, part.states, greedy=True).bins
            for part in (steps.select(rows) for rows in chunks(len(steps), 128))
        ]
    )
    first = np.r_[True, steps.episode_index[1:] != steps.episode_index[:-1]]
    out = {}
    for label, rows in (("all", np.ones(len(steps), bool)), ("first", first)):
        for axis, name in enumerate("xyz"):
            expert = steps.bins[rows, axis].astype(float) - 127.5
            policy_way = chosen[rows, axis].astype(float) - 127.5
            moving = np.abs(expert) > 8
            agree = np.sign(expert[moving]) == np.sign(policy_way[moving])
            out[f"sign_agree_{label}_{name}"] = (
                round(float(agree.mean()), 3) if agree.size else None
            )
    return out


def grasp_rates(episodes) -> dict[str, list]:
    """Per grasp task (one that reports `reward/grasped`): the share of episodes in which the named
    cube was held at some step, with its 95% Wilson interval."""
    held: dict[str, list[bool]] = {}
    for e in episodes:
        if "reward/grasped" in e.step_info:
            held.setdefault(e.task_id, []).append(bool(e.step_info["reward/grasped"].max() > 0))
    return {
        f"grasped/{task_name(t)}": [
            round(float(np.mean(v)), 3),
            [round(x, 3) for x in wilson_interval(sum(v), len(v))],
        ]
        for t, v in held.items()
    }


def approach(episode):
    """The episode's steps before its first closing command (None when it closes at once)."""
    closes = np.flatnonzero(episode.actions[:, 3] > 0)
    t = int(closes[0]) if closes.size else episode.length
    if t == 0:
        return None
    return episode_prefix(episode, t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--tasks", nargs="+", default=["reach"])
    parser.add_argument("--demos", type=int, default=1000, help="demonstrations per task")
    parser.add_argument("--validation-demos", type=int, default=100, help="per task")
    parser.add_argument("--episodes", type=int, default=100, help="held-out seeds per task")
    parser.add_argument("--recipes", type=recipe, nargs="+", default=[(32, 600), (8, 2400)])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--augment-shift", type=int, default=0, help="SFTConfig.augment_shift")
    parser.add_argument(
        "--goals",
        choices=("drawn", "all"),
        default="drawn",
        help="demos of each seed's drawn goal, or of every goal of its scene (same demo count)",
    )
    parser.add_argument(
        "--approach-weight",
        type=int,
        default=1,
        help="train on each demo's steps before the fingers first close this many times",
    )
    parser.add_argument("--save", default=None, help="save each trained policy to SAVE/BxS")
    parser.add_argument("--noise", type=float, default=0.0, help="DART noise of the demos' moves")
    parser.add_argument("--keyframes", default="gripper", help="SFTConfig.keyframes")
    parser.add_argument("--waypoint-weight", type=float, default=1.0, help="0: no waypoint loss")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0, help="the policy's and SFT's seed")
    parser.add_argument(
        "--executions",
        nargs="+",
        default=["ensemble"],
        choices=EXECUTIONS,
        help="greedy execution modes of a chunk policy to evaluate (each on the same seeds)",
    )
    args = parser.parse_args()
    size = get_preset(args.preset).image_size

    tasks = [envs.resolve(t) for t in args.tasks]
    jobs, held = [], []
    for task in tasks:
        if args.goals == "all":  # every scene has at least one goal: args.demos scenes are enough
            jobs += all_goal_jobs(task, range(args.demos))[: args.demos]
        else:
            jobs += [Job(task, s) for s in range(args.demos)]
        held += [Job(task, VALIDATION_SEED_BASE + s) for s in range(args.validation_demos)]
    demos = collect_episodes(jobs, ExpertActor(args.noise, seed=1), num_envs=16, image_size=size)
    demos = [e for e in demos if e.is_success]
    validation = collect_episodes(held, "expert", num_envs=16, image_size=size)
    demos += [p for e in demos for p in [approach(e)] * (args.approach_weight - 1) if p]
    random, _ = evaluate("random", tasks, args.episodes)
    print(json.dumps({"random_success": {t: random[t].success_rate for t in tasks}}), flush=True)
    for batch_size, steps in args.recipes:
        config = SFTConfig(
            lr=args.lr,
            batch_size=batch_size,
            epochs=10**6,
            max_steps=steps,
            warmup_steps=50,
            augment_shift=args.augment_shift,
            weight_decay=args.weight_decay,
            min_lr_ratio=0.0,
            waypoint_weight=args.waypoint_weight,
            keyframes=args.keyframes,
            seed=args.seed,
        )
        policy = Policy.from_preset(args.preset, seed=args.seed)
        start = time.perf_counter()
        metrics = sft_update(policy, demos, config)
        seconds = time.perf_counter() - start
        diag = input_reliance(policy, validation)
        cm = waypoint_error(policy, validation, args.keyframes)
        if cm is not None:
            diag["waypoint_error_cm"] = round(cm, 2)
        diag.update(direction_agreement(policy, validation))
        modes = args.executions if policy.chunk > 1 else ["ensemble"]
        by_mode = {}
        for mode in modes:
            actor = PolicyActor(policy, greedy=True, execution=mode)
            by_mode[mode] = evaluate(actor, tasks, args.episodes, image_size=size)
        results, rollouts = by_mode[modes[0]]
        if args.save:
            policy.save_pretrained(f"{args.save}/{batch_size}x{steps}")
        row = {
            "preset": args.preset,
            "demos": len(demos),
            "goals": args.goals,
            "demo_steps": sum(e.length for e in demos),
            "batch_size": batch_size,
            "optimizer_steps": steps,
            "train_seconds": round(seconds, 1),
            "augment_shift": args.augment_shift,
            "train_ce": round(metrics["train/sft_loss"], 3),
            **{k: round(v, 3) for k, v in metrics.items() if "waypoint" in k},
            **{k: round(v, 3) if isinstance(v, float) else v for k, v in diag.items()},
            **{
                f"success/{task_name(t)}": [
                    results[t].success_rate,
                    [round(x, 3) for x in results[t].interval],
                ]
                for t in tasks
            },
            **grasp_rates(rollouts),
            **{
                f"{mode}/success/{task_name(t)}": [
                    r[t].success_rate,
                    [round(x, 3) for x in r[t].interval],
                ]
                for mode, (r, _) in list(by_mode.items())[1:]
                for t in tasks
            },
            **{
                f"{mode}/{k}": round(v, 3)
                for mode, (_, eps) in by_mode.items()
                for k, v in episode_metrics(eps).items()
            },
            "noise": args.noise,
            "seed": args.seed,
            "threads": torch.get_num_threads(),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

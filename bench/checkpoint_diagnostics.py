"""Held-out diagnostics of saved policies: how much each reads the image and the instruction, and
how far its "where next" estimate lies from the expert's keyframes, on clean expert
demonstrations of seeds that neither training nor evaluation uses.

For each checkpoint and task: `diag/instruction_gain` and `diag/image_gain` (nats per action
token: cross-entropy of the expert's actions with shuffled minus true instructions / images;
`train.results.diagnostics.input_reliance`, a chunk policy scored on each step's first chunk
slot) and, for a policy with a waypoint head, the median distance (cm) between its estimate and
the demonstrations' keyframe targets.

Usage: python bench/checkpoint_diagnostics.py CHECKPOINT [CHECKPOINT ...] --tasks pick_place
       [--demos 100] [--keyframes gripper]
"""

from __future__ import annotations

import argparse
import json

import envs
from agent.policy import Policy
from train.collect.episodes import collect_episodes
from train.results.diagnostics import input_reliance, waypoint_error
from verifiers.episode import Job

VALIDATION_SEED_BASE = 500_000
"""The validation demonstrations' seeds (as `bench/sft_grounding.py`): disjoint from training
(< 100,000) and evaluation (>= 10,000,000)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--tasks", nargs="+", required=True)
    parser.add_argument("--demos", type=int, default=100, help="validation demonstrations per task")
    parser.add_argument("--keyframes", default="gripper", help="waypoint keyframe kind")
    args = parser.parse_args()
    for task in [envs.resolve(t) for t in args.tasks]:
        jobs = [Job(task, VALIDATION_SEED_BASE + s) for s in range(args.demos)]
        demos = [e for e in collect_episodes(jobs, "expert", num_envs=16) if e.is_success]
        for path in args.checkpoints:
            policy = Policy.from_pretrained(path)
            row = {"checkpoint": path, "task": task, "demos": len(demos)}
            row.update(input_reliance(policy, demos, max_steps=2048, seed=0))
            cm = waypoint_error(policy, demos, args.keyframes)
            row["waypoint_error_cm"] = None if cm is None else round(cm, 2)
            print(
                json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
            )


if __name__ == "__main__":
    main()

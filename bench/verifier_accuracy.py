"""Precision, recall and accuracy of the learned verifiers against the environment's own success check.

Collects environment-labelled episodes (scripted expert, perturbed expert, uniform random, and
"distracted" expert that goes for another object of the same task), splits them by seed into train
and held-out sets, trains the success classifier and the MLLM judge on the train split, and scores
both on the held-out split. Prints a Markdown table and writes JSON.

    python bench/verifier_accuracy.py --train-seeds 60 --test-seeds 25 --out /tmp/verifier_accuracy.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone

import numpy as np
import torch

import envs
from agent import Policy
from train.collect.scripted import MODES as SCRIPTED_MODES
from train.collect.scripted import scripted_episode
from verifiers.classifier import ClassifierConfig, SuccessClassifier
from verifiers.episode import Episode
from verifiers.judge import JudgeConfig, MLLMJudge
from verifiers.metrics import agreement

MODES = ("expert", "perturbed", "random", "distracted")


def collect(task_ids: list[str], seeds: range, image_size: int) -> list[Episode]:
    """Every mode on every seed of every task, each episode from its own random stream."""
    return [
        scripted_episode(
            task_id,
            s,
            mode,
            np.random.default_rng([s, SCRIPTED_MODES.index(mode)]),
            noise=0.6,
            image_size=image_size,
        )
        for task_id in task_ids
        for s in seeds
        for mode in MODES
    ]


def describe(episodes: list[Episode]) -> str:
    successes = sum(e.is_success for e in episodes)
    return f"{len(episodes)} episodes, {successes} successes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tasks", nargs="*", default=None, help="short names or ids (default: all)"
    )
    parser.add_argument("--train-seeds", type=int, default=60, help="seeds per task for training")
    parser.add_argument("--test-seeds", type=int, default=25, help="held-out seeds per task")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--classifier-epochs", type=int, default=30)
    parser.add_argument(
        "--judge-train", type=int, default=240, help="judge training episodes (subsample)"
    )
    parser.add_argument("--judge-epochs", type=int, default=3)
    parser.add_argument(
        "--judge-preset", default="tiny", help="built-in policy preset the judge is built on"
    )
    parser.add_argument(
        "--judge-from",
        default=None,
        help="a saved policy (e.g. a campaign's checkpoints/round_N) the judge starts from, "
        "instead of a fresh preset",
    )
    parser.add_argument("--judge-lr", type=float, default=1e-3)
    parser.add_argument("--judge-weight-decay", type=float, default=0.0)
    parser.add_argument(
        "--judge-no-augment", action="store_true", help="train on the exact final frames"
    )
    parser.add_argument("--skip-judge", action="store_true")
    parser.add_argument("--skip-classifier", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="verifier_accuracy.json")
    args = parser.parse_args()

    task_ids = [envs.resolve(t) for t in args.tasks] if args.tasks else list(envs.TASK_IDS)
    start = time.perf_counter()
    train = collect(task_ids, range(0, args.train_seeds), args.image_size)
    test = collect(task_ids, range(100_000, 100_000 + args.test_seeds), args.image_size)
    print(
        f"collected train: {describe(train)}; held-out: {describe(test)} "
        f"({time.perf_counter() - start:.0f} s)",
        flush=True,
    )

    results, verifiers = {}, {}
    if not args.skip_classifier:
        t = time.perf_counter()
        classifier = SuccessClassifier(
            ClassifierConfig(epochs=args.classifier_epochs, seed=args.seed)
        )
        fit = classifier.fit(train)
        verifiers["success_classifier"] = classifier
        results["success_classifier"] = {
            **agreement(classifier.verify(test), test),
            "n_train": len(train),
            "train_accuracy": fit["train_accuracy"],
            "seconds": time.perf_counter() - t,
        }
        print("success_classifier", results["success_classifier"], flush=True)

    if not args.skip_judge:
        t = time.perf_counter()
        rng = np.random.default_rng(args.seed)
        subset = [train[i] for i in rng.permutation(len(train))[: args.judge_train]]
        config = JudgeConfig(
            epochs=args.judge_epochs,
            lr=args.judge_lr,
            weight_decay=args.judge_weight_decay,
            augment=not args.judge_no_augment,
            seed=args.seed,
        )
        base = Policy.from_pretrained(args.judge_from) if args.judge_from else None
        judge = MLLMJudge(base, config=config, preset=args.judge_preset)
        fit = judge.fit(subset)
        verifiers["mllm_judge"] = judge
        results["mllm_judge"] = {
            **agreement(judge.verify(test), test),
            "n_train": len(subset),
            "train_accuracy": fit["train_accuracy"],
            "seconds": time.perf_counter() - t,
        }
        print("mllm_judge", results["mllm_judge"], flush=True)

    per_task = {
        name: {
            task_id: agreement(verifier.verify(part), part)["accuracy"]
            for task_id in task_ids
            if (part := [e for e in test if e.task_id == task_id])
        }
        for name, verifier in verifiers.items()
    }
    report = {
        "command": "python bench/verifier_accuracy.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (None, False)
        ),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, CPU",
        "tasks": task_ids,
        "train": describe(train),
        "held_out": describe(test),
        "results": results,
        "per_task_accuracy": per_task,
    }
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
    print("\n| verifier | train episodes | held-out episodes | precision | recall | accuracy |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        print(
            f"| {name} | {r['n_train']} | {int(r['n'])} | {r['precision']:.3f} | "
            f"{r['recall']:.3f} | {r['accuracy']:.3f} |"
        )


if __name__ == "__main__":
    main()

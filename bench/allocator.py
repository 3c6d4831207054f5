"""glibc malloc tuned (agent.runtime) against left as it is: `Policy.act` and SFT steps, CPU time
and page faults, in one run.

Each measurement runs in a fresh child process (malloc's settings are per process), the two
settings alternating `--repeats` times; medians are reported. Per child: the policy from a preset,
`act` at one batch size on random frames (`--acts` calls after 3 warm-up calls), then SFT-style
steps (teacher-forced log-probs, backward, AdamW) on a batch of the same size; CPU seconds of the
child and its minor page faults (getrusage) for each phase.

Usage: python bench/allocator.py [--presets tiny_vision idefics3_tiny_vision] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from agent import Policy
from agent.runtime import tune_allocator
preset, batch, acts, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
policy = Policy.from_preset(preset, seed=0)
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (batch, 64, 64, 3), dtype=np.uint8)
texts = ["touch the red ball"] * batch
states = np.zeros((batch, 4), np.float32)
bins = rng.integers(0, 256, (batch, 4))
def usage():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return time.process_time(), r.ru_minflt
for _ in range(3):
    policy.act(images, texts, states, greedy=True)
t0, f0 = usage()
for _ in range(acts):
    policy.act(images, texts, states, greedy=True)
t1, f1 = usage()
policy.model.train()
optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=1e-4)
for i in range(steps + 1):
    if i == 1:
        t2, f2 = usage()
    loss = -policy.action_logprobs(images, texts, states, bins).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
t3, f3 = usage()
print(json.dumps({"tuned": tune_allocator(), "act_s": (t1 - t0) / acts,
    "act_faults": (f1 - f0) / acts, "step_s": (t3 - t2) / steps, "step_faults": (f3 - f2) / steps}))
"""


def child(preset: str, setting: str, args: argparse.Namespace) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if setting == "default":
        env["AUTODIDACT_MALLOC"] = "default"
    else:
        env.pop("AUTODIDACT_MALLOC", None)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, preset, str(args.batch), str(args.acts), str(args.steps)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["tuned"] == (setting == "tuned"), result
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny_vision", "idefics3_tiny_vision"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--acts", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for preset in args.presets:
        runs: dict[str, list[dict]] = {"default": [], "tuned": []}
        for _ in range(args.repeats):
            for setting in runs:
                runs[setting].append(child(preset, setting, args))
        for setting, results in runs.items():
            row = {"preset": preset, "malloc": setting}
            for key in ("act_s", "act_faults", "step_s", "step_faults"):
                row[key] = float(np.median([r[key] for r in results]))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(
        f"\n| preset | malloc | act actions/s (batch {args.batch}) | page faults / act | "
        "SFT samples/s | page faults / step |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['preset']} | {r['malloc']} | {args.batch / r['act_s']:.0f} | "
            f"{r['act_faults']:.0f} | {args.batch / r['step_s']:.1f} | {r['step_faults']:.0f} |"
        )


if __name__ == "__main__":
    main()

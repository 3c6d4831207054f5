"""The `autodidact envs` and `autodidact expert` subcommands: list the tasks; run a scripted expert.

`autodidact expert TASK` is also how a user validates a new task: it runs the task's scripted
expert with its actions quantized to the policy's 256 action bins (as demonstrations are
recorded), reports the success rate and can write an MP4 of the first episode.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import gymnasium
import numpy as np

import envs
from agent.action_tokens import actions_to_bins, bins_to_actions

VIDEO_SCALE = 4
"""Nearest-neighbour upscaling of the 64x64 frames so the video is watchable."""


@dataclass
class ExpertReport:
    """Outcome of running a task's scripted expert over consecutive seeds."""

    task: str
    episodes: int
    success_rate: float
    mean_length: float
    """Mean episode length in steps (successful episodes end early)."""
    seed: int
    """Seed of the first episode; episode i uses seed + i."""


def describe_tasks() -> list[dict]:
    """Every registered task: id, short name, an example instruction, action dim, max steps."""
    short = {v: k for k, v in envs.SHORT_NAMES.items()}
    rows = []
    for task_id in envs.task_ids():
        env = gymnasium.make(task_id)
        obs, _ = env.reset(seed=0)
        rows.append(
            {
                "id": task_id,
                "short_name": short.get(task_id, ""),
                "instruction": obs["instruction"],
                "action_dim": int(env.action_space.shape[0]),
                "max_episode_steps": int(env.spec.max_episode_steps),
            }
        )
        env.close()
    return rows


def quantize(action: np.ndarray) -> np.ndarray:
    """The action as the policy would emit it: snapped to its 256-bin centre."""
    return bins_to_actions(actions_to_bins(action))


def run_expert(
    task: str, episodes: int, seed: int = 0, video: str | Path | None = None
) -> ExpertReport:
    """Run the scripted expert for `episodes` episodes (seeds seed, seed+1, ...)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    task_id = envs.resolve(task)
    env = gymnasium.make(task_id)
    successes, lengths, frames = [], [], []
    for i in range(episodes):
        obs, info = env.reset(seed=seed + i)
        if i == 0:
            frames.append(obs["image"])
        done, steps = False, 0
        while not done:
            action = quantize(env.unwrapped.expert_action())
            obs, _, terminated, truncated, info = env.step(action)
            done, steps = terminated or truncated, steps + 1
            if i == 0:
                frames.append(obs["image"])
        successes.append(bool(info["is_success"]))
        lengths.append(steps)
    env.close()
    if video is not None:
        write_video(video, frames, fps=env.metadata.get("render_fps", 10))
    return ExpertReport(
        task=task_id,
        episodes=episodes,
        success_rate=float(np.mean(successes)),
        mean_length=float(np.mean(lengths)),
        seed=seed,
    )


def write_video(path: str | Path, frames: list[np.ndarray], fps: int) -> None:
    """Write frames (uint8 [H, W, 3]) to an MP4, upscaled `VIDEO_SCALE` times."""
    import imageio.v2 as imageio

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    scale = np.ones((VIDEO_SCALE, VIDEO_SCALE, 1), np.uint8)
    with imageio.get_writer(str(path), fps=fps, macro_block_size=1) as writer:
        for frame in frames:
            writer.append_data(np.kron(frame, scale))


def main(args: argparse.Namespace) -> int:
    """Entry point for `autodidact envs` and `autodidact expert` (parsed by train.cli)."""
    if args.command == "envs":
        rows = describe_tasks()
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'id':<30} {'dim':>3} {'steps':>5}  example instruction")
            for r in rows:
                print(
                    f"{r['id']:<30} {r['action_dim']:>3} {r['max_episode_steps']:>5}  "
                    f"{r['instruction']}"
                )
        return 0
    try:
        report = run_expert(args.task, args.episodes, args.seed, args.video)
    except ValueError as err:
        print(f"autodidact expert: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        print(
            f"{report.task}: expert success rate {report.success_rate:.2f} over "
            f"{report.episodes} episodes (mean length {report.mean_length:.1f} steps)"
        )
        if args.video:
            print(f"video of the first episode: {args.video}")
    return 0

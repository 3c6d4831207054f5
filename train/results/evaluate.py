"""Evaluation: greedy success rates of a policy on fixed held-out seeds, with Wilson intervals and videos."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from envs import task_name
from verifiers.episode import Episode, eval_jobs


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (95% for z = 1.96).

    >>> [round(x, 3) for x in wilson_interval(8, 10)]
    [0.49, 0.943]
    """
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class TaskResult:
    task_id: str
    successes: int
    episodes: int
    mean_length: float

    @property
    def success_rate(self) -> float:
        return self.successes / self.episodes if self.episodes else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.episodes)


def summarize(episodes: list[Episode], task_ids: list[str]) -> dict[str, TaskResult]:
    results = {}
    for task_id in task_ids:
        mine = [e for e in episodes if e.task_id == task_id]
        results[task_id] = TaskResult(
            task_id,
            successes=sum(e.is_success for e in mine),
            episodes=len(mine),
            mean_length=float(np.mean([e.length for e in mine])) if mine else 0.0,
        )
    return results


def eval_metrics(results: dict[str, TaskResult]) -> dict[str, float]:
    """Namespaced metrics: per task and pooled over tasks (`eval/success_rate`)."""
    metrics: dict[str, float] = {}
    total = sum(r.successes for r in results.values())
    n = sum(r.episodes for r in results.values())
    for task_id, r in results.items():
        name = task_name(task_id)
        lo, hi = r.interval
        metrics[f"eval/success_rate/{name}"] = r.success_rate
        metrics[f"eval/ci_low/{name}"] = lo
        metrics[f"eval/ci_high/{name}"] = hi
        metrics[f"eval/episodes/{name}"] = r.episodes
    lo, hi = wilson_interval(total, n)
    metrics.update(
        {"eval/success_rate": total / n if n else 0.0, "eval/ci_low": lo, "eval/ci_high": hi}
    )
    return metrics


GRASP_OUTCOMES = ("grasped", "grasped_other", "failed_holding", "let_go_elsewhere", "no_grasp")
"""Where a grasp task's episodes end up (`grasp_breakdown`)."""


def grasp_breakdown(episodes: list[Episode]) -> dict[str, dict[str, float]]:
    """Per grasp task (one whose episodes report `grasp/named`, `envs.grasping.grasp_report`),
    the share of its episodes that: grasped the named cube at some step (`grasped`); grasped
    another cube and never the named one (`grasped_other`); failed while still holding the named
    cube at the end (`failed_holding`); grasped it, let go and failed (`let_go_elsewhere`); never
    grasped any cube (`no_grasp`). It is how the next lever gets chosen."""
    out: dict[str, dict[str, float]] = {}
    for task_id in dict.fromkeys(e.task_id for e in episodes):
        mine = [e for e in episodes if e.task_id == task_id and "grasp/named" in e.step_info]
        if not mine:
            continue
        counts = dict.fromkeys(GRASP_OUTCOMES, 0)
        for e in mine:
            named = e.step_info["grasp/named"] > 0
            other = e.step_info.get("grasp/other", np.zeros(e.length)) > 0
            counts["grasped"] += bool(named.any())
            counts["grasped_other"] += bool(other.any() and not named.any())
            counts["no_grasp"] += bool(not named.any() and not other.any())
            if named.any() and not e.is_success:
                counts["failed_holding" if named[-1] else "let_go_elsewhere"] += 1
        out[task_id] = {k: v / len(mine) for k, v in counts.items()}
    return out


def waypoint_errors(episodes: list[Episode], kind: str = "gripper") -> dict[str, float]:
    """Per task whose episodes record the policy's waypoint estimate (`waypoint/x|y|z`, the
    next keyframe), the median distance (cm) between it and where the fingertip then was at the
    episode's next keyframe (`train.organize.waypoints`): does the hand go where the policy
    said it would?"""
    from train.organize.waypoints import episode_waypoints

    out = {}
    for task_id in dict.fromkeys(e.task_id for e in episodes):
        errors = []
        for e in episodes:
            if e.task_id != task_id or "waypoint/x" not in e.step_info:
                continue
            said = np.stack([e.step_info[f"waypoint/{a}"] for a in "xyz"], axis=1)
            went = episode_waypoints(e, 1, kind)[:, 0]
            errors.append(np.linalg.norm(said - went, axis=1))
        if errors:
            out[task_id] = float(np.nanmedian(np.concatenate(errors))) * 100.0
    return out


def episode_metrics(episodes: list[Episode], keyframes: str = "gripper") -> dict[str, float]:
    """Diagnostics of the evaluation episodes beside the success rates: the grasp breakdown
    (`eval/grasp/<outcome>/<task>`) and the waypoint error (`eval/waypoint_error_cm/<task>`,
    against the episodes' own keyframes of kind `keyframes`: the kind the policy learnt)."""
    metrics = {}
    for task_id, shares in grasp_breakdown(episodes).items():
        for outcome, share in shares.items():
            metrics[f"eval/grasp/{outcome}/{task_name(task_id)}"] = share
    for task_id, cm in waypoint_errors(episodes, keyframes).items():
        metrics[f"eval/waypoint_error_cm/{task_name(task_id)}"] = cm
    return metrics


def breakdown_lines(metrics: dict[str, float], task_ids: list[str]) -> list[str]:
    """Lines to print beside the success table: each grasp task's breakdown, the waypoint error."""
    lines = []
    for task_id in task_ids:
        name = task_name(task_id)
        parts = [
            f"{o.replace('_', ' ')} {metrics[f'eval/grasp/{o}/{name}']:.0%}"
            for o in GRASP_OUTCOMES
            if f"eval/grasp/{o}/{name}" in metrics
        ]
        if f"eval/waypoint_error_cm/{name}" in metrics:
            parts.append(f"waypoint error {metrics[f'eval/waypoint_error_cm/{name}']:.1f} cm")
        if parts:
            lines.append(f"{name}: " + ", ".join(parts))
    return lines


def evaluate(
    policy: Any,
    task_ids: list[str],
    episodes_per_task: int,
    *,
    num_envs: int = 8,
    image_size: int = 64,
    round: int = 0,
    vectorization: str = "sync",
    progress: Any = None,
    collector: Any = None,
    chunk_episodes: int | None = None,
    execution: str = "ensemble",
) -> tuple[dict[str, TaskResult], list[Episode]]:
    """Greedy rollouts on the held-out seeds; returns per-task results and the episodes in job
    order.

    The jobs are cut into chunks of `chunk_episodes` (None: one chunk), the unit that a
    `collector` (`train.collect.chunks`: local, or sharded over Ray workers) runs in one vector
    env; a campaign cuts them as it cuts its rollouts, so `autodidact eval --chunk-episodes`
    with the campaign's value reproduces the campaign's numbers. Without a collector, a local one
    of `num_envs` slots is made and closed. `execution`: how a chunk policy's greedy decisions
    are executed (`train.collect.chunking`)."""
    from train.collect.chunks import LocalCollector, make_chunks

    jobs = eval_jobs(task_ids, episodes_per_task)
    chunks = make_chunks(
        jobs, chunk_episodes or len(jobs), round, lambda c: 0, greedy=True, execution=execution
    )
    own = collector is None
    if own:
        collector = LocalCollector(task_ids, min(num_envs, len(jobs)), image_size, vectorization)
    try:
        done = dict(
            (chunk.index, episodes)
            for chunk, episodes in collector.collect(chunks, policy, progress=progress)
        )
    finally:
        if own:
            collector.close()
    episodes = [e for c in range(len(chunks)) for e in done[c]]
    return summarize(episodes, task_ids), episodes


def waypoint_pixels(episode: Episode) -> np.ndarray | None:
    """float [T, 2]: the policy's waypoint estimate at each step (`waypoint/x|y|z`, recorded by a
    policy with a waypoint head) as (column, row) in the episode's frames; None without one."""
    if "waypoint/x" not in episode.step_info or episode.frames is None:
        return None
    import envs

    points = np.stack([episode.step_info[f"waypoint/{a}"] for a in "xyz"], axis=1)
    env = envs.make(episode.task_id, image_size=tuple(episode.frames.shape[1:3]))
    try:
        env.reset(seed=episode.env_seed)
        return env.unwrapped.world_to_pixel(points)
    finally:
        env.close()


def write_video(
    episode: Episode,
    path: str | Path,
    scale: int = 4,
    fps: int = 10,
    marks: np.ndarray | None = None,
) -> Path:
    """An MP4 of the episode's frames, upscaled by `scale` (nearest neighbour) to be watchable.

    `marks` [T, 2] (column, row in frame pixels, e.g. `waypoint_pixels`): a magenta cross drawn
    on frame t for each step t (NaN: none), where the policy said the hand goes next."""
    import imageio.v2 as imageio

    if episode.frames is None:
        raise ValueError(
            f"episode {episode.episode_id!r} has no frames loaded; cannot write a video"
        )
    frames = np.repeat(np.repeat(episode.frames, scale, axis=1), scale, axis=2)
    if marks is not None:
        frames = frames.copy()
        h, w = frames.shape[1:3]
        arm = 2 * scale
        for t, (col, row) in enumerate(np.asarray(marks)[: len(frames)]):
            if not (np.isfinite(col) and np.isfinite(row)):
                continue
            c, r = int(round(col * scale)), int(round(row * scale))
            if not (0 <= c < w and 0 <= r < h):
                continue
            frames[t, max(r - arm, 0) : r + arm + 1, c] = MARK_COLOR
            frames[t, r, max(c - arm, 0) : c + arm + 1] = MARK_COLOR
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    imageio.mimwrite(tmp, list(frames), fps=fps, macro_block_size=1)
    tmp.replace(path)
    return path


MARK_COLOR = np.array([255, 0, 255], dtype=np.uint8)
"""The waypoint cross on videos: magenta, a colour no task object has."""

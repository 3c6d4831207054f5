"""Evaluation: greedy success rates of a policy on fixed held-out seeds, with Wilson intervals and videos."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from train.collect.episodes import Job
from verifiers.episode import Episode

EVAL_SEED_BASE = 10_000_000
"""Held-out evaluation seeds start here; demonstrations and rollouts use seeds far below it."""


def task_name(task_id: str) -> str:
    """The id without its namespace, as used in metric keys: `ReachBall-v0`."""
    return task_id.split("/")[-1]


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


def eval_jobs(task_ids: list[str], episodes_per_task: int) -> list[Job]:
    """The fixed held-out jobs: the same seeds for every round and every campaign."""
    return [
        Job(task_id, EVAL_SEED_BASE + i, tag="eval")
        for task_id in task_ids
        for i in range(episodes_per_task)
    ]


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
) -> tuple[dict[str, TaskResult], list[Episode]]:
    """Greedy rollouts on the held-out seeds; returns per-task results and the episodes in job
    order.

    The jobs are cut into chunks of `chunk_episodes` (None: one chunk), the unit that a
    `collector` (`train.collect.chunks`: local, or sharded over Ray workers) runs in one vector
    env; a campaign cuts them as it cuts its rollouts, so `autodidact eval --chunk-episodes`
    with the campaign's value reproduces the campaign's numbers. Without a collector, a local one
    of `num_envs` slots is made and closed."""
    from train.collect.chunks import LocalCollector, make_chunks

    jobs = eval_jobs(task_ids, episodes_per_task)
    chunks = make_chunks(jobs, chunk_episodes or len(jobs), round, lambda c: 0, greedy=True)
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


def write_video(episode: Episode, path: str | Path, scale: int = 4, fps: int = 10) -> Path:
    """An MP4 of the episode's frames, upscaled by `scale` (nearest neighbour) to be watchable."""
    import imageio.v2 as imageio

    if episode.frames is None:
        raise ValueError(
            f"episode {episode.episode_id!r} has no frames loaded; cannot write a video"
        )
    frames = np.repeat(np.repeat(episode.frames, scale, axis=1), scale, axis=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    imageio.mimwrite(tmp, list(frames), fps=fps, macro_block_size=1)
    tmp.replace(path)
    return path

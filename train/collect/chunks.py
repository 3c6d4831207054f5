"""Chunks of jobs, and collecting them in this process (`LocalCollector`); the Ray workers
(`train.collect.workers.RayCollector`) collect the same chunks elsewhere, and
`train.collect.collectors.make_collector` picks the one a campaign asks for.

A chunk is the unit of work: a list of jobs collected in one `collect_episodes` call with its own
sampling seed, in a vector env of a fixed number of slots. An episode depends only on its chunk,
the policy's weights and that number of slots, so handing chunks to workers in any order, or
running one again on another worker after a crash, yields the very episodes the local collector
yields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from train.collect.episodes import as_actor, collect_episodes, is_policy, make_vector_env
from train.collect.guidance import Guidance
from train.collect.guided import GuidedActor
from verifiers.episode import Episode, Job


@dataclass(frozen=True)
class Chunk:
    """Jobs collected together, with the sampling settings of their `collect_episodes` call."""

    index: int
    jobs: tuple[Job, ...]
    round: int
    seed: int
    greedy: bool = False
    temperature: float = 1.0
    top_k: int = 0
    execution: str = "ensemble"
    """How a chunk policy's greedy decisions are executed (`train.collect.chunking`)."""
    guidance: Guidance | None = None
    """How the expert helps the policy's rollouts (`train.collect.guidance`); None or mode
    `none`: the policy alone. Never set for evaluation or demonstrations."""
    start_steps: tuple[tuple[str, int], ...] = ()
    """demo_start guidance: (task, start step) for this round's reverse curriculum."""


def make_chunks(
    jobs: Sequence[Job],
    size: int,
    round: int,
    seed: Callable[[int], int],
    first: int = 0,
    **sampling: Any,
) -> list[Chunk]:
    """`jobs` cut into chunks of `size` numbered from `first`, chunk `c` sampling with seed
    `seed(c)`."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    jobs = list(jobs)
    return [
        Chunk(c, tuple(jobs[i : i + size]), round, seed(c), **sampling)
        for c, i in enumerate(range(0, len(jobs), size), first)
    ]


def collect_chunk(chunk: Chunk, policy: Any, vec: Any, progress: Any = None) -> list[Episode]:
    sampling = dict(
        greedy=chunk.greedy,
        temperature=chunk.temperature,
        top_k=chunk.top_k,
        seed=chunk.seed,
        execution=chunk.execution,
    )
    actor = policy
    if chunk.guidance is not None and chunk.guidance.guided:
        if isinstance(policy, str):
            raise ValueError(f"guidance helps a policy's rollouts, not {policy!r}")
        inner = as_actor(policy, **sampling)
        actor = GuidedActor(inner, chunk.guidance, chunk.seed, chunk.round, dict(chunk.start_steps))
    return collect_episodes(
        chunk.jobs, actor, round=chunk.round, vector_env=vec, progress=progress, **sampling
    )


def _cast(policy: Any, dtype: str) -> Any:
    """A Policy in `dtype`; "expert", "random" and other actors as they are."""
    return policy.with_dtype(dtype) if is_policy(policy) else policy


class VectorEnvSpec:
    """The vector env a collector runs its chunks in (in this process or in each worker)."""

    def __init__(
        self,
        task_ids: Sequence[str],
        num_envs: int,
        image_size: int = 64,
        vectorization: str = "sync",
    ):
        self.task_ids = list(task_ids)
        self.num_envs = num_envs
        self.image_size = image_size
        self.vectorization = vectorization

    def _env_args(self) -> tuple:
        return (self.task_ids, self.num_envs, self.image_size, self.vectorization)


class LocalCollector(VectorEnvSpec):
    """Chunks collected one after another in this process, in one vector env kept open."""

    backend = "local"
    _vec = None

    def collect(
        self,
        chunks: Sequence[Chunk],
        policy: Any,
        dtype: str = "float32",
        progress: Callable[[int], Any] | None = None,
    ) -> Iterator[tuple[Chunk, list[Episode]]]:
        """Yield each chunk with its episodes, in order, as it finishes; `progress` is called
        with the number of episodes just finished. `policy`: an `agent.Policy` (acting in
        `dtype`), "expert", "random" or any actor (`train.collect.episodes.Actor`)."""
        if not chunks:
            return
        self.start()
        actor = _cast(policy, dtype)
        for chunk in chunks:
            yield chunk, collect_chunk(chunk, actor, self._vec, progress)

    def start(self) -> None:
        if self._vec is None:
            self._vec = make_vector_env(*self._env_args())

    def close(self) -> None:
        if self._vec is not None:
            self._vec.close()
            self._vec = None

"""Where a campaign's chunks are collected: the `Collector` protocol both backends follow, and
`make_collector`, which picks the one a config asks for (`collect.backend`). It is the one module
that knows both backends: `chunks` (local) knows nothing of Ray, `workers` (Ray) builds on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from train.collect.chunks import Chunk, LocalCollector
from train.collect.workers import RayCollector, task_modules
from verifiers.episode import Episode


class Collector(Protocol):
    """Collects chunks with a policy (`agent.Policy` acting in `dtype`, "expert", "random" or an
    actor), yielding each chunk with its episodes as it finishes (`LocalCollector`: in order;
    `RayCollector`: as workers finish); `progress` is called with episodes just finished. An
    episode depends only on its chunk, the policy's weights and the number of env slots, so
    both backends yield the same episodes."""

    backend: str
    num_envs: int

    def start(self) -> None: ...

    def collect(
        self,
        chunks: Sequence[Chunk],
        policy: Any,
        dtype: str = "float32",
        progress: Callable[[int], Any] | None = None,
    ) -> Iterator[tuple[Chunk, list[Episode]]]: ...

    def close(self) -> None: ...


def make_collector(config: Any, task_ids: Sequence[str]) -> Collector:
    """The collector a campaign config asks for (`collect.backend`); Ray workers import the
    modules that define `task_ids`, so that a user's tasks are registered there too."""
    c = config.collect
    if c.backend == "local":
        return LocalCollector(task_ids, c.num_envs, config.image_size, c.vectorization)
    r = config.ray
    return RayCollector(
        task_ids,
        r.envs_per_worker or c.num_envs,
        config.image_size,
        c.vectorization,
        address=r.address,
        num_workers=r.num_workers,
        cpus_per_worker=r.cpus_per_worker,
        gpus_per_worker=r.gpus_per_worker,
        imports=task_modules(task_ids),
    )

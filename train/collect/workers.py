"""Collection on Ray: each rollout worker is an actor holding its own vector env and its own copy
of the policy; `RayCollector` hands them chunks (`train.collect.chunks`) and yields the episodes,
the very ones the local collector gives for the same chunks.

The driver (the campaign) keeps the learner. Weights travel through the object store once per
change (one `ray.put`, the same reference handed to every worker): the whole saved policy when its
structure or base weights change, only the adapter tensors when LoRA trains an adapter on an
unchanged base. Every chunk names the weights it must be collected with, so a worker never acts
with stale ones. A worker that dies is replaced and its chunk runs again; the driver stores a
chunk only when it has come back whole, so no episode is lost or stored twice.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import socket
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from train.collect.chunks import Chunk, VectorEnvSpec, collect_chunk
from train.collect.episodes import make_vector_env
from verifiers.episode import Episode

log = logging.getLogger("autodidact")

MAX_ATTEMPTS = 3
"""Tries per chunk before a run of worker deaths is reported as an error instead of retried."""
CONNECT_TIMEOUT_S = 5.0
"""How long `ray.address` gets to accept a connection before it is reported unreachable."""
FORWARDED_ENV = ("MUJOCO_GL", "PYOPENGL_PLATFORM", "HF_HUB_OFFLINE", "AUTODIDACT_MALLOC")
"""Environment variables of the driver that the workers get too (rendering, offline mode)."""


# ---------------------------------------------------------------------------------- Ray


class RayConnectError(ConnectionError):
    """`ray.address` names no reachable Ray cluster."""


def egl_device_env(gpu_ids: Sequence[Any]) -> dict[str, str]:
    """The environment that points MuJoCo's EGL renderer at the GPU Ray assigned to a worker.

    Ray sets `CUDA_VISIBLE_DEVICES` to the assigned GPUs, so torch sees the worker's first GPU
    as `cuda:0`, but EGL enumerates every GPU of the machine: its device index is the physical
    id that `ray.get_gpu_ids()` returns, not 0. Without GPUs, nothing changes."""
    if not gpu_ids:
        return {}
    return {"MUJOCO_EGL_DEVICE_ID": str(gpu_ids[0])}


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise `RayConnectError` naming `address` when nothing accepts a connection there within
    `timeout` seconds (`ray.init` itself would retry for minutes). Empty and `auto` are not
    checked here."""
    if address in ("", "auto") or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise RayConnectError(
            f"ray.address={address!r} is not host:port; expected e.g. '10.0.0.1:6379', 'auto' "
            "(join the cluster this machine belongs to) or '' (start a local Ray instance)"
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise RayConnectError(
            f"ray.address={address!r} is unreachable ({err}; waited at most {timeout:.0f} s). "
            "Start a head there with `ray start --head --port PORT`, or set ray.address='' to "
            "start a local Ray instance"
        ) from None


def task_modules(task_ids: Sequence[str]) -> list[str]:
    """The modules that define `task_ids`: importing them in a worker registers the tasks there
    too (a task module's package registers it, e.g. `envs` or a user's package)."""
    import gymnasium

    modules = []
    for task_id in task_ids:
        entry = gymnasium.spec(task_id).entry_point
        if isinstance(entry, str):
            modules.append(entry.split(":")[0])
        else:
            modules.append(entry.__module__)
    return sorted(set(modules))


def worker_env() -> dict[str, str]:
    return {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}


def connect(address: str, num_cpus: int | None = None) -> bool:
    """Join the Ray cluster at `address` ('' starts a local instance; 'auto' finds the one this
    machine belongs to). Returns whether this call started Ray (and so should shut it down)."""
    import ray

    check_address(address)
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = dict(
        include_dashboard=False,
        log_to_driver=True,
        runtime_env={"env_vars": worker_env()},
    )
    if address == "":
        ray.init(num_cpus=num_cpus, **kwargs)
        return True
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as err:
        raise RayConnectError(
            f"ray.address={address!r}: no Ray cluster answered there ({err}). Start a head "
            "with `ray start --head`, or set ray.address='' to start a local Ray instance"
        ) from None
    return True


@dataclass(frozen=True)
class WeightsKey:
    """What a policy's weights are, by content: its settings (the id aside), a hash of the base
    weights, one of the LoRA adapter's ("" without one), and the id episodes record."""

    settings: str
    base: str
    adapter: str
    policy_id: str

    def same_base(self, other: WeightsKey) -> bool:
        """Same structure and base weights: only the adapter (and the id) may differ."""
        return (self.settings, self.base) == (other.settings, other.base)


@dataclass(frozen=True)
class WeightsMessage:
    """What every chunk carries to a worker (object references, not the weights): the saved
    policy (the spec) and, with LoRA on an unchanged base, adapter tensors loaded over it."""

    key: WeightsKey
    spec_id: int
    """Which saved policy `spec` is (a worker loads a spec once)."""
    spec: Any
    """ObjectRef of {relative path: bytes}."""
    delta: Any = None
    """ObjectRef of {name: tensor}, or None."""


@dataclass
class _Weights:
    """The driver's current policy as published, and the in-place-update fingerprint that says
    cheaply when it is unchanged."""

    fingerprint: tuple
    message: WeightsMessage


def _digest(state: dict[str, Any], keep: Callable[[str], bool]) -> str:
    """A hash of the named tensors' names, shapes, dtypes and bytes."""
    import torch

    h = hashlib.blake2b(digest_size=16)
    for name, tensor in state.items():
        if keep(name):
            t = tensor.detach().cpu().contiguous()
            h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _saved_files(policy: Any) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory(prefix="autodidact-weights-") as tmp:
        policy.save_pretrained(tmp)
        root = Path(tmp)
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _is_adapter(name: str) -> bool:
    return "lora_" in name


class RolloutWorker:
    """A Ray actor: one vector env and one copy of the policy (see the module docstring)."""

    def __init__(
        self,
        task_ids: list[str],
        num_envs: int,
        image_size: int,
        vectorization: str,
        imports: list[str],
    ):
        import ray

        os.environ.update(egl_device_env(ray.get_gpu_ids()))
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # one "Loading weights" bar per broadcast otherwise
        for module in imports:
            importlib.import_module(module)
        self.vec = make_vector_env(task_ids, num_envs, image_size, vectorization)
        self.device = "cuda" if ray.get_gpu_ids() else "cpu"
        self.policy = None
        self.spec_id = -1
        self.tag: WeightsKey | None = None
        self._casts: dict[str, Any] = {}

    def info(self) -> dict[str, Any]:
        import ray

        return {
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
            "gpus": [str(g) for g in ray.get_gpu_ids()],
            "device": self.device,
            "egl_device": os.environ.get("MUJOCO_EGL_DEVICE_ID"),
        }

    def _hold(self, weights: WeightsMessage) -> None:
        import ray

        from agent import Policy

        if self.tag == weights.key:
            return
        if self.spec_id != weights.spec_id:
            files = ray.get(weights.spec)
            with tempfile.TemporaryDirectory(prefix="autodidact-worker-") as tmp:
                for name, data in files.items():
                    path = Path(tmp) / name
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                self.policy = Policy.from_pretrained(tmp, device=self.device)
            self.spec_id = weights.spec_id
        if weights.delta is not None:
            self.policy.load_weights(ray.get(weights.delta))
        self.policy.policy_id = weights.key.policy_id  # episodes record the driver's id
        self.tag = weights.key
        self._casts = {}

    def collect(
        self, chunk: Chunk, policy: str | WeightsMessage, dtype: str = "float32"
    ) -> list[Episode]:
        """`policy` is "expert", "random" or the driver's weights (`WeightsMessage`)."""
        if isinstance(policy, WeightsMessage):
            self._hold(policy)
            if dtype not in self._casts:
                self._casts[dtype] = self.policy.with_dtype(dtype)
            policy = self._casts[dtype]
        return collect_chunk(chunk, policy, self.vec)

    def acts(self, images, instructions, states, dtype: str = "float32", **kwargs) -> Any:
        """The held policy's `act` on given observations (for checking the weights it holds)."""
        return self._casts.get(dtype, self.policy).act(images, instructions, states, **kwargs)

    def close(self) -> None:
        self.vec.close()


class RayCollector(VectorEnvSpec):
    """Chunks spread over `num_workers` Ray actors; yields them as they finish (any order)."""

    backend = "ray"

    def __init__(
        self,
        task_ids: Sequence[str],
        num_envs: int,
        image_size: int = 64,
        vectorization: str = "sync",
        *,
        address: str = "",
        num_workers: int = 2,
        cpus_per_worker: float = 1.0,
        gpus_per_worker: float = 0.0,
        imports: Sequence[str] = (),
    ):
        if num_workers < 1:
            raise ValueError(f"ray.num_workers must be >= 1, got {num_workers}")
        super().__init__(task_ids, num_envs, image_size, vectorization)
        self.address = address
        self.num_workers = num_workers
        self.cpus_per_worker = cpus_per_worker
        self.gpus_per_worker = gpus_per_worker
        self.imports = list(imports)
        self.workers: list[Any] = []
        self.restarts = 0
        self._owns_ray = False
        self._weights: _Weights | None = None
        self._spec_count = 0
        self._history: list[dict[str, float]] = []
        self.on_chunk_start: Callable[[int, Chunk], None] | None = None
        """Called with (worker index, chunk) as each chunk is handed out (tests use it to kill
        a busy worker)."""

    # ---- workers ------------------------------------------------------------------------

    def start(self) -> None:
        if self.workers:
            return
        import ray

        self._owns_ray = connect(self.address)
        self._actor_class = ray.remote(RolloutWorker).options(
            num_cpus=self.cpus_per_worker,
            num_gpus=self.gpus_per_worker,
            max_restarts=0,
        )
        self.workers = [self._new_worker() for _ in range(self.num_workers)]
        # Wait until every worker has made its envs, so that a bad task or a missing import
        # fails here, with its message, not halfway through a round.
        infos = ray.get([w.info.remote() for w in self.workers])
        log.info(
            "ray: %d rollout workers (%s CPU, %s GPU each) on %d node(s)",
            len(infos),
            self.cpus_per_worker,
            self.gpus_per_worker,
            len({i["node"] for i in infos}),
        )

    def _new_worker(self) -> Any:
        return self._actor_class.remote(*self._env_args(), self.imports)

    def worker_info(self) -> list[dict[str, Any]]:
        import ray

        self.start()
        return ray.get([w.info.remote() for w in self.workers])

    # ---- weights ------------------------------------------------------------------------

    def publish(self, policy: Any) -> WeightsMessage | str:
        """What the workers need to act as `policy`: "expert" / "random" as they are; for a
        Policy, its weights, put into the object store once per change of content.

        The policy's weights fingerprint (`agent.prefix_cache`, bumped by every in-place update)
        says cheaply when nothing changed; otherwise a hash of the weights decides, so a policy
        reloaded from the checkpoint just saved is not sent again. With LoRA on an unchanged
        base, only the adapter tensors are sent."""
        if isinstance(policy, str):
            return policy
        import ray

        fingerprint = (policy.policy_id, policy.weights_fingerprint())
        w = self._weights
        if w is not None and w.fingerprint == fingerprint:
            return w.message
        start = time.perf_counter()
        state = policy.weights()
        lora = policy.has_lora
        base = _digest(state, lambda k: not (lora and _is_adapter(k)))
        adapter = _digest(state, _is_adapter) if lora else ""
        # The id is not part of the structure: a renamed policy (each round's checkpoint is
        # `round_K`) on an unchanged base still gets only its adapter sent, and its new id.
        settings = {k: v for k, v in vars(policy.settings).items() if k != "policy_id"}
        key = WeightsKey(str(settings), base, adapter, policy.policy_id)
        if w is not None and w.message.key == key:
            w.fingerprint = fingerprint
            return w.message
        if w is not None and lora and w.message.key.same_base(key):
            tensors = {k: v.detach().cpu().clone() for k, v in state.items() if _is_adapter(k)}
            sent = sum(t.numel() * t.element_size() for t in tensors.values())
            spec_id, spec, delta = w.message.spec_id, w.message.spec, ray.put(tensors)
        else:
            files = _saved_files(policy)
            sent = sum(len(b) for b in files.values())
            self._spec_count += 1
            spec_id, spec, delta = self._spec_count, ray.put(files), None
        seconds = time.perf_counter() - start
        self._history.append(
            {"bytes": float(sent), "seconds": seconds, "adapter_only": float(delta is not None)}
        )
        self._weights = _Weights(fingerprint, WeightsMessage(key, spec_id, spec, delta))
        log.info(
            "ray: weights of %s put once for all workers: %.1f MB%s in %.2f s",
            policy.policy_id,
            sent / 1e6,
            " (adapter only)" if delta is not None else "",
            seconds,
        )
        return self._weights.message

    @property
    def broadcasts(self) -> list[dict[str, float]]:
        """Bytes, seconds and kind (`adapter_only`) of each weight broadcast so far."""
        return list(self._history)

    # ---- collection ---------------------------------------------------------------------

    def collect(
        self,
        chunks: Sequence[Chunk],
        policy: Any,
        dtype: str = "float32",
        progress: Callable[[int], Any] | None = None,
    ) -> Iterator[tuple[Chunk, list[Episode]]]:
        """Yield each chunk with its episodes as it finishes (in any order); a chunk whose worker
        died runs again on a fresh worker. `progress` counts whole chunks' episodes."""
        if not chunks:
            return
        import ray
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        self.start()
        weights = self.publish(policy)
        queue = deque(chunks)
        attempts = {chunk.index: 0 for chunk in chunks}
        idle = list(range(len(self.workers)))
        pending: dict[Any, tuple[int, Chunk]] = {}

        def dispatch() -> None:
            while queue and idle:
                w, chunk = idle.pop(0), queue.popleft()
                attempts[chunk.index] += 1
                ref = self.workers[w].collect.remote(chunk, weights, dtype)
                pending[ref] = (w, chunk)
                if self.on_chunk_start is not None:
                    self.on_chunk_start(w, chunk)

        try:
            while queue or pending:
                dispatch()
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                w, chunk = pending.pop(ref)
                try:
                    episodes = ray.get(ref)
                except (RayActorError, ActorDiedError, ActorUnavailableError) as err:
                    if attempts[chunk.index] >= MAX_ATTEMPTS:
                        raise RuntimeError(
                            f"chunk {chunk.index} of round {chunk.round} failed on "
                            f"{MAX_ATTEMPTS} workers in a row; last error: {err}"
                        ) from err
                    log.warning(
                        "ray: rollout worker %d died (%s); restarting it, chunk %d runs again",
                        w,
                        type(err).__name__,
                        chunk.index,
                    )
                    ray.kill(self.workers[w], no_restart=True)
                    self.workers[w] = self._new_worker()
                    self.restarts += 1
                    queue.appendleft(chunk)
                    idle.append(w)
                    continue
                idle.append(w)
                dispatch()  # the freed worker starts its next chunk while the caller stores
                if progress is not None:
                    progress(len(episodes))
                yield chunk, episodes
        finally:
            for ref in pending:
                ray.cancel(ref, force=False)

    def close(self) -> None:
        import ray

        for w in self.workers:
            ray.kill(w, no_restart=True)
        self.workers = []
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False

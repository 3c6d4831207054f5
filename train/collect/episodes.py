"""Rollout collection: run a policy (the MLLM, the scripted expert, or uniform noise) over a list of
(task, seed) jobs in a gymnasium vector env and return one `Episode` per job."""

from __future__ import annotations

import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

import envs
from agent.action_tokens import N_BINS, actions_to_bins, bins_to_actions
from agent.runtime import adapt_threads
from train.collect.chunking import ChunkExecutor
from verifiers.episode import EXPERT_POLICY_ID, RANDOM_POLICY_ID, Episode, Job

POLICY_KINDS = (EXPERT_POLICY_ID, RANDOM_POLICY_ID)


class TaskSlot(gym.Env):
    """One vector-env slot that can host any registered task; `task_id` is set before each reset.

    Every task shares one observation and action space, so slots of a vector env can run different
    tasks side by side. Environments are made lazily, once per task per slot, and reused; a slot
    keeps at most `max_envs` of them open (the least recently used is closed first: each costs
    about 26 MB with its renderer, and 64 slots of six tasks held 10 GB), and re-makes one it
    closed (a reset from a seed gives the same episode in a fresh environment).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        task_ids: Sequence[str],
        image_size: int | tuple[int, int] = 64,
        max_episode_steps: int | None = None,
        max_envs: int | None = None,
    ):
        if max_envs is not None and max_envs < 1:
            raise ValueError(f"max_envs must be >= 1 (or None: no limit), got {max_envs}")
        self._max_envs = max_envs
        self._image_size = image_size
        self._limit = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
        self._envs: dict[str, gym.Env] = {}
        self.task_id = task_ids[0]
        self.instruction: str | None = None
        """Forced instruction for the next reset (`Job.instruction`); None keeps the drawn one."""
        self.parked = False
        """A parked slot has no job: it neither simulates nor renders, and repeats its last
        observation (the vector env steps every slot; idle ones would otherwise cost as much)."""
        self._last_obs: dict | None = None
        first = self._env(self.task_id)
        self.observation_space = first.observation_space
        self.action_space = first.action_space

    def _env(self, task_id: str) -> gym.Env:
        env = self._envs.pop(task_id, None)
        if env is None:
            if self._max_envs is not None:
                while len(self._envs) >= self._max_envs:  # the least recently used first
                    self._envs.pop(next(iter(self._envs))).close()
            env = envs.make(task_id, image_size=self._image_size, **self._limit)
        self._envs[task_id] = env  # the most recently used last
        return env

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if self.parked and self._last_obs is not None:
            return self._last_obs, {}
        if self.instruction is not None:
            options = {**(options or {}), "instruction": self.instruction}
        obs, info = self._env(self.task_id).reset(seed=seed, options=options)
        self._last_obs = obs
        return obs, info

    def step(self, action):
        if self.parked:
            return self._last_obs, 0.0, False, False, {}
        obs, reward, terminated, truncated, info = self._env(self.task_id).step(action)
        self._last_obs = obs
        return obs, reward, terminated, truncated, info

    @property
    def task_env(self) -> gym.Env:
        """The current task's environment, unwrapped (for actors that read the simulator)."""
        return self._env(self.task_id).unwrapped

    def expert_action(self) -> np.ndarray:
        return self._env(self.task_id).unwrapped.expert_action()

    def expert_label(self, slack: float = 1.0) -> np.ndarray:
        return self._env(self.task_id).unwrapped.expert_label(slack)

    def achieved_instructions(self) -> list[str]:
        return self._env(self.task_id).unwrapped.achieved_instructions()

    def close(self) -> None:
        for env in self._envs.values():
            env.close()


OPEN_ENVS = 128
"""A vector env keeps at most this many task environments open across its slots (at least one
per slot): `num_envs` slots of up to OPEN_ENVS // num_envs tasks each (two tasks of 64 slots:
all open; six tasks: two per slot, about 3.3 GB instead of 10 GB; BENCHMARKS.md "Open task
environments per vector env")."""


def make_vector_env(
    task_ids: Sequence[str],
    num_envs: int,
    image_size: int | tuple[int, int] = 64,
    mode: str = "sync",
    max_episode_steps: int | None = None,
    open_envs: int = OPEN_ENVS,
) -> gym.vector.VectorEnv:
    """A vector env of `num_envs` task slots, without autoreset (the collector resets by mask);
    `max_episode_steps` overrides every task's registered time limit; the slots keep at most
    `open_envs` task environments open between them (at least one each)."""
    if mode not in ("sync", "async"):
        raise ValueError(f"unknown vectorization mode {mode!r}; expected 'sync' or 'async'")
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    per_slot = max(1, open_envs // num_envs)
    fns = [
        lambda: TaskSlot(task_ids, image_size, max_episode_steps, max_envs=per_slot)
        for _ in range(num_envs)
    ]
    disabled = gym.vector.AutoresetMode.DISABLED
    if mode == "sync":
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=disabled)
    # Worker processes are spawned, not forked: a forked child inherits the parent's GL context
    # (once the parent has rendered) and hangs in its first render.
    return gym.vector.AsyncVectorEnv(
        fns, autoreset_mode=disabled, shared_memory=False, context="spawn"
    )


def all_goal_jobs(task_id: str, seeds: Sequence[int], tag: str = "k0") -> list[Job]:
    """One job per goal of each seed's scene (e.g. each of three balls), tagged `{tag}-goal{i}`,
    each worded in the instruction template that the seed draws.

    Demonstrations collected from these show the same image under different instructions with
    different actions, so the action can only be predicted by reading the instruction.
    """
    env = envs.make(task_id)
    try:
        jobs = []
        for seed in seeds:
            env.reset(seed=int(seed))
            for i, text in enumerate(env.unwrapped.possible_instructions(template=None)):
                jobs.append(Job(task_id, int(seed), f"{tag}-goal{i}", instruction=text))
        return jobs
    finally:
        env.close()


_SCENE_ENVS: dict[str, gym.Env] = {}
"""One env per task for reading scenes' instructions (`scene_instructions`), kept for the process."""


def scene_instructions(task_id: str, seed: int, n: int) -> list[str]:
    """The first `n` instructions of scene `seed`: the one it draws, then its other goals' (in
    goal order), all in the template the seed draws. ValueError when the scene has fewer goals."""
    env = _SCENE_ENVS.get(task_id)
    if env is None:
        env = _SCENE_ENVS[task_id] = envs.make(task_id)
    drawn = env.reset(seed=int(seed))[0]["instruction"]
    others = [t for t in env.unwrapped.possible_instructions(template=None) if t != drawn]
    if len(others) + 1 < n:
        raise ValueError(
            f"{task_id} seed {seed}: {len(others) + 1} goals in the scene, fewer than "
            f"collect.instructions_per_scene={n}"
        )
    return [drawn, *others][:n]


@dataclass
class _Trace:
    """What one slot has recorded so far of its current episode."""

    job: Job
    instruction: str
    frames: list[np.ndarray]
    states: list[np.ndarray]
    actions: list[np.ndarray] = field(default_factory=list)
    bins: list[np.ndarray] = field(default_factory=list)
    logprobs: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    step_info: dict[str, list[float]] = field(default_factory=dict)
    achieved_at: dict[str, int] = field(default_factory=dict)


def _numeric_info(info: dict[str, Any], i: int) -> dict[str, float]:
    """The numeric per-step values of slot `i` in a vector env's info dict (is_success included)."""
    out = {}
    for key, value in info.items():
        if key.startswith("_") or not isinstance(value, np.ndarray) or value.dtype == object:
            continue
        mask = info.get("_" + key)
        if mask is not None and not mask[i]:
            continue
        if np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_:
            out[key] = float(value[i])
    return out


@dataclass
class ActorStep:
    """An actor's choice for every slot of one step, when it is more than bins and log-probs."""

    bins: np.ndarray
    """int64 [num_envs, d]: the action tokens recorded as the step's `action_bins` (the label
    SFT learns from)."""
    logprobs: np.ndarray
    """float32 [num_envs, d]: their log-probs under the actor (NaN when it has none)."""
    actions: np.ndarray | None = None
    """float32 [num_envs, d]: what the environment executes, when it differs from the bins'
    centres (a noise-injected demonstration, a temporally ensembled chunk); None: the centres."""
    info: dict[str, np.ndarray] = field(default_factory=dict)
    """Per-slot values [num_envs] recorded in the episode's `step_info` under their names (who
    labelled the step, a chunk's offset, a predicted waypoint, ...)."""


@runtime_checkable
class Actor(Protocol):
    """What acts in `collect_episodes`: one batched choice of action bins per step.

    `act(obs, active, vec)` gets the vector env's batched observation (`image`, `state`,
    `instruction`), which slots hold a running episode, and the vector env itself (for actors
    that read the simulator, like the scripted expert); it returns action bins (int64
    [num_envs, action_dim]) and their log-probs under the actor (float32, NaN when it has
    none), or an `ActorStep`. Rows of inactive slots are ignored. `policy_id` is recorded in
    every episode. `start(slots, jobs)` is called after those slots were reset onto those jobs,
    before their first step (to forget a finished episode's plan, or to seed an episode's own
    noise; an actor with nothing to do there passes).
    """

    policy_id: str

    def start(self, slots: Sequence[int], jobs: Sequence[Job]) -> None: ...

    def act(self, obs: dict, active: np.ndarray, vec: gym.vector.VectorEnv): ...


def is_policy(obj: Any) -> bool:
    """Whether `obj` is an `agent.Policy` (without importing torch: a process that never
    imported `agent.policy` holds none)."""
    module = sys.modules.get("agent.policy")
    return module is not None and isinstance(obj, module.Policy)


def _as_step(out) -> ActorStep:
    return out if isinstance(out, ActorStep) else ActorStep(*out)


def job_rng(seed: int, job: Job) -> np.random.Generator:
    """A random stream of one job's own, from `seed` and the job's task, seed and tag: what an
    actor draws in an episode then depends on that episode alone, not on which slot ran it."""
    key = f"{job.task_id}/{job.seed}/{job.tag}".encode()
    return np.random.default_rng([int(seed), zlib.crc32(key)])


class PolicyActor:
    """An `agent.Policy` acting on the active slots as one batch, sampling from `seed`.

    A chunk policy (`policy.chunk` > 1) is executed by a `ChunkExecutor`: greedy, with
    `execution` (`ensemble`: temporal ensembling of the moves, the newest chunk's fingers;
    `replan`; `open_loop`); sampled, open loop, each executed step recording its tokens, their
    log-probs and `chunk/offset`. A policy with a waypoint head records its newest estimate of
    the next keyframe as `waypoint/x|y|z` (metres)."""

    def __init__(
        self,
        policy: Any,
        *,
        greedy: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        seed: int = 0,
        execution: str = "ensemble",
    ):
        import torch

        self.policy = policy
        self.policy_id = policy.policy_id
        self.greedy = greedy
        self.kwargs = dict(
            greedy=greedy,
            temperature=temperature,
            top_k=top_k,
            generator=torch.Generator(device=policy.device).manual_seed(seed),
        )
        chunk = getattr(policy, "chunk", 1)
        self.executor = ChunkExecutor(chunk, execution) if chunk > 1 else None
        self._waypoint: dict[int, np.ndarray] = {}

    @property
    def info_keys(self) -> tuple[str, ...]:
        """The `step_info` keys its steps may record (`GuidedActor` fills them in where the
        policy did not act, so that each covers every step of an episode)."""
        keys = ("chunk/offset",) if self.executor is not None and not self.greedy else ()
        if getattr(self.policy, "waypoints", 0) and self.executor is not None:
            keys += tuple(f"waypoint/{a}" for a in "xyz")
        return keys

    def start(self, slots: Sequence[int], jobs: Sequence[Job]) -> None:
        if self.executor is not None:
            self.executor.start(slots)

    def act(self, obs: dict, active: np.ndarray, vec: gym.vector.VectorEnv):
        adapt_threads()  # follow the machine's load (agent.runtime)
        idx = np.flatnonzero(active)
        n, d = vec.num_envs, self.policy.action_dim
        bins = np.zeros((n, d), dtype=np.int64)
        logprobs = np.full(bins.shape, np.nan, dtype=np.float32)
        deciding = idx if self.executor is None else self.executor.deciding(idx, self.greedy)
        out = None
        if len(deciding):
            out = self.policy.act(
                obs["image"][deciding],
                [obs["instruction"][i] for i in deciding],
                obs["state"][deciding],
                **self.kwargs,
            )
            if out.waypoints is not None:
                for row, slot in enumerate(deciding):
                    self._waypoint[int(slot)] = out.waypoints[row, 0]
        info = {}
        if self._waypoint:
            where = np.full((n, 3), np.nan, dtype=np.float32)
            for slot in idx:
                where[slot] = self._waypoint.get(int(slot), np.nan)
            info.update({f"waypoint/{a}": where[:, k] for k, a in enumerate("xyz")})
        if self.executor is None:
            bins[idx], logprobs[idx] = out.bins, out.logprobs
            return ActorStep(bins, logprobs, info=info)
        ex = self.executor
        for row, slot in enumerate(deciding):
            if self.greedy:
                ex.decide(slot, bins_to_actions(out.chunk_bins[row]))
            else:
                ex.decide(slot, None, out.chunk_bins[row], out.chunk_logprobs[row])
        actions = np.zeros((n, d), dtype=np.float32)
        offsets = np.zeros(n, dtype=np.float32)
        for slot in idx:
            if self.greedy:
                actions[slot], offsets[slot] = ex.greedy_action(slot)
                bins[slot] = actions_to_bins(actions[slot])
            else:
                bins[slot], logprobs[slot], offsets[slot] = ex.sampled_step(slot)
                actions[slot] = bins_to_actions(bins[slot])
        ex.advance(idx)
        if not self.greedy:  # where each executed step sits in the sampled chunk it came from
            info["chunk/offset"] = offsets
        return ActorStep(bins, logprobs, actions, info)


class ExpertActor:
    """The task's scripted expert, its actions quantized to action bins (as a perfect imitator
    would reproduce them).

    With `noise` > 0, noise-injected demonstrations (DART, Laskey et al. 2017): the environment
    executes the expert's action plus Gaussian noise of that standard deviation on the moves
    (x, y, z; the finger command stays the expert's), while the recorded bins are the expert's
    clean action: the demonstrations then show how to recover from the small errors an imitator
    makes. Each step records `label/expert` = 1 (the bins are the expert's label) and
    `label/noise` (the norm of the noise executed). Each episode draws its noise from its own
    stream (`job_rng` of `seed`), so it does not depend on the slot or batch it ran in.
    """

    policy_id = EXPERT_POLICY_ID

    def __init__(self, noise: float = 0.0, seed: int = 0):
        if not noise >= 0:
            raise ValueError(f"expert noise must be >= 0, got {noise}")
        self.noise, self.seed = float(noise), int(seed)
        self._rngs: dict[int, np.random.Generator] = {}

    def start(self, slots: Sequence[int], jobs: Sequence[Job]) -> None:
        for slot, job in zip(slots, jobs, strict=True):
            self._rngs[slot] = job_rng(self.seed, job)

    def act(self, obs: dict, active: np.ndarray, vec: gym.vector.VectorEnv):
        clean = np.asarray(vec.call("expert_action"), dtype=np.float32)
        bins = actions_to_bins(clean)
        logprobs = np.full(bins.shape, np.nan, dtype=np.float32)
        if not self.noise:
            return bins, logprobs
        executed = bins_to_actions(bins)
        noise = np.zeros((len(bins), 3), dtype=np.float32)
        for i in np.flatnonzero(active):
            noise[i] = self._rngs[i].normal(0.0, self.noise, 3)
        executed[:, :3] = np.clip(executed[:, :3] + noise, -1.0, 1.0)
        info = {
            "label/expert": np.ones(len(bins), dtype=np.float32),
            "label/noise": np.linalg.norm(noise, axis=1),
        }
        return ActorStep(bins, logprobs, executed.astype(np.float32), info)


class RandomActor:
    """Uniformly random action bins, drawn from `seed`."""

    policy_id = RANDOM_POLICY_ID

    def __init__(self, seed: int = 0, n_bins: int = N_BINS):
        self.rng = np.random.default_rng(seed)
        self.n_bins = n_bins

    def start(self, slots: Sequence[int], jobs: Sequence[Job]) -> None:
        pass  # uniform draws from one stream: nothing per episode

    def act(self, obs: dict, active: np.ndarray, vec: gym.vector.VectorEnv):
        shape = (vec.num_envs, vec.single_action_space.shape[0])
        bins = self.rng.integers(0, self.n_bins, size=shape, dtype=np.int64)
        return bins, np.full(shape, np.nan, dtype=np.float32)


def as_actor(
    policy: Any,
    *,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    execution: str = "ensemble",
) -> Actor:
    """`policy` as an actor: an actor as it is, "expert" / "random", or an `agent.Policy`."""
    if isinstance(policy, str):
        if policy == EXPERT_POLICY_ID:
            return ExpertActor()
        if policy == RANDOM_POLICY_ID:
            return RandomActor(seed)
        raise ValueError(
            f"unknown policy {policy!r}; expected an agent.Policy, an actor, or one of "
            f"{POLICY_KINDS}"
        )
    if not is_policy(policy):
        if isinstance(policy, Actor):
            return policy
        raise TypeError(
            f"policy {policy!r}: expected an agent.Policy, an actor (`policy_id`, `start`, "
            f"`act`: train.collect.episodes.Actor) or one of {POLICY_KINDS}"
        )
    return PolicyActor(
        policy,
        greedy=greedy,
        temperature=temperature,
        top_k=top_k,
        seed=seed,
        execution=execution,
    )


def collect_episodes(
    jobs: Sequence[Job],
    policy: Any,
    *,
    num_envs: int = 8,
    image_size: int | tuple[int, int] = 64,
    round: int = 0,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    vectorization: str = "sync",
    vector_env: gym.vector.VectorEnv | None = None,
    progress: Any = None,
    max_episode_steps: int | None = None,
    execution: str = "ensemble",
) -> list[Episode]:
    """Run `policy` on every job and return the episodes in job order.

    `policy` is an `Actor` (see above), an `agent.Policy`, or "expert" (the task's scripted
    expert, its actions quantized to action bins before execution so that a perfect imitator
    reproduces the demo) or "random" (uniform action bins). `seed` seeds the sampling; with the
    same jobs and seed the episodes are identical. `progress`, if given, is called with the
    number of finished episodes.

    `vector_env` (from `make_vector_env`, covering the jobs' tasks) is used instead of a fresh one
    and left open: making and first rendering an env costs ~0.1 s per slot, so callers that collect
    repeatedly (a campaign's chunks and evaluations) keep one. What earlier calls left in it does
    not change the episodes; its number of slots does (it decides which episodes run side by side
    and so the policy's sampling), as `num_envs` does. `max_episode_steps` shortens (or
    lengthens) every task's time limit in a fresh vector env. `execution`: how a chunk
    policy's greedy decisions are executed (`train.collect.chunking.EXECUTIONS`).
    """
    jobs = list(jobs)
    if not jobs:
        return []
    actor = as_actor(
        policy,
        greedy=greedy,
        temperature=temperature,
        top_k=top_k,
        seed=seed,
        execution=execution,
    )
    task_ids = sorted({job.task_id for job in jobs})
    n = min(num_envs, len(jobs))
    vec = vector_env or make_vector_env(task_ids, n, image_size, vectorization, max_episode_steps)
    n = vec.num_envs

    results: dict[int, Episode] = {}
    traces: list[_Trace | None] = [None] * n
    job_of_slot = [-1] * n
    next_job = 0
    obs: dict | None = None
    # Every slot counts as ended at first, so that the first reset covers the slots left without a
    # job too: a reused `vector_env` may hold episodes a previous call ended (or never reset).
    ended = np.ones(n, dtype=bool)
    try:
        while len(results) < len(jobs):
            free = [i for i in range(n) if traces[i] is None]
            starting = free[: len(jobs) - next_job]
            # Slots with no job left idle on; one whose episode ended must still be reset, since
            # a vector env without autoreset refuses to step an ended episode.
            parking = [i for i in free[len(starting) :] if ended[i]]
            if starting or parking:
                obs = _start(vec, obs, jobs, starting, parking, next_job, traces, job_of_slot)
                if starting:
                    actor.start(starting, jobs[next_job : next_job + len(starting)])
                next_job += len(starting)
                ended[starting + parking] = False
            active = np.array([t is not None for t in traces])
            step = _as_step(actor.act(obs, active, vec))
            bins, logprobs = step.bins, step.logprobs
            actions = bins_to_actions(bins) if step.actions is None else step.actions.copy()
            actions[~active] = 0.0
            obs, rewards, terminated, truncated, info = vec.step(actions)
            ended = terminated | truncated
            done = active & ended
            achieved = vec.call("achieved_instructions")
            for i in np.flatnonzero(active):
                trace = traces[i]
                trace.actions.append(actions[i])
                trace.bins.append(bins[i])
                trace.logprobs.append(logprobs[i])
                trace.rewards.append(float(rewards[i]))
                for key, value in _numeric_info(info, i).items():
                    trace.step_info.setdefault(key, []).append(value)
                for key, values in step.info.items():
                    trace.step_info.setdefault(key, []).append(float(values[i]))
                trace.frames.append(obs["image"][i].copy())
                trace.states.append(obs["state"][i].copy())
                for instruction in achieved[i]:
                    trace.achieved_at.setdefault(instruction, len(trace.actions))
                if done[i]:
                    ended_by_limit = bool(truncated[i] and not terminated[i])
                    results[job_of_slot[i]] = _finish(
                        trace, ended_by_limit, achieved[i], actor.policy_id, round
                    )
                    traces[i] = None
                    if progress is not None:
                        progress(1)
    finally:
        if vector_env is None:
            vec.close()
    return [results[k] for k in range(len(jobs))]


def _start(vec, obs, jobs, slots, parking, first_job, traces, job_of_slot) -> dict:
    """Reset `slots` onto the next jobs and park the idle `parking` slots; return the vector
    observation with them fresh."""
    n = vec.num_envs
    mask = np.zeros(n, dtype=bool)
    mask[slots + parking] = True
    seeds: list[int | None] = [0 if i in parking else None for i in range(n)]
    tasks = list(vec.get_attr("task_id"))
    forced = list(vec.get_attr("instruction"))
    parked = list(vec.get_attr("parked"))
    for i in slots:
        parked[i] = False
    for i in parking:
        parked[i] = True
    vec.set_attr("parked", parked)
    for k, slot in enumerate(slots):
        job = jobs[first_job + k]
        tasks[slot] = job.task_id
        forced[slot] = job.instruction
        seeds[slot] = job.seed
        job_of_slot[slot] = first_job + k
    vec.set_attr("task_id", tasks)
    vec.set_attr("instruction", forced)
    options = None if mask.all() else {"reset_mask": mask}
    new_obs, _ = vec.reset(seed=seeds, options=options)
    if obs is None or mask.all():
        obs = new_obs
    else:
        obs = {
            "image": np.where(mask[:, None, None, None], new_obs["image"], obs["image"]),
            "state": np.where(mask[:, None], new_obs["state"], obs["state"]),
            "instruction": tuple(
                new_obs["instruction"][i] if mask[i] else obs["instruction"][i] for i in range(n)
            ),
        }
    for slot in slots:
        traces[slot] = _Trace(
            job=jobs[job_of_slot[slot]],
            instruction=obs["instruction"][slot],
            frames=[obs["image"][slot].copy()],
            states=[obs["state"][slot].copy()],
        )
    return obs


def _finish(
    trace: _Trace, truncated: bool, achieved: list[str], policy_id: str, round: int
) -> Episode:
    job = trace.job
    step_info = {
        k: np.asarray(v, dtype=np.float32)
        for k, v in trace.step_info.items()
        if len(v) == len(trace.actions)
    }
    success = step_info.get("is_success")
    return Episode(
        task_id=job.task_id,
        env_seed=job.seed,
        instruction=trace.instruction,
        actions=np.stack(trace.actions).astype(np.float32),
        action_bins=np.stack(trace.bins).astype(np.int64),
        logprobs=np.stack(trace.logprobs).astype(np.float32),
        rewards=np.asarray(trace.rewards, dtype=np.float32),
        is_success=bool(success is not None and success[-1] > 0.5),
        truncated=truncated,
        states=np.stack(trace.states).astype(np.float32),
        frames=np.stack(trace.frames),
        step_info=step_info,
        achieved=list(achieved),
        achieved_at=dict(trace.achieved_at),
        policy_id=policy_id,
        round=round,
        episode_id=job.episode_id(round),
    )

"""Executing a chunk policy's decisions (`agent.Policy.chunk` = K > 1 actions per decision).

- Greedy (evaluation): the policy decides at every step and the executed move is ACT's temporal
  ensemble of every chunk that covers the step (`ensemble_weights`); the finger command is the
  newest chunk's, never blended: averaged over overlapping chunks, a close (+1) and an open (-1)
  never reach "open" and the cube is never let go (BENCHMARKS.md, "Manipulation, session 9",
  measures both). `replan` executes the first step of every
  decision; `open_loop` executes a whole chunk before deciding again.
- Sampled (collection): a sampled chunk is executed open loop, each executed step recording its
  own tokens and their log-probs and its place in the chunk (`chunk/offset`), so RL, DPO and
  relabelling work per executed step (`train.updates.batching.episode_steps(acted=True)`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EXECUTIONS = ("ensemble", "ensemble_all", "replan", "open_loop")
"""`ensemble_all` blends the finger command too (the reference probe's failure mode, for ablations)."""

ENSEMBLE_DECAY = 0.1
"""Weight exp(-decay x age) of a chunk decided `age` steps ago: the newest weighs most (as the
reference probe measured; ACT's paper writes exp(-m i) with i = 0 the oldest, which favours the
oldest)."""


def ensemble_weights(ages: np.ndarray, decay: float = ENSEMBLE_DECAY) -> np.ndarray:
    """Normalized weights of chunks decided `ages` steps ago (0: this step's)."""
    w = np.exp(-decay * np.asarray(ages, dtype=np.float64))
    return w / w.sum()


@dataclass
class SlotPlan:
    """One slot's decisions so far in its current episode."""

    t: int = 0
    """Steps executed in this episode."""
    chunks: list[tuple[int, np.ndarray]] = field(default_factory=list)
    """(step decided at, actions [K, d]) of the chunks that may still cover a step."""
    sampled: tuple | None = None
    """Sampled execution: (step decided at, bins [K, d], log-probs [K, d]) being executed."""


class ChunkExecutor:
    """Per-slot plans of a chunk policy in a vector env; see the module docstring."""

    def __init__(self, chunk: int, execution: str = "ensemble", decay: float = ENSEMBLE_DECAY):
        if execution not in EXECUTIONS:
            raise ValueError(f"unknown chunk execution {execution!r}; expected one of {EXECUTIONS}")
        self.chunk, self.execution, self.decay = chunk, execution, decay
        self.plans: dict[int, SlotPlan] = {}

    def start(self, slots) -> None:
        for slot in slots:
            self.plans[int(slot)] = SlotPlan()

    def deciding(self, slots: np.ndarray, greedy: bool) -> np.ndarray:
        """Which of `slots` need a new decision at this step."""
        out = []
        for slot in slots:
            plan = self.plans.setdefault(int(slot), SlotPlan())
            if greedy and self.execution != "open_loop":
                out.append(slot)
                continue
            last = plan.sampled if not greedy else (plan.chunks[-1] if plan.chunks else None)
            if last is None or plan.t - last[0] >= self.chunk:
                out.append(slot)
        return np.asarray(out, dtype=np.int64)

    def decide(self, slot: int, actions: np.ndarray, bins=None, logprobs=None) -> None:
        """Record the decision taken at `slot`'s current step: the chunk's `actions` [K, d]
        (greedy), or its sampled `bins` and `logprobs` [K, d]."""
        plan = self.plans[int(slot)]
        if bins is not None:
            plan.sampled = (plan.t, bins, logprobs)
            return
        plan.chunks = [(t0, c) for t0, c in plan.chunks if plan.t - t0 < self.chunk]
        plan.chunks.append((plan.t, np.asarray(actions, dtype=np.float64)))

    def greedy_action(self, slot: int) -> tuple[np.ndarray, int]:
        """The move to execute at `slot`'s current step and its offset in the newest chunk."""
        plan = self.plans[int(slot)]
        live = [(t0, c) for t0, c in plan.chunks if plan.t - t0 < self.chunk]
        newest_t0, newest = live[-1]
        offset = plan.t - newest_t0
        if self.execution.startswith("ensemble"):
            ages = np.array([plan.t - t0 for t0, _ in live])
            w = ensemble_weights(ages, self.decay)
            action = sum(wi * c[plan.t - t0] for wi, (t0, c) in zip(w, live, strict=True))
            if self.execution == "ensemble":  # the fingers: the newest chunk's, never blended
                action = np.r_[action[:-1], newest[offset, -1]]
        else:
            action = newest[offset]
        return action.astype(np.float32), offset

    def sampled_step(self, slot: int) -> tuple[np.ndarray, np.ndarray, int]:
        """The sampled chunk's bins and log-probs for `slot`'s current step, and its offset."""
        plan = self.plans[int(slot)]
        t0, bins, logprobs = plan.sampled
        offset = plan.t - t0
        return bins[offset], logprobs[offset], offset

    def advance(self, slots) -> None:
        for slot in slots:
            self.plans[int(slot)].t += 1

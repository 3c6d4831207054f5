"""Guided collection: the scripted expert helps the policy's rollouts (issue 21).

Every built-in task has an expert that acts from privileged state, from whatever state the scene
is in (it is reactive: `TabletopEnv.expert_action`), so it can help an episode the policy has
started. `GuidedActor` wraps the policy's actor:

- `takeover`: the policy acts until a step (a fixed one, one drawn per episode, or the step where
  the fingertip stalled), then the expert acts to the end of the episode and tries to finish.
- `dagger`: every visited state is labelled with the expert's action (`expert/bin_0..3` in
  `step_info`, for SFT on the policy's own states, as DAgger does), and at each step the expert's
  action is the one executed with probability `beta` (the mixing schedule: `beta` in round 1,
  times `beta_decay` each further round).

Each step records who acted (`guide/expert`: 1 for the expert's, 0 for the policy's). An expert
step records the expert's bins and NaN log-probs, so RL and DPO (which score only the steps the
policy acted, `train.updates.batching.episode_steps(acted=True)`) never receive an expert action.
The episode is the policy's (`policy_id`) and is verified like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from agent.action_tokens import ACTION_DIM, actions_to_bins, bins_to_actions
from train.collect.episodes import ActorStep, Job, _as_step, job_rng

GUIDANCE_MODES = ("none", "takeover", "dagger")
TAKEOVER_TRIGGERS = ("steps", "drawn", "stall")
EXPERT_KEY = "guide/expert"
"""`step_info` key: 1 where the expert acted, 0 where the policy did."""
LABEL_KEYS = tuple(f"expert/bin_{k}" for k in range(ACTION_DIM))
"""`step_info` keys of the expert's label of each visited state (`dagger`)."""


@dataclass
class Guidance:
    """How the expert helps collection (`collect.guidance` in a campaign's config)."""

    mode: str = "none"
    """`none` (the policy alone: today's episodes), `takeover` or `dagger` (see the module)."""
    trigger: str = "drawn"
    """takeover: when the expert takes over: `steps` (after `steps` policy steps), `drawn` (after
    a number of policy steps drawn per episode, uniformly in 0..`steps`), or `stall` (when the
    fingertip moved less than `stall_cm` over the last `stall_steps` steps, or after `steps`)."""
    steps: int = 20
    """takeover: the policy's steps before the expert takes over (see `trigger`)."""
    stall_steps: int = 8
    stall_cm: float = 1.0
    beta: float = 0.5
    """dagger: probability that a step executes the expert's action (round 1)."""
    beta_decay: float = 0.5
    """dagger: `beta` is multiplied by this each round after the first."""

    def __post_init__(self):
        if self.mode not in GUIDANCE_MODES:
            raise ValueError(
                f"unknown guidance mode {self.mode!r}; expected one of {GUIDANCE_MODES}"
            )
        if self.trigger not in TAKEOVER_TRIGGERS:
            raise ValueError(
                f"unknown takeover trigger {self.trigger!r}; expected one of {TAKEOVER_TRIGGERS}"
            )
        if self.steps < 0 or self.stall_steps < 1 or not self.stall_cm > 0:
            raise ValueError(
                f"guidance needs steps >= 0, stall_steps >= 1 and stall_cm > 0; got "
                f"{self.steps}, {self.stall_steps} and {self.stall_cm}"
            )
        if not (0.0 <= self.beta <= 1.0 and 0.0 <= self.beta_decay <= 1.0):
            raise ValueError(
                f"dagger beta and beta_decay must lie in [0, 1], got {self.beta} and "
                f"{self.beta_decay}"
            )

    def beta_at(self, round: int) -> float:
        """The dagger mixing probability in `round` (1-based: `beta`, then decayed)."""
        return self.beta * self.beta_decay ** max(round - 1, 0)


class GuidedActor:
    """The policy's actor (`inner`, a `PolicyActor`), helped by the task's expert per `guidance`.

    Draws (the takeover step, the dagger coin) come from each episode's own stream (`job_rng` of
    `seed`), so an episode does not depend on the slot or batch it ran in."""

    def __init__(self, inner, guidance: Guidance, seed: int = 0, round: int = 1):
        if guidance.mode == "none":
            raise ValueError("GuidedActor needs a guidance mode other than 'none'")
        self.inner, self.guidance, self.seed = inner, guidance, int(seed)
        self.beta = guidance.beta_at(round)
        self.policy_id = inner.policy_id
        self._rng: dict[int, np.random.Generator] = {}
        self._t: dict[int, int] = {}
        self._switch: dict[int, int] = {}
        self._expert: dict[int, bool] = {}
        self._tips: dict[int, list[np.ndarray]] = {}

    def start(self, slots: Sequence[int], jobs: Sequence[Job]) -> None:
        if hasattr(self.inner, "start"):
            self.inner.start(slots, jobs)
        g = self.guidance
        for slot, job in zip(slots, jobs, strict=True):
            rng = job_rng(self.seed + 7919, job)  # a stream apart from the expert noise's
            self._rng[slot] = rng
            self._t[slot] = 0
            self._expert[slot] = False
            self._tips[slot] = []
            self._switch[slot] = (
                int(rng.integers(0, g.steps + 1)) if g.trigger == "drawn" else g.steps
            )

    def _takes_over(self, slot: int, tip: np.ndarray) -> bool:
        g = self.guidance
        if self._expert[slot] or self._t[slot] >= self._switch[slot]:
            return True
        if g.trigger != "stall":
            return False
        tips = self._tips[slot]
        tips.append(tip.copy())
        if len(tips) <= g.stall_steps:
            return False
        moved = np.linalg.norm(tips[-1] - tips[-1 - g.stall_steps]) * 100.0
        return bool(moved < g.stall_cm)

    def act(self, obs: dict, active: np.ndarray, vec: gym.vector.VectorEnv):
        n = vec.num_envs
        idx = np.flatnonzero(active)
        expert = actions_to_bins(np.asarray(vec.call("expert_action"), dtype=np.float32))
        by_expert = np.zeros(n, dtype=bool)
        for slot in idx:
            slot = int(slot)
            if self.guidance.mode == "takeover":
                self._expert[slot] = self._takes_over(slot, obs["state"][slot][:3])
                by_expert[slot] = self._expert[slot]
            else:  # dagger: a coin per step
                by_expert[slot] = bool(self._rng[slot].random() < self.beta)
            self._t[slot] += 1
        # the policy decides for its own slots (dagger: for every slot, so its chunks run on)
        policy_slots = active if self.guidance.mode == "dagger" else active & ~by_expert
        step = self._policy_step(obs, policy_slots, vec)
        bins, logprobs = step.bins.copy(), step.logprobs.copy()
        actions = bins_to_actions(bins) if step.actions is None else step.actions.copy()
        bins[by_expert], logprobs[by_expert] = expert[by_expert], np.nan
        actions[by_expert] = bins_to_actions(expert[by_expert])
        info = {k: np.asarray(v, dtype=np.float32).copy() for k, v in step.info.items()}
        if "chunk/offset" in info:  # an expert step is a decision of its own
            info["chunk/offset"][by_expert] = 0.0
        info[EXPERT_KEY] = by_expert.astype(np.float32)
        if self.guidance.mode == "dagger":
            info.update({key: expert[:, k].astype(np.float32) for k, key in enumerate(LABEL_KEYS)})
        return ActorStep(bins, logprobs, actions, info)

    def _policy_step(self, obs: dict, slots: np.ndarray, vec) -> ActorStep:
        """The inner actor's step for `slots`, with every info key it ever records present
        (NaN where it did not act), so that each key covers every step of an episode."""
        n, d = vec.num_envs, ACTION_DIM
        empty = ActorStep(np.zeros((n, d), np.int64), np.full((n, d), np.nan, np.float32))
        step = _as_step(self.inner.act(obs, slots, vec)) if slots.any() else empty
        for key in getattr(self.inner, "info_keys", ()):
            if key not in step.info:
                step.info[key] = np.full(n, np.nan, dtype=np.float32)
        return step

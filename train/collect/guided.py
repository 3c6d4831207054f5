"""Guided collection: the scripted expert helps the policy's rollouts (issue 21).

Every built-in task has an expert that acts from privileged state, from whatever state the scene
is in (it is reactive: `TabletopEnv.expert_action`), so it can help an episode the policy has
started. `GuidedActor` wraps the policy's actor:

- `takeover`: the policy acts until a step (a fixed one, one drawn per episode, or the step where
  the fingertip stalled), then the expert acts to the end of the episode and tries to finish.
- `demo_start` (a reverse curriculum): the expert acts the first s steps of the episode, so
  the policy starts from the state a clean demonstration of that scene reached at step s (the
  expert is deterministic, so that state and the frames the policy then sees are the
  demonstration's, reproduced by replaying it from its seed) and only has to finish; s is per
  task (`start_steps`), and the campaign moves it back towards 0 as the policy succeeds.
- `dagger`: every visited state is labelled with the expert's action (`expert/bin_0..3` in
  `step_info`, for SFT on the policy's own states, as DAgger does), and at each step the expert's
  action is the one executed with probability `beta` (the mixing schedule: `beta` in round 1,
  times `beta_decay` each further round).

`expert_slack` > 1 (dagger, takeover): from the policy's states the expert labels and acts with
its alignment tolerances widened (`TabletopEnv.expert_label`), so it goes ahead while it
corrects instead of re-aligning from a few millimetres off.

Combinations (`demo_start+takeover`, `demo_start+dagger`): the demonstration leads the first s
steps, then the other mode runs as above on the policy's part of the episode (a takeover step
counts the policy's steps; dagger labels every state, the lead's included).

Each step records who acted (`guide/expert`: 1 for the expert's, 0 for the policy's). An expert
step records the expert's bins and NaN log-probs, so RL and DPO (which score only the steps the
policy acted, `train.updates.batching.episode_steps(acted=True)`) never receive an expert action.
The episode is the policy's (`policy_id`) and is verified like any other.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np

from agent.action_tokens import ACTION_DIM, actions_to_bins, bins_to_actions
from envs import task_name
from train.collect.episodes import ActorStep, _as_step, job_rng
from train.collect.guidance import EXPERT_KEY, LABEL_KEYS, Guidance, policy_acted
from verifiers.episode import Job


class GuidedActor:
    """The policy's actor (`inner`, a `PolicyActor`), helped by the task's expert per `guidance`.

    Draws (the takeover step, the dagger coin) come from each episode's own stream (`job_rng` of
    `seed`), so an episode does not depend on the slot or batch it ran in. `start_steps`:
    demo_start's step per task (tasks not in it start at `guidance.start_step`)."""

    def __init__(
        self,
        inner,
        guidance: Guidance,
        seed: int = 0,
        round: int = 1,
        start_steps: dict[str, int] | None = None,
    ):
        if not guidance.guided:
            raise ValueError("GuidedActor needs a guidance mode other than 'none'")
        self.inner, self.guidance, self.seed = inner, guidance, int(seed)
        self.beta = guidance.beta_at(round)
        self.policy_id = inner.policy_id
        self._rng: dict[int, np.random.Generator] = {}
        self._t: dict[int, int] = {}
        self._switch: dict[int, int] = {}
        self._expert: dict[int, bool] = {}
        self._tips: dict[int, list[np.ndarray]] = {}
        self._lead: dict[int, int] = {}
        self.start_steps = dict(start_steps or {})

    def start(self, slots: Sequence[int], jobs: Sequence[Job]) -> None:
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
            self._lead[slot] = self.start_steps.get(job.task_id, g.start_step)

    def _takes_over(self, slot: int, tip: np.ndarray, acted: int) -> bool:
        """Whether the expert acts from now on, `acted` steps after the policy began."""
        g = self.guidance
        if self._expert[slot] or acted >= self._switch[slot]:
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
        g = self.guidance
        demo_start, takeover, dagger = (g.uses(m) for m in ("demo_start", "takeover", "dagger"))
        by_expert, leading = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        for slot in idx:
            slot = int(slot)
            acted = self._t[slot] - (self._lead[slot] if demo_start else 0)
            if acted < 0:  # the demonstration leads, then the policy
                leading[slot] = by_expert[slot] = True
            elif takeover:
                self._expert[slot] = self._takes_over(slot, obs["state"][slot][:3], acted)
                by_expert[slot] = self._expert[slot]
            elif dagger:  # a coin per step
                by_expert[slot] = bool(self._rng[slot].random() < self.beta)
            self._t[slot] += 1
        # from the policy's states the expert labels and acts with slack; a lead is the
        # demonstrations' own expert
        slack = g.expert_slack if dagger or takeover else 1.0
        expert = self._expert_bins(vec, leading, slack)
        # the policy decides for its own slots (dagger: for every slot after the lead, so its
        # chunks run on through the expert's steps)
        policy_slots = active & ~(leading if dagger else by_expert)
        step = self._policy_step(obs, policy_slots, vec)
        bins, logprobs = step.bins.copy(), step.logprobs.copy()
        actions = bins_to_actions(bins) if step.actions is None else step.actions.copy()
        bins[by_expert], logprobs[by_expert] = expert[by_expert], np.nan
        actions[by_expert] = bins_to_actions(expert[by_expert])
        info = {k: np.asarray(v, dtype=np.float32).copy() for k, v in step.info.items()}
        if "chunk/offset" in info:  # an expert step is a decision of its own
            info["chunk/offset"][by_expert] = 0.0
        info[EXPERT_KEY] = by_expert.astype(np.float32)
        if dagger:
            info.update({key: expert[:, k].astype(np.float32) for k, key in enumerate(LABEL_KEYS)})
        return ActorStep(bins, logprobs, actions, info)

    def _expert_bins(self, vec, leading: np.ndarray, slack: float) -> np.ndarray:
        """int64 [n, d]: the expert's action in every slot: with `slack` from the policy's
        states, in a demonstration's lead (`leading`) the demonstrations' own expert. Each
        slot's expert is asked once, twice only while a lead and slack meet in one step."""
        strict = None
        if slack == 1.0 or leading.any():
            strict = actions_to_bins(np.asarray(vec.call("expert_action"), np.float32))
        if slack == 1.0:
            return strict
        lenient = actions_to_bins(np.asarray(vec.call("expert_label", slack), np.float32))
        return lenient if strict is None else np.where(leading[:, None], strict, lenient)

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


def guidance_metrics(episodes: Sequence, start_steps: dict[str, int] | None = None) -> dict:
    """A guided round's record: the share of steps the expert acted (`guide/expert_share`,
    overall and per task), the rollouts' success with guidance per task
    (`guide/success_rate/<task>`), and demo_start's start step per task
    (`guide/start_step/<task>`)."""
    out: dict[str, float] = {}
    by_task: dict[str, list] = {}
    for e in episodes:
        by_task.setdefault(e.task_id, []).append(e)
    by_expert = {e.episode_id: ~policy_acted(e) for e in episodes}
    if episodes:
        out["guide/expert_share"] = float(np.concatenate(list(by_expert.values())).mean())
    for task_id, mine in sorted(by_task.items()):
        name = task_name(task_id)
        share = np.concatenate([by_expert[e.episode_id] for e in mine])
        out[f"guide/expert_share/{name}"] = float(share.mean())
        out[f"guide/success_rate/{name}"] = sum(e.is_success for e in mine) / len(mine)
        if start_steps is not None and task_id in start_steps:
            out[f"guide/start_step/{name}"] = float(start_steps[task_id])
    return out


def first_start_steps(guidance: Guidance, demos: Sequence) -> dict[str, int]:
    """demo_start's start step per task in round 1: `guidance.start_step`, or with
    `start_fraction` > 0 that fraction of the median length of the task's demonstrations that
    succeeded (`demos`, episodes), rounded; a task without one keeps `start_step`."""
    if guidance.start_fraction <= 0:
        return {}
    lengths: dict[str, list[int]] = {}
    for e in demos:
        if e.is_success:
            lengths.setdefault(e.task_id, []).append(e.length)
    return {
        t: int(round(guidance.start_fraction * float(np.median(v)))) for t, v in lengths.items()
    }


def next_start_steps(
    guidance: Guidance,
    task_ids: Sequence[str],
    records: Sequence[dict],
    first: dict[str, int] | None = None,
) -> dict[str, int]:
    """demo_start's reverse curriculum: each task's start step for the round after `records`
    (the guided rounds' records, oldest first): its first step (`first`, else
    `guidance.start_step`), moved back by `start_back` after each round whose guided success on
    the task reached `start_success`, never below 0 (a start from reset)."""
    first = first or {}
    steps = {t: first.get(t, guidance.start_step) for t in task_ids}
    for record in records:
        for t in task_ids:
            rate = record.get(f"guide/success_rate/{task_name(t)}")
            if rate is not None and rate >= guidance.start_success:
                steps[t] = max(0, steps[t] - guidance.start_back)
    return steps

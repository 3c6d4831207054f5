"""Scripted actors beside the expert: episodes of known kinds of failure, recorded by
`collect_episodes`, for testing and benchmarking verifiers (and anything else that must tell
good episodes from bad ones).

Modes: `expert` (the scripted expert), `perturbed` (expert plus Gaussian noise), `random`
(uniform actions), `distracted` (the expert of another goal of the same task, e.g. the blue ball
when asked for the red one: a failure whose final state achieves a different instruction),
`bang_bang` (every movement dimension at +-1) and `slam` (the expert, always pushing down: hard
contacts). Actions are quantized to action bins like every actor's.

One `ScriptedActor` draws from one random stream, so give each episode its own (a fresh actor
per `collect_episodes` call of one job, as `scripted_episode` does) to make an episode depend on
its seed alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agent.action_tokens import actions_to_bins
from train.collect.episodes import collect_episodes
from verifiers.episode import Episode, Job

MODES = ("expert", "perturbed", "random", "distracted", "bang_bang", "slam")


class ScriptedActor:
    """One of `MODES` in every active slot of a sync vector env of task slots."""

    def __init__(self, mode: str, rng: np.random.Generator, noise: float = 0.8):
        if mode not in MODES:
            raise ValueError(f"unknown scripted mode {mode!r}; expected one of {MODES}")
        self.policy_id = mode
        self.mode, self.rng, self.noise = mode, rng, noise
        self._other_goal: dict[int, object] = {}

    def start(self, slots: Sequence[int], jobs: Sequence[Job]) -> None:
        pass  # a failure mode acts on the state it sees: nothing per episode

    def act(self, obs: dict, active: np.ndarray, vec) -> tuple[np.ndarray, np.ndarray]:
        shape = (vec.num_envs, vec.single_action_space.shape[0])
        bins = np.zeros(shape, dtype=np.int64)
        for i in np.flatnonzero(active):
            bins[i] = actions_to_bins(self._action(i, vec.envs[i].task_env))
        return bins, np.full(shape, np.nan, dtype=np.float32)

    def _action(self, slot: int, task) -> np.ndarray:
        mode, rng = self.mode, self.rng
        if slot not in self._other_goal:
            # the goal a distracted expert goes for, drawn at every episode's first action in
            # every mode (so that each mode's later draws do not depend on whether it needs one)
            others = [g for g in task._possible_goals() if g != task.goal]
            self._other_goal[slot] = others[rng.integers(len(others))] if others else task.goal
        if mode == "random":
            return rng.uniform(-1, 1, 4).astype(np.float32)
        if mode == "bang_bang":
            return np.append(rng.choice([-1.0, 1.0], 3), 1.0).astype(np.float32)
        if mode == "distracted":
            goal, task.goal = task.goal, self._other_goal[slot]
            try:
                return task.expert_action()
            finally:
                task.goal = goal
        action = task.expert_action()
        if mode == "perturbed":
            action = action + rng.normal(0.0, self.noise, 4).astype(np.float32)
        if mode == "slam":
            action[2] = -1.0
        return np.clip(action, -1, 1).astype(np.float32)


def scripted_episode(
    task_id: str,
    seed: int,
    mode: str,
    rng: np.random.Generator,
    *,
    noise: float = 0.8,
    image_size: int = 64,
    tag: str = "k0",
) -> Episode:
    """One episode of `mode` from `seed`, id `r0/{task_id}/s{seed}/{mode}/{tag}`, drawing from
    `rng` alone."""
    actor = ScriptedActor(mode, rng, noise)
    (episode,) = collect_episodes(
        [Job(task_id, seed, f"{mode}/{tag}")], actor, num_envs=1, image_size=image_size
    )
    return episode

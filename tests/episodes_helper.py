"""Real episodes for the verifier / store / dataset tests: a small rollout loop over one env.

Modes: "expert" (the scripted expert, quantized to action bins like the collector does),
"perturbed" (expert plus Gaussian noise), "random" (uniform bins), and "distracted" (the expert
of another goal of the same task, e.g. the blue ball when asked for the red one: a failure whose
final state achieves a different instruction), "bang_bang" (every movement dimension at +-1) and
"slam" (the expert, but always pushing down: hard contacts). Episodes are cached per process.
"""

from __future__ import annotations

import functools
import zlib

import numpy as np

import envs
from agent.action_tokens import actions_to_bins, bins_to_actions
from verifiers.episode import Episode

MODES = ("expert", "perturbed", "random", "distracted", "bang_bang", "slam")


def _action(env, mode: str, rng: np.random.Generator, noise: float, other_goal) -> np.ndarray:
    task = env.unwrapped
    if mode == "random":
        return rng.uniform(-1, 1, 4).astype(np.float32)
    if mode == "bang_bang":
        return np.append(rng.choice([-1.0, 1.0], 3), 1.0).astype(np.float32)
    if mode == "distracted":
        goal = task.goal
        task.goal = other_goal
        try:
            return task.expert_action()
        finally:
            task.goal = goal
    action = task.expert_action()
    if mode == "perturbed":
        action = action + rng.normal(0.0, noise, 4).astype(np.float32)
    if mode == "slam":
        action[2] = -1.0
    return np.clip(action, -1, 1).astype(np.float32)


def rollout(
    task: str, seed: int, mode: str, *, noise: float = 0.8, image_size: int = 64, tag: str = "k0"
) -> Episode:
    """One episode of `task` from `seed`, recorded the way the collector records it."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    env = envs.make(task, image_size=image_size)
    rng = np.random.default_rng([seed, MODES.index(mode), zlib.crc32(tag.encode())])
    try:
        obs, _ = env.reset(seed=seed)
        instruction = obs["instruction"]
        task_env = env.unwrapped
        others = [g for g in task_env._possible_goals() if g != task_env.goal]
        other_goal = others[rng.integers(len(others))] if others else task_env.goal
        frames, states = [obs["image"]], [obs["state"]]
        actions, bins, rewards, info_rows = [], [], [], []
        while True:
            b = actions_to_bins(_action(env, mode, rng, noise, other_goal))
            a = bins_to_actions(b)
            obs, reward, terminated, truncated, info = env.step(a)
            actions.append(a)
            bins.append(b)
            rewards.append(reward)
            info_rows.append(info)
            frames.append(obs["image"])
            states.append(obs["state"])
            if terminated or truncated:
                break
        achieved = task_env.achieved_instructions()
        task_id = env.spec.id
    finally:
        env.close()
    numeric = [k for k, v in info_rows[0].items() if isinstance(v, bool | int | float)]
    return Episode(
        task_id=task_id,
        env_seed=seed,
        instruction=instruction,
        actions=np.stack(actions).astype(np.float32),
        action_bins=np.stack(bins).astype(np.int64),
        logprobs=np.full((len(actions), 4), np.nan, np.float32),
        rewards=np.asarray(rewards, np.float32),
        is_success=bool(info_rows[-1]["is_success"]),
        truncated=bool(truncated and not terminated),
        states=np.stack(states).astype(np.float32),
        frames=np.stack(frames),
        step_info={k: np.asarray([r[k] for r in info_rows], np.float32) for k in numeric},
        achieved=list(achieved),
        policy_id=mode,
        episode_id=f"r0/{task_id}/s{seed}/{mode}/{tag}",
    )


@functools.cache
def episodes(
    task: str, seeds: tuple[int, ...], mode: str, image_size: int = 64, tag: str = "k0"
) -> tuple[Episode, ...]:
    """Cached rollouts (treat them as read-only)."""
    return tuple(rollout(task, s, mode, image_size=image_size, tag=tag) for s in seeds)

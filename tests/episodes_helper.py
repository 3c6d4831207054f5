"""Real episodes for the verifier / store / dataset tests, recorded by `collect_episodes` with the
scripted actors of `train.collect.scripted`.

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
from train.collect.scripted import MODES, scripted_episode
from verifiers.episode import Episode


def rollout(
    task: str, seed: int, mode: str, *, noise: float = 0.8, image_size: int = 64, tag: str = "k0"
) -> Episode:
    """One episode of `task` from `seed`, recorded by the campaign's collector."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    rng = np.random.default_rng([seed, MODES.index(mode), zlib.crc32(tag.encode())])
    return scripted_episode(
        envs.resolve(task), seed, mode, rng, noise=noise, image_size=image_size, tag=tag
    )


@functools.cache
def episodes(
    task: str, seeds: tuple[int, ...], mode: str, image_size: int = 64, tag: str = "k0"
) -> tuple[Episode, ...]:
    """Cached rollouts (treat them as read-only)."""
    return tuple(rollout(task, s, mode, image_size=image_size, tag=tag) for s in seeds)

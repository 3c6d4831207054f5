"""The settings of guided collection (`collect.guidance`), apart from the actor
(`train.collect.guided`) so that loading a config imports no simulator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.action_tokens import ACTION_DIM  # numpy only

GUIDANCE_MODES = ("none", "takeover", "demo_start", "dagger")
COMBINATIONS = (("demo_start", "takeover"), ("demo_start", "dagger"))
"""The modes that combine (`mode = "demo_start+dagger"`): a demonstration leads the first steps,
then the policy acts and the expert takes over (`takeover`) or labels every state and mixes in
(`dagger`). Takeover and dagger both decide who acts after the lead, so they do not combine."""
TAKEOVER_TRIGGERS = ("steps", "drawn", "stall")
EXPERT_KEY = "guide/expert"
"""`step_info` key: 1 where the expert acted, 0 where the policy did."""
LABEL_KEYS = tuple(f"expert/bin_{k}" for k in range(ACTION_DIM))
"""`step_info` keys of the expert's label of each visited state (`dagger`), one per action
dimension."""


@dataclass
class Guidance:
    """How the expert helps collection (`collect.guidance` in a campaign's config)."""

    mode: str = "none"
    """`none` (the policy alone: today's episodes), `takeover`, `demo_start` or `dagger` (see
    `train.collect.guided`), or a combination joined by `+` (`COMBINATIONS`, e.g.
    `"demo_start+dagger"`)."""
    trigger: str = "drawn"
    """takeover: when the expert takes over: `steps` (after `steps` policy steps), `drawn` (after
    a number of policy steps drawn per episode, uniformly in 0..`steps`), or `stall` (when the
    fingertip moved less than `stall_cm` over the last `stall_steps` steps, or after `steps`)."""
    steps: int = 20
    """takeover: the policy's steps before the expert takes over (see `trigger`)."""
    stall_steps: int = 8
    stall_cm: float = 1.0
    start_step: int = 12
    """demo_start: the step of the demonstration the policy starts from in round 1, per task
    (the campaign moves each task's back by `start_back` once its guided success reaches
    `start_success`)."""
    start_back: int = 4
    start_success: float = 0.5
    start_fraction: float = 0.0
    """demo_start: when > 0, each task's first start step is this fraction of its
    demonstrations' median length (the campaign's round-0 demonstrations that succeeded), in
    place of `start_step`: one setting for tasks whose demonstrations take 5 or 25 steps."""
    beta: float = 0.5
    """dagger: probability that a step executes the expert's action (round 1)."""
    beta_decay: float = 0.5
    """dagger: `beta` is multiplied by this each round after the first."""
    expert_slack: float = 1.0
    """dagger and takeover: the expert's alignment tolerances are multiplied by this where it
    labels or acts from the policy's states (`TabletopEnv.expert_label`); 1 is the expert of
    the demonstrations, which re-aligns whenever it is a few millimetres off and so teaches an
    imprecise policy to hover near the object (BENCHMARKS.md, "Guided collection on the six-task
    suite"). demo_start's lead is always the demonstrations' expert."""

    def __post_init__(self):
        modes = tuple(str(self.mode).split("+"))
        unknown = [m for m in modes if m not in GUIDANCE_MODES]
        if unknown:
            raise ValueError(
                f"unknown guidance mode {unknown[0]!r} in {self.mode!r}; expected one of "
                f"{GUIDANCE_MODES}, or a combination joined by '+' "
                f"({', '.join('+'.join(c) for c in COMBINATIONS)})"
            )
        combinations = [set(c) for c in COMBINATIONS]
        if len(modes) > 1 and (len(set(modes)) < len(modes) or set(modes) not in combinations):
            raise ValueError(
                f"guidance modes {self.mode!r} do not combine; the combinations are "
                f"{', '.join(repr('+'.join(c)) for c in COMBINATIONS)}"
            )
        if self.trigger not in TAKEOVER_TRIGGERS:
            raise ValueError(
                f"unknown takeover trigger {self.trigger!r}; expected one of {TAKEOVER_TRIGGERS}"
            )
        if self.start_step < 0 or self.start_back < 1 or not 0.0 <= self.start_success <= 1.0:
            raise ValueError(
                f"demo_start needs start_step >= 0, start_back >= 1 and start_success in [0, 1]; "
                f"got {self.start_step}, {self.start_back} and {self.start_success}"
            )
        if not 0.0 <= self.start_fraction < 1.0:
            raise ValueError(
                f"demo_start's start_fraction must lie in [0, 1), got {self.start_fraction}"
            )
        if self.steps < 0 or self.stall_steps < 1 or not self.stall_cm > 0:
            raise ValueError(
                f"guidance needs steps >= 0, stall_steps >= 1 and stall_cm > 0; got "
                f"{self.steps}, {self.stall_steps} and {self.stall_cm}"
            )
        if not self.expert_slack > 0:
            raise ValueError(f"guidance expert_slack must be > 0, got {self.expert_slack}")
        if not (0.0 <= self.beta <= 1.0 and 0.0 <= self.beta_decay <= 1.0):
            raise ValueError(
                f"dagger beta and beta_decay must lie in [0, 1], got {self.beta} and "
                f"{self.beta_decay}"
            )

    @property
    def modes(self) -> tuple[str, ...]:
        """The modes this guidance uses (one, or a combination's two)."""
        return tuple(self.mode.split("+"))

    @property
    def guided(self) -> bool:
        """Whether the expert helps at all (any mode but `none`)."""
        return self.mode != "none"

    def uses(self, mode: str) -> bool:
        """Whether `mode` is among this guidance's modes."""
        return mode in self.modes

    def beta_at(self, round: int) -> float:
        """The dagger mixing probability in `round` (1-based: `beta`, then decayed)."""
        return self.beta * self.beta_decay ** max(round - 1, 0)


def expert_labels(episode) -> np.ndarray | None:
    """int64 [T, d]: the expert's label of each state a dagger episode visited
    (`step_info[LABEL_KEYS]`); None for an episode without them."""
    if not all(key in episode.step_info for key in LABEL_KEYS):
        return None
    return np.stack([episode.step_info[key] for key in LABEL_KEYS], axis=1).astype(np.int64)


def policy_acted(episode) -> np.ndarray:
    """bool [T]: the steps of an episode the policy acted (all, unless a guided episode's expert
    took some: `step_info[EXPERT_KEY]`)."""
    by_expert = episode.step_info.get(EXPERT_KEY)
    if by_expert is None:
        return np.ones(episode.length, dtype=bool)
    return np.asarray(by_expert) < 0.5

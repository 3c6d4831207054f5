"""The plain values that flow between the loop's stages: a `Job` (an episode to collect), an
`Episode`, a `Verdict`, a `Decision` (an episode's verdicts and the pass, computed once), a
`Verified` set (episodes with their decisions, for organize), and the fixed held-out jobs.
Every stage may import this module; it imports no stage."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

EXPERT_POLICY_ID = "expert"
RANDOM_POLICY_ID = "random"


@dataclass
class Episode:
    """One rollout of one policy in one task, as the environment recorded it.

    Arrays are indexed by step t = 0..T-1 (T = `length`); `frames` and `states` hold the
    observation before each step plus the final one (T + 1 rows). The environment's own outcome
    (`is_success`) is never overwritten: verifiers add `Verdict`s beside it.
    """

    task_id: str
    """Registered id, e.g. `autodidact/ReachBall-v0`."""
    env_seed: int
    """Seed passed to `env.reset(seed=...)`; with `task_id` it fixes the initial state."""
    instruction: str
    """The instruction the policy was given (after relabelling: the one it achieved)."""
    actions: np.ndarray
    """float32 [T, d]: the actions executed in the environment, in [-1, 1]."""
    action_bins: np.ndarray
    """int64 [T, d]: the action-token bin (0..255) of each dimension; the training target."""
    logprobs: np.ndarray
    """float32 [T, d]: log-prob of each chosen action token under the acting policy (NaN for
    policies that are not the MLLM, e.g. the scripted expert)."""
    rewards: np.ndarray
    """float32 [T]: the environment's reward per step."""
    is_success: bool
    """The environment's verdict: `info["is_success"]` at the last step."""
    truncated: bool
    """True when the episode ended at the time limit rather than on success."""
    states: np.ndarray
    """float32 [T + 1, k]: proprioception (gripper position and opening) before each step and at the end."""
    frames: np.ndarray | None = None
    """uint8 [T + 1, H, W, 3]: camera images; None when not loaded (the store loads them lazily)."""
    step_info: dict[str, np.ndarray] = field(default_factory=dict)
    """Numeric per-step diagnostics from `info` (reward terms, contact force, ...): name -> float32 [T]."""
    achieved: list[str] = field(default_factory=list)
    """Instructions of the same task that the final state satisfies (for hindsight relabelling)."""
    achieved_at: dict[str, int] = field(default_factory=dict)
    """Instruction -> the number of steps after which the state first satisfied it, for every
    instruction of the task satisfied at some point of the episode (hindsight relabelling of a
    prefix: a policy that touched the blue ball on its way elsewhere did reach the blue ball)."""
    policy_id: str = EXPERT_POLICY_ID
    """Checkpoint id of the acting policy, or `expert` / `random`."""
    round: int = 0
    """Campaign round in which the episode was collected."""
    episode_id: str = ""
    """Unique within a campaign, e.g. `r3/autodidact/ReachBall-v0/s1042/k0`."""
    relabelled_from: str | None = None
    """The original instruction when this episode is a hindsight relabelling of another."""

    @property
    def length(self) -> int:
        return int(self.actions.shape[0])


@dataclass(frozen=True)
class Verdict:
    """A verifier's judgement of one episode. `passed=None` means the verifier has no opinion."""

    episode_id: str
    verifier: str
    passed: bool | None
    score: float
    """In [0, 1]: 1 is a confident pass."""
    reason: str


@dataclass(frozen=True)
class Decision:
    """One episode's verification, decided once by the verify stage (`verifiers.stage`): every
    verifier's verdict on it and the pass (`verifiers.base.all_passed`). Later stages read it;
    none verifies again."""

    episode_id: str
    passed: bool
    """Every verdict with an opinion passed, and at least one had an opinion."""
    rule_failed: bool
    """A verifier that does not judge the outcome (a rule) failed it: relabelling may not turn
    it into a success."""
    verdicts: tuple[Verdict, ...]
    """The verdicts, in the order of the verifiers."""


@dataclass
class Verified:
    """A set of episodes with their decisions (aligned), and the relabelled successes derived
    from its failures with theirs."""

    episodes: list[Episode]
    decisions: list[Decision]
    relabelled: list[Episode] = field(default_factory=list)
    relabelled_decisions: list[Decision] = field(default_factory=list)

    def __post_init__(self) -> None:
        for what, episodes, decisions in (
            ("episodes", self.episodes, self.decisions),
            ("relabelled", self.relabelled, self.relabelled_decisions),
        ):
            ids = [e.episode_id for e in episodes]
            if ids != [d.episode_id for d in decisions]:
                raise ValueError(
                    f"Verified: the decisions do not follow the {what} one for one "
                    f"({len(decisions)} decisions for {len(episodes)} episodes)"
                )


def episode_window(episode: Episode, start: int, stop: int) -> Episode:
    """Steps `start`..`stop - 1` of `episode` as an episode of their own: their actions, tokens,
    log-probs, rewards and step info, and the frames and states from the observation before
    step `start` through the one after step `stop - 1`."""
    if not 0 <= start < stop <= episode.length:
        raise ValueError(
            f"episode {episode.episode_id!r}: steps {start}..{stop - 1} are not within its "
            f"{episode.length} steps"
        )
    return replace(
        episode,
        actions=episode.actions[start:stop],
        action_bins=episode.action_bins[start:stop],
        logprobs=episode.logprobs[start:stop],
        rewards=episode.rewards[start:stop],
        states=episode.states[start : stop + 1],
        frames=None if episode.frames is None else episode.frames[start : stop + 1],
        step_info={key: value[start:stop] for key, value in episode.step_info.items()},
    )


@dataclass(frozen=True)
class Job:
    """One episode to collect: which task, which reset seed, and an optional forced instruction."""

    task_id: str
    seed: int
    tag: str = "k0"
    """Distinguishes repeated episodes of the same (task, seed), e.g. the members of an RL group."""
    instruction: str | None = None
    """Name this goal of the seed's scene instead of the drawn one (one of the scene's
    `possible_instructions`, in any template form); None keeps the drawn instruction."""

    def episode_id(self, round: int) -> str:
        """The id of this job's episode when collected in `round` (unique within a campaign)."""
        return f"r{round}/{self.task_id}/s{self.seed}/{self.tag}"


EVAL_SEED_BASE = 10_000_000
"""Held-out evaluation seeds start here; demonstrations and rollouts use seeds far below it."""


def eval_jobs(task_ids: list[str], episodes_per_task: int) -> list[Job]:
    """The fixed held-out jobs: the same seeds for every round and every campaign."""
    return [
        Job(task_id, EVAL_SEED_BASE + i, tag="eval")
        for task_id in task_ids
        for i in range(episodes_per_task)
    ]

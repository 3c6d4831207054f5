"""Rule-based verifiers: cheap checks of an episode's actions, states and diagnostics.

Each rule fails an episode for one documented reason and passes it otherwise; none of them can
say an episode succeeded, so they are meant to be combined with the environment verifier
(`AllOf(EnvironmentVerifier(), ActionSaturationRule(), ...)`) to filter out successes that were
reached in a way we do not want to imitate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from verifiers.base import require_step_info
from verifiers.episode import Episode, Verdict


def _verdict(episode: Episode, name: str, failure: str | None, score: float) -> Verdict:
    passed = failure is None
    return Verdict(episode.episode_id, name, passed, score, "ok" if passed else failure)


@dataclass
class ActionSaturationRule:
    """Fails when actions sit at the edge of [-1, 1] most of the time.

    A step counts as saturated when every movement dimension (all but the last, the gripper, which
    is legitimately always -1 or +1) has |a| >= `threshold`. The scripted experts saturate one
    axis at a time while far from their target; a policy pinned to the corners of the action box
    on most steps has collapsed onto the bounds (bang-bang control) rather than moving with purpose.
    """

    threshold: float = 0.98
    """|action| at or above this counts as saturated."""
    max_fraction: float = 0.8
    """Fail when more than this fraction of steps is saturated..."""
    min_steps: int = 5
    """...and at least this many steps are (a short dash to a nearby target is not a collapse)."""
    name: str = "action_saturation"
    judges_outcome: ClassVar[bool] = False

    def verify(self, episodes: Sequence[Episode]) -> list[Verdict]:
        verdicts = []
        for episode in episodes:
            actions = np.asarray(episode.actions, dtype=np.float32)
            if actions.ndim != 2 or actions.shape[1] < 2:
                raise ValueError(
                    f"verifier {self.name!r}: episode {episode.episode_id!r} has actions of shape "
                    f"{actions.shape}; expected [T, d] with d >= 2 (movement dims + gripper)"
                )
            saturated = (np.abs(actions[:, :-1]) >= self.threshold).all(axis=1)
            fraction = float(saturated.mean()) if len(saturated) else 0.0
            failure = None
            if fraction > self.max_fraction and saturated.sum() >= self.min_steps:
                failure = (
                    f"actions saturated on {fraction:.0%} of steps (> {self.max_fraction:.0%})"
                )
            verdicts.append(_verdict(episode, self.name, failure, 1.0 - fraction))
        return verdicts


@dataclass
class ContactForceRule:
    """Fails when the largest contact normal force in the episode exceeds `max_force` newtons.

    Reads `step_info["contact_force"]` (max contact force per step, reported by every task).
    Slamming into the table or the objects may still end in success but is not behaviour to learn.
    """

    max_force: float = 200.0
    """Largest tolerated contact normal force, N. The scripted experts of the six built-in tasks
    peak below 40 N; perturbed and random actions reach 100-270 N."""
    name: str = "contact_force"
    judges_outcome: ClassVar[bool] = False

    def verify(self, episodes: Sequence[Episode]) -> list[Verdict]:
        verdicts = []
        for episode in episodes:
            force = require_step_info(episode, "contact_force", self.name)
            peak = float(force.max()) if force.size else 0.0
            failure = None
            if not peak <= self.max_force:
                failure = f"peak contact force {peak:.1f} N exceeds {self.max_force:.1f} N"
            verdicts.append(_verdict(episode, self.name, failure, float(peak <= self.max_force)))
        return verdicts


@dataclass
class ObjectsOffTableRule:
    """Fails when any object left the table during the episode.

    Reads `step_info["objects_off_table"]` (count of objects off the table at each step).
    """

    name: str = "objects_off_table"
    judges_outcome: ClassVar[bool] = False

    def verify(self, episodes: Sequence[Episode]) -> list[Verdict]:
        verdicts = []
        for episode in episodes:
            off = require_step_info(episode, "objects_off_table", self.name)
            worst = int(off.max()) if off.size else 0
            failure = None
            if worst > 0:
                step = int(np.argmax(off > 0))
                failure = f"{worst} object(s) knocked off the table (first at step {step})"
            verdicts.append(_verdict(episode, self.name, failure, float(worst == 0)))
        return verdicts


@dataclass
class FiniteStateRule:
    """Fails when states, actions or rewards contain NaN or inf (a diverged simulation)."""

    name: str = "finite_state"
    judges_outcome: ClassVar[bool] = False

    def verify(self, episodes: Sequence[Episode]) -> list[Verdict]:
        verdicts = []
        for episode in episodes:
            bad = [
                field
                for field in ("states", "actions", "rewards")
                if not np.isfinite(np.asarray(getattr(episode, field), dtype=np.float64)).all()
            ]
            failure = f"non-finite values in {', '.join(bad)}" if bad else None
            verdicts.append(_verdict(episode, self.name, failure, float(not bad)))
        return verdicts


@dataclass
class TimeLimitRule:
    """Fails when the episode ran into the time limit (`truncated`) instead of terminating.

    An episode that dawdles until the limit carries little signal about how to finish the task.
    """

    name: str = "time_limit"
    judges_outcome: ClassVar[bool] = True
    """Whether the instruction was achieved in time: an outcome verdict (relabelling redefines
    the instruction, so it does not block relabelling)."""

    def verify(self, episodes: Sequence[Episode]) -> list[Verdict]:
        verdicts = []
        for episode in episodes:
            hit = bool(episode.truncated)
            failure = f"ran into the time limit after {episode.length} steps" if hit else None
            verdicts.append(_verdict(episode, self.name, failure, float(not hit)))
        return verdicts


def default_rules() -> list:
    """The rule set used to filter successes before SFT: all rules with default thresholds."""
    return [
        ActionSaturationRule(),
        ContactForceRule(),
        ObjectsOffTableRule(),
        FiniteStateRule(),
        TimeLimitRule(),
    ]

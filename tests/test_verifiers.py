"""Environment and rule verifiers, and their composition, on real episodes of the tasks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from episodes_helper import episodes

import envs
from verifiers import (
    ActionSaturationRule,
    AllOf,
    AnyOf,
    ContactForceRule,
    EnvironmentVerifier,
    FiniteStateRule,
    ObjectsOffTableRule,
    TimeLimitRule,
    Verdict,
    Verifier,
    Weighted,
    default_rules,
)


@pytest.fixture(scope="module")
def expert():
    return list(episodes("reach", (0, 1, 2, 3), "expert"))


@pytest.fixture(scope="module")
def random():
    return list(episodes("reach", (0, 1, 2, 3), "random"))


class Abstain:
    """A verifier with no opinion on anything (the `passed=None` case)."""

    name = "abstain"
    judges_outcome = False

    def verify(self, episodes):
        return [Verdict(e.episode_id, self.name, None, 0.5, "no opinion") for e in episodes]


def test_every_verifier_satisfies_the_protocol():
    for verifier in [EnvironmentVerifier(), *default_rules(), AllOf(EnvironmentVerifier())]:
        assert isinstance(verifier, Verifier)


def test_environment_verifier_follows_is_success(expert, random):
    mixed = expert + random
    verdicts = EnvironmentVerifier().verify(mixed)
    assert [v.episode_id for v in verdicts] == [e.episode_id for e in mixed]
    assert [v.passed for v in verdicts] == [e.is_success for e in mixed]
    assert all(v.passed for v in verdicts[: len(expert)])
    timed_out = [v for v, e in zip(verdicts, mixed, strict=True) if e.truncated]
    assert timed_out and all("time limit" in v.reason for v in timed_out)
    assert {v.score for v in verdicts} <= {0.0, 1.0}


def test_environment_verifier_needs_a_bool(expert):
    with pytest.raises(ValueError, match="is_success=None"):
        EnvironmentVerifier().verify([replace(expert[0], is_success=None)])


def test_action_saturation_fails_bang_bang_control(expert, random):
    bang = list(episodes("reach", (0, 1), "bang_bang"))
    verdicts = ActionSaturationRule().verify(expert + random + bang)
    assert all(v.passed for v in verdicts[: len(expert) + len(random)])
    for verdict in verdicts[-len(bang) :]:
        assert verdict.passed is False
        assert "saturated on 100% of steps" in verdict.reason


def test_contact_force_fails_hard_contacts(expert):
    slam = list(episodes("reach", (0, 1, 2, 3, 4, 5), "slam"))
    rule = ContactForceRule(max_force=100.0)
    verdicts = rule.verify(expert + slam)
    assert all(v.passed for v in verdicts[: len(expert)])
    for episode, verdict in zip(slam, verdicts[len(expert) :], strict=True):
        hard = episode.step_info["contact_force"].max() > 100.0
        assert verdict.passed is not hard
    assert any(not v.passed for v in verdicts), "no slam episode exceeded 100 N"
    failed = next(v for v in verdicts if not v.passed)
    assert "exceeds 100.0 N" in failed.reason


def test_objects_off_table_reads_the_count(random):
    push = [*episodes("push", (0, 1, 2), "random"), *episodes("push", (0, 1, 2), "perturbed")]
    for episode, verdict in zip(push, ObjectsOffTableRule().verify(push), strict=True):
        assert verdict.passed is bool(episode.step_info["objects_off_table"].max() == 0)
    knocked = replace(push[0], step_info=dict(push[0].step_info))
    count = knocked.step_info["objects_off_table"].copy()
    count[3:] = 1
    knocked.step_info["objects_off_table"] = count
    verdict = ObjectsOffTableRule().verify([knocked])[0]
    assert verdict.passed is False and "first at step 3" in verdict.reason


def test_finite_state_fails_diverged_episodes(expert):
    states = expert[0].states.copy()
    states[-1, 2] = np.nan
    diverged = replace(expert[0], states=states)
    verdicts = FiniteStateRule().verify([expert[0], diverged])
    assert verdicts[0].passed is True
    assert verdicts[1].passed is False and "states" in verdicts[1].reason


def test_time_limit_fails_truncated_episodes(expert, random):
    verdicts = TimeLimitRule().verify(expert + random)
    assert [v.passed for v in verdicts] == [not e.truncated for e in expert + random]
    assert any(not v.passed for v in verdicts)


def test_rules_name_the_missing_field(expert):
    bare = replace(expert[0], step_info={})
    with pytest.raises(ValueError, match=r"contact_force.*" + expert[0].episode_id):
        ContactForceRule().verify([bare])
    with pytest.raises(ValueError, match=r"objects_off_table.*" + expert[0].episode_id):
        ObjectsOffTableRule().verify([bare])


def test_all_of_passes_only_when_every_verifier_passes(expert, random):
    bang = list(episodes("reach", (0,), "bang_bang"))
    mixed = expert + random + bang
    combined = AllOf(EnvironmentVerifier(), ActionSaturationRule(), TimeLimitRule(), Abstain())
    verdicts = combined.verify(mixed)
    env = EnvironmentVerifier().verify(mixed)
    saturation = ActionSaturationRule().verify(mixed)
    for v, a, b in zip(verdicts, env, saturation, strict=True):
        assert v.passed is (a.passed and b.passed)
        assert v.verifier == "all(environment,action_saturation,time_limit,abstain)"
    failed = [v for v in verdicts if not v.passed]
    assert failed and all(v.reason.startswith("failed ") for v in failed)
    assert "environment:" in failed[0].reason
    assert AllOf(Abstain()).verify(expert[:1])[0].passed is None


def test_any_of_passes_when_one_verifier_passes(expert, random):
    verdicts = AnyOf(EnvironmentVerifier(), ActionSaturationRule()).verify(expert + random)
    assert all(v.passed for v in verdicts)
    verdicts = AnyOf(EnvironmentVerifier(), TimeLimitRule()).verify(random)
    assert [v.passed for v in verdicts] == [e.is_success or not e.truncated for e in random]


def test_weighted_thresholds_the_weighted_score(expert, random):
    weighted = Weighted([(EnvironmentVerifier(), 3.0), (TimeLimitRule(), 1.0)], threshold=0.6)
    mixed = expert + random
    for episode, verdict in zip(mixed, weighted.verify(mixed), strict=True):
        expected = (3.0 * episode.is_success + 1.0 * (not episode.truncated)) / 4.0
        assert verdict.score == pytest.approx(expected)
        assert verdict.passed is (expected >= 0.6)
    with pytest.raises(ValueError, match="non-negative weights"):
        Weighted([(EnvironmentVerifier(), -1.0)])


def test_composition_rejects_bad_members(expert):
    class Short:
        name = "short"
        judges_outcome = False

        def verify(self, episodes):
            return []

    with pytest.raises(ValueError, match="returned 0 verdicts for 1 episodes"):
        AllOf(Short()).verify(expert[:1])
    with pytest.raises(TypeError, match="expected a `verifiers.base.Verifier`"):
        AllOf(lambda episodes: [])
    with pytest.raises(ValueError, match="at least one verifier"):
        AnyOf()


@pytest.mark.parametrize("task", envs.TASK_IDS)
def test_default_rules_pass_every_task_expert(task):
    demos = list(episodes(task, (0, 1, 2), "expert", 32))
    assert all(e.is_success for e in demos)
    verdicts = AllOf(EnvironmentVerifier(), *default_rules()).verify(demos)
    assert all(v.passed for v in verdicts), [v.reason for v in verdicts]

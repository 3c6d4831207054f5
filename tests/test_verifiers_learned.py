"""Learned verifiers: the success classifier and the MLLM judge, trained on environment labels."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from episodes_helper import episodes

from verifiers import AllOf, EnvironmentVerifier, agreement
from verifiers.classifier import ClassifierConfig, SuccessClassifier
from verifiers.judge import JudgeConfig, MLLMJudge


def labelled(seeds: range, image_size: int) -> list:
    """Reach episodes, half expert successes, half random failures (random successes dropped)."""
    seeds = tuple(seeds)
    success = list(episodes("reach", seeds, "expert", image_size))
    failure = [e for e in episodes("reach", seeds, "random", image_size) if not e.is_success]
    return success + failure


@pytest.fixture(scope="module")
def classifier_data():
    return labelled(range(0, 40), 32), labelled(range(1000, 1030), 32)


@pytest.fixture(scope="module")
def trained_classifier(classifier_data):
    train, _ = classifier_data
    classifier = SuccessClassifier(ClassifierConfig(channels=16, epochs=40, lr=3e-3))
    stats = classifier.fit(train)
    return classifier, stats


def test_classifier_learns_success_from_final_frames(trained_classifier, classifier_data):
    classifier, stats = trained_classifier
    train, held_out = classifier_data
    assert stats["train_accuracy"] >= 0.8
    scores = agreement(classifier.verify(held_out), held_out)
    assert scores["n"] == len(held_out) and 0.3 < sum(e.is_success for e in held_out) / len(
        held_out
    )
    assert scores["accuracy"] >= 0.65, scores
    untrained = agreement(
        SuccessClassifier(ClassifierConfig(channels=16)).verify(held_out), held_out
    )
    assert scores["accuracy"] > untrained["accuracy"]


def test_classifier_verdicts_and_save_load(trained_classifier, classifier_data, tmp_path):
    classifier, _ = trained_classifier
    _, held_out = classifier_data
    verdicts = classifier.verify(held_out)
    assert [v.episode_id for v in verdicts] == [e.episode_id for e in held_out]
    assert all(v.verifier == "success_classifier" and 0.0 <= v.score <= 1.0 for v in verdicts)
    assert all(v.passed is (v.score >= 0.5) for v in verdicts)
    classifier.save(tmp_path / "clf")
    loaded = SuccessClassifier.load(tmp_path / "clf")
    np.testing.assert_allclose(loaded.predict(held_out), classifier.predict(held_out), atol=1e-6)
    combined = AllOf(EnvironmentVerifier(), loaded).verify(held_out)
    assert all(
        v.passed is (e.is_success and c.passed)
        for v, e, c in zip(combined, held_out, verdicts, strict=True)
    )
    with pytest.raises(FileNotFoundError, match="config.json"):
        SuccessClassifier.load(tmp_path)


def test_classifier_names_episodes_without_frames(classifier_data):
    _, held_out = classifier_data
    bare = replace(held_out[0], frames=None)
    with pytest.raises(ValueError, match=f"{bare.episode_id!r}.*frames=None"):
        SuccessClassifier().verify([held_out[1], bare])
    with pytest.raises(ValueError, match="both successes and failures"):
        SuccessClassifier().fit([e for e in held_out if e.is_success])


@pytest.fixture(scope="module")
def judge_data():
    return labelled(range(0, 4), 64)


def test_judge_fine_tunes_the_backbone_on_yes_no(judge_data, tmp_path):
    judge = MLLMJudge(config=JudgeConfig(epochs=1, batch_size=4))
    before = [p.detach().clone() for p in judge.policy.model.parameters()]
    stats = judge.fit(judge_data)
    after = list(judge.policy.model.parameters())
    assert np.isfinite(stats["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    verdicts = judge.verify(judge_data)
    assert [v.episode_id for v in verdicts] == [e.episode_id for e in judge_data]
    assert all(v.verifier == "mllm_judge" and 0.0 <= v.score <= 1.0 for v in verdicts)
    judge.save(tmp_path / "judge")
    loaded = MLLMJudge.load(tmp_path / "judge")
    np.testing.assert_allclose(loaded.predict(judge_data), judge.predict(judge_data), atol=1e-5)


def test_judge_leaves_the_given_policy_untouched(judge_data):
    from agent import Policy

    policy = Policy.from_preset("tiny", seed=1)
    before = [p.detach().clone() for p in policy.model.parameters()]
    MLLMJudge(policy, JudgeConfig(epochs=1, batch_size=4, lora_r=4)).fit(
        judge_data[:2] + judge_data[-2:]
    )
    assert all(torch.equal(a, b) for a, b in zip(before, policy.model.parameters(), strict=True))


def test_judge_names_episodes_without_frames(judge_data):
    judge = MLLMJudge(config=JudgeConfig(epochs=1))
    with pytest.raises(ValueError, match=f"{judge_data[0].episode_id!r}.*frames=None"):
        judge.verify([replace(judge_data[0], frames=None)])

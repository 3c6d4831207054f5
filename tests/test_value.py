"""The learned value baseline of RL (`train.updates.value`): GAE by hand, the folds, and a
critic that tells a successful episode's states from a failed one's, out of fold, on real
ReachBall episodes."""

import numpy as np
import pytest

import envs
from train.collect.episodes import collect_episodes
from train.updates.value import gae_advantages, scene_folds, value_advantages
from verifiers.episode import Job


def test_gae_advantages_by_hand():
    values = np.array([0.2, 0.5, 0.9])
    # lambda 1: the outcome minus the value at each step
    np.testing.assert_allclose(gae_advantages(values, 1.0, 1.0), [0.8, 0.5, 0.1], atol=1e-6)
    # lambda 0: one-step differences, the outcome entering at the last step only
    np.testing.assert_allclose(gae_advantages(values, 1.0, 0.0), [0.3, 0.4, 0.1], atol=1e-6)
    np.testing.assert_allclose(gae_advantages(values, 0.0, 0.5), [0.275, -0.05, -0.9], atol=1e-6)
    # a failure whose critic saw it coming (values near 0) gets little blame
    assert np.abs(gae_advantages(np.full(4, 0.01), 0.0, 0.95)).max() < 0.02


@pytest.fixture(scope="module")
def episodes():
    """Expert successes and uniformly random failures of the same ten ReachBall scenes."""
    out = []
    for seed in range(10):
        for actor in ("expert", "random"):
            job = Job(envs.resolve("reach"), seed, actor)
            out.extend(collect_episodes([job], actor, seed=seed, max_episode_steps=20))
    assert [e.is_success for e in out] == [True, False] * 10
    return out


def test_folds_keep_a_scene_together(episodes):
    folds = scene_folds(episodes, 2, seed=0)
    assert set(folds.tolist()) == {0, 1}
    assert all(folds[i] == folds[i + 1] for i in range(0, len(episodes), 2))  # same scene
    assert abs(int((folds == 0).sum()) - int((folds == 1).sum())) <= 2
    np.testing.assert_array_equal(folds, scene_folds(episodes, 2, seed=0))


def test_cross_fitted_critic_tells_success_from_failure(episodes):
    rewards = np.array([float(e.is_success) for e in episodes], dtype=np.float32)
    advantages, metrics = value_advantages(
        episodes, rewards, lam=1.0, folds=2, epochs=40, lr=3e-3, batch_size=32, seed=0
    )
    assert [len(a) for a in advantages] == [e.length for e in episodes]
    # lambda 1: advantage = outcome - value, so the value at each step is recoverable
    values = [r - a for a, r in zip(advantages, rewards, strict=True)]
    assert all(((v >= -1e-6) & (v <= 1 + 1e-6)).all() for v in values)
    late = lambda group: np.mean([v[-3:].mean() for v in group])  # noqa: E731
    success_late = late([v for v, r in zip(values, rewards, strict=True) if r == 1])
    failure_late = late([v for v, r in zip(values, rewards, strict=True) if r == 0])
    assert success_late > failure_late + 0.2, (success_late, failure_late)
    assert metrics["train/value_explained_variance"] > 0.0
    assert metrics["train/value_steps"] == sum(e.length for e in episodes)
    # the same inputs give the same advantages
    again, _ = value_advantages(
        episodes, rewards, lam=1.0, folds=2, epochs=40, lr=3e-3, batch_size=32, seed=0
    )
    for a, b in zip(advantages, again, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="rewards"):
        value_advantages(episodes, rewards[:-1])

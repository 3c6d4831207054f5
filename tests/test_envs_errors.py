"""Bad input to the tasks is a clear error; image sizes; vectorized creation across processes."""

from __future__ import annotations

import subprocess
import sys

import gymnasium
import numpy as np
import pytest

import envs


def test_unknown_task_lists_the_known_ids():
    with pytest.raises(ValueError) as err:
        envs.make("pushh")
    message = str(err.value)
    assert "'pushh'" in message
    for task_id in envs.TASK_IDS:
        assert task_id in message


def test_short_names_and_ids_both_resolve():
    assert envs.resolve("push") == "autodidact/PushCube-v0"
    assert envs.resolve("autodidact/PushCube-v0") == "autodidact/PushCube-v0"
    assert (
        envs.max_episode_steps("reach")
        == gymnasium.spec("autodidact/ReachBall-v0").max_episode_steps
    )


@pytest.mark.parametrize(
    "action", [np.zeros(3), np.zeros(5), np.zeros((2, 2)), np.zeros((1, 4)), 0.5]
)
def test_action_of_the_wrong_shape_is_an_error(action):
    env = envs.make("reach")
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"expected \(4,\)"):
        env.unwrapped.step(action)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_is_an_error(bad):
    env = envs.make("push")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="non-finite") as err:
        env.unwrapped.step(np.array([0.0, bad, 0.0, 0.0]))
    assert str(bad) in str(err.value)


def test_out_of_range_actions_are_clipped_not_errors():
    env = envs.make("reach")
    env.reset(seed=0)
    _, _, _, _, info_big = env.unwrapped.step(np.array([5.0, 0, 0, 0], np.float32))
    state_big = env.unwrapped.tip_pos()
    env.reset(seed=0)
    env.unwrapped.step(np.array([1.0, 0, 0, 0], np.float32))
    np.testing.assert_allclose(env.unwrapped.tip_pos(), state_big)


@pytest.mark.parametrize("size", [0, -8, 8, 4096, 64.0, "64", (64,), (64, 64, 3), True, None])
def test_invalid_image_size_is_an_error(size):
    with pytest.raises(ValueError, match="image_size"):
        envs.make("reach", image_size=size)


@pytest.mark.parametrize("size,shape", [(32, (32, 32, 3)), ((48, 80), (48, 80, 3))])
def test_image_size_is_configurable(size, shape):
    env = envs.make("stack", image_size=size)
    obs, _ = env.reset(seed=0)
    assert obs["image"].shape == shape
    assert env.observation_space["image"].shape == shape


def test_async_vector_env_with_two_workers():
    vec = gymnasium.make_vec("autodidact/PushCube-v0", num_envs=2, vectorization_mode="async")
    try:
        obs, info = vec.reset(seed=[3, 4])
        assert obs["image"].shape == (2, 64, 64, 3) and obs["image"].dtype == np.uint8
        assert obs["state"].shape == (2, 4)
        assert len(obs["instruction"]) == 2 and all(isinstance(s, str) for s in obs["instruction"])
        single = envs.make("push")
        np.testing.assert_array_equal(single.reset(seed=4)[0]["image"], obs["image"][1])
        for _ in range(3):
            obs, reward, terminated, truncated, info = vec.step(vec.action_space.sample())
        assert reward.shape == (2,) and "is_success" in info
    finally:
        vec.close()


def test_import_envs_does_not_import_task_modules_or_torch():
    code = (
        "import sys, envs; "
        "assert 'envs.push' not in sys.modules and 'mujoco' not in sys.modules; "
        "envs.make('push'); "
        "assert 'envs.push' in sys.modules and 'envs.stack' not in sys.modules; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_working_gl_backend_names_the_debian_packages(monkeypatch):
    from envs import rendering

    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setattr(rendering, "probe_backend", lambda backend: (False, "cannot open"))
    with pytest.raises(RuntimeError) as err:
        rendering.select_gl_backend()
    message = str(err.value)
    assert "libegl1 libegl-mesa0 libgl1-mesa-dri" in message and "libosmesa6" in message
    assert "egl: cannot open" in message and "osmesa: cannot open" in message


def test_backend_is_chosen_without_mujoco_gl(monkeypatch):
    from envs import rendering

    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    tried = []

    def probe(backend):
        tried.append(backend)
        return backend == "osmesa", "no EGL device"

    monkeypatch.setattr(rendering, "probe_backend", probe)
    assert rendering.select_gl_backend() == "osmesa"
    assert tried == ["egl", "osmesa"]

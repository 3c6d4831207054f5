"""Contract tests every registered task gets for free (parametrized over the registry).

They hold for any set of registered tasks: a user's task (registered in `envs/__init__.py` or
in a module loaded first, e.g. `python -m pytest -p my_tasks tests/test_envs_contract.py`) gets
every parametrized test and breaks none written about the built-ins.
"""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.tabletop import COLORS

TASKS = envs.task_ids()
BUILTIN = {
    "reach": "autodidact/ReachBall-v0",
    "push": "autodidact/PushCube-v0",
    "pick_place": "autodidact/PickPlaceCube-v0",
    "stack": "autodidact/StackCube-v0",
    "press_button": "autodidact/PressButton-v0",
    "open_drawer": "autodidact/OpenDrawer-v0",
}


def _rollout(task: str, seed: int, steps: int):
    """Seeded random actions; returns the list of (obs, reward, terminated, info)."""
    env = envs.make(task)
    obs, info = env.reset(seed=seed)
    actions = np.random.default_rng(seed).uniform(-1, 1, size=(steps, 4)).astype(np.float32)
    records = [(obs, 0.0, False, info)]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        records.append((obs, reward, terminated, info))
        if terminated or truncated:
            break
    env.close()
    return records


def _color_pixels(image: np.ndarray, color: str) -> int:
    """Pixels whose colour is close (in chromaticity) to one of the object colours."""
    rgb = image.astype(np.float32)
    target = np.array(COLORS[color][:3], np.float32)
    chroma = rgb / (rgb.sum(-1, keepdims=True) + 1e-6)
    ref = target / target.sum()
    close = np.linalg.norm(chroma - ref, axis=-1) < 0.08
    return int((close & (rgb.max(-1) > 90)).sum())


def test_registry_holds_the_six_builtin_tasks_in_order():
    # Other tasks may be registered too (a user's); the built-ins keep their names and order.
    assert set(envs.TASK_IDS) <= set(TASKS)
    builtin = [s for s in envs.SHORT_NAMES if s in BUILTIN]
    assert builtin == list(BUILTIN)
    assert {s: envs.SHORT_NAMES[s] for s in builtin} == BUILTIN
    assert all(t.startswith("autodidact/") for t in TASKS)


@pytest.mark.parametrize("task", TASKS)
def test_check_env(task):
    env = envs.make(task, render_mode="rgb_array")
    check_env(env.unwrapped)
    env.close()


@pytest.mark.parametrize("task", TASKS)
def test_spaces_follow_the_shared_interface(task):
    env = envs.make(task)
    assert env.action_space == gymnasium.spaces.Box(-1, 1, (4,), np.float32)
    obs, info = env.reset(seed=0)
    assert obs["image"].dtype == np.uint8 and obs["image"].shape == (64, 64, 3)
    assert obs["state"].dtype == np.float32 and obs["state"].shape == (4,)
    assert isinstance(obs["instruction"], str) and obs["instruction"]
    assert env.observation_space.contains(obs)
    for key in ("is_success", "contact_force", "objects_off_table"):
        assert key in info
    assert any(k.startswith("reward/") for k in info)
    assert env.spec.max_episode_steps is not None


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_gives_identical_episodes(task):
    first, second = _rollout(task, seed=7, steps=50), _rollout(task, seed=7, steps=50)
    assert len(first) == len(second)
    for (o1, r1, t1, i1), (o2, r2, t2, i2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(o1["image"], o2["image"])
        np.testing.assert_array_equal(o1["state"], o2["state"])
        assert o1["instruction"] == o2["instruction"]
        assert (r1, t1, i1) == (r2, t2, i2)


@pytest.mark.parametrize("task", TASKS)
def test_different_seeds_give_different_initial_states(task):
    env = envs.make(task)
    first = env.reset(seed=1)[0]
    qpos1, body1 = env.unwrapped.data.qpos.copy(), env.unwrapped.model.body_pos.copy()
    second = env.reset(seed=2)[0]
    assert not np.array_equal(first["image"], second["image"])
    moved = not np.allclose(qpos1, env.unwrapped.data.qpos) or not np.allclose(
        body1, env.unwrapped.model.body_pos
    )
    assert moved
    instructions = {env.reset(seed=s)[0]["instruction"] for s in range(20)}
    assert len(instructions) >= 3, instructions


@pytest.mark.parametrize("task", TASKS)
def test_no_nan_in_a_random_rollout(task):
    for obs, reward, _, info in _rollout(task, seed=3, steps=40):
        assert np.all(np.isfinite(obs["state"]))
        assert np.isfinite(reward)
        for key, value in info.items():
            assert np.isfinite(float(value)), key


@pytest.mark.parametrize("task", TASKS)
def test_image_shows_the_named_objects(task):
    env = envs.make(task)
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        image = obs["image"]
        assert image.std() > 10, "blank image"
        goal = env.unwrapped.goal
        for value in goal.values():
            if value in COLORS:
                assert _color_pixels(image, value) >= 4, (seed, goal)


@pytest.mark.parametrize("task", TASKS)
def test_instruction_names_the_target(task):
    env = envs.make(task)
    for seed in range(10):
        obs, _ = env.reset(seed=seed)
        goal = env.unwrapped.goal
        assert goal, "a task names its goal"
        for value in goal.values():
            assert value in obs["instruction"].split(), (obs["instruction"], goal)
        # The state is proprioception only: nothing about which object is named.
        expected = [*env.unwrapped.tip_pos(), env.unwrapped.finger_gap()]
        np.testing.assert_allclose(obs["state"], expected, atol=1e-6)


@pytest.mark.parametrize("task", TASKS)
def test_relabelling_another_goal(task):
    """Driving the expert to another goal satisfies that goal's instruction, not the original."""
    env = envs.make(task)
    obs, _ = env.reset(seed=5)
    task_env = env.unwrapped
    original = obs["instruction"]
    assert task_env.is_satisfied(original) is False
    assert task_env.is_satisfied("do a backflip") is False
    other = next(g for g in task_env._possible_goals() if g != task_env.goal)
    canonical = task_env.instruction_templates[0].format(**other)
    paraphrase = task_env.instruction_templates[-1].format(**other)
    task_env.goal = other
    for _ in range(env.spec.max_episode_steps):
        task_env.step(task_env.expert_action())
        if task_env.is_satisfied(canonical):
            break
    assert canonical in task_env.achieved_instructions()
    assert task_env.is_satisfied(paraphrase.upper())
    assert not task_env.is_satisfied(original)


def test_objects_off_table_counts_a_fallen_cube():
    env = envs.make("stack")
    env.reset(seed=0)
    task_env = env.unwrapped
    assert task_env._info()["objects_off_table"] == 0
    task_env.place_object("cube0", np.array([0.0, -0.5, 0.02]))  # beyond the table's front edge
    _, _, _, _, info = env.step(np.zeros(4, np.float32))
    assert info["objects_off_table"] == 1


@pytest.mark.parametrize("task", TASKS)
def test_a_forced_instruction_keeps_the_scene_and_changes_the_goal(task):
    env = envs.make(task)
    drawn, _ = env.reset(seed=4)
    goal = dict(env.unwrapped.goal)
    worded = env.unwrapped.possible_instructions(template=None)  # in the drawn wording
    assert drawn["instruction"] in worded and len(worded) >= 2
    canonical = env.unwrapped.possible_instructions()
    others = [i for i in worded if i != drawn["instruction"]]
    for text in [*others[:2], canonical[worded.index(others[0])]]:
        forced, _ = env.reset(seed=4, options={"instruction": text})
        assert forced["instruction"] == text
        assert np.array_equal(forced["image"], drawn["image"])
        assert np.array_equal(forced["state"], drawn["state"])
        assert env.unwrapped.goal != goal
    shouted, _ = env.reset(seed=4, options={"instruction": "  " + others[0].upper()})
    assert shouted["instruction"] == others[0]  # stored in its normal form
    assert env.unwrapped.possible_instructions(template=None) == worded
    with pytest.raises(ValueError, match="names no goal of this scene"):
        env.reset(seed=4, options={"instruction": "juggle the purple ball"})
    with pytest.raises(ValueError, match="template 9 is out of range"):
        env.unwrapped.possible_instructions(template=9)
    env.close()


@pytest.mark.parametrize("task", TASKS)
def test_an_instruction_parses_to_its_template_and_goal(task):
    """`envs.parse_instruction` reads back what every template writes (no environment made),
    and `envs.phrase_instruction` writes a goal in any template."""
    env = envs.make(task)
    env.reset(seed=4)
    templates = env.unwrapped.instruction_templates
    for k in range(len(templates)):
        for text, canonical in zip(
            env.unwrapped.possible_instructions(template=k),
            env.unwrapped.possible_instructions(),
            strict=True,
        ):
            template, goal = envs.parse_instruction(task, text)
            assert template == k and envs.phrase_instruction(task, goal) == canonical
            assert envs.phrase_instruction(task, goal, k) == text
    with pytest.raises(ValueError, match="'juggle the purple ball' is in none of the task's"):
        envs.parse_instruction(task, "juggle the purple ball")

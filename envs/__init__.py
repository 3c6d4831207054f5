"""The task registry: every autodidact task under the `autodidact/` gymnasium namespace.

`import envs` registers all tasks with string entry points, so making one imports only its
module. Adding a task is one file, its MJCF beside it, and one `register_task` line below.
"""

from __future__ import annotations

import gymnasium

NAMESPACE = "autodidact"
SHORT_NAMES: dict[str, str] = {}
"""Short name -> registered id, e.g. `reach` -> `autodidact/ReachBall-v0`."""


def register_task(short_name: str, name: str, entry_point: str, max_episode_steps: int) -> str:
    """Register `autodidact/<name>` (e.g. `PushCube-v0`) under a short name; return its id."""
    env_id = f"{NAMESPACE}/{name}"
    gymnasium.register(id=env_id, entry_point=entry_point, max_episode_steps=max_episode_steps)
    SHORT_NAMES[short_name] = env_id
    return env_id


register_task("reach", "ReachBall-v0", "envs.reach:ReachBallEnv", max_episode_steps=20)

register_task("push", "PushCube-v0", "envs.push:PushCubeEnv", max_episode_steps=50)

register_task("pick_place", "PickPlaceCube-v0", "envs.pick_place:PickPlaceCubeEnv", 45)

register_task("stack", "StackCube-v0", "envs.stack:StackCubeEnv", max_episode_steps=45)

register_task("press_button", "PressButton-v0", "envs.press_button:PressButtonEnv", 20)

register_task("open_drawer", "OpenDrawer-v0", "envs.open_drawer:OpenDrawerEnv", 30)

TASK_IDS: tuple[str, ...] = tuple(SHORT_NAMES.values())
"""The ids registered in this file, in order."""


def task_ids() -> tuple[str, ...]:
    """Every id registered under the namespace (including tasks registered elsewhere)."""
    return tuple(i for i in gymnasium.registry if i.startswith(NAMESPACE + "/"))


def resolve(name_or_id: str) -> str:
    """The registered id for a short name or an id; ValueError listing the known ones if unknown."""
    if name_or_id in SHORT_NAMES:
        return SHORT_NAMES[name_or_id]
    known = task_ids()
    if name_or_id in known:
        return name_or_id
    shorts = ", ".join(SHORT_NAMES)
    raise ValueError(
        f"unknown task {name_or_id!r}; known ids: {', '.join(known)} (short names: {shorts})"
    )


def make(name_or_id: str, **kwargs) -> gymnasium.Env:
    """`gymnasium.make` for a short name or an id; kwargs go to the task (e.g. `image_size`)."""
    return gymnasium.make(resolve(name_or_id), **kwargs)


def max_episode_steps(name_or_id: str) -> int:
    """The time limit registered for a task."""
    return int(gymnasium.spec(resolve(name_or_id)).max_episode_steps)

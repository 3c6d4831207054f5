"""The task registry: every autodidact task under the `autodidact/` gymnasium namespace.

`import envs` registers all tasks with string entry points, so making one imports only its
module. Adding a task is one file, its MJCF beside it, and one `register_task` line below
(`autodidact new-task NAME` writes all three). A task registered elsewhere (any module that
calls `register_task`) is listed, checked and made the same way once that module is imported.
"""

from __future__ import annotations

import re

import gymnasium

NAMESPACE = "autodidact"
SHORT_NAMES: dict[str, str] = {}
"""Short name -> registered id, e.g. `reach` -> `autodidact/ReachBall-v0`."""


_SHORT_NAME = re.compile(r"[a-z][a-z0-9_]*")
_TASK_NAME = re.compile(r"[A-Z][A-Za-z0-9]*-v\d+")
_ENTRY_POINT = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


class TaskLoadError(ValueError):
    """A registered task whose entry point cannot be imported; names the task and the reason."""


def register_task(short_name: str, name: str, entry_point: str, max_episode_steps: int) -> str:
    """Register `autodidact/<name>` (e.g. `PushCube-v0`) under a short name; return its id.

    Only the spelling is checked here (nothing is imported): a module that does not import is
    reported by `load_task`, `make` and `autodidact envs`, which still list every other task.
    """
    problems = []
    if not isinstance(short_name, str) or not _SHORT_NAME.fullmatch(short_name):
        problems.append(f"short name {short_name!r} is not snake_case (e.g. 'lift_cube')")
    if not isinstance(name, str) or not _TASK_NAME.fullmatch(name):
        problems.append(f"name {name!r} is not CamelCase with a version (e.g. 'LiftCube-v0')")
    if not isinstance(entry_point, str) or not _ENTRY_POINT.fullmatch(entry_point):
        problems.append(f"entry point {entry_point!r} is not 'package.module:ClassName'")
    if isinstance(max_episode_steps, bool) or not (
        isinstance(max_episode_steps, int) and max_episode_steps > 0
    ):
        problems.append(f"max_episode_steps {max_episode_steps!r} is not a positive int")
    env_id = f"{NAMESPACE}/{name}"
    if not problems and short_name in SHORT_NAMES and SHORT_NAMES[short_name] != env_id:
        problems.append(f"short name {short_name!r} is already taken by {SHORT_NAMES[short_name]}")
    if problems:
        raise ValueError(f"register_task({short_name!r}, {name!r}, ...): " + "; ".join(problems))
    gymnasium.register(id=env_id, entry_point=entry_point, max_episode_steps=max_episode_steps)
    SHORT_NAMES[short_name] = env_id
    return env_id


def unregister_task(name_or_id: str) -> None:
    """Remove a task from the registry (tests that register throw-away tasks clean up with it)."""
    env_id = resolve(name_or_id)
    gymnasium.registry.pop(env_id, None)
    for short, registered in list(SHORT_NAMES.items()):
        if registered == env_id:
            del SHORT_NAMES[short]


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


def short_name(task_id: str) -> str:
    """The short name a task was registered under ('' for one registered without `register_task`)."""
    return next((s for s, i in SHORT_NAMES.items() if i == task_id), "")


IMAGE_SIZE_RANGE = (16, 512)
"""Square camera frames a task renders: a side in this range (pixels)."""


def task_name(task_id: str) -> str:
    """The id without its namespace, as metric keys name a task: `ReachBall-v0`."""
    return task_id.split("/")[-1]


def load_task(name_or_id: str) -> type:
    """Import a task's class from its entry point; TaskLoadError naming the task and the cause."""
    env_id = resolve(name_or_id)
    entry_point = gymnasium.spec(env_id).entry_point
    if not isinstance(entry_point, str):
        return entry_point
    from envs.contract import TaskContractError

    try:
        return gymnasium.envs.registration.load_env_creator(entry_point)
    except TaskContractError as err:  # the module imports; its class breaks a rule of the contract
        raise TaskLoadError(f"task {env_id} cannot be loaded: {err}") from err
    except Exception as err:  # noqa: BLE001 -- any import-time failure is the task's
        line = f"{short_name(env_id) or env_id}: entry point {entry_point!r}"
        raise TaskLoadError(
            f"task {env_id} cannot be loaded ({line}): {type(err).__name__}: {err}; check the "
            "module path and class name in its register_task line, and that the module imports"
        ) from err


def parse_instruction(name_or_id: str, instruction: str) -> tuple[int, dict[str, str]]:
    """The template index and the goal fields of an instruction of a task (without making an
    environment): `TabletopEnv.parse_instruction`."""
    return load_task(name_or_id).parse_instruction(instruction)


def phrase_instruction(name_or_id: str, goal: dict[str, str], template: int = 0) -> str:
    """The instruction naming `goal` in the task's template `template` (0: the canonical form)."""
    return load_task(name_or_id).instruction_templates[template].format(**goal)


def make(name_or_id: str, **kwargs) -> gymnasium.Env:
    """`gymnasium.make` for a short name or an id; kwargs go to the task (e.g. `image_size`).
    A task that cannot be imported raises TaskLoadError naming it."""
    env_id = resolve(name_or_id)
    load_task(env_id)
    return gymnasium.make(env_id, **kwargs)


def max_episode_steps(name_or_id: str) -> int:
    """The time limit registered for a task."""
    return int(gymnasium.spec(resolve(name_or_id)).max_episode_steps)

"""`autodidact new-task NAME`: write a working task skeleton (module, MJCF, registration line).

The skeleton is a complete task ("touch the {color} block": three coloured blocks, touch the
named one) that passes the contract tests and `autodidact check-task` as written, with a comment
at each place a user replaces it with their own scene, goals, predicate, rewards and expert.
"""

from __future__ import annotations

import keyword
import os
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

import envs

ENVS_DIR = Path(__file__).parent

MODULE = Template('''"""$title: touch the block of the named colour (a skeleton from `autodidact new-task`).

Replace each part marked TODO with your task; `autodidact check-task $short` checks the result.
Rules (envs/contract.py checks them when the task is first made):
- the goal `_reset_task` returns has the templates' fields as keys, each value one lower-case
  word that appears in the instruction; fields named `*color*` take colours from `COLORS`;
- `_possible_goals()` lists at least two goals (an instruction must pick one of several things);
- `_reward_terms()` includes "success": float(self._goal_satisfied(self.goal)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from envs.tabletop import COLORS, TabletopEnv

# TODO: your objects, by the body names in $xml (geoms share their body's name here).
BLOCKS = ("block0", "block1", "block2")
HALF = 0.025
"""Half size of a block (m), as in $xml."""
TOUCH_DIST = HALF + 0.02
"""Fingertip-to-block-centre distance that counts as touching."""


class $cls(TabletopEnv):
    """Touch the named block; the other blocks are distractors."""

    model_path = Path(__file__).with_name("$xml")
    # TODO: your instructions. str.format templates over the goal's fields, each field a word of
    # its own; the first is the canonical form (relabelling writes it), at least two.
    instruction_templates = (
        "touch the {color} block",
        "go to the {color} block",
    )

    def _reset_task(self, rng: np.random.Generator) -> dict[str, str]:
        # TODO: your scene. Place things with self.place_object(body, xyz) (free-joint bodies:
        # the `object` class) or self.place_fixture(body, xyz) (joint-less bodies), colour geoms
        # with self.set_color(geom, colour), and return the goal the instruction names.
        colors = [str(c) for c in rng.permutation(list(COLORS))[: len(BLOCKS)]]
        xy = self.sample_xy(rng, len(BLOCKS), (-0.17, -0.1), (0.17, 0.12), min_dist=0.1)
        self.block = {}
        for name, color, (x, y) in zip(BLOCKS, colors, xy, strict=True):
            self.place_fixture(name, np.array([x, y, HALF]))
            self.set_color(name, color)
            self.block[color] = name
        return {"color": colors[rng.integers(len(BLOCKS))]}

    def _possible_goals(self) -> list[dict[str, str]]:
        # TODO: every goal an instruction could name in this scene (for relabelling).
        return [{"color": c} for c in self.block]

    def _distance(self, color: str) -> float:
        return float(np.linalg.norm(self.tip_pos() - self.body_pos(self.block[color])))

    def _goal_satisfied(self, goal: dict[str, str]) -> bool:
        # TODO: your success predicate, from the sim state (the episode ends when it holds).
        return self._distance(goal["color"]) < TOUCH_DIST

    def _reward_terms(self) -> dict[str, float]:
        # TODO: your dense terms; keep "success".
        return {
            "reach_dist": -self._distance(self.goal["color"]),
            "success": float(self._goal_satisfied(self.goal)),
        }

    def expert_action(self) -> np.ndarray:
        # TODO: your scripted expert, from privileged sim state: self.move_to(xyz, gripper)
        # saturates a move towards a fingertip target (gripper -1 open, +1 closed);
        # envs/grasping.py has grasp_action / is_grasped for picking things up.
        block = self.body_pos(self.block[self.goal["color"]])
        above = block + np.array([0.0, 0.0, HALF + 0.005])
        tip = self.tip_pos()
        if np.linalg.norm(tip[:2] - block[:2]) > 0.03 and tip[2] < block[2] + HALF + 0.03:
            above[2] = block[2] + HALF + 0.04  # come in from above, not through the block
        return self.move_to(above, gripper=1.0)
''')

MJCF = Template("""<!-- $title: three blocks on the table (fixtures, placed each episode by $module.py).
     TODO: your objects. Free-joint bodies use class="object", joint-less fixtures
     class="fixture", visual-only targets class="marker" (no collisions). -->
<mujoco model="$short">
  <include file="tabletop.xml"/>
  <worldbody>
    <body name="block0" pos="-0.1 0.05 0.025"><geom name="block0" class="fixture" type="box" size="0.025 0.025 0.025"/></body>
    <body name="block1" pos="0 0.05 0.025"><geom name="block1" class="fixture" type="box" size="0.025 0.025 0.025"/></body>
    <body name="block2" pos="0.1 0.05 0.025"><geom name="block2" class="fixture" type="box" size="0.025 0.025 0.025"/></body>
  </worldbody>
</mujoco>
""")

REGISTRATION = 'register_task("{short}", "{name}", "{entry_point}", max_episode_steps={steps})'


@dataclass
class Scaffold:
    """What `new_task` wrote."""

    module: Path
    mjcf: Path
    registration: Path
    """The file the registration line went into."""
    line: str
    task_id: str


def _camel(short: str) -> str:
    return "".join(part.capitalize() for part in short.split("_"))


def new_task(
    short: str, directory: str | Path | None = None, package: str | None = None
) -> Scaffold:
    """Write `<short>.py`, `<short>.xml` and the registration line for a new task.

    `directory` defaults to the `envs` package (the line goes into `envs/__init__.py`, before
    `TASK_IDS`). Elsewhere the line goes into the directory's `__init__.py` (created with the
    import if missing), and `package` (default: the directory's name) is the dotted name the
    entry point imports it by. Nothing existing is overwritten.
    """
    if keyword.iskeyword(short):
        raise ValueError(
            f"task name {short!r} is a Python keyword, which cannot name a module; choose "
            "another (e.g. 'lift_cube'): it names the module, the MJCF and the short name"
        )
    if not re.fullmatch(r"[a-z][a-z0-9_]*", short):
        raise ValueError(
            f"task name {short!r} is not a snake_case Python name (e.g. 'lift_cube'); it names "
            "the module, the MJCF and the short name"
        )
    if short in envs.SHORT_NAMES:
        raise ValueError(f"a task is already registered as {short!r} ({envs.SHORT_NAMES[short]})")
    directory = Path(directory) if directory is not None else ENVS_DIR
    in_envs = directory.resolve() == ENVS_DIR.resolve()
    package = package or ("envs" if in_envs else directory.name)
    if not all(p.isidentifier() for p in package.split(".")):
        raise ValueError(f"package {package!r} is not a dotted Python name")
    name = f"{_camel(short)}-v0"
    task_id = f"{envs.NAMESPACE}/{name}"
    if task_id in envs.task_ids():
        raise ValueError(f"{task_id} is already registered")
    module, mjcf = directory / f"{short}.py", directory / f"{short}.xml"
    registration = directory / "__init__.py"
    for path in (module, mjcf):
        if path.exists():
            raise FileExistsError(f"{str(path)!r} already exists; choose another task name")
    cls = f"{_camel(short)}Env"
    line = REGISTRATION.format(
        short=short, name=name, entry_point=f"{package}.{short}:{cls}", steps=20
    )
    fields = {"title": _camel(short), "short": short, "cls": cls, "xml": mjcf.name}
    directory.mkdir(parents=True, exist_ok=True)
    _write_new(module, MODULE.substitute(fields))
    _write_new(mjcf, MJCF.substitute(fields, module=short))
    _add_registration(registration, line, in_envs)
    return Scaffold(module, mjcf, registration, line, task_id)


def _write_new(path: Path, text: str) -> None:
    """Write a file that must not exist yet (temp file, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    if path.exists():
        tmp.unlink()
        raise FileExistsError(f"{str(path)!r} already exists")
    os.replace(tmp, path)


def _add_registration(path: Path, line: str, in_envs: bool) -> None:
    """Insert the line after the last `register_task(` call (envs: before `TASK_IDS`)."""
    if not path.exists():
        text = '"""Tasks registered with autodidact."""\n\nfrom envs import register_task\n\n'
        text += line + "\n"
    else:
        text = path.read_text()
        lines = text.splitlines(keepends=True)
        anchor = next((i for i, t in enumerate(lines) if t.startswith("TASK_IDS")), None)
        if in_envs and anchor is not None:
            lines.insert(anchor, line + "\n\n")
        else:
            if "register_task" not in text:
                lines.append("\nfrom envs import register_task  # noqa: E402\n")
            lines.append("\n" + line + "\n")
        text = "".join(lines)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

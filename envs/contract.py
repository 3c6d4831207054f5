"""A task's contract: the rules every task must follow, checked with errors that say what to add.

`TabletopEnv` checks its class once when the class is defined (`check_task_class`: templates)
and each task once per process at its first reset (`check_scene`: the goal, the scene's other
goals, the reward terms), so a defect shows up the first time a task is made, not as a bare
`KeyError` deep in a test. `autodidact check-task` runs the same checks over many seeds, plus
the behavioural ones (`train.cli.check_task`).

The rules:
- `instruction_templates`: a non-empty tuple of `str.format` templates (the first is the
  canonical form) that all name the same fields, each field a word of its own (`"the {color}
  cube"`, not `"the {color}-cube"`), and at least two templates (relabelling uses the first and
  the last);
- the goal `_reset_task` returns: those fields, each value one lower-case word (it appears in the
  instruction as a word); values of fields whose name contains `color` come from `COLORS`;
- `_possible_goals()`: at least two goals (so an instruction has something to tell apart), all
  different, the drawn goal among them;
- `_reward_terms()`: finite floats including a `success` term equal to
  `float(self._goal_satisfied(self.goal))` (verifiers and tests read `info["reward/success"]`).
"""

from __future__ import annotations

import math
import string
from typing import TYPE_CHECKING, Any

import numpy as np

from envs.colors import COLORS

if TYPE_CHECKING:
    from envs.tabletop import TabletopEnv


class TaskContractError(ValueError):
    """A task breaks a rule of the contract; the message names the task, the rule and the fix."""


def _fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]


def check_task_class(cls: type) -> None:
    """Static rules of a task class (its instruction templates); raises TaskContractError."""
    name = cls.__name__
    templates = getattr(cls, "instruction_templates", None)
    if not isinstance(templates, tuple) or len(templates) < 2:
        raise TaskContractError(
            f"task {name}: instruction_templates is {templates!r}; expected a tuple of at least "
            'two str.format templates, e.g. ("lift the {color} cube", "pick up the {color} cube") '
            "(the first is the canonical form; relabelling also uses the last)"
        )
    expected = None
    for template in templates:
        if not isinstance(template, str) or not template.strip():
            raise TaskContractError(
                f"task {name}: instruction template {template!r} is not a non-empty string"
            )
        try:
            fields = _fields(template)
        except ValueError as err:
            raise TaskContractError(
                f"task {name}: instruction template {template!r} is not a str.format template: {err}"
            ) from None
        if not fields or any(not f.isidentifier() for f in fields):
            raise TaskContractError(
                f"task {name}: instruction template {template!r} names no goal field (or one "
                "that is not a plain name); write the goal as fields, e.g. 'lift the {color} cube'"
            )
        for field in fields:
            if f"{{{field}}}" not in template.split():
                raise TaskContractError(
                    f"task {name}: in instruction template {template!r} the field {{{field}}} is "
                    "not a word of its own; put spaces around it (goal values must appear in the "
                    "instruction as whole words)"
                )
        if expected is None:
            expected = sorted(fields)
        elif sorted(fields) != expected:
            raise TaskContractError(
                f"task {name}: instruction template {template!r} names the fields "
                f"{sorted(fields)}, the first template names {expected}; every template must "
                "name the same goal fields"
            )


def task_label(env: TabletopEnv) -> str:
    """`ClassName (registered id)` for error messages."""
    spec = getattr(env, "spec", None)
    return f"{type(env).__name__} ({spec.id})" if spec is not None else type(env).__name__


def check_goal(env: TabletopEnv, goal: Any, instruction: str | None = None) -> None:
    """A goal against the templates' fields and COLORS, and (given) the instruction naming it."""
    label = task_label(env)
    fields = sorted(_fields(env.instruction_templates[0]))
    if not isinstance(goal, dict) or sorted(goal) != fields:
        raise TaskContractError(
            f"task {label}: _reset_task returned the goal {goal!r}; expected a dict with the "
            f"instruction templates' fields {fields} as keys"
        )
    words = None if instruction is None else instruction.split()
    for key, value in goal.items():
        if not isinstance(value, str) or len(value.split()) != 1 or value != value.lower():
            raise TaskContractError(
                f"task {label}: goal[{key!r}] is {value!r}; expected one lower-case word as a str "
                "(e.g. a colour name from envs.tabletop.COLORS, converted with str())"
            )
        if "color" in key and value not in COLORS:
            raise TaskContractError(
                f"task {label}: goal[{key!r}] is the colour {value!r}, not one of "
                f"{', '.join(COLORS)} (envs.tabletop.COLORS, the colours that stay distinct at "
                "64x64); draw colours from COLORS"
            )
        if words is not None and value not in words:
            raise TaskContractError(
                f"task {label}: goal[{key!r}] = {value!r} does not appear as a word in the "
                f"instruction {instruction!r}; the instruction must name every goal value"
            )


def check_scene(env: TabletopEnv) -> None:
    """After a reset: the drawn goal, the scene's possible goals and the reward terms."""
    label = task_label(env)
    check_goal(env, env.goal, env.instruction)
    goals = env._possible_goals()
    if not isinstance(goals, list) or len(goals) < 2:
        raise TaskContractError(
            f"task {label}: _possible_goals() returned {goals!r}; expected a list of at least two "
            "goals (an instruction must pick one of several objects: add distractors to the scene)"
        )
    for goal in goals:
        check_goal(env, goal, env.instruction_templates[0].format(**goal))
    if len({tuple(sorted(g.items())) for g in goals}) != len(goals):
        raise TaskContractError(
            f"task {label}: _possible_goals() returned the same goal twice: {goals!r}"
        )
    if env.goal not in goals:
        raise TaskContractError(
            f"task {label}: the drawn goal {env.goal!r} is not among _possible_goals() {goals!r}"
        )
    terms = env._reward_terms()
    if not isinstance(terms, dict) or "success" not in terms:
        keys = sorted(terms) if isinstance(terms, dict) else terms
        raise TaskContractError(
            f"task {label}: _reward_terms() returned {keys!r} without a 'success' term; add "
            '"success": float(self._goal_satisfied(self.goal)) (verifiers, tests and the '
            'campaign read info["reward/success"])'
        )
    for key, value in terms.items():
        if not isinstance(value, int | float | np.floating | np.integer) or not math.isfinite(
            float(value)
        ):
            raise TaskContractError(
                f"task {label}: reward term {key!r} is {value!r}; expected a finite float"
            )
    if float(terms["success"]) != float(bool(env._goal_satisfied(env.goal))):
        raise TaskContractError(
            f"task {label}: reward term 'success' is {terms['success']!r} while "
            f"_goal_satisfied(goal) is {env._goal_satisfied(env.goal)!r}; it must be "
            "float(self._goal_satisfied(self.goal))"
        )

"""Adding a task as a user does: the README's example, `autodidact new-task`, `check-task`,
`autodidact envs`, and the errors a broken task gets.

The user's tasks live in a temporary package (never in `envs/`); the whole contract suite runs
over the registry with them in a child pytest that loads the package with `-p`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import envs
from envs.contract import TaskContractError
from train.cli import main as cli

ROOT = Path(__file__).resolve().parents[1]


def _readme_example() -> tuple[str, str, str]:
    """The MJCF, the module and the registration line of the README's "Adding an environment"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Adding an environment", 1)[1].split("\n## ", 1)[0]
    xml = re.findall(r"```xml\n(.*?)```", section, re.S)
    python = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(xml) == 1 and len(python) == 2, "the README's example changed shape"
    return xml[0], python[0], python[1]


@pytest.fixture(scope="module")
def user_tasks(tmp_path_factory):
    """A package `usertasks` holding the README's example (verbatim) and an unedited
    `new-task` skeleton, registered from the package's `__init__.py`."""
    root = tmp_path_factory.mktemp("user")
    package = root / "usertasks"
    xml, module, line = _readme_example()
    package.mkdir()
    (package / "lift.xml").write_text(xml)
    (package / "lift.py").write_text(module)
    assert cli(["new-task", "touch_block", "--dir", str(package)]) == 0
    init = (package / "__init__.py").read_text()
    assert 'register_task("touch_block", "TouchBlock-v0", "usertasks.touch_block:' in init
    # The README's registration line, pointing at this package instead of envs/.
    (package / "__init__.py").write_text(init + line.replace('"envs.lift:', '"usertasks.lift:'))
    sys.path.insert(0, str(root))
    import usertasks  # noqa: F401  (registers both)

    yield root
    sys.path.remove(str(root))
    for name in ("lift", "touch_block"):
        envs.unregister_task(name)


def test_readme_example_passes_ruff(user_tasks):
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is not installed beside this python")
    result = subprocess.run(
        [str(ruff), "check", "--config", str(ROOT / "pyproject.toml"), "usertasks"],
        cwd=user_tasks,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_contract_suite_passes_with_user_tasks_registered(user_tasks):
    """Every contract and expert test (not the slow ones) over the registry: the built-ins'
    non-parametrized tests and, for both user tasks, every test ReachBall gets."""
    env = {**os.environ, "PYTHONPATH": f"{user_tasks}{os.pathsep}{ROOT}"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-v",
            "-n",
            "0",
            "-p",
            "usertasks",
            "-m",
            "not slow",
            "-k",
            "LiftCube or TouchBlock or ReachBall or not autodidact",
            "tests/test_envs_contract.py",
            "tests/test_envs_experts.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, tail
    passed = re.findall(r"^(\S+) PASSED", result.stdout, re.M)
    per_task = {
        name: sum(f"autodidact/{name}-v0]" in test for test in passed)
        for name in ("ReachBall", "LiftCube", "TouchBlock")
    }
    # Each user task gets every test a built-in task gets, and every one passes.
    assert per_task["ReachBall"] >= 10 and len(set(per_task.values())) == 1, (per_task, tail)
    assert any("builtin_tasks" in test for test in passed), tail
    assert " FAILED" not in result.stdout and " ERROR" not in result.stdout, tail


def test_check_task_passes_the_readme_example_and_the_skeleton(user_tasks, capsys):
    for task in ("lift", "touch_block"):
        assert cli(["check-task", task, "--episodes", "10"]) == 0, capsys.readouterr().out
        out = capsys.readouterr().out
        assert "0 failed" in out and "FAIL" not in out, out
        assert "expert success 1.00" in out or "expert success 0.9" in out, out


def test_envs_lists_user_tasks_with_short_names(user_tasks, capsys):
    assert cli(["envs"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^touch_block\s+autodidact/TouchBlock-v0\s+20\s+\w", out, re.M), out
    assert re.search(r"^reach\s+autodidact/ReachBall-v0", out, re.M), out


def test_new_task_refuses_bad_names_and_existing_tasks(tmp_path, capsys):
    assert cli(["new-task", "Lift-Cube", "--dir", str(tmp_path)]) == 2
    assert "not a snake_case Python name" in capsys.readouterr().err
    assert cli(["new-task", "class", "--dir", str(tmp_path)]) == 2
    assert "'class' is a Python keyword" in capsys.readouterr().err
    assert cli(["new-task", "reach", "--dir", str(tmp_path)]) == 2
    assert "already registered as 'reach'" in capsys.readouterr().err
    (tmp_path / "mine.py").write_text("# mine\n")
    assert cli(["new-task", "mine", "--dir", str(tmp_path)]) == 2
    assert "mine.py' already exists" in capsys.readouterr().err
    assert (tmp_path / "mine.py").read_text() == "# mine\n"
    assert not (tmp_path / "mine.xml").exists()


# ---- defects: each error names the task and what to add -----------------------------------------

SKELETON = Path(envs.__file__).with_name("reach.py").read_text()


def _defective(tmp_path, monkeypatch, name: str, replace: tuple[str, str]) -> str:
    """Register a copy of ReachBall (in a temporary module) with one change; return its id."""
    source = SKELETON.replace('with_name("reach.xml")', f'with_name("{name}.xml")')
    assert replace[0] in source, replace
    source = source.replace(*replace)
    (tmp_path / f"{name}.py").write_text(source)
    (tmp_path / f"{name}.xml").write_text(Path(envs.__file__).with_name("reach.xml").read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    camel = "".join(p.capitalize() for p in name.split("_"))
    task_id = envs.register_task(name, f"{camel}-v0", f"{name}:ReachBallEnv", 20)
    return task_id


@pytest.fixture
def registered(request):
    made: list[str] = []
    yield made
    for task_id in made:
        envs.unregister_task(task_id)


DEFECTS = {
    "no_success_term": (
        '            "success": float(self._goal_satisfied(self.goal)),  # sparse: 1 when touching\n',
        "",
        r"_reward_terms\(\) returned \['reach_dist'\] without a 'success' term; add \"success\"",
    ),
    "goal_word_missing": (
        '"touch the {color} ball",',
        '"touch the ball",',
        r"instruction template 'touch the ball' names no goal field",
    ),
    "goal_keys_differ_from_the_template_fields": (
        'return {"color": str(colors[rng.integers(len(BALLS))])}',
        'return {"colour": str(colors[rng.integers(len(BALLS))])}',
        r"returned the goal \{'colour': '\w+'\}; expected a dict with the instruction templates' "
        r"fields \['color'\] as keys",
    ),
    "goal_value_not_a_word": (
        'return {"color": str(colors[rng.integers(len(BALLS))])}',
        'return {"color": "Dark " + str(colors[rng.integers(len(BALLS))])}',
        r"goal\['color'\] is 'Dark \w+'; expected one lower-case word",
    ),
    "goal_colour_not_in_COLORS": (
        'return {"color": str(colors[rng.integers(len(BALLS))])}',
        'return {"color": "crimson"}',
        r"goal\['color'\] is the colour 'crimson', not one of red, green, blue, yellow",
    ),
    "one_goal": (
        'return [{"color": c} for c in self.ball_color]',
        'return [{"color": c} for c in self.ball_color][:1]',
        r"_possible_goals\(\) returned .* expected a list of at least two goals",
    ),
    "bad_colour": (
        "self.set_color(name, str(color))",
        'self.set_color(name, "purple")',
        r"set_color\('ball0', 'purple'\): unknown colour 'purple'; expected one of red",
    ),
}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_a_defective_task_gets_an_error_naming_it_and_the_fix(
    defect, tmp_path, monkeypatch, registered
):
    old, new, message = DEFECTS[defect]
    name = f"defect_{defect.lower()}"
    task_id = _defective(tmp_path, monkeypatch, name, (old, new))
    registered.append(task_id)
    with pytest.raises((TaskContractError, ValueError)) as info:
        env = envs.make(task_id)
        env.reset(seed=0)
    text = str(info.value)
    assert re.search(message, text), text
    if defect != "bad_colour":  # set_color names the geom and colour, the traceback the task
        assert "ReachBallEnv" in text or task_id in text, text


def test_a_bad_entry_point_is_named_and_does_not_hide_the_other_tasks(registered, capsys):
    task_id = envs.register_task("place_on_pad", "PlaceOnPad-v0", "envs.place_on_padd:PlaceEnv", 30)
    registered.append(task_id)
    with pytest.raises(envs.TaskLoadError) as info:
        envs.make("place_on_pad")
    text = str(info.value)
    assert "autodidact/PlaceOnPad-v0" in text and "'envs.place_on_padd:PlaceEnv'" in text
    assert "No module named 'envs.place_on_padd'" in text
    assert cli(["envs"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"^reach\s+autodidact/ReachBall-v0", out, re.M), out
    assert "1 task(s) failed to load" in out and "No module named 'envs.place_on_padd'" in out
    with pytest.raises(ValueError, match=r"entry point 'envs\.place_on_pad' is not"):
        envs.register_task("pad2", "Pad-v0", "envs.place_on_pad", 30)
    with pytest.raises(ValueError, match=r"short name 'reach' is already taken"):
        envs.register_task("reach", "Reach-v1", "envs.reach:ReachBallEnv", 20)


def test_envs_import_alone_does_not_import_task_modules():
    code = textwrap.dedent(
        """
        import sys, envs
        assert not any(m.startswith("envs.reach") for m in sys.modules), sorted(sys.modules)
        """
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_a_contract_error_at_import_names_the_rule_not_the_entry_point(
    tmp_path, monkeypatch, registered
):
    """A class that breaks the contract as it is defined (one instruction template) imports from
    the right module path: the error says what to fix, without the entry-point hint."""
    start = SKELETON.index("instruction_templates = (")
    block = SKELETON[start : SKELETON.index(")", start) + 1]
    one = 'instruction_templates = ("touch the {color} ball",)'
    task_id = _defective(tmp_path, monkeypatch, "one_template", (block, one))
    registered.append(task_id)
    with pytest.raises(envs.TaskLoadError) as info:
        envs.make("one_template")
    text = str(info.value)
    assert task_id in text and "expected a tuple of at least two str.format templates" in text
    assert "module path" not in text, text


def test_a_broken_mjcf_is_named_with_its_file(tmp_path, monkeypatch, registered):
    task_id = _defective(tmp_path, monkeypatch, "broken_xml", ("", ""))
    registered.append(task_id)
    xml = tmp_path / "broken_xml.xml"
    xml.write_text(xml.read_text().replace("</mujoco>", "<body></mujoco>"))
    with pytest.raises(TaskContractError) as info:
        envs.make(task_id).reset(seed=0)
    assert f"its MJCF {str(xml)!r} does not load" in str(info.value), str(info.value)
    assert "line" in str(info.value).lower()

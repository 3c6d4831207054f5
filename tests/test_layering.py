"""The import graph: no module circle, no circle between packages (`train`'s subpackages count as
packages), and each package imports only what `../shared/DESIGN.md`'s table allows. Read from the
source (every import statement, also those inside functions; those under `if TYPE_CHECKING:` are
annotations only and do not count)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "envs", "verifiers", "train")
FORBIDDEN = {
    "envs": ("agent", "train", "verifiers", "torch", "transformers"),
    "agent": ("train", "verifiers"),
    "verifiers": ("train",),
}
"""DESIGN.md's "must not import" column."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imported_names(path: Path) -> set[str]:
    """Dotted names `path` imports (absolute; `from a import b` gives `a.b`)."""
    tree = ast.parse(path.read_text())
    annotation_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    names = set()
    for node in ast.walk(tree):
        if id(node) in annotation_only:
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import; the project imports absolutely"
            names.update(f"{node.module}.{a.name}" for a in node.names)
            names.add(node.module)
    return names


def project_module(name: str) -> str | None:
    """The longest project module that `name` is or lies in; None outside the project."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, without the edges between a package's
    `__init__` and its own modules (importing `a.b` runs `a` first; that is no circle)."""
    edges = {}
    for module, path in MODULES.items():
        targets = {project_module(n) for n in imported_names(path)} - {None, module}
        edges[module] = {
            t for t in targets if not t.startswith(module + ".") and not module.startswith(t + ".")
        }
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "train" and len(parts) > 1 else parts[0]


def test_the_checker_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back():
    assert circles(graph()) == []


def test_no_circle_between_packages():
    edges: dict[str, set[str]] = {}
    for module, targets in graph().items():
        for target in targets:
            if package(module) != package(target):
                edges.setdefault(package(module), set()).add(package(target))
    assert circles(edges) == []


def test_packages_import_only_what_the_design_allows():
    broken = [
        f"{module} imports {name}"
        for module, path in MODULES.items()
        for name in imported_names(path)
        for banned in FORBIDDEN.get(module.split(".")[0], ())
        if name == banned or name.startswith(banned + ".")
    ]
    assert broken == []

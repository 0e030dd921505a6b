"""The source layout keeps its promises: every module imports, no import cycle, no private name
imported across modules, no production module much over 400 lines."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("workers", "tasks", "models", "api_stub", "rrpd", "pagerduty_sim")
# Production code (shipped in the image); the simulator and the dev tools are not.
PRODUCTION = ("workers", "tasks", "models", "api_stub", "rrpd")
NOT_PRODUCTION = ("rrpd/dev/", "models/migrations/")
MAX_LINES = 420


def _files(packages: tuple[str, ...] = PACKAGES) -> Iterator[Path]:
    for package in packages:
        yield from sorted((ROOT / package).rglob("*.py"))
    if packages is PACKAGES or "workers" in packages:
        yield ROOT / "celeryconfig.py"


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {
    _module(p): p
    for p in _files()
    if "models/migrations" not in str(p.relative_to(ROOT)) and p.name != "__main__.py"
}


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if MODULES[module].name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _in_type_checking(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in ast.walk(node):
                if hasattr(child, "lineno"):
                    lines.add(child.lineno)
    return lines


def _imports(module: str) -> Iterator[tuple[ast.AST, str, list[str]]]:
    """(node, imported module, names) for every import, function-level ones included."""
    tree = ast.parse(MODULES[module].read_text())
    skip = _in_type_checking(tree)
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            names = [a.name for a in node.names]
            # ``from package import submodule`` imports the submodule.
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            yield node, target, [n for n in names if f"{target}.{n}" not in MODULES]
            for sub in subs:
                yield node, sub, []


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for _node, target, _names in _imports(module):
            # Importing a.b.c runs a/__init__ and a/b/__init__ too, but those are docstrings
            # only here; the edge that matters is to the module itself.
            if target in MODULES and target != module:
                graph[module].add(target)
    return graph


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module: str) -> None:
    if module.startswith("rrpd.dev") and importlib.util.find_spec("rrpd.dev") is None:
        pytest.skip("development tools not installed")
    importlib.import_module(module)


def test_no_import_cycle() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_private_name_is_imported_across_modules() -> None:
    found = []
    for module in MODULES:
        for node, target, names in _imports(module):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target != module:
                found.append(f"{module}:{node.lineno} from {target} import {', '.join(private)}")
    assert not found, "\n".join(found)


def test_production_modules_stay_small() -> None:
    big = []
    for path in _files(PRODUCTION):
        rel = str(path.relative_to(ROOT))
        if rel.startswith(NOT_PRODUCTION):
            continue
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            big.append(f"{rel}: {lines} lines")
    assert not big, "split these modules:\n" + "\n".join(big)

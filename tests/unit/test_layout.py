"""The source layout keeps its promises: every module imports, no import cycle, no private name
imported across modules, no production module much over 400 lines. The tests keep theirs: each
test module lives in tests/unit, tests/integration or tests/e2e, in a directory that mirrors a
source package, and imports no other test module (shared code lives in tests/support)."""

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


TESTS = ROOT / "tests"
TEST_SIDES = ("unit", "integration")


def _test_modules() -> Iterator[Path]:
    yield from sorted(p for p in TESTS.rglob("test_*.py") if "artifacts" not in p.parts)


def test_every_test_module_lives_in_a_side_that_mirrors_a_source_package() -> None:
    misplaced = []
    for path in _test_modules():
        rel = path.relative_to(TESTS)
        side, *dirs = rel.parent.parts or ("",)
        if side == "e2e" and not dirs:
            continue
        if side not in TEST_SIDES:
            misplaced.append(f"{rel}: not under tests/unit, tests/integration or tests/e2e")
        elif dirs and not (ROOT.joinpath(*dirs) / "__init__.py").is_file():
            misplaced.append(f"{rel}: {'/'.join(dirs)} is not a source package")
    assert not misplaced, "\n".join(misplaced)


def test_every_test_directory_is_a_package() -> None:
    # ``--import-mode=importlib`` needs no __init__.py, but helpers on other branches add them
    # in the same directories; one rule keeps the merged trees alike.
    missing = [
        str(d.relative_to(TESTS))
        for side in (*TEST_SIDES, "e2e", "support")
        for d in [TESTS / side, *sorted((TESTS / side).rglob("*"))]
        if d.is_dir() and d.name != "__pycache__" and not (d / "__init__.py").is_file()
    ]
    assert not missing, "add an empty __init__.py to: " + ", ".join(missing)


def _test_imports(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # A relative import reaches a sibling: a test module or a conftest.
                yield node.lineno, "." * node.level + (node.module or "")
            elif node.module == "tests":
                for alias in node.names:
                    yield node.lineno, f"tests.{alias.name}"
            else:
                yield node.lineno, node.module or ""


def test_tests_import_only_tests_support() -> None:
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        if "artifacts" in path.parts:
            continue
        for lineno, target in _test_imports(path):
            shared = target == "tests.support" or target.startswith("tests.support.")
            if target.startswith(".") or (target.startswith("tests.") and not shared):
                found.append(f"{path.relative_to(ROOT)}:{lineno} imports {target}")
    assert not found, "move what tests share to tests/support:\n" + "\n".join(found)

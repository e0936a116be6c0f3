"""The package's shape: modules form layers (no import loop), and none grows too big.

Every import counts, those inside functions and under `TYPE_CHECKING` included: a loop through
either is still a loop in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "oxedit"
BENCHMARKS = PACKAGE.parent / "benchmarks"
MAX_LINES = 400
MAX_CLIENT_LINES = 250


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Each module of the package -> the package's modules it imports (anywhere in it)."""
    paths = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    module = ".".join([*base, node.module] if node.module else base)
                else:
                    module = node.module or ""
                # `from . import _x` imports the module `_x`; `from ._x import y`, `_x`.
                subs = {f"{module}.{alias.name}" for alias in node.names} & paths.keys()
                targets.update(subs or {module})
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop as `[a, b, ..., a]`, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_package_has_no_import_loop() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import loop: " + " -> ".join(cycle or [])


def test_a_loop_is_found_through_type_checking_and_function_imports(tmp_path: Path) -> None:
    package = tmp_path / "oxedit"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "_a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                   "    from ._b import B\n")  # fmt: skip
    (package / "_b.py").write_text("def f():\n    from . import _c\n")
    (package / "_c.py").write_text("from oxedit._a import x\n")
    graph = import_graph(package)
    assert graph["oxedit._a"] == {"oxedit._b"}
    assert find_cycle(graph) == ["oxedit._a", "oxedit._b", "oxedit._c", "oxedit._a"]
    (package / "_c.py").write_text("import oxedit\n")
    assert find_cycle(import_graph(package)) is None


@pytest.mark.parametrize("path", sorted(BENCHMARKS.rglob("*.py")), ids=lambda p: p.name)
def test_no_benchmark_module_is_over_400_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"benchmarks/{path.name} has {lines} lines"


def test_the_client_is_a_thin_facade() -> None:
    lines = len((PACKAGE / "_client.py").read_text(encoding="utf-8").splitlines())
    assert lines < MAX_CLIENT_LINES, f"_client.py has {lines} lines"

"""The package's shape: its folders are layers, imports only run downwards, and there is no loop.

The layers, top to bottom (a module may import its own layer and those below it, never one
above):

| layer | modules | what it is |
|---|---|---|
| cli | `oxedit._cli` (with `report/`), `oxedit.__main__` | the `oxedit` command |
| server | `oxedit.server`, `oxedit.testing` | the local Oxen server; the pytest plugin |
| facade | `oxedit`, `_client`, `_sync`, `types`, `ray` (under `oxedit.`) | the public API |
| bulk | `oxedit._bulk` | `client.map`: journal, resume, cost guard |
| engine | `oxedit._engine` | a job's life: tracker, registry, stream, enqueue, schedule, pacing |
| resources | `oxedit._resources` | the endpoints as typed calls: inputs, checks, uploads, results |
| http | `oxedit._http` | transport, its slots, sessions, retried calls, retry engine, hooks, SSE |
| base | the other top-level modules | models, exceptions, configuration, constants |

Every import counts, those inside functions and under `TYPE_CHECKING` included: a loop or an
upward import through either is still one in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "oxedit"

# Top to bottom. A module belongs to the first layer one of whose prefixes names it or a
# package above it; the base is listed whole, so that a new top-level module is placed on purpose.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("cli", ("oxedit._cli", "oxedit.__main__")),
    ("server", ("oxedit.server", "oxedit.testing")),
    ("facade", ("oxedit._client", "oxedit._sync", "oxedit.types", "oxedit.ray", "oxedit")),
    ("bulk", ("oxedit._bulk",)),
    ("engine", ("oxedit._engine",)),
    ("resources", ("oxedit._resources",)),
    ("http", ("oxedit._http",)),
    (
        "base",
        (
            "oxedit._atomic",
            "oxedit._catalogue",
            "oxedit._clock",
            "oxedit._config",
            "oxedit._constants",
            "oxedit._display",
            "oxedit._exceptions",
            "oxedit._logging",
            "oxedit._models",
            "oxedit._response",
            "oxedit._version",
        ),
    ),
]


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


def layer_of(module: str, layers: list[tuple[str, tuple[str, ...]]] = LAYERS) -> int | None:
    """The index of `module`'s layer (0 is the top), or None when no layer names it."""
    for index, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            if module == prefix or (prefix != "oxedit" and module.startswith(prefix + ".")):
                return index
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a lower layer to a higher one, as `a (layer) -> b (layer)`."""
    found = []
    for module, targets in sorted(graph.items()):
        here = layer_of(module)
        for target in sorted(targets):
            there = layer_of(target)
            if here is not None and there is not None and there < here:
                found.append(f"{module} ({LAYERS[here][0]}) -> {target} ({LAYERS[there][0]})")
    return found


def test_the_package_has_no_import_loop() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import loop: " + " -> ".join(cycle or [])


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in import_graph() if layer_of(m) is None)
    assert unplaced == [], f"place these in a layer folder (or in LAYERS' base): {unplaced}"


def test_no_layer_imports_a_higher_one() -> None:
    assert upward_imports(import_graph()) == []


def test_the_layers_are_folders() -> None:
    # Each layer below the facade but the base is one folder of the package.
    for name in ("bulk", "engine", "resources", "http", "cli"):
        assert (PACKAGE / f"_{name}" / "__init__.py").is_file(), name


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


@pytest.mark.parametrize(
    ("source", "upward"),
    [
        ("def f():\n    from .._engine import tracker\n", True),  # a function-level import
        ("if TYPE_CHECKING:\n    from oxedit._bulk import run\n", True),  # under TYPE_CHECKING
        ("from .. import _models\nfrom . import api\n", False),
    ],
)
def test_an_upward_import_is_found(tmp_path: Path, source: str, upward: bool) -> None:
    package = tmp_path / "oxedit"
    for folder in ("_http", "_engine", "_bulk"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "_models.py").write_text("")
    (package / "_http" / "api.py").write_text("")
    (package / "_engine" / "tracker.py").write_text("")
    (package / "_bulk" / "run.py").write_text("")
    (package / "_http" / "transport.py").write_text(source)
    found = upward_imports(import_graph(package))
    assert bool(found) is upward, found

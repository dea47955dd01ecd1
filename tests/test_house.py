"""The house rules on imports: no import cycle and no private name imported across modules.

Every module of ``einspace/``, ``search/`` and ``analysis/`` is parsed with :mod:`ast`;
function-level imports count, ``if TYPE_CHECKING:`` blocks do not. An edge A → B means A
imports B (``from pkg import name`` counts as importing ``pkg.name`` when that is a module).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("einspace", "search", "analysis")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement outside ``if TYPE_CHECKING:`` blocks (their ``else`` counts)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a ``from … import`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def import_graph() -> tuple[nx.DiGraph, list[str]]:
    """The module import graph and every cross-module private import, as text."""
    modules = all_modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    private = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in runtime_imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                source = resolve(name, path, node)
                targets = [source]
                for alias in node.names:
                    full = f"{source}.{alias.name}"
                    if full in modules:
                        targets.append(full)
                    elif alias.name.startswith("_") and source in modules:
                        private.append(
                            f"{path.relative_to(ROOT)}:{node.lineno}: "
                            f"from {source} import {alias.name}"
                        )
            for target in targets:
                if target in modules and target != name:
                    graph.add_edge(name, target, line=node.lineno)
    return graph, private


def _package_edge(graph: nx.DiGraph, a: str, b: str) -> bool:
    """An edge from a package's ``__init__`` to its own submodule (re-exports) or back is
    how Python packages load; the cycle a package forms with its children is not counted."""
    return b.startswith(a + ".") or a.startswith(b + ".")


def import_cycles(graph: nx.DiGraph) -> list[list[str]]:
    g = nx.DiGraph((a, b) for a, b in graph.edges if not _package_edge(graph, a, b))
    return [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]


def test_no_import_cycle_and_no_private_import_across_modules() -> None:
    graph, private = import_graph()
    cycles = import_cycles(graph)
    lines = [f"cycle: {' ↔ '.join(c)}" for c in cycles]
    lines += [f"private import: {p}" for p in private]
    assert not lines, f"{len(cycles)} cycle(s), {len(private)} private import(s):\n" + "\n".join(
        lines
    )


def test_the_checker_sees_function_level_imports_and_skips_type_checking() -> None:
    """The checker itself, on a made-up tree: it must find what it is meant to find."""
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from b import B\n"
        "def f():\n    from c import _hidden\n    import d\n"
    )
    found = sorted(
        (n.module if isinstance(n, ast.ImportFrom) else n.names[0].name) or ""
        for n in runtime_imports(tree)
    )
    assert found == ["c", "d", "typing"]
    cyclic = nx.DiGraph([("pkg.a", "pkg.b"), ("pkg.b", "pkg.a"), ("pkg", "pkg.a")])
    cyclic.add_edge("pkg.a", "pkg")
    assert import_cycles(cyclic) == [["pkg.a", "pkg.b"]]


def test_the_core_modules_have_no_cycle() -> None:
    """What this branch fixed, checked strictly: no cycle among einspace's own modules."""
    graph, _ = import_graph()
    core = graph.subgraph(n for n in graph if n.split(".")[0] == "einspace")
    assert not import_cycles(nx.DiGraph(core)), import_cycles(nx.DiGraph(core))


# ---------------------------------------------------------------- dependencies as used
#: import name → distribution name, where they differ
DISTRIBUTION = {"sklearn": "scikit-learn", "yaml": "pyyaml"}


def third_party_imports() -> dict[str, list[str]]:
    """Top-level third-party module → the files importing it (function-level included)."""
    import sys

    ours = set(PACKAGES)
    found: dict[str, list[str]] = {}
    for name, path in all_modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top not in ours and top not in sys.stdlib_module_names and top != "__future__":
                    found.setdefault(top, []).append(name)
    return found


def test_every_third_party_import_is_declared() -> None:
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {
        re.split(r"[<>=!~\[ ;]", dep, maxsplit=1)[0].lower().replace("_", "-")
        for dep in project["dependencies"]
    }
    missing = {
        top: files
        for top, files in third_party_imports().items()
        if DISTRIBUTION.get(top, top).lower().replace("_", "-") not in declared
    }
    assert not missing, f"imported but not in [project] dependencies: {missing}"
    assert "scipy" in third_party_imports()  # the check sees the import it was written for

"""No import cycles inside `edgekiln`: among its modules, and among the compiler's sub-packages.

The graph is read with `ast` (nothing is imported) and counts every import statement: module level, inside a
function, and under `if TYPE_CHECKING:`; an import hidden in a function is still a dependency. `from p import x`
is an edge to the module `p.x` when there is one, else to `p` (its `__init__`). Imports of other distributions
are not edges.
"""

from __future__ import annotations

import ast
import functools
import tomllib
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import ROOT

Edge = tuple[str, str]
Graph = dict[str, set[str]]

C = "edgekiln.compiler."


def _package_dirs() -> dict[str, Path]:
    """Each import package (pyproject's `packages`) and its folder (`package-dir`, nearest mapped parent)."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped: dict[str, str] = setuptools["package-dir"]
    dirs = {}
    for package in setuptools["packages"]:
        base = max((name for name in mapped if package == name or package.startswith(name + ".")), key=len)
        dirs[package] = ROOT / mapped[base] / Path(*package[len(base):].split(".")[1:])
    return dirs


def _modules() -> dict[str, tuple[Path, bool]]:
    """Every module of the distribution: dotted name -> (file, is a package `__init__`)."""
    modules = {}
    for package, folder in _package_dirs().items():
        for file in sorted(folder.glob("*.py")):
            is_init = file.name == "__init__.py"
            modules[package if is_init else f"{package}.{file.stem}"] = (file, is_init)
    return modules


def _imported(node: ast.Import | ast.ImportFrom, name: str, is_init: bool, known: set[str]) -> Iterator[str]:
    """The modules of this package that one import statement in module `name` depends on."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            parts = alias.name.split(".")
            # `import a.b.c` binds `a` but depends on `a.b.c`: the longest prefix that is one of ours.
            yield from [".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in known][:1]
        return
    base = node.module or ""
    if node.level:
        # Relative: level 1 is the module's own package (itself, for an __init__), each further dot one up.
        package = name.split(".") if is_init else name.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join(package + ([base] if base else []))
    for alias in node.names:
        if f"{base}.{alias.name}" in known:
            yield f"{base}.{alias.name}"
        elif base in known:
            yield base


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement, nested ones included (function and class bodies, if / try / with / match blocks).

    An import is a statement, so expressions need no visit: ten times faster than `ast.walk`."""
    for node in body:
        yield node
        for block in ("body", "orelse", "finalbody", "handlers", "cases"):
            for inner in getattr(node, block, ()):
                yield from _statements(inner.body) if isinstance(inner, ast.excepthandler | ast.match_case) \
                    else _statements([inner])


def module_imports(source: str | bytes, name: str, is_init: bool, known: set[str]) -> set[str]:
    """The modules among `known` that the source of module `name` imports, anywhere in it."""
    imports = (node for node in _statements(ast.parse(source).body) if isinstance(node, ast.Import | ast.ImportFrom))
    return {target for node in imports for target in _imported(node, name, is_init, known)} - {name}


@functools.cache
def import_graph() -> Graph:
    """Module -> the modules of this distribution it imports (the sources are read once per session)."""
    modules = _modules()
    return {name: module_imports(file.read_bytes(), name, is_init, set(modules))
            for name, (file, is_init) in modules.items()}


def _unit(module: str) -> str:
    """The node of the package graph: `edgekiln.compiler.X.*` collapses to `edgekiln.compiler.X`."""
    if module.startswith(C):
        return C + module[len(C):].split(".")[0]
    return module


def package_graph(graph: Graph) -> Graph:
    """The module graph with each compiler sub-package collapsed to one node (top-level modules stay apart)."""
    collapsed: Graph = {}
    for source, targets in graph.items():
        collapsed.setdefault(_unit(source), set()).update(_unit(t) for t in targets)
    return {node: targets - {node} for node, targets in collapsed.items()}


def strongly_connected(graph: Graph) -> list[list[str]]:
    """The graph's strongly connected components of more than one node, each sorted (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            child = next((s for s in successors if s not in index or s in on_stack), None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
            elif child in index:
                low[node] = min(low[node], index[child])
            else:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
    return sorted(components)


def _shortest_path(graph: Graph, start: str, goal: str, inside: set[str]) -> list[str]:
    """The shortest path start -> ... -> goal through the nodes `inside` (breadth first)."""
    came_from = {start: start}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for successor in sorted(graph[node] & inside):
                if successor not in came_from:
                    came_from[successor] = node
                    following.append(successor)
        frontier = following
    path = [goal]
    while path[-1] != start:
        path.append(came_from[path[-1]])
    return path[::-1]


def cycles(graph: Graph) -> list[str]:
    """Each cycle as `a -> b -> a`: per strongly connected component, one shortest cycle through each edge in it."""
    found = []
    for component in strongly_connected(graph):
        inside = set(component)
        seen: set[tuple[str, ...]] = set()
        for source in component:
            for target in sorted(graph[source] & inside):
                path = [source, *_shortest_path(graph, target, source, inside)]
                start = path.index(min(path[:-1]))
                canonical = tuple(path[start:-1] + path[:start])  # the same cycle reached from another edge
                if canonical not in seen:
                    seen.add(canonical)
                    found.append(" -> ".join((*canonical, canonical[0])))
    return sorted(found)


def _short(text: str) -> str:
    return text.replace(C, "").replace("edgekiln.", "")


def _listed(title: str, found: list[str]) -> str:
    return f"{title} (names without edgekiln.compiler. / edgekiln.):\n" + "\n".join(map(_short, found))


def test_no_cycle_among_modules() -> None:
    found = cycles(import_graph())
    assert not found, _listed("import cycles among modules", found)


def test_no_cycle_among_the_compilers_sub_packages() -> None:
    found = cycles(package_graph(import_graph()))
    assert not found, _listed("import cycles among the compiler's sub-packages", found)


SOURCE = """
import numpy
import p.a
from . import b
from .c import name
from ..top import thing
from p import nothing_of_that_name
if TYPE_CHECKING:
    from p.d import Record
def f():
    try:
        from p import e
    except ImportError:
        import p.f as g
class K:
    def m(self):
        from p.g import sub
"""


def test_the_reader_counts_every_kind_of_import() -> None:
    known = {"p", "p.a", "p.x", "p.x.b", "p.x.c", "p.top", "p.d", "p.e", "p.f", "p.g", "p.g.sub", "p.x.m"}
    found = module_imports(SOURCE, "p.x.m", False, known)
    assert found == {"p.a", "p.x.b", "p.x.c", "p.top", "p", "p.d", "p.e", "p.f", "p.g.sub"}
    # In a package's __init__, one dot is the package itself.
    assert module_imports("from . import b\nfrom .. import top", "p.x", True, known) == {"p.x.b", "p.top"}
    # The real package: relative imports inside runtime/, `from edgekiln import targets` a module.
    graph = import_graph()
    assert "edgekiln.runtime.model" in graph["edgekiln.runtime"]
    assert "edgekiln.targets" in graph[C + "pipeline"]


def test_cycles_are_found_and_named_once_each() -> None:
    graph = {"a": {"b"}, "b": {"c", "a"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == ["a -> b -> a", "a -> b -> c -> a"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a"}}) == []
    modules = {C + "x.one": {C + "y.two"}, C + "y.three": {C + "x"}, C + "x": set(), C + "y.two": set()}
    assert cycles(package_graph(modules)) == [f"{C}x -> {C}y -> {C}x"]

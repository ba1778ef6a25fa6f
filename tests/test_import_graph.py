"""The package's import graph has no circles: a lower module never imports an upper one.

Every ``import`` counts, the lazy ones inside functions too (a lazy import only hides a circle);
imports under ``if TYPE_CHECKING:`` do not (they never run). A package's ``__init__`` that
re-exports its submodules is not a circle with them: only the edges written in the code count.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "photoz_tools"

# Circles tolerated for now, each as its set of modules, e.g.
# frozenset({"photoz_tools.plots", "photoz_tools.scoring"}); none today: keep it that way.
KNOWN_CYCLES: list[frozenset[str]] = []


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The package modules that `module` imports (resolved to the deepest known module)."""
    found: set[str] = set()

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = resolve(alias.name)
                if target:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            for alias in node.names:
                target = resolve(f"{name}.{alias.name}") if name else None
                if target == resolve(name) or target is None:
                    target = resolve(name)  # a name defined in the module, not a submodule
                if target:
                    found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {
        name: _imports(
            ast.parse(path.read_text(), str(path)), name, path.name == "__init__.py", known
        )
        for name, path in mods.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        comp.add(member)
                        if member == node:
                            break
                    if len(comp) > 1:
                        out.append(frozenset(comp))
    return out


def _describe(graph: dict[str, set[str]], comp: frozenset[str]) -> str:
    edges = [f"{a} -> {b}" for a in sorted(comp) for b in sorted(graph[a] & comp)]
    return "{" + ", ".join(sorted(comp)) + "}: " + "; ".join(edges)


def test_the_graph_sees_the_package():
    graph = import_graph()
    assert "photoz_tools.tables" in graph and "photoz_tools.sdss.standin" in graph
    assert "photoz_tools.imaging.resample" in graph["photoz_tools.imaging.frames"]
    assert "photoz_tools.imaging.frames" in graph["photoz_tools.sdss.frameindex"]  # a lazy one
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset({"a", "b", "c"})]


def test_no_import_cycles():
    graph = import_graph()
    new = [c for c in cycles(graph) if c not in KNOWN_CYCLES]
    assert not new, "import circles:\n" + "\n".join(_describe(graph, c) for c in new)


def test_numpy_core_imports_nothing_of_the_package():
    graph = import_graph()
    for core in ("photoz_tools.pdf", "photoz_tools.metrics", "photoz_tools.imaging.resample"):
        assert graph[core] <= {"photoz_tools"}, (core, graph[core])

"""The package's import structure: floors, no upward imports, no import circles.

Each top-level part of ``pyrostruct`` sits on a floor and imports only from
floors below it (README "Layout"); modules never import each other in a
circle, not even through imports deferred into functions.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "pyrostruct"

FLOORS = {
    "pyrostruct": 0,  # the package root: __version__ and lazy top-level names only
    "errors": 0,
    "_pyro_compat": 0,
    "_io": 1,
    "data": 1,
    "graph": 1,
    "executors": 1,
    "distributions": 2,
    "handlers": 3,
    "nn": 3,
    "infer": 4,
    "causal": 5,
    "selection": 5,
    "commands": 6,
    "cli": 6,
    "demo": 7,
    "__main__": 7,
}


def _module_name(path: pathlib.Path) -> str:
    parts = ["pyrostruct", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _imports(name: str) -> set[str]:
    """The pyrostruct modules ``name`` imports (anywhere in it, deferred imports included)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [(base, [a.name for a in node.names])]
        else:
            continue
        for module, names in targets:
            if not module.startswith("pyrostruct"):
                continue
            subs = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
            out.update(subs or [module])
    out.discard(name)
    return out


GRAPH = {name: _imports(name) for name in MODULES}


def _part(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "pyrostruct"


def test_every_part_has_a_floor():
    assert {_part(m) for m in MODULES} <= set(FLOORS), set(map(_part, MODULES)) - set(FLOORS)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_only_from_floors_below(name):
    upward = sorted(
        t for t in GRAPH[name]
        if _part(t) != _part(name) and FLOORS[_part(t)] >= FLOORS[_part(name)]
    )  # fmt: skip
    assert not upward, f"{name} imports from its own floor or above: {upward}"


def test_no_import_circles():
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in MODULES:
                continue
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
                cycles.append(sorted(component))

    for v in sorted(MODULES):
        if v not in index:
            visit(v)
    assert not cycles, cycles

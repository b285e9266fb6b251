"""Import graph of cryoal (and its CLI): module cycles and arrows between layers.

Parses every ``.py`` file under ``cryoal/`` and ``cli/`` with :mod:`ast` (nothing is
imported or run) and builds the graph of ``cryoal.*`` imports. ``cli/`` installs as
``cryoal.cli``, so ``cli/select.py`` is the module ``cryoal.cli.select``. An import of a
package points at its ``__init__``; ``from pkg import name`` points at ``pkg.name`` when
that is a module, else at ``pkg``. Importing a submodule does not add an arrow to its
parent packages (Python runs their ``__init__`` first, but that is not a dependency of
the importing module's own code).

Three readings of "cycle" are reported:

- **module cycles, top level**: strongly connected components of the graph of imports
  that run when a module is imported (module body, not inside functions, not under
  ``if TYPE_CHECKING``). These can break an import.
- **module cycles, all imports**: the same with imports inside functions and under
  ``TYPE_CHECKING`` too: the architectural cycles that deferred imports hide.
- **layer cycles**: the graph collapsed to layers (``cryoal.io``, ``cryoal.viz``, ...;
  a top-level module such as ``cryoal.train`` is a layer of its own), all imports; every
  pair of layers that import each other is listed with one file:line per direction.

Example usage:
    python benchmarks/import_graph.py                 # summary + cycles
    python benchmarks/import_graph.py --layers        # also every layer -> layer arrow
    python benchmarks/import_graph.py --mermaid       # layer graph as a mermaid block
    python benchmarks/import_graph.py --mermaid --reduce   # the picture in docs/architecture.md
    python benchmarks/import_graph.py --json out.json # everything, machine-readable
"""

from __future__ import annotations

import argparse
import ast
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"cryoal": ROOT / "cryoal", "cryoal.cli": ROOT / "cli"}


@dataclass(frozen=True)
class Edge:
    """One import: ``src`` imports ``dst`` at ``path:line``."""

    src: str
    dst: str
    path: str
    line: int
    top_level: bool


def _modules() -> dict[str, Path]:
    """Map every module name under the sources to its file."""
    mods: dict[str, Path] = {}
    for prefix, folder in SOURCES.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([prefix, *parts]) if parts else prefix
            mods[name] = path
    return mods


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement with whether it runs at module import time."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append((child, top))
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, False)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    visit(ast.Module(body=[stmt], type_ignores=[]), False)
                for stmt in child.orelse:
                    visit(ast.Module(body=[stmt], type_ignores=[]), top)
            else:
                visit(child, top)

    visit(tree, True)
    return found


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` is, or lies inside; None outside cryoal."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in mods:
            return cand
        parts.pop()
    return None


def build_graph() -> tuple[dict[str, Path], list[Edge]]:
    """Parse the sources and return (modules, import edges between them)."""
    mods = _modules()
    edges: list[Edge] = []
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_pkg = path.name == "__init__.py"
        rel_path = str(path.relative_to(ROOT))
        for node, top in _imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    stem = ".".join([*base, node.module] if node.module else base)
                else:
                    stem = node.module or ""
                targets = [f"{stem}.{alias.name}" for alias in node.names] or [stem]
                targets = [t if _resolve(t, mods) == t else stem for t in targets]
            for target in targets:
                dst = _resolve(target, mods)
                if dst is not None and dst != mod:
                    edges.append(Edge(mod, dst, rel_path, node.lineno, top))
    return mods, edges


def strongly_connected(nodes: list[str], arrows: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one node, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[list[str]] = []
    counter = 0

    def connect(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(arrows.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            connect(v)
    return sorted(comps, key=lambda c: (-len(c), c))


def layer_of(module: str) -> str:
    """``cryoal.io.mrc`` -> ``io``; ``cryoal.train`` -> ``train``; ``cryoal`` -> ``cryoal``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def analyse() -> dict[str, object]:
    """Every measure this script reports, as plain data."""
    mods, edges = build_graph()
    top: dict[str, set[str]] = defaultdict(set)
    every: dict[str, set[str]] = defaultdict(set)
    layers: dict[str, set[str]] = defaultdict(set)
    where: dict[tuple[str, str], str] = {}
    for e in edges:
        every[e.src].add(e.dst)
        if e.top_level:
            top[e.src].add(e.dst)
        a, b = layer_of(e.src), layer_of(e.dst)
        if a != b and a != "cryoal" and b != "cryoal":
            layers[a].add(b)
            where.setdefault((a, b), f"{e.path}:{e.line}")
    names = list(mods)
    layer_names = sorted({layer_of(m) for m in names} - {"cryoal"})
    mutual = sorted(
        (a, b) for a in layers for b in layers[a] if a < b and a in layers.get(b, set())
    )
    return {
        "modules": len(mods),
        "edges": len({(e.src, e.dst) for e in edges}),
        "cycles_top_level": strongly_connected(names, top),
        "cycles_all_imports": strongly_connected(names, every),
        "layer_cycles": strongly_connected(layer_names, layers),
        "layer_mutual_pairs": [
            {"pair": [a, b], "a_to_b": where[(a, b)], "b_to_a": where[(b, a)]} for a, b in mutual
        ],
        "layer_edges": {a: sorted(bs) for a, bs in sorted(layers.items())},
        "layer_edge_where": {f"{a}->{b}": w for (a, b), w in sorted(where.items())},
    }


#: Leaf modules every layer may import (errors, atomic writes, version, runtime, view hooks).
BASE_LAYERS = ("_atomic", "_repr", "_version", "errors", "runtime")


def transitive_reduction(arrows: dict[str, list[str]]) -> dict[str, list[str]]:
    """Drop every arrow ``a -> c`` that another path ``a -> b -> ... -> c`` implies.

    Only meaningful on an acyclic graph (the layer graph once it has no cycles).
    """

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(arrows.get(start, ()))
        while todo:
            v = todo.pop()
            if v not in seen:
                seen.add(v)
                todo.extend(arrows.get(v, ()))
        return seen

    reduced: dict[str, list[str]] = {}
    for a, bs in arrows.items():
        implied = set().union(*(reach(b) for b in bs)) if bs else set()
        reduced[a] = [b for b in bs if b not in implied]
    return reduced


def mermaid(result: dict[str, object], *, reduce: bool = False) -> str:
    """The layer graph as a mermaid ``flowchart``; arrows of a mutual pair are dotted.

    With ``reduce`` the base layers (:data:`BASE_LAYERS`) are left out and only the
    arrows that no longer path implies are drawn (the picture in docs/architecture.md).
    """
    layer_edges: dict[str, list[str]] = result["layer_edges"]  # type: ignore[assignment]
    mutual = {tuple(p["pair"]) for p in result["layer_mutual_pairs"]}  # type: ignore[attr-defined]
    if reduce:
        layer_edges = {
            a: [b for b in bs if b not in BASE_LAYERS]
            for a, bs in layer_edges.items()
            if a not in BASE_LAYERS
        }
        layer_edges = transitive_reduction(layer_edges)
    lines = ["flowchart TD"]
    for a, bs in layer_edges.items():
        for b in bs:
            arrow = "-.->" if (min(a, b), max(a, b)) in mutual else "-->"
            lines.append(f"    {a} {arrow} {b}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--layers", action="store_true", help="list every layer -> layer arrow")
    parser.add_argument("--mermaid", action="store_true", help="print the layer graph (mermaid)")
    parser.add_argument(
        "--reduce",
        action="store_true",
        help="with --mermaid: leave out the base layers and implied arrows",
    )
    parser.add_argument("--json", type=Path, help="write every measure to this JSON file")
    args = parser.parse_args()
    result = analyse()
    top = result["cycles_top_level"]
    every = result["cycles_all_imports"]
    assert isinstance(top, list) and isinstance(every, list)
    print(f"modules: {result['modules']}, import arrows: {result['edges']}")
    print(f"module cycles (top-level imports): {len(top)}")
    for comp in top:
        print(f"  {len(comp)}: {' '.join(comp)}")
    print(f"module cycles (all imports, incl. in functions / TYPE_CHECKING): {len(every)}")
    for comp in every:
        print(f"  {len(comp)}: {' '.join(comp)}")
    layer_cycles = result["layer_cycles"]
    assert isinstance(layer_cycles, list)
    print(f"layer cycles (strongly connected groups of layers): {len(layer_cycles)}")
    for comp in layer_cycles:
        print(f"  {len(comp)}: {' '.join(comp)}")
    pairs = result["layer_mutual_pairs"]
    assert isinstance(pairs, list)
    print(f"layer pairs importing each other: {len(pairs)}")
    for p in pairs:
        a, b = p["pair"]
        print(f"  {a} <-> {b}   ({a}->{b} {p['a_to_b']}; {b}->{a} {p['b_to_a']})")
    if args.layers:
        for arrow, at in result["layer_edge_where"].items():  # type: ignore[attr-defined]
            print(f"  {arrow}  e.g. {at}")
    if args.mermaid:
        print(mermaid(result, reduce=args.reduce))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

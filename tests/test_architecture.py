"""Arrows run one way: the import graph of cryoal/ and cli/ (benchmarks/import_graph.py).

docs/architecture.md draws these layers; a change that makes two layers import each
other, or a data layer import the presentation layer, fails here with the file:line.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def graph() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "_import_graph", ROOT / "benchmarks" / "import_graph.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.fixture(scope="module")
def result(graph: ModuleType) -> dict[str, Any]:
    analysed: dict[str, Any] = graph.analyse()
    return analysed


def test_no_layer_imports_another_that_imports_it_back(result: dict[str, Any]) -> None:
    assert result["layer_mutual_pairs"] == [], result["layer_mutual_pairs"]
    assert result["layer_cycles"] == [], result["layer_cycles"]
    assert result["cycles_top_level"] == [], result["cycles_top_level"]


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("io", "viz"),
        ("io", "active"),
        ("io", "acquisition"),
        ("viz", "benchmark"),
        ("acquisition", "viz"),
        ("acquisition", "pretrain"),
        ("tasks", "benchmark"),
        ("transforms", "io"),
    ],
)
def test_lower_layer_never_imports_higher(result: dict[str, Any], low: str, high: str) -> None:
    where = result["layer_edge_where"]
    assert f"{low}->{high}" not in where, f"{low} imports {high} at {where.get(f'{low}->{high}')}"


def test_the_graph_sees_deferred_and_relative_imports(graph: ModuleType) -> None:
    """The checker itself: imports inside functions count; TYPE_CHECKING ones are not top level."""
    _, edges = graph.build_graph()
    by_pair = {(e.src, e.dst): e for e in edges}
    # cryoal.benchmark.noise imports the model registry inside functions only
    deferred = by_pair[("cryoal.benchmark.noise", "cryoal.models")]
    assert not deferred.top_level
    # cli/ is the subpackage cryoal.cli
    assert any(src.startswith("cryoal.cli.") for src, _ in by_pair)
    comps = graph.strongly_connected(
        ["a", "b", "c", "d"], {"a": {"b"}, "b": {"a", "c"}, "c": set()}
    )
    assert comps == [["a", "b"]]


def test_transitive_reduction_keeps_only_unimplied_arrows(graph: ModuleType) -> None:
    arrows = {"cli": ["io", "tasks", "viz"], "tasks": ["viz"], "viz": ["io"], "io": []}
    assert graph.transitive_reduction(arrows) == {
        "cli": ["tasks"],
        "tasks": ["viz"],
        "viz": ["io"],
        "io": [],
    }


def test_architecture_doc_draws_the_current_layer_graph(
    graph: ModuleType, result: dict[str, Any]
) -> None:
    """docs/architecture.md's mermaid picture is what the code's imports draw now."""
    import re

    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    (drawn,) = re.findall(r"```mermaid\n(.*?)\n```", doc, flags=re.S)
    assert drawn.strip() == graph.mermaid(result, reduce=True).strip(), (
        "the layer graph changed: paste the output of "
        "`python benchmarks/import_graph.py --mermaid --reduce` (from 'flowchart TD') into "
        "docs/architecture.md and say in the text what the new arrow is for"
    )


def test_no_module_cycles_behind_deferred_imports(result: dict[str, Any]) -> None:
    """Imports inside functions (and ``TYPE_CHECKING`` imports) hide cycles from the
    import system, not from the design: there are none, at import time or behind them."""
    assert result["cycles_top_level"] == []
    assert result["cycles_all_imports"] == []

"""The docs figure script runs and writes a PNG (keeps docs/simulation.md reproducible)."""

from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_physics_figure_script_writes_png(tmp_path: Path) -> None:
    module = runpy.run_path(str(ROOT / "docs" / "make_physics_figure.py"))
    out = tmp_path / "physics.png"
    module["main"](["--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 20_000

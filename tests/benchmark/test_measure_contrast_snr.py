"""benchmarks/measure_contrast_snr.py: the docs' contrast/SNR table script runs and is right."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_table_rows(capsys: pytest.CaptureFixture[str]) -> None:
    module = runpy.run_path(str(ROOT / "benchmarks" / "measure_contrast_snr.py"))
    module["main"](["--n", "1", "--snrs", "0.1"])
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()]
    rows = [[c.strip() for c in r] for r in rows if len(r) == 5 and r[0].strip() == "0.1"]
    by = {r[1]: r for r in rows}
    for recipe in ("cryoal `white`", "cryoal `two-stage`"):
        assert float(by[recipe][3]) == pytest.approx(1.0, abs=0.05)  # measures what it names
        assert float(by[recipe][4]) < 0  # dark
    aitom = by["aitom recipe (torch)"]
    assert float(aitom[3]) == pytest.approx(0.46, abs=0.02)  # recipe-determined, seed-free
    assert float(aitom[4]) > 0  # bright

"""Quality gates run with the suite: ruff (lint + format) and mypy on the package and CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is part of the dev extra")
def test_ruff_lint_and_format_clean() -> None:
    lint = subprocess.run(
        ["ruff", "check", "cryoal", "cli", "tests", "benchmarks", "scripts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run(
        ["ruff", "format", "--check", "cryoal", "cli", "tests", "benchmarks", "scripts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_mypy_clean() -> None:
    """mypy over the package and the command line (``files`` in pyproject.toml)."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "cryoal", "cli"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-5000:]


def test_mypy_config_covers_cli() -> None:
    """A bare ``mypy`` (pre-commit, editors) checks the same files as the suite."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert set(config["tool"]["mypy"]["files"]) == {"cryoal", "cli"}

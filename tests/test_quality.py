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


def test_cli_imports_its_own_modules_relatively() -> None:
    """cli/ installs as ``cryoal.cli`` (setup.py's package_dir), but mypy checks the
    folder as the package ``cli``, where ``cryoal.cli.*`` cannot be found (it would be
    ``Any``); relative imports name the modules mypy checks, and the installed ones."""
    import ast

    absolute = []
    for file in sorted((ROOT / "cli").glob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            absolute += [f"{file.name}:{node.lineno}" for n in names if n.startswith("cryoal.cli")]
    assert absolute == [], f"import cli modules relatively (from ._common import ...): {absolute}"


#: the per-module flags ``mypy --strict`` turns on (``mypy --help``; warn_redundant_casts
#: is global-only). ``strict = true`` inside an override reaches every module in mypy 2,
#: so the core layers list them.
STRICT_FLAGS = (
    "disallow_any_generics",
    "disallow_subclassing_any",
    "disallow_untyped_calls",
    "disallow_untyped_defs",
    "disallow_incomplete_defs",
    "check_untyped_defs",
    "disallow_untyped_decorators",
    "warn_unused_ignores",
    "warn_return_any",
    "no_implicit_reexport",
    "strict_equality",
    "extra_checks",
)


def test_mypy_is_strict_on_the_core_layers() -> None:
    """io, transforms and acquisition are checked with every strict flag (test_mypy_clean
    runs that configuration)."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    core = {"cryoal.io.*", "cryoal.transforms.*", "cryoal.acquisition.*"}
    strict = [o for o in config["tool"]["mypy"].get("overrides", []) if core <= set(o["module"])]
    assert strict, "no [[tool.mypy.overrides]] for the core layers"
    missing = [f for f in STRICT_FLAGS if strict[0].get(f) is not True]
    assert not missing, f"core-layer mypy override lacks {missing}"
    assert "strict" not in strict[0]


def test_strict_flags_are_the_ones_mypy_strict_enables() -> None:
    """The list above is mypy's own (it grows with mypy versions)."""
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--help"], capture_output=True, text=True, check=True
    ).stdout
    import re

    section = out.split("--strict ", 1)[1].split("--disable-error-code", 1)[0]
    joined = "".join(section.split())  # help wraps flag names at their dashes
    enabled = {f.replace("-", "_") for f in re.findall(r"--([a-z-]+)", joined)}
    assert enabled - {"warn_redundant_casts"} == set(STRICT_FLAGS), enabled


def test_test_module_basenames_are_unique() -> None:
    """tests/ has no __init__.py files, so pytest imports each test module by its basename:
    two ``test_x.py`` in different folders break collection on a fresh clone."""
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(ROOT)} and {path.relative_to(ROOT)}")
        seen.setdefault(path.name, path)
    assert not clashes, "test modules share a basename: " + "; ".join(clashes)

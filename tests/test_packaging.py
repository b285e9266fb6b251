"""The package installs as users install it: a wheel with `cryoal.cli` inside, no bare `cli`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from cryoal._version import __version__

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Build from a clean copy: an in-tree build/ folder could leak stale modules into the wheel.
    src = tmp_path_factory.mktemp("src") / "cryoal"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".*cache"),
    )
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (whl,) = out.glob(f"cryoal-{__version__}-*.whl")
    return whl


def test_wheel_installs_cli_as_subpackage_and_ships_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "cryoal/cli/main.py" in names
    assert "cryoal/errors.py" in names
    assert not any(n.startswith("cli/") for n in names), "a bare top-level cli package leaked"
    assert any(n.startswith("cryoal/data_manifests/") and n.endswith(".yaml") for n in names)
    assert any(n.startswith("cryoal/simulate/structures/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "cryoal = cryoal.cli.main:cli" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_wheel_in_fresh_venv_runs_console_script(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    subprocess.run(
        [str(bindir / "python"), "-m", "pip", "install", "--no-deps", "-q", str(wheel)],
        check=True,
        capture_output=True,
        text=True,
    )
    # Dependencies come from this interpreter's site-packages through PYTHONPATH, which
    # (unlike a .pth-processed site dir) does not pick up the editable install of the checkout.
    env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    result = subprocess.run(
        [str(bindir / "cryoal"), "--version"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert result.stdout.strip() == f"cryoal, version {__version__}"
    where = subprocess.run(
        [str(bindir / "python"), "-c", "import cryoal.cli.main as m; print(m.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert str(env_dir) in where.stdout


def test_version_is_the_newest_changelog_release() -> None:
    """``__version__`` is a real release: the newest dated section of CHANGELOG.md names it."""
    import re

    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    releases = re.findall(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", text, flags=re.M)
    assert releases, "CHANGELOG.md has no '## [X.Y.Z] - YYYY-MM-DD' section"
    assert releases[0][0] == __version__
    assert text.index("## [Unreleased]") < text.index(f"## [{__version__}]")
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__) and __version__ != "0.1.0"

"""``cryoal info`` on files, stacks, HDF5 pools and folders, via CliRunner and the real script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from cryoal.cli.main import cli

from cryoal.io import write_hdf5_pool, write_volume


@pytest.fixture(scope="module")
def volume_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    data = np.random.default_rng(7).normal(2.0, 3.0, (16, 16, 16)).astype(np.float32)
    path = write_volume(tmp_path_factory.mktemp("info") / "vol.mrc", data, 5.0, origin=(1, 2, 3))
    return path, data


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_file_info(volume_file):
    path, data = volume_file
    code, out, _ = _run("info", str(path))
    assert code == 0
    lines = {line[:11].strip(): line[11:] for line in out.splitlines()}
    assert lines["file"] == str(path)
    assert lines["kind"] == "volume"
    assert lines["shape"] == "16 x 16 x 16 (z, y, x)"
    assert lines["mode"] == "2 (float32)"
    assert lines["voxel size"] == "5 Å"
    assert lines["origin"] == "(1, 2, 3) Å (x, y, z)"
    assert lines["min / max"] == f"{data.min():.6g} / {data.max():.6g}"
    mean, std = data.astype(np.float64).mean(), data.astype(np.float64).std()
    assert lines["mean / std"] == f"{mean:.6g} / {std:.6g}"


def test_folder_info_with_labels(tmp_path: Path):
    rng = np.random.default_rng(0)
    for i in range(4):
        write_volume(tmp_path / "vols" / f"v{i}.mrc", rng.standard_normal((16, 16, 16)), 4.0)
    write_volume(tmp_path / "vols" / "odd.mrc", rng.standard_normal((12, 12, 12)), 4.0)
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\nv0.mrc,ribosome\nv1.mrc,ribosome\nv2.mrc,membrane\n")
    code, out, err = _run("info", str(tmp_path / "vols"), "--labels", str(labels))
    assert code == 0, err
    assert out.splitlines() == [
        f"pool       {tmp_path / 'vols'}",
        "items      5 (5 files)",
        "box        16 x 16 x 16 (4 items)",
        "box        12 x 12 x 12 (1 items)",
        "voxel size 4 Å (5 items)",
        "total size 75.8 KB",  # 4 x (1024 + 16384) + (1024 + 6912) bytes
        f"labels     {labels}: 3 of 5 labelled (60.0%)",
        "  membrane                   1",
        "  ribosome                   2",
    ]
    assert err == "warning    more than one box size: a pool must share one box\n"


def test_hdf5_info(tmp_path: Path):
    write_hdf5_pool(
        tmp_path / "p.h5", np.zeros((3, 8, 8, 8)), labels=["a", None, "a"], voxel_size=2.0
    )
    code, out, _ = _run("info", str(tmp_path / "p.h5"))
    assert code == 0
    assert "items      3 (1 file)" in out.splitlines()
    assert "labels     2 of 3 labelled (66.7%)" in out.splitlines()


def test_broken_file_in_folder_exits_2(tmp_path: Path):
    write_volume(tmp_path / "ok.mrc", np.zeros((8, 8, 8)))
    (tmp_path / "bad.mrc").write_bytes(b"\0" * 10)
    code, out, err = _run("info", str(tmp_path))
    assert code == 2
    problem = (
        f"{tmp_path / 'bad.mrc'}: truncated: the file has 10 bytes, less than the 1024-byte "
        "MRC header; re-copy or re-export it"
    )
    assert f"problem    {problem}" in out.splitlines()
    assert err == f"Error: 1 of 2 files are unreadable (first: {problem})\n"


def test_labels_on_single_volume_is_an_error(volume_file, tmp_path: Path):
    path, _ = volume_file
    (tmp_path / "l.csv").write_text("id,label\nvol.mrc,a\n")
    code, _, err = _run("info", str(path), "--labels", str(tmp_path / "l.csv"))
    assert code == 2
    assert err == "Error: --labels needs a folder, a stack or an HDF5 pool, not a single volume\n"


def test_help_has_example():
    code, out, _ = _run("info", "--help")
    assert code == 0
    assert "Example usage:" in out and "cryoal info subtomos/" in out


def _cryoal_script() -> str:
    beside = Path(sys.executable).with_name("cryoal")
    found = str(beside) if beside.exists() else shutil.which("cryoal")
    if found is None:
        pytest.fail("the cryoal console script is not installed: pip install -e .[dev]")
    return found


def test_installed_script(volume_file, tmp_path: Path):
    path, _ = volume_file
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    done = subprocess.run(
        [_cryoal_script(), "info", str(path)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "shape      16 x 16 x 16 (z, y, x)" in done.stdout.splitlines()
    bad = tmp_path / "cut.mrc"
    bad.write_bytes(path.read_bytes()[:3000])
    done = subprocess.run(
        [_cryoal_script(), "info", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"Error: {bad}: truncated: the header says 16x16x16 voxels of mode 2 (17408 bytes with "
        "the 1024-byte header) but the file has 3000 bytes; re-copy or re-export it"
    ]


@pytest.mark.parametrize("name", ["stack.mrcs", "stack.mrcs.gz"])
def test_stack_info_stats_over_all_items(tmp_path: Path, name: str):
    data = np.random.default_rng(3).normal(-1.0, 2.0, (3, 8, 8, 8)).astype(np.float32)
    path = write_volume(tmp_path / name, data, 2.0)
    code, out, _ = _run("info", str(path))
    assert code == 0
    lines = {line[:11].strip(): line[11:] for line in out.splitlines()}
    assert lines["kind"].startswith("volume-stack")
    assert lines["items"] == "3"
    assert lines["shape"] == "8 x 8 x 8 (z, y, x)"
    d64 = data.astype(np.float64)
    assert lines["min / max"] == f"{data.min():.6g} / {data.max():.6g}"
    assert lines["mean / std"] == f"{d64.mean():.6g} / {d64.std():.6g}"

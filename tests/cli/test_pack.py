"""``cryoal pack``: folders and lists of MRC files to one HDF5 pool (values, ids, labels)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from cryoal.cli.main import cli

from cryoal.io import VolumePool, write_volume
from cryoal.io.pack import pack_pool


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pack") / "vols"
    rng = np.random.default_rng(3)
    for i in range(7):
        sub = root / ("run1" if i < 4 else "run2")
        write_volume(sub / f"p{i}.mrc", rng.normal(i, 1 + i, (16, 16, 16)).astype(np.float32), 5.0)
    write_volume(root / "stack.mrcs", rng.standard_normal((3, 16, 16, 16)).astype(np.float32), 5.0)
    return root


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def _assert_same(packed: VolumePool, source: VolumePool) -> None:
    assert packed.ids == source.ids
    assert packed.box == source.box
    assert packed.voxel_size == pytest.approx(source.voxel_size)
    for i in range(len(source)):
        assert torch.equal(packed[i], source[i]), source.ids[i]


@pytest.mark.parametrize("workers", [0, 2])
def test_pack_folder_round_trip_with_labels(folder: Path, tmp_path: Path, workers: int) -> None:
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"id": ["run1/p0.mrc", "stack.mrcs#2"], "label": ["ribo", "tric"]}).to_csv(
        labels, index=False
    )
    out = tmp_path / "pool.h5"
    code, stdout, stderr = _run(
        "pack",
        str(folder),
        "--out",
        str(out),
        "--pattern",
        "*.mrc",
        "--pattern",
        "*.mrcs",
        "--labels",
        str(labels),
        "--workers",
        str(workers),
        "--no-progress",
    )
    assert code == 0, stderr
    assert stdout.startswith("packed 10 volumes (box 16x16x16, 5 Å, 2 labelled) into ")
    source = VolumePool.from_directory(folder, ["*.mrc", "*.mrcs"]).with_labels(labels)
    packed = VolumePool.from_hdf5(out)
    _assert_same(packed, source)
    assert packed.labels == source.labels
    assert packed.labels[source.index_of("stack.mrcs#2")] == "tric"
    with h5py.File(out) as fh:  # chunked: one volume per chunk
        assert fh["volumes"].chunks == (1, 16, 16, 16)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic: no leftovers


def test_pack_csv_list_keeps_ids_and_labels(folder: Path, tmp_path: Path) -> None:
    listing = folder / "list.csv"
    pd.DataFrame(
        {
            "path": ["run2/p5.mrc", "000001@stack.mrcs", "run1/p1.mrc"],
            "id": ["a", "b", "c"],
            "label": ["x", "", "y"],
        }
    ).to_csv(listing, index=False)
    try:
        report = pack_pool(listing, tmp_path / "list.h5", progress=False)
    finally:
        listing.unlink()
    assert (report.n, report.n_labelled, report.box) == (3, 2, (16, 16, 16))
    packed = VolumePool.from_hdf5(tmp_path / "list.h5")
    assert packed.ids == ["a", "b", "c"]
    assert packed.labels == ["x", None, "y"]
    whole = VolumePool.from_directory(folder, ["*.mrc", "*.mrcs"])
    for j, vid in enumerate(["run2/p5.mrc", "stack.mrcs#0", "run1/p1.mrc"]):
        assert torch.equal(packed[j], whole[whole.index_of(vid)])


def test_pack_errors_exit_2_with_one_line(folder: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _run("pack", str(empty), "--out", str(tmp_path / "e.h5"))
    assert code == 2
    assert err.strip().splitlines() == [
        f"Error: {empty}: no files matching *.mrc under this folder; check the path or the pattern"
    ]
    code, _, err = _run("pack", str(folder), "--out", str(tmp_path / "x.mrc"))
    assert (code, err.strip()) == (
        2,
        f"Error: {tmp_path / 'x.mrc'}: the output must end in .h5 or .hdf5",
    )
    (tmp_path / "there.h5").write_bytes(b"")
    code, _, err = _run("pack", str(folder), "--out", str(tmp_path / "there.h5"))
    assert (code, err.strip()) == (
        2,
        f"Error: {tmp_path / 'there.h5'} exists; pass --overwrite to replace it",
    )
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"id": ["run1/p0.mrc", "nope.mrc"], "label": ["a", "b"]}).to_csv(bad, index=False)
    code, _, err = _run("pack", str(folder), "--out", str(tmp_path / "b.h5"), "--labels", str(bad))
    assert code == 2
    assert "1 id(s) are not in" in err and "'nope.mrc'" in err
    assert not (tmp_path / "b.h5").exists()


@pytest.mark.parametrize("workers", ["0", "2"])
def test_pack_box_mismatch_names_the_file_and_leaves_no_output(
    folder: Path, tmp_path: Path, workers: str
) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(folder / "run1", mixed)
    write_volume(mixed / "zz_big.mrc", np.zeros((20, 20, 20), np.float32), 5.0)
    code, _, err = _run("pack", str(mixed), "--out", str(tmp_path / "m.h5"), "--workers", workers)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "zz_big.mrc: box 20x20x20 differs from the pool box 16x16x16" in err
    assert not (tmp_path / "m.h5").exists()


def test_installed_script(folder: Path, tmp_path: Path) -> None:
    exe = shutil.which("cryoal")
    cmd = [exe] if exe else [sys.executable, "-m", "cryoal.cli"]
    proc = subprocess.run(
        [*cmd, "pack", str(folder / "run1"), "--out", str(tmp_path / "r.h5"), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    _assert_same(
        VolumePool.from_hdf5(tmp_path / "r.h5"), VolumePool.from_directory(folder / "run1")
    )

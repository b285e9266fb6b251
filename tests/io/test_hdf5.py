"""HDF5 pools: streaming writes, lazy fork-safe reads, and their errors."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from cryoal.errors import InvalidLabelsError, InvalidVolumeError
from cryoal.io import Hdf5Volumes, write_hdf5_pool


def _exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


def test_streaming_write_layout(tmp_path: Path, make_volumes):
    vols = make_volumes(300)  # more than one growth step of the resizable dataset

    def stream():
        yield from vols  # a generator: the writer never sees all volumes at once

    path = tmp_path / "pool.h5"
    n = write_hdf5_pool(path, stream(), voxel_size=3.5, labels=["a", None, ""] + ["b"] * 297)
    assert n == 300
    with h5py.File(path, "r") as fh:
        dset = fh["volumes"]
        assert dset.shape == (300, 16, 16, 16)
        assert dset.chunks == (1, 16, 16, 16)
        assert dset.dtype == np.float32
        assert fh.attrs["voxel_size"] == 3.5
        assert fh.attrs["format"] == "cryoal-pool"
        assert "ids" not in fh
        np.testing.assert_array_equal(dset[299], vols[299])
    store = Hdf5Volumes(path)
    assert len(store) == 300
    assert store.ids[:2] == ["pool.h5#0", "pool.h5#1"]
    assert store.labels is not None and store.labels[:4] == ["a", None, None, "b"]
    np.testing.assert_array_equal(store.read(17), vols[17])


def test_ids_and_channel_dim(tmp_path: Path, make_volumes):
    vols = make_volumes(3)
    write_hdf5_pool(tmp_path / "p.h5", [v[None] for v in vols], ids=["x", "y", "z"])
    store = Hdf5Volumes(tmp_path / "p.h5")
    assert store.ids == ["x", "y", "z"]
    assert store.labels is None
    assert store.item_shape == (16, 16, 16)


def test_survives_pickling_and_fork(tmp_path: Path, make_volumes):
    import multiprocessing as mp

    vols = make_volumes(4)
    write_hdf5_pool(tmp_path / "p.h5", vols)
    store = Hdf5Volumes(tmp_path / "p.h5")
    store.read(0)  # opens the handle in this process
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.read(3), vols[3])
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as workers:
        sums = workers.map(_sum_item, [(store, 1), (store, 2)])
    assert sums == pytest.approx([float(vols[1].sum()), float(vols[2].sum())], rel=1e-5)
    store.close()


def _sum_item(args: tuple[Hdf5Volumes, int]) -> float:
    store, i = args
    return float(store.read(i).sum())


def test_write_errors(tmp_path: Path, make_volumes):
    vols = make_volumes(3)
    path = tmp_path / "p.h5"
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(
            f"{path}: volume #1 has shape (12, 12, 12) but volume #0 has (16, 16, 16); "
            "all volumes of a pool must share one box"
        ),
    ):
        write_hdf5_pool(path, [vols[0], np.zeros((12, 12, 12))])
    with pytest.raises(InvalidVolumeError, match=_exact(f"{path}: no volumes to write")):
        write_hdf5_pool(path, [])
    with pytest.raises(InvalidLabelsError, match=_exact(f"{path}: 2 ids for 3 volumes")):
        write_hdf5_pool(path, vols, ids=["a", "b"])
    with pytest.raises(
        InvalidLabelsError, match=_exact(f"{path}: duplicate ids: #2 'a' (also #0)")
    ):
        write_hdf5_pool(path, vols, ids=["a", "b", "a"])
    bad = vols.copy()
    bad[2, 0, 1, 2] = np.inf
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(
            f"{path}: volume #2: 1 NaN/Inf values (first at voxel (0, 1, 2), z-y-x order); "
            "fix or remove this volume"
        ),
    ):
        write_hdf5_pool(path, bad)
    assert not path.exists()  # atomic: nothing left behind by failed writes


def test_read_errors(tmp_path: Path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as fh:
        fh["data"] = np.full((2, 4, 4, 4), 1.5, np.float64)  # converted on read
        fh["flat"] = np.zeros((5,), np.float32)
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(
            f"{path}: no dataset 'volumes'; datasets present: data, flat; pass dataset=NAME"
        ),
    ):
        Hdf5Volumes(path)
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(
            f"{path}: dataset 'flat' has shape (5,); expected (N, D, H, W) volumes or (N, H, W) images"
        ),
    ):
        Hdf5Volumes(path, "flat")
    store = Hdf5Volumes(path, "data")
    assert store.voxel_size == 1.0
    item = store.read(1)
    assert item.dtype == np.float32 and (item == 1.5).all()
    with pytest.raises(IndexError, match=_exact(f"{path}: index 2 out of range for 2 volumes")):
        store.read(2)
    not_h5 = tmp_path / "x.h5"
    not_h5.write_bytes(b"not hdf5 at all")
    with pytest.raises(
        InvalidVolumeError, match=re.escape(f"{not_h5}: not a readable HDF5 file (")
    ):
        Hdf5Volumes(not_h5)
    with pytest.raises(InvalidVolumeError, match=_exact(f"{tmp_path / 'no.h5'}: file not found")):
        Hdf5Volumes(tmp_path / "no.h5")

"""cryoal.io.base: every pool class implements the one Pool protocol, with one checksum.

Each pool is built from real files (MRC, PNG, an MRC stack, tomograms + coordinates,
segmentation crops) and checked member by member against the protocol; the file
checksum is checked against its closed form (SHA-1 of the first 1024 bytes + the size),
the formula projects have recorded since the first release.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from _tomodata import (
    SHAPE,
    particles_table,
    tomogram_data,
    write_copick_project,
    write_ome_zarr,
)

from cryoal.errors import InvalidVolumeError
from cryoal.io import Pool, VolumePool, load_pool, open_tomograms, write_hdf5_pool, write_volume
from cryoal.io.base import array_checksum, entry_checksum
from cryoal.io.images import ImagePool, write_image
from cryoal.io.index import PoolIndex
from cryoal.io.tomopool import TomogramPool, open_tomogram_pool
from cryoal.tasks.seg_data import PatchPool

BOX = 8


def legacy_checksum(path: Path) -> str:
    """The checksum projects recorded before the Pool protocol had one (closed form)."""
    data = path.read_bytes()
    return hashlib.sha1(data[:1024] + str(len(data)).encode()).hexdigest()


def _volumes(root: Path, n: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        arr = rng.normal(size=(BOX,) * 3).astype(np.float32)
        write_volume(root / f"v{i}.mrc", arr, voxel_size=4.0)
    return root


def _volume_pool(tmp: Path) -> tuple[VolumePool, list[Path]]:
    root = _volumes(tmp / "vols")
    return VolumePool.from_directory(root), sorted(root.glob("*.mrc"))


def _stack_pool(tmp: Path) -> tuple[VolumePool, list[Path]]:
    rng = np.random.default_rng(1)
    path = write_volume(tmp / "s.mrcs", rng.normal(size=(3, BOX, BOX)).astype(np.float32), 4.0)
    return VolumePool.from_stack(path), [path] * 3


def _index(tmp: Path) -> tuple[PoolIndex, list[Path]]:
    root = _volumes(tmp / "vols")
    return PoolIndex.from_directory(root), sorted(root.glob("*.mrc"))


def _images(tmp: Path) -> tuple[ImagePool, list[Path]]:
    root = tmp / "imgs"
    files = [
        write_image(root / f"i{i}.png", np.full((BOX, BOX + 2), i * 40, np.uint8)) for i in range(3)
    ]
    return ImagePool.from_directory(root), files


def _patches(tmp: Path) -> tuple[PatchPool, list[Path]]:
    rng = np.random.default_rng(2)
    vols, masks = tmp / "crops", tmp / "masks"
    write_volume(vols / "a.mrc", rng.normal(size=(BOX, BOX, 2 * BOX)).astype(np.float32), 10.0)
    write_volume(vols / "b.mrc", rng.normal(size=(BOX,) * 3).astype(np.float32), 10.0)
    write_volume(masks / "a.mrc", np.zeros((BOX, BOX, 2 * BOX), np.int8), 10.0)
    pool = PatchPool.from_directories(vols, masks, patch=BOX, classes=["bg", "fg"])
    return pool, [vols / "a.mrc", vols / "a.mrc", vols / "b.mrc"]


def _tomograms(tmp: Path) -> tuple[object, list[Path]]:
    rng = np.random.default_rng(3)
    tomo = write_volume(
        tmp / "tomos" / "TS_01.mrc", rng.normal(size=(24, 24, 24)).astype(np.float32), 5.0
    )
    table = tmp / "picks.csv"
    table.write_text("tomo,x,y,z\nTS_01,40,40,40\nTS_01,60,50,40\nTS_01,70,70,70\n")
    pool = open_tomogram_pool(tomo.parent, table, box=BOX, units="angstrom")
    return pool, [tomo] * 3


BUILDERS: dict[str, Callable[[Path], tuple[object, list[Path]]]] = {
    "VolumePool": _volume_pool,
    "VolumePool-stack": _stack_pool,
    "PoolIndex": _index,
    "ImagePool": _images,
    "PatchPool": _patches,
    "TomogramPool": _tomograms,
}


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_every_pool_class_implements_every_member_of_the_protocol(
    kind: str, tmp_path: Path
) -> None:
    pool, _ = BUILDERS[kind](tmp_path)
    assert isinstance(pool, Pool)
    assert isinstance(pool, torch.utils.data.Dataset)
    p: Pool = pool  # type: ignore[assignment]
    n = len(p)
    assert n == len(p.ids) == 3 and len(set(p.ids)) == n
    assert all(isinstance(i, str) for i in p.ids)
    box = tuple(p.box)
    assert all(isinstance(s, int) and s > 0 for s in box) and len(box) in (2, 3)
    assert isinstance(p.voxel_size, float) and p.voxel_size > 0
    for i in range(n):
        item = p.read(i)
        assert item.dtype == np.float32 and item.shape == box
        np.testing.assert_array_equal(pool[i].numpy(), item[None])  # type: ignore[index]
        digest = p.checksum(i)
        assert len(digest) == 40 and int(digest, 16) >= 0
        assert p.checksum(i) == digest  # stable
    # the members take what the protocol says (no extra required arguments)
    for name in ("read", "checksum"):
        params = list(inspect.signature(getattr(pool, name)).parameters.values())
        assert [q.name for q in params if q.default is inspect.Parameter.empty] == ["index"]


@pytest.mark.parametrize("kind", sorted(set(BUILDERS) - {"TomogramPool"}))
def test_file_pools_checksum_is_the_legacy_header_checksum_of_the_items_file(
    kind: str, tmp_path: Path
) -> None:
    pool, files = BUILDERS[kind](tmp_path)
    for i, f in enumerate(files):
        assert pool.checksum(i) == legacy_checksum(f) == entry_checksum(f)  # type: ignore[attr-defined]


REOPEN: dict[str, Callable[[Path], object]] = {
    "VolumePool": lambda f: VolumePool.from_directory(f.parent),
    "ImagePool": lambda f: ImagePool.from_directory(f.parent),
    "PatchPool": lambda f: PatchPool.from_directories(
        f.parent, f.parent.parent / "masks", patch=BOX, classes=["bg", "fg"]
    ),
}


@pytest.mark.parametrize("kind", sorted(REOPEN))
def test_checksum_changes_when_the_items_file_is_replaced(kind: str, tmp_path: Path) -> None:
    pool, files = BUILDERS[kind](tmp_path)
    last = len(files) - 1
    before = pool.checksum(last)  # type: ignore[attr-defined]
    files[last].write_bytes(files[last].read_bytes() + b"\0" * 16)  # same header, new size
    fresh = REOPEN[kind](files[last])
    assert fresh.checksum(last) != before  # type: ignore[attr-defined]
    assert fresh.checksum(0) == pool.checksum(0)  # type: ignore[attr-defined]


def test_in_memory_pools_checksum_their_pixels() -> None:
    imgs = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    pool = ImagePool.from_array(imgs)
    assert isinstance(pool, Pool)
    want = hashlib.sha1(b"<f4|(4, 5)|" + imgs[1].tobytes()).hexdigest()
    assert pool.checksum(1) == array_checksum(imgs[1]) == want
    assert len({pool.checksum(i) for i in range(3)}) == 3
    vols = [np.ones((BOX,) * 3, np.float32), np.zeros((BOX,) * 3, np.float32)]
    patches = PatchPool.from_arrays(vols, class_names=["bg", "fg"], patch=BOX)
    assert patches.checksum(0) == array_checksum(vols[0]) != patches.checksum(1)


def test_unreadable_file_is_one_error_naming_it(tmp_path: Path) -> None:
    pool, files = _volume_pool(tmp_path)
    files[1].unlink()
    with pytest.raises(InvalidVolumeError, match=r"v1\.mrc: cannot read"):
        pool.checksum(1)


def test_not_a_pool() -> None:
    assert not isinstance(np.zeros(3), Pool)
    assert not isinstance([np.zeros((2, 2, 2))], Pool)


# ---------------------------------------------------------------------- save / load


def _hdf5_pool(tmp: Path) -> tuple[VolumePool, list[Path]]:
    rng = np.random.default_rng(4)
    path = tmp / "pool.h5"
    vols = [rng.normal(size=(BOX,) * 3).astype(np.float32) for _ in range(3)]
    write_hdf5_pool(path, vols, ids=["a", "b", "c"], labels=["x", None, "y"], voxel_size=3.0)
    return VolumePool.from_hdf5(path), [path] * 3


def _zarr_tomograms(tmp: Path) -> tuple[TomogramPool, list[Path]]:
    tomo = write_ome_zarr(tmp / "tomos" / "TS_02.zarr", tomogram_data(1), chunks=(32, 32, 32))
    table = particles_table({"TS_02": SHAPE}, per_tomo=3)
    tset = open_tomograms(tomo.parent)
    pool = TomogramPool(tset, table, BOX, shift="trilinear")
    return pool, [tomo] * 3


def _copick_tomograms(tmp: Path) -> tuple[TomogramPool, list[Path]]:
    picks = particles_table({"TS_01": SHAPE, "TS_02": SHAPE}, per_tomo=2)
    config = write_copick_project(tmp / "copick", picks=picks)
    pool = open_tomogram_pool(config, box=BOX, object_name="ribosome")
    return pool, [Path(pool.path_of(i)) for i in range(len(pool))]


ROUNDTRIP: dict[str, Callable[[Path], tuple[object, list[Path]]]] = {
    **BUILDERS,
    "VolumePool-hdf5": _hdf5_pool,
    "TomogramPool-zarr": _zarr_tomograms,
    "TomogramPool-copick": _copick_tomograms,
}


def _snapshot(p: Pool) -> dict[str, object]:
    """What a round trip must keep: ids, box, voxel size, checksums, arrays, labels."""
    return {
        "type": type(p),
        "ids": list(p.ids),
        "box": tuple(p.box),
        "voxel_size": p.voxel_size,
        "checksums": [p.checksum(i) for i in range(len(p))],
        "arrays": [p.read(i) for i in range(len(p))],
        "labels": list(getattr(p, "labels", [])),
    }


def _assert_same(want: dict[str, object], got: dict[str, object]) -> None:
    arrays_w, arrays_g = want.pop("arrays"), got.pop("arrays")
    assert got == want
    for a, b in zip(arrays_w, arrays_g, strict=True):  # type: ignore[call-overload]
        np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("kind", sorted(ROUNDTRIP))
def test_every_pool_round_trips_through_save_and_load_from_elsewhere(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool, _ = ROUNDTRIP[kind](tmp_path / "proj")
    p: Pool = pool  # type: ignore[assignment]
    if hasattr(pool, "with_labels") and not isinstance(pool, PoolIndex):
        labels = pd.DataFrame({"id": [p.ids[0], p.ids[2]], "label": ["x", "y"]})
        pool = pool.with_labels(labels)  # type: ignore[attr-defined]
        p = pool  # type: ignore[assignment]
    suffix = ".npz" if isinstance(pool, PoolIndex) else ".json"
    want = _snapshot(p)
    saved = p.save(tmp_path / "proj" / "saved" / f"pool{suffix}")
    assert saved.is_file()
    if suffix == ".json":  # sources are stored relative to the manifest
        doc = json.loads(saved.read_text())
        assert doc["format"] == "cryoal-pool" and doc["format_version"] == 1
        assert doc["ids"] == list(p.ids) and doc["box"] == list(p.box)
        assert all(not Path(s).is_absolute() for s in doc["sources"]), doc["sources"]
        assert doc["checksums"] == [p.checksum(i) for i in range(len(p))]
        # the whole tree moves together (manifest + data): still loads
        shutil.move(tmp_path / "proj", tmp_path / "moved")
        saved = tmp_path / "moved" / "saved" / saved.name
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for loaded in (load_pool(saved), type(pool).load(saved)):  # type: ignore[attr-defined]
        assert isinstance(loaded, Pool)
        _assert_same(dict(want), _snapshot(loaded))
        assert loaded.save(elsewhere / f"again{suffix}").is_file()

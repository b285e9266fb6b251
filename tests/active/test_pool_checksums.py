"""Projects made before the one Pool checksum still resume: the recorded checksums match.

Before issue 17, ``cryoal.active.loop.pool_entries`` computed the checksum of pools
without a ``checksum`` method (image and patch pools) itself: SHA-1 of the first 1024
bytes of the item's file and its size. ``legacy_entries`` below is that code; projects
whose pool table holds those checksums must register the same pool again with no change
and run their next round, and a replaced file must still be refused.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from cryoal.active import Project
from cryoal.active.loop import SelectConfig, pool_entries, register_pool, select_round
from cryoal.active.project import PoolEntry
from cryoal.errors import ProjectError
from cryoal.io import VolumePool, write_volume
from cryoal.io.images import ImagePool, write_image
from cryoal.tasks.seg_data import PatchPool


def legacy_entries(pool: object) -> list[PoolEntry]:
    """The pool table rows the loop wrote before the Pool protocol had one checksum."""
    p = pool  # VolumePool / ImagePool / PatchPool: all have path_of and root
    box = tuple(int(s) for s in p.box)  # type: ignore[attr-defined]
    out = []
    for i, vid in enumerate(p.ids):  # type: ignore[attr-defined]
        src = Path(p.path_of(i))  # type: ignore[attr-defined]
        data = src.read_bytes()
        digest = hashlib.sha1(data[:1024] + str(len(data)).encode()).hexdigest()
        rel = os.path.relpath(src, p.root)  # type: ignore[attr-defined]
        out.append(PoolEntry(str(vid), rel, box, digest))  # type: ignore[arg-type]
    return out


def _volumes(root: Path) -> VolumePool:
    rng = np.random.default_rng(0)
    for i in range(12):
        write_volume(root / f"t{i % 2}" / f"v{i:02d}.mrc", rng.normal(size=(16,) * 3), 10.0)
    return VolumePool.from_directory(root)


def _images(root: Path) -> ImagePool:
    for i in range(6):
        write_image(root / f"i{i}.png", np.full((8, 8), 30 * i, np.uint8))
    return ImagePool.from_directory(root)


def _patches(root: Path) -> PatchPool:
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        write_volume(root / "crops" / f"{name}.mrc", rng.normal(size=(8, 8, 16)), 10.0)
    write_volume(root / "masks" / "a.mrc", np.zeros((8, 8, 16), np.int8), 10.0)
    return PatchPool.from_directories(root / "crops", root / "masks", patch=8, classes=["b", "f"])


def _legacy_project(path: Path, pool: object) -> Project:
    proj = Project(path)
    entries = legacy_entries(pool)
    n = proj.register_pool(entries, root=pool.root, voxel_size=float(pool.voxel_size))  # type: ignore[attr-defined]
    assert n == len(entries)
    return proj


@pytest.mark.parametrize(
    "make", [_volumes, _images, _patches], ids=["volumes", "images", "patches"]
)
def test_legacy_project_registers_the_same_pool_unchanged(make: object, tmp_path: Path) -> None:
    pool = make(tmp_path / "pool")  # type: ignore[operator]
    proj = _legacy_project(tmp_path / "proj", pool)
    before = proj.pool_entries()
    assert [e.checksum for e in pool_entries(pool)] == [e.checksum for e in before]
    assert register_pool(proj, pool) == 0
    assert proj.pool_entries() == before
    proj.close()


@pytest.mark.parametrize(
    "make", [_volumes, _images, _patches], ids=["volumes", "images", "patches"]
)
def test_legacy_project_still_refuses_a_replaced_file(make: object, tmp_path: Path) -> None:
    pool = make(tmp_path / "pool")  # type: ignore[operator]
    proj = _legacy_project(tmp_path / "proj", pool)
    f = Path(pool.path_of(0))  # type: ignore[attr-defined]
    f.write_bytes(f.read_bytes() + b"\0" * 8)
    fresh = (
        type(pool).from_directories(  # type: ignore[attr-defined]
            tmp_path / "pool" / "crops", tmp_path / "pool" / "masks", patch=8, classes=["b", "f"]
        )
        if isinstance(pool, PatchPool)
        else type(pool).from_directory(tmp_path / "pool")
    )  # type: ignore[attr-defined]
    with pytest.raises(ProjectError, match=r"changed on disk since they were registered"):
        register_pool(proj, fresh)
    proj.close()


def test_legacy_volume_project_runs_its_next_round(tmp_path: Path) -> None:
    pool = _volumes(tmp_path / "pool")
    proj = _legacy_project(tmp_path / "proj", pool)
    cfg = SelectConfig(budget=4, cold_start="random", device="cpu", progress=False, gallery_size=4)
    res = select_round(proj, pool, cfg)
    assert res.round.n == 1 and len(res.picks) == 4
    assert proj.pool_entries() == _legacy_project(tmp_path / "proj2", pool).pool_entries()
    proj.close()

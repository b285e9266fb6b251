"""Atomic writes: all or nothing, and files readable like any other file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from cryoal._atomic import atomic_path, atomic_write_text
from cryoal.io import write_volume


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "picks.csv"
    atomic_write_text(target, "id,label\na,b\n")
    atomic_write_text(target, "id,label\nc,d\n")
    assert target.read_text() == "id,label\nc,d\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["picks.csv"]


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_written_files_get_umask_permissions_not_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.txt").stat().st_mode)
    assert mode == 0o644


def test_same_volume_written_twice_gives_identical_bytes(tmp_path: Path) -> None:
    data = np.random.default_rng(0).standard_normal((8, 8, 8)).astype(np.float32)
    write_volume(tmp_path / "a.mrc", data, voxel_size=10.0)
    write_volume(tmp_path / "b.mrc", data, voxel_size=10.0)
    assert (tmp_path / "a.mrc").read_bytes() == (tmp_path / "b.mrc").read_bytes()

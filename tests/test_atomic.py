"""Atomic writes: all or nothing, and files readable like any other file."""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from cryoal._atomic import atomic_path, atomic_write_text, storage_failure, sweep_orphans
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


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporary_name_carries_the_writer_pid(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "model.pt") as tmp:
        assert re.fullmatch(rf"\.model\.pt\.p{os.getpid()}\.[A-Za-z0-9_]+\.tmp\.pt", tmp.name)
        tmp.write_text("x")


def test_sweep_removes_only_dead_writers_temporaries(tmp_path: Path) -> None:
    dead = _dead_pid()
    (tmp_path / "picks").mkdir()
    orphan = tmp_path / "picks" / f".round-001.csv.p{dead}.abcd1234.tmp.csv"
    orphan.write_text("half")
    mine = tmp_path / f".model.pt.p{os.getpid()}.abcd1234.tmp.pt"  # a live writer's
    mine.write_text("in progress")
    legacy = tmp_path / ".old.csv.abcd1234.tmp.csv"  # no pid: not ours to judge
    legacy.write_text("?")
    (tmp_path / "round-001.csv").write_text("id\n")
    assert sweep_orphans(tmp_path) == [orphan]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        [mine.name, legacy.name, "round-001.csv"]
    )
    assert sweep_orphans(tmp_path / "missing") == []


def test_storage_failure_reasons(tmp_path: Path) -> None:
    full = OSError(errno.ENOSPC, "No space left on device")
    assert storage_failure(full, tmp_path) == "no space left on device"
    wrapped = RuntimeError("writer failed")
    wrapped.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert storage_failure(wrapped, tmp_path) == "disk quota exceeded"
    # a C++ writer's RuntimeError on a disk with room, or a bug: not a storage failure
    assert storage_failure(RuntimeError("file write failed"), tmp_path) is None
    assert storage_failure(ValueError("bad"), tmp_path) is None


def test_file_size_limit_becomes_storage_error(tmp_path: Path) -> None:
    """A real RLIMIT_FSIZE in a child: torch.save's failure is one StorageError line."""
    code = textwrap.dedent(
        f"""
        import resource, signal, torch
        from cryoal._atomic import atomic_path
        from cryoal.errors import StorageError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            with atomic_path({str(tmp_path / "big.pt")!r}) as tmp:
                torch.save(torch.zeros(10_000), tmp)
        except StorageError as exc:
            print("ERR", exc)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (
        f"ERR cannot write {tmp_path / 'big.pt'}: file too large (file-size limit); free space "
        "(or raise the limit) and re-run (the file was not changed)"
    )
    assert list(tmp_path.iterdir()) == []

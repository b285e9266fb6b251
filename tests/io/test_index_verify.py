"""PoolIndex.load checks the indexed files: sizes and mtimes against the saved ones."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cryoal.errors import ConfigError, PoolChangedError
from cryoal.io import load_pool, write_volume
from cryoal.io.index import PoolIndex

PATTERNS = ["*.mrc", "*.mrcs"]


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, Path]:
    """``(volumes folder, saved index)``: eight 8³ volumes under ``a/`` and a 3-stack."""
    root = tmp_path / "vols"
    rng = np.random.default_rng(0)
    for i in range(8):
        vol = rng.standard_normal((8, 8, 8)).astype(np.float32)
        write_volume(root / "a" / f"v{i}.mrc", vol, 4.0)
    write_volume(root / "s.mrcs", rng.standard_normal((3, 8, 8, 8)).astype(np.float32), 4.0)
    index = PoolIndex.from_directory(root, PATTERNS)
    return root, index.save(tmp_path / "pool-index.npz")


def _later(path: Path) -> None:
    """Move a file's mtime one second on (an edit that keeps the size)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_an_unchanged_index_loads_and_load_pool_checks_the_same(saved: tuple[Path, Path]) -> None:
    root, npz = saved
    assert len(PoolIndex.load(npz)) == 11
    with np.load(npz) as z:  # one size and mtime per item; stack items share their file's
        assert z["file_size"].tolist()[:1] == [(root / "a" / "v0.mrc").stat().st_size]
        assert z["file_mtime_ns"][-1] == (root / "s.mrcs").stat().st_mtime_ns
        assert len(set(z["file_size"][-3:].tolist())) == 1
    _later(root / "a" / "v3.mrc")
    with pytest.raises(PoolChangedError, match=r"a/v3\.mrc \(modified\)"):
        load_pool(npz)


def test_edited_grown_vanished_and_moved_files_are_named(saved: tuple[Path, Path]) -> None:
    root, npz = saved
    _later(root / "a" / "v1.mrc")  # edited in place, same size
    with open(root / "a" / "v2.mrc", "ab") as fh:  # grew
        fh.write(b"\0" * 16)
    (root / "a" / "v4.mrc").unlink()  # vanished
    (root / "a" / "v5.mrc").rename(root / "a" / "w5.mrc")  # moved away
    size = (root / "a" / "v2.mrc").stat().st_size
    with pytest.raises(PoolChangedError) as err:
        PoolIndex.load(npz)
    msg = str(err.value)
    assert msg.startswith(f"{npz}: 4 of the files indexed under {root} changed")
    assert (
        "a/v1.mrc (modified), "
        f"a/v2.mrc (size {size - 16} -> {size} bytes), "
        "a/v4.mrc (vanished or moved), a/v5.mrc (vanished or moved); "
    ) in msg
    assert "--reindex" in msg
    assert len(PoolIndex.load(npz, verify="none")) == 11  # skipping the check


def test_a_changed_stack_counts_once_and_the_message_names_the_first_five(
    saved: tuple[Path, Path],
) -> None:
    root, npz = saved
    _later(root / "s.mrcs")
    with pytest.raises(PoolChangedError, match=r"1 of the files .*: s\.mrcs \(modified\); "):
        PoolIndex.load(npz)
    for i in range(8):
        _later(root / "a" / f"v{i}.mrc")
    with pytest.raises(PoolChangedError) as err:
        PoolIndex.load(npz)
    named = ", ".join(f"a/v{i}.mrc (modified)" for i in range(5))
    assert "9 of the files" in str(err.value) and f": {named}, ...; " in str(err.value)


def test_verify_option_and_an_index_saved_without_sizes(
    saved: tuple[Path, Path], tmp_path: Path
) -> None:
    root, npz = saved
    with pytest.raises(ConfigError, match="verify must be 'stat' or 'none', got 'sha1'"):
        PoolIndex.load(npz, verify="sha1")  # type: ignore[arg-type]
    old = tmp_path / "old.npz"  # as saved before sizes were recorded: loads, unchecked
    with zipfile.ZipFile(npz) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            if not item.filename.startswith("file_"):
                dst.writestr(item, src.read(item))
    (root / "a" / "v0.mrc").unlink()
    assert len(PoolIndex.load(old)) == 11


def test_a_moved_tree_fails_naming_its_files(saved: tuple[Path, Path], tmp_path: Path) -> None:
    root, npz = saved
    root.rename(tmp_path / "elsewhere")
    with pytest.raises(
        PoolChangedError, match=r"9 of the files .*: a/v0\.mrc \(vanished or moved\)"
    ):
        PoolIndex.load(npz)

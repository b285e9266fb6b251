"""Real files for the I/O tests, written with mrcfile/h5py directly (not through cryoal)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import mrcfile
import numpy as np
import pytest

BOX = 16


def write_raw(
    path: Path,
    data: np.ndarray,
    *,
    voxel_size: float | None = 4.0,
    compression: str | None = None,
    image_stack: bool = False,
) -> Path:
    """Write ``data`` with plain mrcfile (independent of cryoal's writer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mrcfile's header stats on NaN data
        with mrcfile.new(path, overwrite=True, compression=compression) as mrc:
            mrc.set_data(data)
            if image_stack:
                mrc.set_image_stack()
            if voxel_size is not None:
                mrc.voxel_size = voxel_size
    return path


def volumes(n: int, box: int = BOX, seed: int = 0) -> np.ndarray:
    """``(n, box, box, box)`` float32 standard-normal volumes."""
    return np.random.default_rng(seed).standard_normal((n, box, box, box)).astype(np.float32)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of valid files: every mode, stacks, compressed files."""
    root = tmp_path_factory.mktemp("mrc")
    vols = volumes(4)
    base = vols[0]
    write_raw(root / "mode0.mrc", np.clip(base * 30, -128, 127).astype(np.int8))
    write_raw(root / "mode1.mrc", (base * 1000).astype(np.int16))
    write_raw(root / "mode2.mrc", base)
    write_raw(root / "mode6.mrc", (np.abs(base) * 1000).astype(np.uint16))
    write_raw(root / "mode12.mrc", base.astype(np.float16))
    write_raw(root / "big_endian.mrc", base.astype(">f4"))
    write_raw(root / "vol.map", base)
    write_raw(root / "vol.rec", base)
    write_raw(root / "vol.mrc.gz", base, compression="gzip")
    write_raw(root / "vol.mrc.bz2", base, compression="bzip2")
    write_raw(root / "vstack.mrcs", vols)  # 4D → volume stack (ispg 401)
    write_raw(root / "vstack.mrcs.gz", vols, compression="gzip")
    write_raw(root / "images.mrcs", vols[0], image_stack=True)  # 16 images 16x16
    write_raw(root / "tilts.st", vols[1], image_stack=True)
    return root


@pytest.fixture(scope="session")
def base_volume() -> np.ndarray:
    """The volume written as ``mode2.mrc`` in :func:`data_dir`."""
    return volumes(4)[0]


@pytest.fixture(scope="session")
def raw() -> Callable[..., Path]:
    """:func:`write_raw`, as a fixture (test modules do not import conftest)."""
    return write_raw


@pytest.fixture(scope="session")
def make_volumes() -> Callable[..., np.ndarray]:
    """:func:`volumes`, as a fixture."""
    return volumes

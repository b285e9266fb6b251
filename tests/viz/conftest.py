"""Fixtures for tests/viz: a small non-cubic volume and a pool of a few MRC files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryoal.io import VolumePool, write_volume


@pytest.fixture(scope="session")
def ramp_volume() -> np.ndarray:
    """`(D, H, W) = (6, 8, 10)` volume whose value encodes its position: 100 z + 10 y + x."""
    z, y, x = np.mgrid[:6, :8, :10]
    return (100 * z + 10 * y + x).astype(np.float32)


@pytest.fixture(scope="session")
def small_pool(tmp_path_factory: pytest.TempPathFactory) -> VolumePool:
    """Five 16³ volumes (two labelled classes, one unlabelled), 12 Å voxels."""
    root = tmp_path_factory.mktemp("vizpool")
    rng = np.random.default_rng(0)
    ids = [f"p{i}.mrc" for i in range(5)]
    for vid in ids:
        write_volume(root / vid, rng.normal(size=(16, 16, 16)).astype(np.float32), 12.0)
    labels = pd.DataFrame({"id": ids[:4], "label": ["ring", "ring", "rod", "ring"]})
    return VolumePool.from_directory(root).with_labels(labels)


@pytest.fixture
def volume_file(tmp_path: Path, ramp_volume: np.ndarray) -> Path:
    return write_volume(tmp_path / "ramp.mrc", ramp_volume, 8.5, origin=(1.0, 2.0, 3.0))

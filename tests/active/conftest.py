"""Fixtures for tests/active. A small simulated pool on disk: three shapes in noise, box 16³, 10 Å voxels."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryoal.io import write_volume

CLASSES = ("ball", "rod", "shell")
BOX = 16
PER_CLASS = 12


def _shape(kind: str, rng: np.random.Generator) -> np.ndarray:
    z, y, x = np.mgrid[:BOX, :BOX, :BOX].astype(np.float32) - (BOX - 1) / 2
    z, y, x = (z - rng.uniform(-1, 1), y - rng.uniform(-1, 1), x - rng.uniform(-1, 1))
    r = np.sqrt(x**2 + y**2 + z**2)
    if kind == "ball":
        vol = (r < 4.0).astype(np.float32)
    elif kind == "shell":
        vol = ((r > 4.5) & (r < 6.0)).astype(np.float32)
    else:
        vol = ((np.sqrt(x**2 + y**2) < 2.0) & (np.abs(z) < 6.0)).astype(np.float32)
    return vol + rng.normal(scale=0.6, size=vol.shape).astype(np.float32)


def make_pool(root: Path, per_class: int = PER_CLASS, seed: int = 0) -> pd.DataFrame:
    """Write ``per_class`` volumes of each class under ``root/tomoN/``; return the truth."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(per_class * len(CLASSES)):
        kind = CLASSES[int(rng.integers(len(CLASSES)))] if i >= len(CLASSES) else CLASSES[i]
        vid = f"tomo{i % 2}/p{i:03d}.mrc"
        write_volume(root / vid, _shape(kind, rng), voxel_size=10.0)
        rows.append({"id": vid, "label": kind})
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def sim_pool_master(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("simpool") / "vols"
    truth = make_pool(root)
    return root, truth


@pytest.fixture
def sim_pool(
    sim_pool_master: tuple[Path, pd.DataFrame], tmp_path: Path
) -> tuple[Path, pd.DataFrame]:
    """A private copy of the simulated pool (tests may delete files)."""
    src, truth = sim_pool_master
    dst = tmp_path / "vols"
    shutil.copytree(src, dst)
    return dst, truth.copy()


@pytest.fixture(scope="session")
def big_sim_pool(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """About 70 volumes per class: enough labels for ``auto``'s plain regime (50 per class)."""
    root = tmp_path_factory.mktemp("bigsimpool") / "vols"
    return root, make_pool(root, per_class=70, seed=1)

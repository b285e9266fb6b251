"""A small simulated pool for the select/label/status CLI tests (not a test module)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cryoal.io import write_volume

CLASSES = ("ball", "rod", "shell")
BOX = 16

#: options that keep a select run fast on a CPU
FAST_ARGS = ["--arch", "cb3d", "--epochs", "2", "--device", "cpu", "--no-progress"]

# The smallest noise benchmark the CLI runs end to end (seconds on CPU); tests name their own preset.
TINY_BENCHMARK = {
    "preset": "tiny-cli",
    "strategies": ["random", "entropy-gradnorm"],
    "snrs": [0.5],
    "seeds": [0],
    "model": "cb3d",
    "box": 16,
    "voxel_size": 15.0,
    "classes": ["7PBL", "3O21"],
    "n_pool": 10,
    "n_test": 6,
    "initial": 4,
    "budget": 3,
    "rounds": 2,
    "epochs": 2,
    "batch_size": 4,
    "robustness": False,
    "device": "cpu",
}


def _shape(kind: str, rng: np.random.Generator, box: int) -> np.ndarray:
    z, y, x = np.mgrid[:box, :box, :box].astype(np.float32) - (box - 1) / 2
    r = np.sqrt(x**2 + y**2 + z**2)
    if kind == "ball":
        vol = (r < box / 4).astype(np.float32)
    elif kind == "shell":
        vol = ((r > box / 3.5) & (r < box / 2.7)).astype(np.float32)
    else:
        vol = ((np.sqrt(x**2 + y**2) < box / 8) & (np.abs(z) < box / 2.7)).astype(np.float32)
    return vol + rng.normal(scale=0.6, size=vol.shape).astype(np.float32)


def make_pool(root: Path, n: int = 30, seed: int = 0, box: int = BOX) -> pd.DataFrame:
    """Write ``n`` volumes under ``root/tomoK/``; return the truth table (id, label)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        kind = CLASSES[i % len(CLASSES)]
        vid = f"tomo{i % 2}/p{i:03d}.mrc"
        write_volume(root / vid, _shape(kind, rng, box), voxel_size=10.0)
        rows.append({"id": vid, "label": kind})
    return pd.DataFrame(rows)


def cryoal_subprocess(
    args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m cryoal.cli ARGS`` with one torch thread (same numerics as the tests)."""
    full_env = {k: v for k, v in os.environ.items() if k != "CRYOAL_TEST_KILL_AT"}
    full_env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "cryoal.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=300,
        check=False,
    )

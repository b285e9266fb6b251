"""Fixtures of the benchmark tests: a tiny benchmark config and one finished run of it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cryoal.benchmark import noise


def _tiny_config(**changes: Any) -> noise.NoiseBenchmarkConfig:
    """2 classes, 16³, one SNR, one seed, 2 rounds: seconds on a CPU."""
    cfg = noise.NoiseBenchmarkConfig(
        preset="tiny-test",
        strategies=("random", "entropy-gradnorm"),
        snrs=(0.5,),
        seeds=(0,),
        model="cb3d",
        box=16,
        voxel_size=15.0,
        classes=("7PBL", "3O21"),
        n_pool=10,
        n_test=6,
        initial=4,
        budget=3,
        rounds=2,
        epochs=2,
        batch_size=4,
        robustness=True,
        robustness_epochs=2,
        device="cpu",
    )
    return cfg.replace(**changes) if changes else cfg


@pytest.fixture(scope="session")
def tiny_config() -> Callable[..., noise.NoiseBenchmarkConfig]:
    """Factory of the tiny config: ``tiny_config(**changes)`` (test modules do not import conftest)."""
    return _tiny_config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """The tiny benchmark run once, uninterrupted: (output folder, returned table)."""
    out = tmp_path_factory.mktemp("tiny-bench")
    table = noise.run(_tiny_config(), out)
    return out, table

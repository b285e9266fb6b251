"""Fixtures of the task pipelines: tiny segmentation data and a trained-ish UNet."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cryoal import models


@pytest.fixture(scope="session")
def seg_example(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three simulated 32³ crops (2 structures + membrane), the first one annotated."""
    from cryoal.tasks.seg_data import write_segmentation_example

    out = tmp_path_factory.mktemp("seg-example")
    return write_segmentation_example(
        out, n_tomograms=3, shape=32, n_particles=5, snr=2.0, annotated=1, seed=3
    )


@pytest.fixture
def unet() -> torch.nn.Module:
    """A small 3D UNet with non-trivial BatchNorm running statistics, in eval mode."""
    torch.manual_seed(0)
    model = models.create("monai-unet", 3, (1, 8, 8, 8), channels=(4, 8), features=6)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 1, 8, 8, 8))
    return model.eval()

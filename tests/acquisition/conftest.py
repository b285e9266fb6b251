"""Fixtures of the acquisition tests (models and pools live in acq_helpers.py)."""

from __future__ import annotations

import pytest
import torch
from acq_helpers import TensorPool, TinyConv3d, randomize_bn


@pytest.fixture(scope="session")
def tiny3d() -> TinyConv3d:
    torch.manual_seed(0)
    return randomize_bn(TinyConv3d()).eval()


@pytest.fixture(scope="session")
def pool3d() -> TensorPool:
    g = torch.Generator().manual_seed(7)
    return TensorPool(torch.randn(13, 1, 8, 8, 8, generator=g))

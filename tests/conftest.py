"""Session-wide test settings and fixtures shared by every test module."""

from __future__ import annotations

import os

import pytest
import torch

# Two test workers share two cores: one intra-op thread each avoids oversubscription.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def generator() -> torch.Generator:
    """A seeded CPU generator, fresh for each test."""
    return torch.Generator().manual_seed(1234)

"""Fixtures for model tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def seeded() -> None:
    """Seed the global RNG so model initialisation is reproducible within a test."""
    torch.manual_seed(0)

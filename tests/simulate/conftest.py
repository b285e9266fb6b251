"""Fixtures of the simulator tests: small boxes, few volumes, shared per session."""

from __future__ import annotations

import pytest

from cryoal.simulate import SimulatedSet, simulate_subtomograms

SMALL = ["4V8R-A", "7PBL", "3ENL"]


@pytest.fixture(scope="session")
def small_set() -> SimulatedSet:
    """3 classes x 6 subtomograms of 24^3 at 10 Å, SNR 0.5, with the clean volumes."""
    return simulate_subtomograms(
        SMALL, 6, box=24, voxel_size=10.0, snr=0.5, shift_max=1.0, seed=3, return_clean=True
    )

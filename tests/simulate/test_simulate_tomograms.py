"""simulate_tomogram: non-overlapping particles, label map, membranes, SNR, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cryoal.errors import ConfigError
from cryoal.simulate import SimulatedTomogram, simulate_tomogram
from cryoal.transforms import measure_snr

CLASSES = ["7PBL", "3ENL", "1AKE"]


@pytest.fixture(scope="module")
def tomo() -> SimulatedTomogram:
    return simulate_tomogram(CLASSES, 48, 10.0, n_particles=12, snr=0.2, membranes=1, seed=4)


def test_shapes_and_class_names(tomo: SimulatedTomogram) -> None:
    assert tomo.volume.shape == (48, 48, 48) and tomo.volume.dtype == torch.float32
    assert tomo.labels.shape == (48, 48, 48) and tomo.labels.dtype == torch.int64
    assert tomo.class_names == ["background", *CLASSES, "membrane"]
    assert int(tomo.labels.max()) <= len(CLASSES) + 1


def test_particles_do_not_overlap_and_are_labelled(tomo: SimulatedTomogram) -> None:
    p = tomo.particles
    assert len(p) >= 6
    xyz = p[["x", "y", "z"]].to_numpy(dtype=float)
    r = p["radius"].to_numpy()
    for i in range(len(p)):
        for j in range(i + 1, len(p)):
            assert (
                np.linalg.norm(xyz[i] - xyz[j]) >= r[i] + r[j] + 1.0 - 0.02
            )  # gap 1, radii rounded
        # the particle's centre voxel carries its class (or is at least not membrane)
        x, y, z = (int(v) for v in xyz[i])
        assert int(tomo.labels[z, y, x]) in (0, int(p["label"].iloc[i]))
    present = set(torch.unique(tomo.labels).tolist())
    assert set(p["label"].tolist()) <= present
    assert len(CLASSES) + 1 in present  # the membrane


def test_snr_over_the_crop(tomo: SimulatedTomogram) -> None:
    assert tomo.clean is not None
    assert measure_snr(tomo.clean, tomo.volume).item() == pytest.approx(0.2, rel=0.05)


def test_deterministic_per_seed() -> None:
    a = simulate_tomogram(CLASSES, 32, n_particles=5, seed=1, snr=math.inf)
    b = simulate_tomogram(CLASSES, 32, n_particles=5, seed=1, snr=math.inf)
    assert torch.equal(a.volume, b.volume) and torch.equal(a.labels, b.labels)
    assert a.particles.equals(b.particles)


def test_too_large_structure_is_rejected() -> None:
    with pytest.raises(ConfigError, match="structure 6ZU5 .* does not fit"):
        simulate_tomogram(["6ZU5"], 16, 10.0, n_particles=1)


def test_n_per_class_places_exact_counts_largest_first() -> None:
    tomo = simulate_tomogram(CLASSES, 48, 10.0, n_per_class=[3, 0, 4], snr=1.0, seed=2)
    counts = tomo.particles["class_name"].value_counts().to_dict()
    assert counts == {"7PBL": 3, "1AKE": 4}
    # too crowded: the largest class is placed in full, the small one loses particles
    crowded = simulate_tomogram(["7PBL", "3ENL"], 32, 10.0, n_per_class=[3, 60], seed=2)
    got = crowded.particles["class_name"].value_counts().to_dict()
    assert got["7PBL"] == 3 and got["3ENL"] < 60


def test_n_per_class_needs_one_count_per_structure() -> None:
    with pytest.raises(ConfigError, match="n_per_class must give a count >= 0 for each of the 3"):
        simulate_tomogram(CLASSES, 48, 10.0, n_per_class=[1, 2])
    with pytest.raises(ConfigError, match="n_per_class"):
        simulate_tomogram(CLASSES, 48, 10.0, n_per_class=[1, -2, 1])

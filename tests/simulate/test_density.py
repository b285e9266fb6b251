"""density_from_atoms against closed forms and a naive per-atom loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from cryoal.errors import ConfigError
from cryoal.simulate.density import ELEMENTS, density_from_atoms, resolution_sigma


def _naive(coords, elements, voxel_size, box, resolution, method):
    """Per-atom, per-term evaluation over the whole grid (no cut-off, no index tricks).

    Each voxel gets the exact integral of each Gaussian over the voxel: a product of 1D
    erf differences.
    """
    out = np.zeros((box, box, box))
    w = np.array(
        [ELEMENTS[e][0] if method == "gaussian" else sum(ELEMENTS[e][2]) for e in elements],
        dtype=np.float64,
    )
    ctr = (coords * w[:, None]).sum(0) / w.sum()
    s2 = resolution_sigma(resolution) ** 2
    grid = np.arange(box, dtype=np.float64)
    for xyz, e in zip(coords, elements, strict=True):
        pos = (xyz - ctr) / voxel_size + box // 2  # x, y, z in voxels
        if method == "gaussian":
            terms = [(ELEMENTS[e][0], s2)]
        else:
            terms = [
                (a, (b + 8 * math.pi**2 * s2) / (8 * math.pi**2))
                for a, b in zip(ELEMENTS[e][2], ELEMENTS[e][3], strict=True)
            ]
        for amp, var in terms:
            sd = math.sqrt(2 * var) / voxel_size
            gx, gy, gz = (
                0.5 * (special.erf((grid + 0.5 - c) / sd) - special.erf((grid - 0.5 - c) / sd))
                for c in pos
            )
            out += amp * gz[:, None, None] * gy[None, :, None] * gx[None, None, :]
    return out


@pytest.mark.parametrize("method", ["gaussian", "scattering"])
def test_matches_naive_loop(method: str) -> None:
    rng = np.random.default_rng(0)
    coords = rng.normal(scale=8.0, size=(40, 3))
    elements = list(rng.choice(["C", "N", "O", "S"], size=40))
    fast = density_from_atoms(coords, elements, 4.0, 16, resolution=8.0, method=method)
    slow = _naive(coords, elements, 4.0, 16, 8.0, method)
    # the fast path truncates each atom at 4 sigma: tiny relative error
    np.testing.assert_allclose(fast, slow, atol=1e-4 * slow.max())


def test_single_atom_gaussian_sums_to_z_and_peaks_at_centre() -> None:
    m = density_from_atoms(np.zeros((1, 3)), ["O"], 2.0, 17, resolution=8.0)
    assert m.dtype == np.float32 and m.shape == (17, 17, 17)
    assert m.sum() == pytest.approx(8.0, rel=1e-4)
    assert np.unravel_index(m.argmax(), m.shape) == (8, 8, 8)


def test_single_atom_scattering_sums_to_f0() -> None:
    m = density_from_atoms(np.zeros((1, 3)), ["C"], 2.0, 21, resolution=8.0, method="scattering")
    assert m.sum() == pytest.approx(sum(ELEMENTS["C"][2]), rel=1e-4)


def test_axes_are_zyx_and_centre_option() -> None:
    # an atom at x = +10 Å from the centre lands 5 voxels along the last axis
    m = density_from_atoms(
        np.array([[10.0, 0.0, 0.0]]), [6], 2.0, 32, resolution=4.0, center=(0, 0, 0)
    )
    assert np.unravel_index(m.argmax(), m.shape) == (16, 16, 21)


def test_atomic_numbers_and_symbols_agree() -> None:
    coords = np.array([[0.0, 0, 0], [3.0, 1, 0]])
    a = density_from_atoms(coords, ["C", "fe"], 2.0, 16)
    b = density_from_atoms(coords, [6, 26], 2.0, 16)
    np.testing.assert_array_equal(a, b)


def test_errors_name_the_problem() -> None:
    with pytest.raises(ConfigError, match=r"coords must have shape \(N, 3\)"):
        density_from_atoms(np.zeros((3, 2)), ["C"] * 3, 2.0, 8)
    with pytest.raises(ConfigError, match="atom 1: unknown element 'Xx'"):
        density_from_atoms(np.zeros((2, 3)), ["C", "Xx"], 2.0, 8)
    with pytest.raises(ConfigError, match="2 coordinates but 1 elements"):
        density_from_atoms(np.zeros((2, 3)), ["C"], 2.0, 8)
    with pytest.raises(ConfigError, match="unknown density method 'cubic'"):
        density_from_atoms(np.zeros((1, 3)), ["C"], 2.0, 8, method="cubic")
    with pytest.raises(ConfigError, match="voxel_size must be > 0"):
        density_from_atoms(np.zeros((1, 3)), ["C"], 0.0, 8)

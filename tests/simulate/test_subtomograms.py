"""simulate_subtomograms: shapes, truth, SNR, physics twins, determinism, errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cryoal.errors import ConfigError
from cryoal.simulate import SimulatedSet, load_structure, simulate_subtomograms
from cryoal.simulate._physics import half_spectrum_power, phase_ramp
from cryoal.transforms import euler_to_matrix, measure_snr, missing_wedge_mask, rotate_volume

SMALL = ["4V8R-A", "7PBL", "3ENL"]  # as in conftest.small_set


def test_shapes_labels_and_metadata(small_set: SimulatedSet) -> None:
    s = small_set
    assert s.volumes.shape == (18, 24, 24, 24) and s.volumes.dtype == torch.float32
    assert s.labels.dtype == torch.int64
    assert s.class_names == SMALL
    assert torch.bincount(s.labels).tolist() == [6, 6, 6]
    m = s.metadata
    assert list(m.columns) == [
        "id", "label", "label_index", "rot", "tilt", "psi",
        "shift_x", "shift_y", "shift_z", "snr", "defocus_um", "voxel_size",
    ]  # fmt: skip
    assert m["id"].tolist()[:2] == ["sub_00000.mrc", "sub_00001.mrc"]
    assert m["label"].tolist() == [SMALL[i] for i in s.labels.tolist()]
    assert m[["shift_x", "shift_y", "shift_z"]].abs().max().max() <= 1.0
    assert ((m["tilt"] >= 0) & (m["tilt"] <= 180)).all()
    assert torch.isfinite(s.volumes).all()


@pytest.mark.parametrize("noise", ["white", "two-stage"])
@pytest.mark.parametrize("snr", [1.0, 0.1, 0.01])
def test_measured_snr_matches_request(noise: str, snr: float) -> None:
    s = simulate_subtomograms(
        SMALL, 20, box=24, snr=snr, noise=noise, defocus=(3.0, 6.0), seed=5, return_clean=True
    )
    assert s.clean is not None
    measured = measure_snr(s.clean, s.volumes).mean().item()
    assert measured == pytest.approx(snr, rel=0.05)


def test_two_stage_noise_lies_outside_the_wedge_only() -> None:
    s = simulate_subtomograms(
        SMALL, 4, box=24, snr=0.1, noise="two-stage", seed=2, return_clean=True
    )
    assert s.clean is not None
    wedge = missing_wedge_mask((24, 24, 24)) == 0
    power = torch.fft.fftn(s.volumes - s.clean, dim=(-3, -2, -1)).abs() ** 2
    assert power[:, wedge].sum() < 1e-8 * power.sum()
    white = simulate_subtomograms(
        SMALL, 4, box=24, snr=0.1, noise="white", seed=2, return_clean=True
    )
    assert white.clean is not None
    wp = torch.fft.fftn(white.volumes - white.clean, dim=(-3, -2, -1)).abs() ** 2
    assert wp[:, wedge].sum() > 0.2 * wp.sum()  # white noise fills the wedge too


def test_clean_signal_has_no_power_in_the_wedge(small_set: SimulatedSet) -> None:
    assert small_set.clean is not None
    wedge = missing_wedge_mask((24, 24, 24)) == 0
    power = torch.fft.fftn(small_set.clean, dim=(-3, -2, -1)).abs() ** 2
    assert power[:, wedge].sum() < 1e-8 * power.sum()


def test_recorded_euler_angles_reproduce_the_volume() -> None:
    """No CTF, wedge, shift or noise: each volume is the template rotated by its angles."""
    s = simulate_subtomograms(
        ["7PBL"], 5, box=24, snr=math.inf, tilt_range=None, defocus=None, seed=11
    )
    tmpl = torch.from_numpy(load_structure("7PBL", 10.0, box=24).density)
    angles = torch.tensor(s.metadata[["rot", "tilt", "psi"]].to_numpy())
    expected = rotate_volume(tmpl.expand(5, 1, 24, 24, 24), euler_to_matrix(angles).float())
    torch.testing.assert_close(
        s.volumes, expected.squeeze(1), atol=1e-3 * tmpl.max().item(), rtol=0
    )


def test_snr_inf_is_noise_free(small_set: SimulatedSet) -> None:
    s = simulate_subtomograms(SMALL, 2, box=24, snr=math.inf, seed=3, return_clean=True)
    assert s.clean is not None
    torch.testing.assert_close(s.volumes, s.clean)


def test_phase_ramp_with_integer_shifts_equals_roll() -> None:
    x = torch.randn(2, 8, 10, 12, generator=torch.Generator().manual_seed(0))
    shifts = torch.tensor([[1.0, 2.0, 3.0], [-2.0, 0.0, 1.0]])  # x, y, z voxels
    spec = torch.fft.rfftn(x, dim=(-3, -2, -1)) * phase_ramp(shifts, (8, 10, 12))
    moved = torch.fft.irfftn(spec, s=(8, 10, 12), dim=(-3, -2, -1))
    for i, (sx, sy, sz) in enumerate(shifts.int().tolist()):
        torch.testing.assert_close(
            moved[i], torch.roll(x[i], (sz, sy, sx), dims=(0, 1, 2)), atol=1e-5, rtol=0
        )


@pytest.mark.parametrize("width", [12, 13])
def test_half_spectrum_power_equals_full_grid_mean(width: int) -> None:
    full = missing_wedge_mask((10, 11, width), (-50, 40))
    half = missing_wedge_mask((10, 11, width), (-50, 40), rfft=True)
    assert half_spectrum_power(half, width).item() == pytest.approx(
        full.square().mean().item(), rel=1e-6
    )


def test_same_seed_same_volumes_any_batch_size() -> None:
    a = simulate_subtomograms(SMALL, 3, box=16, snr=0.2, shift_max=2, seed=7, noise="two-stage")
    b = simulate_subtomograms(
        SMALL, 3, box=16, snr=0.2, shift_max=2, seed=7, noise="two-stage", batch_size=2
    )
    c = simulate_subtomograms(SMALL, 3, box=16, snr=0.2, shift_max=2, seed=8, noise="two-stage")
    torch.testing.assert_close(a.volumes, b.volumes, atol=1e-5, rtol=0)
    assert torch.equal(a.labels, b.labels)
    assert a.metadata.equals(b.metadata)
    assert not torch.allclose(a.volumes, c.volumes)


def test_counts_per_class_and_unshuffled_order() -> None:
    s = simulate_subtomograms(SMALL, [1, 0, 2], box=16, snr=1.0, shuffle=False)
    assert s.labels.tolist() == [0, 2, 2]


def test_user_structures_and_rotation_none() -> None:
    st = load_structure("3ENL", 5.0)  # resampled to the simulation's voxel size
    s = simulate_subtomograms([st], 2, box=16, voxel_size=10.0, snr=math.inf, rotation="none",
                              tilt_range=None, defocus=None)  # fmt: skip
    expected = torch.from_numpy(load_structure("3ENL", 10.0, box=16).density)
    assert s.metadata[["rot", "tilt", "psi"]].abs().to_numpy().max() == 0
    corr = np.corrcoef(s.volumes[0].numpy().ravel(), expected.numpy().ravel())[0, 1]
    assert corr > 0.95


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"snr": 0.0}, "snr must be positive"),
        ({"box": 2}, "box must be at least 4 voxels"),
        ({"n_per_class": [1, 2]}, r"one count per structure \(3\)"),
        ({"noise": "pink"}, "unknown noise recipe 'pink'"),
        ({"rotation": "random"}, "rotation must be 'uniform', 'none'"),
        ({"defocus": (5.0, 2.0)}, "defocus range must be"),
    ],
)
def test_bad_parameters_raise_config_error(kwargs: dict, message: str) -> None:
    args = {"n_per_class": 1, "box": 16, "snr": 1.0, **kwargs}
    with pytest.raises(ConfigError, match=message):
        simulate_subtomograms(SMALL, **args)


REFERENCE = Path(__file__).parent / "data" / "image_formation_v0.1.npz"


def test_image_formation_unchanged_by_the_ctf_sign_convention() -> None:
    """The CTF took RELION's sign (CTF(0) = +A); the simulator forms ``-CTF · x`` so its
    volumes are what they were. The reference was written by the code before the change
    (CPU, one intra-op thread as in conftest); on the dev VM the match is bit-for-bit, the
    tolerance (1e-6 of the largest value) only absorbs other FFT builds and thread counts."""
    ref = np.load(REFERENCE)
    for recipe in ("white", "two-stage"):
        s = simulate_subtomograms(
            ["7PBL", "3ENL"], 1, box=12, voxel_size=25.0, snr=0.5, defocus=(3.0, 6.0),
            shift_max=1.0, seed=7, noise=recipe, bfactor=50.0, return_clean=True,
        )  # fmt: skip
        tol = 1e-6 * float(np.abs(ref[recipe]).max())
        np.testing.assert_allclose(s.volumes.numpy(), ref[recipe], atol=tol, rtol=0)
        assert s.clean is not None
        tol = 1e-6 * float(np.abs(ref["clean"]).max())
        np.testing.assert_allclose(s.clean.numpy(), ref["clean"], atol=tol, rtol=0)


def _correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def test_simulated_particles_are_dark_like_raw_tomograms() -> None:
    """Underfocus, weak phase object: the recorded protein is dark (negative correlation
    with the density), the CTF itself is positive at low frequency; inverting brightens."""
    from cryoal.transforms import Invert

    s = simulate_subtomograms(
        ["7PBL"], 6, box=24, snr=math.inf, shift_max=0.0, defocus=5.0, seed=2, shuffle=False
    )
    tmpl = torch.from_numpy(load_structure("7PBL", 10.0, box=24).density)
    angles = torch.tensor(s.metadata[["rot", "tilt", "psi"]].to_numpy())
    density = rotate_volume(tmpl.expand(6, 1, 24, 24, 24), euler_to_matrix(angles).float())
    c = _correlation(s.volumes, density.squeeze(1))
    assert bool((c < -0.4).all()), c
    bright = _correlation(Invert()(s.volumes.unsqueeze(1)).squeeze(1), density.squeeze(1))
    torch.testing.assert_close(bright, -c)

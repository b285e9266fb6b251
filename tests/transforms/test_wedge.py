"""Tests of cryoal.transforms.wedge against explicit tilt-series geometry."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from cryoal.errors import ConfigError
from cryoal.transforms import apply_missing_wedge, missing_wedge_mask, tilt_angle_grid


def _expected_mask(
    shape: tuple[int, int, int], a: float, b: float, axis: str = "y"
) -> torch.Tensor:
    """Per-voxel geometry, written out with scalar math.

    Tilting by θ about y (right-handed R_y(θ)) projects along n(θ) = R_y(θ)ᵀ e_z =
    (-sin θ, 0, cos θ) in (x, y, z); the measured central slice is {k : k·n(θ) = 0}.
    f(θ) = k·n(θ) is a sinusoid whose zeros are 180° apart, so on [a, b] (length <= 180°)
    the voxel is measured iff f(a)·f(b) <= 0. About x: n(θ) = (0, sin θ, cos θ).
    On even boxes the grid's Friedel mate of a Nyquist voxel is itself, not -k: keep the
    voxel only if its grid mate is kept too.
    """
    d, h, w = shape

    def freq(i: int, n: int) -> float:
        return (i if i < (n + 1) // 2 else i - n) / n

    def f(theta: float, kz: float, ky: float, kx: float) -> float:
        t = math.radians(theta)
        if axis == "y":
            return -kx * math.sin(t) + kz * math.cos(t)
        return ky * math.sin(t) + kz * math.cos(t)

    raw = torch.zeros(shape)
    for i, j, k in itertools.product(range(d), range(h), range(w)):
        kz, ky, kx = freq(i, d), freq(j, h), freq(k, w)
        raw[i, j, k] = float(f(a, kz, ky, kx) * f(b, kz, ky, kx) <= 1e-15)
    out = raw.clone()
    for i, j, k in itertools.product(range(d), range(h), range(w)):
        out[i, j, k] = min(raw[i, j, k], raw[-i % d, -j % h, -k % w])
    return out


@pytest.mark.parametrize(
    ("shape", "tilt_range", "axis"),
    [
        ((9, 7, 11), (-60.0, 60.0), "y"),
        ((8, 6, 10), (-60.0, 60.0), "y"),
        ((9, 7, 11), (-40.0, 65.0), "y"),
        ((10, 8, 8), (-70.0, 35.0), "y"),
        ((9, 11, 7), (-50.0, 60.0), "x"),
        ((8, 10, 6), (-45.0, 30.0), "x"),
    ],
)
def test_mask_matches_explicit_geometry(
    shape: tuple[int, int, int], tilt_range: tuple[float, float], axis: str
) -> None:
    mask = missing_wedge_mask(shape, tilt_range, axis)
    expected = _expected_mask(shape, *tilt_range, axis=axis)
    assert mask.dtype == torch.float32 and mask.shape == shape
    assert torch.equal(mask, expected)


def test_symmetric_range_is_tan_rule() -> None:
    shape = (31, 5, 33)
    mask = missing_wedge_mask(shape, (-60, 60))
    kz = torch.fft.fftfreq(31, dtype=torch.float64).view(31, 1, 1)
    kx = torch.fft.fftfreq(33, dtype=torch.float64).view(1, 1, 33)
    kept = (kz.abs() <= kx.abs() * math.tan(math.radians(60))).expand(shape)
    assert torch.equal(mask.bool(), kept)


def test_dc_and_tilt_axis_always_kept() -> None:
    mask = missing_wedge_mask((16, 16, 16), (0.0, 0.0))
    assert mask[0, 0, 0] == 1
    assert torch.all(mask[0, :, 0] == 1)  # the ky axis lies on every slice
    assert mask[:, :, 0][1:].sum() == 0  # kx = 0, kz != 0: only the ±90° slice
    assert torch.all(mask[0] == 1)  # the 0° slice kz = 0
    assert mask.sum() == 16 * 16


def test_full_range_keeps_everything() -> None:
    assert torch.all(missing_wedge_mask((8, 9, 10), (-90, 90)) == 1)


def test_asymmetric_ranges_mirror_in_kx() -> None:
    a = missing_wedge_mask((15, 3, 15), (-40, 60))
    b = missing_wedge_mask((15, 3, 15), (-60, 40))
    mirrored = torch.roll(torch.flip(b, dims=(2,)), shifts=1, dims=2)  # kx -> -kx
    assert torch.equal(a, mirrored)
    assert not torch.equal(a, b)


@pytest.mark.parametrize("shape", [(16, 12, 20), (15, 13, 11)])
def test_rfft_is_half_of_full_and_hermitian(shape: tuple[int, int, int]) -> None:
    full = missing_wedge_mask(shape, (-55, 48))
    half = missing_wedge_mask(shape, (-55, 48), rfft=True)
    assert half.shape == (*shape[:2], shape[2] // 2 + 1)
    assert torch.equal(half, full[..., : shape[2] // 2 + 1])
    mate = torch.roll(torch.flip(full, dims=(0, 1, 2)), shifts=(1, 1, 1), dims=(0, 1, 2))
    assert torch.equal(full, mate)


def test_apply_zeroes_wedge_power_and_keeps_the_rest(noise32: torch.Tensor) -> None:
    x = noise32.double()
    mask = missing_wedge_mask((32, 32, 32), (-60, 60))
    out = apply_missing_wedge(x, mask)
    assert out.dtype == torch.float64 and out.shape == x.shape
    spec_in = torch.fft.fftn(x, dim=(-3, -2, -1))
    spec_out = torch.fft.fftn(out, dim=(-3, -2, -1))
    wedge = mask == 0
    power_wedge = spec_out.abs()[..., wedge].pow(2).sum() / spec_in.abs().pow(2).sum()
    assert power_wedge < 1e-20
    assert wedge.float().mean() > 0.25  # a real wedge, not an empty region
    torch.testing.assert_close(spec_out[..., ~wedge], spec_in[..., ~wedge])


def test_full_and_half_masks_give_same_result(noise32: torch.Tensor) -> None:
    full = missing_wedge_mask((32, 32, 32), (-45, 60))
    half = missing_wedge_mask((32, 32, 32), (-45, 60), rfft=True)
    a = apply_missing_wedge(noise32, full)
    b = apply_missing_wedge(noise32, half)
    assert a.dtype == torch.float32
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_apply_is_idempotent_and_batched(noise32: torch.Tensor) -> None:
    half = missing_wedge_mask((32, 32, 32), rfft=True)
    once = apply_missing_wedge(noise32, half)
    torch.testing.assert_close(apply_missing_wedge(once, half), once, atol=1e-5, rtol=1e-5)
    single = apply_missing_wedge(noise32[3, 0], half)
    torch.testing.assert_close(single, once[3, 0])


def test_per_volume_masks_broadcast(noise32: torch.Tensor) -> None:
    masks = torch.stack(
        [missing_wedge_mask((32, 32, 32), (-a, a), rfft=True) for a in (30, 45, 60, 75)] * 2
    ).unsqueeze(1)
    out = apply_missing_wedge(noise32, masks)
    for i in (0, 5):
        torch.testing.assert_close(out[i], apply_missing_wedge(noise32[i], masks[i, 0]))


def test_smooth_edge_tapers_outside_range() -> None:
    shape = (24, 4, 24)
    hard = missing_wedge_mask(shape, (-50, 50))
    soft = missing_wedge_mask(shape, (-50, 50), smooth=10.0)
    theta = tilt_angle_grid(shape).expand(shape)
    assert torch.all(soft[hard == 1] == 1)
    assert torch.all((soft >= 0) & (soft <= 1))
    beyond = theta.abs() > 60.0 + 1e-9
    assert torch.all(soft[beyond] == 0)
    ramp = (theta.abs() > 50.5) & (theta.abs() < 59.5)
    assert torch.all((soft[ramp] > 0) & (soft[ramp] < 1))
    # raised cosine of the angular distance past the edge
    sel = ramp & (theta > 0)
    expected = 0.5 * (1 + torch.cos(torch.pi * (theta[sel] - 50.0) / 10.0))
    torch.testing.assert_close(soft[sel].double(), expected, atol=1e-6, rtol=0)


def test_returned_mask_is_a_private_copy() -> None:
    m = missing_wedge_mask((8, 8, 8))
    m.zero_()
    assert missing_wedge_mask((8, 8, 8))[0, 0, 0] == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"tilt_range": (60, -60)},
            r"tilt_range must satisfy -90 <= min <= max <= 90 degrees, got \(60.0, -60.0\)",
        ),
        ({"tilt_range": (-100, 60)}, r"tilt_range must satisfy -90 <= min <= max <= 90"),
        (
            {"tilt_range": "wide"},
            r"tilt_range must be two angles in degrees \(min, max\), got 'wide'",
        ),
        ({"tilt_axis": "z"}, r"tilt_axis must be 'y' or 'x', got 'z'"),
        ({"smooth": -1.0}, r"smooth must be >= 0 degrees, got -1.0"),
    ],
)
def test_mask_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        missing_wedge_mask((8, 8, 8), **kwargs)  # type: ignore[arg-type]


def test_apply_rejects_mismatched_mask() -> None:
    with pytest.raises(
        ConfigError,
        match=r"apply_missing_wedge: filter shape \(8, 8, 7\) does not match volume box \(8, 8, 8\)",
    ):
        apply_missing_wedge(torch.zeros(8, 8, 8), torch.ones(8, 8, 7))
    with pytest.raises(
        ConfigError, match=r"filter shape \(16, 16, 9\) does not match volume box \(8, 8, 8\)"
    ):
        apply_missing_wedge(torch.zeros(8, 8, 8), missing_wedge_mask((16, 16, 16), rfft=True))

"""Tests of cryoal.transforms.ctf against the analytic CTF."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from cryoal.errors import ConfigError
from cryoal.transforms import (
    apply_ctf,
    ctf_1d,
    ctf_3d,
    ctf_zero_frequencies,
    electron_wavelength,
)


@pytest.mark.parametrize(("kv", "angstrom"), [(300, 0.019687), (200, 0.025079), (100, 0.037014)])
def test_relativistic_wavelength(kv: float, angstrom: float) -> None:
    assert electron_wavelength(kv) == pytest.approx(angstrom, abs=2e-6)


def test_zero_frequencies_closed_form_without_cs() -> None:
    lam = electron_wavelength(300)
    a = 0.1
    phi = math.atan(a / math.sqrt(1 - a * a))
    zeros = ctf_zero_frequencies(4, 3.0, cs_mm=0.0, amplitude_contrast=a)
    expected = [math.sqrt((n * math.pi - phi) / (math.pi * lam * 3e4)) for n in range(1, 5)]
    assert zeros == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("defocus", "cs"), [(5.0, 2.7), (1.5, 2.7), (3.0, 0.0), (8.0, 0.01)])
def test_ctf_vanishes_at_analytic_zeros(defocus: float, cs: float) -> None:
    zeros = ctf_zero_frequencies(6, defocus, cs_mm=cs)
    assert len(zeros) == 6
    values = ctf_1d(torch.tensor(zeros, dtype=torch.float64), defocus, cs_mm=cs)
    assert torch.all(values.abs() < 1e-9)
    # and it is not zero half-way between them
    mid = torch.tensor([(p + q) / 2 for p, q in itertools.pairwise(zeros)], dtype=torch.float64)
    assert torch.all(ctf_1d(mid, defocus, cs_mm=cs).abs() > 0.5)


def test_grid_sign_changes_bracket_the_analytic_zeros() -> None:
    voxel = 2.0
    ctf = ctf_3d((1, 1, 512), voxel, 2.0).double()[0, 0, :256]
    k = torch.arange(256, dtype=torch.float64) / 512 / voxel
    crossings = [i for i in range(255) if ctf[i] * ctf[i + 1] < 0]
    zeros = [z for z in ctf_zero_frequencies(40, 2.0) if z < k[255]]
    assert len(crossings) == len(zeros) > 5
    for i, z in zip(crossings, zeros, strict=True):
        assert k[i] < z < k[i + 1]


def test_ctf_3d_equals_ctf_1d_at_voxel_radius() -> None:
    shape, voxel = (6, 7, 8), 4.5
    ctf = ctf_3d(shape, voxel, 2.5, 200, 2.0, 0.1, 50.0)
    lam = electron_wavelength(200)
    phi_w = math.sqrt(1 - 0.1**2)

    def freq(i: int, n: int) -> float:
        return (i if i < (n + 1) // 2 else i - n) / n

    for i, j, k in itertools.product(*(range(s) for s in shape)):
        kk = math.sqrt(freq(i, 6) ** 2 + freq(j, 7) ** 2 + freq(k, 8) ** 2) / voxel
        chi = math.pi * lam * 2.5e4 * kk**2 - 0.5 * math.pi * 2.0e7 * lam**3 * kk**4
        value = (phi_w * math.sin(chi) + 0.1 * math.cos(chi)) * math.exp(-50.0 * kk**2 / 4)
        assert ctf[i, j, k].item() == pytest.approx(value, abs=1e-6)


def test_dc_value_and_bfactor_envelope() -> None:
    plain = ctf_3d((16, 16, 16), 5.0, 4.0)
    damped = ctf_3d((16, 16, 16), 5.0, 4.0, bfactor=200.0)
    assert plain[0, 0, 0].item() == pytest.approx(0.07)  # +A, RELION's sign
    k2 = (
        sum(
            torch.fft.fftfreq(16, dtype=torch.float64).view(*s) ** 2
            for s in ((16, 1, 1), (1, 16, 1), (1, 1, 16))
        )
        / 25.0
    )
    torch.testing.assert_close(
        damped.double(), plain.double() * torch.exp(-200.0 * k2 / 4), atol=1e-6, rtol=0
    )


def test_negative_defocus_is_overfocus() -> None:
    k = torch.linspace(0.0, 0.05, 11, dtype=torch.float64)
    lam = electron_wavelength(300)
    chi = math.pi * lam * (-2e4) * k**2 - 0.5 * math.pi * 2.7e7 * lam**3 * k**4
    expected = math.sqrt(1 - 0.07**2) * torch.sin(chi) + 0.07 * torch.cos(chi)
    torch.testing.assert_close(ctf_1d(k, -2.0), expected)
    assert ctf_1d(torch.tensor([0.01], dtype=torch.float64), 2.0).item() > 0.07  # underfocus rises


def test_rfft_layout_and_per_volume_defocus() -> None:
    full = ctf_3d((12, 10, 14), 8.0, 3.0)
    half = ctf_3d((12, 10, 14), 8.0, 3.0, rfft=True)
    assert half.shape == (12, 10, 8)
    assert torch.equal(half, full[..., :8])
    batch = ctf_3d((12, 10, 14), 8.0, torch.tensor([3.0, 5.0]), rfft=True)
    assert batch.shape == (2, 1, 12, 10, 8) and batch.dtype == torch.float32
    torch.testing.assert_close(batch[0, 0], half)
    torch.testing.assert_close(batch[1, 0], ctf_3d((12, 10, 14), 8.0, 5.0, rfft=True))


def test_apply_full_multiplies_spectrum(noise32: torch.Tensor) -> None:
    x = noise32.double()
    ctf = ctf_3d((32, 32, 32), 10.0, 5.0)
    out = apply_ctf(x, ctf)
    assert out.dtype == torch.float64 and out.shape == x.shape
    # the recorded image (contrast="dark"): spectrum times -CTF
    expected = torch.fft.fftn(x, dim=(-3, -2, -1)) * -ctf.double()
    torch.testing.assert_close(
        torch.fft.fftn(out, dim=(-3, -2, -1)), expected, atol=1e-6, rtol=1e-6
    )
    assert torch.equal(apply_ctf(x, ctf, contrast="bright"), apply_ctf(x, -ctf))
    torch.testing.assert_close(apply_ctf(x, ctf, contrast="bright"), -out)
    half = apply_ctf(noise32, ctf_3d((32, 32, 32), 10.0, 5.0, rfft=True))
    torch.testing.assert_close(half.double(), out, atol=1e-4, rtol=1e-4)


def test_phaseflip_corrects_phases(noise32: torch.Tensor) -> None:
    x = noise32.double()
    ctf = ctf_3d((32, 32, 32), 10.0, 5.0, rfft=True)
    spec = torch.fft.rfftn(x, dim=(-3, -2, -1))
    # phase flipping keeps the contrast: a dark image stays dark (-|CTF|), a bright one bright
    for contrast, sign in (("dark", -1.0), ("bright", 1.0)):
        corrected = apply_ctf(apply_ctf(x, ctf, contrast=contrast), ctf, mode="phaseflip")
        ratio = torch.fft.rfftn(corrected, dim=(-3, -2, -1)) / spec
        torch.testing.assert_close(
            ratio.real, sign * ctf.double().abs().expand_as(ratio.real), atol=1e-6, rtol=1e-6
        )
    twice = apply_ctf(apply_ctf(x, ctf, "phaseflip"), ctf, "phaseflip")
    torch.testing.assert_close(twice, x)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"amplitude_contrast": 7.0},
            r"amplitude_contrast must be in \[0, 1\), got 7.0 \(a fraction",
        ),
        ({"voltage_kv": 0.0}, r"voltage_kv must be positive, got 0.0"),
        ({"cs_mm": -1.0}, r"cs_mm must be >= 0 mm, got -1.0"),
        ({"bfactor": -5.0}, r"bfactor must be >= 0 Å², got -5.0"),
        ({"voxel_size": 0.0}, r"ctf_3d: voxel_size must be positive Å, got 0.0"),
    ],
)
def test_ctf_rejects_bad_parameters(kwargs: dict[str, float], message: str) -> None:
    args: dict[str, float] = {"voxel_size": 10.0, "defocus_um": 5.0} | kwargs
    with pytest.raises(ConfigError, match=message):
        ctf_3d((8, 8, 8), **args)


def test_apply_ctf_rejects_unknown_mode() -> None:
    with pytest.raises(
        ConfigError, match=r"apply_ctf: mode must be 'full' or 'phaseflip', got 'wiener'"
    ):
        apply_ctf(torch.zeros(8, 8, 8), ctf_3d((8, 8, 8), 10.0, 5.0), mode="wiener")
    with pytest.raises(
        ConfigError, match=r"apply_ctf: contrast must be 'dark' or 'bright', got 'white'"
    ):
        apply_ctf(torch.zeros(8, 8, 8), ctf_3d((8, 8, 8), 10.0, 5.0), contrast="white")


def _relion_ctf(
    k: torch.Tensor, defocus_um: float, kv: float, cs_mm: float, q0: float, bfac: float
) -> torch.Tensor:
    """RELION's CTF, transcribed from 3dem/relion src/ctf.h (``CTF::getCTF``) and
    src/ctf.cpp (``CTF::initialise``), isotropic, no phase plate, scale 1.

    RELION stores the defocus negated (``defocus_average = -(DeltafU + DeltafV) / 2``).
    Its wavelength is the fit ``12.2643247 / sqrt(V (1 + 0.978466e-6 V))``, which agrees
    with the CODATA value to 6e-6 (checked below) but, at 4 Å and 5 µm, moves χ by ~1e-3
    rad; the comparison uses the CODATA wavelength so that only the formula is compared.
    """
    lam = electron_wavelength(kv)
    k1 = math.pi / 2 * 2 * lam
    k2 = math.pi / 2 * cs_mm * 1e7 * lam**3
    k3 = math.atan(q0 / math.sqrt(1 - q0 * q0))
    k4 = -bfac / 4.0
    deltaf = -(defocus_um * 1e4 + defocus_um * 1e4) * 0.5
    u2 = k**2
    argument = k1 * deltaf * u2 + k2 * u2**2 - k3
    return -torch.sin(argument) * torch.exp(k4 * u2)


@pytest.mark.parametrize(
    ("defocus", "kv", "cs", "ac", "bfac"),
    [(5.0, 300.0, 2.7, 0.07, 0.0), (2.0, 200.0, 2.0, 0.1, 80.0), (-1.5, 300.0, 0.01, 0.2, 0.0)],
)
def test_ctf_matches_relion_closed_form(
    defocus: float, kv: float, cs: float, ac: float, bfac: float
) -> None:
    k = torch.linspace(0.0, 0.25, 2001, dtype=torch.float64)
    ours = ctf_1d(k, defocus, kv, cs, ac, bfac)
    ref = _relion_ctf(k, defocus, kv, cs, ac, bfac)
    torch.testing.assert_close(ours, ref, atol=1e-9, rtol=0)
    assert ours[0].item() == pytest.approx(ac) and ref[0].item() == pytest.approx(ac)  # +A
    v = kv * 1e3
    relion_lambda = 12.2643247 / math.sqrt(v * (1.0 + v * 0.978466e-6))
    assert electron_wavelength(kv) == pytest.approx(relion_lambda, rel=1e-5)  # 6e-6 apart


def test_ctf_matches_torch_ctf() -> None:
    """Independent implementation: teamtomo torch-ctf (installed only with --no-deps)."""
    torch_ctf = pytest.importorskip("torch_ctf")
    for df, voxel, ac in ((5.0, 10.0, 0.07), (2.0, 4.0, 0.1), (1.0, 2.0, 0.07)):
        ref = torch_ctf.calculate_ctf_2d(
            defocus=df, astigmatism=0.0, astigmatism_angle=0.0, voltage=300.0,
            spherical_aberration=2.7, amplitude_contrast=ac, phase_shift=0.0,
            pixel_size=voxel, image_shape=(32, 32), rfft=False, fftshift=False,
        )  # fmt: skip
        ours = ctf_3d((1, 32, 32), voxel, df, amplitude_contrast=ac)[0]
        torch.testing.assert_close(ours, ref.float(), atol=3e-5, rtol=0)

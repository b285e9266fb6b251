"""Shared image formation of the simulator: shift, CTF, missing wedge and noise at an SNR.

Everything happens in one half-spectrum (``rfftn``) pass per stage, with the filters of
:mod:`cryoal.transforms` (``ctf_3d``, ``missing_wedge_mask``). Noise levels are
calibrated so that, in the *output* volume, ``var(signal) / var(noise) = snr`` (the
field's definition) whatever recipe, CTF and wedge are used:

``"white"``
    ``y = W C T x + n``, white Gaussian ``n`` (what :func:`cryoal.transforms.add_noise`
    does to a clean volume).
``"two-stage"``
    ``y = W (C (T x + n1) + n2)``: half of the noise power enters before the CTF (shot
    noise on the specimen), half after it (detector), and the reconstruction's missing
    wedge removes both. ``n1, n2 ~ N(0, s^2)`` with
    ``s^2 = var(W C T x) / (snr * (mean|W C|^2 + mean|W|^2))``.

``T`` is the sub-voxel translation (a Fourier phase ramp), ``C = -CTF`` the microscope's
transfer of the density to the recorded image (``CTF`` from :func:`ctf_3d`, RELION's sign;
the minus makes protein dark under underfocus, as in raw tomograms), ``W`` the wedge
mask, means over the full Fourier grid (Parseval).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from cryoal.errors import ConfigError
from cryoal.transforms import ctf_3d, missing_wedge_mask

RECIPES = ("white", "two-stage")


def check_recipe(recipe: str) -> str:
    if recipe not in RECIPES:
        raise ConfigError(f"unknown noise recipe {recipe!r}; use one of {', '.join(RECIPES)}")
    return recipe


def half_spectrum_power(filt: torch.Tensor, width: int) -> torch.Tensor:
    """Mean of ``|H|^2`` over the full grid from a Hermitian filter in rfft layout.

    ``filt`` is ``(..., D, H, W//2+1)``; returns ``(...)`` float64.
    """
    w = torch.full((filt.shape[-1],), 2.0, dtype=torch.float64, device=filt.device)
    w[0] = 1.0
    if width % 2 == 0:
        w[-1] = 1.0
    p = (filt.to(torch.float64) ** 2 * w).sum(dim=(-3, -2, -1))
    return p / (filt.shape[-3] * filt.shape[-2] * width)


def phase_ramp(shifts: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Fourier phase ramp that translates volumes by ``shifts`` voxels.

    ``shifts`` is ``(B, 3)`` in (x, y, z) voxels; returns complex ``(B, D, H, W//2+1)``,
    built from three separable 1D ramps.
    """
    d, h, w = shape
    dev = shifts.device
    s = shifts.to(torch.float64)

    def ramp(freq: torch.Tensor, col: int) -> torch.Tensor:
        arg = -2.0 * math.pi * s[:, col : col + 1] * freq.unsqueeze(0)
        return torch.polar(torch.ones_like(arg), arg).to(torch.complex64)

    rz = ramp(torch.fft.fftfreq(d, device=dev, dtype=torch.float64), 2)
    ry = ramp(torch.fft.fftfreq(h, device=dev, dtype=torch.float64), 1)
    rx = ramp(torch.fft.rfftfreq(w, device=dev, dtype=torch.float64), 0)
    return rz[:, :, None, None] * ry[:, None, :, None] * rx[:, None, None, :]


def noise_streams(seeds: Sequence[int], shape: tuple[int, ...], count: int) -> list[torch.Tensor]:
    """``count`` standard-normal tensors ``(B, *shape)`` from one CPU generator per volume.

    One stream per volume makes the result independent of batch size and device.
    """
    out = [torch.empty((len(seeds), *shape)) for _ in range(count)]
    for i, seed in enumerate(seeds):
        g = torch.Generator().manual_seed(int(seed))
        for t in out:
            t[i] = torch.randn(shape, generator=g)
    return out


def form_images(
    x: torch.Tensor,
    *,
    voxel_size: float,
    snr: float,
    shifts: torch.Tensor | None,
    defocus_um: torch.Tensor | None,
    tilt_range: tuple[float, float] | None,
    tilt_axis: str,
    voltage_kv: float,
    cs_mm: float,
    amplitude_contrast: float,
    bfactor: float,
    recipe: str,
    seeds: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image clean volumes ``x (B, D, H, W)``; return ``(noisy, clean)`` of the same shape.

    ``defocus_um (B,)`` µm (positive = underfocus) or None for no CTF; ``tilt_range`` in
    degrees or None for no wedge; ``shifts (B, 3)`` voxels (x, y, z) or None.
    """
    b, d, h, w = x.shape
    shape = (d, h, w)
    spec = torch.fft.rfftn(x, dim=(-3, -2, -1))
    ones = torch.ones((1, d, h, w // 2 + 1), device=x.device)
    wedge = (
        missing_wedge_mask(
            shape,
            (float(tilt_range[0]), float(tilt_range[1])),
            tilt_axis,
            rfft=True,
            device=x.device,
        ).unsqueeze(0)
        if tilt_range is not None
        else ones
    )
    if defocus_um is not None:
        same = bool((defocus_um == defocus_um[0]).all())
        ctf = ctf_3d(
            shape,
            voxel_size,
            defocus_um[:1].to(x.device) if same else defocus_um.to(x.device),
            voltage_kv,
            cs_mm,
            amplitude_contrast,
            bfactor,
            rfft=True,
            device=x.device,
        ).reshape(-1, d, h, w // 2 + 1)
        ctf = -ctf  # recorded image: protein dark (apply_ctf's contrast="dark")
    else:
        ctf = ones
    filt_wc = wedge * ctf
    if shifts is not None:
        spec = spec * phase_ramp(shifts.to(x.device), shape)
    clean = torch.fft.irfftn(spec * filt_wc, s=shape, dim=(-3, -2, -1))
    if math.isinf(snr):
        return clean.clone(), clean
    sig_var = clean.var(dim=(-3, -2, -1), unbiased=False).to(torch.float64)
    if recipe == "white":
        (n,) = noise_streams(seeds, shape, 1)
        sigma = torch.sqrt(sig_var / snr).to(x.dtype).view(b, 1, 1, 1)
        return clean + n.to(x.device) * sigma, clean
    p_wc = half_spectrum_power(filt_wc, w).expand(b)
    p_w = half_spectrum_power(wedge, w).expand(b)
    s = torch.sqrt(sig_var / (snr * (p_wc + p_w))).to(x.dtype).view(b, 1, 1, 1)
    n1, n2 = noise_streams(seeds, shape, 2)
    nspec = torch.fft.rfftn(n1.to(x.device) * s, dim=(-3, -2, -1)) * filt_wc
    nspec = nspec + torch.fft.rfftn(n2.to(x.device) * s, dim=(-3, -2, -1)) * wedge
    noise = torch.fft.irfftn(nspec, s=shape, dim=(-3, -2, -1))
    return clean + noise, clean

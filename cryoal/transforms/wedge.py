"""The missing wedge of a single-axis tilt series, as a Fourier mask.

Geometry (see docs/simulation.md, "Physics"): arrays are ``(z, y, x)``; at 0° tilt the
beam runs along z. Tilting the specimen by θ about the y axis (right-handed rotation
``R_y(θ)``) is the same as projecting the untilted specimen along ``(-sin θ, 0, cos θ)``
in ``(x, y, z)``. By the Fourier slice theorem that projection samples the central plane
perpendicular to it, i.e. the Fourier voxels with ``kz·cos θ = kx·sin θ``: voxel
``(kz, ky, kx)`` lies on the slice of tilt ``θ(k) = arctan(kz / kx)``. A tilt series
over ``[a, b]`` therefore measures every voxel whose ``θ(k)`` (taken modulo 180°) falls in
``[a, b]``; for a symmetric range ±θmax that is ``|kz| <= |kx|·tan θmax``. For tilt axis x
the rotation is ``R_x(θ)``, the beam ``(0, sin θ, cos θ)`` and ``θ(k) = arctan(-kz / ky)``.
Voxels on the tilt axis (``kz = kx = 0`` for axis y), including DC, lie on every slice and
are always kept.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from cryoal.errors import ConfigError
from cryoal.transforms._fourier import check_shape, fourier_filter, frequency_grid

__all__ = ["apply_missing_wedge", "missing_wedge_mask", "tilt_angle_grid"]

# Boundary voxels whose slice angle equals a range end within this many degrees are kept.
_ANGLE_TOL_DEG = 1e-7


def check_tilt_axis(tilt_axis: str) -> str:
    """Return ``tilt_axis`` lower-cased if it is ``'y'`` or ``'x'``; raise ConfigError otherwise."""
    axis = str(tilt_axis).lower()
    if axis not in ("x", "y"):
        raise ConfigError(f"missing wedge: tilt_axis must be 'y' or 'x', got {tilt_axis!r}")
    return axis


def _check_range(tilt_range: tuple[float, float] | list[float]) -> tuple[float, float]:
    try:
        a, b = (float(t) for t in tilt_range)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"missing wedge: tilt_range must be two angles in degrees (min, max), got {tilt_range!r}"
        ) from exc
    if not (math.isfinite(a) and math.isfinite(b)) or not (-90.0 <= a <= b <= 90.0):
        raise ConfigError(
            f"missing wedge: tilt_range must satisfy -90 <= min <= max <= 90 degrees, got ({a}, {b})"
        )
    return a, b


def tilt_angle_grid(
    shape: tuple[int, int, int], tilt_axis: str = "y", *, rfft: bool = False
) -> torch.Tensor:
    """Tilt angle of the central slice through each Fourier voxel.

    Parameters
    ----------
    shape
        Box ``(D, H, W)`` in voxels.
    tilt_axis
        ``"y"`` (default) or ``"x"``.
    rfft
        Half-spectrum layout ``(D, H, W // 2 + 1)`` of :func:`torch.fft.rfftn`.

    Returns
    -------
    torch.Tensor
        float64 angles in degrees, in ``(-90, 90]``, broadcastable to the Fourier box
        (unshifted FFT layout). Voxels on the tilt axis (every slice) hold NaN.
    """
    box = check_shape(shape, "tilt_angle_grid")
    axis = check_tilt_axis(tilt_axis)
    kz, ky, kx = frequency_grid(box, rfft=rfft)
    if axis == "y":
        num, den = kz, kx
    else:
        num, den = -kz, ky
    num, den = torch.broadcast_tensors(num, den)  # type: ignore[no-untyped-call]
    theta = torch.rad2deg(torch.atan2(num, den))
    theta = torch.where(theta > 90.0, theta - 180.0, theta)
    theta = torch.where(theta <= -90.0, theta + 180.0, theta)
    on_axis = (num == 0) & (den == 0)
    return torch.where(on_axis, torch.full_like(theta, float("nan")), theta)


# 128 masks: 16 MiB at 32³, 1 GiB at 128³ (full layout, float32).
@lru_cache(maxsize=128)
def _mask_cpu(
    shape: tuple[int, int, int], a: float, b: float, axis: str, smooth: float
) -> torch.Tensor:
    theta = tilt_angle_grid(shape, axis)
    # Angular distance (degrees) from [a, b] on the circle of slice angles (period 180°).
    dist = torch.full_like(theta, float("inf"))
    for shift in (-180.0, 0.0, 180.0):
        t = theta + shift
        dist = torch.minimum(dist, torch.clamp(torch.maximum(a - t, t - b), min=0.0))
    dist = torch.where(torch.isnan(theta), torch.zeros_like(dist), dist)
    if smooth > 0:
        taper = 0.5 * (1.0 + torch.cos(torch.pi * torch.clamp(dist / smooth, max=1.0)))
        mask = torch.where(dist <= _ANGLE_TOL_DEG, torch.ones_like(dist), taper)
    else:
        mask = (dist <= _ANGLE_TOL_DEG).to(torch.float64)
    mask = torch.broadcast_to(mask, shape).clone()
    # Hermitian symmetry on the discrete grid: keep a voxel only if its Friedel mate
    # (index -i mod N, which differs from the true -k only on even-size Nyquist planes)
    # is kept too, so the masked spectrum of a real volume stays Hermitian.
    mate = torch.roll(torch.flip(mask, dims=(0, 1, 2)), shifts=(1, 1, 1), dims=(0, 1, 2))
    return torch.minimum(mask, mate).to(torch.float32)


def missing_wedge_mask(
    shape: tuple[int, int, int] | torch.Size,
    tilt_range: tuple[float, float] = (-60.0, 60.0),
    tilt_axis: str = "y",
    rfft: bool = False,
    *,
    smooth: float = 0.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Fourier mask of the region a single-axis tilt series measures.

    Parameters
    ----------
    shape
        Box ``(D, H, W)`` in voxels (z, y, x).
    tilt_range
        ``(min, max)`` tilt in degrees, ``-90 <= min <= max <= 90``; asymmetric ranges are
        handled exactly (union of the central slices of every tilt in the range).
    tilt_axis
        ``"y"`` (default; wedge where ``|kz| > |kx|·tan θmax``) or ``"x"``.
    rfft
        Return the half spectrum ``(D, H, W // 2 + 1)`` matching :func:`torch.fft.rfftn`
        (twice as fast to apply) instead of the full ``(D, H, W)`` layout.
    smooth
        Width in degrees of a raised-cosine soft edge outside the measured range (0: a
        hard 0/1 mask). Voxels further than ``smooth`` from the range are 0.
    device
        Device of the returned mask (default CPU).

    Returns
    -------
    torch.Tensor
        float32 mask in the unshifted FFT layout (DC at ``[0, 0, 0]``): 1 where measured,
        0 in the missing wedge. DC and the tilt axis are always 1. The mask is
        Hermitian-symmetric on the grid, so filtering a real volume keeps it real.

    Raises
    ------
    ConfigError
        Bad shape, tilt range, tilt axis or smoothing width.
    """
    box = check_shape(tuple(shape), "missing_wedge_mask")
    a, b = _check_range(tilt_range)
    axis = check_tilt_axis(tilt_axis)
    smooth_f = float(smooth)
    if not math.isfinite(smooth_f) or smooth_f < 0:
        raise ConfigError(f"missing_wedge_mask: smooth must be >= 0 degrees, got {smooth!r}")
    mask = _mask_cpu(box, a, b, axis, smooth_f)
    if rfft:
        mask = mask[..., : box[2] // 2 + 1]
    return mask.to(device=torch.device(device) if device is not None else "cpu", copy=True)


def apply_missing_wedge(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Remove the missing wedge from real volumes.

    Parameters
    ----------
    x
        Real volumes ``(..., D, H, W)``, e.g. ``(B, C, D, H, W)`` or ``(D, H, W)``.
    mask
        Fourier mask from :func:`missing_wedge_mask`: full ``(D, H, W)`` (applied with
        ``fftn``) or half ``(D, H, W // 2 + 1)`` (``rfftn``), optionally with leading
        dims broadcastable to ``x``'s (one wedge per volume). Moved to ``x``'s device.

    Returns
    -------
    torch.Tensor
        Real filtered volumes, same shape, dtype and device as ``x``.

    Raises
    ------
    ConfigError
        The mask does not match the volume box.
    """
    return fourier_filter(x, mask, "apply_missing_wedge")

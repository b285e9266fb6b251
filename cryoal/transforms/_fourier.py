"""Private Fourier helpers shared by the wedge and CTF kernels.

Layout conventions (used by every Fourier-space array in :mod:`cryoal.transforms`):

- arrays are ``(z, y, x)`` = ``(D, H, W)``, as mrcfile gives them;
- Fourier arrays are in the *unshifted* FFT layout of :func:`torch.fft.fftn` (DC at index
  0, frequencies from :func:`torch.fft.fftfreq`), or, with ``rfft=True``, the half
  spectrum ``(D, H, W // 2 + 1)`` of :func:`torch.fft.rfftn`;
- frequencies are in cycles per voxel (``[-0.5, 0.5)``) unless a voxel size turns them
  into cycles per Å.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from cryoal.errors import ConfigError

__all__ = ["check_shape", "fourier_filter", "frequency_grid", "spatial_shape"]

_SPATIAL = (-3, -2, -1)


def check_shape(shape: tuple[int, ...] | torch.Size, what: str) -> tuple[int, int, int]:
    """Validate a 3D box shape ``(D, H, W)`` and return it as a tuple of ints.

    Raises
    ------
    ConfigError
        The shape does not have three positive entries.
    """
    dims = tuple(int(s) for s in shape)
    if len(dims) != 3 or any(s < 1 for s in dims):
        raise ConfigError(
            f"{what}: shape must be three positive sizes (D, H, W), got {tuple(shape)}"
        )
    return dims[0], dims[1], dims[2]


def spatial_shape(x: torch.Tensor, what: str) -> tuple[int, int, int]:
    """Return the trailing ``(D, H, W)`` of a volume tensor ``(..., D, H, W)``.

    Raises
    ------
    ConfigError
        The tensor has fewer than three dimensions or is not floating point.
    """
    if x.ndim < 3:
        raise ConfigError(
            f"{what}: expected a volume tensor (D, H, W) or (B, C, D, H, W), got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ConfigError(f"{what}: expected a floating-point tensor, got dtype {x.dtype}")
    return check_shape(x.shape[-3:], what)


@lru_cache(maxsize=64)
def _frequency_grid_cpu(shape: tuple[int, int, int], rfft: bool) -> tuple[torch.Tensor, ...]:
    d, h, w = shape
    kz = torch.fft.fftfreq(d, dtype=torch.float64).view(d, 1, 1)
    ky = torch.fft.fftfreq(h, dtype=torch.float64).view(1, h, 1)
    if rfft:
        kx = torch.fft.rfftfreq(w, dtype=torch.float64).view(1, 1, w // 2 + 1)
    else:
        kx = torch.fft.fftfreq(w, dtype=torch.float64).view(1, 1, w)
    return kz, ky, kx


def frequency_grid(
    shape: tuple[int, int, int], *, rfft: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Broadcastable frequency axes ``kz (D,1,1)``, ``ky (1,H,1)``, ``kx (1,1,W')``.

    Frequencies are float64 on the CPU, in cycles per voxel, in the unshifted FFT layout
    (``W' = W // 2 + 1`` when ``rfft``). The returned tensors are cached: do not modify
    them in place.
    """
    kz, ky, kx = _frequency_grid_cpu(shape, rfft)
    return kz, ky, kx


def fourier_filter(x: torch.Tensor, filt: torch.Tensor, what: str) -> torch.Tensor:
    """Multiply the 3D spectrum of a real volume by a real filter and transform back.

    Parameters
    ----------
    x
        Real volumes ``(..., D, H, W)``.
    filt
        Real filter broadcastable to the spectrum: full layout ``(..., D, H, W)`` (applied
        with :func:`torch.fft.fftn`, real part kept) or half layout ``(..., D, H, W//2+1)``
        (applied with :func:`torch.fft.rfftn`). Moved to ``x``'s device.

    Returns
    -------
    torch.Tensor
        Filtered real volumes, same shape and dtype as ``x``.

    Raises
    ------
    ConfigError
        The filter's trailing shape matches neither layout of ``x``.
    """
    d, h, w = spatial_shape(x, what)
    if filt.ndim < 3 or tuple(filt.shape[-3:-1]) != (d, h):
        raise ConfigError(
            f"{what}: filter shape {tuple(filt.shape)} does not match volume box {(d, h, w)}; "
            f"expected (..., {d}, {h}, {w}) or the half spectrum (..., {d}, {h}, {w // 2 + 1})"
        )
    half = w // 2 + 1
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    filt = filt.to(device=x.device, dtype=work.dtype)
    if filt.shape[-1] == half:
        spec = torch.fft.rfftn(work, dim=_SPATIAL)
        out = torch.fft.irfftn(spec * filt, s=(d, h, w), dim=_SPATIAL)
    elif filt.shape[-1] == w:
        spec = torch.fft.fftn(work, dim=_SPATIAL)
        out = torch.fft.ifftn(spec * filt, dim=_SPATIAL).real
    else:
        raise ConfigError(
            f"{what}: filter shape {tuple(filt.shape)} does not match volume box {(d, h, w)}; "
            f"expected last dimension {w} (full) or {half} (rfft half spectrum)"
        )
    result: torch.Tensor = out.to(x.dtype)
    return result

"""Intensity normalisation of volumes."""

from __future__ import annotations

import torch

from cryoal.errors import ConfigError
from cryoal.transforms._fourier import spatial_shape

__all__ = ["normalize"]

_SPATIAL = (-3, -2, -1)


def normalize(x: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """Per-volume z-score: zero mean, unit standard deviation over the spatial dims.

    This is the ``normalization="zscore"`` that datasets apply before a model sees a
    volume and that checkpoints record.

    Parameters
    ----------
    x
        Volumes ``(..., D, H, W)``; each leading index (batch item, channel) is
        normalised on its own.
    eps
        Floor of the standard deviation, so a constant volume maps to zeros instead of
        NaN.

    Returns
    -------
    torch.Tensor
        ``(x - mean) / max(std, eps)`` with the population std, same shape, dtype and
        device as ``x``.
    """
    spatial_shape(x, "normalize")
    if not eps > 0:
        raise ConfigError(f"normalize: eps must be positive, got {eps!r}")
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    mean = work.mean(dim=_SPATIAL, keepdim=True)
    centred = work - mean
    std = centred.pow(2).mean(dim=_SPATIAL, keepdim=True).sqrt()
    return (centred / std.clamp_min(eps)).to(x.dtype)

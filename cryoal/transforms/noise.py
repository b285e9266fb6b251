"""Additive Gaussian noise at a signal-to-noise ratio (the field's definition).

SNR = var(signal) / var(noise), measured per volume over its spatial voxels. A volume
at SNR 0.1 therefore carries noise with ten times the variance of its signal.
"""

from __future__ import annotations

import math

import torch

from cryoal.errors import ConfigError
from cryoal.transforms._fourier import spatial_shape

__all__ = ["add_noise", "measure_snr", "randn"]

_SPATIAL = (-3, -2, -1)


def randn(
    shape: tuple[int, ...] | torch.Size,
    *,
    generator: torch.Generator | None,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Standard normal draws on ``device``, from ``generator`` wherever it lives.

    A CPU generator used for a CUDA tensor draws on the CPU and copies, so a seed gives the
    same numbers on every device.
    """
    if generator is None or generator.device == device:
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    draw = torch.randn(shape, generator=generator, device=generator.device, dtype=dtype)
    return draw.to(device)


def _per_volume(value: float | torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
    """Broadcast a scalar or per-batch-item value to ``x``'s leading dims + (1, 1, 1)."""
    lead = x.shape[:-3]
    v = torch.as_tensor(value, dtype=torch.float64).to(x.device)
    if v.ndim == 1 and len(lead) >= 1 and v.shape[0] == lead[0] and v.shape[0] != 1:
        v = v.view(v.shape[0], *([1] * (len(lead) - 1)))
    try:
        v = torch.broadcast_to(v, lead) if len(lead) else v.reshape(())
    except RuntimeError as exc:
        raise ConfigError(
            f"add_noise: {name} of shape {tuple(v.shape)} does not broadcast to the batch "
            f"shape {tuple(lead)} of volumes {tuple(x.shape)}; pass a scalar or one value per "
            "batch item"
        ) from exc
    return v.reshape(*lead, 1, 1, 1)


def add_noise(
    x: torch.Tensor,
    snr: float | torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    signal_var: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Add white Gaussian noise at a given SNR, per volume.

    The noise variance of each volume is ``var(signal) / snr`` where ``var(signal)`` is
    the population variance of that volume over its spatial voxels (``D, H, W``), so the
    expected SNR = var(signal) / var(noise) equals ``snr``.

    Parameters
    ----------
    x
        Clean volumes ``(B, C, D, H, W)``, ``(C, D, H, W)`` or ``(D, H, W)``; every leading
        index is one volume.
    snr
        Positive SNR (dimensionless): a scalar, or a tensor with one value per batch item
        ``(B,)``, or any tensor broadcastable to the leading dims of ``x``. ``inf`` means no
        noise for that volume.
    generator
        Source of randomness; a CPU generator works for CUDA input (drawn on the CPU and
        copied, so the same seed gives the same noise on every device).
    signal_var
        Reference signal variance to use instead of each volume's own variance (e.g. the
        variance of the clean volume when noise is added in several stages). Scalar or
        per batch item.

    Returns
    -------
    torch.Tensor
        ``x + noise``, same shape, dtype and device as ``x``. With a scalar ``snr=inf``, an
        unchanged copy (the generator is not advanced).

    Raises
    ------
    ConfigError
        ``snr`` is not positive (or NaN), or does not broadcast to the batch.
    """
    spatial_shape(x, "add_noise")
    if not isinstance(snr, torch.Tensor):
        snr_f = float(snr)
        if math.isnan(snr_f) or snr_f <= 0:
            raise ConfigError(f"add_noise: snr must be positive (or inf for no noise), got {snr!r}")
        if math.isinf(snr_f):
            return x.clone()
    snr_t = _per_volume(snr, x, "snr")
    if bool(torch.isnan(snr_t).any()) or bool((snr_t <= 0).any()):
        raise ConfigError(
            f"add_noise: every snr must be positive (or inf for no noise), got {snr_t.flatten().tolist()}"
        )
    if signal_var is None:
        var = x.var(dim=_SPATIAL, unbiased=False, keepdim=True).to(torch.float64)
    else:
        var = _per_volume(signal_var, x, "signal_var")
        if bool((var < 0).any()) or bool(torch.isnan(var).any()):
            raise ConfigError("add_noise: signal_var must be non-negative")
    sigma = torch.sqrt(var / snr_t).to(x.dtype)
    noise = randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + noise * sigma


def measure_snr(signal: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    """Measured SNR of noisy volumes against their clean signal, per volume.

    Parameters
    ----------
    signal, noisy
        Volumes ``(..., D, H, W)`` of the same shape.

    Returns
    -------
    torch.Tensor
        ``var(signal) / var(noisy - signal)`` over the spatial dims, shape ``(...)``,
        float64.
    """
    spatial_shape(signal, "measure_snr")
    if signal.shape != noisy.shape:
        raise ConfigError(
            f"measure_snr: shapes differ: signal {tuple(signal.shape)} vs noisy {tuple(noisy.shape)}"
        )
    s = signal.to(torch.float64)
    n = noisy.to(torch.float64) - s
    return s.var(dim=_SPATIAL, unbiased=False) / n.var(dim=_SPATIAL, unbiased=False)

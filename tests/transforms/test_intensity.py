"""Tests of cryoal.transforms.normalize (per-volume z-score)."""

from __future__ import annotations

import numpy as np
import torch

from cryoal.transforms import normalize


def test_zscore_per_volume_matches_numpy() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 8, 9, 10, generator=g) * 4 + torch.arange(6.0).view(3, 2, 1, 1, 1)
    out = normalize(x)
    ref = x.numpy().astype(np.float64)
    mean = ref.mean(axis=(-3, -2, -1), keepdims=True)
    std = ref.std(axis=(-3, -2, -1), keepdims=True)
    np.testing.assert_allclose(out.numpy(), (ref - mean) / std, atol=1e-5)
    torch.testing.assert_close(out.mean(dim=(-3, -2, -1)), torch.zeros(3, 2), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.std(dim=(-3, -2, -1), unbiased=False), torch.ones(3, 2))


def test_constant_volume_maps_to_zeros_and_dtype_kept() -> None:
    out = normalize(torch.full((8, 8, 8), 7.0, dtype=torch.float64))
    assert out.dtype == torch.float64
    assert torch.equal(out, torch.zeros(8, 8, 8, dtype=torch.float64))

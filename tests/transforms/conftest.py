"""Fixtures for the transforms tests: smooth test objects and helpers."""

from __future__ import annotations

import pytest
import torch


def gaussian_blobs(
    n: int, box: tuple[int, int, int], *, seed: int = 0, blobs: int = 6, sigma: float = 2.0
) -> torch.Tensor:
    """Smooth random objects ``(n, 1, D, H, W)`` float64: sums of Gaussian blobs.

    Blob centres lie within a third of the box size from the centre, so every object sits
    well inside the sphere inscribed in the box (rotations keep it inside).
    """
    g = torch.Generator().manual_seed(seed)
    d, h, w = box
    zz, yy, xx = torch.meshgrid(
        torch.arange(d, dtype=torch.float64) - d // 2,
        torch.arange(h, dtype=torch.float64) - h // 2,
        torch.arange(w, dtype=torch.float64) - w // 2,
        indexing="ij",
    )
    r = min(box) / 6.0
    out = torch.zeros(n, 1, d, h, w, dtype=torch.float64)
    for i in range(n):
        centres = (torch.rand(blobs, 3, generator=g, dtype=torch.float64) * 2 - 1) * r
        weights = 0.5 + torch.rand(blobs, generator=g, dtype=torch.float64)
        for (cz, cy, cx), a in zip(centres, weights, strict=True):
            out[i, 0] += a * torch.exp(
                -((zz - cz) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)
            )
    return out


@pytest.fixture(scope="session")
def blobs32() -> torch.Tensor:
    """Four smooth objects in a 32³ box, ``(4, 1, 32, 32, 32)`` float64."""
    return gaussian_blobs(4, (32, 32, 32), seed=7)


@pytest.fixture(scope="session")
def noise32() -> torch.Tensor:
    """White noise volumes ``(8, 1, 32, 32, 32)`` float32 (a rich, flat spectrum)."""
    return torch.randn(8, 1, 32, 32, 32, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="session")
def make_blobs():  # type: ignore[no-untyped-def]
    """The :func:`gaussian_blobs` factory, for tests that need other boxes."""
    return gaussian_blobs

"""Tests of cryoal.transforms.noise: Gaussian noise at SNR = var(signal) / var(noise)."""

from __future__ import annotations

import math

import pytest
import torch

from cryoal.errors import ConfigError
from cryoal.transforms import add_noise, measure_snr


@pytest.mark.parametrize("snr", [10.0, 1.0, 0.1, 0.03, 0.01])
def test_measured_snr_within_5_percent(blobs32: torch.Tensor, snr: float) -> None:
    x = blobs32.float()
    noisy = add_noise(x, snr, generator=torch.Generator().manual_seed(0))
    measured = measure_snr(x, noisy)
    assert measured.shape == (4, 1)
    assert abs(measured.mean().item() / snr - 1) < 0.05
    assert torch.all((measured / snr - 1).abs() < 0.05)


def test_matches_naive_formula(blobs32: torch.Tensor) -> None:
    x = blobs32.float()
    noisy = add_noise(x, 0.5, generator=torch.Generator().manual_seed(11))
    g = torch.Generator().manual_seed(11)
    noise = torch.randn(x.shape, generator=g)
    var = x.double().var(dim=(-3, -2, -1), unbiased=False, keepdim=True)
    expected = x + noise * torch.sqrt(var / 0.5).float()
    torch.testing.assert_close(noisy, expected)


def test_per_item_snr_tensor(blobs32: torch.Tensor) -> None:
    snr = torch.tensor([1.0, 0.1, 0.05, 0.01])
    noisy = add_noise(blobs32, snr, generator=torch.Generator().manual_seed(1))
    measured = measure_snr(blobs32, noisy)[:, 0]
    assert torch.all((measured / snr.double() - 1).abs() < 0.05)


def test_inf_is_unchanged_copy_and_keeps_generator(blobs32: torch.Tensor) -> None:
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    out = add_noise(blobs32, math.inf, generator=g)
    assert torch.equal(out, blobs32)
    assert out.data_ptr() != blobs32.data_ptr()
    assert torch.equal(g.get_state(), state)


def test_inf_entry_leaves_that_volume_clean(blobs32: torch.Tensor) -> None:
    snr = torch.tensor([math.inf, 0.1, math.inf, 1.0])
    out = add_noise(blobs32, snr, generator=torch.Generator().manual_seed(2))
    assert torch.equal(out[0], blobs32[0])
    assert torch.equal(out[2], blobs32[2])
    assert not torch.equal(out[1], blobs32[1])


def test_deterministic_under_seed(blobs32: torch.Tensor) -> None:
    a = add_noise(blobs32, 0.1, generator=torch.Generator().manual_seed(9))
    b = add_noise(blobs32, 0.1, generator=torch.Generator().manual_seed(9))
    c = add_noise(blobs32, 0.1, generator=torch.Generator().manual_seed(10))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("shape", [(16, 16, 16), (2, 16, 16, 16), (3, 2, 16, 16, 16)])
def test_every_leading_index_is_one_volume(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g) * torch.linspace(1, 5, 16).view(16, 1, 1)
    out = add_noise(x, 0.2, generator=g)
    assert out.shape == x.shape and out.dtype == x.dtype
    measured = measure_snr(x, out)
    assert measured.shape == shape[:-3]
    assert torch.all((measured / 0.2 - 1).abs() < 0.1)


def test_float64_preserved_and_signal_var_override(blobs32: torch.Tensor) -> None:
    out = add_noise(blobs32, 2.0, generator=torch.Generator().manual_seed(4), signal_var=8.0)
    assert out.dtype == torch.float64
    noise_var = (out - blobs32).var(dim=(-3, -2, -1), unbiased=False)
    assert torch.all((noise_var / 4.0 - 1).abs() < 0.05)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_rejects_non_positive_snr(blobs32: torch.Tensor, bad: float) -> None:
    with pytest.raises(
        ConfigError, match=r"add_noise: snr must be positive \(or inf for no noise\)"
    ):
        add_noise(blobs32, bad)


def test_rejects_snr_tensor_of_wrong_length(blobs32: torch.Tensor) -> None:
    with pytest.raises(
        ConfigError, match=r"snr of shape \(3,\) does not broadcast to the batch shape \(4, 1\)"
    ):
        add_noise(blobs32, torch.tensor([1.0, 2.0, 3.0]))


def test_rejects_non_volume() -> None:
    with pytest.raises(ConfigError, match=r"add_noise: expected a volume tensor"):
        add_noise(torch.zeros(4, 4), 1.0)

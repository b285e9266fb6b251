"""CUDA variants: every kernel follows its input's device and matches the CPU result."""

from __future__ import annotations

import pytest
import torch

from cryoal import transforms as T

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CUDA = torch.device("cuda")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_noise_on_cuda(blobs32: torch.Tensor) -> None:
    x = blobs32.float()
    cpu = T.add_noise(x, 0.1, generator=_gen(1))
    gpu = T.add_noise(x.to(CUDA), 0.1, generator=_gen(1))  # CPU generator: same draws
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-5)
    native = T.add_noise(
        x.to(CUDA),
        torch.tensor([1.0, 0.1, 0.05, 0.01]),
        generator=torch.Generator(CUDA).manual_seed(2),
    )
    measured = T.measure_snr(x.to(CUDA), native)[:, 0].cpu()
    assert torch.all(
        (measured / torch.tensor([1.0, 0.1, 0.05, 0.01], dtype=torch.float64) - 1).abs() < 0.05
    )


def test_fourier_filters_on_cuda(noise32: torch.Tensor) -> None:
    mask = T.missing_wedge_mask((32, 32, 32), (-50, 60), rfft=True, device=CUDA)
    assert mask.device.type == "cuda"
    ctf = T.ctf_3d((32, 32, 32), 10.0, 5.0, rfft=True, device=CUDA)
    x = noise32.to(CUDA)
    for gpu, cpu in [
        (T.apply_missing_wedge(x, mask), T.apply_missing_wedge(noise32, mask.cpu())),
        (T.apply_ctf(x, ctf), T.apply_ctf(noise32, ctf.cpu())),
        (T.apply_ctf(x, ctf, "phaseflip"), T.apply_ctf(noise32, ctf.cpu(), "phaseflip")),
        # a CPU mask is moved to the input's device
        (T.apply_missing_wedge(x, mask.cpu()), T.apply_missing_wedge(noise32, mask.cpu())),
    ]:
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
    per_volume = T.ctf_3d((32, 32, 32), 10.0, torch.linspace(2, 6, 8, device=CUDA), rfft=True)
    assert per_volume.device.type == "cuda" and per_volume.shape == (8, 1, 32, 32, 17)


def test_rotation_on_cuda(blobs32: torch.Tensor) -> None:
    r_cpu = T.random_rotation(4, generator=_gen(3))
    r_gpu = T.random_rotation(4, generator=_gen(3), device=CUDA)
    torch.testing.assert_close(r_gpu.cpu(), r_cpu)
    x = blobs32.float()
    for padding in ("zeros", "mean"):
        gpu = T.rotate_volume(x.to(CUDA), r_gpu, padding=padding)
        torch.testing.assert_close(
            gpu.cpu(), T.rotate_volume(x, r_cpu, padding=padding), atol=1e-4, rtol=1e-4
        )
    torch.testing.assert_close(T.normalize(x.to(CUDA)).cpu(), T.normalize(x), atol=1e-5, rtol=1e-5)


def test_augmentation_pipeline_on_cuda(blobs32: torch.Tensor) -> None:
    pipeline = T.from_config(
        ["rotate", "flip", {"name": "noise", "snr_range": [0.1, 1.0]}, "missing-wedge", "normalize"]
    )
    x = blobs32.float()
    gpu = pipeline(x.to(CUDA), _gen(5))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), pipeline(x, _gen(5)), atol=1e-3, rtol=1e-3)

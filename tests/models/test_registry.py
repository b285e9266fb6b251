"""Shape-table tests for every registered model, and the registry's errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cryoal import models
from cryoal.errors import ConfigError

#: models whose tests take more than a few seconds on a 2-core CPU
HEAVY = {"monai-densenet121", "monai-resnet18", "monai-resnet34"}
ALL = [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in models.available()]


def in_shape_for(name: str) -> tuple[int, ...]:
    """The smallest convenient valid `(C, *spatial)` for ``name``."""
    side = 32 if name.startswith("monai-densenet") else 16
    dims = 3 if name in models.available(3) else 2
    return (1, *([side] * dims))


def test_available_lists_the_agreed_models() -> None:
    names = models.available()
    for required in ("dsrf3d", "rb3d", "cb3d", "cnn2d", "monai-densenet121", "monai-resnet10"):
        assert required in names
    assert names == sorted(names)
    assert set(models.available(2)) | set(models.available(3)) == set(names)
    assert "cnn2d" in models.available(2) and "cnn2d" not in models.available(3)
    assert all(models.describe(n) for n in names)


@pytest.mark.parametrize("name", ALL)
def test_model_contract(name: str, tmp_path: Path, seeded: None) -> None:
    shape = in_shape_for(name)
    model = models.create(name, 3, shape)
    assert isinstance(model, models.Classifier)
    assert isinstance(model.head, torch.nn.Linear) and model.head.out_features == 3
    assert model.arch_spec == models.ArchSpec(name, 3, shape, {})
    x = torch.randn(4, *shape)

    # train mode: forward shape, features width, backward reaches every parameter
    logits = model(x)
    assert logits.shape == (4, 3) and logits.dtype == torch.float32
    logits.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())

    # eval mode: forward is head(features) exactly
    model.eval()
    with torch.no_grad():
        feats = model.features(x)
        assert feats.shape == (4, model.head.in_features) == (4, model.num_features)
        out = model(x)
        torch.testing.assert_close(out, model.head(feats), rtol=0, atol=0)

    # save -> load gives the same outputs in eval mode
    path = models.save_checkpoint(tmp_path / "m.pt", model, class_names=["a", "b", "c"])
    loaded, info = models.load_checkpoint(path)
    assert not loaded.training and info.arch == model.arch_spec and info.box == shape[1:]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), out, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["dsrf3d", "rb3d", "cb3d", "cnn2d", "monai-resnet10-2d"])
def test_bf16_autocast_on_cpu(name: str, seeded: None) -> None:
    model = models.create(name, 2, in_shape_for(name)).eval()
    x = torch.randn(2, *in_shape_for(name))
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.shape == (2, 2) and torch.isfinite(low).all()
    torch.testing.assert_close(low.float(), ref, rtol=0.1, atol=0.15)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    "name", ["dsrf3d", "rb3d", "cb3d", "cnn2d", "monai-resnet10", "monai-densenet121"]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cuda_forward_backward(name: str, dtype: torch.dtype, seeded: None) -> None:
    model = models.create(name, 3, in_shape_for(name)).cuda()
    x = torch.randn(4, *in_shape_for(name), device="cuda")
    with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        logits = model(x)
    assert logits.shape == (4, 3) and logits.device.type == "cuda"
    logits.float().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize(
    ("shape", "flat"),
    [
        ((1, 16, 16, 16), 128 * 8),
        ((1, 32, 32, 32), 128 * 64),
        ((1, 24, 40, 17), 128 * 3 * 5 * 2),
        ((2, 8, 8, 8), 128),
    ],
)
def test_dsrf3d_adapts_flatten_size_to_the_box(shape: tuple[int, ...], flat: int) -> None:
    model = models.create("dsrf3d", 5, shape)
    assert isinstance(model, models.DSRF3D)
    assert model.fc[1].in_features == flat
    assert model(torch.randn(2, *shape)).shape == (2, 5)


def test_dsrf3d_matches_the_paper_layout() -> None:
    model = models.create("dsrf3d", 4, (1, 32, 32, 32))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
    assert all(c.kernel_size == (3, 3, 3) for c in convs)
    assert sum(isinstance(m, torch.nn.MaxPool3d) for m in model.modules()) == 3
    assert sum(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules()) == 6
    fcs = [m for m in model.fc if isinstance(m, torch.nn.Linear)]
    assert [f.out_features for f in fcs] == [1024, 1024]
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert [d.p for d in dropouts] == [0.5, 0.5]
    assert isinstance(list(model.fc)[-1], torch.nn.Dropout)  # dropout right before the head


def test_cb3d_is_small() -> None:
    n = sum(p.numel() for p in models.create("cb3d", 3, (1, 32, 32, 32)).parameters())
    assert 50_000 < n < 150_000


def test_kwargs_are_recorded_and_used(tmp_path: Path) -> None:
    model = models.create("rb3d", 2, (1, 16, 16, 16), width=8, dropout=0.1)
    assert model.head.in_features == 32
    models.save_checkpoint(tmp_path / "m.pt", model)
    loaded, info = models.load_checkpoint(tmp_path / "m.pt")
    assert info.arch.kwargs == {"width": 8, "dropout": 0.1}
    assert loaded.head.in_features == 32


def test_dropout_is_active_only_in_train_mode(seeded: None) -> None:
    model = models.create("cb3d", 2, (1, 16, 16, 16), dropout=0.5)
    x = torch.randn(3, 1, 16, 16, 16)
    model.eval()
    with torch.no_grad():
        a, b = model.features(x), model.features(x)
    torch.testing.assert_close(a, b)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.train()
    with torch.no_grad():
        c, d = model.features(x), model.features(x)
    assert not torch.equal(c, d)


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown model 'dsrf'\. Did you mean 'dsrf3d'\? Available: cb3d, "
    ):
        models.create("dsrf", 2, (1, 16, 16, 16))
    with pytest.raises(ConfigError, match=r"unknown model 'zzz'\. Available: cb3d"):
        models.create("zzz", 2, (1, 16, 16, 16))


def test_wrong_dimensionality_and_small_boxes_are_refused() -> None:
    with pytest.raises(
        ConfigError,
        match=r"model 'dsrf3d' is 3D and needs in_shape \(C, D, H, W\), got \(1, 32, 32\)",
    ):
        models.create("dsrf3d", 2, (1, 32, 32))
    with pytest.raises(ConfigError, match=r"model 'cnn2d' is 2D and needs in_shape \(C, H, W\)"):
        models.create("cnn2d", 2, (1, 32, 32, 32))
    with pytest.raises(
        ConfigError,
        match=r"dsrf3d: needs at least 1 channel and boxes of at least 8 voxels per side, got in_shape \(1, 4, 16, 16\)",
    ):
        models.create("dsrf3d", 2, (1, 4, 16, 16))
    with pytest.raises(
        ConfigError, match=r"monai-densenet121: needs boxes of at least 32 voxels per side"
    ):
        models.create("monai-densenet121", 2, (1, 16, 16, 16))
    with pytest.raises(ConfigError, match=r"num_classes must be at least 2, got 1"):
        models.create("cb3d", 1, (1, 16, 16, 16))
    with pytest.raises(ConfigError, match=r"model 'cb3d': bad option"):
        models.create("cb3d", 2, (1, 16, 16, 16), nonsense=3)


def test_register_rejects_duplicates() -> None:
    with pytest.raises(ConfigError, match="model 'dsrf3d' is already registered"):
        models.register("dsrf3d", models.DSRF3D, dims=3, summary="dup")

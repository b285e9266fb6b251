"""Per-sample gradient norms equal a naive batch-1 autograd loop, on every layer type."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from acq_helpers import (
    TinyConv2d,
    TinyConv3d,
    entropy_loss,
    naive_class_norms,
    naive_norms,
    randomize_bn,
)
from torch import Tensor, nn

from cryoal.acquisition import per_sample_class_grad_norms, per_sample_grad_norms
from cryoal.acquisition._persample import _hooked, _needs_loop, select_params
from cryoal.errors import ConfigError
from cryoal.models import create

REDUCTIONS = ["l2", "layerwise-sum"]


def _ce_first(z: Tensor) -> Tensor:
    return F.cross_entropy(z, torch.zeros(z.shape[0], dtype=torch.long), reduction="none")


def _assert_hooked(model: nn.Module, x: Tensor) -> None:
    """The fast engine (not the loop fallback) handles this model."""
    assert _needs_loop(model) is None
    res = _hooked(
        model, x, lambda z: [(entropy_loss(z).sum(), None)], select_params(model), amp=False
    )
    assert not isinstance(res, str), res


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_conv3d_bn_linear_matches_loop(reduction: str) -> None:
    torch.manual_seed(0)
    model = randomize_bn(TinyConv3d()).double().eval()
    x = torch.randn(5, 1, 8, 8, 8, dtype=torch.float64)
    _assert_hooked(model, x)
    for loss in (entropy_loss, _ce_first):
        fast = per_sample_grad_norms(model, x, loss, reduction=reduction)
        torch.testing.assert_close(fast, naive_norms(model, x, loss, reduction), rtol=1e-10, atol=0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_conv2d_prelu_groupnorm_sequence_linear_matches_loop(reduction: str) -> None:
    torch.manual_seed(1)
    model = randomize_bn(TinyConv2d()).double().eval()
    x = torch.randn(4, 1, 10, 10, dtype=torch.float64)
    _assert_hooked(model, x)
    fast = per_sample_grad_norms(model, x, entropy_loss, reduction=reduction)
    torch.testing.assert_close(
        fast, naive_norms(model, x, entropy_loss, reduction), rtol=1e-10, atol=0
    )


def test_float32_matches_loop_to_1e4() -> None:
    torch.manual_seed(2)
    model = randomize_bn(TinyConv3d()).eval()
    x = torch.randn(6, 1, 8, 8, 8)
    fast = per_sample_grad_norms(model, x, entropy_loss)
    torch.testing.assert_close(fast, naive_norms(model, x, entropy_loss), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_dsrf3d_matches_loop(reduction: str) -> None:
    torch.manual_seed(3)
    model = randomize_bn(create("dsrf3d", 4, (1, 16, 16, 16), width=4, fc_units=32)).double()
    model.eval()
    x = torch.randn(3, 1, 16, 16, 16, dtype=torch.float64)
    _assert_hooked(model, x)
    fast = per_sample_grad_norms(model, x, entropy_loss, reduction=reduction)
    torch.testing.assert_close(
        fast, naive_norms(model, x, entropy_loss, reduction), rtol=1e-10, atol=0
    )
    cls = per_sample_class_grad_norms(model, x, reduction=reduction)[0]
    torch.testing.assert_close(cls, naive_class_norms(model, x, reduction), rtol=1e-10, atol=0)


@pytest.mark.parametrize("name", ["cb3d", "rb3d", "monai-resnet10", "cnn2d"])
def test_registered_models_match_loop(name: str) -> None:
    torch.manual_seed(4)
    shape = (1, 16, 16) if name == "cnn2d" else (1, 16, 16, 16)
    model = randomize_bn(create(name, 3, shape)).double().eval()
    x = torch.randn(3, *shape, dtype=torch.float64)
    _assert_hooked(model, x)
    fast = per_sample_grad_norms(model, x, entropy_loss, reduction="layerwise-sum")
    torch.testing.assert_close(
        fast, naive_norms(model, x, entropy_loss, "layerwise-sum"), rtol=1e-10, atol=0
    )


def test_monai_densenet_matches_loop() -> None:
    torch.manual_seed(5)
    model = randomize_bn(create("monai-densenet121", 3, (1, 32, 32, 32))).double().eval()
    x = torch.randn(2, 1, 32, 32, 32, dtype=torch.float64)
    fast = per_sample_grad_norms(model, x, entropy_loss)
    torch.testing.assert_close(fast, naive_norms(model, x, entropy_loss), rtol=1e-10, atol=0)


def test_class_norms_match_loop_and_top_k() -> None:
    torch.manual_seed(6)
    model = randomize_bn(TinyConv3d(num_classes=5)).double().eval()
    x = torch.randn(4, 1, 8, 8, 8, dtype=torch.float64)
    norms, classes, probs = per_sample_class_grad_norms(model, x)
    naive = naive_class_norms(model, x)
    torch.testing.assert_close(norms, naive, rtol=1e-10, atol=0)
    assert classes.tolist() == [[0, 1, 2, 3, 4]] * 4
    torch.testing.assert_close(probs, torch.softmax(model(x), 1))
    top, top_cls, _ = per_sample_class_grad_norms(model, x, top_k=2)
    expect_cls = probs.argsort(1, descending=True)[:, :2]
    assert torch.equal(top_cls, expect_cls)
    torch.testing.assert_close(top, naive.gather(1, expect_cls), rtol=1e-10, atol=0)


def test_frozen_params_and_params_selection() -> None:
    torch.manual_seed(7)
    model = randomize_bn(TinyConv3d()).double().eval()
    for p in model.body[0].parameters():
        p.requires_grad_(False)
    x = torch.randn(3, 1, 8, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(
        per_sample_grad_norms(model, x, entropy_loss),
        naive_norms(model, x, entropy_loss),
        rtol=1e-10,
        atol=0,
    )
    head_only = per_sample_grad_norms(model, x, entropy_loss, params=["head.weight", "head.bias"])
    naive_head = naive_norms(model, x, entropy_loss, params=[model.head.weight, model.head.bias])
    torch.testing.assert_close(head_only, naive_head, rtol=1e-10, atol=0)
    by_tensor = per_sample_grad_norms(model, x, entropy_loss, params=[model.head.weight])
    torch.testing.assert_close(
        by_tensor,
        naive_norms(model, x, entropy_loss, params=[model.head.weight]),
        rtol=1e-10,
        atol=0,
    )


def test_all_frozen_raises() -> None:
    model = TinyConv3d()
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        per_sample_grad_norms(model, torch.randn(2, 1, 8, 8, 8), entropy_loss)


def test_bad_inputs_raise() -> None:
    model = TinyConv3d()
    x = torch.randn(2, 1, 8, 8, 8)
    with pytest.raises(ConfigError, match="unknown reduction 'l1'"):
        per_sample_grad_norms(model, x, entropy_loss, reduction="l1")
    with pytest.raises(ConfigError, match=r"one loss per sample, shape \(2,\); got \(\)"):
        per_sample_grad_norms(model, x, lambda z: entropy_loss(z).sum())
    with pytest.raises(ConfigError, match="parameter 'nope' is not in the model"):
        per_sample_grad_norms(model, x, entropy_loss, params=["nope"])
    with pytest.raises(ConfigError, match="chunk_size must be a positive integer"):
        per_sample_grad_norms(model, x, entropy_loss, chunk_size=0)


def test_chunked_equals_whole_and_mode_restored(tiny3d: nn.Module) -> None:
    x = torch.randn(7, 1, 8, 8, 8, generator=torch.Generator().manual_seed(3))
    tiny3d.train()
    whole = per_sample_grad_norms(tiny3d, x, entropy_loss)
    assert tiny3d.training and all(m.training for m in tiny3d.modules())
    tiny3d.eval()
    chunked = per_sample_grad_norms(tiny3d, x, entropy_loss, chunk_size=3)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(whole, naive_norms(tiny3d, x, entropy_loss), rtol=1e-4, atol=1e-7)


class _Shared(nn.Module):
    """One Linear called twice, a tied weight, and a parameter used in forward directly."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 3)
        self.b2 = nn.Linear(4, 3)
        self.b2.weight = self.b.weight  # tied

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.a(torch.tanh(self.a(x))))
        return self.b(h) + self.b2(h * 0.5)


class _OwnParam(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.scale = nn.Parameter(torch.tensor([1.5, -0.5, 2.0]))

    def forward(self, x: Tensor) -> Tensor:
        return self.lin(x) * self.scale


class _BatchStats(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3, track_running_stats=False)

    def forward(self, x: Tensor) -> Tensor:
        # (B, 4) -> (B, 3, 2): batch statistics over batch and length
        h = self.lin(x)
        return self.bn(torch.stack([h, h * h], dim=2)).sum(2)


class _Unused(nn.Module):
    """An auxiliary layer that forward never calls: zero gradient, fast path kept."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.aux = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin(x)


class _Functional(nn.Module):
    """A layer whose weight is used functionally, never through its own forward."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.proj = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(torch.tanh(self.lin(x)), self.proj.weight)


@pytest.mark.parametrize("cls", [_Shared, _OwnParam, _BatchStats, _Unused, _Functional])
def test_shared_tied_own_params_and_batch_stats(cls: type[nn.Module]) -> None:
    torch.manual_seed(8)
    model = cls().double().eval()
    x = torch.randn(5, 4, dtype=torch.float64)
    for reduction in REDUCTIONS:
        fast = per_sample_grad_norms(model, x, entropy_loss, reduction=reduction)
        torch.testing.assert_close(
            fast, naive_norms(model, x, entropy_loss, reduction), rtol=1e-10, atol=0
        )


def test_engine_choice_for_unused_and_functional_params() -> None:
    x = torch.randn(3, 4)
    _assert_hooked(_Unused(), x)
    model = _Functional()
    res = _hooked(
        model, x, lambda z: [(entropy_loss(z).sum(), None)], select_params(model), amp=False
    )
    assert res == "Linear owns parameters (weight, bias) used outside its forward"


def test_batch_statistics_use_loop_fallback() -> None:
    assert _needs_loop(_BatchStats()) == "bn normalises with batch statistics"
    assert _needs_loop(TinyConv3d().eval()) is None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_dsrf3d_matches_loop_and_amp_close() -> None:
    torch.manual_seed(9)
    model = randomize_bn(create("dsrf3d", 10, (1, 32, 32, 32))).cuda().double().eval()
    x = torch.randn(6, 1, 32, 32, 32, dtype=torch.float64, device="cuda")
    fast = per_sample_grad_norms(model, x, entropy_loss, reduction="layerwise-sum")
    naive = naive_norms(model, x, entropy_loss, "layerwise-sum")
    torch.testing.assert_close(fast, naive, rtol=1e-8, atol=0)
    cls = per_sample_class_grad_norms(model, x, top_k=3)[0]
    model.float()
    amp = per_sample_class_grad_norms(model, x.float(), top_k=3, amp=True)[0]
    torch.testing.assert_close(amp.double(), cls, rtol=5e-2, atol=1e-4)

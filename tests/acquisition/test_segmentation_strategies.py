"""Segmentation acquisition (:mod:`cryoal.acquisition.segmentation`): per-sample gradient
norms of the mean voxel loss against a naive batch-1 autograd loop, the strategies on a
patch pool, and every segmentation strategy under the strategy template tests."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_strategies import ScoreTemplate
from torch import nn

from cryoal import acquisition
from cryoal.acquisition import per_sample_grad_norms, select_topk
from cryoal.acquisition.segmentation import (
    SegExpectedGradNorm,
    expected_gradnorm_scores,
    mean_voxel_entropy,
    sample_label_maps,
)
from cryoal.errors import ConfigError
from cryoal.tasks import get
from cryoal.tasks.seg_data import PatchPool
from cryoal.tasks.seg_metrics import voxel_cross_entropy


def _grad_norm(model: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.sqrt(sum(g.pow(2).sum() for g in grads if g is not None))


def test_voxel_loss_gradnorm_equals_naive_loop(unet: nn.Module, generator: torch.Generator) -> None:
    x = torch.randn(3, 1, 8, 8, 8, generator=generator)
    y = torch.randint(0, 3, (3, 8, 8, 8), generator=generator)
    got = per_sample_grad_norms(unet, x, lambda z: voxel_cross_entropy(z, y))
    want = torch.stack(
        [_grad_norm(unet, F.cross_entropy(unet(x[i : i + 1]), y[i : i + 1])) for i in range(3)]
    )
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_entropy_gradnorm_equals_naive_loop(unet: nn.Module, generator: torch.Generator) -> None:
    x = torch.randn(3, 1, 8, 8, 8, generator=generator)
    strat = get("segmentation").strategy("entropy-gradnorm", progress=False, batch_size=2)
    got = strat.score(unet, list(x))
    want = torch.stack(
        [_grad_norm(unet, mean_voxel_entropy(unet(x[i : i + 1]))[0]) for i in range(3)]
    )
    torch.testing.assert_close(got, want.float(), rtol=1e-4, atol=1e-6)


def test_expected_gradnorm_equals_naive_loop(unet: nn.Module, generator: torch.Generator) -> None:
    """(1/S) Σ_s ‖∇θ (1/V) Σ_v CE(z_v, y_v^(s))‖ with the same sampled maps, item by item."""
    x = torch.randn(3, 1, 8, 8, 8, generator=generator)
    with torch.no_grad():
        probs = torch.softmax(unet(x), dim=1)
    maps = sample_label_maps(probs, 4, torch.Generator().manual_seed(7))
    assert maps.shape == (4, 3, 8, 8, 8)
    got = expected_gradnorm_scores(unet, x, label_maps=maps)
    want = torch.stack(
        [
            torch.stack(
                [
                    _grad_norm(unet, F.cross_entropy(unet(x[i : i + 1]), maps[s, i : i + 1]))
                    for s in range(4)
                ]
            ).mean()
            for i in range(3)
        ]
    )
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    # drawing inside with the same generator gives the same maps, hence the same scores
    again = expected_gradnorm_scores(unet, x, samples=4, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(again, got)


def test_sampled_maps_follow_the_prediction() -> None:
    probs = torch.zeros(1, 3, 40, 40, 40)
    probs[:, 0], probs[:, 2] = 0.25, 0.75
    maps = sample_label_maps(probs, 2, torch.Generator().manual_seed(0))
    frac = (maps == 2).double().mean().item()
    assert 0.73 < frac < 0.77 and not bool((maps == 1).any())


def test_expected_loss_with_detached_p_has_zero_gradient(
    unet: nn.Module, generator: torch.Generator
) -> None:
    """Why expected-gradnorm samples maps: Σ_y p_y ∇CE(y) = 0 per voxel when p is detached,
    and with p attached the expected loss is the mean voxel entropy."""
    x = torch.randn(1, 1, 8, 8, 8, generator=generator)
    z = unet(x)
    logp = F.log_softmax(z, dim=1)
    p = logp.exp()
    detached = -(p.detach() * logp).sum(1).mean()
    assert _grad_norm(unet, detached) < 1e-6
    attached = -(p * logp).sum(1).mean()
    torch.testing.assert_close(attached, mean_voxel_entropy(z)[0])


def test_strategies_pick_unlabelled_patches(seg_example: dict, unet: nn.Module) -> None:
    pool = PatchPool.from_directories(seg_example["volumes"], seg_example["masks"], patch=8)
    model = type(unet)(len(pool.class_names), (1, 8, 8, 8), channels=(4, 8), features=6).eval()
    task = get("segmentation")
    labelled = pool.labelled_indices()
    assert len(labelled) == 64 and len(pool) == 3 * 64
    ds = task.dataset(pool)
    for name in task.strategies():
        strat = task.strategy(name, progress=False, batch_size=16, seed=1)
        sel = strat.select(model, ds, 5, labelled=labelled)
        assert sel.strategy == name and len(sel) == 5
        assert not set(sel.indices.tolist()) & set(labelled)
        again = strat.select(model, ds, 5, labelled=labelled)
        assert torch.equal(sel.indices, again.indices)
        if name != "random":
            scores = strat.score(model, ds)
            assert scores.shape == (len(pool),) and bool(torch.isfinite(scores).all())
            top = select_topk(scores, 5, exclude=labelled)
            assert torch.equal(top, sel.indices)


def test_strategy_errors() -> None:
    task = get("segmentation")
    with pytest.raises(ConfigError, match="strategy 'bald' is not available for segmentation"):
        task.strategy("bald")
    with pytest.raises(ConfigError, match="did you mean entropy"):
        task.strategy("entropi")
    with pytest.raises(ConfigError, match="samples must be a positive integer"):
        SegExpectedGradNorm(samples=0)
    with pytest.raises(ConfigError, match=r"per-voxel logits \(B, K, \*spatial\)"):
        mean_voxel_entropy(torch.zeros(2, 3))


@pytest.mark.parametrize("dims", [2, 3])
def test_conv_transpose_rule_equals_naive_loop(dims: int, generator: torch.Generator) -> None:
    """The engine's transposed-convolution rule (UNet up-sampling) against autograd."""
    conv_t = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    torch.manual_seed(0)
    net = nn.Sequential(
        conv(1, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        conv_t(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
        nn.ReLU(),
        conv_t(6, 3, 2, stride=1, dilation=2, bias=False),
    ).eval()
    x = torch.randn(3, 1, *([8] * dims), generator=generator)

    def loss(z: torch.Tensor) -> torch.Tensor:
        return z.pow(2).flatten(1).mean(1)

    got = per_sample_grad_norms(net, x, loss)
    want = torch.stack([_grad_norm(net, loss(net(x[i : i + 1]))[0]) for i in range(3)])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)


class TinySeg3d(nn.Module):
    """conv3d + BN + ReLU + dropout + 1x1 conv: per-voxel logits `(B, 3, D, H, W)`."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(1, 4, 3, padding=1),
            nn.BatchNorm3d(4),
            nn.ReLU(),
            nn.Dropout3d(0.2),
            nn.Conv3d(4, num_classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SegTemplate(ScoreTemplate):
    """The strategy template (tests/acquisition/test_strategies.py) on per-voxel logits."""

    task = "segmentation"

    @pytest.fixture
    def tiny3d(self) -> nn.Module:
        torch.manual_seed(0)
        model = TinySeg3d().train()
        with torch.no_grad():
            for _ in range(3):  # non-trivial BatchNorm running statistics
                model(torch.randn(4, 1, 8, 8, 8))
        return model.eval()

    def fresh_model(self) -> nn.Module:
        return TinySeg3d().train()


class TestSegRandom(SegTemplate):
    name = "random"


class TestSegEntropy(SegTemplate):
    name = "entropy"

    def test_values(self, tiny3d: nn.Module, pool3d: torch.utils.data.Dataset) -> None:
        p = torch.softmax(tiny3d(pool3d.x), 1)  # type: ignore[attr-defined]
        expect = -(p * p.log()).sum(1).flatten(1).mean(1)
        got = self.make().score(tiny3d, pool3d)
        torch.testing.assert_close(got, expect.detach(), rtol=1e-5, atol=1e-6)


class TestSegEntropyGradNorm(SegTemplate):
    name = "entropy-gradnorm"


class TestSegExpectedGradNorm(SegTemplate):
    name = "expected-gradnorm"
    kwargs = {"samples": 3}


def test_every_segmentation_strategy_runs_the_template() -> None:
    tested = {c.name for c in SegTemplate.__subclasses__()}
    assert tested == set(acquisition.available(task="segmentation"))

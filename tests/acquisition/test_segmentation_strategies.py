"""Segmentation acquisition (:mod:`cryoal.acquisition.segmentation`): per-sample gradient
norms of the mean voxel loss, and of other per-sample losses (``loss=``), against a naive
batch-1 autograd loop; the cross-entropy path bit for bit the closed form; the strategies
on a patch pool, and every segmentation strategy under the strategy template tests."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_strategies import ScoreTemplate
from torch import nn

from cryoal import acquisition
from cryoal.acquisition import per_sample_grad_norms, select_topk
from cryoal.acquisition._persample import (
    IGNORE_INDEX,
    grad_sq_norms,
    loss_cotangents,
    reduce_norms,
    select_params,
)
from cryoal.acquisition.segmentation import (
    SegExpectedGradNorm,
    expected_gradnorm_scores,
    mean_voxel_entropy,
    sample_label_maps,
)
from cryoal.errors import ConfigError
from cryoal.tasks import get
from cryoal.tasks.seg_data import PatchPool
from cryoal.tasks.seg_metrics import IGNORE, voxel_cross_entropy


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


def _weighted_voxel_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Class-weighted mean voxel CE (weights 0.5 … 2 over the classes; -1 skipped)."""
    w = torch.linspace(0.5, 2.0, logits.shape[1], dtype=logits.dtype, device=logits.device)
    ce = F.cross_entropy(logits, target, weight=w, reduction="none", ignore_index=IGNORE)
    return ce.flatten(1).sum(1) / (target != IGNORE).flatten(1).sum(1).clamp_min(1)


def _smoothed_voxel_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Label-smoothed (ε = 0.2) mean voxel CE."""
    return F.cross_entropy(logits, target, reduction="none", label_smoothing=0.2).flatten(1).mean(1)


def _closed_form_scores(model: nn.Module, x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """expected-gradnorm as it was before the ``loss`` option: one cotangent
    ``(p_v − e_{y_v})/V`` per map, written out here."""

    def backprop(out: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        p = torch.softmax(out.detach().float(), dim=1)
        v = float(p[0, 0].numel())
        one_hot = [F.one_hot(y, p.shape[1]).movedim(-1, 1).to(p.dtype) for y in maps]
        return [(out, ((p - e) / v).to(out.dtype)) for e in one_hot]

    sq, _ = grad_sq_norms(model, x, backprop, select_params(model))
    return reduce_norms(sq, "l2").mean(0)


def test_ignore_index_is_the_training_one() -> None:
    assert IGNORE_INDEX == IGNORE


def test_voxel_ce_cotangents_skip_unannotated_voxels_as_training_does(
    generator: torch.Generator,
) -> None:
    """The closed form equals autograd through voxel_cross_entropy, -1 voxels included;
    the task's declared loss takes the closed form bit for bit."""
    z = torch.randn(3, 4, 5, 4, 3, generator=generator, dtype=torch.float64)
    t = torch.randint(0, 4, (3, 2, 5, 4, 3), generator=generator)
    t[torch.rand(t.shape, generator=generator) < 0.3] = IGNORE
    t[2] = IGNORE  # a sample with no annotated voxel: zero gradient, as its loss is 0
    closed = loss_cotangents(z, t, None)
    assert closed.shape == (2, 3, 4, 5, 4, 3)
    by_autograd = loss_cotangents(z, t, lambda a, b: voxel_cross_entropy(a, b))
    torch.testing.assert_close(closed, by_autograd, rtol=1e-6, atol=1e-12)
    assert not bool(closed[:, 2].any())
    assert not bool(closed.movedim(2, -1)[(t.movedim(0, 1) == IGNORE)].any())
    assert torch.equal(loss_cotangents(z, t, get("segmentation").per_sample_loss), closed)
    with pytest.raises(ConfigError, match="do not fit logits"):
        loss_cotangents(z, t[:, :, :4], None)


@pytest.mark.parametrize("net", ["unet", "tiny"])
def test_cross_entropy_scores_are_bitwise_the_closed_form(
    net: str, unet: nn.Module, generator: torch.Generator
) -> None:
    """loss=None and the task's declared loss give the closed form's scores bit for bit
    (also for V = 5³, whose reciprocal is inexact), in the function and the strategy."""
    torch.manual_seed(0)
    model = unet if net == "unet" else TinySeg3d().eval()
    side = 8 if net == "unet" else 5
    x = torch.randn(4, 1, side, side, side, generator=generator)
    with torch.no_grad():
        maps = sample_label_maps(torch.softmax(model(x), 1), 3, torch.Generator().manual_seed(2))
    want = _closed_form_scores(model, x, maps)
    assert torch.equal(expected_gradnorm_scores(model, x, label_maps=maps), want)
    task = get("segmentation")
    got = expected_gradnorm_scores(model, x, label_maps=maps, loss=task.per_sample_loss)
    assert torch.equal(got, want)
    default = task.strategy("expected-gradnorm", samples=3, progress=False, batch_size=3)
    assert default.loss == task.per_sample_loss
    plain = SegExpectedGradNorm(samples=3, progress=False, batch_size=3)
    assert torch.equal(default.score(model, list(x)), plain.score(model, list(x)))


@pytest.mark.parametrize("loss", [_weighted_voxel_ce, _smoothed_voxel_ce])
def test_expected_gradnorm_of_another_loss_equals_naive_loop(
    loss: object, unet: nn.Module, generator: torch.Generator
) -> None:
    """(1/S) Σ_s ‖∇θ ℓ(f(x_i), y^(s))‖ of a non-CE loss: one backward per sample and map."""
    assert callable(loss)
    model = unet.double()
    x = torch.randn(3, 1, 8, 8, 8, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        maps = sample_label_maps(torch.softmax(model(x), 1), 3, torch.Generator().manual_seed(5))
    got = expected_gradnorm_scores(model, x, label_maps=maps, loss=loss)
    want = torch.stack(
        [
            torch.stack(
                [
                    _grad_norm(model, loss(model(x[i : i + 1]), maps[s, i : i + 1])[0])
                    for s in range(3)
                ]
            ).mean()
            for i in range(3)
        ]
    )
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0.0)
    ce = expected_gradnorm_scores(model, x, label_maps=maps)
    assert float((got - ce).abs().min()) > 1e-3 * float(ce.abs().max())
    # the strategy differentiates its loss= option (per-item maps from its seeds)
    strat = SegExpectedGradNorm(samples=3, loss=loss, progress=False, batch_size=2, seed=3)
    base = int(torch.randint(0, 2**31, (1,), generator=torch.Generator().manual_seed(3)))
    seeded = expected_gradnorm_scores(
        model, x, samples=3, item_seeds=[base + i for i in range(3)], loss=loss
    )
    torch.testing.assert_close(strat.score(model, list(x)), seeded.float(), rtol=1e-6, atol=0.0)


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

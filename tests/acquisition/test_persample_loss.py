"""Class gradient norms of a task's own per-sample loss equal a naive autograd loop.

cryoal/acquisition/_persample.py ``per_sample_class_grad_norms(loss=...)`` and the
strategies that take the ``loss`` option (expected-gradnorm, last-layer-gradnorm).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from acq_helpers import TensorPool, TinyConv3d, naive_norms, randomize_bn
from torch import Tensor, nn

from cryoal import acquisition, models
from cryoal.acquisition import per_sample_class_grad_norms
from cryoal.acquisition._persample import is_cross_entropy, loss_cotangents
from cryoal.acquisition.base import ScoreStrategy
from cryoal.acquisition.gradnorm import last_layer_scores
from cryoal.errors import ConfigError
from cryoal.tasks import get as get_task

Loss = Callable[[Tensor, Tensor], Tensor]

#: class weights of the weighted cross-entropy (5 classes)
WEIGHTS = torch.tensor([0.5, 2.0, 1.0, 3.0, 0.25], dtype=torch.float64)


def scorer(name: str, **options: Any) -> ScoreStrategy:
    """Registered score strategy ``name`` with ``options`` (no progress bar)."""
    strat = acquisition.get(name, progress=False, **options)
    assert isinstance(strat, ScoreStrategy)
    return strat


def ce(z: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(z, y, reduction="none")


def smoothed_ce(z: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(z, y, reduction="none", label_smoothing=0.2)


def weighted_ce(z: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(z, y, weight=WEIGHTS.to(z.dtype), reduction="none")


def naive_class_norms_of(model: nn.Module, x: Tensor, loss: Loss, reduction: str) -> Tensor:
    """(B, C) ‖∇θ loss(f(x_i), y)‖: batch-1 loop, one torch.autograd.grad per class."""
    n_cls = model(x[:1]).shape[1]
    cols = []
    for y in range(n_cls):

        def one(z: Tensor, y: int = y) -> Tensor:
            return loss(z, torch.full((z.shape[0],), y, dtype=torch.long))

        cols.append(naive_norms(model, x, one, reduction))
    return torch.stack(cols, dim=1)


@pytest.fixture
def model_x() -> tuple[nn.Module, Tensor]:
    torch.manual_seed(11)
    model = randomize_bn(TinyConv3d(num_classes=5)).double().eval()
    return model, torch.randn(4, 1, 8, 8, 8, dtype=torch.float64)


def test_cross_entropy_by_autograd_equals_closed_form(model_x: tuple[nn.Module, Tensor]) -> None:
    model, x = model_x
    closed, cls0, p0 = per_sample_class_grad_norms(model, x)
    auto, cls1, p1 = per_sample_class_grad_norms(model, x, loss=ce)
    torch.testing.assert_close(auto, closed, rtol=0, atol=1e-6)
    assert torch.equal(cls0, cls1) and torch.equal(p0, p1)
    # and for the top-k classes (float32, as the strategies run)
    m32, x32 = model.float(), x.float()
    closed_k = per_sample_class_grad_norms(m32, x32, top_k=2)[0]
    auto_k = per_sample_class_grad_norms(m32, x32, top_k=2, loss=ce)[0]
    torch.testing.assert_close(auto_k, closed_k, rtol=0, atol=1e-6)


def test_declared_cross_entropy_is_bitwise_the_closed_form(
    model_x: tuple[nn.Module, Tensor],
) -> None:
    model, x = model_x
    task_loss = get_task("classification3d").per_sample_loss
    closed = per_sample_class_grad_norms(model.float(), x.float(), top_k=3)[0]
    declared = per_sample_class_grad_norms(model.float(), x.float(), top_k=3, loss=task_loss)[0]
    assert torch.equal(declared, closed)
    # declaring is a mark on the function, not a test of what it computes
    marked = is_cross_entropy(lambda z, y: smoothed_ce(z, y))
    z = torch.randn(3, 5, dtype=torch.float64)
    y = torch.tensor([0, 2, 4])
    p = torch.softmax(z, 1)
    torch.testing.assert_close(loss_cotangents(z, y[:, None], marked)[0], p - F.one_hot(y, 5))


@pytest.mark.parametrize("reduction", ["l2", "layerwise-sum"])
@pytest.mark.parametrize("loss", [smoothed_ce, weighted_ce], ids=["smoothed", "weighted"])
def test_other_loss_matches_naive_loop(
    model_x: tuple[nn.Module, Tensor], loss: Loss, reduction: str
) -> None:
    model, x = model_x
    norms, classes, _ = per_sample_class_grad_norms(model, x, reduction=reduction, loss=loss)
    naive = naive_class_norms_of(model, x, loss, reduction)
    torch.testing.assert_close(norms, naive, rtol=1e-10, atol=0)
    assert classes.tolist() == [[0, 1, 2, 3, 4]] * 4
    # the loss matters: these are not the cross-entropy norms
    closed = per_sample_class_grad_norms(model, x, reduction=reduction)[0]
    assert (norms - closed).abs().max() > 1e-3
    # top-k columns are the same classes' norms
    top, top_cls, _ = per_sample_class_grad_norms(model, x, top_k=2, reduction=reduction, loss=loss)
    torch.testing.assert_close(top, naive.gather(1, top_cls), rtol=1e-10, atol=0)


def test_cotangents_of_smoothed_ce_in_closed_form() -> None:
    z = torch.randn(6, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (6, 2))
    cots = loss_cotangents(z, y, smoothed_ce)
    p = torch.softmax(z, 1)
    for j in range(2):
        target = 0.8 * F.one_hot(y[:, j], 4) + 0.2 / 4
        torch.testing.assert_close(cots[j], p - target)


def test_expected_gradnorm_takes_the_loss_option(model_x: tuple[nn.Module, Tensor]) -> None:
    model, x = model_x
    model = model.float()
    pool = TensorPool(x.float())
    strat = scorer("expected-gradnorm", loss=smoothed_ce)
    scores = strat.score(model, pool)
    naive = naive_class_norms_of(model, x.float(), smoothed_ce, "l2")
    p = torch.softmax(model(x.float()), 1)
    torch.testing.assert_close(scores, (p * naive).sum(1).detach(), rtol=1e-4, atol=1e-6)
    default = scorer("expected-gradnorm").score(model, pool)
    assert (scores - default).abs().max() > 1e-3
    # the reference variant differentiates Σ_y p_y ℓ(z, y) with p not detached
    ref = scorer("expected-gradnorm", variant="reference", loss=smoothed_ce)
    ref_scores = ref.score(model, pool)

    def expected(z: Tensor) -> Tensor:
        pz = torch.softmax(z, 1)
        ys = [torch.full((z.shape[0],), c, dtype=torch.long) for c in range(z.shape[1])]
        return sum((pz[:, c] * smoothed_ce(z, yc) for c, yc in enumerate(ys)), z.new_zeros(1))

    torch.testing.assert_close(
        ref_scores, naive_norms(model, x.float(), expected), rtol=1e-4, atol=1e-6
    )


def test_entropy_gradnorm_ignores_the_loss(model_x: tuple[nn.Module, Tensor]) -> None:
    model, x = model_x
    pool = TensorPool(x.float())
    with_loss = scorer("entropy-gradnorm", loss=smoothed_ce)
    without = scorer("entropy-gradnorm")
    assert torch.equal(with_loss.score(model.float(), pool), without.score(model.float(), pool))


def test_last_layer_gradnorm_with_loss_matches_autograd() -> None:
    torch.manual_seed(12)
    model = models.create("cb3d", 3, (1, 16, 16, 16), channels=(4, 8)).eval()
    x = torch.randn(5, 1, 16, 16, 16)
    strat = scorer("last-layer-gradnorm", loss=smoothed_ce)
    scores = strat.score(model, TensorPool(x))
    head = model.head
    naive = naive_class_norms_of(model, x, smoothed_ce, "l2")  # over every parameter
    # the head's share only: the loop over the head's (W, b)
    cols = []
    for y in range(3):

        def one(z: Tensor, y: int = y) -> Tensor:
            return smoothed_ce(z, torch.full((z.shape[0],), y, dtype=torch.long))

        head_params = [head.weight, head.bias]
        cols.append(naive_norms(model, x, one, params=head_params))  # type: ignore[arg-type]
    head_norms = torch.stack(cols, 1)
    assert (head_norms < naive).all()
    with torch.no_grad():
        p = torch.softmax(model(x), 1)
    torch.testing.assert_close(scores, (p * head_norms).sum(1).detach(), rtol=1e-4, atol=1e-6)
    # no loss (or declared cross-entropy): the closed form, unchanged
    with torch.no_grad():
        h = model.features(x)
        z = head(h)
    torch.testing.assert_close(
        last_layer_scores(h, z, bias=True, target="expected", loss=ce),
        last_layer_scores(h, z, bias=True, target="expected"),
        rtol=1e-6,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    ("bad", "shape"),
    [
        (lambda z, y: F.cross_entropy(z, y), r"\(\)"),
        (lambda z, y: F.cross_entropy(z, y, reduction="none")[:, None], r"\(4, 1\)"),
        (lambda z, y: z, r"\(4, 5\)"),
    ],
    ids=["mean", "column", "logits"],
)
def test_loss_with_wrong_shape_is_config_error(
    model_x: tuple[nn.Module, Tensor], bad: Loss, shape: str
) -> None:
    model, x = model_x
    with pytest.raises(ConfigError, match=rf"shape \(4,\); got {shape}"):
        per_sample_class_grad_norms(model, x, loss=bad)
    strat = scorer("expected-gradnorm", loss=bad)
    with pytest.raises(ConfigError, match=rf"got {shape}"):
        strat.score(model.float(), TensorPool(x.float()))


def test_loss_option_must_be_callable() -> None:
    with pytest.raises(ConfigError, match="loss must be a callable"):
        acquisition.get("expected-gradnorm", loss="cross-entropy")


def test_badge_embedding_uses_the_loss_gradient() -> None:
    torch.manual_seed(13)
    model = models.create("cb3d", 3, (1, 16, 16, 16), channels=(4, 8)).eval()
    x = torch.randn(4, 1, 16, 16, 16)
    strat = acquisition.get("badge", loss=smoothed_ce, progress=False)
    emb = strat._embed(model, TensorPool(x), torch.arange(4), badge=True)  # type: ignore[attr-defined]
    with torch.no_grad():
        h = model.features(x)
        z = model.head(h)
    yhat = z.argmax(1)
    target = 0.8 * F.one_hot(yhat, 3) + 0.2 / 3
    torch.testing.assert_close(emb[:, :3], torch.softmax(z, 1) - target, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(emb[:, 3:], h)
    plain = acquisition.get("badge", progress=False)._embed(  # type: ignore[attr-defined]
        model, TensorPool(x), torch.arange(4), badge=True
    )
    torch.testing.assert_close(plain[:, :3], torch.softmax(z, 1) - F.one_hot(yhat, 3))


def test_auto_and_sharded_scoring_hand_the_loss_on(model_x: tuple[nn.Module, Tensor]) -> None:
    """Auto's chosen expected-gradnorm (in Auto.select and sharded) uses Auto's ``loss``."""
    from cryoal.acquisition import Auto, auto_choice, sharded_select

    model, x = model_x
    model = model.float()
    pool = TensorPool(torch.cat([x, x.flip(-1)]).float())
    labelled = [0, 1, 2, 3, 4]
    auto = Auto(
        cold_threshold=0.5,
        diverse_threshold=0.5,
        scheme="expected",
        loss=smoothed_ce,
        progress=False,
        batch_size=4,
    )
    chosen = auto_choice(auto, model, len(labelled))
    assert chosen is not None and chosen[0].name == "expected-gradnorm"
    assert chosen[0].loss is smoothed_ce
    want = scorer("expected-gradnorm", loss=smoothed_ce, batch_size=4)
    ref = want.select(model, pool, 2, labelled=labelled)
    ce_scores = scorer("expected-gradnorm", batch_size=4).score(model, pool)
    sel = auto.select(model, pool, 2, labelled=labelled)
    assert sel.indices.tolist() == ref.indices.tolist()
    torch.testing.assert_close(sel.scores, ref.scores)
    assert (ref.scores - ce_scores[ref.indices]).abs().max() > 1e-3
    shard = sharded_select(auto, model, pool, 2, labelled=labelled, seed=0)
    torch.testing.assert_close(shard.scores, ref.scores)

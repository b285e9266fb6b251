"""The round engine trains AND scores with the task's per-sample loss.

A real task (a :class:`Classification3D` whose per-sample loss is label-smoothed
cross-entropy) runs a cold round and a train round through ``Task.select_round``; the
stored expected-gradnorm scores equal ``Σ_y p_y ‖∇θ ℓ(f(x), y)‖`` of THAT loss, computed by
a naive batch-1 autograd loop over the checkpoint's parameters, and not the
cross-entropy ones.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from round_options import TINY_ROUND
from torch import Tensor, nn

from cryoal import models
from cryoal.active import Project
from cryoal.io import VolumePool
from cryoal.tasks.classification3d import Classification3D

FAST = {
    **TINY_ROUND,
    "epochs": 3,
    "gallery_size": 2,
    "strategy": "expected-gradnorm",
    "cold_start": "random",
    "budget": 6,
}


class SmoothedClassification3D(Classification3D):
    """Subtomogram classification trained with label-smoothed cross-entropy (ε = 0.3)."""

    def per_sample_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits, target.long(), reduction="none", label_smoothing=0.3)


def _ce(logits: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(logits, target, reduction="none")


def _naive_expected_gradnorm(
    model: nn.Module, x: Tensor, loss: Callable[[Tensor, Tensor], Tensor]
) -> float:
    """``Σ_y p_y ‖∇θ loss(f(x), y)‖`` of one volume ``(1, C, *box)``, one grad per class."""
    params = [p for p in model.parameters() if p.requires_grad]
    out = model(x)
    p = torch.softmax(out.detach(), 1)[0]
    total = 0.0
    for y in range(out.shape[1]):
        value = loss(out, torch.tensor([y])).sum()
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        norm = torch.stack([g.pow(2).sum() for g in grads if g is not None]).sum().sqrt()
        total += float(p[y]) * float(norm)
    return total


def test_round_scores_use_the_tasks_loss(
    sim_pool: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    from cryoal.transforms import normalize

    root, truth = sim_pool
    pool = VolumePool.from_directory(root)
    task = SmoothedClassification3D()
    proj = Project(tmp_path / "proj")
    cfg = task.select_config(**FAST)
    first = task.select_round(proj, pool, cfg)
    labels = dict(zip(truth["id"], truth["label"], strict=True))
    proj.add_labels({p.id: labels[p.id] for p in first.picks}, source="expert")
    res = task.select_round(proj, pool, task.select_config(**FAST))
    assert (res.round.n, res.round.mode, res.round.strategy) == (2, "train", "expected-gradnorm")

    model, _ = models.load_checkpoint(tmp_path / "proj" / "models" / "round-002.pt")
    model.eval()
    stored = {r["id"]: r["score"] for r in proj.scores(2)}
    assert len(stored) == len(pool) - 6
    index = {vid: i for i, vid in enumerate(pool.ids)}
    ids = sorted(stored)[:10]
    xs = [normalize(pool[index[v]][None]) for v in ids]
    want = torch.tensor([_naive_expected_gradnorm(model, x, task.per_sample_loss) for x in xs])
    got = torch.tensor([stored[v] for v in ids])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    # the cross-entropy scores of the same model differ (the test can tell the losses apart)
    ce = torch.tensor([_naive_expected_gradnorm(model, x, _ce) for x in xs])
    assert (got - ce).abs().max() > 1e-3 * float(ce.abs().max())
    # the picks are the top scores of that loss
    top = sorted(stored, key=lambda v: -stored[v])[:6]
    assert [p.id for p in res.picks] == top


def test_default_task_scores_are_cross_entropy(
    sim_pool: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    """The classification3d task declares its loss cross-entropy: the closed form is used
    and its scores are those of cross-entropy."""
    from cryoal.tasks import get as get_task
    from cryoal.transforms import normalize

    root, truth = sim_pool
    pool = VolumePool.from_directory(root)
    task = get_task("classification3d")
    proj = Project(tmp_path / "proj")
    first = task.select_round(proj, pool, task.select_config(**FAST))
    labels = dict(zip(truth["id"], truth["label"], strict=True))
    proj.add_labels({p.id: labels[p.id] for p in first.picks}, source="expert")
    task.select_round(proj, pool, task.select_config(**FAST))
    model, _ = models.load_checkpoint(tmp_path / "proj" / "models" / "round-002.pt")
    model.eval()
    stored = {r["id"]: r["score"] for r in proj.scores(2)}
    index = {vid: i for i, vid in enumerate(pool.ids)}
    ids = sorted(stored)[:5]
    want = [_naive_expected_gradnorm(model, normalize(pool[index[v]][None]), _ce) for v in ids]
    assert [stored[v] for v in ids] == pytest.approx(want, rel=1e-4)

"""Segmentation rounds train AND score with the task's per-sample loss.

A real :class:`Segmentation` subclass whose per-sample loss is class-weighted mean voxel
cross-entropy runs a round through ``Task.select_round``; the stored expected-gradnorm
scores equal ``(1/S) Σ_s ‖∇θ ℓ(f(x), y^(s))‖`` of THAT loss on the round's checkpoint
(the same sampled maps, a naive batch-1 autograd loop, one backward per map), not the
cross-entropy ones; the plain task's round scores with mean voxel cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cryoal import models
from cryoal.acquisition.segmentation import sample_label_maps
from cryoal.active import Project
from cryoal.tasks.seg_data import PatchPool
from cryoal.tasks.seg_metrics import IGNORE, voxel_cross_entropy
from cryoal.tasks.segmentation import Segmentation
from cryoal.transforms import normalize

SAMPLES = 2
ROUND = {
    "strategy": "expected-gradnorm",
    "budget": 4,
    "seed": 3,
    "arch_kwargs": {"channels": (4, 8), "features": 6},
    "epochs": 2,
    "samples": SAMPLES,
    "device": "cpu",
    "gallery_size": 0,
    "progress": False,
}


class WeightedSegmentation(Segmentation):
    """Segmentation trained with class-weighted mean voxel CE (weights 0.25 … 4)."""

    def per_sample_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        k = logits.shape[1]
        w = torch.logspace(-2, 2, k, base=2.0, dtype=logits.dtype, device=logits.device)
        ce = F.cross_entropy(logits, target.long(), weight=w, reduction="none", ignore_index=IGNORE)
        return ce.flatten(1).sum(1) / (target != IGNORE).flatten(1).sum(1).clamp_min(1)


def _naive_scores(
    model: nn.Module,
    pool: PatchPool,
    indices: list[int],
    seed: int,
    loss: Callable[[Tensor, Tensor], Tensor],
) -> Tensor:
    """expected-gradnorm of ``loss`` item by item, maps drawn as the strategy draws them
    (item ``j``'s from seed ``base + j``, ``base`` from the round's seed)."""
    params = [p for p in model.parameters() if p.requires_grad]
    base = int(torch.randint(0, 2**31, (1,), generator=torch.Generator().manual_seed(seed)))
    out = []
    for j in indices:
        x = normalize(pool[j][None])
        z = model(x)
        gen = torch.Generator().manual_seed(base + j)
        maps = sample_label_maps(torch.softmax(z.detach().float(), 1), SAMPLES, gen)
        norms = []
        for y in maps:
            grads = torch.autograd.grad(loss(z, y).sum(), params, retain_graph=True)
            norms.append(torch.stack([g.pow(2).sum() for g in grads]).sum().sqrt())
        out.append(torch.stack(norms).mean())
    return torch.stack(out).detach()


def _round(task: Segmentation, pool: PatchPool, root: Path) -> tuple[nn.Module, dict[str, float]]:
    """Run one seeded round; its checkpoint and the stored scores of its picks, best first."""
    res = task.select_round(Project(root), pool, task.select_config(**ROUND))
    assert (res.round.mode, res.round.strategy, len(res.picks)) == ("train", "expected-gradnorm", 4)
    model, _ = models.load_checkpoint(root / "models" / "round-001.pt")
    stored = {r["id"]: float(r["score"]) for r in Project(root).scores(1)}
    assert set(stored) == {p.id for p in res.picks}
    return model.eval(), {p.id: stored[p.id] for p in res.picks}


def _check_picks(
    picks: dict[str, float],
    model: nn.Module,
    pool: PatchPool,
    loss: Callable[[Tensor, Tensor], Tensor],
) -> Tensor:
    """The picks are the top scores of ``loss``'s naive expected-gradnorm over the
    unannotated patches, and their stored scores are its values; returns those values."""
    unlabelled = sorted(set(range(len(pool))) - set(pool.labelled_indices()))
    assert len(unlabelled) == 16
    want = _naive_scores(model, pool, unlabelled, ROUND["seed"], loss)
    order = torch.argsort(want, descending=True, stable=True)[: len(picks)]
    assert [pool.ids[unlabelled[int(i)]] for i in order] == list(picks)
    torch.testing.assert_close(torch.tensor(list(picks.values())), want[order], rtol=1e-6, atol=0.0)
    return want


def test_round_trains_and_scores_with_the_tasks_loss(
    seg_example: dict[str, Path], tmp_path: Path
) -> None:
    pool = PatchPool.from_directories(seg_example["volumes"], seg_example["masks"], patch=16)
    task = WeightedSegmentation()
    weighted_model, weighted = _round(task, pool, tmp_path / "weighted")
    ce_model, ce = _round(Segmentation(), pool, tmp_path / "ce")
    # training used the task's loss: the same seeded round trains another model
    assert any(
        not torch.equal(a, b)
        for a, b in zip(weighted_model.parameters(), ce_model.parameters(), strict=True)
    )
    want = _check_picks(weighted, weighted_model, pool, task.per_sample_loss)
    # the cross-entropy scores of the same model and maps differ: the test tells them apart
    unlabelled = sorted(set(range(len(pool))) - set(pool.labelled_indices()))
    as_ce = _naive_scores(weighted_model, pool, unlabelled, ROUND["seed"], voxel_cross_entropy)
    assert float((want - as_ce).abs().min()) > 1e-3 * float(as_ce.abs().max())
    # the plain task scores with mean voxel cross-entropy (its closed form)
    _check_picks(ce, ce_model, pool, voxel_cross_entropy)

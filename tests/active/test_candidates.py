"""Candidate subsets: a round of a large pool scores a seeded random subset of it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from round_options import TINY_ROUND

from cryoal.active import Project
from cryoal.active.candidates import (
    AUTO_MIN_POOL,
    CPU_CANDIDATES,
    GPU_CANDIDATES,
    candidate_indices,
    resolve_candidates,
)
from cryoal.active.loop import SelectConfig, encoder_embedding, register_pool, select_round
from cryoal.errors import ConfigError
from cryoal.io import VolumePool

FAST = {
    **TINY_ROUND,
    "epochs": 2,
    "gallery_size": 0,
    "budget": 2,
}


def test_resolve_candidates() -> None:
    # auto: pools up to AUTO_MIN_POOL (the low-budget benchmark's 1,500) score everything
    assert resolve_candidates("auto", AUTO_MIN_POOL, AUTO_MIN_POOL - 24, 24) is None
    assert resolve_candidates("auto", 10_000, 9_976, 24) == CPU_CANDIDATES
    assert resolve_candidates("auto", 10_000, 9_976, 24, "cuda:0") is None  # 25k >= all
    assert resolve_candidates("auto", 100_000, 99_000, 24, "cuda") == GPU_CANDIDATES
    # at least 10 candidates per pick; a subset as large as the unlabelled set is none
    assert resolve_candidates("auto", 10_000, 9_000, 500) == 5000
    assert resolve_candidates(300, 1000, 900, 24) == 300
    assert resolve_candidates(100, 1000, 900, 24) == 240
    assert resolve_candidates(900, 1000, 900, 24) is None
    assert resolve_candidates(0, 10**6, 10**6, 24) is None
    assert resolve_candidates("all", 10**6, 10**6, 24) is None
    for bad in (-1, "some", 2.5, True):
        with pytest.raises(ConfigError, match="candidates must be 'auto', 'all' or an integer"):
            resolve_candidates(bad, 10, 10, 1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="candidates must be"):
        SelectConfig(candidates=-3)


def test_candidate_indices_seeded_subset() -> None:
    unl = list(range(0, 300, 3))
    a = candidate_indices(unl, 20, seed=5)
    assert a == candidate_indices(unl, 20, seed=5)  # a resumed round draws the same
    assert a != candidate_indices(unl, 20, seed=6)
    assert len(a) == 20 == len(set(a)) and a == sorted(a) and set(a) <= set(unl)
    assert candidate_indices(unl, 500, seed=0) == unl
    # every unlabelled volume is equally likely: counts over many seeds are flat
    counts = torch.zeros(300)
    for seed in range(400):
        counts[candidate_indices(unl, 20, seed=seed)] += 1
    assert counts[unl].mean() == pytest.approx(400 * 20 / 100)
    assert counts[unl].min() > 40 and counts[unl].max() < 125
    with pytest.raises(ConfigError, match="size >= 1"):
        candidate_indices(unl, 0, seed=0)


def _labelled_project(path: Path, pool: VolumePool, truth: pd.DataFrame) -> Project:
    proj = Project(path)
    register_pool(proj, pool)
    first = truth.groupby("label").head(3)  # 9 labels, 3 per class: round 1 trains
    proj.add_labels(dict(zip(first["id"], first["label"], strict=True)), source="expert")
    return proj


def test_subset_scores_equal_full_scores_on_the_candidates(
    sim_pool: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    root, truth = sim_pool
    pool = VolumePool.from_directory(root)
    full_proj = _labelled_project(tmp_path / "full", pool, truth)
    sub_proj = _labelled_project(tmp_path / "sub", pool, truth)
    full = select_round(full_proj, pool, SelectConfig(**FAST, strategy="entropy"))  # type: ignore[arg-type]
    sub = select_round(
        sub_proj,
        pool,
        SelectConfig(**FAST, strategy="entropy", candidates=20),  # type: ignore[arg-type]
    )
    assert full.round.mode == sub.round.mode == "train"
    assert "candidates" not in full.round.metrics
    assert sub.round.metrics["candidates"] == {"scored": 20, "unlabelled": len(pool) - 9}
    full_scores = {r["id"]: r["score"] for r in full_proj.scores(1)}
    sub_scores = {r["id"]: r["score"] for r in sub_proj.scores(1)}
    assert len(full_scores) == len(pool) - 9 and len(sub_scores) == 20
    # same labels, seed and model: the candidates' scores are the full round's scores
    for vid, score in sub_scores.items():
        assert score == pytest.approx(full_scores[vid], abs=1e-6)
    want = sorted(sub_scores, key=lambda v: -full_scores[v])[:2]
    assert [p.id for p in sub.picks] == want
    # the candidates are the seeded subset of the round: the same again in a new project
    again = _labelled_project(tmp_path / "again", pool, truth)
    res = select_round(again, pool, SelectConfig(**FAST, strategy="entropy", candidates=20))  # type: ignore[arg-type]
    assert {r["id"] for r in again.scores(1)} == set(sub_scores)
    assert [p.id for p in res.picks] == [p.id for p in sub.picks]


def test_batch_aware_strategy_picks_among_the_candidates(
    sim_pool: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    root, truth = sim_pool
    pool = VolumePool.from_directory(root)
    proj = _labelled_project(tmp_path / "p", pool, truth)
    cfg = SelectConfig(**{**FAST, "budget": 1}, strategy="coreset", candidates=15)  # type: ignore[arg-type]
    res = select_round(proj, pool, cfg)
    cand = {r["id"] for r in proj.scores(1)}
    assert len(cand) == 15 and not cand & set(proj.label_map())
    assert len(res.picks) == 1 and {p.id for p in res.picks} <= cand
    # k-center greedy on the view (labelled + candidates) by the round's model
    from cryoal import models
    from cryoal.acquisition.diversity import kcenter_greedy
    from cryoal.transforms import normalize

    model, _ = models.load_checkpoint(proj.path / "models" / "round-001.pt")
    index = {v: i for i, v in enumerate(pool.ids)}
    view = sorted([index[v] for v in proj.label_map()] + [index[v] for v in cand])
    with torch.no_grad():
        emb = torch.cat([model.features(normalize(pool[i][None])) for i in view])
    lab = torch.tensor([k for k, i in enumerate(view) if pool.ids[i] in proj.label_map()])
    rest = torch.tensor([k for k in range(len(view)) if k not in set(lab.tolist())])
    want, _ = kcenter_greedy(emb, 1, lab, rest)
    assert [p.id for p in res.picks] == [pool.ids[view[k]] for k in want.tolist()]


def test_pools_up_to_the_threshold_pick_as_scoring_everything(
    sim_pool: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    # the default (auto) on a pool <= AUTO_MIN_POOL: identical picks and scores to "all"
    root, truth = sim_pool
    pool = VolumePool.from_directory(root)
    runs = []
    for name, option in (("auto", "auto"), ("all", "all")):
        proj = _labelled_project(tmp_path / name, pool, truth)
        cfg = SelectConfig(**FAST, strategy="entropy-gradnorm", candidates=option)  # type: ignore[arg-type]
        res = select_round(proj, pool, cfg)
        runs.append(([p.id for p in res.picks], proj.scores(1)))
    assert runs[0] == runs[1]


def test_encoder_embedding_rows_on_demand(
    sim_pool: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    from cryoal.acquisition.typicality import Typicality
    from cryoal.active.loop import _normalize_batch
    from cryoal.pretrain import project_encoder

    root, _ = sim_pool
    pool = VolumePool.from_directory(root)
    enc_path = project_encoder(
        tmp_path / "enc",
        pool,
        "cb3d",
        (1, 16, 16, 16),
        epochs=1,
        max_steps=1,
        arch_kwargs={"channels": (4, 8)},
        seed=0,
        device="cpu",
        progress=False,
    )
    assert enc_path is not None
    strategy = Typicality(progress=False, device="cpu", batch_size=16, transform=_normalize_batch)
    full_proj, part_proj = Project(tmp_path / "full"), Project(tmp_path / "part")
    full = encoder_embedding(full_proj, pool, enc_path, strategy)
    first = encoder_embedding(part_proj, pool, enc_path, strategy, indices=[1, 5, 7])
    torch.testing.assert_close(first[[1, 5, 7]], full[[1, 5, 7]])
    assert not first[0].any()  # neither cached nor asked for
    cache = part_proj.path / "models" / "encoder-embedding.pt"
    assert torch.load(cache, weights_only=True)["done"].nonzero().flatten().tolist() == [1, 5, 7]
    # a later round's subset: cached rows reused, missing ones added
    second = encoder_embedding(part_proj, pool, enc_path, strategy, indices=[5, 9])
    torch.testing.assert_close(second[[1, 5, 7, 9]], full[[1, 5, 7, 9]])
    stored = torch.load(cache, weights_only=True)
    assert stored["done"].nonzero().flatten().tolist() == [1, 5, 7, 9]
    # every row asked for: the cache is complete and written without a mask, as before
    everything = encoder_embedding(part_proj, pool, enc_path, strategy)
    torch.testing.assert_close(everything, full)
    assert "done" not in torch.load(cache, weights_only=True)

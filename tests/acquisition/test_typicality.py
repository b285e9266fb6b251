"""typicality (TypiClust cold start): template behaviour, k-means, typicality, hand-made pools."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from acq_helpers import TensorPool, TinyConv3d
from test_strategies import StrategyTemplate
from torch import nn

from cryoal import acquisition
from cryoal.acquisition._cluster import embed_pool, kmeans, knn_typicality, whiten
from cryoal.errors import CheckpointError, ConfigError


class TestTypicality(StrategyTemplate):
    name = "typicality"


def _blobs() -> tuple[torch.Tensor, list[range]]:
    """Three 2-D blobs of 10, 6 and 4 points: a centre point (first) and a unit ring."""
    rows, groups, start = [], [], 0
    for centre, size in (((0.0, 0.0), 10), ((10.0, 0.0), 6), ((0.0, 10.0), 4)):
        angles = torch.arange(size - 1) * (6.283185 / (size - 1)) + 0.3
        ring = torch.stack([angles.cos(), angles.sin()], 1)
        rows.append(torch.cat([torch.zeros(1, 2), ring]) + torch.tensor(centre))
        groups.append(range(start, start + size))
        start += size
    return torch.cat(rows), groups


def test_knn_typicality_matches_naive() -> None:
    x = torch.randn(9, 3, generator=torch.Generator().manual_seed(1))
    got = knn_typicality(x, n_neighbors=3)
    d = torch.cdist(x.double(), x.double())
    d.fill_diagonal_(float("inf"))
    expect = 1.0 / (d.topk(3, dim=1, largest=False).values.mean(1) + 1e-8)
    torch.testing.assert_close(got, expect)
    assert knn_typicality(x[:1]).tolist() == [1.0]
    assert knn_typicality(x[:2], n_neighbors=20).shape == (2,)  # K capped at M - 1


def test_kmeans_recovers_blobs_and_is_deterministic() -> None:
    emb, groups = _blobs()
    a1, c1 = kmeans(emb, 3, torch.Generator().manual_seed(4))
    a2, c2 = kmeans(emb, 3, torch.Generator().manual_seed(4))
    assert a1.tolist() == a2.tolist() and torch.equal(c1, c2)
    for grp in groups:
        assert len({int(a1[i]) for i in grp}) == 1
    assert len({int(a1[grp[0]]) for grp in groups}) == 3
    with pytest.raises(ConfigError, match="kmeans needs 1 <= k <= N, got k=21 for N=20"):
        kmeans(emb, 21, torch.Generator())


def test_typiclust_picks_centre_of_each_blob_largest_first() -> None:
    emb, groups = _blobs()
    picks, scores = acquisition.typiclust_select(
        emb,
        3,
        torch.zeros(0, dtype=torch.long),
        torch.Generator().manual_seed(0),
        n_neighbors=20,
        min_cluster_size=1,
    )
    assert picks.tolist() == [groups[0][0], groups[1][0], groups[2][0]]
    assert (scores > 0).all()


def test_typiclust_skips_clusters_covered_by_labels() -> None:
    emb, groups = _blobs()
    labelled = torch.tensor([groups[0][3]])  # the big blob is covered
    picks, _ = acquisition.typiclust_select(
        emb, 2, labelled, torch.Generator().manual_seed(0), n_neighbors=20, min_cluster_size=1
    )
    # k = 1 + 2 = 3 clusters = the 3 blobs; the two uncovered ones give their centres
    assert picks.tolist() == [groups[1][0], groups[2][0]]


def test_typiclust_prefers_clusters_of_min_size_then_relaxes() -> None:
    emb, groups = _blobs()
    none = torch.zeros(0, dtype=torch.long)
    picks, _ = acquisition.typiclust_select(
        emb, 3, none, torch.Generator().manual_seed(0), n_neighbors=20, min_cluster_size=5
    )
    # blobs of 10 and 6 first; the blob of 4 is below the size rule and taken last
    assert picks.tolist() == [groups[0][0], groups[1][0], groups[2][0]]
    # more picks than clusters: every cluster is covered, the least covered largest one next
    picks, _ = acquisition.typiclust_select(
        emb, 4, none, torch.Generator().manual_seed(0), n_neighbors=20, min_cluster_size=1
    )
    assert len(set(picks.tolist())) == 4


class _Embed(nn.Module):
    """A fixed 'encoder': features(x) = the first two voxels of each volume."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(2, 3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_select_uses_encoder_embedding_normalised() -> None:
    # directions: 6 volumes near +x, 3 near +y; magnitudes vary (removed by L2 normalisation)
    vols = torch.zeros(9, 1, 2, 2, 2)
    dirs = [(1.0, 0.02 * i) for i in range(6)] + [(0.02 * i, 1.0) for i in range(3)]
    for i, (a, b) in enumerate(dirs):
        vols[i, 0].view(-1)[:2] = torch.tensor([a, b]) * (1 + i)
    pool = TensorPool(vols)
    s = acquisition.get(
        "typicality", encoder=_Embed(), progress=False, min_cluster_size=1, n_neighbors=2
    )
    sel = s.select(TinyConv3d(), pool, 2, generator=torch.Generator().manual_seed(0))
    assert {i // 6 for i in sel.indices.tolist()} == {0, 1}  # one per direction
    assert sel.indices[0] < 6  # the larger cluster first


def test_encoder_path_and_bad_options(tmp_path: Path, pool3d: TensorPool) -> None:
    from cryoal import models
    from cryoal.pretrain import PretrainConfig, pretrain_encoder

    torch.manual_seed(0)
    enc = models.create("cb3d", 2, (1, 8, 8, 8), channels=(4,), fc_units=8)
    pretrain_encoder(
        enc,
        pool3d,
        PretrainConfig(epochs=1, batch_size=4),
        device="cpu",
        out=tmp_path / "e.pt",
        progress=False,
    )
    by_path = acquisition.get("typicality", encoder=tmp_path / "e.pt", progress=False)
    by_module = acquisition.get("typicality", encoder=enc, progress=False)
    g = torch.Generator
    a = by_path.select(TinyConv3d(), pool3d, 4, generator=g().manual_seed(1))
    b = by_module.select(TinyConv3d(), pool3d, 4, generator=g().manual_seed(1))
    assert a.indices.tolist() == b.indices.tolist()
    with pytest.raises(ConfigError, match="n_neighbors must be a positive integer, got 0"):
        acquisition.get("typicality", n_neighbors=0)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        acquisition.get("typicality", encoder=tmp_path / "missing.pt")


def test_whiten_matches_naive_pca_whitening() -> None:
    import numpy as np

    g = torch.Generator().manual_seed(3)
    mix = torch.tensor([[3.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 0.2, 0.05]])
    x = torch.randn(40, 3, generator=g) @ mix + torch.tensor([5.0, -1.0, 2.0])
    xn = x.double().numpy()
    xc = xn - xn.mean(0)
    evals, evecs = np.linalg.eigh(np.cov(xc, rowvar=False))
    for s in (0.0, 0.1):
        # naive: centre, covariance (ddof 1), eigenvectors, scale, unit rows
        z = xc @ evecs / np.sqrt(evals + s * evals.mean())
        if s == 0.0:  # plain whitening: identity covariance
            assert np.allclose(np.cov(z, rowvar=False), np.eye(3), atol=1e-8)
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        y = whiten(x, shrinkage=s)
        assert y.shape == (40, 3) and y.dtype == torch.float32
        assert torch.allclose(y.norm(dim=1), torch.ones(40))
        # the same up to the signs of the eigenvectors: compare the Gram matrices
        assert np.allclose(y.double().numpy() @ y.double().numpy().T, z @ z.T, atol=1e-5)


def test_whiten_edge_cases() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(20, 2, generator=g), torch.full((20, 1), 7.0)], 1)
    assert whiten(x, shrinkage=0.0).shape == (20, 2)  # the constant column is dropped
    assert whiten(x).shape == (20, 3)
    same = whiten(torch.ones(5, 4))
    assert same.shape == (5, 4) and torch.count_nonzero(same) == 0
    assert torch.allclose(whiten(torch.tensor([[3.0, 4.0]])), torch.tensor([[0.6, 0.8]]))
    with pytest.raises(ConfigError, match="shrinkage must be >= 0, got -1"):
        whiten(x, shrinkage=-1)


def test_select_clusters_the_whitened_embedding(pool3d: TensorPool) -> None:
    from cryoal.acquisition.typicality import typiclust_select

    model = TinyConv3d()
    none = torch.zeros(0, dtype=torch.long)
    for flag in (True, False):
        s = acquisition.get("typicality", whiten=flag, progress=False)
        emb = embed_pool(model, pool3d, torch.arange(len(pool3d)), strategy=s, name=s.name)
        space = whiten(emb) if flag else emb
        sel = s.select(model, pool3d, 5, generator=torch.Generator().manual_seed(2))
        want, _ = typiclust_select(space, 5, none, torch.Generator().manual_seed(2))
        assert sel.indices.tolist() == want.tolist()


def test_precomputed_embeddings_give_the_encoder_picks(pool3d: TensorPool) -> None:
    from cryoal.acquisition._cluster import embed_pool

    enc = _Embed()
    by_encoder = acquisition.get(
        "typicality", encoder=enc, progress=False, min_cluster_size=1, n_neighbors=2
    )
    emb = embed_pool(enc, pool3d, torch.arange(len(pool3d)), strategy=by_encoder, name="t")
    given = acquisition.get(
        "typicality", embeddings=emb, progress=False, min_cluster_size=1, n_neighbors=2
    )
    g = torch.Generator
    a = by_encoder.select(TinyConv3d(), pool3d, 4, labelled=[0], generator=g().manual_seed(3))
    b = given.select(TinyConv3d(), pool3d, 4, labelled=[0], generator=g().manual_seed(3))
    assert a.indices.tolist() == b.indices.tolist()
    torch.testing.assert_close(a.scores, b.scores)
    torch.manual_seed(0)
    model = TinyConv3d()
    for div in ("kmeans", "kcenter"):
        kw = {"progress": False, "diversity": div, "factor": 2.0}
        d1 = acquisition.get("diverse-entropy-gradnorm", encoder=enc, **kw)
        d2 = acquisition.get("diverse-entropy-gradnorm", embeddings=emb, **kw)
        s1 = d1.select(model, pool3d, 3, labelled=[0], generator=g().manual_seed(1))
        s2 = d2.select(model, pool3d, 3, labelled=[0], generator=g().manual_seed(1))
        assert s1.indices.tolist() == s2.indices.tolist(), div
    bad = acquisition.get("typicality", embeddings=emb[:-1], progress=False)
    with pytest.raises(ConfigError, match=r"embeddings must be \(N=.*got"):
        bad.select(TinyConv3d(), pool3d, 2)
    nan = emb.clone()
    nan[0, 0] = float("nan")
    with pytest.raises(ConfigError, match="finite"):
        acquisition.get("typicality", embeddings=nan, progress=False).select(
            TinyConv3d(), pool3d, 2
        )

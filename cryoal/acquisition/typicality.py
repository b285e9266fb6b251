"""Cold start by typicality (TypiClust, Hacohen, Dekel & Weinshall, ICML 2022).

With no or very few labels, uncertainty and gradient scores come from a model that knows
nothing yet; they pick outliers and pile up in a few classes. In that regime the best
first labels are *typical* and *diverse*: one representative of each dense region of the
pool's appearance. The algorithm, on the L2-normalised embedding (``model.features``, or
a pretrained encoder's, see :mod:`cryoal.pretrain`) of the whole pool:

0. The embedding is PCA-whitened and L2-normalised again (:func:`whiten`; ``whiten=False``
   skips it): without it, a strong class that spreads over the main directions of the
   embedding owns most clusters and so most picks (measured on ten simulated structures:
   the ribosome took 16–22 of 50 picks; 7–11 with whitening).
1. ``k = min(L + B, N)`` clusters by k-means++/Lloyd (:func:`kmeans`), ``L`` labelled,
   ``B`` the budget, ``N`` the pool size.
2. Typicality of each item within its cluster: ``1 / mean distance to its
   K = min(n_neighbors, size − 1)`` nearest cluster members (:func:`knn_typicality`).
3. Repeat ``B`` times: among clusters holding no labelled and no picked item
   ("uncovered") of at least ``min_cluster_size`` items, take the largest (ties: lower
   cluster index); pick its most typical unlabelled member (ties: lower pool index). When
   no such cluster is left, relax the size rule; when every cluster is covered, take the
   cluster with the fewest labelled + picked items (then the largest).

Scores are the typicalities of the picks. Deterministic under the select generator
(which seeds k-means).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from cryoal._steps import step
from cryoal.acquisition._cluster import (
    EncoderLike,
    check_embeddings,
    embed_pool,
    kmeans,
    knn_typicality,
    resolve_encoder,
    whiten,
)
from cryoal.acquisition._stream import PoolLike
from cryoal.acquisition.base import Selection, Strategy, register
from cryoal.errors import ConfigError

__all__ = ["Typicality", "typiclust_select"]


def typiclust_select(
    emb: Tensor,
    budget: int,
    labelled: Tensor,
    generator: torch.Generator,
    *,
    n_neighbors: int = 20,
    min_cluster_size: int = 5,
) -> tuple[Tensor, Tensor]:
    """The TypiClust selection on a precomputed embedding (steps 1–3 of the module doc).

    Parameters
    ----------
    emb
        ``(N, F)`` embedding of the whole pool.
    budget
        Number of picks ``B`` (``<=`` unlabelled items).
    labelled
        ``(L,)`` int64 indices never picked; they cover their clusters.
    generator
        Seeds the k-means++ draws.
    n_neighbors, min_cluster_size
        ``K`` of the typicality and the smallest cluster preferred while uncovered ones
        remain.

    Returns
    -------
    picks : Tensor
        ``(B,)`` int64 pool indices in pick order.
    scores : Tensor
        ``(B,)`` float32 typicality of each pick.
    """
    n = emb.shape[0]
    lab = torch.zeros(n, dtype=torch.bool)
    lab[labelled] = True
    k = min(int(labelled.numel()) + budget, n)
    assign, _ = kmeans(emb, k, generator)
    typ = torch.zeros(n, dtype=torch.float64)
    sizes = torch.bincount(assign, minlength=k)
    for c in range(k):
        members = torch.nonzero(assign == c).flatten()
        if members.numel():
            typ[members] = knn_typicality(emb[members], n_neighbors)
    covered = torch.bincount(assign[lab], minlength=k)
    available = ~lab
    picks: list[int] = []
    scores: list[float] = []
    for _ in range(budget):
        open_ = torch.bincount(assign[available], minlength=k) > 0
        uncovered = open_ & (covered == 0)
        big = uncovered & (sizes >= min_cluster_size)
        if bool(big.any()):
            pool_c = big
        elif bool(uncovered.any()):
            pool_c = uncovered
        else:
            pool_c = open_
        # fewest labelled+picked first, then largest, then lower cluster index
        cands = torch.nonzero(pool_c).flatten().tolist()
        c = min(cands, key=lambda j: (int(covered[j]), -int(sizes[j]), j))
        members = torch.nonzero((assign == c) & available).flatten()
        best = members[torch.argmax(typ[members])]  # argmax takes the first (lowest index)
        i = int(best)
        picks.append(i)
        scores.append(float(typ[i]))
        available[i] = False
        covered[c] += 1
    return torch.tensor(picks, dtype=torch.long), torch.tensor(scores, dtype=torch.float32)


@register("typicality")
class Typicality(Strategy):
    """TypiClust cold start: the most typical item of each uncovered cluster.

    See the module documentation for the exact algorithm. Needs no trained model: with
    a pretrained encoder (``encoder=``, or a classifier initialised from one) the
    embedding reflects the pool's appearance; with an untrained network it is a random
    projection, still better spread than random picks.

    Parameters
    ----------
    encoder
        Embed with this model (or encoder checkpoint path, :func:`cryoal.pretrain.save_encoder`)
        instead of the scored model's ``features``.
    n_neighbors
        ``K`` of the typicality (default 20, as TypiClust).
    min_cluster_size
        Clusters smaller than this are taken only when no larger uncovered one remains.
    whiten
        Cluster in the PCA-whitened embedding (step 0 of the module doc; default).
    embeddings
        Precomputed ``(N, F)`` L2-normalised embedding of the whole pool in pool order
        (e.g. the encoder's, cached between rounds by ``cryoal select``): used instead of
        embedding the pool, so the picks equal those with ``encoder=`` that embedding
        came from.
    **kwargs
        :class:`~cryoal.acquisition.base.Strategy` options (device, batch_size, ...).
    """

    def __init__(
        self,
        *,
        encoder: EncoderLike | None = None,
        n_neighbors: int = 20,
        min_cluster_size: int = 5,
        whiten: bool = True,
        embeddings: Tensor | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(n_neighbors, bool) or n_neighbors < 1:
            raise ConfigError(f"n_neighbors must be a positive integer, got {n_neighbors!r}")
        if isinstance(min_cluster_size, bool) or min_cluster_size < 1:
            raise ConfigError(
                f"min_cluster_size must be a positive integer, got {min_cluster_size!r}"
            )
        self.encoder = resolve_encoder(encoder)
        self.n_neighbors = int(n_neighbors)
        self.min_cluster_size = int(min_cluster_size)
        self.whiten = bool(whiten)
        self.embeddings = embeddings

    def select(
        self,
        model: nn.Module,
        pool: PoolLike,
        budget: int,
        *,
        labelled: Iterable[int | str] | Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Selection:
        lab, _ = self._unlabelled(pool, budget, labelled)
        emb = check_embeddings(self.embeddings, len(pool), self.name)
        if emb is None:
            net = self.encoder if self.encoder is not None else model
            emb = embed_pool(net, pool, torch.arange(len(pool)), strategy=self, name=self.name)
        with step("pick"):
            if self.whiten:
                emb = whiten(emb)
            picks, scores = typiclust_select(
                emb,
                budget,
                lab,
                self._generator(generator),
                n_neighbors=self.n_neighbors,
                min_cluster_size=self.min_cluster_size,
            )
        return Selection(indices=picks, scores=scores, strategy=self.name)

"""Diversity-aware gradient-norm selection: keep gradnorm's ranking, drop its redundancy.

Top-``B`` gradient-norm picks of a weak model are redundant (near-duplicates of one hard
view) and class-collapsed: a calibration run on simulated subtomograms found 63 % of
entropy-gradnorm's picks in the two largest complexes. The two strategies here,
``diverse-entropy-gradnorm`` and ``diverse-expected-gradnorm``, select a batch of ``B``
in two stages:

1. **Rank.** Score every unlabelled item with the plain strategy
   (:class:`~cryoal.acquisition.gradnorm.EntropyGradNorm` or
   :class:`~cryoal.acquisition.gradnorm.ExpectedGradNorm`, same options) and keep the
   top ``m = min(max(B, ⌈factor·B⌉), U)`` by score (:func:`select_topk`; ``U`` unlabelled
   items, ``factor`` default 4).
2. **Diversify** in the L2-normalised embedding (``model.features``, or a pretrained
   encoder's):

   - ``diversity="kmeans"`` (default): k-means++/Lloyd with ``B`` clusters over the
     ``m`` candidates (:func:`~cryoal.acquisition._cluster.kmeans`, seeded by the select
     generator); from each cluster the candidate with the largest gradient norm (ties:
     lower pool index). Picks are returned by gradient norm, largest first.
   - ``diversity="kcenter"``: k-center greedy (:func:`kcenter_greedy`) over the ``m``
     candidates with the labelled items as initial centres; picks in greedy order.

With ``factor = 1`` both reduce to the plain strategy's top-``B``. Scores are the gradient
norms of the picks.

``balance=True`` (what ``auto`` uses) splits both stages by the model's **predicted class**:
the budget is shared equally over the classes the model predicts among the unlabelled
items (:func:`class_quotas`: water-filling, a class predicted for fewer items than its
share gives the rest to the others), each class keeps its own top
``⌈factor·q_c⌉`` candidates and is diversified separately. Why: gradient norms are
largest on the classes the model confuses most, so unbalanced picks pile onto them; on
ten structures outside the ``paper`` set the smallest class fell to 5.7 % of 700 labels
(random: 8.7 %) and accuracy fell behind random picks (docs/benchmarks.md). Predictions
come from ``predicted`` (a ``(N,)`` pool-order class vector, e.g. the round's own
predictions) or one forward pass over the unlabelled items; the selection's
``info["quotas"]`` maps each predicted class index to its picks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from cryoal._steps import step
from cryoal.acquisition._cluster import (
    EncoderLike,
    check_embeddings,
    embed_pool,
    kmeans,
    resolve_encoder,
)
from cryoal.acquisition._stream import PoolLike
from cryoal.acquisition.base import ScoreStrategy, Selection, Strategy, register, select_topk
from cryoal.acquisition.diversity import kcenter_greedy
from cryoal.acquisition.gradnorm import EntropyGradNorm, ExpectedGradNorm
from cryoal.errors import ConfigError

__all__ = ["DiverseEntropyGradNorm", "DiverseExpectedGradNorm", "class_quotas", "diverse_topm"]

DIVERSITY = ("kmeans", "kcenter")


def diverse_topm(scores: Tensor, emb: Tensor, budget: int, generator: torch.Generator) -> Tensor:
    """Stage 2 (``kmeans``) on precomputed candidates: one best-scored item per cluster.

    Parameters
    ----------
    scores
        ``(m,)`` gradient norms of the candidates.
    emb
        ``(m, F)`` candidate embeddings.
    budget
        ``B <= m`` clusters and picks.
    generator
        Seeds the k-means++ draws.

    Returns
    -------
    Tensor
        ``(B,)`` int64 positions into the candidates, by score descending (ties: lower
        position).
    """
    assign, _ = kmeans(emb, budget, generator)
    best: list[int] = []
    for c in range(budget):
        members = torch.nonzero(assign == c).flatten()
        if members.numel():
            best.append(int(members[torch.argmax(scores[members])]))
    chosen = torch.tensor(sorted(set(best)), dtype=torch.long)
    if chosen.numel() < budget:  # an empty cluster: fill with the best remaining scores
        rest = select_topk(scores, budget - chosen.numel(), exclude=chosen)
        chosen = torch.cat([chosen, rest])
    chosen = torch.sort(chosen).values  # stable sort below: ties keep the lower position
    order = torch.sort(scores[chosen].double(), descending=True, stable=True).indices
    return chosen[order]


def class_quotas(counts: Tensor, budget: int, order: Tensor | None = None) -> Tensor:
    """Share ``budget`` picks equally over classes, capped by what each class has.

    Water-filling: every class with items gets ``⌊B/K⌋`` (``K`` classes left), a class
    with fewer items gets all of them and the rest is shared again over the others; the
    ``B mod K`` leftover picks go to the classes first in ``order``.

    Parameters
    ----------
    counts
        ``(C,)`` items available per class (``>= 0``).
    budget
        Picks ``B``, ``0 <= B <= counts.sum()``.
    order
        ``(C,)`` class indices, most deserving first (default: ``0 .. C-1``).

    Returns
    -------
    Tensor
        ``(C,)`` int64 quotas, ``0 <= q_c <= counts_c``, summing to ``B``.
    """
    counts = counts.to(torch.long)
    if budget < 0 or budget > int(counts.sum()):
        raise ConfigError(f"budget {budget} outside 0..{int(counts.sum())} available items")
    order = torch.arange(counts.numel()) if order is None else order.to(torch.long)
    quota = torch.zeros_like(counts)
    left = budget
    while left > 0:
        open_ = [int(c) for c in order if quota[c] < counts[c]]
        share, extra = divmod(left, len(open_))
        for rank, c in enumerate(open_):
            add = min(share + (1 if rank < extra else 0), int(counts[c] - quota[c]))
            quota[c] += add
            left -= add
    return quota


class _DiverseGradNorm(Strategy):
    base: ClassVar[type[ScoreStrategy]]

    def __init__(
        self,
        *,
        factor: float = 4.0,
        diversity: str = "kmeans",
        encoder: EncoderLike | None = None,
        embeddings: Tensor | None = None,
        balance: bool = False,
        predicted: Tensor | None = None,
        **kwargs: Any,
    ) -> None:
        scorer_kw = {
            k: kwargs.pop(k) for k in ("reduction", "params", "variant", "top_k") if k in kwargs
        }
        super().__init__(**kwargs)
        if isinstance(factor, bool) or not float(factor) >= 1.0:
            raise ConfigError(f"factor must be a number >= 1, got {factor!r}")
        if diversity not in DIVERSITY:
            raise ConfigError(f"unknown diversity {diversity!r}: use one of {', '.join(DIVERSITY)}")
        if balance and diversity != "kmeans":
            raise ConfigError("balance=True needs diversity='kmeans'")
        self.balance = bool(balance)
        self.predicted = predicted
        self.factor = float(factor)
        self.diversity = diversity
        self.encoder = resolve_encoder(encoder)
        self.embeddings = embeddings
        self.scorer = self.base(**scorer_kw, **kwargs)

    def select(
        self,
        model: nn.Module,
        pool: PoolLike,
        budget: int,
        *,
        labelled: Iterable[int | str] | Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Selection:
        lab, unl = self._unlabelled(pool, budget, labelled)
        gen = self._generator(generator)
        scores = self.scorer._score_indices(model, pool, unl, gen)
        net = self.encoder if self.encoder is not None else model
        given = check_embeddings(self.embeddings, len(pool), self.name)

        def embed(rows: Tensor) -> Tensor:
            if given is not None:
                return given[rows]
            return embed_pool(net, pool, rows, strategy=self, name=self.name)

        if self.balance:
            pos, quotas = self._balanced(model, pool, unl, scores, budget, embed, gen)
            return Selection(
                indices=unl[pos], scores=scores[pos], strategy=self.name, info={"quotas": quotas}
            )
        m = min(max(budget, math.ceil(self.factor * budget)), int(unl.numel()))
        top = select_topk(scores, m)
        cand = unl[top]
        if self.diversity == "kmeans":
            emb = embed(cand)
            with step("pick"):
                pos = diverse_topm(scores[top], emb, budget, gen)
            return Selection(indices=cand[pos], scores=scores[top][pos], strategy=self.name)
        rows = torch.cat([lab, cand])
        emb = embed(rows)
        n_lab = int(lab.numel())
        with step("pick"):
            picks, _ = kcenter_greedy(
                emb, budget, torch.arange(n_lab), torch.arange(n_lab, n_lab + int(cand.numel()))
            )
        pos = picks - n_lab
        return Selection(indices=cand[pos], scores=scores[top][pos], strategy=self.name)

    def _predicted(self, model: nn.Module, pool: PoolLike, unl: Tensor) -> Tensor:
        """``(U,)`` predicted classes of the unlabelled items (given, or one forward pass)."""
        if self.predicted is not None:
            pred = torch.as_tensor(self.predicted, dtype=torch.long).flatten()
            if pred.numel() != len(pool):
                raise ConfigError(
                    f"{self.name}: predicted has {pred.numel()} entries for a pool of {len(pool)}"
                )
            return pred[unl]
        device = self._prepare(model)
        with step("predict"):
            return self._stream(model, lambda x: model(x).argmax(1), pool, unl, device)

    def _balanced(
        self,
        model: nn.Module,
        pool: PoolLike,
        unl: Tensor,
        scores: Tensor,
        budget: int,
        embed: Any,
        gen: torch.Generator,
    ) -> tuple[Tensor, dict[int, int]]:
        """Positions into ``unl`` of ``budget`` picks balanced over predicted classes, and
        the quota of each predicted class (``{class index: picks}``)."""
        pred = self._predicted(model, pool, unl)
        classes, inverse = torch.unique(pred, return_inverse=True)
        counts = torch.bincount(inverse, minlength=classes.numel())
        # leftover picks go to the classes whose best item scores highest
        best = torch.stack([scores[inverse == k].max() for k in range(classes.numel())])
        quota = class_quotas(counts, budget, torch.sort(best.double(), descending=True).indices)
        chosen: list[Tensor] = []
        for k in range(classes.numel()):
            q = int(quota[k])
            if q == 0:
                continue
            members = torch.nonzero(inverse == k).flatten()
            m = min(max(q, math.ceil(self.factor * q)), int(members.numel()))
            top = members[select_topk(scores[members], m)]
            emb = embed(unl[top])
            with step("pick"):
                chosen.append(top[diverse_topm(scores[top], emb, q, gen)])
        picks = torch.sort(torch.cat(chosen)).values  # stable below: ties keep the lower index
        order = torch.sort(scores[picks].double(), descending=True, stable=True).indices
        quotas = {int(c): int(q) for c, q in zip(classes, quota, strict=True)}
        return picks[order], quotas


@register("diverse-entropy-gradnorm")
class DiverseEntropyGradNorm(_DiverseGradNorm):
    """Entropy-gradnorm ranking, then diversity in the embedding (see the module doc).

    Parameters
    ----------
    factor
        Candidates kept from the ranking, ``m = ⌈factor·budget⌉`` (default 4).
    diversity
        ``"kmeans"`` (one best item per cluster) or ``"kcenter"``.
    encoder
        Embed with this model (or encoder checkpoint path) instead of ``model.features``.
    embeddings
        Precomputed ``(N, F)`` embedding of the whole pool in pool order, used instead
        of embedding the candidates (see :class:`~cryoal.acquisition.typicality.Typicality`).
    balance
        Share the budget equally over the model's predicted classes (module doc).
    predicted
        ``(N,)`` pool-order predicted classes for ``balance`` (default: a forward pass).
    reduction, params
        Passed to :class:`~cryoal.acquisition.gradnorm.EntropyGradNorm`.
    **kwargs
        :class:`~cryoal.acquisition.base.Strategy` options.
    """

    base = EntropyGradNorm


@register("diverse-expected-gradnorm")
class DiverseExpectedGradNorm(_DiverseGradNorm):
    """Expected-gradnorm ranking, then diversity in the embedding (see the module doc).

    Parameters
    ----------
    factor, diversity, encoder, embeddings, balance, predicted
        As for :class:`DiverseEntropyGradNorm`.
    variant, top_k, reduction, params
        Passed to :class:`~cryoal.acquisition.gradnorm.ExpectedGradNorm`.
    **kwargs
        :class:`~cryoal.acquisition.base.Strategy` options.
    """

    base = ExpectedGradNorm

"""Batch-aware strategies: core-set (k-center greedy) and BADGE (k-means++ on gradient
embeddings). Both embed the pool once (streamed, one forward per batch) and then pick
greedily, so they override :meth:`Strategy.select`; the embedding table is ``(N, F)``
(coreset) or ``(N, C + F)`` (BADGE, kept factored), the only pool-sized memory.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from cryoal._steps import step
from cryoal.acquisition._persample import loss_cotangents
from cryoal.acquisition._stream import PoolLike, autocast
from cryoal.acquisition.base import Selection, Strategy, register
from cryoal.acquisition.gradnorm import _features_and_head
from cryoal.errors import ConfigError

__all__ = ["BADGE", "Coreset", "kcenter_greedy", "kmeanspp_factored"]

_DIST_CHUNK = 4096


def _min_dist(emb: Tensor, centres: Tensor) -> Tensor:
    """``(N,)`` Euclidean distance of each row of ``emb`` to its nearest centre (chunked)."""
    out = torch.full((emb.shape[0],), torch.inf, dtype=emb.dtype)
    for start in range(0, centres.shape[0], _DIST_CHUNK):
        d = torch.cdist(emb, centres[start : start + _DIST_CHUNK]).min(dim=1).values
        out = torch.minimum(out, d)
    return out


def kcenter_greedy(
    emb: Tensor, k: int, centres: Tensor, candidates: Tensor
) -> tuple[Tensor, Tensor]:
    """k-center greedy selection (Sener & Savarese 2018).

    Repeatedly picks the candidate farthest from its nearest centre and makes it a centre.
    With no centres (a cold start), the first pick is the candidate farthest from the
    candidates' mean; from then on the picks are the only centres (standard greedy
    k-center: the mean is not kept as a phantom centre).

    Parameters
    ----------
    emb
        ``(N, F)`` embeddings.
    k
        Number of picks (``<= len(candidates)``).
    centres
        ``(L,)`` indices of initial centres (the labelled set; may be empty).
    candidates
        ``(M,)`` indices that may be picked.

    Returns
    -------
    picks : Tensor
        ``(k,)`` int64 indices in pick order; ties go to the lower index.
    scores : Tensor
        ``(k,)`` distance of each pick to its nearest centre when it was picked (for a
        cold start's first pick: its distance to the candidates' mean).
    """
    emb = emb.to(torch.float64)
    available = torch.zeros(emb.shape[0], dtype=torch.bool)
    available[candidates] = True
    cold = centres.numel() == 0
    if cold:
        # only to choose the first centre; replaced by the distance to it below
        dist = (emb - emb[candidates].mean(0)).norm(dim=1)
    else:
        dist = _min_dist(emb, emb[centres])
    picks, scores = [], []
    for _ in range(k):
        masked = torch.where(available, dist, torch.tensor(-torch.inf, dtype=dist.dtype))
        i = int(torch.argmax(masked))
        picks.append(i)
        scores.append(float(dist[i]))
        available[i] = False
        to_pick = (emb - emb[i]).norm(dim=1)
        dist = to_pick if cold and len(picks) == 1 else torch.minimum(dist, to_pick)
    return torch.tensor(picks, dtype=torch.long), torch.tensor(scores)


def kmeanspp_factored(
    u: Tensor, h: Tensor, k: int, candidates: Tensor, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """k-means++ seeding on gradient embeddings ``g_i = u_i ⊗ h_i`` without forming them.

    ``‖g_i − g_j‖² = ‖u_i‖²‖h_i‖² + ‖u_j‖²‖h_j‖² − 2 (u_i·u_j)(h_i·h_j)``.
    The first pick is the candidate of largest ``‖g‖`` (as in the BADGE code); each next
    pick is drawn with probability proportional to its squared distance ``D²`` to the
    nearest pick. When every remaining ``D²`` is 0 the lowest remaining index is taken.

    Parameters
    ----------
    u
        ``(N, C)`` loss gradients with respect to the logits, ``p − e_ŷ``.
    h
        ``(N, F)`` penultimate embeddings.
    k
        Number of picks.
    candidates
        ``(M,)`` pickable indices.
    generator
        Randomness of the D² sampling (CPU generator).

    Returns
    -------
    picks : Tensor
        ``(k,)`` int64 indices in pick order.
    scores : Tensor
        ``(k,)`` ``D²`` of each pick when picked (``‖g‖²`` for the first).
    """
    u = u.to(torch.float64)
    h = h.to(torch.float64)
    sq = u.pow(2).sum(1) * h.pow(2).sum(1)
    available = torch.zeros(u.shape[0], dtype=torch.bool)
    available[candidates] = True
    first = int(torch.argmax(torch.where(available, sq, torch.tensor(-torch.inf, dtype=sq.dtype))))
    picks, scores = [first], [float(sq[first])]
    available[first] = False
    d2 = torch.full_like(sq, torch.inf)
    last = first
    while len(picks) < k:
        d_new = (sq + sq[last] - 2 * (u @ u[last]) * (h @ h[last])).clamp_min(0)
        d2 = torch.minimum(d2, d_new)
        weights = torch.where(available, d2, torch.zeros_like(d2))
        total = float(weights.sum())
        if total > 0:
            i = int(torch.multinomial(weights / total, 1, generator=generator))
        else:
            i = int(torch.nonzero(available)[0])
        picks.append(i)
        scores.append(float(d2[i]))
        available[i] = False
        last = i
    return torch.tensor(picks, dtype=torch.long), torch.tensor(scores)


class _EmbeddingStrategy(Strategy):
    def _embed(self, model: nn.Module, pool: PoolLike, indices: Tensor, badge: bool) -> Tensor:
        """``(len(indices), F)`` features, or ``(len(indices), C + F)`` ``[p − e_ŷ, h]`` rows."""
        features, head = _features_and_head(model, self.name)
        device = self._prepare(model)
        amp = self._use_amp(device)

        def fn(x: Tensor) -> Tensor:
            with torch.no_grad(), autocast(device, amp):
                h = features(x).float()
                if not badge:
                    return h
                z = head(h).float()
                p = torch.softmax(z, dim=1)
            # u = ∂ℓ(z, ŷ)/∂z: p − e_ŷ for cross-entropy, else autograd on the logits
            u = loss_cotangents(z, p.argmax(1, keepdim=True), self.loss)[0]
            return torch.cat([u, h], dim=1)

        with step("embed"):
            return self._stream(model, fn, pool, indices, device, desc=f"{self.name} embeddings")


@register("coreset")
class Coreset(_EmbeddingStrategy):
    """Core-set selection: k-center greedy on ``model.features`` embeddings.

    The labelled set serves as the initial centres; each pick is the unlabelled volume
    farthest (Euclidean) from every centre so far. Without labels the first pick is the
    volume farthest from the pool's mean embedding, then farthest-first from the picks.
    Deterministic (ties to the lower index).
    """

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
        emb = self._embed(model, pool, torch.arange(len(pool)), badge=False)
        with step("pick"):
            picks, scores = kcenter_greedy(emb, budget, lab, unl)
        return Selection(indices=picks, scores=scores, strategy=self.name)


@register("badge")
class BADGE(_EmbeddingStrategy):
    """BADGE (Ash et al. 2020): k-means++ seeding on last-layer gradient embeddings.

    The embedding of ``x`` is the gradient of ``CE(f(x), ŷ)`` (``ŷ`` the predicted class)
    with respect to the head weights, ``(p − e_ŷ) ⊗ h``: large for uncertain volumes,
    spread out for diverse ones. With the ``loss`` option (the task's per-sample loss)
    ``p − e_ŷ`` is that loss's logit gradient ``∂ℓ(z, ŷ)/∂z``. Stochastic: uses the select
    generator.
    """

    def select(
        self,
        model: nn.Module,
        pool: PoolLike,
        budget: int,
        *,
        labelled: Iterable[int | str] | Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Selection:
        _, unl = self._unlabelled(pool, budget, labelled)
        head = getattr(model, "head", None)
        if not isinstance(head, nn.Linear):
            raise ConfigError(f"badge needs a linear head; {type(model).__name__} has none")
        emb = self._embed(model, pool, unl, badge=True)  # rows follow ``unl``
        c = head.out_features
        picks, scores = kmeanspp_factored(
            emb[:, :c], emb[:, c:], budget, torch.arange(len(unl)), self._generator(generator)
        )
        return Selection(indices=unl[picks], scores=scores, strategy=self.name)

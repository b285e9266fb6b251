"""Baselines scoring each volume from the softmax prediction: random, entropy, margin,
least confidence, and BALD (Monte-Carlo dropout)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from cryoal.acquisition._stream import (
    DROPOUT_TYPES,
    PoolLike,
    autocast,
    mc_dropout_mode,
)
from cryoal.acquisition.base import CLASSIFICATION_TASKS, ScoreStrategy, register
from cryoal.errors import ConfigError

__all__ = [
    "BALD",
    "Entropy",
    "LeastConfidence",
    "Margin",
    "Random",
    "bald_scores",
    "entropy_of",
    "margin_scores",
]


def entropy_of(probs: Tensor) -> Tensor:
    """``−Σ_y p_y log p_y`` (nats) of probabilities ``(..., C)`` → ``(...)``; ``0·log 0 = 0``."""
    ent: Tensor = -torch.special.xlogy(probs, probs).sum(-1)
    return ent


def margin_scores(probs: Tensor) -> Tensor:
    """``1 − (p_(1) − p_(2))`` for ``(B, C)`` probabilities: high when the top two are close."""
    if probs.shape[1] < 2:
        return torch.zeros(probs.shape[0], dtype=probs.dtype, device=probs.device)
    top2 = probs.topk(2, dim=1).values
    return 1.0 - (top2[:, 0] - top2[:, 1])


def bald_scores(mc_probs: Tensor) -> Tensor:
    """Mutual information between prediction and weights from MC samples.

    Parameters
    ----------
    mc_probs
        ``(T, B, C)`` softmax outputs of ``T`` stochastic forward passes.

    Returns
    -------
    Tensor
        ``(B,)`` ``H(mean_t p_t) − mean_t H(p_t)`` in nats (≥ 0).
    """
    return (entropy_of(mc_probs.mean(0)) - entropy_of(mc_probs).mean(0)).clamp_min(0)


class _ProbStrategy(ScoreStrategy):
    """Scores computed from the softmax probabilities ``(B, C)`` of one eval forward pass."""

    def _from_probs(self, probs: Tensor) -> Tensor:
        return entropy_of(probs)

    def _score_indices(
        self, model: nn.Module, pool: PoolLike, indices: Tensor, generator: torch.Generator
    ) -> Tensor:
        device = self._prepare(model)
        amp = self._use_amp(device)

        def fn(x: Tensor) -> Tensor:
            with torch.no_grad(), autocast(device, amp):
                z = model(x)
            return self._from_probs(torch.softmax(z.float(), dim=1))

        return self._stream(model, fn, pool, indices, device)


@register("random", tasks=(*CLASSIFICATION_TASKS, "segmentation"))
class Random(ScoreStrategy):
    """Uniformly random picks (scores are i.i.d. U(0, 1) draws, one per pool item).

    Needs no model forward; the model is accepted for a uniform interface.
    """

    def _score_indices(
        self, model: nn.Module, pool: PoolLike, indices: Tensor, generator: torch.Generator
    ) -> Tensor:
        # one draw per pool item, so a pick does not depend on which items are labelled
        return torch.rand(len(pool), generator=generator)[indices]


@register("entropy")
class Entropy(_ProbStrategy):
    """Predictive entropy ``H(p(·|x))`` (nats)."""


@register("margin")
class Margin(_ProbStrategy):
    """Smallest margin between the two most probable classes: score ``1 − (p₁ − p₂)``."""

    def _from_probs(self, probs: Tensor) -> Tensor:
        return margin_scores(probs)


@register("least-confidence")
class LeastConfidence(_ProbStrategy):
    """Least confidence: score ``1 − max_y p(y|x)``."""

    def _from_probs(self, probs: Tensor) -> Tensor:
        return 1.0 - probs.max(dim=1).values


@register("bald")
class BALD(ScoreStrategy):
    """Bayesian active learning by disagreement with Monte-Carlo dropout (Gal et al. 2017).

    ``T`` stochastic forward passes per batch with dropout modules in train mode and every
    other module (BatchNorm included) in eval mode; score ``H(E_t p_t) − E_t H(p_t)``.
    Dropout masks are drawn from a torch RNG seeded from the select generator (or the
    ``seed`` option for :meth:`score`), so a run is reproducible.

    Parameters
    ----------
    n_samples
        Number of MC dropout passes ``T``.
    **kwargs
        :class:`~cryoal.acquisition.base.Strategy` options.
    """

    def __init__(self, *, n_samples: int = 20, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
            raise ConfigError(f"bald needs n_samples >= 2 MC dropout passes, got {n_samples!r}")
        self.n_samples = n_samples

    def _score_indices(
        self, model: nn.Module, pool: PoolLike, indices: Tensor, generator: torch.Generator
    ) -> Tensor:
        if not any(isinstance(m, DROPOUT_TYPES) for m in model.modules()):
            raise ConfigError(
                f"bald needs dropout layers for MC sampling; {type(model).__name__} has none: "
                "use a model with dropout > 0 or another strategy"
            )
        device = self._prepare(model)
        amp = self._use_amp(device)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        devices = [device] if device.type == "cuda" else []

        def fn(x: Tensor) -> Tensor:
            mc = []
            with torch.no_grad(), autocast(device, amp):
                for _ in range(self.n_samples):
                    mc.append(torch.softmax(model(x).float(), dim=1))
            return bald_scores(torch.stack(mc))

        with torch.random.fork_rng(devices=devices), mc_dropout_mode(model):
            torch.manual_seed(seed)
            return self._stream(model, fn, pool, indices, device, keep_mode=True)

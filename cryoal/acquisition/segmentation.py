"""Acquisition over sub-volume patches for segmentation models (logits `(B, K, *spatial)`).

These strategies are registered for the ``segmentation`` task in the one strategy
registry (:func:`cryoal.acquisition.get` with ``task="segmentation"``); ``random`` is
shared with the classification tasks.

A patch ``x`` gets one score from the per-voxel softmax ``p_v = softmax(z_v)`` over its
``V`` voxels. The per-sample label loss ``ℓ(x, y)`` of a patch is the ``loss`` strategy
option: the task's :meth:`~cryoal.tasks.Task.per_sample_loss`, the loss its rounds train
with (``Segmentation.strategy`` and the round's score step pass it), a function
``(logits (B, K, *spatial), target (B, *spatial)) -> (B,)``. By default (``loss=None``,
or a loss declared with :func:`~cryoal.acquisition.is_cross_entropy`, as
``Segmentation.per_sample_loss`` is) it is the **mean voxel cross-entropy**
``ℓ(x, y) = (1/V) Σ_v CE(z_v, y_v)`` over the annotated voxels
(:func:`~cryoal.tasks.seg_metrics.voxel_cross_entropy`). Strategies (same
:class:`~cryoal.acquisition.Strategy` interface and
:func:`~cryoal.acquisition.select_topk` as the classification ones):

``random``
    i.i.d. uniform scores (:class:`cryoal.acquisition.Random`).
``entropy``
    mean voxel entropy ``(1/V) Σ_v H(p_v)`` (nats).
``entropy-gradnorm``
    ``‖∇θ (1/V) Σ_v H(p_v)‖``: gradient norm of the mean voxel entropy. No label loss
    enters it, so it ignores ``loss``.
``expected-gradnorm``
    the gradient norm of ``ℓ`` expected over label maps drawn from the model's own
    per-voxel prediction (voxels independent, as the model factorises them)::

        E_{Y ~ p} ‖∇θ ℓ(x, Y)‖ ≈ (1/S) Σ_s ‖∇θ ℓ(x, y^(s))‖,
        y_v^(s) ~ Categorical(p_v) independently, s = 1 … S.

    The exact expectation has ``K^V`` terms, so it is estimated from ``S`` sampled maps
    (``samples``, default 8) drawn with the strategy's generator (reproducible). Each map
    is one cotangent ``∂ℓ/∂z`` on the logits through ONE forward pass
    (:func:`~cryoal.acquisition._persample.loss_cotangents`): ``(p_v − e_{y_v})/V`` in
    closed form for mean voxel cross-entropy, otherwise autograd through ``loss`` on the
    detached logits (cheap: no second pass through the network). Sampled maps annotate
    every voxel; a loss that skips unannotated voxels in training sees none here.

Why not the "expected loss" ``(1/V) Σ_v Σ_y p_v(y) CE_v(y)``: with ``p`` detached its
gradient is exactly zero (``Σ_y p_y (p − e_y) = 0`` at every voxel); with ``p`` not
detached it is the mean voxel entropy, i.e. ``entropy-gradnorm`` (tests check both).

Gradient norms are exact per sample from :func:`cryoal.acquisition.per_sample_grad_norms`'
engine (no loop over samples), in eval mode (BatchNorm running statistics, dropout off).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cryoal.acquisition._persample import (
    PerSampleLoss,
    check_reduction,
    grad_sq_norms,
    loss_cotangents,
    per_sample_grad_norms,
    reduce_norms,
    select_params,
)
from cryoal.acquisition._stream import PoolLike, eval_mode
from cryoal.acquisition.base import ScoreStrategy, register
from cryoal.errors import ConfigError

__all__ = [
    "SEGMENTATION",
    "SegEntropy",
    "SegEntropyGradNorm",
    "SegExpectedGradNorm",
    "expected_gradnorm_scores",
    "mean_voxel_entropy",
    "sample_label_maps",
]

#: the task name these strategies are registered for
SEGMENTATION = "segmentation"


def _check_logits(z: Tensor) -> None:
    if z.dim() < 3:
        raise ConfigError(
            f"segmentation strategies need per-voxel logits (B, K, *spatial), got "
            f"{tuple(z.shape)}: use a segmentation model such as monai-unet"
        )


def mean_voxel_entropy(logits: Tensor) -> Tensor:
    """``(1/V) Σ_v H(softmax(z_v))`` in nats for logits `(B, K, *spatial)` → `(B,)`.

    Differentiable in ``logits`` (the loss of ``entropy-gradnorm``).
    """
    _check_logits(logits)
    logp = F.log_softmax(logits, dim=1)
    h = -(logp.exp() * logp).sum(1)
    return h.flatten(1).mean(1)


def sample_label_maps(probs: Tensor, samples: int, generator: torch.Generator) -> Tensor:
    """Draw label maps voxel-wise from per-voxel class probabilities.

    Parameters
    ----------
    probs
        `(B, K, *spatial)` probabilities (rows sum to 1 over ``K``).
    samples
        Number of maps ``S`` per item.
    generator
        CPU generator; the draw happens on the CPU and is moved to ``probs.device``.

    Returns
    -------
    Tensor
        `(S, B, *spatial)` int64 class indices.
    """
    b, k = probs.shape[:2]
    spatial = probs.shape[2:]
    flat = probs.detach().float().cpu().movedim(1, -1).reshape(-1, k)
    draws = torch.multinomial(flat, samples, replacement=True, generator=generator)
    return draws.T.reshape(samples, b, *spatial).to(probs.device)


def expected_gradnorm_scores(
    model: nn.Module,
    x: Tensor,
    *,
    samples: int = 8,
    generator: torch.Generator | None = None,
    label_maps: Tensor | None = None,
    item_seeds: Sequence[int] | None = None,
    reduction: str = "l2",
    params: Iterable[str | Tensor] | None = None,
    loss: PerSampleLoss | None = None,
) -> Tensor:
    """``(1/S) Σ_s ‖∇θ ℓ(x, y^(s))‖`` per item of a batch (see module doc).

    Parameters
    ----------
    model
        Segmentation model, logits `(B, K, *spatial)`; evaluated in eval mode.
    x
        `(B, C, *spatial)` batch on the model's device.
    samples
        ``S``, label maps drawn per item (ignored when ``label_maps`` is given).
    generator
        CPU generator for the draws (default: seed 0).
    label_maps
        `(S, B, *spatial)` maps to use instead of drawing (tests, reproducibility).
    item_seeds
        One seed per item: item ``i``'s maps are drawn with its own generator, so its
        score does not depend on the batch it is in (strategies pass seeds derived from
        pool indices). Replaces ``generator``.
    reduction, params
        As in :func:`cryoal.acquisition.per_sample_grad_norms`.
    loss
        Per-sample loss ``ℓ``: ``(logits (B, K, *spatial), target (B, *spatial) int64) ->
        (B,)``; ``None`` (or declared with :func:`~cryoal.acquisition.is_cross_entropy`):
        mean voxel cross-entropy in closed form.

    Returns
    -------
    Tensor
        `(B,)` scores.

    Raises
    ------
    ConfigError
        Bad ``samples``, ``item_seeds``, ``label_maps`` or reduction, logits not
        `(B, K, *spatial)`, or ``loss`` not returning `(B,)`.
    """
    check_reduction(reduction)
    if label_maps is None and (isinstance(samples, bool) or samples < 1):
        raise ConfigError(f"samples must be a positive integer, got {samples!r}")
    chosen = select_params(model, params)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)

    def backprop(out: Tensor) -> list[tuple[Tensor, Tensor | None]]:
        _check_logits(out)
        p = torch.softmax(out.detach().float(), dim=1)
        if label_maps is not None:
            maps = label_maps
        elif item_seeds is not None:
            if len(item_seeds) != p.shape[0]:
                raise ConfigError(f"{len(item_seeds)} item_seeds for a batch of {p.shape[0]}")
            maps = torch.cat(
                [
                    sample_label_maps(
                        p[i : i + 1], samples, torch.Generator().manual_seed(int(item_seeds[i]))
                    )
                    for i in range(p.shape[0])
                ],
                dim=1,
            )
        else:
            maps = sample_label_maps(p, samples, gen)
        if maps.shape[1:] != (p.shape[0], *p.shape[2:]):
            raise ConfigError(
                f"label_maps must be (S, {p.shape[0]}, {', '.join(map(str, p.shape[2:]))}), "
                f"got {tuple(maps.shape)}"
            )
        cots = loss_cotangents(out, maps.to(p.device).long().movedim(0, 1), loss)
        return [(out, cot.to(out.dtype)) for cot in cots]

    with eval_mode(model):
        sq, _ = grad_sq_norms(model, x, backprop, chosen)
    return reduce_norms(sq, reduction).mean(0)


class _SegScoreStrategy(ScoreStrategy):
    """Streams batches of patches through ``_batch_scores`` in eval mode."""

    def __init__(
        self,
        *,
        reduction: str = "l2",
        params: Iterable[str | Tensor] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reduction = check_reduction(reduction)
        self.params = None if params is None else list(params)

    @abstractmethod
    def _batch_scores(self, model: nn.Module, x: Tensor, generator: torch.Generator) -> Tensor:
        """Scores `(b,)` of one batch `(b, C, *spatial)` already on the device."""

    def _score_indices(
        self, model: nn.Module, pool: PoolLike, indices: Tensor, generator: torch.Generator
    ) -> Tensor:
        device = self._prepare(model)

        def fn(x: Tensor) -> Tensor:
            return self._batch_scores(model, x, generator)

        return self._stream(model, fn, pool, indices, device)


@register("entropy", tasks=(SEGMENTATION,))
class SegEntropy(_SegScoreStrategy):
    """Mean voxel entropy ``(1/V) Σ_v H(p_v)`` (nats): the uncertainty baseline."""

    def _batch_scores(self, model: nn.Module, x: Tensor, generator: torch.Generator) -> Tensor:
        with torch.no_grad():
            return mean_voxel_entropy(model(x).float())


@register("entropy-gradnorm", tasks=(SEGMENTATION,))
class SegEntropyGradNorm(_SegScoreStrategy):
    """``‖∇θ (1/V) Σ_v H(p_v)‖``: gradient norm of the mean voxel entropy.

    The entropy needs no label, so no label loss enters this score: the ``loss`` context
    option is accepted (like every strategy's) and ignored.

    Parameters
    ----------
    reduction, params
        As in :func:`cryoal.acquisition.per_sample_grad_norms`.
    **kwargs
        :class:`~cryoal.acquisition.Strategy` options (device, batch_size, transform, ...).
    """

    def _batch_scores(self, model: nn.Module, x: Tensor, generator: torch.Generator) -> Tensor:
        return per_sample_grad_norms(
            model, x, mean_voxel_entropy, reduction=self.reduction, params=self.params
        )


@register("expected-gradnorm", tasks=(SEGMENTATION,))
class SegExpectedGradNorm(_SegScoreStrategy):
    """Gradient norm of the per-sample loss, expected over sampled label maps.

    Parameters
    ----------
    samples
        Label maps ``S`` drawn per patch from the per-voxel prediction (default 8).
    reduction, params
        As in :func:`cryoal.acquisition.per_sample_grad_norms`.
    **kwargs
        :class:`~cryoal.acquisition.Strategy` options; ``seed`` seeds :meth:`score`'s
        draws; ``loss`` is the per-sample loss differentiated (default: mean voxel
        cross-entropy, in closed form; see :func:`expected_gradnorm_scores`).
    """

    def __init__(self, *, samples: int = 8, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ConfigError(f"samples must be a positive integer, got {samples!r}")
        self.samples = samples

    def _batch_scores(self, model: nn.Module, x: Tensor, generator: torch.Generator) -> Tensor:
        return expected_gradnorm_scores(
            model,
            x,
            samples=self.samples,
            generator=generator,
            reduction=self.reduction,
            params=self.params,
            loss=self.loss,
        )

    def _score_indices(
        self, model: nn.Module, pool: PoolLike, indices: Tensor, generator: torch.Generator
    ) -> Tensor:
        # item j's label maps come from seed (base + pool index j): a patch's score does not
        # depend on the batch it falls in or on which patches are labelled
        device = self._prepare(model)
        base = int(torch.randint(0, 2**31, (1,), generator=generator))
        order = [int(i) for i in indices.tolist()]
        done = 0

        def fn(x: Tensor) -> Tensor:
            nonlocal done
            seeds = [base + j for j in order[done : done + x.shape[0]]]
            done += x.shape[0]
            return expected_gradnorm_scores(
                model,
                x,
                samples=self.samples,
                item_seeds=seeds,
                reduction=self.reduction,
                params=self.params,
                loss=self.loss,
            )

        return self._stream(model, fn, pool, indices, device)

"""Gradient-norm acquisition (Wang et al., AAAI 2022) and its cheap last-layer approximation.

Labelling samples with a large gradient norm lowers an upper bound of the test loss. Two
label-free surrogates score an unlabelled volume ``x`` with softmax prediction ``p``:

- ``entropy-gradnorm``: ``‖∇θ H(p(·|x))‖``, ``H`` the predictive entropy;
- ``expected-gradnorm``: ``Σ_y p(y|x)·‖∇θ CE(f(x), y)‖`` (``variant="paper"``), the norm
  expected over labels drawn from the model's own prediction, ``p`` detached.
  ``variant="reference"`` reproduces the released code: ``‖∇θ Σ_y p(y|x)·CE(f(x), y)‖``
  with ``p`` NOT detached — that sum is ``H(p)``, so it equals ``entropy-gradnorm``.

Norms are exact per sample, computed batch-wise by :func:`per_sample_grad_norms` (no loop
over samples); the per-class gradients of one sample share one forward pass.

``CE`` above stands for the task's per-sample label loss: the strategy option ``loss``
(the round engine passes :meth:`cryoal.tasks.Task.per_sample_loss`, so acquisition and
training use the same loss); ``None`` (default) is cross-entropy, in closed form.
``entropy-gradnorm`` needs no label loss and ignores it.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cryoal.acquisition._persample import (
    PerSampleLoss,
    _closed_form,
    check_reduction,
    grad_sq_norms,
    loss_cotangents,
    per_sample_class_grad_norms,
    per_sample_grad_norms,
    reduce_norms,
    select_params,
)
from cryoal.acquisition._stream import PoolLike, autocast
from cryoal.acquisition.base import ScoreStrategy, register
from cryoal.errors import ConfigError

__all__ = [
    "EntropyGradNorm",
    "ExpectedGradNorm",
    "LastLayerGradNorm",
    "entropy",
    "expected_ce",
    "last_layer_scores",
    "per_sample_class_grad_norms",
    "per_sample_grad_norms",
]


def entropy(logits: Tensor) -> Tensor:
    """Predictive entropy ``H(softmax(z)) = −Σ_y p_y log p_y`` in nats.

    Parameters
    ----------
    logits
        ``(B, C)`` logits.

    Returns
    -------
    Tensor
        ``(B,)`` entropies, differentiable in ``logits``.
    """
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(1)


def expected_ce(
    logits: Tensor, classes: Tensor | None = None, loss: PerSampleLoss | None = None
) -> Tensor:
    """``Σ_y p(y|x)·CE(f(x), y)`` with ``p`` NOT detached (the released code's loss).

    Parameters
    ----------
    logits
        ``(B, C)`` logits.
    classes
        ``(B, K)`` classes to sum over (default: all ``C``).
    loss
        Per-sample label loss ``(logits (B, C), target (B,)) -> (B,)`` used instead of
        cross-entropy (``None``: cross-entropy).

    Returns
    -------
    Tensor
        ``(B,)`` losses; with cross-entropy over all classes this equals :func:`entropy`.
    """
    p = torch.softmax(logits, dim=1)
    n, c = logits.shape
    cls = torch.arange(c, device=logits.device).expand(n, c) if classes is None else classes
    total = logits.new_zeros(n)
    for j in range(cls.shape[1]):
        y = cls[:, j]
        if loss is None or _closed_form(loss):
            ce = F.cross_entropy(logits, y, reduction="none")
        else:
            ce = loss(logits, y)
        total = total + p.gather(1, y[:, None])[:, 0] * ce
    return total


class _GradNormStrategy(ScoreStrategy):
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
    def _batch_scores(self, model: nn.Module, x: Tensor, amp: bool) -> Tensor:
        """Scores ``(b,)`` of one batch ``(b, C, ...)`` already on the device."""

    def _score_indices(
        self, model: nn.Module, pool: PoolLike, indices: Tensor, generator: torch.Generator
    ) -> Tensor:
        device = self._prepare(model)
        select_params(model, self.params)  # fail early on frozen models
        amp = self._use_amp(device)
        return self._stream(
            model, lambda x: self._batch_scores(model, x, amp), pool, indices, device
        )


@register("entropy-gradnorm")
class EntropyGradNorm(_GradNormStrategy):
    """Score ``‖∇θ H(p(·|x))‖``: the gradient norm of the predictive entropy.

    The entropy needs no label, so no label loss either: the ``loss`` option (the task's
    per-sample loss) is accepted like every context option and not used.

    Parameters
    ----------
    reduction
        ``"l2"`` (global norm, default) or ``"layerwise-sum"`` (sum of per-tensor norms,
        as in the released code).
    params
        Parameter names/tensors to differentiate (default: all trainable).
    **kwargs
        :class:`~cryoal.acquisition.base.Strategy` options (device, batch_size, amp, ...).
    """

    def _batch_scores(self, model: nn.Module, x: Tensor, amp: bool) -> Tensor:
        return _norms(model, x, entropy, self.reduction, self.params, amp)


@register("expected-gradnorm")
class ExpectedGradNorm(_GradNormStrategy):
    """Expected gradient length Σ_y p(y|x)·‖∇θ CE(f(x), y)‖ (variant="reference": released code, = entropy-gradnorm).

    Three readings of "expected-gradnorm" exist; this class implements the first two:

    - ``variant="paper"`` (default): ``Σ_y p(y|x)·‖∇θ CE(f(x), y)‖``, ``p`` a constant
      weight — the norm of the update that labelling ``x`` would cause, expected over labels
      drawn from the model (expected gradient length, Settles & Craven 2008).

    ``CE`` is the task's per-sample loss when the ``loss`` option is given (the round
    engine passes :meth:`cryoal.tasks.Task.per_sample_loss`), cross-entropy otherwise.
    - ``variant="reference"``: ``‖∇θ Σ_y p(y|x)·CE(f(x), y)‖`` with ``p`` differentiated,
      what the released code computes; the sum is ``H(p)``, so it equals
      :class:`EntropyGradNorm` (tested).
    - ``‖∇θ Σ_y sg[p(y|x)]·CE(f(x), y)‖`` (the "expected empirical loss" with ``p``
      detached) is not offered: its gradient is ``−Σ_y ∇p_y = −∇1 = 0`` for every input
      (tested), so it cannot rank anything.

    Parameters
    ----------
    variant
        ``"paper"`` (default): ``Σ_y p(y|x)·‖∇θ CE(f(x), y)‖``, ``p`` detached; exact over
        all classes (or the ``top_k`` most probable). ``"reference"``: the released
        code, ``‖∇θ Σ_y p(y|x)·CE(f(x), y)‖`` with ``p`` not detached (= entropy-gradnorm).
    top_k
        Sum over the ``k`` most probable classes of each sample only (a lower bound of the
        full sum, not renormalised); bounds the cost to ``k`` backward passes per batch.
    reduction, params, **kwargs
        As for :class:`EntropyGradNorm`.
    """

    def __init__(self, *, variant: str = "paper", top_k: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if variant not in ("paper", "reference"):
            raise ConfigError(
                f"unknown expected-gradnorm variant {variant!r}: use paper or reference"
            )
        if top_k is not None and (isinstance(top_k, bool) or top_k <= 0):
            raise ConfigError(f"top_k must be a positive integer or None, got {top_k!r}")
        self.variant = variant
        self.top_k = top_k

    def _batch_scores(self, model: nn.Module, x: Tensor, amp: bool) -> Tensor:
        if self.variant == "reference":
            top_k = self.top_k

            label_loss = self.loss

            def loss(z: Tensor) -> Tensor:
                if top_k is None:
                    return expected_ce(z, loss=label_loss)
                order = torch.sort(z.detach(), dim=1, descending=True, stable=True).indices
                return expected_ce(z, order[:, :top_k], loss=label_loss)

            return _norms(model, x, loss, self.reduction, self.params, amp)
        norms, classes, probs = per_sample_class_grad_norms(
            model,
            x,
            top_k=self.top_k,
            reduction=self.reduction,
            params=self.params,
            amp=amp,
            loss=self.loss,
        )
        return (probs.gather(1, classes).to(norms.dtype) * norms).sum(1)


def _norms(
    model: nn.Module,
    x: Tensor,
    loss: Callable[[Tensor], Tensor],
    reduction: str,
    params: list[str | Tensor] | None,
    amp: bool,
) -> Tensor:
    if not amp:
        return per_sample_grad_norms(model, x, loss, reduction=reduction, params=params)
    chosen = select_params(model, params)
    sq, _ = grad_sq_norms(model, x, lambda z: [(loss(z.float()).sum(), None)], chosen, amp=True)
    return reduce_norms(sq[0], reduction)


def _features_and_head(model: nn.Module, name: str) -> tuple[Callable[[Tensor], Tensor], nn.Linear]:
    features = getattr(model, "features", None)
    head = getattr(model, "head", None)
    if not callable(features) or not isinstance(head, nn.Linear):
        raise ConfigError(
            f"{name} needs a model with features(x) and a linear head (cryoal.models.create "
            f"builds them); {type(model).__name__} has none"
        )
    return features, head


def last_layer_scores(
    h: Tensor, logits: Tensor, *, bias: bool, target: str, loss: PerSampleLoss | None = None
) -> Tensor:
    """Closed-form gradient norms of the loss with respect to the linear head ``(W, b)``.

    For ``z = W h + b`` and any loss ``ℓ(z)``: ``∇W ℓ = (∂ℓ/∂z) hᵀ`` and ``∇b ℓ = ∂ℓ/∂z``,
    so ``‖∇_{W,b} ℓ‖ = ‖∂ℓ/∂z‖·sqrt(‖h‖² + 1)`` (``‖h‖`` without bias).

    Parameters
    ----------
    h
        ``(B, F)`` penultimate embeddings.
    logits
        ``(B, C)`` head outputs.
    bias
        Whether the head has a (trainable) bias.
    target
        ``"expected"``: ``Σ_y p_y ‖p − e_y‖·s``; ``"entropy"``: ``‖∇_z H‖·s`` with
        ``∂H/∂z_k = −p_k (log p_k + H)``.
    loss
        ``target="expected"`` only: per-sample label loss ``(logits, target) -> (B,)``
        whose logit gradient ``∂ℓ(z, y)/∂z`` replaces ``p − e_y`` (``None``: cross-entropy).

    Returns
    -------
    Tensor
        ``(B,)`` scores.
    """
    p = torch.softmax(logits, dim=1)
    scale = (h.pow(2).sum(1) + (1.0 if bias else 0.0)).sqrt()
    if target == "expected" and not _closed_form(loss):
        c = logits.shape[1]
        classes = torch.arange(c, device=logits.device).expand(logits.shape[0], c)
        cots = loss_cotangents(logits, classes, loss)  # (C, B, C)
        scores: Tensor = (p * cots.norm(dim=2).T.to(p.dtype)).sum(1) * scale
        return scores
    if target == "expected":
        # ‖p − e_y‖² = ‖p‖² − 2 p_y + 1
        dist = (p.pow(2).sum(1, keepdim=True) - 2 * p + 1).clamp_min(0).sqrt()
        return (p * dist).sum(1) * scale
    logp = torch.log_softmax(logits, dim=1)
    ent = -(p * logp).sum(1, keepdim=True)
    norms: Tensor = (p * (logp + ent)).norm(dim=1) * scale
    return norms


@register("last-layer-gradnorm")
class LastLayerGradNorm(ScoreStrategy):
    """Cheap approximation: gradient norms over the linear head only, in closed form.

    One forward pass, no backward: ``‖∇_{W,b} CE(f(x), y)‖ = ‖p − e_y‖·sqrt(‖h‖²+1)``.
    With the ``loss`` option (the task's per-sample loss), ``p − e_y`` is that loss's
    logit gradient (autograd on the logits only); the entropy target ignores it.

    Parameters
    ----------
    target
        ``"expected"`` (default, like expected-gradnorm) or ``"entropy"``.
    **kwargs
        :class:`~cryoal.acquisition.base.Strategy` options.
    """

    def __init__(self, *, target: str = "expected", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if target not in ("expected", "entropy"):
            raise ConfigError(
                f"unknown last-layer-gradnorm target {target!r}: use expected or entropy"
            )
        self.target = target

    def _score_indices(
        self, model: nn.Module, pool: PoolLike, indices: Tensor, generator: torch.Generator
    ) -> Tensor:
        features, head = _features_and_head(model, self.name)
        device = self._prepare(model)
        amp = self._use_amp(device)
        bias = head.bias is not None

        def fn(x: Tensor) -> Tensor:
            with torch.no_grad(), autocast(device, amp):
                h = features(x)
                z = head(h)
            return last_layer_scores(
                h.float(), z.float(), bias=bias, target=self.target, loss=self.loss
            )

        return self._stream(model, fn, pool, indices, device)

"""``auto``: pick the acquisition strategy that suits the labelling regime.

Measured on simulated subtomograms (issue 12): with tens of labels per class every
uncertainty- or gradient-based strategy lost to random picks, because its picks were
redundant and collapsed onto a few classes; gradient norms pay off once the model is
decent. ``auto`` therefore decides per round, from the labels it is given and, when the
caller knows them, the model's held-out accuracy and calibration (:func:`choose`):

==========================================================  ==============================
regime                                                       strategy
==========================================================  ==============================
no labels, or labels per class < ``cold_threshold`` (10)     ``typicality`` (cold start)
labels per class < ``diverse_threshold`` (50)                ``diverse-<scheme>-gradnorm``
validation accuracy < ``accuracy_threshold`` (0.6)           ``diverse-<scheme>-gradnorm``
expected calibration error > ``ece_threshold`` (0.15)        ``diverse-<scheme>-gradnorm``
otherwise                                                    ``<scheme>-gradnorm``
==========================================================  ==============================

Labels per class is ``L / C`` with ``L`` the labelled items and ``C`` the model's number
of classes (``num_classes=`` overrides it, e.g. when the expert knows classes the labels
have not reached yet). In the diverse regime ``auto`` shares each batch equally over the
model's predicted classes (``balance=True``, see :mod:`cryoal.acquisition.diverse`): on
structures it was not tuned on, unbalanced diverse picks left the smallest class at 5.7 %
of the labels and fell behind random picks. ``scheme`` is ``entropy`` (default; it beat expected-gradnorm in
the calibration run) or ``expected``. The returned :class:`Selection` has
``strategy="auto"`` and ``info = {"choice", "reason", "labels", "labels_per_class"}``;
``cryoal select`` writes the choice and reason into the picks file and the project.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from cryoal.acquisition._stream import PoolLike
from cryoal.acquisition.base import CONTEXT_OPTIONS, Selection, Strategy, get, register
from cryoal.errors import ConfigError

__all__ = ["SCORE_CHOICES", "Auto", "choose"]

SCHEMES = ("entropy", "expected")

#: the choices that score items independently (no embedding; sharded under torchrun)
SCORE_CHOICES = ("entropy-gradnorm", "expected-gradnorm")


def choose(
    n_labelled: int,
    num_classes: int | None,
    *,
    val_accuracy: float | None = None,
    ece: float | None = None,
    cold_threshold: float = 10.0,
    diverse_threshold: float = 50.0,
    accuracy_threshold: float = 0.6,
    ece_threshold: float = 0.15,
    scheme: str = "entropy",
) -> tuple[str, str]:
    """The strategy ``auto`` uses in a regime, and why (the table of the module doc).

    Parameters
    ----------
    n_labelled
        Labelled items ``L``.
    num_classes
        Number of classes ``C`` (``None`` or < 1: unknown, treated as no labels per class).
    val_accuracy
        Held-out accuracy of the current model in [0, 1], if measured.
    ece
        Expected calibration error of the current model in [0, 1], if measured.
    cold_threshold, diverse_threshold
        Labels-per-class limits of the cold-start and diverse regimes.
    accuracy_threshold, ece_threshold
        A model below this accuracy, or above this ECE, counts as unreliable.
    scheme
        ``"entropy"`` or ``"expected"`` gradient norms.

    Returns
    -------
    name, reason
        Registered strategy name and a one-sentence reason.
    """
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown gradnorm scheme {scheme!r}: use entropy or expected")
    if n_labelled < 0:
        raise ConfigError(f"n_labelled must be >= 0, got {n_labelled}")
    plain = f"{scheme}-gradnorm"
    diverse = f"diverse-{scheme}-gradnorm"
    if n_labelled == 0 or not num_classes or num_classes < 1:
        return (
            "typicality",
            "no labels yet: cold start with the most typical volume of each cluster",
        )
    per_class = n_labelled / num_classes
    regime = f"{n_labelled} labels over {num_classes} classes ({per_class:.1f} per class)"
    if per_class < cold_threshold:
        return (
            "typicality",
            f"{regime} < {cold_threshold:g} per class: too few for a reliable model, "
            "cover the pool with typical volumes",
        )
    if per_class < diverse_threshold:
        return (
            diverse,
            f"{regime} < {diverse_threshold:g} per class: gradient norms with diversity "
            "against redundant, class-collapsed picks",
        )
    if val_accuracy is not None and val_accuracy < accuracy_threshold:
        return (
            diverse,
            f"{regime}, but held-out accuracy {val_accuracy:.2f} < {accuracy_threshold:g}: "
            "gradient norms with diversity",
        )
    if ece is not None and ece > ece_threshold:
        return (
            diverse,
            f"{regime}, but the model is poorly calibrated (ECE {ece:.2f} > "
            f"{ece_threshold:g}): gradient norms with diversity",
        )
    return plain, f"{regime} ≥ {diverse_threshold:g} per class and a reliable model: plain {plain}"


@register("auto")
class Auto(Strategy):
    """Choose typicality, diverse gradnorm or plain gradnorm by regime (module doc).

    Parameters
    ----------
    num_classes
        Number of classes; default: the model's ``head.out_features``.
    val_accuracy, ece
        Held-out accuracy and expected calibration error of the model, when known.
    cold_threshold, diverse_threshold, accuracy_threshold, ece_threshold, scheme
        See :func:`choose`.
    encoder
        Pretrained encoder (module or checkpoint path) for the typicality and diversity
        embeddings; default: the model's ``features``.
    embeddings
        Precomputed ``(N, F)`` pool embedding (pool order) for those strategies instead
        of embedding the pool (``cryoal select`` caches the encoder's between rounds).
    factor
        Candidate factor of the diverse strategies.
    balance
        Balance the diverse regime's picks over predicted classes (default ``True``).
    predicted
        ``(N,)`` pool-order predicted classes for ``balance`` (default: a forward pass).
    **kwargs
        :class:`~cryoal.acquisition.base.Strategy` options, passed to the chosen strategy.
    """

    def __init__(
        self,
        *,
        num_classes: int | None = None,
        val_accuracy: float | None = None,
        ece: float | None = None,
        cold_threshold: float = 10.0,
        diverse_threshold: float = 50.0,
        accuracy_threshold: float = 0.6,
        ece_threshold: float = 0.15,
        scheme: str = "entropy",
        encoder: Any = None,
        embeddings: Tensor | None = None,
        factor: float = 4.0,
        balance: bool = True,
        predicted: Tensor | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if scheme not in SCHEMES:
            raise ConfigError(f"unknown gradnorm scheme {scheme!r}: use entropy or expected")
        if not 0 <= cold_threshold <= diverse_threshold:
            raise ConfigError(
                "thresholds must satisfy 0 <= cold_threshold <= diverse_threshold, got "
                f"{cold_threshold} and {diverse_threshold}"
            )
        self.num_classes = num_classes
        self.val_accuracy = val_accuracy
        self.ece = ece
        self.thresholds = {
            "cold_threshold": float(cold_threshold),
            "diverse_threshold": float(diverse_threshold),
            "accuracy_threshold": float(accuracy_threshold),
            "ece_threshold": float(ece_threshold),
        }
        self.scheme = scheme
        self.encoder = encoder
        self.embeddings = embeddings
        self.factor = factor
        self.balance = bool(balance)
        self.predicted = predicted
        self._kwargs = kwargs

    def classes_of(self, model: nn.Module) -> int | None:
        """``num_classes`` if given, else the model head's output width (``None``: no head)."""
        if self.num_classes is not None:
            return int(self.num_classes)
        head = getattr(model, "head", None)
        return int(head.out_features) if isinstance(head, nn.Linear) else None

    def decide(self, model: nn.Module, n_labelled: int) -> tuple[str, str]:
        """``(strategy name, reason)`` for ``n_labelled`` labels and this model."""
        return choose(
            n_labelled,
            self.classes_of(model),
            val_accuracy=self.val_accuracy,
            ece=self.ece,
            scheme=self.scheme,
            **self.thresholds,
        )

    def choice(self, model: nn.Module, n_labelled: int) -> tuple[Strategy, dict[str, Any]]:
        """The strategy this Auto runs for ``n_labelled`` labels, and the info it records.

        Parameters
        ----------
        model
            The round's classifier (the number of classes comes from its head unless
            ``num_classes`` was given).
        n_labelled
            Number of labelled pool items ``L``.

        Returns
        -------
        (Strategy, dict)
            The chosen strategy, built with this Auto's options (the
            :class:`~cryoal.acquisition.base.Strategy` options, the loss, and the
            encoder / embeddings / diversity options where the choice takes them), and
            ``{"choice", "reason", "labels", "labels_per_class"}``.
        """
        n_lab = int(n_labelled)
        name, reason = self.decide(model, n_lab)
        extra: dict[str, Any] = {}
        if name not in SCORE_CHOICES:
            extra["encoder"] = self.encoder
            extra["embeddings"] = self.embeddings
        if name.startswith("diverse-"):
            extra["factor"] = self.factor
            extra["balance"] = self.balance
            extra["predicted"] = self.predicted
        options = {**self._kwargs, **extra}
        for key in CONTEXT_OPTIONS:
            options.setdefault(key, getattr(self, key))
        if options.get("device") is None:
            options.pop("device")
        c = self.classes_of(model)
        info: dict[str, Any] = {
            "choice": name,
            "reason": reason,
            "labels": n_lab,
            "labels_per_class": None if not c or n_lab == 0 else n_lab / c,
        }
        return get(name, **options), info

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
        inner, info = self.choice(model, int(lab.numel()))
        sel = inner.select(model, pool, budget, labelled=lab, generator=generator)
        if "quotas" in sel.info:  # balanced diverse picks: {predicted class index: picks}
            info["quotas"] = sel.info["quotas"]
        return Selection(indices=sel.indices, scores=sel.scores, strategy=self.name, info=info)

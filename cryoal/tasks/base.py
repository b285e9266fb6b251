"""The task interface: what a pipeline defines on top of the shared engine.

A task is a small object, one per pipeline, that says

- how its pool is opened from paths (:meth:`Task.open_pool`) and turned into a training
  dataset of normalised ``(x, y)`` (:meth:`Task.dataset`);
- its default model (registry name) and the model input shape for a pool;
- its per-sample loss ``(logits, target) -> (B,)`` (segmentation: the mean over voxels)
  and its metrics;
- which acquisition strategies apply and how to build one (the one task-aware strategy
  registry);
- the steps of its active-learning round on the one round engine
  (:meth:`Task.round_steps`, run by :meth:`Task.select_round` through
  :func:`cryoal.active.round.run_round`): labelled set, training with its per-sample
  loss, scoring with its strategies, picks table, gallery;
- how picks are drawn in a gallery.

Everything else — model registry, :func:`cryoal.train.fit`, the acquisition engine, the
project, the round engine and the benchmark — is shared. Get a task with
:func:`cryoal.tasks.get`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, Subset

from cryoal import acquisition
from cryoal.acquisition import Strategy, is_cross_entropy
from cryoal.active.project import Project
from cryoal.active.round import RoundResult, RoundSteps, run_round
from cryoal.errors import ConfigError, InvalidLabelsError

__all__ = ["ClassificationTask", "Task"]


class Task(ABC):
    """One pipeline: data, default model, per-sample loss, metrics, strategies, gallery.

    Attributes
    ----------
    name
        Registry name (``"classification3d"``, ``"image2d"``, ``"segmentation"``).
    summary
        One line for listings.
    spatial_dims
        2 for images, 3 for volumes.
    default_model
        Registry name of the model used when none is given.
    model_kind
        What the task's models output (:func:`cryoal.models.available` ``kind``):
        ``"classification"`` (logits `(B, K)`) or ``"segmentation"`` (per voxel).
    default_in_shape
        A typical model input ``(C, *spatial)`` (the real one comes from the pool:
        :meth:`in_shape`).
    pick_view
        How a pick is drawn in a gallery, in words.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    spatial_dims: ClassVar[int] = 3
    default_model: ClassVar[str] = ""
    model_kind: ClassVar[str] = "classification"
    default_in_shape: ClassVar[tuple[int, ...]] = ()
    pick_view: ClassVar[str] = ""

    def __repr__(self) -> str:
        return f"<task {self.name}: {self.summary}>"

    # ------------------------------------------------------------------ data
    @abstractmethod
    def open_pool(self, path: str | os.PathLike[str], **options: Any) -> Any:
        """Open the pool at ``path`` (lazy; options depend on the task)."""

    @abstractmethod
    def dataset(self, pool: Any, indices: Sequence[int] | None = None) -> Dataset[Any]:
        """Training/evaluation dataset of normalised ``(x (C, *spatial), y)`` items."""

    def in_shape(self, pool: Any) -> tuple[int, ...]:
        """Model input ``(C, *spatial)`` for items of ``pool`` (one channel)."""
        return (1, *(int(s) for s in pool.box))

    # ------------------------------------------------------------------ learning
    @abstractmethod
    def per_sample_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of each sample, `(B,)`, from model outputs and targets of one batch."""

    @abstractmethod
    def metrics(
        self, probs: Tensor, target: Tensor, class_names: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Quality of predictions ``probs`` (softmax over dim 1) against ``target``."""

    def strategies(self) -> list[str]:
        """Names of the acquisition strategies registered for this task, sorted.

        The one strategy registry (:func:`cryoal.acquisition.available` with
        ``task=self.name``): a strategy names the tasks it applies to when it registers.
        """
        return acquisition.available(task=self.name)

    def strategy(self, name: str, **options: Any) -> Strategy:
        """Build strategy ``name`` registered for this task (options: device, batch_size,
        transform, seed, ...): :func:`cryoal.acquisition.get` with ``task=self.name``.

        ``loss`` defaults to :meth:`per_sample_loss`, so the gradient-norm strategies take
        gradients of the loss the model is trained with (a task overriding
        :meth:`per_sample_loss` scores with its own loss).

        Raises
        ------
        ConfigError
            ``name`` is not registered for this task, or bad options.
        """
        options.setdefault("loss", self.per_sample_loss)
        return acquisition.get(name, task=self.name, **options)

    # ------------------------------------------------------------------ rounds
    @abstractmethod
    def select_config(self, **options: Any) -> Any:
        """The options object of one round of this task (``strategy``, ``budget``, ...).

        Raises
        ------
        ConfigError
            Bad or unknown options.
        """

    @abstractmethod
    def round_steps(self, config: Any) -> RoundSteps:
        """The steps of one round with ``config`` (:class:`cryoal.active.round.RoundSteps`)."""

    def select_round(
        self,
        project: Project,
        pool: Any,
        config: Any,
        *,
        arguments: Mapping[str, Any] | None = None,
        out: str | os.PathLike[str] | None = None,
        new_round: bool = False,
        restart: bool = False,
    ) -> RoundResult:
        """Run, resume or show again one round of this task (the one round engine).

        Parameters
        ----------
        project
            An open project; the caller should hold :meth:`Project.lock`.
        pool
            This task's pool (:meth:`open_pool`).
        config
            :meth:`select_config`'s options object.
        arguments, out, new_round, restart
            As in :func:`cryoal.active.round.run_round`.
        """
        steps = self.round_steps(config)
        return run_round(
            project,
            pool,
            steps,
            arguments=arguments,
            out=out,
            new_round=new_round,
            restart=restart,
        )

    # ------------------------------------------------------------------ showing picks
    @abstractmethod
    def write_gallery(
        self,
        path: str | os.PathLike[str],
        items: Sequence[Tensor],
        captions: Sequence[str],
        *,
        title: str | None = None,
        predictions: Sequence[Tensor] | None = None,
    ) -> Path:
        """Draw picked items (raw tensors from the pool) with captions into a PNG/SVG.

        ``predictions`` (per item, optional) are what the model predicts for it: a label
        map for segmentation; ignored by the classification tasks (the caption says it).
        """


def as_tensor(x: Any) -> Tensor:
    """First element of a pool item (tensor or ``(tensor, ...)``) as a tensor."""
    item = x[0] if isinstance(x, (tuple, list)) else x
    return item if isinstance(item, Tensor) else torch.as_tensor(item)


def _normalize(x: Tensor) -> Tensor:
    from cryoal.transforms import normalize

    return normalize(x)


class ClassificationTask(Task):
    """Shared parts of the two classification tasks."""

    def dataset(self, pool: Any, indices: Sequence[int] | None = None) -> Dataset[Any]:
        """``(normalised x (1, *box), class index)`` over the labelled pool (``-1`` if not).

        Raises
        ------
        InvalidLabelsError
            ``indices`` contains an unlabelled item.
        """
        ds: Dataset[Any] = pool.dataset(transform=_normalize)
        if indices is None:
            return ds
        idx = [int(i) for i in indices]
        missing = [pool.ids[i] for i in idx if pool.labels[i] is None]
        if missing:
            raise InvalidLabelsError(
                f"{len(missing)} requested items have no label (e.g. {missing[0]}); "
                "train on labelled items only"
            )
        return Subset(ds, idx)

    def select_config(self, **options: Any) -> Any:
        """:class:`cryoal.active.loop.SelectConfig` (default model: :attr:`default_model`)."""
        from cryoal.active.loop import SelectConfig

        options.setdefault("arch", self.default_model)
        try:
            return SelectConfig(**options)
        except TypeError as exc:
            raise ConfigError(f"bad round options for task {self.name}: {exc}") from exc

    def round_steps(self, config: Any) -> RoundSteps:
        """:class:`cryoal.active.loop.ClassificationRound` with this task's per-sample loss,
        strategies and gallery."""
        from cryoal.active.loop import ClassificationRound

        return ClassificationRound(
            config, loss=self.per_sample_loss, task=self.name, gallery=self._pick_gallery()
        )

    def _pick_gallery(self) -> Any:
        """A gallery writer for :class:`ClassificationRound` (``None``: volume slices)."""
        return None

    @is_cross_entropy
    def per_sample_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy per sample: logits `(B, K)`, target `(B,)` class indices → `(B,)`.

        Declared cross-entropy (:func:`cryoal.acquisition.is_cross_entropy`):
        the gradient-norm strategies use its closed-form logit gradient ``p − e_y``. A
        task overriding this method gets autograd through its own loss instead.
        """
        if logits.dim() != 2:
            raise ConfigError(f"{self.name}: logits must be (B, K), got {tuple(logits.shape)}")
        return F.cross_entropy(logits, target.long(), reduction="none")

    def metrics(
        self, probs: Tensor, target: Tensor, class_names: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Accuracy, balanced accuracy, macro F1, per-class recall, confusion matrix.

        ``probs`` `(N, K)`, ``target`` `(N,)`; items with target -1 are skipped.
        """
        from cryoal.train import classification_metrics

        keep = target >= 0
        out = classification_metrics(
            target[keep].long(), probs[keep].argmax(1), int(probs.shape[1])
        )
        if class_names is not None:
            out["class_names"] = [str(c) for c in class_names]
        return out


def _no_options(task: str, options: dict[str, Any]) -> None:
    given = sorted(k for k, v in options.items() if v is not None)
    if given:
        raise ConfigError(f"task {task} does not take {', '.join(given)}")

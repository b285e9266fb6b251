"""The shape every cryoal classifier has: ``features`` → ``head``."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["ArchSpec", "Classifier"]


@dataclass(frozen=True)
class ArchSpec:
    """How a model was built, enough to build it again from a checkpoint.

    Attributes
    ----------
    name
        Registry name (``"dsrf3d"``, ``"monai-resnet10"``, ...).
    num_classes
        Number of output logits.
    in_shape
        ``(C, *spatial)`` the model was built for, e.g. ``(1, 32, 32, 32)`` (voxels).
    kwargs
        Extra keyword arguments passed to the builder (plain JSON-like values).
    """

    name: str
    num_classes: int
    in_shape: tuple[int, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def spatial_dims(self) -> int:
        """2 for image models, 3 for volume models."""
        return len(self.in_shape) - 1


class Classifier(nn.Module, abc.ABC):
    """Base class: ``forward(x) == head(features(x))``, logits without softmax.

    Subclasses set ``self.head`` (an :class:`torch.nn.Linear`) and implement
    :meth:`features`. Dropout, where an architecture has it, is the last step of
    :meth:`features`, so the equality holds in train mode as well and MC-dropout
    (BALD) only needs to switch the dropout modules to train mode.
    """

    head: nn.Linear
    #: set by :func:`cryoal.models.create`; read by :func:`cryoal.models.save_checkpoint`
    arch_spec: ArchSpec | None = None

    @abc.abstractmethod
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate embedding.

        Parameters
        ----------
        x
            `(B, C, *spatial)` input batch.

        Returns
        -------
        torch.Tensor
            `(B, F)` with ``F == self.head.in_features``.
        """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits `(B, num_classes)` for an input batch `(B, C, *spatial)`."""
        return self.head(self.features(x))

    @property
    def num_features(self) -> int:
        """Width ``F`` of the embedding returned by :meth:`features`."""
        return int(self.head.in_features)

    @property
    def num_classes(self) -> int:
        """Number of logits."""
        return int(self.head.out_features)

"""MONAI networks behind the cryoal classifier interface (``features`` → ``head``).

MONAI's DenseNet and ResNet end in a linear classifier; the wrapper builds the network
without it (ResNet ``feed_forward=False``; DenseNet's ``class_layers.out`` replaced by an
identity), so the backbone returns the pooled embedding, then adds dropout and a fresh
:class:`torch.nn.Linear` head.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from cryoal.errors import ConfigError, MissingDependencyError
from cryoal.models._base import Classifier

__all__ = ["MonaiClassifier", "monai_builders"]


def _monai_nets():  # type: ignore[no-untyped-def]
    try:
        import monai.networks.nets as nets
    except ImportError as exc:  # pragma: no cover - monai is a core dependency
        raise MissingDependencyError(
            "MONAI networks need the 'monai' package: pip install monai"
        ) from exc
    return nets


def _densenet(variant: str) -> Callable[[int, int], nn.Module]:
    def build(spatial_dims: int, in_channels: int) -> nn.Module:
        net: nn.Module = getattr(_monai_nets(), variant)(
            spatial_dims=spatial_dims, in_channels=in_channels, out_channels=1
        )
        net.class_layers.out = nn.Identity()  # type: ignore[union-attr]
        return net

    return build


def _resnet(variant: str) -> Callable[[int, int], nn.Module]:
    def build(spatial_dims: int, in_channels: int) -> nn.Module:
        net: nn.Module = getattr(_monai_nets(), variant)(
            spatial_dims=spatial_dims, n_input_channels=in_channels, feed_forward=False
        )
        return net

    return build


#: registry suffix -> (builder, smallest box side it accepts, in voxels/pixels)
monai_builders: dict[str, tuple[Callable[[int, int], nn.Module], int]] = {
    "densenet121": (_densenet("DenseNet121"), 32),
    "resnet10": (_resnet("resnet10"), 16),
    "resnet18": (_resnet("resnet18"), 16),
    "resnet34": (_resnet("resnet34"), 16),
}


class MonaiClassifier(Classifier):
    """A MONAI backbone, dropout, and a linear head.

    Parameters
    ----------
    variant
        Key of :data:`monai_builders` (``"densenet121"``, ``"resnet10"``, ...).
    num_classes
        Number of classes.
    in_shape
        `(C, D, H, W)` (3D) or `(C, H, W)` (2D) in voxels/pixels.
    dropout
        Dropout before the head (0 disables it).
    """

    def __init__(
        self, variant: str, num_classes: int, in_shape: Sequence[int], *, dropout: float = 0.0
    ) -> None:
        super().__init__()
        shape = tuple(int(s) for s in in_shape)
        dims = len(shape) - 1
        if dims not in (2, 3):
            raise ConfigError(
                f"monai-{variant}: in_shape must be (C, H, W) or (C, D, H, W), got {shape}"
            )
        build, min_size = monai_builders[variant]
        if min(shape[1:]) < min_size:
            raise ConfigError(
                f"monai-{variant}: needs boxes of at least {min_size} voxels per side, got "
                f"in_shape {shape}; pad the subtomograms or pick dsrf3d/cb3d"
            )
        self.backbone = build(dims, shape[0])
        self.dropout = nn.Dropout(dropout)
        was_training = self.backbone.training
        self.backbone.eval()
        with torch.no_grad():
            width = int(self.backbone(torch.zeros((1, *shape))).shape[1])
        self.backbone.train(was_training)
        self.head = nn.Linear(width, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, F)` pooled backbone embedding after dropout (F = 1024 DenseNet121, 512 ResNet10/18/34)."""
        return self.dropout(self.backbone(x))

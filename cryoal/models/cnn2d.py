"""Small 2D convolutional classifier for images (micrograph patches, projections).

The 2D image pipeline reuses the registry, the training loop and the acquisition engine;
only the input is `(B, C, H, W)`.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryoal.models.cnn3d import CB3D

__all__ = ["CNN2D"]


class CNN2D(CB3D):
    """Plain 2D conv net: blocks ``conv 3×3 → BatchNorm → ReLU → max-pool 2`` at widths
    ``channels`` (default 32, 64, 128), global average pooling, a 256-unit fully-connected
    layer with ReLU and dropout, linear head. Any image with both sides ≥ 2^len(channels).

    Parameters
    ----------
    num_classes
        Number of classes.
    in_shape
        `(C, H, W)` in pixels, e.g. ``(1, 64, 64)``.
    channels, fc_units, dropout
        As for :class:`cryoal.models.cnn3d.CB3D`.
    """

    def __init__(
        self,
        num_classes: int,
        in_shape: Sequence[int],
        *,
        channels: Sequence[int] = (32, 64, 128),
        fc_units: int = 256,
        dropout: float = 0.3,
    ) -> None:
        super().__init__(
            num_classes, in_shape, channels=channels, fc_units=fc_units, dropout=dropout, dims=2
        )

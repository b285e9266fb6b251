"""3D convolutional classifiers for subtomograms: DSRF3D-v2, a residual net and a small conv net.

All take `(B, C, D, H, W)` float32 volumes (z-y-x order, normalised per volume) and return
logits `(B, num_classes)`. The same classes build 2D variants with ``dims=2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from cryoal.errors import ConfigError
from cryoal.models._base import Classifier
from cryoal.models._layers import ConvBNReLU, ResidualBlock, adaptive_avg_pool, max_pool

__all__ = ["CB3D", "DSRF3D", "RB3D"]


def _check_in_shape(
    name: str, in_shape: Sequence[int], dims: int, min_size: int
) -> tuple[int, ...]:
    shape = tuple(int(s) for s in in_shape)
    if len(shape) != dims + 1:
        raise ConfigError(
            f"{name}: in_shape must be (C, {', '.join('DHW'[3 - dims :])}) with {dims} spatial "
            f"dims, got {shape}"
        )
    if shape[0] < 1 or min(shape[1:]) < min_size:
        raise ConfigError(
            f"{name}: needs at least 1 channel and boxes of at least {min_size} voxels per side, "
            f"got in_shape {shape}; crop or pad the subtomograms, or pick a smaller model"
        )
    return shape


class DSRF3D(Classifier):
    """DSRF3D-v2 subtomogram classifier (Che et al., "Improved deep learning-based
    macromolecules structure classification from electron cryo-tomograms", Machine Vision
    and Applications 29, 2018).

    ``conv 32-32 → pool → conv 64-64 → pool → conv 128-128 → pool`` (3×3×3 kernels,
    BatchNorm, ReLU, 2×2×2 max pooling), then two fully-connected layers of 1024 units with
    ReLU and dropout, then the linear head (softmax is applied by the loss / predictor).
    The flatten size is computed from the box, so any box with every side ≥ 8 voxels works
    (the paper uses 32³–40³).

    Parameters
    ----------
    num_classes
        Number of classes.
    in_shape
        `(C, D, H, W)` input shape in voxels (or `(C, H, W)` with ``dims=2``).
    width
        Channels of the first block (32 in the paper); blocks use ``width·(1, 2, 4)``.
    fc_units
        Width of the two fully-connected layers (1024 in the paper).
    dropout
        Dropout probability after each fully-connected layer (0.5 in the paper).
    """

    def __init__(
        self,
        num_classes: int,
        in_shape: Sequence[int],
        *,
        width: int = 32,
        fc_units: int = 1024,
        dropout: float = 0.5,
        dims: int = 3,
    ) -> None:
        super().__init__()
        shape = _check_in_shape("dsrf3d", in_shape, dims, 8)
        chans = [width, 2 * width, 4 * width]
        layers: list[nn.Module] = []
        c_in = shape[0]
        for c in chans:
            layers += [ConvBNReLU(dims, c_in, c), ConvBNReLU(dims, c, c), max_pool(dims)]
            c_in = c
        self.conv = nn.Sequential(*layers)
        out_spatial = [s // 8 for s in shape[1:]]  # three floor-halvings
        flat = chans[-1] * math.prod(out_spatial)
        self.fc = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(flat, fc_units),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_units, fc_units),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.head = nn.Linear(fc_units, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, fc_units)` embedding after the second fully-connected layer and its dropout."""
        return self.fc(self.conv(x))


class RB3D(Classifier):
    """Small residual network: a conv stem, then three stages of basic residual blocks
    (He et al., "Deep residual learning for image recognition", CVPR 2016) at widths
    ``width·(1, 2, 4)``, the last two downsampling by 2, global average pooling, dropout, head.

    Global pooling makes it independent of the box size (every side ≥ 8 voxels).

    Parameters
    ----------
    num_classes, in_shape
        As for :class:`DSRF3D`.
    width
        Channels of the stem and first stage (default 16, about 0.2 M parameters in 3D).
    blocks
        Residual blocks per stage.
    dropout
        Dropout before the head.
    """

    def __init__(
        self,
        num_classes: int,
        in_shape: Sequence[int],
        *,
        width: int = 16,
        blocks: int = 1,
        dropout: float = 0.2,
        dims: int = 3,
    ) -> None:
        super().__init__()
        shape = _check_in_shape("rb3d", in_shape, dims, 8)
        if blocks < 1:
            raise ConfigError(f"rb3d: blocks must be ≥ 1, got {blocks}")
        layers: list[nn.Module] = [ConvBNReLU(dims, shape[0], width)]
        c_in = width
        for stage, c in enumerate((width, 2 * width, 4 * width)):
            for b in range(blocks):
                stride = 2 if (stage > 0 and b == 0) else 1
                layers.append(ResidualBlock(dims, c_in, c, stride=stride))
                c_in = c
        layers += [adaptive_avg_pool(dims), nn.Flatten(1), nn.Dropout(dropout)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, 4·width)` globally pooled embedding (after dropout)."""
        return self.body(x)


class CB3D(Classifier):
    """Small plain convolutional network (about 100 k parameters in 3D): blocks of
    ``conv 3×3×3 → BatchNorm → ReLU → max-pool 2`` at the given channel widths, global
    average pooling, one fully-connected layer with ReLU and dropout, head.

    Parameters
    ----------
    num_classes, in_shape
        As for :class:`DSRF3D`.
    channels
        Output channels of each conv block (default ``(16, 32, 64)``).
    fc_units
        Width of the fully-connected layer.
    dropout
        Dropout before the head.
    """

    def __init__(
        self,
        num_classes: int,
        in_shape: Sequence[int],
        *,
        channels: Sequence[int] = (16, 32, 64),
        fc_units: int = 256,
        dropout: float = 0.3,
        dims: int = 3,
    ) -> None:
        super().__init__()
        chans = [int(c) for c in channels]
        if not chans:
            raise ConfigError("cb3d: channels must list at least one block width")
        shape = _check_in_shape("cb3d", in_shape, dims, 2 ** len(chans))
        layers: list[nn.Module] = []
        c_in = shape[0]
        for c in chans:
            layers += [ConvBNReLU(dims, c_in, c), max_pool(dims)]
            c_in = c
        layers += [
            adaptive_avg_pool(dims),
            nn.Flatten(1),
            nn.Linear(c_in, fc_units),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        ]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(fc_units, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """`(B, fc_units)` embedding (after dropout)."""
        return self.body(x)

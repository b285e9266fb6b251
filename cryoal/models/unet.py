"""MONAI UNet for 3D (and 2D) semantic segmentation behind the cryoal model interface.

Registered as ``monai-unet`` (3D) and ``monai-unet-2d``; built with the same
``create(name, num_classes, in_shape, **kw)`` as every classifier. Segmentation changes
what ``features`` and ``head`` mean:

- ``features(x)`` returns a **per-voxel** embedding `(B, F, *spatial)` (the UNet's last
  feature map after ReLU and dropout), not a pooled `(B, F)` vector;
- ``head`` is still one :class:`torch.nn.Linear` `(F → K)`, applied to every voxel
  (channels moved last), so ``model(x) == head(features(x).movedim(1, -1)).movedim(-1, 1)``
  gives logits `(B, K, *spatial)`.

Acquisition therefore uses the segmentation strategies of :mod:`cryoal.tasks.segmentation`
(random, mean voxel entropy, entropy-/expected-gradnorm over the mean voxel loss): the
per-sample gradient engine handles the per-voxel head exactly (a ``Linear`` on
`(B, V, F)` inputs sums ``g_v a_vᵀ`` over voxels). Strategies that need a pooled
embedding `(B, F)` (coreset, BADGE, last-layer-gradnorm) do not apply to these models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from cryoal.errors import ConfigError
from cryoal.models._base import Classifier

__all__ = ["MonaiUNet"]


class MonaiUNet(Classifier):
    """MONAI UNet producing per-voxel class logits `(B, K, *spatial)`.

    Parameters
    ----------
    num_classes
        Number of voxel classes ``K`` (background included).
    in_shape
        `(C, D, H, W)` (3D) or `(C, H, W)` (2D) in voxels; every spatial side must be a
        multiple of ``prod(strides)``.
    channels
        Feature widths of the UNet levels (default ``(16, 32, 64)``).
    strides
        Down-sampling factors between levels (``len(channels) - 1`` values, default 2, 2).
    num_res_units
        Residual units per block.
    features
        Width ``F`` of the per-voxel embedding fed to the head.
    dropout
        Dropout on the embedding (``Dropout`` before the head, so MC dropout works).
    """

    def __init__(
        self,
        num_classes: int,
        in_shape: Sequence[int],
        *,
        channels: Sequence[int] = (16, 32, 64),
        strides: Sequence[int] | None = None,
        num_res_units: int = 1,
        features: int = 16,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        from monai.networks.nets import UNet

        shape = tuple(int(s) for s in in_shape)
        dims = len(shape) - 1
        if dims not in (2, 3):
            raise ConfigError(
                f"monai-unet: in_shape must be (C, H, W) or (C, D, H, W), got {shape}"
            )
        chans = tuple(int(c) for c in channels)
        if len(chans) < 2:
            raise ConfigError(f"monai-unet: channels needs at least two levels, got {chans}")
        st = tuple(int(s) for s in (strides if strides is not None else (2,) * (len(chans) - 1)))
        if len(st) != len(chans) - 1:
            raise ConfigError(
                f"monai-unet: {len(chans)} channel levels need {len(chans) - 1} strides, got {st}"
            )
        factor = math.prod(st)
        bad = [s for s in shape[1:] if s % factor]
        if bad:
            raise ConfigError(
                f"monai-unet: every side of in_shape {shape} must be a multiple of {factor} "
                f"(the product of strides {st}); use patches of e.g. {factor * 4} voxels"
            )
        self.backbone = UNet(
            spatial_dims=dims,
            in_channels=shape[0],
            out_channels=int(features),
            channels=chans,
            strides=st,
            num_res_units=int(num_res_units),
            norm="batch",
            act="relu",
        )
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(float(dropout))
        self.head = nn.Linear(int(features), int(num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-voxel embedding `(B, F, *spatial)` of an input `(B, C, *spatial)`."""
        return self.dropout(self.act(self.backbone(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-voxel logits `(B, K, *spatial)` (no softmax)."""
        return self.head(self.features(x).movedim(1, -1)).movedim(-1, 1)

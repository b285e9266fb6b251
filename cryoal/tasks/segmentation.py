"""3D semantic segmentation of tomogram crops, on the shared engine.

Data: :class:`~cryoal.tasks.seg_data.PatchPool` (cubic patches of crops + integer label
maps, ``-1`` = not annotated). Model: ``monai-unet`` from the registry (per-voxel logits
`(B, K, D, H, W)`). Loss per sample: the mean voxel cross-entropy
(:func:`~cryoal.tasks.seg_metrics.voxel_cross_entropy`), which :func:`cryoal.train.fit`
uses for voxel targets. Metrics: Dice per class and mean
(:func:`~cryoal.tasks.seg_metrics.segmentation_metrics`). Acquisition: random, mean voxel
entropy, entropy-gradnorm and expected-gradnorm over the mean voxel loss
(registered for this task in the one strategy registry, :mod:`cryoal.acquisition.segmentation`,
where the expected-gradnorm definition is stated).
Gallery: the central z-slice of each picked patch with the predicted classes overlaid.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.data import Dataset

from cryoal.errors import ConfigError
from cryoal.tasks.base import Task
from cryoal.tasks.seg_data import PatchPool
from cryoal.tasks.seg_metrics import segmentation_metrics, voxel_cross_entropy

__all__ = ["Segmentation"]


def _normalize(x: Tensor) -> Tensor:
    from cryoal.transforms import normalize

    return normalize(x)


class Segmentation(Task):
    """3D semantic segmentation over sub-volume patches of tomogram crops."""

    name = "segmentation"
    summary = "segment tomogram crops voxel-wise (MRC crops + integer MRC label maps)"
    spatial_dims = 3
    default_model = "monai-unet"
    default_in_shape = (1, 16, 16, 16)
    pick_view = "central z-slice of the patch with the predicted classes overlaid"

    def open_pool(
        self,
        path: str | os.PathLike[str],
        *,
        masks: str | os.PathLike[str] | None = None,
        patch: int | None = None,
        stride: int | None = None,
        pattern: str | None = None,
        classes: Sequence[str] | None = None,
        **options: Any,
    ) -> PatchPool:
        """:meth:`PatchPool.from_directories` (crops in ``path``, label maps in ``masks``)."""
        if options:
            raise ConfigError(f"task segmentation does not take {', '.join(sorted(options))}")
        return PatchPool.from_directories(
            path,
            masks,
            patch=patch or self.default_in_shape[1],
            stride=stride,
            pattern=pattern or "*.mrc",
            classes=classes,
        )

    def dataset(self, pool: Any, indices: Sequence[int] | None = None) -> Dataset[Any]:
        """``(normalised patch (1, p, p, p), label map (p, p, p))`` for ``indices``."""
        if not isinstance(pool, PatchPool):
            raise ConfigError(f"segmentation needs a PatchPool, got {type(pool).__name__}")
        return pool.dataset(transform=_normalize, indices=indices)

    def per_sample_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Mean voxel cross-entropy per sample `(B,)` (unannotated voxels skipped)."""
        return voxel_cross_entropy(logits, target)

    def metrics(
        self, probs: Tensor, target: Tensor, class_names: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Dice per class and mean, voxel accuracy (``probs`` `(N, K, *spatial)`)."""
        if probs.dim() < 3:
            raise ConfigError(
                f"segmentation metrics need (N, K, *spatial), got {tuple(probs.shape)}"
            )
        return segmentation_metrics(probs.argmax(1), target, int(probs.shape[1]), class_names)

    def write_gallery(
        self,
        path: str | os.PathLike[str],
        items: Sequence[Tensor],
        captions: Sequence[str],
        *,
        title: str | None = None,
        predictions: Sequence[Tensor] | None = None,
    ) -> Path:
        """Central z-slice of each patch, predicted label map overlaid when given."""
        from cryoal.tasks.image2d import image_gallery_figure
        from cryoal.viz import save_figure

        slices, overlays = [], []
        for i, t in enumerate(items):
            vol = t.reshape(t.shape[-3:])
            mid = vol.shape[0] // 2
            slices.append(vol[mid])
            pred = None if predictions is None else predictions[i]
            overlays.append(None if pred is None else pred.reshape(vol.shape)[mid].numpy())
        fig = image_gallery_figure(slices, captions, title=title, overlays=overlays)
        return save_figure(fig, path)

"""Subtomogram classification, the main path, behind the task interface.

The pool is :class:`cryoal.io.VolumePool`, the loss the per-sample cross-entropy, the
metrics :func:`cryoal.train.classification_metrics`, every registered acquisition
strategy applies, picks are drawn by :func:`cryoal.viz.write_gallery`. Nothing of the 3D
code path is copied: this only points at it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from cryoal.tasks.base import ClassificationTask, _no_options

__all__ = ["Classification3D"]


class Classification3D(ClassificationTask):
    """Subtomogram classification, the main path (``cryoal select --volumes``)."""

    name = "classification3d"
    summary = "classify 3D subtomograms (MRC/MRCS/HDF5 volumes, labels CSV/STAR)"
    spatial_dims = 3
    #: ``cryoal train``'s default and ``cryoal select``'s (:data:`cryoal.active.defaults.DEFAULT_ARCH`):
    #: the small CNN trains as accurately as ``dsrf3d`` on small labelled sets at ~1/7 of
    #: the CPU time (docs/benchmarks.md, "Training")
    default_model = "cb3d"
    default_in_shape = (1, 32, 32, 32)
    pick_view = "three central slices and a z-projection per subtomogram"

    def open_pool(
        self, path: str | os.PathLike[str], *, pattern: str | None = None, **options: Any
    ) -> Any:
        """:meth:`cryoal.io.VolumePool.from_path` (folder, stack, HDF5 or one file)."""
        from cryoal.io import VolumePool

        _no_options(self.name, options)
        return VolumePool.from_path(path, pattern or "*.mrc")

    def write_gallery(
        self,
        path: str | os.PathLike[str],
        items: Sequence[Tensor],
        captions: Sequence[str],
        *,
        title: str | None = None,
        predictions: Sequence[Tensor] | None = None,
    ) -> Path:
        """:func:`cryoal.viz.write_gallery` (slices + projection per volume)."""
        from cryoal.viz import write_gallery

        vols = [t.reshape(t.shape[-3:]).numpy() for t in items]
        return write_gallery(path, vols, list(captions), title=title)

"""Pack a folder (or a CSV/STAR list) of MRC volumes into one chunked HDF5 pool.

Volumes stream from disk to the HDF5 file one at a time (optionally read by DataLoader
worker processes), so memory stays bounded by a few volumes plus the compact
:class:`~cryoal.io.index.PoolIndex`. The write is atomic (:func:`write_hdf5_pool`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from cryoal.errors import CryoalError, InvalidLabelsError
from cryoal.io.hdf5 import write_hdf5_pool
from cryoal.io.index import PoolIndex
from cryoal.io.labels import read_labels

__all__ = ["PackReport", "pack_pool"]


@dataclasses.dataclass(frozen=True)
class PackReport:
    """What :func:`pack_pool` wrote.

    Attributes
    ----------
    n
        Volumes written.
    box
        ``(D, H, W)`` voxels.
    voxel_size
        Å.
    n_labelled
        Volumes stored with a label.
    bytes
        Size of the HDF5 file.
    """

    n: int
    box: tuple[int, ...]
    voxel_size: float
    n_labelled: int
    bytes: int


def _first(item: torch.Tensor) -> np.ndarray:
    first: np.ndarray = item.numpy()[0]
    return first


def _volumes(index: PoolIndex, workers: int, progress: bool) -> Iterator[np.ndarray]:
    """Items in index order, ``(D, H, W)`` float32, read by ``workers`` processes."""
    loader: DataLoader[torch.Tensor] = DataLoader(
        index,
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        prefetch_factor=4 if workers else None,
    )
    with tqdm(total=len(index), desc="pack", unit="vol", disable=None if progress else True) as bar:
        try:
            for item in loader:
                yield _first(item)
                bar.update(1)
        except CryoalError as exc:
            raise type(exc)(_worker_message(str(exc))) from None


def _worker_message(message: str) -> str:
    """The original one-line message of an error re-raised from a DataLoader worker."""
    if "Original Traceback" not in message:
        return message
    last = message.strip().splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last


def pack_pool(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    pattern: str | Sequence[str] = "*.mrc",
    labels: str | os.PathLike[str] | None = None,
    workers: int = 0,
    progress: bool = True,
) -> PackReport:
    """Write every volume of ``source`` into the HDF5 pool ``out``, keeping ids and labels.

    Parameters
    ----------
    source
        A folder of MRC files (ids: relative paths, ``stack.mrcs#i`` for stack items) or a
        ``.csv``/``.star`` list (:meth:`PoolIndex.from_table`; its labels are kept).
    out
        Target ``.h5``/``.hdf5`` (replaced atomically when the pack succeeds).
    pattern
        File pattern(s) inside a folder.
    labels
        A labels table (``id,label``) joined on ids; its labels win over the list's.
    workers
        DataLoader processes reading the MRC files.
    progress
        Show a progress bar.

    Returns
    -------
    PackReport

    Raises
    ------
    InvalidVolumeError
        A bad file, or a volume whose box differs from the first one (named).
    InvalidLabelsError
        ``labels`` names ids that are not in the pool (the first five are listed).
    EmptyPoolError
        Nothing to pack.
    """
    src = Path(source)
    index = PoolIndex.from_directory(src, pattern) if src.is_dir() else PoolIndex.from_table(src)
    stored: list[str | None] = index.labels
    if labels is not None:
        table = read_labels(labels)
        unknown: list[str] = []
        for vid, lab in zip(table["id"], table["label"], strict=True):
            try:
                stored[index.index_of(str(vid))] = str(lab)
            except InvalidLabelsError:
                unknown.append(str(vid))
        if unknown:
            raise InvalidLabelsError(
                f"{labels}: {len(unknown)} id(s) are not in {src}, e.g. "
                f"{', '.join(repr(u) for u in unknown[:5])}; ids look like {index.ids[0]!r}"
            )
    box, voxel_size = index.box, index.voxel_size
    has_labels = any(lab is not None for lab in stored)
    n = write_hdf5_pool(
        out,
        _volumes(index, workers, progress),
        ids=index.ids,
        labels=stored if has_labels else None,
        voxel_size=voxel_size,
    )
    return PackReport(
        n=n,
        box=tuple(box),
        voxel_size=voxel_size,
        n_labelled=sum(lab is not None for lab in stored),
        bytes=os.stat(out).st_size,
    )

"""The :class:`Pool` protocol: what every pool of volumes offers to the rest of cryoal.

A pool is an ordered, lazily read collection of same-box volumes with stable ids. The
round loop (:mod:`cryoal.active.loop`), training, scoring, galleries and project
registration need only what this protocol names; :class:`~cryoal.io.VolumePool`,
:class:`~cryoal.io.index.PoolIndex`, :class:`~cryoal.io.tomopool.TomogramPool`,
:class:`~cryoal.io.images.ImagePool` and :class:`~cryoal.tasks.seg_data.PatchPool` all
satisfy it (``isinstance(pool, Pool)`` is checked at run time;
``tests/io/test_base.py`` checks every member of each).

:func:`entry_checksum` is the one checksum of a pool item read from a file (every
file-backed pool's :meth:`Pool.checksum`); projects record it per item.

:meth:`Pool.save` / :meth:`Pool.load` persist a pool (:mod:`cryoal.io.persist`: one JSON
manifest with the sources relative to it, ids, box, voxel size and per-item checksums;
:func:`cryoal.io.load_pool` dispatches on its kind).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from cryoal.errors import InvalidVolumeError

__all__ = ["Pool", "array_checksum", "entry_checksum"]


def entry_checksum(path: str | os.PathLike[str]) -> str:
    """SHA-1 of a file's first 1024 bytes (the MRC header) and its size, hex.

    The checksum a project records per pool item read from a file (items of one stack
    or one tomogram crop share it): cheap for a million files, and it changes when a
    file is replaced. Projects made since the first release hold it, so it must not
    change.

    Parameters
    ----------
    path
        The file holding the item.

    Returns
    -------
    str
        40 hex digits.

    Raises
    ------
    InvalidVolumeError
        The file cannot be read (the message names it).
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(1024)
        size = p.stat().st_size
    except OSError as exc:
        raise InvalidVolumeError(
            f"{p}: cannot read ({exc.strerror}); restore the file or remove it from the pool"
        ) from exc
    return hashlib.sha1(head + str(size).encode()).hexdigest()


def array_checksum(array: np.ndarray) -> str:
    """SHA-1 hex of an in-memory item: its dtype, shape and bytes (C order).

    The checksum of items of pools built from arrays (no file to read a header from).
    """
    a = np.ascontiguousarray(array)
    h = hashlib.sha1(f"{a.dtype.str}|{a.shape}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


@runtime_checkable
class Pool(Protocol):
    """An ordered collection of volumes read on demand."""

    @property
    def ids(self) -> Sequence[str]:
        """One stable, unique id per item, in pool order (``run1/a.mrc``,
        ``stack.mrcs#4``, ``TS_01:000123``)."""
        ...

    def __len__(self) -> int:
        """Number of items."""
        ...

    @property
    def box(self) -> tuple[int, ...]:
        """Shape of every item in voxels: ``(D, H, W)`` (``(H, W)`` for image pools)."""
        ...

    @property
    def voxel_size(self) -> float:
        """Voxel size in Å."""
        ...

    def read(self, index: int) -> np.ndarray:
        """Item ``index`` as a float32 array of shape :attr:`box` (raw values)."""
        ...

    def checksum(self, index: int) -> str:
        """A hex digest of what item ``index`` is read from; it changes when that changes.

        Projects record it per item at registration and refuse to resume on a pool whose
        items changed. File-backed pools return :func:`entry_checksum` of the item's file.
        """
        ...

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write what the pool is read from to ``path`` atomically; returns ``path``.

        One JSON manifest format for every file-backed pool (:mod:`cryoal.io.persist`;
        :class:`~cryoal.io.index.PoolIndex` keeps its ``.npz``). In-memory pools raise
        :class:`~cryoal.errors.ConfigError`.
        """
        ...

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Pool:
        """The pool saved at ``path``, with the same ids, box, voxel size and checksums.

        Raises :class:`~cryoal.errors.PoolManifestError` on a corrupt, truncated or
        unknown-version file and :class:`~cryoal.errors.PoolChangedError` naming the item
        whose file vanished or changed. :func:`cryoal.io.load_pool` loads any kind.
        """
        ...

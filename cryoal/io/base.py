"""The :class:`Pool` protocol: what every pool of volumes offers to the rest of cryoal.

A pool is an ordered, lazily read collection of same-box volumes with stable ids. The
round loop (:mod:`cryoal.active.loop`), training, scoring, galleries and project
registration need only what this protocol names; :class:`~cryoal.io.VolumePool`,
:class:`~cryoal.io.index.PoolIndex` and :class:`~cryoal.io.tomopool.TomogramPool` all
satisfy it (``isinstance(pool, Pool)`` is checked at run time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Pool"]


@runtime_checkable
class Pool(Protocol):
    """An ordered collection of volumes read on demand.

    Attributes
    ----------
    ids
        One stable, unique id per item, in pool order (``run1/a.mrc``,
        ``stack.mrcs#4``, ``TS_01:000123``).
    """

    ids: Sequence[str]

    def __len__(self) -> int:
        """Number of items."""
        ...

    @property
    def box(self) -> tuple[int, ...]:
        """Shape ``(D, H, W)`` in voxels shared by every item."""
        ...

    @property
    def voxel_size(self) -> float:
        """Voxel size in Å."""
        ...

    def read(self, index: int) -> np.ndarray:
        """Item ``index`` as a new float32 array ``(D, H, W)`` (raw values)."""
        ...

    def checksum(self, index: int) -> str:
        """A hex digest of what item ``index`` is read from; it changes when that changes.

        Projects record it per item at registration and refuse to resume on a pool whose
        items changed.
        """
        ...

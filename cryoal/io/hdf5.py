"""HDF5 pools: many subtomograms in one file, written streaming and read lazily.

Layout (``format = "cryoal-pool"``, ``format_version = 1`` in the file attributes)::

    /volumes   float32 (N, D, H, W), chunked one volume per chunk  (or (N, H, W) images)
    /ids       optional UTF-8 strings (N,)  — stable ids; default "<file name>#<i>"
    /labels    optional UTF-8 strings (N,)  — "" means unlabelled
    attrs      voxel_size (Å), format, format_version, cryoal_version

:class:`Hdf5Volumes` keeps one h5py handle per process, opened on first read. It drops
the handle when pickled and reopens after a fork, so it works inside DataLoader workers.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from cryoal._atomic import atomic_path
from cryoal._version import __version__
from cryoal.errors import CryoalError, InvalidLabelsError, InvalidVolumeError
from cryoal.io.mrc import _check_finite

__all__ = ["HDF5_EXTENSIONS", "Hdf5Volumes", "is_hdf5_file", "write_hdf5_pool"]

#: file extensions read as HDF5 pools
HDF5_EXTENSIONS: tuple[str, ...] = (".h5", ".hdf5", ".hdf")
_FORMAT = "cryoal-pool"
_GROW = 256
#: what h5py raises on a corrupt file (it maps HDF5 error classes onto these)
_H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, OverflowError)
#: how much a filtered (compressed) dataset may claim per stored byte: deflate's limit
_FILTERED_MAX_RATIO = 1032


def is_hdf5_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` has an HDF5 extension (``.h5``, ``.hdf5``, ``.hdf``)."""
    return os.path.splitext(os.fspath(path).lower())[1] in HDF5_EXTENSIONS


def write_hdf5_pool(
    path: str | os.PathLike[str],
    volumes: Iterable[np.ndarray | torch.Tensor],
    ids: Sequence[str] | None = None,
    labels: Sequence[str | None] | None = None,
    voxel_size: float = 1.0,
    *,
    dataset: str = "volumes",
) -> int:
    """Stream volumes into an HDF5 pool, atomically.

    Parameters
    ----------
    path
        Target ``.h5``/``.hdf5`` file (replaced when the write succeeds).
    volumes
        Any iterable of arrays ``(D, H, W)`` (or ``(1, D, H, W)``, or 2D images
        ``(H, W)``), all one shape; consumed one at a time, never held together.
    ids
        One unique id per volume, or None (ids become ``"<file name>#<i>"`` on reading).
    labels
        One label per volume (None or "" = unlabelled), or None.
    voxel_size
        Voxel size in Å (> 0).
    dataset
        Name of the volume dataset.

    Returns
    -------
    int
        The number of volumes written.

    Raises
    ------
    InvalidVolumeError
        No volumes, a volume of another shape, NaN/Inf values, voxel size ≤ 0.
    InvalidLabelsError
        ``ids`` or ``labels`` of the wrong length, or duplicate ids.
    """
    target = Path(path)
    if not np.isfinite(voxel_size) or voxel_size <= 0:
        raise InvalidVolumeError(f"{target}: voxel size must be > 0 Å, got {voxel_size}")
    if ids is not None:
        _check_unique(ids, target)
    string = h5py.string_dtype("utf-8")
    n = 0
    with atomic_path(target) as tmp, h5py.File(tmp, "w") as fh:
        dset: Any = None
        box: tuple[int, ...] = ()
        for i, vol in enumerate(volumes):
            arr = vol.detach().cpu().numpy() if isinstance(vol, torch.Tensor) else np.asarray(vol)
            if arr.ndim == 4 and arr.shape[0] == 1:
                arr = arr[0]
            if dset is None:
                box = tuple(arr.shape)
                if arr.ndim not in (2, 3):
                    raise InvalidVolumeError(
                        f"{target}: volume #0 has shape {arr.shape}; expected (D, H, W) or (H, W)"
                    )
                start = len(ids) if ids is not None else _GROW
                dset = fh.create_dataset(
                    dataset,
                    shape=(start, *box),
                    maxshape=(None, *box),
                    chunks=(1, *box),
                    dtype=np.float32,
                )
            elif tuple(arr.shape) != box:
                raise InvalidVolumeError(
                    f"{target}: volume #{i} has shape {arr.shape} but volume #0 has {box}; "
                    "all volumes of a pool must share one box"
                )
            arr = arr.astype(np.float32, copy=False)
            _check_finite(arr, f"{target}: volume #{i}", False)
            if i >= dset.shape[0]:
                dset.resize(dset.shape[0] + _GROW, axis=0)
            dset[i] = arr
            n = i + 1
        if dset is None:
            raise InvalidVolumeError(f"{target}: no volumes to write")
        dset.resize(n, axis=0)
        if ids is not None:
            if len(ids) != n:
                raise InvalidLabelsError(f"{target}: {len(ids)} ids for {n} volumes")
            fh.create_dataset("ids", data=[str(s) for s in ids], dtype=string)
        if labels is not None:
            if len(labels) != n:
                raise InvalidLabelsError(f"{target}: {len(labels)} labels for {n} volumes")
            fh.create_dataset(
                "labels", data=["" if s is None else str(s) for s in labels], dtype=string
            )
        fh.attrs["voxel_size"] = float(voxel_size)
        fh.attrs["format"] = _FORMAT
        fh.attrs["format_version"] = 1
        fh.attrs["cryoal_version"] = __version__
    return n


def _check_unique(ids: Sequence[str], where: Path) -> None:
    seen: dict[str, int] = {}
    dups = []
    for i, s in enumerate(ids):
        if s in seen:
            dups.append(f"#{i} {s!r} (also #{seen[s]})")
        seen.setdefault(s, i)
    if dups:
        raise InvalidLabelsError(f"{where}: duplicate ids: {', '.join(dups[:5])}")


class Hdf5Volumes:
    """Lazy, fork-safe access to the volumes of one HDF5 pool.

    Parameters
    ----------
    path
        The HDF5 file.
    dataset
        Name of the ``(N, D, H, W)`` (or ``(N, H, W)``) dataset.

    Attributes
    ----------
    path, dataset
        As given.
    item_shape
        ``(D, H, W)`` or ``(H, W)``.
    voxel_size
        Å (the ``voxel_size`` attribute of the file or dataset; 1.0 when absent).
    ids
        The stored ids, or ``"<file name>#<i>"``.
    labels
        The stored labels (None for unlabelled), or None when the file has none.

    Raises
    ------
    InvalidVolumeError
        Missing file, not HDF5, missing dataset (the message lists those present),
        wrong number of dimensions, ids/labels of the wrong length.
    """

    def __init__(self, path: str | os.PathLike[str], dataset: str = "volumes") -> None:
        self.path = Path(path)
        self.dataset = dataset
        self._handle: Any = None
        self._dset: Any = None
        self._pid = -1
        if not self.path.exists():
            raise InvalidVolumeError(f"{self.path}: file not found")
        try:
            fh = h5py.File(self.path, "r")
        except _H5_ERRORS as exc:
            raise InvalidVolumeError(f"{self.path}: not a readable HDF5 file ({exc})") from None
        try:
            with fh:
                self._describe(fh, dataset)
        except CryoalError:
            raise
        except _H5_ERRORS as exc:  # damaged B-trees, heaps, object headers ...
            raise InvalidVolumeError(
                f"{self.path}: corrupt HDF5 file ({type(exc).__name__}: {exc}); re-copy it or "
                "write it again with write_hdf5_pool"
            ) from None

    def _describe(self, fh: Any, dataset: str) -> None:
        """Read shape, voxel size, ids and labels; check them against the file's size."""
        if dataset not in fh or not isinstance(fh[dataset], h5py.Dataset):
            present = sorted(k for k in fh if isinstance(fh[k], h5py.Dataset))
            raise InvalidVolumeError(
                f"{self.path}: no dataset {dataset!r}; datasets present: "
                f"{', '.join(present) or '(none)'}; pass dataset=NAME"
            )
        dset = fh[dataset]
        if dset.ndim not in (3, 4):
            raise InvalidVolumeError(
                f"{self.path}: dataset {dataset!r} has shape {dset.shape}; expected "
                "(N, D, H, W) volumes or (N, H, W) images"
            )
        if dset.dtype.kind not in "fiu":
            raise InvalidVolumeError(
                f"{self.path}: dataset {dataset!r} has dtype {dset.dtype}; expected real "
                "numbers (float32 as written by write_hdf5_pool)"
            )
        self.n = int(dset.shape[0])
        self.item_shape: tuple[int, ...] = tuple(int(s) for s in dset.shape[1:])
        if min(self.item_shape) <= 0:
            raise InvalidVolumeError(
                f"{self.path}: dataset {dataset!r} has shape {dset.shape}: empty volumes"
            )
        self._check_claimed_size(dset, dataset)
        self.voxel_size = _voxel_size(
            dset.attrs.get("voxel_size", fh.attrs.get("voxel_size", 1.0)), self.path
        )
        self.ids = self._strings(fh, "ids") or [f"{self.path.name}#{i}" for i in range(self.n)]
        stored = self._strings(fh, "labels")
        self.labels: list[str | None] | None = (
            None if stored is None else [s if s.strip() else None for s in stored]
        )

    def _check_claimed_size(self, dset: Any, dataset: str) -> None:
        """A dataset may not claim more bytes than the file can hold (no fill-value bombs)."""
        claimed = self.n * math.prod(self.item_shape) * dset.dtype.itemsize
        file_size = os.path.getsize(self.path)
        filtered = dset.chunks is not None and bool(dset.id.get_create_plist().get_nfilters())
        limit = file_size * (_FILTERED_MAX_RATIO if filtered else 1)
        if claimed > limit:
            raise InvalidVolumeError(
                f"{self.path}: dataset {dataset!r} claims {dset.shape} values of "
                f"{dset.dtype} ({claimed} bytes) but the file has {file_size} bytes"
                + (" (at most 1032x that compressed)" if filtered else "")
                + "; the file is truncated or corrupt"
            )

    def _strings(self, fh: Any, name: str) -> list[str] | None:
        if name not in fh:
            return None
        obj = fh[name]
        if not isinstance(obj, h5py.Dataset) or obj.shape != (self.n,):
            what = f"shape {obj.shape}" if isinstance(obj, h5py.Dataset) else "a group"
            raise InvalidVolumeError(
                f"{self.path}: {name!r} is {what}; expected {self.n} strings, one per volume"
            )
        if obj.dtype.kind not in "SUiu" and h5py.check_string_dtype(obj.dtype) is None:
            raise InvalidVolumeError(
                f"{self.path}: dataset {name!r} has dtype {obj.dtype}; expected strings"
            )
        if obj.dtype.kind == "O":
            _check_vlen_heap(self.path, obj)
        try:
            return [v.decode() if isinstance(v, bytes) else str(v) for v in obj[()]]
        except UnicodeDecodeError as exc:
            raise InvalidVolumeError(
                f"{self.path}: dataset {name!r} holds a string that is not UTF-8 ({exc})"
            ) from None

    def __len__(self) -> int:
        return self.n

    def _volumes(self) -> Any:
        """This process's open dataset (opened on first use, again after a fork)."""
        if self._handle is None or self._pid != os.getpid():
            self._handle = None
            handle = h5py.File(self.path, "r")
            self._dset = handle[self.dataset]
            self._handle, self._pid = handle, os.getpid()
        return self._dset

    def read(self, index: int) -> np.ndarray:
        """Volume ``index`` as a new float32 array ``(D, H, W)`` (checked finite)."""
        if not 0 <= index < self.n:
            raise IndexError(f"{self.path}: index {index} out of range for {self.n} volumes")
        arr = np.empty(self.item_shape, dtype=np.float32)
        try:
            self._volumes().read_direct(arr, np.s_[index])
        except _H5_ERRORS as exc:  # a damaged chunk, or the file changed since it was opened
            raise InvalidVolumeError(
                f"{self.path}#{index}: cannot read the volume ({type(exc).__name__}: {exc}); "
                "the file is corrupt or changed, re-copy it"
            ) from None
        _check_finite(arr, f"{self.path}#{index}", False)
        return arr

    def close(self) -> None:
        """Close this process's handle (reopened on the next read)."""
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None
        self._dset = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_dset"] = None
        state["_pid"] = -1
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: h5py may already be gone
            pass


def _voxel_size(value: Any, path: Path) -> float:
    """The ``voxel_size`` attribute in Å; 1.0 when it is not a positive finite number."""
    try:
        vs = float(np.asarray(value).reshape(()))
    except (TypeError, ValueError):
        raise InvalidVolumeError(
            f"{path}: attribute voxel_size = {value!r} is not a number (Å); fix it with h5py "
            "(fh.attrs['voxel_size'] = 4.0)"
        ) from None
    return vs if np.isfinite(vs) and vs > 0 else 1.0


_GCOL_HEAD = 16  # "GCOL", version, 3 reserved, 8-byte collection size


def _check_vlen_heap(path: Path, dset: Any) -> None:
    """Check the global heap collections a contiguous vlen-string dataset points into.

    libhdf5 (2.0.0) can loop forever deserialising a collection whose object sizes run
    past its end; reading the dataset would hang. Each element of such a dataset is
    stored as (length uint32, collection address uint64, object index uint32); every
    referenced collection is walked here, in Python, before h5py touches it.
    Chunked (possibly compressed) datasets are left to libhdf5.
    """
    offset = dset.id.get_offset()
    if offset is None or dset.chunks is not None or dset.size == 0:
        return
    if tuple(dset.file.id.get_create_plist().get_sizes()) != (8, 8):
        return  # 8-byte addresses and lengths are what h5py writes and what is parsed here
    file_size = os.path.getsize(path)
    with open(path, "rb") as fh:
        fh.seek(offset)
        raw = fh.read(16 * dset.size)
        if len(raw) < 16 * dset.size:
            raise InvalidVolumeError(f"{path}: dataset {dset.name!r} runs past the end of the file")
        elements = [struct.unpack_from("<IQI", raw, 16 * k) for k in range(dset.size)]
        heaps = {
            a: _walk_collection(path, fh, a, file_size, dset.name) for n, a, _ in elements if a or n
        }
    for k, (length, address, index) in enumerate(elements):
        if length == 0 and address == 0:
            continue  # an empty string is stored without a heap object
        stored = heaps[address].get(index)
        if stored is None or length > stored:
            raise InvalidVolumeError(
                f"{path}: dataset {dset.name!r}: element {k} points to {length} bytes of heap "
                f"object {index}, which holds {stored or 0}; the file is corrupt, re-copy it"
            )


def _walk_collection(
    path: Path, fh: Any, address: int, file_size: int, name: str
) -> dict[int, int]:
    """Object index -> size in bytes of one global heap collection (checked walk)."""

    def corrupt(why: str) -> InvalidVolumeError:
        return InvalidVolumeError(
            f"{path}: dataset {name!r}: corrupt global heap at byte {address} ({why}); "
            "re-copy the file or write it again with write_hdf5_pool"
        )

    if address + _GCOL_HEAD > file_size:
        raise corrupt("address past the end of the file")
    fh.seek(address)
    head = fh.read(_GCOL_HEAD)
    if head[:4] != b"GCOL":
        raise corrupt("no GCOL signature")
    size = struct.unpack_from("<Q", head, 8)[0]
    end = address + size
    if size < _GCOL_HEAD or end > file_size:
        raise corrupt(f"collection size {size} runs past the end of the file")
    body = fh.read(size - _GCOL_HEAD)
    # the walk of libhdf5's H5HG__cache_heap_deserialize: object 0 (free space) advances
    # by its size (header included), every other object by header + size aligned to 8
    pos = 0
    objects: dict[int, int] = {}
    while pos + 16 <= len(body):
        index, _refs, _reserved, length = struct.unpack_from("<HHIQ", body, pos)
        if index:
            objects[index] = length
        need = length if index == 0 else 16 + (length + 7) // 8 * 8
        if index == 0 and length < 16:
            raise corrupt(f"free space of {length} bytes at offset {pos + _GCOL_HEAD}")
        if pos + need > len(body):
            raise corrupt(f"object {index} of {length} bytes runs past the collection end")
        pos += need
    return objects

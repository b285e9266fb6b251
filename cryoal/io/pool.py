"""VolumePool: an index of subtomograms on disk, loaded lazily, with stable ids and labels.

A pool is built from a directory (recursive, ``os.scandir``; no file is opened or
stat-ed except stacks, whose length must be read), a list of files, one MRC stack, or an
HDF5 pool. Items are read when indexed, so a pool of a million files costs a few
hundred bytes per item.

Ids are stable and human-readable:

* a file in a directory: its path relative to the pool root with forward slashes
  (``run1/tomo3_000017.mrc``);
* volume ``i`` of a stack: ``<relative path>#<i>`` (0-based, ``particles.mrcs#17``);
* an HDF5 pool: the stored ``ids`` dataset, else ``<file name>#<i>``.

Directory pools are sorted by relative path (then stack index); file lists keep their
order. All items share one box: ``pool.box`` comes from the first item, every
``pool[i]`` checks its item, and :meth:`VolumePool.check` reads every header (in a
thread pool) and names the first file that differs. Hidden files and folders (names
starting with ``.``, e.g. unfinished atomic writes) are skipped.

``pool[i]`` and ``pool.dataset()`` return **raw** float32 values (``(1, D, H, W)``, or
``(1, H, W)`` for a stack of 2D images); normalisation belongs to the transform
(``cryoal.transforms.normalize``).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cryoal._repr import html_view
from cryoal.errors import EmptyPoolError, InvalidLabelsError, InvalidVolumeError, PoolChangedError
from cryoal.io._items import LabelledItems
from cryoal.io._walk import walk_volume_files
from cryoal.io.base import entry_checksum
from cryoal.io.hdf5 import Hdf5Volumes, is_hdf5_file
from cryoal.io.mrc import (
    STACK_EXTENSIONS,
    MrcHeader,
    _load,
    _read_item,
    read_header,
    split_extension,
)
from cryoal.io.persist import read_pool_manifest, rel_path, verify_checksums, write_pool_manifest

__all__ = ["PoolDataset", "PoolSummary", "VolumePool"]

logger = logging.getLogger(__name__)

_DEFAULT_WORKERS = 8


def _box_str(box: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in box)


def _is_stack_name(name: str) -> bool:
    return split_extension(name)[0] in STACK_EXTENSIONS


def _require_volume(header: MrcHeader) -> None:
    """Accept a single-volume file; name what else it is otherwise."""
    if header.kind == "volume":
        return None
    p = header.path
    if header.kind == "image":
        raise InvalidVolumeError(
            f"{p}: is a 2D image ({_box_str(header.item_shape)}), not a volume; "
            "remove it from the pool or use VolumePool.from_stack for 2D images"
        )
    if header.kind == "volume-stack":
        raise InvalidVolumeError(
            f"{p}: is a stack of {header.n_items} volumes, indexed as one volume; name it "
            ".mrcs (stacks are expanded by extension) or use VolumePool.from_stack"
        )
    raise InvalidVolumeError(f"{p}: is a stack of {header.n_items} 2D images, not a volume")


@dataclass
class PoolSummary:
    """What :meth:`VolumePool.summary` found by reading every header.

    Attributes
    ----------
    n_items
        Volumes (or images) in the pool.
    n_files
        Files behind them.
    boxes
        Item count per box ``(D, H, W)``.
    voxel_sizes
        Item count per voxel size (Å, rounded to 1e-4).
    total_bytes
        Bytes on disk of all files.
    problems
        One line per unreadable file (empty when all are fine).
    """

    n_items: int
    n_files: int
    boxes: dict[tuple[int, ...], int]
    voxel_sizes: dict[float, int]
    total_bytes: int
    problems: list[str] = field(default_factory=list)


class VolumePool(LabelledItems, Dataset[torch.Tensor]):
    """An ordered, lazily loaded collection of same-box subtomograms with stable ids.

    Build one with :meth:`from_directory`, :meth:`from_files`, :meth:`from_stack`,
    :meth:`from_hdf5` or :meth:`from_path`; never from the constructor.

    Attributes
    ----------
    ids
        One stable id per item (see module doc).
    root
        The folder ids are relative to.
    labels
        One label per item, None where unlabelled (all None until :meth:`with_labels`).
    invert
        Items are read with their contrast inverted (``-x``); see :meth:`inverted`.
    """

    invert: bool = False

    def __init__(
        self,
        *,
        root: Path,
        ids: list[str],
        files: list[str],
        file_of: np.ndarray,
        index_in_file: np.ndarray,
        hdf5: Hdf5Volumes | None = None,
        headers: dict[int, MrcHeader] | None = None,
        labels: list[str | None] | None = None,
        box: tuple[int, ...] | None = None,
        voxel_size: float | None = None,
    ) -> None:
        if not ids:
            raise EmptyPoolError(f"{root}: the pool holds no volumes")
        self.root = root
        self.ids = ids
        self._files = files
        self._file_of = file_of
        self._index_in_file = index_in_file
        self._hdf5 = hdf5
        self._headers: dict[int, MrcHeader] = headers if headers is not None else {}
        self.labels: list[str | None] = labels if labels is not None else [None] * len(ids)
        self._box = box
        self._voxel_size = voxel_size
        self._id_index: dict[str, int] | None = None
        seen: set[str] = set()
        for s in ids:
            if s in seen:
                raise InvalidVolumeError(
                    f"{root}: duplicate id {s!r} in the pool; ids must be unique"
                )
            seen.add(s)

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_directory(
        cls,
        root: str | os.PathLike[str],
        pattern: str | Sequence[str] = "*.mrc",
        recursive: bool = True,
        *,
        workers: int = _DEFAULT_WORKERS,
    ) -> VolumePool:
        """Index the MRC files under a folder without reading them.

        Parameters
        ----------
        root
            The folder; ids are paths relative to it.
        pattern
            Glob(s) on file names, e.g. ``"*.mrc"`` or ``["*.mrc", "*.mrc.gz"]``. Files
            with extensions cryoal cannot read are skipped.
        recursive
            Descend into sub-folders (hidden ones are skipped).
        workers
            Threads used to read the headers of stack files (``.mrcs``/``.st``/``.ali``),
            the only files opened at index time.

        Raises
        ------
        InvalidVolumeError
            ``root`` is missing or not a folder; a stack's header is bad.
        EmptyPoolError
            No matching file.
        """
        base = Path(root)
        if not base.is_dir():
            what = "does not exist" if not base.exists() else "is not a directory"
            raise InvalidVolumeError(f"{base}: {what}; pass a folder of MRC files")
        patterns = [pattern] if isinstance(pattern, str) else list(pattern)
        rel = sorted(walk_volume_files(os.fspath(base), patterns, recursive))
        if not rel:
            where = "under" if recursive else "in"
            raise EmptyPoolError(
                f"{base}: no files matching {' or '.join(patterns)} {where} this folder; "
                "check the path or the pattern (e.g. '*.mrc*' also finds .mrc.gz)"
            )
        prefix = os.fspath(base) + os.sep
        return cls._from_relative(
            base, rel, [prefix + r.replace("/", os.sep) for r in rel], workers
        )

    @classmethod
    def from_files(
        cls,
        paths: Iterable[str | os.PathLike[str]],
        root: str | os.PathLike[str] | None = None,
        *,
        workers: int = _DEFAULT_WORKERS,
    ) -> VolumePool:
        """Index a list of MRC files (order kept; stacks expanded to their items).

        Parameters
        ----------
        paths
            MRC files; extensions are checked, contents read lazily.
        root
            Folder the ids are relative to (default: the deepest folder holding all).
        workers
            Threads for reading stack headers.

        Raises
        ------
        InvalidVolumeError
            Unknown extension, a file outside ``root``, the same file twice.
        EmptyPoolError
            ``paths`` is empty.
        """
        absolute = [os.path.abspath(os.fspath(p)) for p in paths]
        if not absolute:
            raise EmptyPoolError("no files given; pass at least one MRC file")
        for p in absolute:
            split_extension(p)
        base = (
            os.path.abspath(os.fspath(root))
            if root is not None
            else os.path.commonpath([os.path.dirname(p) for p in absolute])
        )
        rel = []
        for p in absolute:
            r = os.path.relpath(p, base)
            if r.startswith(".."):
                raise InvalidVolumeError(
                    f"{p}: is outside the pool root {base}; pass a root above it"
                )
            rel.append(r.replace(os.sep, "/"))
        return cls._from_relative(Path(base), rel, absolute, workers)

    @classmethod
    def _from_relative(
        cls, base: Path, rel: list[str], files: list[str], workers: int
    ) -> VolumePool:
        stacks = [i for i, r in enumerate(rel) if _is_stack_name(r)]
        headers: dict[int, MrcHeader] = {}
        if stacks:
            with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
                for i, h in zip(
                    stacks, ex.map(read_header, [files[i] for i in stacks]), strict=True
                ):
                    headers[i] = h
        ids: list[str] = []
        file_of: list[int] = []
        index_in_file: list[int] = []
        for f, r in enumerate(rel):
            stack = headers.get(f)
            if stack is None:
                ids.append(r)
                file_of.append(f)
                index_in_file.append(-1)
            else:
                ids.extend(f"{r}#{j}" for j in range(stack.n_items))
                file_of.extend([f] * stack.n_items)
                index_in_file.extend(range(stack.n_items))
        return cls(
            root=base,
            ids=ids,
            files=files,
            file_of=np.asarray(file_of, dtype=np.int64),
            index_in_file=np.asarray(index_in_file, dtype=np.int64),
            headers=headers,
        )

    @classmethod
    def from_stack(cls, path: str | os.PathLike[str]) -> VolumePool:
        """Index one MRC stack: a volume stack (N volumes) or a stack of 2D images.

        Ids are ``<file name>#<i>``; the root is the stack's folder.

        Raises
        ------
        InvalidVolumeError
            The file is not a stack (see :mod:`cryoal.io.mrc` for how stacks are recognised).
        """
        header = read_header(path)
        if header.kind not in ("volume-stack", "image-stack"):
            raise InvalidVolumeError(
                f"{header.path}: holds one {'2D image' if header.kind == 'image' else 'volume'}, "
                "not a stack; use VolumePool.from_files for single volumes"
            )
        p = Path(os.path.abspath(header.path))
        n = header.n_items
        return cls(
            root=p.parent,
            ids=[f"{p.name}#{i}" for i in range(n)],
            files=[os.fspath(p)],
            file_of=np.zeros(n, dtype=np.int64),
            index_in_file=np.arange(n, dtype=np.int64),
            headers={0: header},
            box=header.item_shape,
            voxel_size=header.voxel_size,
        )

    @classmethod
    def from_hdf5(cls, path: str | os.PathLike[str], dataset: str = "volumes") -> VolumePool:
        """Index an HDF5 pool (see :mod:`cryoal.io.hdf5`); stored labels are kept.

        Raises
        ------
        InvalidVolumeError
            See :class:`~cryoal.io.hdf5.Hdf5Volumes`.
        """
        store = Hdf5Volumes(path, dataset)
        p = Path(os.path.abspath(store.path))
        return cls(
            root=p.parent,
            ids=list(store.ids),
            files=[os.fspath(p)],
            file_of=np.zeros(store.n, dtype=np.int64),
            index_in_file=np.arange(store.n, dtype=np.int64),
            hdf5=store,
            labels=list(store.labels) if store.labels is not None else None,
            box=store.item_shape,
            voxel_size=store.voxel_size,
        )

    @classmethod
    def from_path(
        cls, path: str | os.PathLike[str], pattern: str | Sequence[str] = "*.mrc"
    ) -> VolumePool:
        """Open whatever ``path`` is: a folder, an HDF5 pool, a stack or one volume file.

        Raises
        ------
        InvalidVolumeError
            ``path`` does not exist or is not a volume/HDF5 file.
        """
        p = Path(path)
        if p.is_dir():
            return cls.from_directory(p, pattern)
        if not p.exists():
            raise InvalidVolumeError(f"{p}: not found; pass a folder, an MRC file or an HDF5 pool")
        if is_hdf5_file(p):
            return cls.from_hdf5(p)
        header = read_header(p)
        if header.kind in ("volume-stack", "image-stack"):
            return cls.from_stack(p)
        return cls.from_files([p])

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        box = _box_str(self._box) if self._box is not None else "?"
        n_lab = sum(lab is not None for lab in self.labels)
        return (
            f"VolumePool({len(self)} items, box {box}, root={str(self.root)!r}, {n_lab} labelled)"
        )

    _repr_html_ = html_view("pool")

    @property
    def box(self) -> tuple[int, ...]:
        """``(D, H, W)`` shared by every item (``(H, W)`` for 2D images); read from item 0."""
        if self._box is None:
            header = self._header_of_file(int(self._file_of[0]))
            self._box = header.item_shape
            self._voxel_size = header.voxel_size
        return self._box

    @property
    def voxel_size(self) -> float:
        """Voxel size in Å of item 0 (:meth:`summary` lists them all)."""
        if self._voxel_size is None:
            header = self._header_of_file(int(self._file_of[0]))
            self._voxel_size = header.voxel_size
        return self._voxel_size

    def path_of(self, index: int) -> Path:
        """The file holding item ``index``."""
        return Path(self._files[int(self._file_of[index])])

    def checksum(self, index: int) -> str:
        """Header checksum of the file holding item ``index``
        (:func:`cryoal.io.base.entry_checksum`; items of one stack share it).

        Raises
        ------
        InvalidVolumeError
            The file cannot be read.
        """
        f = int(self._file_of[index])
        cache = self.__dict__.setdefault("_checksums", {})
        digest = cache.get(f)
        if digest is None:
            digest = cache[f] = entry_checksum(self._files[f])
        return str(digest)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the pool's manifest (:mod:`cryoal.io.persist`, kind ``"volume"``) to
        ``path`` atomically: its files relative to the manifest, ids, box, voxel size,
        labels and per-item checksums (no voxels). Returns ``path``.

        Raises
        ------
        InvalidVolumeError
            A file cannot be read (to checksum it).
        """
        extra = {
            "root": rel_path(self.root, path),
            "file_of": self._file_of.tolist(),
            "index_in_file": self._index_in_file.tolist(),
            "labels": list(self.labels),
            "invert": bool(self.invert),
            "hdf5_dataset": self._hdf5.dataset if self._hdf5 is not None else None,
        }
        return write_pool_manifest(path, "volume", self, self._files, extra)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VolumePool:
        """A pool saved by :meth:`save`, checked against its checksums (one header read
        per file; no volume is read).

        Raises
        ------
        PoolManifestError
            Corrupt, truncated, unknown-version or non-``"volume"`` manifest.
        PoolChangedError
            A file vanished or changed since the save (the message names the item).
        """
        m = read_pool_manifest(path, "volume")
        dataset = m.get("hdf5_dataset", (str, type(None)))
        invert = m.get("invert", bool)
        hdf5 = None
        if dataset is not None:
            try:
                hdf5 = Hdf5Volumes(m.sources[0], dataset)
            except InvalidVolumeError as exc:
                raise PoolChangedError(
                    f"{m.path}: item {m.ids[0]!r} cannot be read any more ({exc}); restore "
                    "the file or rebuild the pool"
                ) from None
        pool = cls(
            root=m.relative(m.get("root", str)),
            ids=m.ids,
            files=[os.fspath(s) for s in m.sources],
            file_of=np.asarray(m.source_index("file_of"), dtype=np.int64),
            index_in_file=np.asarray(m.get("index_in_file", list, per_item=True), dtype=np.int64),
            hdf5=hdf5,
            labels=m.labels(),
            box=m.box,
            voxel_size=m.voxel_size,
        )
        pool.invert = invert
        verify_checksums(m, pool)
        return pool

    # ------------------------------------------------------------------ reading
    def _header_of_file(self, f: int) -> MrcHeader:
        header = self._headers.get(f)
        if header is None:
            header = read_header(self._files[f])
        return header

    def _single_volume_header(self, f: int) -> MrcHeader:
        header = self._header_of_file(f)
        _require_volume(header)
        return header

    def _read_single(self, f: int) -> np.ndarray:
        return _load(self._files[f], None, _require_volume)[1]

    def read(self, index: int) -> np.ndarray:
        """Item ``index`` as a new float32 array ``(D, H, W)`` (raw values, checked).

        Raises
        ------
        IndexError
            ``index`` out of range.
        InvalidVolumeError
            The file is bad, or the item's box differs from :attr:`box`.
        """
        n = len(self.ids)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"pool index {index} out of range for {n} items")
        f, j = int(self._file_of[i]), int(self._index_in_file[i])
        if self._hdf5 is not None:
            arr = self._hdf5.read(j)
        elif j < 0:
            arr = self._read_single(f)
        else:
            arr = _read_item(self._header_of_file(f), j)
        box = self.box
        if arr.shape != box:
            raise InvalidVolumeError(
                f"{self.path_of(i)}: box {_box_str(arr.shape)} differs from the pool box "
                f"{_box_str(box)} (of {self.ids[0]}); all volumes of a pool must share one "
                "box size, re-extract or resample them"
            )
        return -arr if self.invert else arr

    def __getitem__(self, index: int) -> torch.Tensor:
        """Item ``index`` as a float32 tensor ``(1, D, H, W)`` (raw values)."""
        return torch.from_numpy(self.read(index)).unsqueeze(0)

    def inverted(self, invert: bool = True) -> VolumePool:
        """This pool with every item read contrast-inverted (``-x``), sharing files and labels.

        Raw tomograms and cryoal's simulated pools show protein dark (underfocus); RELION
        particles extracted with "invert contrast" and aitom's simulated subtomograms show
        it bright. Invert one side so that pools, models and encoders agree. The flag is
        kept by :meth:`subset` and :meth:`with_labels`; ``inverted(False)`` undoes it.
        """
        out = self._derive(np.arange(len(self), dtype=np.int64), list(self.labels))
        out.invert = bool(invert)
        return out

    # ------------------------------------------------------------------ checking
    def _scan(self, workers: int) -> list[tuple[int, MrcHeader | None, str | None]]:
        """(file, header, problem) for every file of the pool, in pool order."""
        first_item: dict[int, int] = {}
        for i, f in enumerate(self._file_of.tolist()):
            first_item.setdefault(f, i)

        def one(f: int) -> tuple[int, MrcHeader | None, str | None]:
            try:
                if f in self._headers:
                    return f, self._headers[f], None
                single = self._index_in_file[first_item[f]] < 0
                h = self._single_volume_header(f) if single else self._header_of_file(f)
                return f, h, None
            except InvalidVolumeError as exc:
                return f, None, str(exc)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
            return list(ex.map(one, first_item))

    def check(self, *, workers: int = _DEFAULT_WORKERS) -> VolumePool:
        """Read every header (threads) and check files, kinds and box sizes.

        Returns
        -------
        VolumePool
            ``self``, for chaining.

        Raises
        ------
        InvalidVolumeError
            The first bad file (truncated, not MRC, 2D, ...) or the first file whose box
            differs from item 0's, naming both boxes.
        """
        box = self.box
        if self._hdf5 is not None:
            return self
        for _, header, problem in self._scan(workers):
            if header is None:
                raise InvalidVolumeError(problem)
            if header.item_shape != box:
                raise InvalidVolumeError(
                    f"{header.path}: box {_box_str(header.item_shape)} differs from the pool "
                    f"box {_box_str(box)} (of {self.ids[0]}); all volumes of a pool must share "
                    "one box size, re-extract or resample them"
                )
        return self

    def summary(self, *, workers: int = _DEFAULT_WORKERS) -> PoolSummary:
        """Read every header and count boxes, voxel sizes, bytes and problems (no raising)."""
        if self._hdf5 is not None:
            return PoolSummary(
                n_items=len(self),
                n_files=1,
                boxes={self.box: len(self)},
                voxel_sizes={round(self.voxel_size, 4): len(self)},
                total_bytes=os.stat(self._files[0]).st_size,
            )
        items_per_file = Counter(self._file_of.tolist())
        boxes: Counter[tuple[int, ...]] = Counter()
        sizes: Counter[float] = Counter()
        total = 0
        problems = []
        for f, header, problem in self._scan(workers):
            if header is None:
                problems.append(problem or f"{self._files[f]}: unreadable")
                continue
            boxes[header.item_shape] += items_per_file[f]
            sizes[round(header.voxel_size, 4)] += items_per_file[f]
            total += header.file_size
        return PoolSummary(
            n_items=len(self),
            n_files=len(items_per_file),
            boxes=dict(boxes),
            voxel_sizes=dict(sizes),
            total_bytes=total,
            problems=problems,
        )

    # ------------------------------------------------------------------ derived pools
    def _describe_items(self) -> str:
        return f"{len(self)} items under {self.root}"

    def _derive(self, rows: np.ndarray, labels: list[str | None]) -> VolumePool:
        out = VolumePool(
            root=self.root,
            ids=[self.ids[i] for i in rows.tolist()],
            files=self._files,
            file_of=self._file_of[rows],
            index_in_file=self._index_in_file[rows],
            hdf5=self._hdf5,
            headers=self._headers,
            labels=labels,
            box=self._box,
            voxel_size=self._voxel_size,
        )
        out.invert = self.invert
        return out

    def dataset(
        self,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> PoolDataset:
        """A torch Dataset of ``(x, y)``: x ``(1, D, H, W)`` raw float32 (then ``transform``),
        y the index of the label in ``class_names`` (default :attr:`class_names`), -1 when
        unlabelled.

        Raises
        ------
        InvalidLabelsError
            A label is not one of ``class_names``.
        """
        return PoolDataset(self, transform, class_names)


class PoolDataset(Dataset[tuple[torch.Tensor, int]]):
    """Map-style dataset over a :class:`VolumePool`; see :meth:`VolumePool.dataset`.

    Attributes
    ----------
    pool, transform, class_names
        As given.
    targets
        LongTensor ``(N,)`` of class indices, -1 for unlabelled items.
    """

    def __init__(
        self,
        pool: VolumePool,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.pool = pool
        self.transform = transform
        self.class_names = list(class_names) if class_names is not None else pool.class_names
        lookup = {name: i for i, name in enumerate(self.class_names)}
        bad = [
            f"{pool.ids[i]!r} ({lab!r})"
            for i, lab in enumerate(pool.labels)
            if lab is not None and lab not in lookup
        ]
        if bad:
            raise InvalidLabelsError(
                f"{len(bad)} labelled items have a class not in {self.class_names}: "
                f"{', '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}"
            )
        self.targets = torch.tensor(
            [-1 if lab is None else lookup[lab] for lab in pool.labels], dtype=torch.long
        )

    def __len__(self) -> int:
        return len(self.pool)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.pool[index]
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.targets[index])

    def __repr__(self) -> str:
        return f"PoolDataset({self.pool!r}, classes={self.class_names})"

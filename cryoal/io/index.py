"""PoolIndex: a compact index of up to millions of subtomograms, built in bounded memory.

A :class:`~cryoal.io.VolumePool` keeps one Python string per id and per file, fine up
to ~10^5 items. :class:`PoolIndex` stores the same information as a few numpy arrays —
UTF-8 bytes of every id and path in one buffer plus ``int64`` offsets, ``int32`` stack
positions and ``int32`` label codes — so 10^6 entries cost a few tens of MB, and it
is built without ever holding one Python object per entry:

* :meth:`PoolIndex.from_directory` walks a folder with ``os.scandir`` and appends each
  matching name's bytes to a growing buffer; entries are then ordered by relative path
  (the order of :meth:`VolumePool.from_directory`, so indices agree) with a chunked
  numpy sort of fixed-width byte keys;
* :meth:`PoolIndex.from_table` streams a CSV list in chunks (``path`` column, optional
  ``id`` and ``label``) or reads a RELION STAR list (``_rlnImageName``, optional
  ``_cryoalLabel``);
* :meth:`PoolIndex.save` / :meth:`PoolIndex.load` persist it as one ``.npz`` (atomic);
  the save records each file's size and mtime, and the load compares them with
  ``os.stat`` (one per file) and refuses an index whose files moved, vanished or changed;
* :meth:`PoolIndex.rows` streams ``(id, path, checksum)`` rows, which
  :func:`cryoal.active.pool_index.project_index` bulk-inserts into a project's ``pool``
  table (the project owns its rows; this module imports no project).

A PoolIndex is itself a map-style dataset (``index[i]`` is a float32 tensor
``(1, D, H, W)``, raw values), so acquisition strategies and
:func:`cryoal.acquisition.sharded_score` stream over it directly.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import json
import logging
import os
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from cryoal._atomic import atomic_path
from cryoal.errors import (
    ConfigError,
    EmptyPoolError,
    InvalidLabelsError,
    InvalidVolumeError,
    PoolChangedError,
    PoolManifestError,
)
from cryoal.io._walk import walk_volume_files
from cryoal.io.base import entry_checksum
from cryoal.io.mrc import (
    STACK_EXTENSIONS,
    read_header,
    read_volume,
    split_extension,
)

__all__ = ["PoolIndex", "StringArray", "Verify", "entry_checksum"]

#: how :meth:`PoolIndex.load` checks the indexed files: ``"stat"`` (sizes and mtimes
#: against the saved ones) or ``"none"``
Verify = Literal["stat", "none"]

log = logging.getLogger(__name__)

_FORMAT = "cryoal-pool-index"
_FORMAT_VERSION = 1
_SORT_CHUNK = 65_536
#: rows per vectorised byte gather (temporaries ~17 B per byte of a row)
_BYTE_CHUNK = 8_192
#: changed files named in a PoolChangedError (the count says how many there are)
_NAMED_CHANGES = 5
_RELION = re.compile(r"^(\d+)@(.+)$")
_HASH = re.compile(r"^(.+)#(\d+)$")


class _Builder:
    """Append-only UTF-8 strings: one bytearray and int64 end offsets (no str objects kept)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.ends: list[int] = []  # grows by 8 B/entry (list of ints is compacted below)
        self._chunks: list[np.ndarray] = []

    def add(self, s: str) -> None:
        self.buf += s.encode("utf-8")
        self.ends.append(len(self.buf))
        if len(self.ends) >= _SORT_CHUNK:
            self._chunks.append(np.asarray(self.ends, dtype=np.int64))
            self.ends = []

    def __len__(self) -> int:
        return sum(len(c) for c in self._chunks) + len(self.ends)

    def build(self) -> StringArray:
        ends = np.concatenate([*self._chunks, np.asarray(self.ends, dtype=np.int64)])
        offsets = np.zeros(len(ends) + 1, dtype=np.int64)
        offsets[1:] = ends
        return StringArray(np.frombuffer(bytes(self.buf), dtype=np.uint8), offsets)


class StringArray(Sequence[str]):
    """An immutable sequence of strings stored as one UTF-8 buffer plus offsets.

    Parameters
    ----------
    data
        ``(B,)`` uint8, the concatenated UTF-8 bytes.
    offsets
        ``(N + 1,)`` int64; string ``i`` is ``data[offsets[i]:offsets[i + 1]]``.
    """

    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        self.data = np.ascontiguousarray(data, dtype=np.uint8)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)

    @classmethod
    def from_strings(cls, strings: Iterable[str]) -> StringArray:
        """Pack any iterable of strings (consumed one at a time)."""
        b = _Builder()
        for s in strings:
            b.add(str(s))
        return b.build()

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        j = int(i) + n if int(i) < 0 else int(i)
        if not 0 <= j < n:
            raise IndexError(f"string index {i} out of range for {n} entries")
        return bytes(self.data[self.offsets[j] : self.offsets[j + 1]]).decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        raw = self.data.data  # a memoryview of the buffer, no copy
        for start in range(0, len(self), _SORT_CHUNK):
            off = self.offsets[start : start + _SORT_CHUNK + 1].tolist()
            for a, b in zip(off, off[1:], strict=False):
                yield str(raw[a:b], "utf-8")

    def take(self, rows: np.ndarray) -> StringArray:
        """The strings at ``rows`` (int array), in that order, packed anew."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.offsets[rows + 1] - self.offsets[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        out = np.empty(int(offsets[-1]), dtype=np.uint8)
        for start in range(0, len(rows), _BYTE_CHUNK):
            block = rows[start : start + _BYTE_CHUNK]
            src = _gather_positions(self.offsets[block], lengths[start : start + len(block)])
            out[offsets[start] : offsets[start + len(block)]] = self.data[src]
        return StringArray(out, offsets)

    def argsort(self) -> np.ndarray:
        """Indices that sort the strings (UTF-8 byte order = code-point order), stable."""
        n = len(self)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        lengths = np.diff(self.offsets)
        width = max(int(lengths.max()), 1)
        keys = np.zeros(n, dtype=f"S{width}")
        view = keys.view(np.uint8).reshape(n, width)
        for start in range(0, n, _BYTE_CHUNK):
            stop = min(start + _BYTE_CHUNK, n)
            ln = lengths[start:stop]
            cols = np.arange(width)
            mask = cols[None, :] < ln[:, None]
            src = self.offsets[start:stop, None] + cols[None, :]
            block = np.zeros((stop - start, width), dtype=np.uint8)
            block[mask] = self.data[src[mask]]
            view[start:stop] = block
        return np.argsort(keys, kind="stable")

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffer and offsets."""
        return int(self.data.nbytes + self.offsets.nbytes)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StringArray):
            return np.array_equal(self.offsets, other.offsets) and np.array_equal(
                self.data, other.data
            )
        if isinstance(other, Sequence):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        head = ", ".join(repr(s) for s in self[:3])
        return f"StringArray([{head}{', ...' if len(self) > 3 else ''}], n={len(self)})"


def _gather_positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(start, start + length)`` for each pair, vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    block_starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=block_starts[1:])
    return np.repeat(starts - block_starts, lengths) + np.arange(total, dtype=np.int64)


class PoolIndex(Dataset[torch.Tensor]):
    """Compact, lazily read index of a pool: ids, paths, stack positions, labels.

    Build one with :meth:`from_directory`, :meth:`from_table` or :meth:`load`.

    Attributes
    ----------
    root
        Folder that ``paths`` are relative to.
    ids
        :class:`StringArray` of N unique ids (``run1/a.mrc``, ``stack.mrcs#4``), the same
        ids :class:`~cryoal.io.VolumePool` gives the same files.
    paths
        :class:`StringArray` of N file paths relative to ``root`` (posix separators).
    index_in_file
        ``(N,)`` int32: position inside a stack file, -1 for single-volume files.
    label_codes
        ``(N,)`` int32 index into ``classes``, -1 for unlabelled items.
    classes
        Sorted class names.
    registered_in
        The project directory whose ``pool`` table holds exactly these entries (set by
        :func:`cryoal.active.pool_index.project_index`; the round loop then skips
        re-registering them), or None.
    invert
        Items are read with their contrast inverted (``-x``); see :meth:`inverted`.
    """

    invert: bool = False

    def __init__(
        self,
        root: str | os.PathLike[str],
        ids: StringArray,
        paths: StringArray,
        index_in_file: np.ndarray,
        label_codes: np.ndarray | None = None,
        classes: Sequence[str] = (),
        *,
        box: tuple[int, ...] | None = None,
        voxel_size: float | None = None,
    ) -> None:
        n = len(ids)
        if n == 0:
            raise EmptyPoolError(f"{root}: the pool index holds no volumes")
        if len(paths) != n or len(index_in_file) != n:
            raise InvalidVolumeError(
                f"{root}: pool index arrays disagree ({n} ids, {len(paths)} paths, "
                f"{len(index_in_file)} stack positions)"
            )
        self.root = Path(root)
        self.ids = ids
        self.paths = paths
        self.index_in_file = np.asarray(index_in_file, dtype=np.int32)
        self.label_codes = (
            np.full(n, -1, dtype=np.int32)
            if label_codes is None
            else np.asarray(label_codes, dtype=np.int32)
        )
        self.classes = list(classes)
        self._box = box
        self._voxel_size = voxel_size
        self._order: np.ndarray | None = None
        self.registered_in: Path | None = None

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_directory(
        cls,
        root: str | os.PathLike[str],
        pattern: str | Sequence[str] = "*.mrc",
        recursive: bool = True,
    ) -> PoolIndex:
        """Index the MRC files under a folder in bounded memory (no file opened but stacks).

        Parameters
        ----------
        root
            The folder; ids are paths relative to it, ordered as
            :meth:`VolumePool.from_directory` orders them.
        pattern
            Glob(s) on file names (``"*.mrc"``, ``["*.mrc", "*.mrcs"]``).
        recursive
            Descend into sub-folders (hidden names are skipped, links followed once).

        Raises
        ------
        InvalidVolumeError
            ``root`` is not a folder; a stack's header is bad.
        EmptyPoolError
            No matching file.
        """
        base = Path(root)
        if not base.is_dir():
            what = "does not exist" if not base.exists() else "is not a directory"
            raise InvalidVolumeError(f"{base}: {what}; pass a folder of MRC files")
        patterns = [pattern] if isinstance(pattern, str) else list(pattern)
        names = _Builder()
        for rel in walk_volume_files(os.fspath(base), patterns, recursive):
            names.add(rel)
        if not len(names):
            where = "under" if recursive else "in"
            raise EmptyPoolError(
                f"{base}: no files matching {' or '.join(patterns)} {where} this folder; "
                "check the path or the pattern"
            )
        files = names.build()
        files = files.take(files.argsort())
        return cls._expand_stacks(base, files)

    @classmethod
    def _expand_stacks(cls, base: Path, files: StringArray) -> PoolIndex:
        """One entry per single-volume file, ``n_items`` entries per stack file."""
        stack_ext = tuple(STACK_EXTENSIONS)
        ids, paths = _Builder(), _Builder()
        positions: list[np.ndarray] = []
        run: list[int] = []
        for rel in files:
            ext = split_extension(rel)[0]
            if ext in stack_ext:
                n_items = read_header(base / rel).n_items
                for j in range(n_items):
                    ids.add(f"{rel}#{j}")
                    paths.add(rel)
                run.extend(range(n_items))
            else:
                ids.add(rel)
                paths.add(rel)
                run.append(-1)
            if len(run) >= _SORT_CHUNK:
                positions.append(np.asarray(run, dtype=np.int32))
                run = []
        positions.append(np.asarray(run, dtype=np.int32))
        return cls(base, ids.build(), paths.build(), np.concatenate(positions))

    @classmethod
    def from_table(
        cls,
        path: str | os.PathLike[str],
        root: str | os.PathLike[str] | None = None,
        *,
        chunksize: int = 100_000,
    ) -> PoolIndex:
        """Index the volumes listed in a CSV or STAR table (order kept).

        Parameters
        ----------
        path
            ``.csv`` with a ``path`` column (``vol.mrc``, ``stack.mrcs#4`` or RELION's
            1-based ``000005@stack.mrcs``), optional ``id`` (default: the path, as
            :class:`VolumePool` names it) and ``label`` columns; or ``.star`` with
            ``_rlnImageName`` and optional ``_cryoalLabel``. Read in chunks of
            ``chunksize`` rows (CSV).
        root
            Folder the paths are relative to (default: the table's folder).

        Raises
        ------
        InvalidLabelsError
            Unknown extension, missing ``path`` column, duplicate ids (first five listed).
        InvalidVolumeError
            A path with an extension cryoal cannot read.
        EmptyPoolError
            The table has no rows.
        """
        table = Path(path)
        base = Path(root) if root is not None else table.resolve().parent
        name = table.name.lower()
        if name.endswith(".csv"):
            chunks: Any = pd.read_csv(table, dtype=str, keep_default_na=False, chunksize=chunksize)
            path_col, label_col = "path", "label"
        elif name.endswith(".star"):
            import starfile

            data = starfile.read(table, always_dict=True)
            frame = next((v for v in data.values() if isinstance(v, pd.DataFrame)), None)
            if frame is None:
                raise InvalidLabelsError(f"{table}: no data table in the STAR file")
            chunks = contextlib.nullcontext([frame.astype(str)])
            path_col, label_col = "rlnImageName", "cryoalLabel"
        else:
            raise InvalidLabelsError(
                f"{table}: unknown list extension {table.suffix or '(none)'!r}; use .csv or .star"
            )
        ids, paths = _Builder(), _Builder()
        positions: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        classes: dict[str, int] = {}
        readable: set[str] = set()  # file-name tails (".mrc", "x.mrc.gz") already checked
        row0 = 0
        with chunks as frames:
            for frame in frames:
                if path_col not in frame.columns:
                    raise InvalidLabelsError(
                        f"{table}: no {path_col!r} column (columns: {', '.join(map(str, frame.columns))}); "
                        f"list one volume per row in {path_col!r}"
                    )
                has_id = "id" in frame.columns
                has_label = label_col in frame.columns
                pos = np.empty(len(frame), dtype=np.int32)
                codes = np.full(len(frame), -1, dtype=np.int32)
                given_ids = frame["id"].tolist() if has_id else None
                given_labels = frame[label_col].tolist() if has_label else None
                for k, raw in enumerate(frame[path_col].tolist()):
                    file, j = _split_item(str(raw).strip())
                    tail = _extension_tail(file)
                    if tail not in readable:
                        split_extension(file)  # raises, naming the extension
                        readable.add(tail)
                    paths.add(file)
                    pos[k] = j
                    vid = given_ids[k].strip() if given_ids is not None else ""
                    ids.add(vid or (file if j < 0 else f"{file}#{j}"))
                    lab = given_labels[k].strip() if given_labels is not None else ""
                    if lab and lab.lower() not in ("nan", "none", "null"):
                        codes[k] = classes.setdefault(lab, len(classes))
                positions.append(pos)
                labels.append(codes)
                row0 += len(frame)
        if row0 == 0:
            raise EmptyPoolError(f"{table}: the list holds no rows")
        built = cls(
            base,
            ids.build(),
            paths.build(),
            np.concatenate(positions),
            np.concatenate(labels),
        )
        built._sort_classes(list(classes))
        built._check_unique(table)
        return built

    def _sort_classes(self, first_seen: list[str]) -> None:
        """Recode labels so ``classes`` is sorted."""
        order = sorted(first_seen)
        if order == first_seen:
            self.classes = order
            return
        remap = np.array([order.index(c) for c in first_seen] + [-1], dtype=np.int32)
        self.label_codes = remap[self.label_codes]  # -1 indexes the trailing -1
        self.classes = order

    def _check_unique(self, where: Path) -> None:
        order = self._sorted_ids()
        dups: list[str] = []
        for start in range(0, len(order) - 1, _SORT_CHUNK):
            stop = min(start + _SORT_CHUNK + 1, len(order))
            block = [self.ids[int(i)] for i in order[start:stop]]
            dups += [a for a, b in zip(block, block[1:], strict=False) if a == b]
            if len(dups) >= 5:
                break
        if dups:
            raise InvalidLabelsError(
                f"{where}: duplicate ids in the list: {', '.join(repr(d) for d in dups[:5])}; "
                "every volume must be listed once"
            )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to one ``.npz`` file (atomically); returns the path.

        Besides the index it records each item's file size (bytes) and modification
        time (ns) as they are now (``-1`` for a file that does not exist), which
        :meth:`load` checks.
        """
        sizes, mtimes, _ = self._file_stats()
        meta = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "root": os.fspath(self.root),
            "classes": self.classes,
            "box": list(self._box) if self._box is not None else None,
            "voxel_size": self._voxel_size,
        }
        target = Path(path)
        with atomic_path(target, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                id_data=self.ids.data,
                id_offsets=self.ids.offsets,
                path_data=self.paths.data,
                path_offsets=self.paths.offsets,
                index_in_file=self.index_in_file,
                label_codes=self.label_codes,
                file_size=sizes,
                file_mtime_ns=mtimes,
            )
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, verify: Verify = "stat") -> PoolIndex:
        """Read an index written by :meth:`save`, checking that its files are unchanged.

        Parameters
        ----------
        path
            The ``.npz`` file.
        verify
            ``"stat"`` (default): ``os.stat`` every indexed file once (the items of one
            stack share it) and compare size and modification time with the ones the
            save recorded (about 0.2 s of CPU per 10⁵ files, docs/benchmarks.md); indexes
            saved before sizes were recorded are not checked. ``"none"``: skip it.

        Raises
        ------
        PoolManifestError
            Missing, unreadable, truncated or not a cryoal pool index (an
            :class:`~cryoal.errors.InvalidVolumeError`).
        PoolChangedError
            A file moved, vanished, or changed size or modification time since the save;
            the message counts them and names the first few.
        ConfigError
            Unknown ``verify``.
        """
        if verify not in ("stat", "none"):
            raise ConfigError(f"verify must be 'stat' or 'none', got {verify!r}")
        p = Path(path)
        try:
            with open(p, "rb") as fh, np.load(fh, allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes().decode())
                if meta.get("format") != _FORMAT:
                    raise PoolManifestError(f"{p}: not a cryoal pool index")
                index = cls(
                    meta["root"],
                    StringArray(z["id_data"], z["id_offsets"]),
                    StringArray(z["path_data"], z["path_offsets"]),
                    z["index_in_file"],
                    z["label_codes"],
                    meta["classes"],
                    box=tuple(meta["box"]) if meta["box"] is not None else None,
                    voxel_size=meta["voxel_size"],
                )
                saved = (z["file_size"], z["file_mtime_ns"]) if "file_size" in z.files else None
        except PoolManifestError:
            raise
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise PoolManifestError(
                f"{p}: unreadable pool index ({exc}); delete it to rebuild the index"
            ) from None
        if verify == "stat":
            if saved is None:
                log.info("%s records no file sizes (an older index): files not checked", p)
            else:
                index._check_stats(p, *saved)
        return index

    def _file_stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(N,)`` int64 arrays: each item's file size (bytes) and mtime (ns), ``-1``
        where the file does not exist, and its file number (items of one stack in a row
        share one ``os.stat`` and one number)."""
        sizes: list[int] = []
        mtimes: list[int] = []
        files: list[int] = []
        last, size, mtime, k = None, -1, -1, -1
        with _root_dir(self.root) as stat:
            for rel in self.paths:
                if rel != last:
                    last, k = rel, k + 1
                    try:
                        st = stat(rel)
                        size, mtime = st.st_size, st.st_mtime_ns
                    except OSError:
                        size, mtime = -1, -1
                sizes.append(size)
                mtimes.append(mtime)
                files.append(k)
        return (
            np.asarray(sizes, dtype=np.int64),
            np.asarray(mtimes, dtype=np.int64),
            np.asarray(files, dtype=np.int64),
        )

    def _check_stats(self, where: Path, sizes: np.ndarray, mtimes: np.ndarray) -> None:
        """Raise :class:`PoolChangedError` if a file's size or mtime differs from the saved."""
        if len(sizes) != len(self) or len(mtimes) != len(self):
            raise PoolManifestError(
                f"{where}: the recorded file sizes do not match the index ({len(sizes)} for "
                f"{len(self)} items); delete it to rebuild the index"
            )
        now_sizes, now_mtimes, file_of = self._file_stats()
        changed = np.flatnonzero((now_sizes != sizes) | (now_mtimes != mtimes))
        if changed.size == 0:
            return
        first = changed[np.r_[True, np.diff(file_of[changed]) != 0]]  # one item per file
        named = []
        for i in first[:_NAMED_CHANGES].tolist():
            if now_sizes[i] < 0:
                what = "vanished or moved"
            elif sizes[i] < 0:
                what = "appeared"
            elif now_sizes[i] != sizes[i]:
                what = f"size {int(sizes[i])} -> {int(now_sizes[i])} bytes"
            else:
                what = "modified"
            named.append(f"{self.paths[i]} ({what})")
        more = ", ..." if first.size > len(named) else ""
        raise PoolChangedError(
            f"{where}: {first.size} of the files indexed under {self.root} changed since "
            f"the index was saved: {', '.join(named)}{more}; restore them, or rebuild the "
            "index (delete it; `cryoal select --reindex`)"
        )

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        n_lab = int((self.label_codes >= 0).sum())
        return f"PoolIndex({len(self)} items, root={str(self.root)!r}, {n_lab} labelled)"

    @property
    def nbytes(self) -> int:
        """Bytes held by the index arrays (ids, paths, positions, labels)."""
        return (
            self.ids.nbytes
            + self.paths.nbytes
            + int(self.index_in_file.nbytes)
            + int(self.label_codes.nbytes)
        )

    @property
    def labels(self) -> list[str | None]:
        """One label per item (None where unlabelled); built on demand."""
        names = self.classes
        return [names[c] if c >= 0 else None for c in self.label_codes.tolist()]

    def path_of(self, index: int) -> Path:
        """Absolute path of the file holding item ``index``."""
        return self.root / self.paths[index]

    def _sorted_ids(self) -> np.ndarray:
        if self._order is None:
            self._order = self.ids.argsort()
        return self._order

    def index_of(self, id: str) -> int:
        """Position of the item with this id (binary search over the sorted ids).

        Raises
        ------
        InvalidLabelsError
            The id is not in the pool.
        """
        order = self._sorted_ids()
        keys = _LazyKeys(self.ids, order)
        k = bisect.bisect_left(keys, id)
        if k < len(order) and self.ids[int(order[k])] == id:
            return int(order[k])
        raise InvalidLabelsError(
            f"id {id!r} is not in the pool ({len(self)} items under {self.root}); "
            f"ids look like {self.ids[0]!r}"
        )

    def _header0(self) -> tuple[tuple[int, ...], float]:
        if self._box is None or self._voxel_size is None:
            header = read_header(self.path_of(0))
            self._box = header.item_shape
            self._voxel_size = header.voxel_size
        return self._box, float(self._voxel_size)

    @property
    def box(self) -> tuple[int, ...]:
        """``(D, H, W)`` of item 0 (every read checks its item against it)."""
        return self._header0()[0]

    @property
    def voxel_size(self) -> float:
        """Voxel size in Å of item 0."""
        return self._header0()[1]

    def read(self, index: int) -> np.ndarray:
        """Item ``index`` as a new float32 array ``(D, H, W)`` (raw values).

        Raises
        ------
        IndexError
            ``index`` out of range.
        InvalidVolumeError
            The file is bad, or the item's box differs from :attr:`box`.
        """
        n = len(self)
        i = int(index) + n if int(index) < 0 else int(index)
        if not 0 <= i < n:
            raise IndexError(f"pool index {index} out of range for {n} items")
        j = int(self.index_in_file[i])
        arr = read_volume(self.path_of(i), index=None if j < 0 else j).data
        if arr.shape != self.box:
            shape = "x".join(map(str, arr.shape))
            box = "x".join(map(str, self.box))
            raise InvalidVolumeError(
                f"{self.path_of(i)}: box {shape} differs from the pool box {box} (of "
                f"{self.ids[0]}); all volumes of a pool must share one box size"
            )
        return -arr if self.invert else arr

    def inverted(self, invert: bool = True) -> PoolIndex:
        """This index with every item read contrast-inverted (``-x``); see
        :meth:`cryoal.io.VolumePool.inverted`. Shares the index arrays."""
        out = copy.copy(self)
        out.invert = bool(invert)
        return out

    def __getitem__(self, index: int) -> torch.Tensor:
        """Item ``index`` as a float32 tensor ``(1, D, H, W)`` (raw values)."""
        return torch.from_numpy(self.read(index)).unsqueeze(0)

    def checksum(self, index: int) -> str:
        """Header checksum of the file holding item ``index`` (:func:`entry_checksum`;
        consecutive items of one stack share one read).

        Raises
        ------
        InvalidVolumeError
            The file cannot be read.
        """
        rel = self.paths[index]
        last = getattr(self, "_last_checksum", None)
        if last is not None and last[0] == rel:
            return str(last[1])
        digest = entry_checksum(self.root / rel)
        self._last_checksum = (rel, digest)
        return digest

    def to_pool(self) -> Any:
        """The equivalent :class:`~cryoal.io.VolumePool` (same ids, order and labels).

        It holds one Python string per id: use it for pools that fit (≲10^6 items).
        """
        from cryoal.io.pool import VolumePool

        files = [os.fspath(self.root / p) for p in self.paths]
        pool = VolumePool(
            root=self.root,
            ids=list(self.ids),
            files=files,
            file_of=np.arange(len(self), dtype=np.int64),
            index_in_file=self.index_in_file.astype(np.int64),
            labels=self.labels,
            box=self._box,
            voxel_size=self._voxel_size,
        )
        pool.invert = self.invert
        return pool

    def rows(self, *, checksums: bool = True) -> Iterator[tuple[str, str, str]]:
        """``(id, path relative to root, checksum)`` per item, in pool order, streamed.

        Parameters
        ----------
        checksums
            Give each file's :func:`entry_checksum` (one 1 KiB read per file; the items
            of one stack share it); ``False`` gives ``""`` and reads nothing.

        Raises
        ------
        InvalidVolumeError
            A file cannot be read (with ``checksums``).
        """
        last_path, last_sum = "", ""
        for vid, rel in zip(self.ids, self.paths, strict=True):
            if checksums and rel != last_path:
                last_path, last_sum = rel, entry_checksum(self.root / rel)
            yield vid, rel, last_sum


class _LazyKeys(Sequence[str]):
    """The ids in sorted order, decoded on access (for :func:`bisect.bisect_left`)."""

    def __init__(self, ids: StringArray, order: np.ndarray) -> None:
        self.ids, self.order = ids, order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k: Any) -> Any:
        return self.ids[int(self.order[k])]


@contextlib.contextmanager
def _root_dir(root: Path) -> Iterator[Callable[[str], os.stat_result]]:
    """``os.stat`` of paths relative to ``root``; relative to an open descriptor of it
    where the platform allows (no walk of ``root``'s own components per file)."""
    try:
        fd = os.open(root, os.O_RDONLY) if os.stat in os.supports_dir_fd else None
    except OSError:
        fd = None  # the root itself moved or vanished: every stat below fails
    if fd is None:
        base = os.fspath(root)
        yield lambda rel: os.stat(os.path.join(base, rel))
        return
    try:
        yield lambda rel: os.stat(rel, dir_fd=fd)
    finally:
        os.close(fd)


def _extension_tail(name: str) -> str:
    """The part of ``name`` from its second-to-last dot: it decides the extension."""
    dot = name.rfind(".")
    prev = name.rfind(".", 0, dot) if dot > 0 else -1
    return name[prev:] if prev >= 0 else (name[dot:] if dot >= 0 else name)


def _split_item(raw: str) -> tuple[str, int]:
    """``stack.mrcs#4`` → (stack.mrcs, 4); ``000005@stack.mrcs`` → (stack.mrcs, 4)."""
    m = _RELION.match(raw)
    if m:
        return m.group(2), int(m.group(1)) - 1
    m = _HASH.match(raw)
    if m:
        return m.group(1), int(m.group(2))
    return raw, -1

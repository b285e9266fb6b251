"""Saving and loading pools: one JSON manifest format shared by every :class:`Pool`.

A pool manifest records what a pool is read from, not its voxels::

    {"format": "cryoal-pool", "format_version": 1, "kind": "volume",
     "sources": ["vols/a.mrc", ...],      # relative to the manifest where possible
     "ids": [...], "box": [D, H, W], "voxel_size": 4.0,
     "checksums": [...],                  # Pool.checksum(i) per item
     "extra": {...}}                      # what the kind needs to rebuild the pool

It is written atomically (:mod:`cryoal._atomic`). :func:`load_pool` reads the manifest
(or a :class:`~cryoal.io.index.PoolIndex` ``.npz``), dispatches on ``kind`` through
:data:`POOL_KINDS`, and the pool class's ``load`` rebuilds the pool without reading any
volume, then compares every item's checksum (:func:`~cryoal.io.base.entry_checksum`:
one 1 KiB header read per file) with the recorded one.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryoal._atomic import atomic_write_text
from cryoal.errors import InvalidVolumeError, PoolChangedError, PoolManifestError
from cryoal.io.base import Pool

__all__ = [
    "POOL_FORMAT",
    "POOL_FORMAT_VERSION",
    "POOL_KINDS",
    "PoolManifest",
    "load_pool",
    "read_pool_manifest",
    "register_pool_kind",
    "verify_checksums",
    "write_pool_manifest",
]

POOL_FORMAT = "cryoal-pool"
POOL_FORMAT_VERSION = 1

#: ``kind`` -> ``"module:Class"`` of the pool class whose ``load`` reads that kind
#: the compact index saves itself as ``.npz`` (its own format), recognised by the zip header
_INDEX_CLASS = "cryoal.io.index:PoolIndex"

POOL_KINDS: dict[str, str] = {
    "volume": "cryoal.io.pool:VolumePool",
    "image": "cryoal.io.images:ImagePool",
    "tomogram": "cryoal.io.tomopool:TomogramPool",
    "patch": "cryoal.tasks.seg_data:PatchPool",
}

_ZIP_MAGIC = b"PK\x03\x04"  # a PoolIndex .npz


def register_pool_kind(kind: str, target: str) -> None:
    """Register the pool class (``"module:Class"``) that loads manifests of ``kind``."""
    POOL_KINDS[kind] = target


@dataclass
class PoolManifest:
    """A parsed pool manifest; paths are absolute.

    Attributes
    ----------
    path
        The manifest file.
    kind
        Pool kind (a key of :data:`POOL_KINDS`).
    sources
        Files the pool reads, resolved against the manifest's folder.
    ids, box, voxel_size, checksums
        As the saved pool reported them (``voxel_size`` in Å, ``box`` in voxels).
    extra
        Kind-specific fields.
    """

    path: Path
    kind: str
    sources: list[Path]
    ids: list[str]
    box: tuple[int, ...]
    voxel_size: float
    checksums: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    def relative(self, path: str) -> Path:
        """A path stored in ``extra`` (see :func:`rel_path`), made absolute."""
        return _resolve(self.path.parent, path)

    def get(self, name: str, kind: type | tuple[type, ...], *, per_item: bool = False) -> Any:
        """Field ``name`` of :attr:`extra`, checked to be a ``kind`` (a list of one value
        per item when ``per_item``).

        Raises
        ------
        PoolManifestError
            The field is missing, of another type or length.
        """
        value = _field(self.extra, name, kind, self.path)
        if per_item and len(value) != len(self.ids):
            raise PoolManifestError(
                f"{self.path}: pool manifest field {name!r} has {len(value)} entries for "
                f"{len(self.ids)} items; save the pool again"
            )
        return value

    def labels(self) -> list[str | None]:
        """The per-item ``labels`` of :attr:`extra` (``None`` = unlabelled)."""
        labels = self.get("labels", list, per_item=True)
        if not all(lab is None or isinstance(lab, str) for lab in labels):
            raise PoolManifestError(f"{self.path}: pool manifest labels must be text or null")
        return list(labels)

    def source_index(self, name: str) -> list[int]:
        """Per-item indices into :attr:`sources` stored in ``extra[name]``."""
        values = self.get(name, list, per_item=True)
        n = len(self.sources)
        if not all(isinstance(v, int) and 0 <= v < n for v in values):
            raise PoolManifestError(
                f"{self.path}: pool manifest field {name!r} points past its {n} sources"
            )
        return list(values)


def _resolve(base: Path, stored: str) -> Path:
    p = Path(stored)
    return p if p.is_absolute() else Path(os.path.normpath(base / p))


def rel_path(path: str | os.PathLike[str], manifest: str | os.PathLike[str]) -> str:
    """``path`` relative to the folder of ``manifest`` (POSIX separators), or absolute
    where no relative path exists (another drive)."""
    folder = os.path.dirname(os.path.abspath(os.fspath(manifest)))
    target = os.path.abspath(os.fspath(path))
    try:
        return os.path.relpath(target, folder).replace(os.sep, "/")
    except ValueError:
        return target


def write_pool_manifest(
    path: str | os.PathLike[str],
    kind: str,
    pool: Pool,
    sources: Sequence[str | os.PathLike[str]],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``pool``'s manifest to ``path`` atomically; returns the path.

    Parameters
    ----------
    path
        The manifest file (``.json``).
    kind
        The pool kind, a key of :data:`POOL_KINDS`.
    pool
        The pool; its ids, box, voxel size and per-item checksums are recorded.
    sources
        The files the pool reads (stored relative to the manifest where possible).
    extra
        Kind-specific, JSON-serialisable fields.

    Raises
    ------
    InvalidVolumeError
        An item's file cannot be read (to checksum it).
    StorageError
        The manifest cannot be written.
    """
    target = Path(path)
    doc = {
        "format": POOL_FORMAT,
        "format_version": POOL_FORMAT_VERSION,
        "kind": kind,
        "sources": [rel_path(s, target) for s in sources],
        "ids": [str(s) for s in pool.ids],
        "box": [int(b) for b in pool.box],
        "voxel_size": float(pool.voxel_size),
        "checksums": [pool.checksum(i) for i in range(len(pool))],
        "extra": extra or {},
    }
    atomic_write_text(target, json.dumps(doc, separators=(",", ":")) + "\n")
    return target


def _field(doc: dict[str, Any], name: str, kind: type | tuple[type, ...], p: Path) -> Any:
    if name not in doc:
        raise PoolManifestError(f"{p}: pool manifest lacks {name!r}; save the pool again")
    value = doc[name]
    if not isinstance(value, kind):
        raise PoolManifestError(f"{p}: pool manifest field {name!r} is malformed; save it again")
    return value


def read_pool_manifest(path: str | os.PathLike[str], kind: str | None = None) -> PoolManifest:
    """Parse and validate a pool manifest written by :func:`write_pool_manifest`.

    Parameters
    ----------
    path
        The manifest.
    kind
        The kind the caller can load (``None``: any).

    Raises
    ------
    PoolManifestError
        Missing, unreadable, truncated or corrupt file; not a pool manifest; a newer
        format version; another kind than ``kind``; fields of inconsistent length.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise PoolManifestError(f"{p}: cannot read the pool manifest ({reason})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PoolManifestError(
            f"{p}: corrupt or truncated pool manifest (JSON error at line {exc.lineno}, "
            f"column {exc.colno}); save the pool again"
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != POOL_FORMAT:
        raise PoolManifestError(f"{p}: not a cryoal pool manifest (no format {POOL_FORMAT!r})")
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise PoolManifestError(f"{p}: pool manifest has no valid format_version")
    if version > POOL_FORMAT_VERSION:
        raise PoolManifestError(
            f"{p}: pool manifest format_version {version} is newer than this cryoal reads "
            f"({POOL_FORMAT_VERSION}); upgrade cryoal"
        )
    got = _field(doc, "kind", str, p)
    if kind is not None and got != kind:
        raise PoolManifestError(f"{p}: holds a {got!r} pool, not a {kind!r} pool")
    sources = _field(doc, "sources", list, p)
    ids = _field(doc, "ids", list, p)
    box = _field(doc, "box", list, p)
    voxel_size = _field(doc, "voxel_size", (int, float), p)
    checksums = _field(doc, "checksums", list, p)
    extra = _field(doc, "extra", dict, p)
    if not all(isinstance(s, str) for s in [*sources, *ids, *checksums]) or not all(
        isinstance(b, int) for b in box
    ):
        raise PoolManifestError(f"{p}: pool manifest holds values of the wrong type")
    if len(checksums) != len(ids) or not ids:
        raise PoolManifestError(
            f"{p}: pool manifest lists {len(ids)} ids but {len(checksums)} checksums"
        )
    return PoolManifest(
        path=p,
        kind=got,
        sources=[_resolve(p.parent, s) for s in sources],
        ids=ids,
        box=tuple(box),
        voxel_size=float(voxel_size),
        checksums=checksums,
        extra=extra,
    )


def verify_checksums(manifest: PoolManifest, pool: Pool) -> None:
    """Check that ``pool`` (rebuilt from ``manifest``) is the pool that was saved.

    Raises
    ------
    PoolChangedError
        Other ids, box or voxel size; an item whose file vanished, cannot be read or
        changed since the save (the message names the item and its file).
    """
    m = manifest
    if list(pool.ids) != m.ids:
        raise PoolChangedError(f"{m.path}: the rebuilt pool's ids differ from the saved ones")
    for i, want in enumerate(m.checksums):
        try:
            got = pool.checksum(i)
        except InvalidVolumeError as exc:
            raise PoolChangedError(
                f"{m.path}: item {m.ids[i]!r} cannot be read any more ({exc}); restore the "
                "file or rebuild the pool"
            ) from None
        if got != want:
            where = getattr(pool, "path_of", None)
            file = f" ({where(i)})" if where is not None else ""
            raise PoolChangedError(
                f"{m.path}: item {m.ids[i]!r}{file} changed since the pool was saved; "
                "restore the file or rebuild the pool"
            )
    if tuple(pool.box) != m.box or abs(float(pool.voxel_size) - m.voxel_size) > 1e-6:
        raise PoolChangedError(
            f"{m.path}: box / voxel size differ from the saved pool ({m.box}, {m.voxel_size} Å)"
        )


def _pool_class(kind: str, where: Path) -> Any:
    target = POOL_KINDS.get(kind)
    if target is None:
        raise PoolManifestError(
            f"{where}: unknown pool kind {kind!r}; known: {', '.join(sorted(POOL_KINDS))}"
        )
    return _class_of(target)


def _class_of(target: str) -> Any:
    """The class named ``"module:Class"``, imported when a pool of it is loaded (so that
    ``io.persist`` imports none of the pool modules, which import it)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def load_pool(path: str | os.PathLike[str]) -> Pool:
    """Load any saved pool: a pool manifest (``.json``) or a PoolIndex (``.npz``).

    Parameters
    ----------
    path
        File written by a pool's ``save``.

    Returns
    -------
    Pool
        The pool, of the class that saved it, checked against the recorded checksums.

    Raises
    ------
    PoolManifestError
        Not a saved pool, corrupt, truncated, unknown version or kind.
    PoolChangedError
        An item's file vanished or changed since the save.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise PoolManifestError(f"{p}: cannot read the saved pool ({exc.strerror})") from None
    if head == _ZIP_MAGIC:
        index: Pool = _class_of(_INDEX_CLASS).load(p)
        return index
    manifest = read_pool_manifest(p)
    pool: Pool = _pool_class(manifest.kind, p).load(p)
    return pool

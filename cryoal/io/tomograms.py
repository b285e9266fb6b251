"""Tomograms by name: MRC files and OME-Zarr groups, opened lazily, never copied.

A :class:`TomogramSet` maps tomogram names (``rlnTomoName``, a copick run name, a file
stem) to :class:`Tomogram` records: where the data are, their shape ``(nz, ny, nx)``
in voxels (numpy order, as ``mrcfile`` gives it) and their voxel size in Å. Build one
with :func:`open_tomograms` from

* a folder: every ``.mrc``/``.rec``/``.map`` file and every ``*.zarr`` OME-Zarr group,
  named by its file stem (``TS_01.mrc`` → ``TS_01``);
* a RELION 5 ``tomograms.star``: ``rlnTomoName`` → ``rlnTomoReconstructedTomogram``
  (else ``rlnTomoReconstructedTomogramHalf1``), paths relative to the STAR file's
  folder, its parents, or the current folder (RELION writes them relative to its
  project folder);
* a copick project (its config ``.json``): each run's tomogram of one voxel spacing
  and tomogram type, read through the ``copick`` package;
* one MRC file or one ``.zarr`` group.

Data are read through :meth:`Tomogram.array`: a read-only :class:`numpy.memmap` for MRC
(uncompressed files only) or a :class:`zarr.Array` of one scale level for OME-Zarr, so
slicing a box touches only that box's bytes (or chunks). OME-Zarr scales come from the
``multiscales`` metadata (``coordinateTransformations`` of type ``scale``, axes units
``angstrom``/``nanometer``/``micrometer``); level 0 is used unless a voxel spacing is
asked for. Errors are :class:`~cryoal.errors.InvalidVolumeError`, one line naming the
file or tomogram and the reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cryoal.errors import InvalidVolumeError, MissingDependencyError
from cryoal.io._copick import import_copick
from cryoal.io.mrc import read_header, split_extension

__all__ = [
    "TOMOGRAM_EXTENSIONS",
    "CopickSummary",
    "Tomogram",
    "TomogramSet",
    "describe_copick",
    "open_copick_root",
    "open_mrc_tomogram",
    "open_tomogram",
    "open_tomograms",
    "open_zarr_tomogram",
]

logger = logging.getLogger(__name__)

#: file extensions read as MRC tomograms (OME-Zarr groups are folders named ``*.zarr``)
TOMOGRAM_EXTENSIONS: tuple[str, ...] = (".mrc", ".rec", ".map")
_UNIT_TO_ANGSTROM = {
    "angstrom": 1.0,
    "nanometer": 10.0,
    "micrometer": 1.0e4,
    "millimeter": 1.0e7,
    "meter": 1.0e10,
}
_SPACING_RTOL = 0.01
_PROBE = 8  # edge of the value probes hashed into a tomogram's fingerprint


@dataclass(frozen=True)
class Tomogram:
    """One tomogram: where its data are, its shape and voxel size.

    Attributes
    ----------
    name
        The name particles refer to (``rlnTomoName``, copick run, file stem).
    path
        The MRC file or the OME-Zarr group (a local path; a URI for remote copick data).
    shape
        ``(nz, ny, nx)`` in voxels.
    voxel_size
        Å per voxel (x; MRC header or OME scale).
    format
        ``"mrc"`` or ``"zarr"``.
    level
        OME-Zarr: the dataset path of the scale used (``"0"``); ``""`` for MRC.
    dtype
        MRC: the stored numpy dtype string (with byte order).
    data_offset
        MRC: byte offset of the data block.
    """

    name: str
    path: str
    shape: tuple[int, int, int]
    voxel_size: float
    format: Literal["mrc", "zarr"]
    level: str = ""
    dtype: str = ""
    data_offset: int = 0
    store: Any = field(default=None, compare=False, repr=False)

    @property
    def centre(self) -> tuple[float, float, float]:
        """``(x, y, z)`` Å of the tomogram centre from the centre of voxel 0 (``n * vs / 2``,
        the RELION 5 convention for centred coordinates)."""
        nz, ny, nx = self.shape
        v = self.voxel_size
        return (nx * v / 2.0, ny * v / 2.0, nz * v / 2.0)

    def array(self) -> Any:
        """The data, opened without reading them: ``np.memmap`` (MRC) or ``zarr.Array``.

        Shape :attr:`shape`; slice it to read a box. Callers cache the handle per process
        (it is not pickled with a pool).

        Raises
        ------
        InvalidVolumeError
            The file or group cannot be opened or no longer has the recorded shape.
        """
        if self.format == "mrc":
            try:
                mm = np.memmap(
                    self.path,
                    dtype=np.dtype(self.dtype),
                    mode="r",
                    offset=self.data_offset,
                    shape=self.shape,
                )
            except (OSError, ValueError) as exc:
                raise InvalidVolumeError(
                    f"{self.path}: cannot memory-map tomogram {self.name!r} ({_one_line(exc)}); the file "
                    "changed or is truncated"
                ) from None
            return mm
        group = _open_group(self.store if self.store is not None else self.path, self.path)
        try:
            arr = group[self.level]
        except KeyError:
            raise InvalidVolumeError(
                f"{self.path}: OME-Zarr scale {self.level!r} of tomogram {self.name!r} is gone"
            ) from None
        if tuple(arr.shape[-3:]) != self.shape:
            raise InvalidVolumeError(
                f"{self.path}: tomogram {self.name!r} is now {arr.shape}, was {self.shape}"
            )
        return arr

    def fingerprint(self) -> str:
        """SHA-1 hex of what identifies the data: metadata plus three value probes.

        MRC: the 1024-byte header, the file size and ``8³`` voxels at the first corner,
        the centre and the last corner. OME-Zarr: the group's ``multiscales`` metadata,
        the level's shape/chunks/dtype and the same probes. Cheap (a few reads) and it
        changes when the tomogram is replaced.

        Raises
        ------
        InvalidVolumeError
            The data cannot be read.
        """
        h = hashlib.sha1()
        h.update(f"{self.format}|{self.shape}|{self.voxel_size:.6f}|{self.level}".encode())
        if self.format == "mrc":
            try:
                with open(self.path, "rb") as fh:
                    h.update(fh.read(1024))
                h.update(str(os.stat(self.path).st_size).encode())
            except OSError as exc:
                raise InvalidVolumeError(
                    f"{self.path}: cannot read tomogram {self.name!r} ({exc.strerror})"
                ) from None
        arr = self.array()
        if self.format == "zarr":
            group = _open_group(self.store if self.store is not None else self.path, self.path)
            h.update(json.dumps(dict(group.attrs), sort_keys=True, default=str).encode())
            h.update(f"{arr.chunks}|{arr.dtype}".encode())
        for start in _probe_starts(self.shape):
            sl = tuple(slice(s, s + _PROBE) for s in start)
            try:
                h.update(np.ascontiguousarray(arr[sl]).tobytes())
            except Exception as exc:  # zarr codecs raise assorted errors on broken chunks
                raise InvalidVolumeError(
                    f"{self.path}: cannot read tomogram {self.name!r} ({_one_line(exc)}); the data are "
                    "damaged, re-copy or re-export them"
                ) from None
        return h.hexdigest()


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's text on one line (pydantic and zarr messages span several)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _probe_starts(shape: Sequence[int]) -> list[tuple[int, ...]]:
    last = tuple(max(0, int(n) - _PROBE) for n in shape)
    mid = tuple(max(0, int(n) // 2 - _PROBE // 2) for n in shape)
    return [(0, 0, 0), mid, last]


# ---------------------------------------------------------------------- opening one


def open_mrc_tomogram(path: str | os.PathLike[str], name: str | None = None) -> Tomogram:
    """Describe one MRC tomogram from its header (the data are not read).

    Parameters
    ----------
    path
        An uncompressed ``.mrc``/``.rec``/``.map`` file holding one 3D volume.
    name
        Tomogram name (default: the file stem).

    Raises
    ------
    InvalidVolumeError
        Bad header, a compressed file (it cannot be memory-mapped), or not a 3D volume.
    """
    p = Path(path)
    header = read_header(p)
    if header.compression is not None:
        raise InvalidVolumeError(
            f"{p}: a {header.compression}-compressed tomogram cannot be memory-mapped; "
            "decompress it first"
        )
    if header.kind != "volume" or len(header.data_shape) != 3:
        raise InvalidVolumeError(
            f"{p}: holds a {header.kind} of shape {header.data_shape}, not one 3D tomogram"
        )
    nz, ny, nx = (int(s) for s in header.data_shape)
    return Tomogram(
        name=name or _stem(p.name),
        path=os.fspath(p.resolve()),
        shape=(nz, ny, nx),
        voxel_size=float(header.voxel_size),
        format="mrc",
        dtype=header.dtype.str,
        data_offset=int(header.data_offset),
    )


def _zarr() -> Any:
    try:
        import zarr
    except ImportError as exc:  # pragma: no cover - zarr is a core dependency
        raise MissingDependencyError(
            "reading OME-Zarr tomograms needs zarr; pip install 'zarr>=2.18'"
        ) from exc
    return zarr


def _open_group(store: Any, where: str) -> Any:
    zarr = _zarr()
    if (
        isinstance(store, (str, os.PathLike))
        and not Path(store).exists()
        and "://" not in str(store)
    ):
        raise InvalidVolumeError(f"{where}: not found; pass an OME-Zarr group (a *.zarr folder)")
    try:
        group = zarr.open_group(store, mode="r")
    except Exception as exc:  # zarr raises assorted errors on broken stores
        raise InvalidVolumeError(
            f"{where}: not a readable zarr group ({type(exc).__name__}: {_one_line(exc)}); is it an "
            "OME-Zarr tomogram?"
        ) from None
    return group


def _scales(group: Any, where: str) -> list[tuple[str, float]]:
    """``(dataset path, voxel size in Å)`` of each scale in the ``multiscales`` metadata."""
    try:
        ms = group.attrs.get("multiscales")
    except Exception as exc:
        raise InvalidVolumeError(f"{where}: unreadable .zattrs ({_one_line(exc)})") from None
    if not ms or not isinstance(ms, list) or not isinstance(ms[0], dict):
        raise InvalidVolumeError(
            f"{where}: no OME-NGFF 'multiscales' metadata in .zattrs; an OME-Zarr tomogram "
            "lists its scale levels there"
        )
    meta = ms[0]
    unit = "angstrom"
    for axis in meta.get("axes", []) or []:
        if isinstance(axis, dict) and axis.get("type") == "space" and axis.get("unit"):
            unit = str(axis["unit"])
            break
    factor = _UNIT_TO_ANGSTROM.get(unit)
    if factor is None:
        raise InvalidVolumeError(
            f"{where}: unknown axis unit {unit!r}; expected one of {', '.join(_UNIT_TO_ANGSTROM)}"
        )
    out = []
    for ds in meta.get("datasets", []) or []:
        path = str(ds.get("path", ""))
        scale = None
        for t in ds.get("coordinateTransformations", []) or []:
            if t.get("type") == "scale":
                scale = t.get("scale")
        if not path or not scale:
            raise InvalidVolumeError(
                f"{where}: multiscales dataset {ds!r} has no path or no scale transformation"
            )
        out.append((path, float(scale[-1]) * factor))
    if not out:
        raise InvalidVolumeError(f"{where}: the multiscales metadata list no datasets")
    return out


def open_zarr_tomogram(
    location: str | os.PathLike[str] | Any,
    name: str | None = None,
    *,
    voxel_spacing: float | None = None,
    where: str | None = None,
) -> Tomogram:
    """Describe one OME-Zarr tomogram (as copick and the CZ cryoET data portal store them).

    Parameters
    ----------
    location
        A ``*.zarr`` folder, a URI, or a zarr store (e.g. copick's ``tomogram.zarr()``).
    name
        Tomogram name (default: the folder stem).
    voxel_spacing
        Å per voxel of the scale level to use (within 1 %); default: level 0 (the finest).
    where
        How to name the group in messages (default: ``location``).

    Raises
    ------
    InvalidVolumeError
        Not a zarr group, no multiscales metadata, no scale of ``voxel_spacing``, a scale
        that is not 3D, or unreadable metadata.
    """
    is_path = isinstance(location, (str, os.PathLike))
    label = where or (os.fspath(location) if is_path else repr(location))
    group = _open_group(location, label)
    scales = _scales(group, label)
    if voxel_spacing is None:
        level, vs = scales[0]
    else:
        close = [(p, v) for p, v in scales if abs(v - voxel_spacing) <= _SPACING_RTOL * v]
        if not close:
            have = ", ".join(f"{v:g} Å (level {p})" for p, v in scales)
            raise InvalidVolumeError(
                f"{label}: no scale with voxel spacing {voxel_spacing:g} Å; it has {have}"
            )
        level, vs = close[0]
    try:
        arr = group[level]
    except KeyError:
        raise InvalidVolumeError(
            f"{label}: scale level {level!r} listed in multiscales is missing"
        ) from None
    except Exception as exc:
        raise InvalidVolumeError(
            f"{label}: unreadable scale level {level!r} ({_one_line(exc)})"
        ) from None
    shape = tuple(int(s) for s in getattr(arr, "shape", ()))
    if len(shape) == 4 and shape[0] == 1:
        raise InvalidVolumeError(
            f"{label}: scale {level!r} has a channel axis {shape}; cryoal reads 3D tomograms"
        )
    if len(shape) != 3 or min(shape) <= 0:
        raise InvalidVolumeError(f"{label}: scale {level!r} has shape {shape}, not a 3D volume")
    if vs <= 0:
        raise InvalidVolumeError(f"{label}: scale {level!r} has voxel size {vs} Å")
    if is_path and "://" not in os.fspath(location):
        path = os.fspath(Path(location).resolve())
        store = None
    else:
        path = label
        store = location
    return Tomogram(
        name=name or _stem(Path(label).name),
        path=path,
        shape=(shape[0], shape[1], shape[2]),
        voxel_size=float(vs),
        format="zarr",
        level=level,
        store=store,
    )


def _stem(file_name: str) -> str:
    low = file_name.lower()
    if low.endswith(".zarr"):
        return file_name[: -len(".zarr")]
    for ext in TOMOGRAM_EXTENSIONS:
        if low.endswith(ext):
            return file_name[: -len(ext)]
    return Path(file_name).stem


def _is_tomogram_file(name: str) -> bool:
    return name.lower().endswith(TOMOGRAM_EXTENSIONS)


def open_tomogram(path: str | os.PathLike[str], name: str | None = None) -> Tomogram:
    """One tomogram file or group: MRC by extension, OME-Zarr for ``*.zarr`` folders.

    Raises
    ------
    InvalidVolumeError
        Missing, or neither an MRC tomogram nor an OME-Zarr group.
    """
    p = Path(path)
    if not p.exists():
        raise InvalidVolumeError(f"{p}: not found")
    if p.is_dir() or p.name.lower().endswith(".zarr"):
        return open_zarr_tomogram(p, name)
    ext, _ = split_extension(p)  # raises naming the extension when cryoal cannot read it
    if ext in TOMOGRAM_EXTENSIONS:
        return open_mrc_tomogram(p, name)
    raise InvalidVolumeError(
        f"{p}: a {p.suffix} file is not read as a tomogram; use .mrc, .rec, .map or OME-Zarr"
    )


# ---------------------------------------------------------------------- a set of them


class TomogramSet(Mapping[str, Tomogram]):
    """Tomograms by name, in a stable order (as listed or sorted by name).

    Attributes
    ----------
    root
        The folder the set was found in (pool root of pools built on it).
    source
        ``"directory"``, ``"relion"``, ``"copick"`` or ``"file"``.
    origin
        What the set was opened from (folder, STAR file, copick config), for messages.
    """

    def __init__(
        self,
        tomograms: Sequence[Tomogram],
        *,
        root: str | os.PathLike[str],
        source: str,
        origin: str,
    ) -> None:
        self.root = Path(root).resolve()
        self.source = source
        self.origin = origin
        self._by_name: dict[str, Tomogram] = {}
        for t in tomograms:
            if t.name in self._by_name:
                raise InvalidVolumeError(
                    f"{origin}: two tomograms are named {t.name!r} ({self._by_name[t.name].path} "
                    f"and {t.path}); names must be unique"
                )
            self._by_name[t.name] = t
        if not self._by_name:
            raise InvalidVolumeError(f"{origin}: no tomograms found")

    def __getitem__(self, name: str) -> Tomogram:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"TomogramSet({len(self)} tomograms from {self.origin!r}, {self.source})"

    def shapes(self) -> dict[str, tuple[int, int, int]]:
        """``{name: (nz, ny, nx)}``."""
        return {n: t.shape for n, t in self._by_name.items()}

    def voxel_sizes(self) -> dict[str, float]:
        """``{name: Å per voxel}``."""
        return {n: t.voxel_size for n, t in self._by_name.items()}

    def resolve(self, name: str) -> Tomogram:
        """The tomogram called ``name``; else the one file whose stem is ``name`` plus a
        suffix or prefix separated by ``_``, ``.`` or ``-`` (``TS_01_rec`` for ``TS_01``).

        Raises
        ------
        KeyError
            No tomogram, or several candidates.
        """
        if name in self._by_name:
            return self._by_name[name]
        seps = ("_", ".", "-")
        cands = [
            t
            for n, t in self._by_name.items()
            if any(n.startswith(name + s) or n.endswith(s + name) for s in seps)
        ]
        if len(cands) == 1:
            return cands[0]
        raise KeyError(name)

    def missing_message(self, names: Sequence[str]) -> str:
        """One line naming tomograms that are not in the set, with the closest names."""
        import difflib

        have = list(self._by_name)
        hints = []
        for n in names[:3]:
            close = difflib.get_close_matches(n, have, n=1)
            if close:
                hints.append(f"{n!r} → did you mean {close[0]!r}?")
        shown = ", ".join(have[:5]) + (" ..." if len(have) > 5 else "")
        return (
            f"no tomogram for {len(names)} tomogram name(s) of the particles "
            f"({', '.join(repr(n) for n in names[:5])}{' ...' if len(names) > 5 else ''}) in "
            f"{self.origin} (it has {shown})" + (f"; {'; '.join(hints)}" if hints else "")
        )


def _from_directory(folder: Path) -> TomogramSet:
    found: list[Tomogram] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise InvalidVolumeError(f"{folder}: cannot list the folder ({exc.strerror})") from None
    for e in entries:
        if e.name.startswith("."):
            continue
        if e.name.lower().endswith(".zarr") and e.is_dir():
            found.append(open_zarr_tomogram(e.path))
        elif e.is_file() and _is_tomogram_file(e.name):
            found.append(open_mrc_tomogram(e.path))
    if not found:
        raise InvalidVolumeError(
            f"{folder}: no tomograms (.mrc, .rec, .map files or *.zarr OME-Zarr groups) in "
            "this folder"
        )
    return TomogramSet(found, root=folder, source="directory", origin=str(folder))


def _from_relion(star: Path) -> TomogramSet:
    import pandas as pd
    import starfile

    try:
        blocks = starfile.read(star, always_dict=True)
    except Exception as exc:  # starfile raises assorted parser errors
        raise InvalidVolumeError(f"{star}: not a readable STAR file ({_one_line(exc)})") from None
    table = next(
        (t for t in blocks.values() if isinstance(t, pd.DataFrame) and "rlnTomoName" in t.columns),
        None,
    )
    if table is None:
        raise InvalidVolumeError(
            f"{star}: no table with rlnTomoName; is it a RELION 5 tomograms.star?"
        )
    col = next(
        (
            c
            for c in ("rlnTomoReconstructedTomogram", "rlnTomoReconstructedTomogramHalf1")
            if c in table.columns
        ),
        None,
    )
    if col is None:
        raise InvalidVolumeError(
            f"{star}: no rlnTomoReconstructedTomogram column; reconstruct the tomograms in "
            "RELION or pass --tomograms a folder of tomograms named like rlnTomoName"
        )
    bases = [star.resolve().parent, *list(star.resolve().parents)[:3], Path.cwd()]
    found = []
    for i, (name, raw) in enumerate(zip(table["rlnTomoName"], table[col], strict=True)):
        rel = str(raw).strip()
        cands = [Path(rel)] if os.path.isabs(rel) else [b / rel for b in bases]
        hit = next((c for c in cands if c.exists()), None)
        if hit is None:
            raise InvalidVolumeError(
                f"{star}: row {i + 1}: tomogram {name!r} file {rel!r} ({col}) not found "
                f"relative to {bases[0]} or the current folder"
            )
        found.append(open_tomogram(hit, str(name)))
    return TomogramSet(found, root=star.resolve().parent, source="relion", origin=str(star))


def open_copick_root(config: str | os.PathLike[str]) -> Any:
    """Open a copick project from its config file.

    Raises
    ------
    MissingDependencyError
        ``copick`` is not installed.
    InvalidVolumeError
        The config cannot be read.
    """
    copick = import_copick("reading copick projects")
    p = Path(config)
    if not p.is_file():
        raise InvalidVolumeError(f"{p}: copick config not found")
    try:
        return copick.from_file(os.fspath(p))
    except Exception as exc:  # copick/pydantic raise assorted errors
        raise InvalidVolumeError(
            f"{p}: not a readable copick config ({_one_line(exc)}); pass the project's copick "
            "config file"
        ) from None


def _from_copick(config: Path, voxel_spacing: float | None, tomo_type: str | None) -> TomogramSet:
    root = open_copick_root(config)
    found = []
    runs = list(root.runs)
    if not runs:
        raise InvalidVolumeError(f"{config}: the copick project has no runs")
    for run in runs:
        spacings = list(run.voxel_spacings)
        if voxel_spacing is None:
            sizes = sorted({float(vs.voxel_size) for vs in spacings})
            if len(sizes) > 1:
                raise InvalidVolumeError(
                    f"{config}: run {run.name!r} has tomograms at {', '.join(f'{s:g}' for s in sizes)} "
                    "Å; choose one with --voxel-spacing"
                )
            chosen = spacings
        else:
            chosen = [
                vs
                for vs in spacings
                if abs(float(vs.voxel_size) - voxel_spacing) <= _SPACING_RTOL * voxel_spacing
            ]
        tomos = [t for vs in chosen for t in vs.tomograms]
        if tomo_type is not None:
            tomos = [t for t in tomos if t.tomo_type == tomo_type]
        if not tomos:
            logger.info("copick run %s: no tomogram of the chosen spacing/type", run.name)
            continue
        types = sorted({t.tomo_type for t in tomos})
        if len(types) > 1:
            raise InvalidVolumeError(
                f"{config}: run {run.name!r} has tomogram types {', '.join(types)}; choose one "
                "with --tomo-type"
            )
        t = tomos[0]
        vs = float(t.voxel_spacing.voxel_size)
        found.append(_copick_tomogram(t, run.name, vs, config))
    if not found:
        what = []
        if voxel_spacing is not None:
            what.append(f"voxel spacing {voxel_spacing:g} Å")
        if tomo_type is not None:
            what.append(f"type {tomo_type!r}")
        raise InvalidVolumeError(
            f"{config}: no run has a tomogram" + (f" of {' and '.join(what)}" if what else "")
        )
    return TomogramSet(found, root=config.resolve().parent, source="copick", origin=str(config))


def _copick_tomogram(t: Any, run: str, vs: float, config: Path) -> Tomogram:
    where = f"{config}: run {run!r} tomogram {t.tomo_type!r} at {vs:g} Å"
    try:
        store = t.zarr()
    except Exception as exc:
        raise InvalidVolumeError(
            f"{where}: cannot open its zarr store ({_one_line(exc)})"
        ) from None
    fs = getattr(store, "fs", None)
    local = getattr(store, "path", None) or getattr(store, "root", None)  # FSStore / FSMap
    protocol = getattr(fs, "protocol", ())
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol or ())
    location: Any = local if local is not None and "file" in protocols else store
    return open_zarr_tomogram(location, run, voxel_spacing=vs, where=where)


def open_tomograms(
    path: str | os.PathLike[str],
    *,
    voxel_spacing: float | None = None,
    tomo_type: str | None = None,
) -> TomogramSet:
    """Open the tomograms at ``path`` (see the module doc for what it may be).

    Parameters
    ----------
    path
        A folder of tomograms, a RELION 5 ``tomograms.star``, a copick config ``.json``,
        one MRC tomogram or one ``*.zarr`` group.
    voxel_spacing
        copick: the voxel spacing (Å) of the tomograms to use (needed when a run has
        several).
    tomo_type
        copick: the tomogram type (``wbp``, ``denoised``, ...; needed when a run has
        several).

    Raises
    ------
    InvalidVolumeError
        Missing path, no tomograms, a listed tomogram file missing, or an unreadable one.
    """
    p = Path(path)
    if not p.exists():
        raise InvalidVolumeError(
            f"{p}: not found; pass a folder of tomograms, a tomograms.star or a copick config"
        )
    low = p.name.lower()
    if p.is_dir() and not low.endswith(".zarr"):
        return _from_directory(p)
    if low.endswith(".star"):
        return _from_relion(p)
    if low.endswith(".json"):
        return _from_copick(p, voxel_spacing, tomo_type)
    t = open_tomogram(p)
    return TomogramSet([t], root=p.resolve().parent, source="file", origin=str(p))


@dataclass(frozen=True)
class CopickSummary:
    """What a copick project holds (see :func:`describe_copick`).

    Attributes
    ----------
    objects
        Pickable object names.
    tomograms
        ``(run, voxel spacing Å, tomo type, (nz, ny, nx) or None when unreadable)``.
    picks
        ``(run, object, user id, session id, number of points)``.
    """

    objects: list[str]
    tomograms: list[tuple[str, float, str, tuple[int, int, int] | None]]
    picks: list[tuple[str, str, str, str, int]]


def describe_copick(config: str | os.PathLike[str]) -> CopickSummary:
    """List a copick project's objects, tomograms (with shapes) and picks per run.

    Raises
    ------
    InvalidVolumeError
        The config cannot be read.
    """
    root = open_copick_root(config)
    tomos: list[tuple[str, float, str, tuple[int, int, int] | None]] = []
    picks: list[tuple[str, str, str, str, int]] = []
    for run in root.runs:
        for vs in run.voxel_spacings:
            for t in vs.tomograms:
                try:
                    shape: tuple[int, int, int] | None = _copick_tomogram(
                        t, run.name, float(vs.voxel_size), Path(config)
                    ).shape
                except InvalidVolumeError:
                    shape = None
                tomos.append((run.name, float(vs.voxel_size), str(t.tomo_type), shape))
        for p in run.picks:
            try:
                n = len(p.points or [])
            except Exception:  # an unreadable picks file counts as empty here
                n = 0
            picks.append((run.name, p.pickable_object_name, p.user_id, str(p.session_id), n))
    return CopickSummary([o.name for o in root.pickable_objects], tomos, picks)

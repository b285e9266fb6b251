"""TomogramPool: subtomograms cut from tomograms on the fly, at particle coordinates.

A :class:`TomogramPool` is a pool (see :class:`cryoal.io.base.Pool`) over a
:class:`~cryoal.io.tomograms.TomogramSet` and a particle table (a
:class:`cryoal.io.particles.ParticleList` or its ``table``): item ``i`` is the box of
``box`` voxels centred on particle ``i``, read from the memory-mapped MRC file or the
OME-Zarr chunks that hold it when it is asked for. Nothing is extracted ahead of time
and no tomogram is copied into memory.

Geometry
--------
Particle positions are Å from the centre of voxel 0 (``x`` along the numpy last axis),
so the centre in voxels is ``c = (z, y, x) / voxel_size``. The box holds voxels
``[i0 - N // 2, i0 - N // 2 + N)`` on each axis with ``i0 = floor(c + 0.5)`` (the
nearest voxel), so the particle sits at index ``N // 2`` of the box, to within half a
voxel. With ``shift`` the box is resampled so the particle sits exactly there:

``"trilinear"``
    box voxel ``k`` = trilinear interpolation of the tomogram at ``c - N // 2 + k``.
``"fourier"``
    the nearest-voxel box is shifted by ``c - i0`` (at most half a voxel) with the
    Fourier shift theorem; the box is treated as periodic, as in RELION's extraction.

Edges
-----
A box that reaches past the tomogram is filled (``edge="mean"``: with the mean of its
voxels inside the tomogram; ``edge="zero"``: with zeros) or the particle is left out of
the pool (``edge="refuse"``; :attr:`TomogramPool.refused` says why, per particle). A
particle whose centre lies outside the tomogram is an error.

OME-Zarr tomograms are read through a small per-process cache of decoded chunks
(:data:`CHUNK_CACHE_BYTES`): copick and the CZ cryoET data portal store 256³-voxel chunks,
so without it every 32³ box would decompress a whole chunk again; boxes read in pool order
(particles of one tomogram, near each other) decode each chunk once.

Ids are the particle ids (``TS_01:000123``), stable across runs; the pool keeps the
particle file order. :meth:`TomogramPool.checksum` of an item hashes its tomogram's
fingerprint, its coordinates and the extraction settings, so a project notices when a
tomogram is replaced or a coordinate moves.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from cryoal.errors import (
    ConfigError,
    EmptyPoolError,
    InvalidLabelsError,
    InvalidVolumeError,
    PoolManifestError,
)
from cryoal.io._items import LabelledItems
from cryoal.io.persist import read_pool_manifest, rel_path, verify_checksums, write_pool_manifest
from cryoal.io.tomograms import Tomogram, TomogramSet, open_tomograms

__all__ = [
    "EDGE_MODES",
    "SHIFT_MODES",
    "EdgeReport",
    "TomogramPool",
    "box_bounds",
    "extract_box",
    "open_tomogram_pool",
]

logger = logging.getLogger(__name__)

Edge = Literal["mean", "zero", "refuse"]
Shift = Literal["none", "trilinear", "fourier"]
#: how boxes reaching past the tomogram are handled
EDGE_MODES: tuple[str, ...] = ("mean", "zero", "refuse")
#: how sub-voxel particle positions are handled
SHIFT_MODES: tuple[str, ...] = ("none", "trilinear", "fourier")
_PIXEL_RTOL = 0.01
_MAX_LISTED = 5
#: bytes of decoded OME-Zarr chunks a pool keeps per process (all its tomograms together);
#: a 256³ float32 chunk is 64 MiB, so 256 MiB holds the up to 4 chunks of typical box reads
CHUNK_CACHE_BYTES = 256 * 2**20


class _ChunkLRU:
    """Decoded chunks of a pool's zarr tomograms, least recently used dropped first, within
    ``max_bytes`` in all (one per pool and process)."""

    def __init__(self, max_bytes: int = CHUNK_CACHE_BYTES) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[tuple[int, tuple[int, ...]], np.ndarray] = OrderedDict()
        self._bytes = 0
        self.decoded = 0  # chunks decoded so far (for tests and benchmarks)

    def get(self, key: tuple[int, tuple[int, ...]], load: Callable[[], np.ndarray]) -> np.ndarray:
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            return hit
        data = load()
        self.decoded += 1
        self._items[key] = data
        self._bytes += data.nbytes
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= old.nbytes
        return data


class _ChunkCachedArray:
    """A ``zarr.Array`` read through a :class:`_ChunkLRU` (same values, fewer decodes).

    Slicing with a tuple of step-1 slices assembles the region from the chunks that hold
    it, decoding each chunk once while it stays in the cache; other keys, and chunks
    larger than the cache, go to the array directly.
    """

    def __init__(self, array: Any, cache: _ChunkLRU, key: int) -> None:
        self.array = array
        self.shape = tuple(int(n) for n in array.shape)
        self.dtype = array.dtype
        self.chunks = tuple(int(c) for c in array.chunks)
        self.cache, self.key = cache, key

    def _chunk(self, idx: tuple[int, ...]) -> np.ndarray:
        where = tuple(
            slice(i * c, min((i + 1) * c, n))
            for i, c, n in zip(idx, self.chunks, self.shape, strict=True)
        )
        return self.cache.get((self.key, idx), lambda: np.asarray(self.array[where]))

    def __getitem__(self, key: Any) -> np.ndarray:
        if not (
            isinstance(key, tuple)
            and len(key) == len(self.shape)
            and all(isinstance(k, slice) and k.step in (None, 1) for k in key)
        ):
            return np.asarray(self.array[key])
        bounds = [k.indices(n)[:2] for k, n in zip(key, self.shape, strict=True)]
        size = [max(b - a, 0) for a, b in bounds]
        chunk_bytes = int(np.prod(self.chunks)) * np.dtype(self.dtype).itemsize
        if 0 in size or chunk_bytes > self.cache.max_bytes:
            return np.asarray(self.array[key])
        out = np.empty(size, dtype=self.dtype)
        ranges = [
            range(a // c, (b - 1) // c + 1) for (a, b), c in zip(bounds, self.chunks, strict=True)
        ]
        for idx in itertools.product(*ranges):
            data = self._chunk(idx)
            src, dst = [], []
            for (a, b), i, c in zip(bounds, idx, self.chunks, strict=True):
                lo, hi = max(a, i * c), min(b, (i + 1) * c)
                src.append(slice(lo - i * c, hi - i * c))
                dst.append(slice(lo - a, hi - a))
            out[tuple(dst)] = data[tuple(src)]
        return out


def _as_box(box: int | Sequence[int]) -> tuple[int, int, int]:
    dims = (int(box),) * 3 if isinstance(box, (int, np.integer)) else tuple(int(b) for b in box)
    if len(dims) != 3 or min(dims) < 1:
        raise ConfigError(f"box must be a positive size in voxels (or three), got {box!r}")
    return (dims[0], dims[1], dims[2])


def box_bounds(
    centre: Sequence[float] | np.ndarray, box: int | Sequence[int], shift: str = "none"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The voxel region a box reads, and the sub-voxel remainder.

    Parameters
    ----------
    centre
        ``(z, y, x)`` particle centre in voxels (0 = centre of voxel 0).
    box
        Box edge(s) in voxels.
    shift
        One of :data:`SHIFT_MODES`; ``"trilinear"`` reads one more voxel per axis.

    Returns
    -------
    start, stop, frac
        int64 ``(3,)`` region ``[start, stop)`` and float64 ``(3,)`` remainder: ``c -
        i0`` in ``[-0.5, 0.5)`` (none/fourier), or ``c - floor(c)`` in ``[0, 1)``
        (trilinear).
    """
    c = np.asarray(centre, dtype=np.float64)
    n = np.asarray(_as_box(box), dtype=np.int64)
    if shift == "trilinear":
        base = np.floor(c)
        frac = c - base
        start = base.astype(np.int64) - n // 2
        stop = start + n + (frac > 0)
    else:
        base = np.floor(c + 0.5)
        frac = c - base
        start = base.astype(np.int64) - n // 2
        stop = start + n
    return start, stop, frac


def _read_region(
    volume: Any, start: np.ndarray, stop: np.ndarray, fill: str
) -> tuple[np.ndarray, bool]:
    """Voxels ``[start, stop)`` of ``volume`` as float32, filled where outside it."""
    shape = np.asarray(volume.shape[-3:], dtype=np.int64)
    lo = np.clip(start, 0, shape)
    hi = np.clip(stop, 0, shape)
    inside = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    data = np.asarray(volume[inside], dtype=np.float32)
    edge = bool((start < 0).any() or (stop > shape).any())
    if not edge:
        return np.array(data, dtype=np.float32, copy=True), False
    size = tuple(int(s) for s in stop - start)
    value = float(data.mean(dtype=np.float64)) if fill == "mean" and data.size else 0.0
    out = np.full(size, value, dtype=np.float32)
    where = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, start, strict=True))
    out[where] = data
    return out, True


def _trilinear(region: np.ndarray, frac: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    out = region.astype(np.float64)
    for axis in range(3):
        f = float(frac[axis])
        if f == 0.0:
            continue
        a = np.take(out, np.arange(box[axis]), axis=axis)
        b = np.take(out, np.arange(1, box[axis] + 1), axis=axis)
        out = (1.0 - f) * a + f * b
    return out.astype(np.float32)


def _fourier_shift(x: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """``y[k] = x(k + frac)`` for a periodic band-limited ``x`` (shift theorem)."""
    if not np.any(frac):
        return x
    spectrum = np.fft.fftn(x.astype(np.float64))
    phase = np.ones(x.shape, dtype=np.complex128)
    for axis, f in enumerate(frac):
        freq = np.fft.fftfreq(x.shape[axis])
        ramp = np.exp(2j * np.pi * freq * float(f))
        if x.shape[axis] % 2 == 0:  # Nyquist term: its real part keeps the result real
            ramp[x.shape[axis] // 2] = np.cos(np.pi * float(f))
        shape = [1, 1, 1]
        shape[axis] = x.shape[axis]
        phase = phase * ramp.reshape(shape)
    return np.fft.ifftn(spectrum * phase).real.astype(np.float32)


def extract_box(
    volume: Any,
    centre: Sequence[float] | np.ndarray,
    box: int | Sequence[int],
    *,
    shift: str = "none",
    fill: str = "mean",
) -> tuple[np.ndarray, bool]:
    """Cut one box out of a tomogram (any array-like sliceable ``(nz, ny, nx)``).

    Parameters
    ----------
    volume
        ``(nz, ny, nx)``: numpy array, ``np.memmap`` or ``zarr.Array``; only the box's
        region is read.
    centre
        ``(z, y, x)`` particle centre in voxels (0 = centre of voxel 0).
    box
        Box edge in voxels (one size, or ``(D, H, W)``).
    shift
        ``"none"`` (nearest voxel), ``"trilinear"`` or ``"fourier"`` (see module doc).
    fill
        ``"mean"`` or ``"zero"``: the value outside the tomogram (mean of the box's
        voxels inside it, or 0).

    Returns
    -------
    box, hit_edge
        float32 ``(D, H, W)`` (a new array) and whether the box reached past the edge.

    Raises
    ------
    ConfigError
        Unknown ``shift`` or ``fill``.
    """
    if shift not in SHIFT_MODES:
        raise ConfigError(f"shift must be one of {', '.join(SHIFT_MODES)}, got {shift!r}")
    if fill not in ("mean", "zero"):
        raise ConfigError(f"fill must be 'mean' or 'zero', got {fill!r}")
    dims = _as_box(box)
    start, stop, frac = box_bounds(centre, dims, shift)
    region, edge = _read_region(volume, start, stop, fill)
    if shift == "trilinear":
        return _trilinear(region, frac, dims), edge
    if shift == "fourier":
        return _fourier_shift(region, frac), edge
    return region, edge


@dataclass(frozen=True)
class EdgeReport:
    """Particles per tomogram, and how many boxes reach past its edge.

    Attributes
    ----------
    per_tomogram
        ``{tomo: (particles, boxes at the edge)}`` in tomogram order.
    refused
        ``{particle id: reason}`` for particles left out (``edge="refuse"``).
    """

    per_tomogram: dict[str, tuple[int, int]]
    refused: dict[str, str]

    @property
    def n_edge(self) -> int:
        """Boxes that reach past a tomogram edge."""
        return sum(e for _, e in self.per_tomogram.values())


def _particle_table(particles: Any) -> tuple[pd.DataFrame, dict[str, float]]:
    table = getattr(particles, "table", particles)
    if not isinstance(table, pd.DataFrame):
        raise InvalidLabelsError(
            f"particles must be a ParticleList or a DataFrame, got {type(particles).__name__}"
        )
    pixel = dict(getattr(particles, "pixel_size", {}) or {})
    missing = [c for c in ("id", "tomo", "x", "y", "z") if c not in table.columns]
    if missing:
        raise InvalidLabelsError(
            f"particle table lacks column(s) {', '.join(missing)}; expected id, tomo, x, y, z (Å)"
        )
    return table.reset_index(drop=True), pixel


class TomogramPool(LabelledItems, Dataset[torch.Tensor]):
    """Boxes around particles, read lazily from tomograms; a :class:`~cryoal.io.base.Pool`.

    Parameters
    ----------
    tomograms
        The tomograms (by name).
    particles
        A :class:`cryoal.io.particles.ParticleList` (or its ``table``): ``id``, ``tomo``,
        ``x``, ``y``, ``z`` in Å from the centre of voxel 0; an optional ``label``
        column becomes :attr:`labels`.
    box
        Box edge in voxels (one size or ``(D, H, W)``).
    edge
        ``"mean"`` or ``"zero"`` fill for boxes reaching past the tomogram, or
        ``"refuse"`` to leave those particles out (:attr:`refused`).
    shift
        ``"none"``, ``"trilinear"`` or ``"fourier"`` (see module doc).
    check_units
        Refuse particle lists whose coordinates all crowd into the first
        ``1 / voxel_size`` of every tomogram: pixel coordinates read as Å.

    Attributes
    ----------
    ids
        Particle ids, in particle-file order.
    root
        The tomograms' folder (recorded as the pool root of a project).
    tomograms
        The :class:`TomogramSet`.
    particles
        The particle table of the pool's items (refused ones removed), index 0..N-1.
    labels
        One label per item, None where unlabelled.
    refused
        ``{particle id: reason}`` for particles left out by ``edge="refuse"``.

    Raises
    ------
    InvalidVolumeError
        A particle's tomogram is missing; tomograms of different voxel sizes; a
        coordinate outside its tomogram; a coordinate pixel size that differs from its
        tomogram's; coordinates that look like pixels read as Å.
    InvalidLabelsError
        The table lacks columns, or repeats an id.
    EmptyPoolError
        No particles (left).
    ConfigError
        Bad ``box``, ``edge`` or ``shift``.
    """

    def __init__(
        self,
        tomograms: TomogramSet,
        particles: Any,
        box: int | Sequence[int],
        *,
        edge: str = "mean",
        shift: str = "none",
        check_units: bool = True,
        labels: Sequence[str | None] | None = None,
    ) -> None:
        if edge not in EDGE_MODES:
            raise ConfigError(f"edge must be one of {', '.join(EDGE_MODES)}, got {edge!r}")
        if shift not in SHIFT_MODES:
            raise ConfigError(f"shift must be one of {', '.join(SHIFT_MODES)}, got {shift!r}")
        self._box = _as_box(box)
        self.edge = edge
        self.shift = shift
        self.tomograms = tomograms
        self.root = tomograms.root
        table, pixel = _particle_table(particles)
        self.source = str(getattr(particles, "source", "table"))
        if table.empty:
            raise EmptyPoolError(f"{self.source} particles: the particle list holds no particles")
        self.refused: dict[str, str] = {}
        self._refused_tomo: dict[str, str] = {}
        table = self._check(table, pixel, check_units)
        self.particles = table
        if self.particles.empty:
            raise EmptyPoolError(
                f"all {len(self.refused)} particles were refused (boxes of "
                f"{'x'.join(map(str, self._box))} voxels reach past the tomogram edges); "
                "use a smaller --box or --edge mean"
            )
        self.ids: list[str] = [str(v) for v in self.particles["id"]]
        names = list(tomograms)
        lookup = {n: i for i, n in enumerate(names)}
        self._names = names
        self._tomo_of = np.asarray([lookup[str(t)] for t in self.particles["tomo"]], dtype=np.int64)
        vs = self.voxel_size
        self._centres = self.particles[["z", "y", "x"]].to_numpy(dtype=np.float64) / vs
        if labels is not None:
            self.labels: list[str | None] = list(labels)
        elif "label" in self.particles.columns:
            self.labels = [
                None
                if v is None or (isinstance(v, float) and math.isnan(v)) or str(v) == ""
                else str(v)
                for v in self.particles["label"]
            ]
        else:
            self.labels = [None] * len(self.ids)
        self.invert = False
        self._arrays: dict[int, Any] = {}
        self._chunk_cache = _ChunkLRU()  # shared with the pools derived from this one
        self._fingerprints: dict[int, str] = {}
        self._id_index: dict[str, int] | None = None

    # ------------------------------------------------------------------ checking
    def _check(
        self, table: pd.DataFrame, pixel: dict[str, float], check_units: bool
    ) -> pd.DataFrame:
        where = f"{self.source} particles"
        ids = table["id"].astype(str)
        dup = ids[ids.duplicated()].tolist()
        if dup:
            raise InvalidLabelsError(
                f"{where}: {len(dup)} repeated particle id(s) ({', '.join(dup[:_MAX_LISTED])}); "
                "ids must be unique"
            )
        tomos = table["tomo"].astype(str)
        used = list(dict.fromkeys(tomos))
        resolved: dict[str, Tomogram] = {}
        missing = []
        for t in used:
            try:
                resolved[t] = self.tomograms.resolve(t)
            except KeyError:
                missing.append(t)
        if missing:
            raise InvalidVolumeError(self.tomograms.missing_message(missing))
        # only the tomograms the particles use, named as the particles name them
        self.tomograms = TomogramSet(
            [Tomogram(**{**_fields(resolved[t]), "name": t}) for t in used],
            root=self.tomograms.root,
            source=self.tomograms.source,
            origin=self.tomograms.origin,
        )
        sizes = {t: resolved[t].voxel_size for t in used}
        ref = sizes[used[0]]
        odd = [t for t in used if abs(sizes[t] - ref) > _PIXEL_RTOL * ref]
        if odd:
            shown = ", ".join(f"{t} {sizes[t]:g} Å" for t in [used[0], *odd[:_MAX_LISTED]])
            raise InvalidVolumeError(
                f"{self.tomograms.origin}: tomograms of different voxel sizes ({shown}); a pool "
                "needs one voxel size, use tomograms of one binning (copick: --voxel-spacing)"
            )
        for t in used:
            ps = pixel.get(t)
            if ps is not None and abs(float(ps) - sizes[t]) > _PIXEL_RTOL * sizes[t]:
                raise InvalidVolumeError(
                    f"{where}: coordinates of tomogram {t!r} refer to a {float(ps):g} Å pixel but "
                    f"{resolved[t].path} has {sizes[t]:g} Å voxels; pass the pixel size of the "
                    "tomogram the particles were picked on (--coords-pixel-size), or its tomograms"
                )
        xyz = table[["x", "y", "z"]].to_numpy(dtype=np.float64)
        bad_num = np.flatnonzero(~np.isfinite(xyz).all(axis=1))
        if bad_num.size:
            rows = ", ".join(f"{ids[i]} (row {i + 1})" for i in bad_num[:_MAX_LISTED])
            raise InvalidVolumeError(
                f"{where}: {bad_num.size} particles have no finite x/y/z: {rows}"
            )
        vs = ref
        shapes = np.asarray(
            [resolved[str(t)].shape[::-1] for t in tomos], dtype=np.float64
        )  # x,y,z
        px = xyz / vs
        outside = np.flatnonzero(((px < -0.5) | (px >= shapes - 0.5)).any(axis=1))
        if outside.size:
            i = int(outside[0])
            extent = shapes[i] * vs
            hint = ""
            most = outside.size > len(table) / 2
            if most and vs > 1 and (xyz[outside] / vs / vs < shapes[outside]).all():
                hint = "; are they Å read as pixels? (pass --units angstrom)"
            raise InvalidVolumeError(
                f"{where}: {outside.size} of {len(table)} particles lie outside their tomogram "
                f"(first: {ids[i]} at ({xyz[i, 0]:g}, {xyz[i, 1]:g}, {xyz[i, 2]:g}) Å, tomogram "
                f"{tomos[i]!r} spans 0..({extent[0]:g}, {extent[1]:g}, {extent[2]:g}) Å)" + hint
            )
        if check_units and vs >= 2 and len(table) >= 5:
            frac = px / shapes
            if (frac.max(axis=0) < 1.0 / vs).all():
                raise InvalidVolumeError(
                    f"{where}: all {len(table)} coordinates lie within the first 1/{vs:g} of "
                    "their tomograms: they look like pixel coordinates read as Å; pass --units "
                    "pixel (TomogramPool(check_units=False) if they really are Å)"
                )
        if self.edge == "refuse":
            keep = np.ones(len(table), dtype=bool)
            for i in range(len(table)):
                reason = self._edge_reason(px[i, ::-1], resolved[tomos[i]].shape)
                if reason is not None:
                    keep[i] = False
                    self.refused[ids[i]] = reason
                    self._refused_tomo[ids[i]] = tomos[i]
            if self.refused:
                logger.info("%d particles refused at tomogram edges", len(self.refused))
            table = table[keep].reset_index(drop=True)
        return table

    def _edge_reason(self, centre_zyx: np.ndarray, shape: Sequence[int]) -> str | None:
        start, stop, _ = box_bounds(centre_zyx, self._box, self.shift)
        n = np.asarray(shape, dtype=np.int64)
        if not ((start < 0).any() or (stop > n).any()):
            return None
        over = np.maximum(-start, stop - n)
        axis = int(np.argmax(over))
        name = "zyx"[axis]
        return (
            f"box {'x'.join(map(str, self._box))} at voxel ({', '.join(f'{c:.1f}' for c in centre_zyx)})"
            f" (z, y, x) reaches {int(over[axis])} voxel(s) past the tomogram edge along {name} "
            f"(size {int(n[axis])})"
        )

    def edge_report(self) -> EdgeReport:
        """Particles per tomogram and how many of their boxes reach past the edge."""
        counts: dict[str, list[int]] = {n: [0, 0] for n in self._names}
        for i in range(len(self)):
            t = self.tomograms[self._names[int(self._tomo_of[i])]]
            c = counts[t.name]
            c[0] += 1
            c[1] += self._edge_reason(self._centres[i], t.shape) is not None
        for tomo in self._refused_tomo.values():
            c = counts.setdefault(tomo, [0, 0])
            c[0] += 1
            c[1] += 1
        return EdgeReport({k: (v[0], v[1]) for k, v in counts.items()}, dict(self.refused))

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        n_lab = sum(lab is not None for lab in self.labels)
        return (
            f"TomogramPool({len(self)} particles in {len(self.tomograms)} tomograms, box "
            f"{'x'.join(map(str, self._box))}, {self.voxel_size:g} Å, {n_lab} labelled)"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arrays"] = {}  # memory maps / zarr handles are reopened in each process
        state["_chunk_cache"] = _ChunkLRU(self._chunk_cache.max_bytes)  # and decoded again
        return state

    @property
    def box(self) -> tuple[int, ...]:
        """``(D, H, W)`` box in voxels."""
        return self._box

    @property
    def voxel_size(self) -> float:
        """Å per voxel (shared by every tomogram of the pool)."""
        return float(self.tomograms[next(iter(self.tomograms))].voxel_size)

    def tomogram_of(self, index: int) -> Tomogram:
        """The tomogram item ``index`` is cut from."""
        return self.tomograms[self._names[int(self._tomo_of[index])]]

    def path_of(self, index: int) -> Path:
        """The tomogram file (or OME-Zarr group) of item ``index``."""
        return Path(self.tomogram_of(index).path)

    def centre_of(self, index: int) -> tuple[float, float, float]:
        """``(z, y, x)`` centre of item ``index`` in voxels."""
        c = self._centres[int(index)]
        return (float(c[0]), float(c[1]), float(c[2]))

    # ------------------------------------------------------------------ reading
    def _array(self, t: int) -> Any:
        arr = self._arrays.get(t)
        if arr is None:
            arr = self.tomograms[self._names[t]].array()
            if not isinstance(arr, np.ndarray) and hasattr(arr, "chunks"):  # zarr
                arr = _ChunkCachedArray(arr, self._chunk_cache, t)
            self._arrays[t] = arr
        return arr

    def read(self, index: int) -> np.ndarray:
        """Box ``index`` as a new float32 array ``(D, H, W)`` (raw values).

        Raises
        ------
        IndexError
            ``index`` out of range.
        InvalidVolumeError
            The tomogram cannot be read, or holds NaN/Inf in the box.
        """
        n = len(self.ids)
        i = int(index) + n if int(index) < 0 else int(index)
        if not 0 <= i < n:
            raise IndexError(f"pool index {index} out of range for {n} items")
        t = int(self._tomo_of[i])
        fill = "zero" if self.edge == "zero" else "mean"
        try:
            out, _ = extract_box(
                self._array(t), self._centres[i], self._box, shift=self.shift, fill=fill
            )
        except InvalidVolumeError:
            raise
        except Exception as exc:  # memmap / zarr codec errors: name the tomogram
            tomo = self.tomograms[self._names[t]]
            raise InvalidVolumeError(
                f"{tomo.path}: cannot read the box of particle {self.ids[i]} "
                f"({' '.join(str(exc).split())[:300]})"
            ) from None
        if not np.isfinite(out).all():
            raise InvalidVolumeError(
                f"{self.path_of(i)}: NaN/Inf values in the box of particle {self.ids[i]}"
            )
        return np.negative(out, out=out) if self.invert else out

    def __getitem__(self, index: int) -> torch.Tensor:
        """Box ``index`` as a float32 tensor ``(1, D, H, W)`` (raw values)."""
        return torch.from_numpy(self.read(index)).unsqueeze(0)

    def checksum(self, index: int) -> str:
        """SHA-1 hex of item ``index``: its tomogram's fingerprint, its coordinates (Å) and
        the box / edge / shift settings."""
        t = int(self._tomo_of[index])
        fp = self._fingerprints.get(t)
        if fp is None:
            fp = self.tomograms[self._names[t]].fingerprint()
            self._fingerprints[t] = fp
        row = self.particles.iloc[int(index)]
        key = (
            f"{fp}|{float(row['x']):.4f},{float(row['y']):.4f},{float(row['z']):.4f}|"
            f"{self._box}|{self.edge}|{self.shift}"
        )
        return hashlib.sha1(key.encode()).hexdigest()

    def check(self) -> TomogramPool:
        """Open every tomogram of the pool and read its probes (see
        :meth:`Tomogram.fingerprint`); coordinates were checked when the pool was built.

        Returns
        -------
        TomogramPool
            ``self``, for chaining.

        Raises
        ------
        InvalidVolumeError
            A tomogram cannot be read.
        """
        for t in range(len(self._names)):
            if t not in self._fingerprints:
                self._fingerprints[t] = self.tomograms[self._names[t]].fingerprint()
        return self

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the pool's manifest (:mod:`cryoal.io.persist`, kind ``"tomogram"``) to
        ``path`` atomically: the tomograms (MRC files or OME-Zarr groups, relative to the
        manifest) with their metadata, the particles' ids, tomograms and Å coordinates,
        box / edge / shift, labels and per-item checksums. Returns ``path``.

        Raises
        ------
        ConfigError
            A tomogram is not on a local file system (a remote copick store).
        InvalidVolumeError
            A tomogram cannot be read (to checksum it).
        """
        tomos = [self.tomograms[n] for n in self._names]
        remote = [t.name for t in tomos if "://" in t.path or not Path(t.path).exists()]
        if remote:
            raise ConfigError(
                f"tomogram(s) {', '.join(remote[:3])} are not local files; a pool can only "
                "be saved over tomograms on a local file system"
            )
        extra = {
            "root": rel_path(self.root, path),
            "tomograms": [
                {
                    "name": t.name,
                    "shape": list(t.shape),
                    "voxel_size": t.voxel_size,
                    "format": t.format,
                    "level": t.level,
                    "dtype": t.dtype,
                    "data_offset": t.data_offset,
                }
                for t in tomos
            ],
            "set_source": self.tomograms.source,
            "set_origin": self.tomograms.origin,
            "tomo_of": self._tomo_of.tolist(),
            "xyz": self.particles[["x", "y", "z"]].to_numpy(dtype=np.float64).tolist(),
            "columns": _columns_to_json(self.particles),
            "refused": dict(self.refused),
            "labels": list(self.labels),
            "edge": self.edge,
            "shift": self.shift,
            "invert": bool(self.invert),
            "particle_source": self.source,
        }
        return write_pool_manifest(path, "tomogram", self, [t.path for t in tomos], extra)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TomogramPool:
        """A pool saved by :meth:`save`, checked against its checksums (each tomogram's
        header and three ``8³`` probes are read, no box is cut).

        Raises
        ------
        PoolManifestError
            Corrupt, truncated, unknown-version or non-``"tomogram"`` manifest.
        PoolChangedError
            A tomogram vanished or changed since the save (the message names the item).
        """
        m = read_pool_manifest(path, "tomogram")
        specs = m.get("tomograms", list)
        if len(specs) != len(m.sources):
            raise PoolManifestError(f"{m.path}: {len(specs)} tomograms for {len(m.sources)} files")
        try:
            tomos = [
                Tomogram(
                    name=str(d["name"]),
                    path=os.fspath(src),
                    shape=(int(d["shape"][0]), int(d["shape"][1]), int(d["shape"][2])),
                    voxel_size=float(d["voxel_size"]),
                    format=d["format"],
                    level=str(d["level"]),
                    dtype=str(d["dtype"]),
                    data_offset=int(d["data_offset"]),
                )
                for d, src in zip(specs, m.sources, strict=True)
            ]
            xyz = np.asarray(m.get("xyz", list, per_item=True), dtype=np.float64).reshape(-1, 3)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PoolManifestError(
                f"{m.path}: malformed tomogram entry in the pool manifest ({exc!r})"
            ) from None
        tomo_of = m.source_index("tomo_of")
        tset = TomogramSet(
            tomos,
            root=m.relative(m.get("root", str)),
            source=m.get("set_source", str),
            origin=m.get("set_origin", str),
        )
        table = pd.DataFrame(
            {
                "id": m.ids,
                "tomo": [tomos[t].name for t in tomo_of],
                "x": xyz[:, 0],
                "y": xyz[:, 1],
                "z": xyz[:, 2],
                **_columns_from_json(m.get("columns", dict), len(m.ids), m.path),
            }
        )
        pool = cls(
            tset,
            table,
            m.box,
            edge=m.get("edge", str),
            shift=m.get("shift", str),
            check_units=False,
            labels=m.labels(),
        )
        pool.source = m.get("particle_source", str)
        pool.refused = {str(k): str(v) for k, v in m.get("refused", dict).items()}
        pool.invert = m.get("invert", bool)
        verify_checksums(m, pool)
        return pool

    # ------------------------------------------------------------------ derived pools
    def _describe_items(self) -> str:
        return f"{len(self)} particles"

    def _derive(self, rows: np.ndarray, labels: list[str | None]) -> TomogramPool:
        new = TomogramPool.__new__(TomogramPool)
        new.__dict__.update(self.__dict__)
        new.particles = self.particles.iloc[rows].reset_index(drop=True)
        new.ids = [self.ids[i] for i in rows.tolist()]
        new._tomo_of = self._tomo_of[rows]
        new._centres = self._centres[rows]
        new.labels = labels
        new._arrays = {}
        new._id_index = None
        return new

    def inverted(self, invert: bool = True) -> TomogramPool:
        """This pool with every box read contrast-inverted (``-x``; see
        :meth:`cryoal.io.VolumePool.inverted`), kept by :meth:`subset` and
        :meth:`with_labels`; ``inverted(False)`` undoes it."""
        out = self._derive(np.arange(len(self), dtype=np.int64), list(self.labels))
        out.invert = bool(invert)
        return out

    def dataset(
        self,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> Any:
        """A torch Dataset of ``(x, y)`` (see :meth:`cryoal.io.VolumePool.dataset`)."""
        from cryoal.io.pool import PoolDataset

        return PoolDataset(self, transform, class_names)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ tables
    def item_table(self, ids: Sequence[str] | None = None) -> pd.DataFrame:
        """``id, tomo, x, y, z`` (Å from the centre of voxel 0) of the given items (all)."""
        cols = ["id", "tomo", "x", "y", "z"]
        extra = [c for c in ("rot", "tilt", "psi") if c in self.particles.columns]
        table = self.particles[cols + extra].copy()
        table["id"] = table["id"].astype(str)
        table["tomo"] = table["tomo"].astype(str)
        if ids is None:
            return table.reset_index(drop=True)
        rows = [self.index_of(s) for s in ids]
        return table.iloc[rows].reset_index(drop=True)

    def centres(self) -> dict[str, tuple[float, float, float]]:
        """``{tomo: (x, y, z)}`` Å of each tomogram centre (RELION 5 centred coordinates)."""
        return {n: t.centre for n, t in self.tomograms.items()}

    def with_coordinates(self, table: pd.DataFrame) -> pd.DataFrame:
        """``table`` (an ``id`` column of pool ids) with ``tomo, x, y, z`` (Å; and angles
        when known) inserted after ``id`` (after ``path`` when there is one)."""
        coords = self.item_table([str(v) for v in table["id"]])
        out = table.reset_index(drop=True).copy()
        at = list(out.columns).index("path") + 1 if "path" in out.columns else 1
        for k, col in enumerate(c for c in coords.columns if c != "id"):
            if col not in out.columns:
                out.insert(at + k, col, coords[col].to_numpy())
        return out

    def write_picks(
        self,
        path: str | os.PathLike[str],
        table: pd.DataFrame,
        *,
        coordinates: Literal["relion5", "relion4", "both"] = "relion5",
    ) -> Path:
        """Write a picks / predictions table: ``.star`` as a RELION 5 particles.star
        (optics + particles, ``rlnTomoName``, centred Å coordinates, ``rlnClassNumber``
        of the ``predicted`` class when there are ``p_<class>`` columns), else as
        :func:`cryoal.io.write_table` does.

        Parameters
        ----------
        path
            Output ``.star``, ``.csv`` or ``.tsv``.
        table
            One row per pool item: ``id`` (pool ids), then any columns.
        coordinates
            ``.star`` only: ``"relion5"`` (``rlnCenteredCoordinate{X,Y,Z}Angst``),
            ``"relion4"`` (``rlnCoordinate{X,Y,Z}`` in pixels of the pool's voxel size)
            or ``"both"`` (see :func:`cryoal.io.particles.write_relion`).
        """
        from cryoal.io.labels import write_table
        from cryoal.io.particles import ParticleList, write_relion

        full = self.with_coordinates(table) if "tomo" not in table.columns else table
        if not str(path).lower().endswith(".star"):
            return write_table(path, full)
        classes = [str(c)[2:] for c in full.columns if str(c).startswith("p_")]
        particles = ParticleList(
            full.drop(columns=[c for c in ("path",) if c in full.columns]),
            {t: self.voxel_size for t in self.tomograms},
            "cryoal",
            self.centres(),
        )
        return write_relion(
            path,
            particles,
            class_numbers=classes if classes and "predicted" in full.columns else None,
            class_column="predicted",
            coordinates=coordinates,
        )


#: the copick user id cryoal writes its picks under (left out of pools unless asked for)
COPICK_USER = "cryoal"


_CORE_COLUMNS = ("id", "tomo", "x", "y", "z", "label")


def _columns_to_json(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The particle table's other columns (angles, scores, ...) as JSON: numbers as
    floats (NaN as null), anything else as text."""
    out: dict[str, dict[str, Any]] = {}
    for col in table.columns:
        if col in _CORE_COLUMNS:
            continue
        values = table[col]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            floats = values.to_numpy(dtype=np.float64)
            out[str(col)] = {
                "type": "int" if pd.api.types.is_integer_dtype(values) else "float",
                "values": [None if math.isnan(v) else v for v in floats.tolist()],
            }
        else:
            out[str(col)] = {
                "type": "str",
                "values": [None if _missing(v) else str(v) for v in values.tolist()],
            }
    return out


def _missing(value: Any) -> bool:
    """A table cell that holds no value (None, NaN, pandas NA)."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # list-like cells
        return False


def _columns_from_json(columns: dict[str, Any], n: int, where: Path) -> dict[str, Any]:
    """Inverse of :func:`_columns_to_json` (float/int columns as numpy arrays)."""
    out: dict[str, Any] = {}
    for name, col in columns.items():
        if (
            name in _CORE_COLUMNS
            or not isinstance(col, dict)
            or not isinstance(col.get("values"), list)
            or len(col["values"]) != n
            or col.get("type") not in ("int", "float", "str")
        ):
            raise PoolManifestError(f"{where}: malformed particle column {name!r}")
        values = col["values"]
        if col["type"] == "str":
            out[name] = values
            continue
        try:
            arr = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
        except (TypeError, ValueError):
            raise PoolManifestError(f"{where}: particle column {name!r} is not numeric") from None
        out[name] = arr.astype(np.int64) if col["type"] == "int" else arr
    return out


def _copick_users(config: str | os.PathLike[str], object_name: str) -> set[str]:
    from cryoal.io.tomograms import open_copick_root

    root = open_copick_root(config)
    return {str(p.user_id) for run in root.runs for p in run.get_picks(object_name=object_name)}


class _ByName(Mapping[str, Any]):
    """One attribute of each tomogram, looked up as :meth:`TomogramSet.resolve` finds them;
    a name with no tomogram raises :class:`InvalidVolumeError` (not ``KeyError``), so a
    particle reader asking for it stops with the message that names the missing tomogram."""

    def __init__(self, tset: TomogramSet, attr: str) -> None:
        self.tset, self.attr = tset, attr

    def __getitem__(self, name: str) -> Any:
        try:
            return getattr(self.tset.resolve(str(name)), self.attr)
        except KeyError:
            raise InvalidVolumeError(self.tset.missing_message([str(name)])) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.tset)

    def __len__(self) -> int:
        return len(self.tset)


def _fields(t: Tomogram) -> dict[str, Any]:
    return {
        "name": t.name,
        "path": t.path,
        "shape": t.shape,
        "voxel_size": t.voxel_size,
        "format": t.format,
        "level": t.level,
        "dtype": t.dtype,
        "data_offset": t.data_offset,
        "store": t.store,
    }


# ---------------------------------------------------------------------- building one


def open_tomogram_pool(
    tomograms: str | os.PathLike[str] | TomogramSet,
    coords: str | os.PathLike[str] | None = None,
    *,
    box: int | Sequence[int] = 32,
    edge: str = "mean",
    shift: str = "none",
    units: str | None = None,
    pixel_size: float | None = None,
    tomo_names: str | os.PathLike[str] | Mapping[int, str] | None = None,
    object_name: str | None = None,
    voxel_spacing: float | None = None,
    tomo_type: str | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    check_units: bool = True,
) -> TomogramPool:
    """Open tomograms, read the particle coordinates that go with them, build the pool.

    Parameters
    ----------
    tomograms
        A folder of tomograms, a RELION 5 ``tomograms.star``, one tomogram, a copick
        config ``.json`` (then the particles are its picks of ``object_name``), or an
        open :class:`TomogramSet`.
    coords
        Particle file for non-copick tomograms (see
        :func:`cryoal.io.particles.read_particles`).
    box, edge, shift, check_units
        As :class:`TomogramPool`.
    units, pixel_size
        Pixel coordinates (RELION 4, Dynamo, CSV): their units and Å per pixel
        (default: each tomogram's voxel size).
    tomo_names
        Dynamo ``.tbl`` coordinates: ``{number: name}`` or a tomogram list (``.doc``,
        ``.vll``) naming the table's tomogram numbers (see
        :func:`cryoal.io.particles.read_dynamo`).
    object_name, user_id, session_id
        copick: which picks.
    voxel_spacing, tomo_type
        copick: which tomograms.

    Raises
    ------
    InvalidVolumeError, InvalidLabelsError, EmptyPoolError, ConfigError
        See :func:`cryoal.io.tomograms.open_tomograms`,
        :func:`cryoal.io.particles.read_particles` and :class:`TomogramPool`.
    """
    from cryoal.io.particles import read_particles

    copick = not isinstance(tomograms, TomogramSet) and str(tomograms).lower().endswith(".json")
    tset = (
        tomograms
        if isinstance(tomograms, TomogramSet)
        else open_tomograms(tomograms, voxel_spacing=voxel_spacing, tomo_type=tomo_type)
    )
    if copick and not isinstance(tomograms, TomogramSet):
        if not object_name:
            raise ConfigError(f"{tomograms}: name the copick object whose picks to use (--object)")
        kwargs: dict[str, Any] = {"object_name": object_name}
        if user_id is not None:
            kwargs["user_id"] = user_id
        else:  # every user's picks but cryoal's own (select --copick-picks writes those)
            others = _copick_users(tomograms, object_name) - {COPICK_USER}
            if others:
                kwargs["user_id"] = sorted(others)
        if session_id is not None:
            kwargs["session_id"] = session_id
        vs = voxel_spacing if voxel_spacing is not None else tset[next(iter(tset))].voxel_size
        particles = read_particles(tomograms, fmt="copick", pixel_size=float(vs), **kwargs)
    else:
        if coords is None:
            raise ConfigError("particle coordinates are needed with these tomograms (--coords)")
        read_kw: dict[str, Any] = {
            "pixel_size": pixel_size if pixel_size is not None else _ByName(tset, "voxel_size"),
            "tomogram_shapes": _ByName(tset, "shape"),
        }
        if units is not None:
            read_kw["units"] = units
        if tomo_names is not None:
            if not str(coords).lower().endswith(".tbl"):
                raise ConfigError(
                    f"{coords}: a tomogram list (--tomo-list) names the tomogram numbers of a "
                    "Dynamo .tbl; other coordinate files name their tomograms themselves"
                )
            read_kw["tomo_names"] = tomo_names
        try:
            particles = read_particles(coords, **read_kw)
        except InvalidVolumeError as exc:
            if tomo_names is not None or not str(coords).lower().endswith(".tbl"):
                raise
            raise InvalidVolumeError(
                f"{exc}; a Dynamo table numbers its tomograms: name them with a tomogram "
                "list (--tomo-list tomograms.doc, or tomo_names=)"
            ) from None
    return TomogramPool(tset, particles, box, edge=edge, shift=shift, check_units=check_units)

"""Particle lists: coordinates of particles in tomograms, read from and written to the field's formats.

A :class:`ParticleList` is one table with a row per particle, in file order:

=========  =======  ===============================================================
column     dtype    meaning
=========  =======  ===============================================================
``id``     str      stable readable id ``"TOMO:000123"``: tomogram name, ``:``, and the
                    zero-based index of the particle within its tomogram in file order
                    (6 digits) — unless the source gives ids (a CSV ``id`` column)
``tomo``   str      tomogram name (``rlnTomoName``, copick run name, Dynamo tomogram
                    number as a string, CSV ``tomo`` column)
``x y z``  float64  position in Å in the tomogram frame, measured from the **centre of
                    voxel 0**: ``x_Å = x_px * pixel_size`` with 0-based voxel indices.
                    ``x`` is the MRC x axis, the last numpy axis of ``mrcfile`` data
                    (``data[z, y, x]``)
=========  =======  ===============================================================

Optional columns: ``label`` (str), ``score`` (float), ``rot``, ``tilt``, ``psi`` (degrees,
RELION ZYZ convention), and every other source column, kept so that writers can put
them back.

RELION 5 coordinate convention
------------------------------
RELION 5 stores ``rlnCenteredCoordinate{X,Y,Z}Angst``: the position in Å relative to the
tomogram centre. In RELION 5's source (``src/jaz/tomography/particle_set.cpp``,
``ParticleSet::getParticleCoordDecenteredPixel`` and ``ParticleSet::getPosition``) the
position in (unbinned tilt-series) pixels is::

    pos_px = centred_Å / rlnTomoTiltSeriesPixelSize + tomo_centre
             - (A_subtomogram @ rlnOrigin{X,Y,Z}Angst) / rlnTomoTiltSeriesPixelSize

with ``tomo_centre = (w0 / 2.0, h0 / 2.0, d0 / 2.0)`` — a float division of the tomogram
size ``rlnTomoSize{X,Y,Z}`` from tomograms.star (``TomogramSet::loadTomogram``) — and no
``+1``: the ``out += 1`` of RELION 4.0 is commented out ("SHWS 2feb24: we can't do this
anymore"), so decentred pixels are 0-based voxel indices. pytom-match-pick's RELION 5
export (``pytom_tm/extract.py``, ``relion5_compat``) writes the same thing from 0-based
numpy indices: ``(index - shape / 2) * voxel_size``. RELION 4 ``rlnCoordinate{X,Y,Z}``
are those same decentred pixels (the backwards-compatible branch of
``getParticleCoordDecenteredPixel``). Hence, in this module's frame::

    x_Å = centred_Å + n_x * pixel_size / 2 - (A_subtomogram @ origin_Å)_x     (RELION 5)
    x_Å = rlnCoordinateX * pixel_size - (A_subtomogram @ origin_Å)_x            (RELION 4)

where ``n_x * pixel_size`` is the tomogram extent in Å (``rlnTomoSizeX *
rlnTomoTiltSeriesPixelSize`` from tomograms.star, or the shape and voxel size of the
tomogram you give). ``A_subtomogram`` is the rotation of ``rlnTomoSubtomogram{Rot,Tilt,
Psi}`` (identity when absent).

Errors are :class:`cryoal.errors.InvalidParticlesError`, one line naming the file, the
row (1-based data row) or tomogram, and the reason.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import starfile

from cryoal.errors import InvalidParticlesError

__all__ = [
    "PARTICLE_FORMATS",
    "ParticleList",
    "make_particle_ids",
    "read_csv_particles",
    "read_particles",
    "read_relion4",
    "read_relion5",
    "read_relion_tomograms",
    "sniff_particle_format",
]

logger = logging.getLogger(__name__)

PARTICLE_FORMATS = ("relion5", "relion4", "copick", "dynamo", "csv")
Units = Literal["angstrom", "pixel"]
PixelSize = float | Mapping[str, float] | None
Shapes = Mapping[str, Sequence[int]] | None

_MAX_LISTED = 5
_XYZ = ("x", "y", "z")
_CENTRED = tuple(f"rlnCenteredCoordinate{a}Angst" for a in "XYZ")
_COORD = tuple(f"rlnCoordinate{a}" for a in "XYZ")
_ORIGIN_ANGST = tuple(f"rlnOrigin{a}Angst" for a in "XYZ")
_ORIGIN_PX = tuple(f"rlnOrigin{a}" for a in "XYZ")
_ANGLES = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
_SUBTOMO_ANGLES = ("rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi")
# columns that the reader folds into x/y/z and rot/tilt/psi: not kept as source columns
_FOLDED = set(_CENTRED + _COORD + _ORIGIN_ANGST + _ORIGIN_PX + _ANGLES + _SUBTOMO_ANGLES)


@dataclass(frozen=True)
class ParticleList:
    """Particles in tomograms: one table row per particle, file order kept.

    Attributes
    ----------
    table
        ``id`` (str), ``tomo`` (str), ``x``, ``y``, ``z`` (float64, Å from the centre of
        voxel 0; ``x`` = MRC x = numpy last axis); optional ``label``, ``score``,
        ``rot``/``tilt``/``psi`` (degrees, RELION ZYZ) and every other source column.
    pixel_size
        Å/voxel of the tomogram that each tomogram's coordinates refer to, where known
        (``{tomo: Å}``).
    source
        The format read: one of :data:`PARTICLE_FORMATS`.
    centres
        ``{tomo: (cx, cy, cz)}``, the tomogram centre in Å in the same frame (half the
        extent: ``n * pixel_size / 2``), where known. RELION 5 writers need it to write
        centred coordinates.
    """

    table: pd.DataFrame
    pixel_size: Mapping[str, float]
    source: str
    centres: Mapping[str, tuple[float, float, float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def ids(self) -> list[str]:
        """Particle ids in table order."""
        return [str(v) for v in self.table["id"]]

    @property
    def tomograms(self) -> list[str]:
        """Distinct tomogram names in order of first appearance."""
        return list(dict.fromkeys(str(v) for v in self.table["tomo"]))

    def coordinates(self, units: Units = "angstrom") -> np.ndarray:
        """Positions as an ``(N, 3)`` float64 array of ``(x, y, z)``.

        Parameters
        ----------
        units
            ``"angstrom"`` (from the centre of voxel 0) or ``"pixel"`` (0-based voxel
            coordinates of each particle's tomogram, ``x_Å / pixel_size[tomo]``).

        Raises
        ------
        InvalidParticlesError
            ``units="pixel"`` and a tomogram's pixel size is unknown.
        """
        xyz = self.table[list(_XYZ)].to_numpy(dtype=np.float64)
        if units == "angstrom":
            return xyz
        if units != "pixel":
            raise InvalidParticlesError(f"units must be 'angstrom' or 'pixel', not {units!r}")
        tomos = self.table["tomo"].astype(str)
        missing = sorted(set(tomos) - set(self.pixel_size))
        if missing:
            raise InvalidParticlesError(
                f"{self.source} particles: pixel size unknown for tomogram(s) "
                f"{', '.join(missing[:_MAX_LISTED])}; pass pixel_size= when reading"
            )
        ps = tomos.map(lambda t: float(self.pixel_size[t])).to_numpy(dtype=np.float64)
        return xyz / ps[:, None]

    def for_tomogram(self, tomo: str) -> ParticleList:
        """The particles of one tomogram (same metadata, table index reset)."""
        sub = self.table[self.table["tomo"].astype(str) == tomo].reset_index(drop=True)
        return ParticleList(
            sub,
            {k: v for k, v in self.pixel_size.items() if k == tomo},
            self.source,
            {k: v for k, v in self.centres.items() if k == tomo},
        )


# ---------------------------------------------------------------------------- helpers


def make_particle_ids(tomos: Sequence[str]) -> list[str]:
    """Ids ``"TOMO:000123"``: tomogram name + zero-based index within it, in order.

    Parameters
    ----------
    tomos
        Tomogram name of each particle, in file order.

    Returns
    -------
    list of str
        One id per particle.
    """
    seen: dict[str, int] = {}
    out = []
    for t in tomos:
        i = seen.get(t, 0)
        seen[t] = i + 1
        out.append(f"{t}:{i:06d}")
    return out


def _fail(where: str, what: str, rows: Sequence[str], total: int, hint: str = "") -> None:
    if not rows:
        return
    listed = "; ".join(rows[:_MAX_LISTED])
    more = f" (and {len(rows) - _MAX_LISTED} more)" if len(rows) > _MAX_LISTED else ""
    raise InvalidParticlesError(
        f"{where}: {len(rows)} of {total} rows {what}: {listed}{more}{hint}"
    )


def _show(value: object) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):  # type: ignore[call-overload]
        return "empty"
    return repr(str(value))


def _as_float(df: pd.DataFrame, cols: Sequence[str], where: str) -> np.ndarray:
    """``df[cols]`` as float64 ``(N, len(cols))``; non-numbers and NaN/Inf are errors."""
    out = np.empty((len(df), len(cols)), dtype=np.float64)
    for j, c in enumerate(cols):
        vals = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(vals))
        if bad.size:
            rows = [f"row {i + 1} ({_show(df[c].iloc[i])})" for i in bad]
            _fail(where, f"have a missing or non-numeric {c}", rows, len(df))
        out[:, j] = vals
    return out


def _check_columns(df: pd.DataFrame, cols: Sequence[str], where: str, hint: str = "") -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        found = ", ".join(map(str, df.columns)) or "(none)"
        raise InvalidParticlesError(
            f"{where}: missing column(s) {', '.join(missing)}; found {found}{hint}"
        )


def _per_tomo(value: PixelSize, tomo: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        v = value.get(tomo)
        return None if v is None else float(v)
    return float(value)


def _check_pixel_size(value: float, where: str) -> float:
    if not np.isfinite(value) or value <= 0:
        raise InvalidParticlesError(
            f"{where}: pixel size must be a positive number of Å, not {value}"
        )
    return float(value)


def _tomo_names(df: pd.DataFrame, col: str, where: str) -> list[str]:
    names = [
        "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v).strip()
        for v in df[col]
    ]
    _fail(
        where,
        f"have an empty {col}",
        [f"row {i + 1}" for i, n in enumerate(names) if not n],
        len(names),
    )
    return names


def _finish(
    df: pd.DataFrame,
    tomos: list[str],
    xyz: np.ndarray,
    *,
    source: str,
    where: str,
    pixel_size: Mapping[str, float],
    centres: Mapping[str, tuple[float, float, float]] | None = None,
    ids: list[str] | None = None,
    extra: Mapping[str, Any] | None = None,
    drop: set[str] | frozenset[str] = frozenset(),
) -> ParticleList:
    """Assemble the table: id, tomo, x, y, z, extras, then the kept source columns."""
    n = len(tomos)
    if n == 0:
        raise InvalidParticlesError(f"{where}: no particles (the table is empty)")
    if ids is None:
        ids = make_particle_ids(tomos)
    else:
        first: dict[str, int] = {}
        dups = []
        for i, s in enumerate(ids):
            if s in first:
                dups.append(f"row {i + 1} {s!r} (first at row {first[s] + 1})")
            else:
                first[s] = i
        _fail(where, "repeat an earlier id", dups, n)
    out = pd.DataFrame(
        {
            "id": pd.Series(ids, dtype=object),
            "tomo": pd.Series(tomos, dtype=object),
            "x": xyz[:, 0].astype(np.float64),
            "y": xyz[:, 1].astype(np.float64),
            "z": xyz[:, 2].astype(np.float64),
        }
    )
    for k, v in (extra or {}).items():
        out[k] = v
    reserved = set(out.columns)
    for c in df.columns:
        if c in drop or c in reserved:
            continue
        out[str(c)] = df[c].reset_index(drop=True)
    out.attrs["source"] = where
    out.attrs["format"] = source
    return ParticleList(out, dict(pixel_size), source, dict(centres or {}))


# ---------------------------------------------------------------------------- STAR


def _read_star_blocks(path: Path) -> dict[str, pd.DataFrame]:
    if not path.exists():
        raise InvalidParticlesError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise InvalidParticlesError(f"{path}: empty file")
    try:
        data = starfile.read(path, always_dict=True, parse_as_string=["rlnTomoName"])
    except Exception as exc:  # starfile raises assorted parser errors
        raise InvalidParticlesError(f"{path}: not a readable STAR file ({exc})") from None
    blocks: dict[str, pd.DataFrame] = {}
    for name, t in data.items():
        if isinstance(t, pd.DataFrame):
            blocks[str(name)] = t
        elif isinstance(t, dict):  # a simple (non-loop) block: one row
            blocks[str(name)] = pd.DataFrame([t])
    if not blocks:
        raise InvalidParticlesError(f"{path}: no data block found in the STAR file")
    return blocks


def _particles_block(blocks: Mapping[str, pd.DataFrame], path: Path) -> pd.DataFrame:
    if "particles" in blocks:
        return blocks["particles"].reset_index(drop=True)
    for want in (_CENTRED[0], _COORD[0]):
        for t in blocks.values():
            if want in t.columns:
                return t.reset_index(drop=True)
    return list(blocks.values())[-1].reset_index(drop=True)


def _euler_matrices(angles_deg: np.ndarray) -> np.ndarray:
    """RELION ZYZ Euler angles ``(N, 3)`` (rot, tilt, psi; degrees) → ``(N, 3, 3)``.

    The matrix that maps particle (subtomogram) coordinates to tomogram coordinates,
    ``Rz(rot) @ Ry(tilt) @ Rz(psi)`` — the transpose of RELION's
    ``Euler_angles2matrix`` (which maps the other way).
    """
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("ZYZ", angles_deg, degrees=True).as_matrix()


def _shifts_and_angles(
    df: pd.DataFrame, where: str, *, pixel_size_px: np.ndarray | None, apply_shifts: bool
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Origin shift to subtract ``(N, 3)`` Å and the ``rot``/``tilt``/``psi`` columns."""
    n = len(df)
    sub = None
    if all(c in df.columns for c in _SUBTOMO_ANGLES):
        sub = _euler_matrices(_as_float(df, _SUBTOMO_ANGLES, where))
    shift = np.zeros((n, 3), dtype=np.float64)
    if apply_shifts:
        if any(c in df.columns for c in _ORIGIN_ANGST):
            cols = [c for c in _ORIGIN_ANGST if c in df.columns]
            vals = _as_float(df, cols, where)
            for j, c in enumerate(cols):
                shift[:, _ORIGIN_ANGST.index(c)] = vals[:, j]
        elif any(c in df.columns for c in _ORIGIN_PX):
            if pixel_size_px is None:
                raise InvalidParticlesError(
                    f"{where}: rlnOriginX/Y/Z are in pixels but the pixel size is unknown; "
                    "pass pixel_size="
                )
            cols = [c for c in _ORIGIN_PX if c in df.columns]
            vals = _as_float(df, cols, where)
            for j, c in enumerate(cols):
                shift[:, _ORIGIN_PX.index(c)] = vals[:, j] * pixel_size_px
        if sub is not None:
            shift = np.einsum("nij,nj->ni", sub, shift)
    angles: dict[str, np.ndarray] = {}
    if all(c in df.columns for c in _ANGLES):
        eul = _as_float(df, _ANGLES, where)
        if sub is not None:
            from scipy.spatial.transform import Rotation

            m = np.einsum("nij,njk->nik", sub, _euler_matrices(eul))
            with warnings.catch_warnings():  # tilt 0 or 180: psi set to 0, rot carries it
                warnings.filterwarnings("ignore", message="Gimbal lock", category=UserWarning)
                eul = Rotation.from_matrix(m).as_euler("ZYZ", degrees=True)
        angles = {"rot": eul[:, 0], "tilt": eul[:, 1], "psi": eul[:, 2]}
    return shift, angles


def _optics_pixel_size(
    blocks: Mapping[str, pd.DataFrame], parts: pd.DataFrame, where: str
) -> np.ndarray | None:
    """Per-row ``rlnTomoTiltSeriesPixelSize`` from the optics block (or the row), or None."""
    col = "rlnTomoTiltSeriesPixelSize"
    if col in parts.columns:
        return _as_float(parts, [col], where)[:, 0]
    optics = blocks.get("optics")
    if optics is None or col not in optics.columns:
        return None
    if "rlnOpticsGroup" not in optics.columns or "rlnOpticsGroup" not in parts.columns:
        if len(optics) == 1:
            return np.full(len(parts), float(optics[col].iloc[0]))
        raise InvalidParticlesError(
            f"{where}: {len(optics)} optics groups but no rlnOpticsGroup column to pick one"
        )
    table = dict(
        zip(
            pd.to_numeric(optics["rlnOpticsGroup"]).astype(int),
            pd.to_numeric(optics[col]).astype(float),
            strict=True,
        )
    )
    groups = pd.to_numeric(parts["rlnOpticsGroup"], errors="coerce")
    bad = [f"row {i + 1} (group {g!r})" for i, g in enumerate(groups) if g not in table]
    _fail(where, "name an optics group that the optics block lacks", bad, len(parts))
    return np.array([table[int(g)] for g in groups], dtype=np.float64)


def _one_per_tomo(
    tomos: list[str], values: np.ndarray, where: str, what: str = "pixel size"
) -> dict[str, float]:
    out: dict[str, float] = {}
    for t, v in zip(tomos, values, strict=True):
        if t not in out:
            out[t] = float(v)
        elif not np.isclose(out[t], float(v), rtol=1e-6, atol=1e-9):
            raise InvalidParticlesError(
                f"{where}: tomogram {t!r} has particles with different {what}s "
                f"({out[t]:g} and {float(v):g} Å); one tomogram has one pixel size"
            )
    return out


@dataclass(frozen=True)
class _TomoGeometry:
    pixel_size: float  # Å/voxel of the tomogram the coordinates refer to
    centre: tuple[float, float, float]  # Å from voxel 0 (x, y, z)


def read_relion_tomograms(path: str | os.PathLike[str]) -> dict[str, _TomoGeometry]:
    """Read a RELION 5 tomograms.star: each tomogram's centre and pixel size.

    Parameters
    ----------
    path
        A RELION 5 ``tomograms.star`` (block ``global``) with ``rlnTomoName``,
        ``rlnTomoSizeX/Y/Z`` (unbinned tilt-series pixels), ``rlnTomoTiltSeriesPixelSize``
        (Å) and optionally ``rlnTomoTomogramBinning`` (default 1).

    Returns
    -------
    dict
        ``{tomo: geometry}`` with ``geometry.pixel_size`` = tilt-series pixel size ×
        binning (Å/voxel of the reconstructed tomogram) and ``geometry.centre`` =
        ``size * tilt-series pixel size / 2`` (Å, x, y, z). Voxel 0 of a binned
        tomogram and of the unbinned grid share their centre (RELION reconstructs
        binned voxel ``i`` at unbinned position ``i * binning``), so the frame is the
        same at every binning.

    Raises
    ------
    InvalidParticlesError
        Missing file or columns, non-positive sizes or pixel sizes.
    """
    p = Path(path)
    blocks = _read_star_blocks(p)
    table = blocks.get("global")
    if table is None:
        table = next(
            (t for t in blocks.values() if "rlnTomoSizeX" in t.columns), list(blocks.values())[0]
        )
    where = str(p)
    cols = [
        "rlnTomoName",
        "rlnTomoSizeX",
        "rlnTomoSizeY",
        "rlnTomoSizeZ",
        "rlnTomoTiltSeriesPixelSize",
    ]
    _check_columns(table, cols, where, "; a RELION 5 tomograms.star has them in data_global")
    names = _tomo_names(table, "rlnTomoName", where)
    size = _as_float(table, cols[1:4], where)
    ps = _as_float(table, [cols[4]], where)[:, 0]
    binning = (
        _as_float(table, ["rlnTomoTomogramBinning"], where)[:, 0]
        if "rlnTomoTomogramBinning" in table.columns
        else np.ones(len(table))
    )
    bad = [
        f"row {i + 1} ({names[i]})"
        for i in range(len(names))
        if (size[i] <= 0).any() or ps[i] <= 0 or binning[i] <= 0
    ]
    _fail(where, "have a non-positive size, pixel size or binning", bad, len(names))
    out: dict[str, _TomoGeometry] = {}
    for i, t in enumerate(names):
        c = size[i] * ps[i] / 2.0
        out[t] = _TomoGeometry(float(ps[i] * binning[i]), (float(c[0]), float(c[1]), float(c[2])))
    return out


def _geometry_from_shapes(
    tomos: Sequence[str], shapes: Shapes, pixel_size: PixelSize, where: str
) -> dict[str, _TomoGeometry]:
    out: dict[str, _TomoGeometry] = {}
    if shapes is None:
        return out
    for t in dict.fromkeys(tomos):
        if t not in shapes:
            continue
        shape = tuple(int(s) for s in shapes[t])
        if len(shape) != 3 or min(shape) <= 0:
            raise InvalidParticlesError(
                f"{where}: tomogram {t!r} shape {shape} is not three positive sizes (nz, ny, nx)"
            )
        ps = _per_tomo(pixel_size, t)
        if ps is None:
            raise InvalidParticlesError(
                f"{where}: tomogram {t!r} has a shape but no pixel size; pass pixel_size= "
                "(Å/voxel of the tomogram whose shape you gave)"
            )
        ps = _check_pixel_size(ps, where)
        nz, ny, nx = shape
        out[t] = _TomoGeometry(ps, (nx * ps / 2.0, ny * ps / 2.0, nz * ps / 2.0))
    return out


def read_relion5(
    path: str | os.PathLike[str],
    *,
    tomograms: str | os.PathLike[str] | None = None,
    tomogram_shapes: Shapes = None,
    pixel_size: PixelSize = None,
    apply_shifts: bool = True,
) -> ParticleList:
    """Read a RELION 5 particles.star (``rlnCenteredCoordinate{X,Y,Z}Angst``).

    Parameters
    ----------
    path
        particles.star with an optional ``optics`` block and a ``particles`` block
        holding ``rlnTomoName`` and ``rlnCenteredCoordinate{X,Y,Z}Angst`` (Å from the
        tomogram centre). An optimisation-set star (``rlnTomoParticlesFile``) is
        followed to its particles and tomograms files.
    tomograms
        RELION 5 tomograms.star giving each tomogram's size and pixel size (see
        :func:`read_relion_tomograms`).
    tomogram_shapes
        ``{tomo: (nz, ny, nx)}`` voxels of the tomogram you extract from (numpy order,
        as ``mrcfile`` gives ``data.shape``); needs ``pixel_size``. Takes precedence over
        ``tomograms`` for the tomograms it names.
    pixel_size
        Å/voxel of those tomograms: one number or ``{tomo: Å}``.
    apply_shifts
        Subtract ``rlnOrigin{X,Y,Z}Angst`` (rotated by ``rlnTomoSubtomogram*`` angles)
        as RELION does (default).

    Returns
    -------
    ParticleList
        ``source="relion5"``; ``x, y, z`` in Å from the centre of voxel 0 (module docs),
        ``rot``/``tilt``/``psi`` when the file has angles, ``label`` from
        ``rlnClassNumber`` is *not* set (see :mod:`cryoal.io.labels`); other columns kept.

    Raises
    ------
    InvalidParticlesError
        Missing columns, NaN coordinates, a tomogram without a known size, mixed pixel
        sizes within a tomogram, unreadable or empty file.
    """
    p = Path(path)
    blocks = _read_star_blocks(p)
    opt = _optimisation_set(blocks, p)
    if opt is not None:
        parts_path, tomos_path = opt
        return read_relion5(
            parts_path,
            tomograms=tomograms if tomograms is not None else tomos_path,
            tomogram_shapes=tomogram_shapes,
            pixel_size=pixel_size,
            apply_shifts=apply_shifts,
        )
    parts = _particles_block(blocks, p)
    where = str(p)
    _check_columns(
        parts,
        ("rlnTomoName", *_CENTRED),
        where,
        "; a RELION 5 particles.star has rlnTomoName and rlnCenteredCoordinateX/Y/ZAngst"
        + ("" if _COORD[0] not in parts.columns else " (this looks like RELION 4: fmt='relion4')"),
    )
    if len(parts) == 0:
        raise InvalidParticlesError(f"{where}: no particles (the table is empty)")
    tomos = _tomo_names(parts, "rlnTomoName", where)
    centred = _as_float(parts, _CENTRED, where)
    geom: dict[str, _TomoGeometry] = {}
    if tomograms is not None:
        geom.update(read_relion_tomograms(tomograms))
    geom.update(_geometry_from_shapes(tomos, tomogram_shapes, pixel_size, where))
    missing = [t for t in dict.fromkeys(tomos) if t not in geom]
    if missing:
        listed = ", ".join(missing[:_MAX_LISTED]) + (
            f" (and {len(missing) - _MAX_LISTED} more)" if len(missing) > _MAX_LISTED else ""
        )
        raise InvalidParticlesError(
            f"{where}: RELION 5 coordinates are relative to the tomogram centre, and the size "
            f"of tomogram(s) {listed} is unknown; pass tomograms=tomograms.star or "
            "tomogram_shapes= with pixel_size="
        )
    ts_ps = _optics_pixel_size(blocks, parts, where)
    if ts_ps is not None:
        _one_per_tomo(tomos, ts_ps, where, "tilt-series pixel size")
    shift, angles = _shifts_and_angles(parts, where, pixel_size_px=ts_ps, apply_shifts=apply_shifts)
    centre = np.array([geom[t].centre for t in tomos], dtype=np.float64)
    xyz = centred + centre - shift
    used = {t: geom[t] for t in dict.fromkeys(tomos)}
    return _finish(
        parts,
        tomos,
        xyz,
        source="relion5",
        where=where,
        pixel_size={t: g.pixel_size for t, g in used.items()},
        centres={t: g.centre for t, g in used.items()},
        extra=angles,
        drop=_FOLDED | {"rlnTomoName"},
    )


def _optimisation_set(
    blocks: Mapping[str, pd.DataFrame], path: Path
) -> tuple[Path, Path | None] | None:
    for t in blocks.values():
        if "rlnTomoParticlesFile" in t.columns and len(t):
            base = path.parent
            parts = base / str(t["rlnTomoParticlesFile"].iloc[0])
            tomos = (
                base / str(t["rlnTomoTomogramsFile"].iloc[0])
                if "rlnTomoTomogramsFile" in t.columns
                else None
            )
            return parts, tomos
    return None


def read_relion4(
    path: str | os.PathLike[str],
    *,
    pixel_size: PixelSize = None,
    apply_shifts: bool = True,
) -> ParticleList:
    """Read a RELION 4 (or pytom-match-pick) particles.star: ``rlnCoordinate{X,Y,Z}`` in pixels.

    Parameters
    ----------
    path
        particles.star with ``rlnCoordinate{X,Y,Z}`` (0-based pixels, see module docs)
        and ``rlnTomoName`` (or ``rlnMicrographName``, as pytom-match-pick writes).
    pixel_size
        Å/pixel of the coordinates: one number or ``{tomo: Å}``. Default: the optics
        block's (or the row's) ``rlnTomoTiltSeriesPixelSize``, else the row's
        ``rlnDetectorPixelSize`` (pytom-match-pick).
    apply_shifts
        Subtract ``rlnOrigin{X,Y,Z}Angst`` (or ``rlnOrigin{X,Y,Z}`` in pixels), rotated
        by ``rlnTomoSubtomogram*`` angles when present (default).

    Returns
    -------
    ParticleList
        ``source="relion4"``, positions in Å from the centre of voxel 0.

    Raises
    ------
    InvalidParticlesError
        Missing columns, NaN coordinates, unknown or mixed pixel sizes per tomogram.
    """
    p = Path(path)
    blocks = _read_star_blocks(p)
    parts = _particles_block(blocks, p)
    where = str(p)
    _check_columns(
        parts,
        _COORD,
        where,
        "; a RELION 4 particles.star has rlnCoordinateX/Y/Z"
        + (
            "" if _CENTRED[0] not in parts.columns else " (this looks like RELION 5: fmt='relion5')"
        ),
    )
    tomo_col = next((c for c in ("rlnTomoName", "rlnMicrographName") if c in parts.columns), None)
    if tomo_col is None:
        raise InvalidParticlesError(
            f"{where}: missing column rlnTomoName (or rlnMicrographName) naming each "
            "particle's tomogram"
        )
    if len(parts) == 0:
        raise InvalidParticlesError(f"{where}: no particles (the table is empty)")
    tomos = _tomo_names(parts, tomo_col, where)
    if tomo_col == "rlnMicrographName":
        tomos = [Path(t).stem if "/" in t or t.endswith(".mrc") else t for t in tomos]
    coords = _as_float(parts, _COORD, where)
    if pixel_size is not None:
        ps_rows = np.empty(len(tomos))
        unknown = []
        for i, t in enumerate(tomos):
            v = _per_tomo(pixel_size, t)
            if v is None:
                unknown.append(t)
                v = np.nan
            ps_rows[i] = v
        if unknown:
            raise InvalidParticlesError(
                f"{where}: pixel_size does not name tomogram(s) "
                f"{', '.join(list(dict.fromkeys(unknown))[:_MAX_LISTED])}"
            )
    else:
        found = _optics_pixel_size(blocks, parts, where)
        if found is None and "rlnDetectorPixelSize" in parts.columns:
            found = _as_float(parts, ["rlnDetectorPixelSize"], where)[:, 0]
        if found is None:
            raise InvalidParticlesError(
                f"{where}: RELION 4 coordinates are in pixels and the file gives no pixel size "
                "(rlnTomoTiltSeriesPixelSize); pass pixel_size= (Å/pixel)"
            )
        ps_rows = found
    for v in np.unique(ps_rows):
        _check_pixel_size(float(v), where)
    per_tomo = _one_per_tomo(tomos, ps_rows, where)
    shift, angles = _shifts_and_angles(
        parts, where, pixel_size_px=ps_rows, apply_shifts=apply_shifts
    )
    xyz = coords * ps_rows[:, None] - shift
    return _finish(
        parts,
        tomos,
        xyz,
        source="relion4",
        where=where,
        pixel_size=per_tomo,
        extra=angles,
        drop=_FOLDED | {tomo_col},
    )


# ---------------------------------------------------------------------------- CSV

_TOMO_ALIASES = ("tomo", "tomogram", "tomo_name", "rlnTomoName", "run")
_UNIT_SUFFIXES: dict[str, Units] = {
    "_angst": "angstrom",
    "_angstrom": "angstrom",
    "_a": "angstrom",
    "_px": "pixel",
    "_pix": "pixel",
    "_pixel": "pixel",
}


def read_csv_particles(
    path: str | os.PathLike[str],
    *,
    units: Units | None = None,
    pixel_size: PixelSize = None,
    tomo_column: str | None = None,
) -> ParticleList:
    """Read a plain CSV/TSV of particles: a tomogram column and ``x, y, z``.

    Parameters
    ----------
    path
        ``.csv`` (or ``.tsv``) with a header: ``tomo`` (also ``tomogram``,
        ``tomo_name``, ``rlnTomoName``, ``run``), ``x``, ``y``, ``z``; optional ``id``,
        ``label``, ``score``, ``rot``, ``tilt``, ``psi`` and anything else (kept).
        Columns ``x_px``/``x_angst`` (and y, z alike) state their units themselves.
    units
        ``"angstrom"`` (Å from the centre of voxel 0) or ``"pixel"`` (0-based voxel
        coordinates). Required unless the column names state the units.
    pixel_size
        Å/voxel: one number or ``{tomo: Å}``; needed for ``units="pixel"`` unless the
        file has a ``pixel_size`` column. Recorded for Å input too.
    tomo_column
        Name of the tomogram column when it is none of the usual ones.

    Returns
    -------
    ParticleList
        ``source="csv"``.

    Raises
    ------
    InvalidParticlesError
        Missing columns, units neither given nor stated, units contradicting the
        column names, pixel units without a pixel size, NaN coordinates, duplicate ids,
        empty file.
    """
    p = Path(path)
    where = str(p)
    if not p.exists():
        raise InvalidParticlesError(f"{p}: file not found")
    sep = "\t" if p.name.lower().endswith(".tsv") else ","
    try:
        df = pd.read_csv(p, sep=sep, skipinitialspace=True, dtype={"id": str, "label": str})
    except pd.errors.EmptyDataError:
        raise InvalidParticlesError(
            f"{p}: empty file; a particles CSV starts with 'tomo,x,y,z'"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InvalidParticlesError(f"{p}: not a readable CSV file ({exc})") from None
    df.columns = [str(c).strip() for c in df.columns]
    tcol = tomo_column or next((c for c in _TOMO_ALIASES if c in df.columns), None)
    if tcol is None or tcol not in df.columns:
        raise InvalidParticlesError(
            f"{p}: missing tomogram column ({tomo_column or ' / '.join(_TOMO_ALIASES)}); found "
            f"{', '.join(df.columns) or '(none)'}; a particles CSV has the header 'tomo,x,y,z'"
        )
    # coordinate columns and their stated units
    cols: list[str] = []
    stated: set[Units] = set()
    for a in _XYZ:
        if a in df.columns:
            cols.append(a)
            continue
        hit = next((a + s for s in _UNIT_SUFFIXES if a + s in df.columns), None)
        if hit is None:
            hit = next(
                (c for c in df.columns if c.lower() in {a + s for s in _UNIT_SUFFIXES}), None
            )
        if hit is None:
            raise InvalidParticlesError(
                f"{p}: missing column {a} (or {a}_px / {a}_angst); found {', '.join(df.columns)}"
            )
        cols.append(hit)
        stated.add(_UNIT_SUFFIXES[hit[len(a) :].lower()])
    if len(stated) > 1:
        raise InvalidParticlesError(
            f"{p}: coordinate columns {', '.join(cols)} state different units"
        )
    if stated:
        (inferred,) = stated
        if units is not None and units != inferred:
            raise InvalidParticlesError(
                f"{p}: units={units!r} contradicts the column names {', '.join(cols)} ({inferred})"
            )
        units = inferred
    if units is None:
        raise InvalidParticlesError(
            f"{p}: the units of x, y, z are not stated; pass units='angstrom' or units='pixel' "
            "(or name the columns x_angst/x_px ...)"
        )
    if units not in ("angstrom", "pixel"):
        raise InvalidParticlesError(f"{p}: units must be 'angstrom' or 'pixel', not {units!r}")
    if len(df) == 0:
        raise InvalidParticlesError(f"{p}: no particles (the table is empty)")
    tomos = _tomo_names(df, tcol, where)
    xyz = _as_float(df, cols, where)
    # pixel size: argument, else a pixel_size column
    ps_rows = np.full(len(df), np.nan)
    if pixel_size is not None:
        for i, t in enumerate(tomos):
            v = _per_tomo(pixel_size, t)
            ps_rows[i] = np.nan if v is None else v
    elif "pixel_size" in df.columns:
        ps_rows = pd.to_numeric(df["pixel_size"], errors="coerce").to_numpy(dtype=np.float64)
    known = ~np.isnan(ps_rows)
    for v in np.unique(ps_rows[known]):
        _check_pixel_size(float(v), where)
    if units == "pixel":
        rows = [f"row {i + 1} ({tomos[i]})" for i in np.flatnonzero(~known)]
        _fail(
            where,
            "are in pixels with no pixel size",
            rows,
            len(df),
            "; pass pixel_size= or add a pixel_size column",
        )
        xyz = xyz * ps_rows[:, None]
    per_tomo = _one_per_tomo(
        [t for t, k in zip(tomos, known, strict=True) if k], ps_rows[known], where
    )
    ids = None
    if "id" in df.columns:
        raw = ["" if pd.isna(v) else str(v).strip() for v in df["id"]]
        _fail(
            where,
            "have an empty id",
            [f"row {i + 1}" for i, s in enumerate(raw) if not s],
            len(raw),
        )
        ids = raw
    extra: dict[str, Any] = {}
    if "label" in df.columns:
        extra["label"] = pd.Series(
            [None if pd.isna(v) or not str(v).strip() else str(v).strip() for v in df["label"]],
            dtype=object,
        )
    return _finish(
        df,
        tomos,
        xyz,
        source="csv",
        where=where,
        pixel_size=per_tomo,
        ids=ids,
        extra=extra,
        drop={tcol, "id", "label", *cols},
    )


# ---------------------------------------------------------------------------- dispatch


def sniff_particle_format(path: str | os.PathLike[str]) -> str:
    """Guess the particle format of ``path``: one of :data:`PARTICLE_FORMATS`.

    ``.star``: ``relion5`` when it has ``rlnCenteredCoordinateXAngst`` (or is an
    optimisation set), ``relion4`` when it has ``rlnCoordinateX``. ``.tbl``: ``dynamo``.
    ``.csv``/``.tsv``: ``csv``. A copick config (``.json``) or a folder holding
    ``copick_config.json``/``config.json``: ``copick``.

    Raises
    ------
    InvalidParticlesError
        Missing file or a format that cannot be told.
    """
    p = Path(path)
    if not p.exists():
        raise InvalidParticlesError(f"{p}: file not found")
    name = p.name.lower()
    if p.is_dir():
        if any((p / n).is_file() for n in ("copick_config.json", "config.json")):
            return "copick"
        raise InvalidParticlesError(
            f"{p}: a folder but not a copick project (no copick_config.json or config.json)"
        )
    if name.endswith(".json"):
        return "copick"
    if name.endswith(".tbl"):
        return "dynamo"
    if name.endswith(".csv") or name.endswith(".tsv"):
        return "csv"
    if name.endswith(".star"):
        blocks = _read_star_blocks(p)
        if _optimisation_set(blocks, p) is not None:
            return "relion5"
        cols = {str(c) for t in blocks.values() for c in t.columns}
        if _CENTRED[0] in cols:
            return "relion5"
        if _COORD[0] in cols:
            return "relion4"
        raise InvalidParticlesError(
            f"{p}: a STAR file with neither rlnCenteredCoordinateXAngst (RELION 5) nor "
            "rlnCoordinateX (RELION 4) columns"
        )
    raise InvalidParticlesError(
        f"{p}: unknown particle format {p.suffix or '(no extension)'!r}; use a RELION .star, "
        "a Dynamo .tbl, a .csv or a copick config, or pass fmt= "
        f"({', '.join(PARTICLE_FORMATS)})"
    )


def read_particles(
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    units: Units | None = None,
    pixel_size: PixelSize = None,
    tomogram_shapes: Shapes = None,
    tomograms: str | os.PathLike[str] | None = None,
    apply_shifts: bool = True,
    **kwargs: object,
) -> ParticleList:
    """Read a particle list in any supported format (sniffed, or ``fmt``).

    Parameters
    ----------
    path
        RELION 5/4 ``.star``, Dynamo ``.tbl``, ``.csv``, or a copick config / project.
    fmt
        One of :data:`PARTICLE_FORMATS` to override the sniffed format.
    units
        CSV only: ``"angstrom"`` or ``"pixel"``.
    pixel_size
        Å/voxel, one number or ``{tomo: Å}`` (RELION 4, Dynamo, CSV pixels; RELION 5
        with ``tomogram_shapes``).
    tomogram_shapes
        RELION 5: ``{tomo: (nz, ny, nx)}`` of the tomograms (with ``pixel_size``).
    tomograms
        RELION 5: a tomograms.star with the tomogram sizes.
    apply_shifts
        RELION/Dynamo: apply the per-particle origin shifts (default).
    **kwargs
        Passed to the format's reader (e.g. ``object_name``, ``user_id``,
        ``session_id`` for copick; ``tomo_names`` for Dynamo).

    Returns
    -------
    ParticleList

    Raises
    ------
    InvalidParticlesError
        Unknown format, or anything the format's reader rejects.
    """
    f = fmt or sniff_particle_format(path)
    if f not in PARTICLE_FORMATS:
        raise InvalidParticlesError(
            f"{path}: unknown particle format {f!r}; choose one of {', '.join(PARTICLE_FORMATS)}"
        )

    def _no_extra(*allowed: str) -> None:
        extra = sorted(set(kwargs) - set(allowed))
        if extra:
            raise InvalidParticlesError(
                f"{path}: options {', '.join(extra)} do not apply to {f} files"
            )

    if f == "relion5":
        _no_extra()
        return read_relion5(
            path,
            tomograms=tomograms,
            tomogram_shapes=tomogram_shapes,
            pixel_size=pixel_size,
            apply_shifts=apply_shifts,
        )
    if f == "relion4":
        _no_extra()
        return read_relion4(path, pixel_size=pixel_size, apply_shifts=apply_shifts)
    if f == "csv":
        _no_extra("tomo_column")
        return read_csv_particles(path, units=units, pixel_size=pixel_size, **kwargs)  # type: ignore[arg-type]
    raise InvalidParticlesError(f"{path}: reading {f} particles is not implemented yet")

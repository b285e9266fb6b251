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

from cryoal._atomic import atomic_path, atomic_write
from cryoal.errors import InvalidParticlesError
from cryoal.io._copick import import_copick

__all__ = [
    "PARTICLE_FORMATS",
    "ParticleList",
    "make_particle_ids",
    "read_copick",
    "read_csv_particles",
    "read_dynamo",
    "read_particles",
    "read_relion4",
    "read_relion5",
    "read_relion_tomograms",
    "sniff_particle_format",
    "write_copick",
    "write_csv_particles",
    "write_particles",
    "write_relion",
]

logger = logging.getLogger(__name__)

PARTICLE_FORMATS = ("relion5", "relion4", "copick", "dynamo", "csv")
Units = Literal["angstrom", "pixel"]
PixelSize = float | Mapping[str, float] | None
Shapes = Mapping[str, Sequence[int]] | None

_MAX_LISTED = 5
#: the largest magnitude a number in a particle table may have (1e15 Å is 100 km)
_MAX_ABS = 1e15
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
        pixels: np.ndarray = xyz / ps[:, None]
        return pixels

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
    """``df[cols]`` as float64 ``(N, len(cols))``; non-numbers, NaN/Inf and values beyond
    ±:data:`_MAX_ABS` (no coordinate, angle, pixel size or score; their products with
    pixel sizes would overflow) are errors."""
    out = np.empty((len(df), len(cols)), dtype=np.float64)
    for j, c in enumerate(cols):
        vals = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(vals))
        if bad.size:
            rows = [f"row {i + 1} ({_show(df[c].iloc[i])})" for i in bad]
            _fail(where, f"have a missing or non-numeric {c}", rows, len(df))
        huge = np.flatnonzero(np.abs(vals) > _MAX_ABS)
        if huge.size:
            rows = [f"row {i + 1} ({_show(df[c].iloc[i])})" for i in huge]
            _fail(where, f"have a {c} beyond ±{_MAX_ABS:g}", rows, len(df))
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
    if not np.isfinite(value) or value <= 0 or value > _MAX_ABS:
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
    huge = [f"row {i + 1} ({tomos[i]})" for i in np.flatnonzero(~np.isfinite(xyz).all(axis=1))]
    _fail(where, "have a coordinate that is not a finite number of Å", huge, n)
    repeated = sorted({repr(str(c)) for c in df.columns[df.columns.duplicated()]})
    if repeated:
        raise InvalidParticlesError(
            f"{where}: column(s) {', '.join(repeated)} appear more than once (a row with more "
            "fields than the header, or a repeated column name)"
        )
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
            repeated = sorted({str(c) for c in t.columns[t.columns.duplicated()]})
            if repeated:
                raise InvalidParticlesError(
                    f"{path}: block data_{name} names column(s) {', '.join(repeated)} twice; "
                    "remove the repeated loop_ entries"
                )
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
    """RELION ZYZ Euler angles ``(N, 3)`` (rot, tilt, psi; degrees) → RELION matrices ``(N, 3, 3)``.

    RELION's Euler matrix (``Euler_angles2matrix``; the same matrix in RELION 5's
    ``Euler::anglesToMatrix3``) is ``Rotation.from_euler("ZYZ", angles).inv()`` in scipy,
    as copick's ``copick.util.relion.relion_rows_to_poses`` also uses it.
    """
    from scipy.spatial.transform import Rotation

    matrices: np.ndarray = Rotation.from_euler("ZYZ", angles_deg, degrees=True).inv().as_matrix()
    return matrices


def _matrices_to_euler(m: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_euler_matrices`: RELION matrices → ``(N, 3)`` ZYZ degrees."""
    from scipy.spatial.transform import Rotation

    with warnings.catch_warnings():  # tilt 0 or 180: psi set to 0, rot carries the angle
        warnings.filterwarnings("ignore", message="Gimbal lock", category=UserWarning)
        angles: np.ndarray = Rotation.from_matrix(m).inv().as_euler("ZYZ", degrees=True)
        return angles


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
            # RELION 5 ParticleSet::getMatrix3x3: A = A_subtomogram @ A_particle
            eul = _matrices_to_euler(np.einsum("nij,njk->nik", sub, _euler_matrices(eul)))
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
            return np.full(len(parts), _as_float(optics, [col], f"{where} (optics)")[0, 0])
        raise InvalidParticlesError(
            f"{where}: {len(optics)} optics groups but no rlnOpticsGroup column to pick one"
        )
    numbers = _as_float(optics, ["rlnOpticsGroup", col], f"{where} (optics)")
    table = dict(zip(numbers[:, 0].tolist(), numbers[:, 1].tolist(), strict=True))
    groups = pd.to_numeric(parts["rlnOpticsGroup"], errors="coerce")
    bad = [f"row {i + 1} (group {g!r})" for i, g in enumerate(groups) if g not in table]
    _fail(where, "name an optics group that the optics block lacks", bad, len(parts))
    return np.array([table[g] for g in groups], dtype=np.float64)


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
                f"{p}: units {units!r} (units= / --units) contradicts the column names "
                f"{', '.join(cols)} ({inferred})"
            )
        units = inferred
    if units is None:
        raise InvalidParticlesError(
            f"{p}: the units of x, y, z are not stated; on the command line pass --units "
            "angstrom or --units pixel (in Python units='angstrom' or units='pixel'), or name "
            "the columns x_angst, y_angst, z_angst or x_px, y_px, z_px"
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
            "; pass --coords-pixel-size (in Python pixel_size=) or add a pixel_size column",
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


# ---------------------------------------------------------------------------- Dynamo


def _dynamo_tomo_names(
    tomo_names: str | os.PathLike[str] | Mapping[int, str] | None, where: str
) -> dict[int, str]:
    if tomo_names is None:
        return {}
    if isinstance(tomo_names, Mapping):
        return {int(k): str(v) for k, v in tomo_names.items()}
    p = Path(tomo_names)
    if not p.exists():
        raise InvalidParticlesError(f"{where}: tomogram list {p} not found")
    if p.suffix.lower() == ".vll":
        # Dynamo volume list: one tomogram path per line, numbered from 1 in order
        # (a following '* index = N' line overrides the number)
        out: dict[int, str] = {}
        last: str | None = None
        n = 0
        for raw in p.read_text().splitlines():
            line = raw.strip()
            if not line:
                continue
            if line.startswith("*"):
                key, _, val = line.lstrip("* ").partition("=")
                if key.strip().lower() == "index" and last is not None:
                    out = {k: v for k, v in out.items() if v != last or k != n}
                    n = int(val.strip())
                    out[n] = last
                continue
            n += 1
            last = Path(line).stem
            out[n] = last
        return out
    import_copick("reading Dynamo tomogram lists")
    from copick.util.formats import read_dynamo_tomolist

    try:
        names: dict[int, str] = read_dynamo_tomolist(str(p))
        return names
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidParticlesError(
            f"{p}: not a Dynamo tomogram list (.doc: index path) ({exc})"
        ) from None


def read_dynamo(
    path: str | os.PathLike[str],
    *,
    pixel_size: PixelSize = None,
    tomo_names: str | os.PathLike[str] | Mapping[int, str] | None = None,
    apply_shifts: bool = True,
    index_base: int = 1,
) -> ParticleList:
    """Read a Dynamo ``.tbl`` (via ``dynamotable``): positions ``x + dx`` etc. in pixels.

    Parameters
    ----------
    path
        Dynamo table. Columns used: ``tomo`` (column 20), ``x, y, z`` (24-26), shifts
        ``dx, dy, dz`` (4-6), angles ``tdrot, tilt, narot`` (7-9, ZXZ), ``cc`` (10,
        becomes ``score``), ``apix`` (35, when positive) — all columns are kept.
    pixel_size
        Å/pixel, one number or ``{tomo: Å}``; default the table's ``apix`` column.
    tomo_names
        ``{number: name}``, or a Dynamo ``.doc`` (``index path`` lines, read by copick's
        ``read_dynamo_tomolist``) or ``.vll`` (one path per line, numbered from 1);
        names are the file stems. Without it the tomogram is ``str(number)``.
    apply_shifts
        Add ``dx, dy, dz`` to the positions (Dynamo's particle centre; default).
    index_base
        Index of the first voxel's centre in the table. Dynamo is MATLAB code and
        counts voxels from 1, so the default subtracts 1 to get 0-based voxel
        coordinates. (copick's own Dynamo converter uses the table values unchanged:
        pass ``index_base=0`` to agree with it.)

    Returns
    -------
    ParticleList
        ``source="dynamo"``; ``rot``/``tilt``/``psi`` (RELION ZYZ, converted from
        Dynamo's ZXZ as copick does), ``score`` from ``cc``.

    Raises
    ------
    InvalidParticlesError
        Unreadable or empty table, NaN positions, no pixel size, a tomogram number the
        list does not name.
    """
    import dynamotable

    p = Path(path)
    where = str(p)
    if not p.exists():
        raise InvalidParticlesError(f"{p}: file not found")
    if p.stat().st_size == 0:
        raise InvalidParticlesError(f"{p}: empty file")
    try:
        df = dynamotable.read(str(p))
    except Exception as exc:  # dynamotable raises assorted parser errors
        raise InvalidParticlesError(f"{p}: not a readable Dynamo table ({exc})") from None
    df = df.reset_index(drop=True)
    _check_columns(df, ("tomo", "x", "y", "z"), where)
    if len(df) == 0:
        raise InvalidParticlesError(f"{where}: no particles (the table is empty)")
    numbers = _as_float(df, ["tomo"], where)[:, 0].astype(np.int64)
    names = _dynamo_tomo_names(tomo_names, where)
    if names:
        unknown = sorted({int(n) for n in numbers} - set(names))
        if unknown:
            raise InvalidParticlesError(
                f"{where}: tomogram number(s) {', '.join(map(str, unknown[:_MAX_LISTED]))} are not "
                "in the tomogram list"
            )
        tomos = [names[int(n)] for n in numbers]
    else:
        tomos = [str(int(n)) for n in numbers]
    pos = _as_float(df, ["x", "y", "z"], where) - float(index_base)
    if apply_shifts and all(c in df.columns for c in ("dx", "dy", "dz")):
        pos = pos + _as_float(df, ["dx", "dy", "dz"], where)
    if pixel_size is not None:
        ps_list = []
        for t in tomos:
            v = _per_tomo(pixel_size, t)
            if v is None:
                raise InvalidParticlesError(f"{where}: pixel_size does not name tomogram {t!r}")
            ps_list.append(v)
        ps_rows = np.asarray(ps_list, dtype=np.float64)
    elif "apix" in df.columns and (pd.to_numeric(df["apix"], errors="coerce") > 0).all():
        ps_rows = _as_float(df, ["apix"], where)[:, 0]
    else:
        raise InvalidParticlesError(
            f"{where}: Dynamo positions are in pixels and the table gives no pixel size "
            "(apix column); pass pixel_size= (Å/pixel)"
        )
    for v in np.unique(ps_rows):
        _check_pixel_size(float(v), where)
    per_tomo = _one_per_tomo(tomos, ps_rows, where)
    extra: dict[str, Any] = {}
    if all(c in df.columns for c in ("tdrot", "tilt", "narot")):
        from scipy.spatial.transform import Rotation

        zxz = _as_float(df, ["tdrot", "tilt", "narot"], where)
        # copick.util.formats.dynamo_to_copick_transform: RELION matrix = zxz(...).inv()
        eul = _matrices_to_euler(Rotation.from_euler("zxz", zxz, degrees=True).inv().as_matrix())
        extra.update(rot=eul[:, 0], tilt=eul[:, 1], psi=eul[:, 2])
    if "cc" in df.columns:
        extra["score"] = pd.to_numeric(df["cc"], errors="coerce").to_numpy(dtype=np.float64)
    # Dynamo's own 'tilt' (its ZXZ angle) would clash with RELION's tilt: kept as dynamo_tilt
    return _finish(
        df.rename(columns={"tilt": "dynamo_tilt"}),
        tomos,
        pos * ps_rows[:, None],
        source="dynamo",
        where=where,
        pixel_size=per_tomo,
        extra=extra,
    )


# ---------------------------------------------------------------------------- copick


#: what copick raises on a damaged project file (JSONDecodeError, UnicodeDecodeError and
#: pydantic's ValidationError are ValueErrors; copick asserts on odd picks file names)
_COPICK_DATA_ERRORS = (
    OverflowError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OSError,
    AssertionError,
)


def _instance_id(value: Any) -> int:
    """A copick point's ``instance_id`` as an int64 (0 when unset)."""
    iid = 0 if value is None else int(value)
    if not -(2**63) <= iid < 2**63:
        raise ValueError(f"instance_id {iid} does not fit a 64-bit integer")
    return iid


def _copick_root(config: str | os.PathLike[str]) -> Any:
    copick = import_copick("reading copick projects")

    p = Path(config)
    if p.is_dir():
        found = next(
            (p / n for n in ("copick_config.json", "config.json") if (p / n).is_file()), None
        )
        if found is None:
            raise InvalidParticlesError(f"{p}: not a copick project (no copick_config.json)")
        p = found
    if not p.exists():
        raise InvalidParticlesError(f"{p}: copick config not found")
    try:
        return copick.from_file(str(p))
    except Exception as exc:  # copick/pydantic raise assorted errors on bad configs
        raise InvalidParticlesError(f"{p}: not a readable copick config ({exc})") from None


def _names(value: str | Sequence[str] | None) -> set[str] | None:
    if value is None:
        return None
    return {value} if isinstance(value, str) else set(value)


def read_copick(
    config: str | os.PathLike[str],
    *,
    object_name: str | Sequence[str] | None = None,
    user_id: str | Sequence[str] | None = None,
    session_id: str | Sequence[str] | None = None,
    runs: Sequence[str] | None = None,
    voxel_spacing: float | None = None,
) -> ParticleList:
    """Read copick picks (via the ``copick`` API) into one particle list.

    Parameters
    ----------
    config
        A copick project config (JSON), or a folder holding ``copick_config.json``.
    object_name, user_id, session_id
        Keep only picks of these objects / users / sessions (one name or several).
    runs
        Keep only these runs (default: every run, in the project's order).
    voxel_spacing
        Å/voxel of the tomograms the picks will be boxed from; default: the run's
        voxel spacing when it has exactly one.

    Returns
    -------
    ParticleList
        ``source="copick"``, ``tomo`` = run name; ``x, y, z`` = point location plus the
        transformation's translation (copick locations are in Å from the centre of voxel
        0, as ours; copick's RELION converter puts a tomogram's centre at
        ``size / 2 * pixel size`` too); ``label`` = object name, ``score``,
        ``instance_id``, ``user_id``, ``session_id``, ``rot``/``tilt``/``psi`` (RELION
        ZYZ from the transformation's rotation). Ids count points per run in the order
        the picks sets and their points come.

    Raises
    ------
    InvalidParticlesError
        No readable config, an unknown run, no picks matching the filters (the message
        lists which object/user/session picks exist).
    """
    root = _copick_root(config)
    where = str(config)
    all_runs = list(root.runs)
    by_name = {r.name: r for r in all_runs}
    if runs is not None:
        unknown = [r for r in runs if r not in by_name]
        if unknown:
            raise InvalidParticlesError(
                f"{where}: run(s) {', '.join(unknown[:_MAX_LISTED])} not in the copick project "
                f"(runs: {', '.join(list(by_name)[:_MAX_LISTED]) or 'none'})"
            )
        all_runs = [by_name[r] for r in runs]
    objs, users, sessions = _names(object_name), _names(user_id), _names(session_id)
    rows: list[dict[str, Any]] = []
    mats: list[np.ndarray] = []
    seen: set[tuple[str, str, str]] = set()
    pixel: dict[str, float] = {}
    for run in all_runs:
        current = f"run {run.name!r}"
        try:
            for picks in run.picks:
                current = f"picks file {getattr(picks, 'path', None) or run.name}"
                key = (str(picks.pickable_object_name), str(picks.user_id), str(picks.session_id))
                seen.add(key)
                if objs is not None and key[0] not in objs:
                    continue
                if users is not None and key[1] not in users:
                    continue
                if sessions is not None and key[2] not in sessions:
                    continue
                for pt in picks.points or []:
                    t = np.asarray(pt.transformation, dtype=np.float64).reshape(4, 4)
                    loc = np.array([pt.location.x, pt.location.y, pt.location.z], dtype=np.float64)
                    if not np.all(np.abs(loc) <= _MAX_ABS) or not np.all(np.abs(t) <= _MAX_ABS):
                        raise ValueError(
                            f"a point of {picks.pickable_object_name} has a location or "
                            f"transformation that is not finite or beyond ±{_MAX_ABS:g}"
                        )
                    rows.append(
                        {
                            "tomo": run.name,
                            "xyz": loc + t[:3, 3],
                            "label": key[0],
                            "score": np.nan if pt.score is None else float(pt.score),
                            "instance_id": _instance_id(pt.instance_id),
                            "user_id": key[1],
                            "session_id": key[2],
                        }
                    )
                    mats.append(t[:3, :3])
            current = f"run {run.name!r} voxel spacings"
            if voxel_spacing is not None:
                pixel[run.name] = _check_pixel_size(float(voxel_spacing), where)
            else:
                spacings = [float(vs.voxel_size) for vs in run.voxel_spacings]
                if len(spacings) == 1:
                    pixel[run.name] = spacings[0]
        except _COPICK_DATA_ERRORS as exc:  # JSON, pydantic validation, odd file names
            lines = [ln.strip() for ln in str(exc).strip().splitlines()[:3]]
            raise InvalidParticlesError(
                f"{where}: copick {current}: not readable ({type(exc).__name__}: "
                f"{'; '.join(lines)[:300]}); fix or remove the file"
            ) from None
    if not rows:
        have = "; ".join(f"{o}/{u}/{s}" for o, u, s in sorted(seen)[:10]) or "none"
        raise InvalidParticlesError(
            f"{where}: no copick picks match object_name={object_name!r} user_id={user_id!r} "
            f"session_id={session_id!r}; picks present (object/user/session): {have}"
        )
    tomos = [r["tomo"] for r in rows]
    xyz = np.stack([r["xyz"] for r in rows])
    bad = [f"row {i + 1} ({tomos[i]})" for i in np.flatnonzero(~np.isfinite(xyz).all(axis=1))]
    _fail(where, "have a non-finite location", bad, len(rows))
    eul = _matrices_to_euler(np.stack(mats))
    extra = {
        "label": pd.Series([r["label"] for r in rows], dtype=object),
        "score": np.array([r["score"] for r in rows], dtype=np.float64),
        "rot": eul[:, 0],
        "tilt": eul[:, 1],
        "psi": eul[:, 2],
        "instance_id": np.array([r["instance_id"] for r in rows], dtype=np.int64),
        "user_id": pd.Series([r["user_id"] for r in rows], dtype=object),
        "session_id": pd.Series([r["session_id"] for r in rows], dtype=object),
    }
    used = set(tomos)
    return _finish(
        pd.DataFrame(index=range(len(rows))),
        tomos,
        xyz,
        source="copick",
        where=where,
        pixel_size={k: v for k, v in pixel.items() if k in used},
        extra=extra,
    )


def write_copick(
    config: str | os.PathLike[str],
    particles: ParticleList,
    *,
    user_id: str,
    session_id: str,
    object_name: str | None = None,
    overwrite: bool = False,
    create_runs: bool = True,
) -> int:
    """Write particles as copick picks (via the ``copick`` API) under ``user_id``/``session_id``.

    One picks set per (run, object): the object is ``object_name`` for all rows, else
    each row's ``label``. Each point gets ``location`` (Å, ``x, y, z``), ``score``
    (``score`` column, else 1.0), ``instance_id`` (``instance_id`` column, else 0) and a
    transformation with the rotation of ``rot``/``tilt``/``psi`` (identity when absent)
    and zero translation. copick's point model has no other fields, so ranks and
    class numbers are not stored (the object name is the class).

    Parameters
    ----------
    config
        copick config (JSON) or project folder.
    particles
        What to write; ``tomo`` names the run.
    user_id, session_id
        Where the picks go (copick's pick identity with the object name).
    object_name
        One object for every row (must be a pickable object of the project).
    overwrite
        Replace existing picks with the same object/user/session (default: error).
    create_runs
        Create runs that the project lacks (default); else unknown runs are errors.

    Returns
    -------
    int
        Number of points written.

    Raises
    ------
    InvalidParticlesError
        Rows without an object (no ``label``), objects not in the project, existing
        picks without ``overwrite``, unknown runs with ``create_runs=False``. All checks
        run before anything is written.
    """
    root = _copick_root(config)
    where = str(config)
    table = particles.table
    if object_name is not None:
        objects = [object_name] * len(table)
    elif "label" in table.columns:
        objects = ["" if v is None or pd.isna(v) else str(v) for v in table["label"]]
        missing = [f"row {i + 1} ({table['id'].iloc[i]})" for i, o in enumerate(objects) if not o]
        _fail(
            where,
            "have no label to use as the copick object name",
            missing,
            len(table),
            "; pass object_name=",
        )
    else:
        raise InvalidParticlesError(f"{where}: particles have no label column; pass object_name=")
    known = {o.name for o in root.pickable_objects}
    unknown = sorted(set(objects) - known)
    if unknown:
        raise InvalidParticlesError(
            f"{where}: object(s) {', '.join(unknown[:_MAX_LISTED])} are not pickable objects of "
            f"the project ({', '.join(sorted(known)) or 'none'}); add them to the config"
        )
    runs = {r.name: r for r in root.runs}
    tomos = [str(t) for t in table["tomo"]]
    missing_runs = sorted(set(tomos) - set(runs))
    if missing_runs and not create_runs:
        raise InvalidParticlesError(
            f"{where}: run(s) {', '.join(missing_runs[:_MAX_LISTED])} not in the project"
        )
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (t, o) in enumerate(zip(tomos, objects, strict=True)):
        groups.setdefault((t, o), []).append(i)
    if not overwrite:
        clash = []
        for t, o in groups:
            if t in runs and run_has_picks(runs[t], o, user_id, session_id):
                clash.append(f"{t}/{o}")
        if clash:
            raise InvalidParticlesError(
                f"{where}: picks {user_id}/{session_id} already exist for {', '.join(clash[:_MAX_LISTED])}; "
                "pass overwrite=True or another session_id"
            )
    xyz = particles.coordinates()
    if not np.isfinite(xyz).all():
        raise InvalidParticlesError(f"{where}: particles have non-finite coordinates")
    rot = np.tile(np.eye(3), (len(table), 1, 1))
    if all(c in table.columns for c in ("rot", "tilt", "psi")):
        eul = table[["rot", "tilt", "psi"]].to_numpy(dtype=np.float64)
        rot = _euler_matrices(eul)
    scores = (
        table["score"].to_numpy(dtype=np.float64)
        if "score" in table.columns
        else np.ones(len(table))
    )
    scores = np.where(np.isfinite(scores), scores, 0.0)
    inst = (
        table["instance_id"].to_numpy(dtype=np.int64)
        if "instance_id" in table.columns
        else np.zeros(len(table), dtype=np.int64)
    )
    n = 0
    for (t, o), idx in groups.items():
        run = runs.get(t) or root.new_run(t)
        runs[t] = run
        picks = run.new_picks(
            object_name=o, session_id=session_id, user_id=user_id, exist_ok=overwrite
        )
        tf = np.zeros((len(idx), 4, 4))
        tf[:, :3, :3] = rot[idx]
        tf[:, 3, 3] = 1.0
        picks.from_numpy(xyz[idx], tf, instance_ids=inst[idx], scores=scores[idx])
        n += len(idx)
    return n


def run_has_picks(run: Any, object_name: str, user_id: str, session_id: str) -> bool:
    """Whether a copick run already holds picks of this object/user/session."""
    return bool(run.get_picks(object_name=object_name, user_id=user_id, session_id=session_id))


# ---------------------------------------------------------------------------- writers

_STAR_SPECIAL = {
    "id": "cryoalId",
    "label": "cryoalLabel",
    "score": "cryoalScore",
    "rank": "cryoalRank",
}
_OWN = {"id", "tomo", "x", "y", "z", "rot", "tilt", "psi"}


def _star_column(name: str) -> str:
    from cryoal.io.labels import _column_to_star

    return _STAR_SPECIAL.get(name) or _column_to_star(name)


def _centres_for(
    particles: ParticleList,
    tomograms: str | os.PathLike[str] | None,
    tomogram_shapes: Shapes,
    pixel_size: PixelSize,
    where: str,
) -> dict[str, tuple[float, float, float]]:
    centres = dict(particles.centres)
    if tomograms is not None:
        centres.update({t: g.centre for t, g in read_relion_tomograms(tomograms).items()})
    ps = pixel_size if pixel_size is not None else dict(particles.pixel_size)
    centres.update(
        {
            t: g.centre
            for t, g in _geometry_from_shapes(
                particles.tomograms, tomogram_shapes, ps, where
            ).items()
        }
    )
    missing = [t for t in particles.tomograms if t not in centres]
    if missing:
        raise InvalidParticlesError(
            f"{where}: RELION 5 centred coordinates need each tomogram's size; unknown for "
            f"{', '.join(missing[:_MAX_LISTED])}; pass tomograms=tomograms.star or tomogram_shapes="
        )
    return centres


def write_relion(
    path: str | os.PathLike[str],
    particles: ParticleList,
    *,
    coordinates: Literal["relion5", "relion4", "both"] = "relion5",
    tomograms: str | os.PathLike[str] | None = None,
    tomogram_shapes: Shapes = None,
    pixel_size: PixelSize = None,
    class_numbers: Mapping[str, int] | Sequence[str] | None = None,
    class_column: str = "label",
) -> Path:
    """Write a RELION particles.star (optics + particles blocks, via ``starfile``), atomically.

    Parameters
    ----------
    path
        Output ``.star``.
    particles
        What to write.
    coordinates
        ``"relion5"``: ``rlnCenteredCoordinate{X,Y,Z}Angst`` (Å from the tomogram
        centre, module docs); ``"relion4"``: ``rlnCoordinate{X,Y,Z}`` in pixels of each
        tomogram's pixel size; ``"both"``.
    tomograms, tomogram_shapes
        Tomogram sizes for centred coordinates, when the particle list does not carry
        them (``particles.centres``, set by the RELION 5 reader).
    pixel_size
        Å/pixel for the pixel form and the optics block's ``rlnTomoTiltSeriesPixelSize``
        (default ``particles.pixel_size``).
    class_numbers
        ``{label: class number}``, or the class names in order (class ``i + 1``):
        writes ``rlnClassNumber`` from ``class_column`` (0 where empty). Without it a
        kept ``rlnClassNumber`` column is written as is.
    class_column
        The column holding class names (``label``, or e.g. ``predicted``).

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    Columns: ``rlnTomoName``, the coordinates, ``rlnAngleRot/Tilt/Psi`` (from ``rot``,
    ``tilt``, ``psi``), ``rlnOpticsGroup`` (one group per pixel size),
    ``rlnClassNumber``, ``cryoalId``, ``cryoalLabel``, ``cryoalScore``, ``cryoalRank``,
    and every other column (``rln...``/``cryoal...`` as is, others ``cryoalName``).
    Origin shifts were folded into the positions on reading, so none are written.

    Raises
    ------
    InvalidParticlesError
        Unknown tomogram sizes (RELION 5 form) or pixel sizes, labels missing from
        ``class_numbers``.
    """
    p = Path(path)
    where = str(p)
    table = particles.table.reset_index(drop=True)
    tomos = [str(t) for t in table["tomo"]]
    xyz = particles.coordinates()
    ps_map = dict(particles.pixel_size)
    if pixel_size is not None:
        ps_map.update({t: v for t in set(tomos) if (v := _per_tomo(pixel_size, t)) is not None})
    out = pd.DataFrame({"rlnTomoName": pd.Series(tomos, dtype=object)})
    if coordinates in ("relion5", "both"):
        centres = _centres_for(particles, tomograms, tomogram_shapes, pixel_size, where)
        c = np.array([centres[t] for t in tomos], dtype=np.float64)
        for j, col in enumerate(_CENTRED):
            out[col] = xyz[:, j] - c[:, j]
    elif coordinates != "relion4":
        raise InvalidParticlesError(
            f"{where}: coordinates must be relion5, relion4 or both, not {coordinates!r}"
        )
    missing_ps = sorted(set(tomos) - set(ps_map))
    if coordinates in ("relion4", "both") and missing_ps:
        raise InvalidParticlesError(
            f"{where}: the pixel form needs each tomogram's pixel size; unknown for "
            f"{', '.join(missing_ps[:_MAX_LISTED])}; pass pixel_size="
        )
    if coordinates in ("relion4", "both"):
        ps_rows = np.array([ps_map[t] for t in tomos], dtype=np.float64)
        for j, col in enumerate(_COORD):
            out[col] = xyz[:, j] / ps_rows
    if all(c in table.columns for c in ("rot", "tilt", "psi")):
        for col, src in zip(_ANGLES, ("rot", "tilt", "psi"), strict=True):
            out[col] = table[src].to_numpy(dtype=np.float64)
    # optics: one group per distinct pixel size (tomograms of unknown pixel size: group 1)
    sizes = sorted({ps_map[t] for t in set(tomos) if t in ps_map})
    group_of = {s: i + 1 for i, s in enumerate(sizes)}
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [group_of[s] for s in sizes] or [1],
            "rlnOpticsGroupName": [f"opticsGroup{group_of[s]}" for s in sizes] or ["opticsGroup1"],
        }
    )
    if sizes:
        optics["rlnTomoTiltSeriesPixelSize"] = sizes
    out["rlnOpticsGroup"] = [group_of.get(ps_map.get(t, -1.0), 1) for t in tomos]
    if class_numbers is not None:
        if class_column not in table.columns:
            raise InvalidParticlesError(
                f"{where}: class_numbers given but the particles have no {class_column} column"
            )
        if not isinstance(class_numbers, Mapping):
            class_numbers = {str(n): i + 1 for i, n in enumerate(class_numbers)}
        labels = ["" if v is None or pd.isna(v) else str(v) for v in table[class_column]]
        bad = [
            f"row {i + 1} ({lab!r})"
            for i, lab in enumerate(labels)
            if lab and lab not in class_numbers
        ]
        _fail(where, f"have a {class_column} missing from class_numbers", bad, len(labels))
        out["rlnClassNumber"] = [int(class_numbers[lab]) if lab else 0 for lab in labels]
    for col in table.columns:
        name = str(col)
        if name in _OWN and name != "id":
            continue
        star = _star_column(name)
        if star in out.columns or star in _FOLDED or star == "rlnTomoName":
            continue
        out[star] = table[col].to_numpy()
    with atomic_path(p) as tmp:
        starfile.write({"optics": optics, "particles": out}, tmp)
    return p


def write_csv_particles(
    path: str | os.PathLike[str], particles: ParticleList, *, units: Units = "angstrom"
) -> Path:
    """Write particles as CSV (``.tsv``: tab-separated), atomically.

    Columns: ``id``, ``tomo``, ``x_angst, y_angst, z_angst`` (or ``x_px, y_px, z_px``
    plus ``pixel_size`` for ``units="pixel"``), then every other column. The unit
    suffixes let :func:`read_csv_particles` read it back without ``units=``.

    Raises
    ------
    InvalidParticlesError
        ``units="pixel"`` with an unknown pixel size.
    """
    p = Path(path)
    table = particles.table.reset_index(drop=True)
    out = pd.DataFrame({"id": table["id"], "tomo": table["tomo"]})
    if units == "angstrom":
        xyz = particles.coordinates()
        for j, a in enumerate(_XYZ):
            out[f"{a}_angst"] = xyz[:, j]
    elif units == "pixel":
        xyz = particles.coordinates("pixel")
        for j, a in enumerate(_XYZ):
            out[f"{a}_px"] = xyz[:, j]
        out["pixel_size"] = [particles.pixel_size[str(t)] for t in table["tomo"]]
    else:
        raise InvalidParticlesError(f"{p}: units must be 'angstrom' or 'pixel', not {units!r}")
    for col in table.columns:
        if col not in _OWN or col in ("rot", "tilt", "psi"):
            if col not in out.columns and col not in ("id", "tomo"):
                out[col] = table[col].to_numpy()
    sep = "\t" if p.name.lower().endswith(".tsv") else ","
    with atomic_write(p, "w", encoding="utf-8", newline="") as fh:
        out.to_csv(fh, sep=sep, index=False, float_format="%.6f")
    return p


def write_particles(
    path: str | os.PathLike[str],
    particles: ParticleList,
    *,
    fmt: str | None = None,
    **kwargs: Any,
) -> Path:
    """Write particles by format: ``relion5``/``relion4`` (``.star``), ``csv`` (``.csv``/``.tsv``).

    copick picks go through :func:`write_copick` (they need a user and session).
    ``kwargs`` go to :func:`write_relion` or :func:`write_csv_particles`.
    """
    p = Path(path)
    f = fmt or (
        "relion5"
        if p.suffix.lower() == ".star"
        else "csv"
        if p.suffix.lower() in (".csv", ".tsv")
        else None
    )
    if f in ("relion5", "relion4"):
        kwargs.setdefault("coordinates", f)
        return write_relion(p, particles, **kwargs)
    if f == "csv":
        return write_csv_particles(p, particles, **kwargs)
    raise InvalidParticlesError(
        f"{p}: cannot write particles as {f or p.suffix or '(no extension)'!r}; use .star or .csv "
        "(copick: write_copick)"
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
    if f == "dynamo":
        _no_extra("tomo_names", "index_base")
        return read_dynamo(path, pixel_size=pixel_size, apply_shifts=apply_shifts, **kwargs)  # type: ignore[arg-type]
    _no_extra("object_name", "user_id", "session_id", "runs")
    vs = pixel_size if isinstance(pixel_size, (int, float)) else None
    return read_copick(path, voxel_spacing=vs, **kwargs)  # type: ignore[arg-type]

"""Labels from real particle files, matched to pool items.

Expert labels for tomogram particles arrive as RELION STAR files (``rlnClassNumber``,
with or without ``rlnImageName``), copick picks (one object per class), or CSV tables.
This module turns any of them into the ``id,label`` table that
:meth:`cryoal.active.Project.add_labels` takes, matching each row to a pool item:

``by="id"``
    the row's id (CSV ``id``, STAR ``cryoalId`` written by cryoal, ``rlnImageName``
    when it equals a pool id) is a pool id;
``by="image"``
    ``rlnImageName`` (or ``id``) is a file path whose trailing folders match a pool id:
    ``Extract/job013/Subtomograms/TS_01/2_stack2d.mrcs`` matches the pool id
    ``TS_01/2_stack2d.mrcs`` (the pool root was ``Subtomograms``) and the other way
    round; ``000005@stack.mrcs`` is ``stack.mrcs#4``;
``by="coordinate"``
    same tomogram and the nearest pool particle within ``tolerance`` Å (needs the
    pool's particle table).

Rows that match nothing (unknown), two rows that land on one pool item with different
labels (duplicate), and rows that could be either of two pool items (ambiguous) are
reported in one line per kind, a few examples each.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np
import pandas as pd

from cryoal.errors import InvalidLabelsError
from cryoal.io.particles import (
    ParticleList,
    PixelSize,
    Shapes,
    Units,
    _particles_block,
    _read_star_blocks,
    read_particles,
    sniff_particle_format,
)

__all__ = [
    "LabelMatch",
    "labels_from_particles",
    "match_labels",
    "read_class_names",
    "read_particle_labels",
]

MatchBy = Literal["auto", "id", "image", "coordinate"]
_MAX_LISTED = 5
_RELION_NAME = re.compile(r"^(\d+)@(.+)$")


# ---------------------------------------------------------------------------- class names


def read_class_names(spec: str | os.PathLike[str] | Mapping[Any, str] | None) -> dict[int, str]:
    """Class number → name, from a mapping, a file, or a short string.

    Parameters
    ----------
    spec
        ``{1: "ribosome"}``; a ``.yaml``/``.yml``/``.json`` file holding such a mapping;
        a ``.csv``/``.tsv`` with columns ``class,name`` (also ``number``/``rlnClassNumber``
        and ``label``); or a string ``"1=ribosome,2=proteasome"`` (``:`` works too).

    Returns
    -------
    dict
        ``{int: str}``.

    Raises
    ------
    InvalidLabelsError
        Unreadable file, a key that is not an integer, an empty name, a name twice.
    """
    if spec is None:
        return {}
    where = "class names"
    items: list[tuple[Any, Any]]
    if isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        text = str(spec)
        p = Path(text)
        suffix = p.suffix.lower()
        if suffix in (".yaml", ".yml", ".json", ".csv", ".tsv"):
            where = str(p)
            if not p.is_file():
                raise InvalidLabelsError(f"{p}: class-name file not found")
            if suffix in (".csv", ".tsv"):
                df = pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",", dtype=str)
                key = next(
                    (c for c in ("class", "number", "rlnClassNumber") if c in df.columns), None
                )
                val = next((c for c in ("name", "label") if c in df.columns), None)
                if key is None or val is None:
                    raise InvalidLabelsError(
                        f"{p}: a class-name table has the header 'class,name'; found "
                        f"{', '.join(df.columns)}"
                    )
                items = list(zip(df[key], df[val], strict=True))
            else:
                import yaml

                try:
                    data = (
                        json.loads(p.read_text())
                        if suffix == ".json"
                        else yaml.safe_load(p.read_text())
                    )
                except (ValueError, yaml.YAMLError) as exc:
                    raise InvalidLabelsError(f"{p}: not readable ({exc})") from None
                if not isinstance(data, Mapping):
                    raise InvalidLabelsError(f"{p}: expected a mapping 'number: name'")
                items = list(data.items())
        else:
            items = []
            for part in text.split(","):
                if not part.strip():
                    continue
                k, sep, v = part.partition("=") if "=" in part else part.partition(":")
                if not sep:
                    raise InvalidLabelsError(
                        f"class names {text!r}: {part.strip()!r} is not 'number=name'"
                    )
                items.append((k, v))
    out: dict[int, str] = {}
    for k, v in items:
        try:
            num = int(str(k).strip())
        except ValueError:
            raise InvalidLabelsError(f"{where}: class {k!r} is not an integer") from None
        name = "" if v is None else str(v).strip()
        if not name:
            raise InvalidLabelsError(f"{where}: class {num} has an empty name")
        if num in out:
            raise InvalidLabelsError(f"{where}: class {num} is named twice")
        out[num] = name
    dup = [n for n in set(out.values()) if list(out.values()).count(n) > 1]
    if dup:
        raise InvalidLabelsError(f"{where}: name {dup[0]!r} is given to two classes")
    return out


def _label_values(
    table: pd.DataFrame, column: str, class_names: Mapping[int, str], where: str
) -> list[str | None]:
    vals = table[column]
    out: list[str | None] = []
    if column == "rlnClassNumber" or (class_names and pd.api.types.is_numeric_dtype(vals)):
        unknown: list[str] = []
        for i, v in enumerate(vals):
            if v is None or pd.isna(v):
                out.append(None)
                continue
            try:
                num = int(float(v))
            except (TypeError, ValueError, OverflowError):  # "x", inf
                unknown.append(f"row {i + 1} ({v!r})")
                out.append(None)
                continue
            if class_names:
                if num not in class_names:
                    unknown.append(f"row {i + 1} (class {num})")
                out.append(class_names.get(num))
            else:
                out.append(str(num))
        if unknown:
            listed = "; ".join(unknown[:_MAX_LISTED])
            more = f" (and {len(unknown) - _MAX_LISTED} more)" if len(unknown) > _MAX_LISTED else ""
            raise InvalidLabelsError(
                f"{where}: {len(unknown)} of {len(vals)} rows have a {column} with no class "
                f"name: {listed}{more}; known classes {sorted(class_names)}"
            )
        return out
    for v in vals:
        s = "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v).strip()
        out.append(s or None)
    return out


def _pick_label_column(table: pd.DataFrame, column: str | None, where: str) -> str:
    if column is not None:
        if column not in table.columns:
            raise InvalidLabelsError(
                f"{where}: no column {column!r}; found {', '.join(map(str, table.columns))}"
            )
        return column
    for c in ("label", "cryoalLabel", "rlnClassNumber"):
        if c in table.columns:
            return c
    raise InvalidLabelsError(
        f"{where}: no label column (label, cryoalLabel or rlnClassNumber); found "
        f"{', '.join(map(str, table.columns))}; name one with label_column="
    )


def labels_from_particles(
    particles: ParticleList,
    *,
    column: str | None = None,
    class_names: str | os.PathLike[str] | Mapping[Any, str] | None = None,
) -> ParticleList:
    """The particle list with its ``label`` column set from a chosen column.

    Parameters
    ----------
    particles
        Any particle list.
    column
        Source column: default ``label`` (copick object names, CSV labels), else
        ``cryoalLabel``, else ``rlnClassNumber``.
    class_names
        For class numbers: ``{number: name}`` or a spec for :func:`read_class_names`;
        without it a class number becomes the label ``"1"``, ``"2"`` ...

    Returns
    -------
    ParticleList
        A copy with ``label`` (str or None).

    Raises
    ------
    InvalidLabelsError
        No such column; a class number missing from ``class_names``.
    """
    where = str(particles.table.attrs.get("source", particles.source))
    names = read_class_names(class_names)
    col = _pick_label_column(particles.table, column, where)
    table = particles.table.copy()
    table["label"] = pd.Series(_label_values(table, col, names, where), dtype=object)
    table.attrs.update(particles.table.attrs)
    return ParticleList(table, particles.pixel_size, particles.source, particles.centres)


# ---------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class LabelMatch:
    """Labels matched to pool items.

    Attributes
    ----------
    table
        ``id`` (pool id), ``label``, ``row`` (1-based source row), one row per matched
        pool item, in source order.
    by
        How rows were matched: ``"id"``, ``"image"`` or ``"coordinate"``.
    unknown, duplicate, ambiguous
        Human-readable descriptions of the rows that matched nothing, that repeat a pool
        item with another label, or that could be more than one pool item.
    distances
        Coordinate matching: distance in Å of each matched row (empty otherwise).
    """

    table: pd.DataFrame
    by: str
    unknown: list[str] = field(default_factory=list)
    duplicate: list[str] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)
    distances: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def ok(self) -> bool:
        """No unknown, duplicate or ambiguous row."""
        return not (self.unknown or self.duplicate or self.ambiguous)

    def summary(self, where: str = "labels") -> str:
        """One line: how many matched, and a few examples of each problem."""
        parts = [f"{where}: {len(self.table)} rows matched by {self.by}"]
        for what, rows in (
            ("match no pool item", self.unknown),
            ("repeat a pool item with another label", self.duplicate),
            ("are ambiguous", self.ambiguous),
        ):
            if rows:
                listed = "; ".join(rows[:_MAX_LISTED])
                more = f" (and {len(rows) - _MAX_LISTED} more)" if len(rows) > _MAX_LISTED else ""
                parts.append(f"{len(rows)} {what}: {listed}{more}")
        return "; ".join(parts) if len(parts) == 1 else parts[0] + " — " + " | ".join(parts[1:])


def _components(path: str) -> list[str]:
    s = path.strip().replace("\\", "/")
    m = _RELION_NAME.match(s)
    if m:  # RELION "000005@stack.mrcs" is pool id "stack.mrcs#4"
        s = f"{m.group(2)}#{int(m.group(1)) - 1}"
    return [c for c in PurePosixPath(s).parts if c not in ("/", ".")]


def _match_images(
    values: Sequence[str], pool_ids: Sequence[str]
) -> tuple[list[str | None], list[str], list[str]]:
    """Pool id per value by trailing path components; (matches, unknown, ambiguous)."""
    by_base: dict[str, list[tuple[str, list[str]]]] = {}
    for pid in pool_ids:
        comps = _components(pid)
        if comps:
            by_base.setdefault(comps[-1], []).append((pid, comps))
    out: list[str | None] = []
    unknown: list[str] = []
    ambiguous: list[str] = []
    for i, v in enumerate(values):
        comps = _components(v)
        cands = by_base.get(comps[-1], []) if comps else []
        best: list[tuple[int, str]] = []
        for pid, pc in cands:
            k = min(len(pc), len(comps))
            if pc[-k:] == comps[-k:]:
                best.append((k, pid))
        if not best:
            out.append(None)
            unknown.append(f"row {i + 1} {v!r}")
            continue
        top = max(k for k, _ in best)
        winners = [pid for k, pid in best if k == top]
        if len(winners) > 1:
            out.append(None)
            ambiguous.append(f"row {i + 1} {v!r} (pool ids {', '.join(winners[:3])})")
            continue
        out.append(winners[0])
    return out, unknown, ambiguous


def _pool_table(pool_particles: ParticleList | pd.DataFrame) -> pd.DataFrame:
    return pool_particles.table if isinstance(pool_particles, ParticleList) else pool_particles


def _match_coordinates(
    tomos: Sequence[str],
    xyz: np.ndarray,
    pool: pd.DataFrame,
    tolerance: float,
) -> tuple[list[str | None], np.ndarray, list[str], list[str]]:
    from scipy.spatial import cKDTree

    ids = [str(v) for v in pool["id"]]
    ptomo = np.asarray([str(t) for t in pool["tomo"]], dtype=object)
    pxyz = pool[["x", "y", "z"]].to_numpy(dtype=np.float64)
    trees: dict[str, tuple[Any, np.ndarray]] = {}
    for t in set(tomos):
        rows = np.flatnonzero(ptomo == t)
        if rows.size:
            trees[t] = (cKDTree(pxyz[rows]), rows)
    out: list[str | None] = []
    dist = np.full(len(tomos), np.nan)
    unknown: list[str] = []
    ambiguous: list[str] = []
    for i, (t, p) in enumerate(zip(tomos, xyz, strict=True)):
        if t not in trees:
            out.append(None)
            unknown.append(f"row {i + 1} (tomogram {t!r} not in the pool)")
            continue
        tree, rows = trees[t]
        k = min(2, len(rows))
        d, j = tree.query(p, k=k)
        d, j = np.atleast_1d(d), np.atleast_1d(j)
        if d[0] > tolerance:
            out.append(None)
            unknown.append(
                f"row {i + 1} ({t} at {p[0]:.1f}, {p[1]:.1f}, {p[2]:.1f} Å; nearest pool "
                f"particle {d[0]:.1f} Å away)"
            )
            continue
        if k == 2 and d[1] <= tolerance:
            out.append(None)
            ambiguous.append(
                f"row {i + 1} ({t}: {ids[rows[j[0]]]} at {d[0]:.1f} Å and {ids[rows[j[1]]]} at "
                f"{d[1]:.1f} Å are both within {tolerance:g} Å)"
            )
            continue
        out.append(ids[rows[j[0]]])
        dist[i] = d[0]
    return out, dist, unknown, ambiguous


def match_labels(
    labels: ParticleList | pd.DataFrame,
    *,
    pool_ids: Collection[str],
    pool_particles: ParticleList | pd.DataFrame | None = None,
    by: MatchBy = "auto",
    tolerance: float | None = None,
    strict: bool = True,
    where: str | None = None,
) -> LabelMatch:
    """Match labelled rows to pool items by id, image path or coordinate.

    Parameters
    ----------
    labels
        A particle list (``tomo``, ``x``, ``y``, ``z``, ``label``) or a table with
        ``label`` and ``id`` (or ``rlnImageName``/``image``).
    pool_ids
        The pool's ids.
    pool_particles
        The pool's particles (``id``, ``tomo``, ``x``, ``y``, ``z`` in Å), for
        ``by="coordinate"``.
    by
        ``"auto"``: ``id`` when the rows' ids are pool ids, else ``image`` when they
        look like paths, else ``coordinate`` when both sides have coordinates.
    tolerance
        Coordinate matching radius in Å (default: two voxels of the pool's largest
        pixel size when known, else 10 Å).
    strict
        Raise on any unknown, duplicate or ambiguous row (default); else report them in
        the result and keep the good rows.
    where
        Name of the source for messages.

    Returns
    -------
    LabelMatch
        Rows with an empty label are left out (a picks file half filled in imports as is).

    Raises
    ------
    InvalidLabelsError
        ``strict`` and a problem row (one line: counts and a few examples per kind);
        nothing to match on.
    """
    table = labels.table if isinstance(labels, ParticleList) else labels
    src = where or str(table.attrs.get("source", "labels"))
    known = set(map(str, pool_ids))
    if "label" not in table.columns:
        raise InvalidLabelsError(f"{src}: no label column to import")
    lab = [
        None
        if v is None or (not isinstance(v, str) and pd.isna(v)) or not str(v).strip()
        else str(v).strip()
        for v in table["label"]
    ]
    id_col = next((c for c in ("id", "cryoalId") if c in table.columns), None)
    img_col = next((c for c in ("rlnImageName", "image") if c in table.columns), None)
    has_xyz = all(c in table.columns for c in ("tomo", "x", "y", "z"))
    ids = [str(v) for v in table[id_col]] if id_col else None
    method = by
    if method == "auto":
        if ids is not None and sum(s in known for s in ids) >= max(1, len(ids) // 2):
            method = "id"
        elif img_col is not None or (ids is not None and any("/" in s or "@" in s for s in ids)):
            method = "image"
        elif has_xyz and pool_particles is not None:
            method = "coordinate"
        elif ids is not None:
            method = "id"
        else:
            raise InvalidLabelsError(
                f"{src}: nothing to match rows to pool items on: no id or rlnImageName column, "
                "and no coordinates (or no pool coordinates)"
            )
    matched: list[str | None]
    unknown: list[str] = []
    ambiguous: list[str] = []
    dist = np.zeros(0)
    if method == "id":
        if ids is None:
            raise InvalidLabelsError(f"{src}: by='id' needs an id column")
        matched = [s if s in known else None for s in ids]
        unknown = [f"row {i + 1} {s!r}" for i, s in enumerate(ids) if s not in known]
        if unknown and known:
            unknown[-1] += f" (pool ids look like {next(iter(known))!r})"
    elif method == "image":
        col = img_col or id_col
        if col is None:
            raise InvalidLabelsError(f"{src}: by='image' needs an rlnImageName or id column")
        matched, unknown, ambiguous = _match_images([str(v) for v in table[col]], list(known))
    elif method == "coordinate":
        if not has_xyz or pool_particles is None:
            raise InvalidLabelsError(
                f"{src}: by='coordinate' needs coordinates on both sides (the pool's particles)"
            )
        pool = _pool_table(pool_particles)
        tol = tolerance
        if tol is None:
            ps = getattr(pool_particles, "pixel_size", {}) or {}
            tol = 2.0 * max(ps.values()) if ps else 10.0
        xyz = table[["x", "y", "z"]].to_numpy(dtype=np.float64)
        matched, dist, unknown, ambiguous = _match_coordinates(
            [str(t) for t in table["tomo"]], xyz, pool, float(tol)
        )
    else:
        raise InvalidLabelsError(f"{src}: by must be auto, id, image or coordinate, not {by!r}")
    # duplicates: one pool item from two rows with different labels
    first: dict[str, tuple[int, str | None]] = {}
    duplicate: list[str] = []
    rows_out: list[tuple[str, str, int]] = []
    for i, (pid, lb) in enumerate(zip(matched, lab, strict=True)):
        if pid is None or lb is None:
            continue
        if pid in first:
            j, other = first[pid]
            if other != lb:
                duplicate.append(f"row {i + 1} {pid!r} {lb!r} (row {j + 1} says {other!r})")
            continue
        first[pid] = (i, lb)
        rows_out.append((pid, lb, i + 1))
    keep_dist = np.array([dist[r - 1] for _, _, r in rows_out]) if dist.size else np.zeros(0)
    result = LabelMatch(
        pd.DataFrame(rows_out, columns=["id", "label", "row"]).astype(
            {"id": object, "label": object}
        ),
        method,
        unknown,
        duplicate,
        ambiguous,
        keep_dist,
    )
    if strict and not result.ok:
        raise InvalidLabelsError(result.summary(src))
    return result


# ---------------------------------------------------------------------------- one call


def _raw_table(path: Path, fmt: str | None) -> tuple[pd.DataFrame, str]:
    """The file's rows as they are (for id / image matching) and its format."""
    name = path.name.lower()
    if fmt in (None, "relion5", "relion4") and name.endswith(".star"):
        blocks = _read_star_blocks(path)
        return _particles_block(blocks, path), "star"
    if fmt in (None, "csv") and (name.endswith(".csv") or name.endswith(".tsv")):
        from cryoal.io.labels import read_table

        return read_table(path, required=()), "csv"
    return pd.DataFrame(), fmt or ""


def read_particle_labels(
    path: str | os.PathLike[str],
    *,
    pool_ids: Collection[str],
    pool_particles: ParticleList | pd.DataFrame | None = None,
    fmt: str | None = None,
    label_column: str | None = None,
    class_names: str | os.PathLike[str] | Mapping[Any, str] | None = None,
    by: MatchBy = "auto",
    tolerance: float | None = None,
    strict: bool = True,
    units: Units | None = None,
    pixel_size: PixelSize = None,
    tomogram_shapes: Shapes = None,
    tomograms: str | os.PathLike[str] | None = None,
    **reader_options: Any,
) -> LabelMatch:
    """Read labels from a particle file (RELION STAR, copick, CSV, Dynamo) and match them to a pool.

    The function ``cryoal label import`` calls for tomogram projects: a RELION 5
    particles.star with ``rlnClassNumber`` and no ``rlnImageName`` imports by
    coordinate; one written by cryoal (``cryoalId``) or with ``rlnImageName`` imports by
    id / image path without needing tomogram sizes.

    Parameters
    ----------
    path
        ``.star``, ``.csv``/``.tsv``, ``.tbl``, or a copick config / project folder.
    pool_ids, pool_particles, by, tolerance, strict
        See :func:`match_labels`.
    fmt
        Force the particle format (:data:`cryoal.io.particles.PARTICLE_FORMATS`).
    label_column
        Column holding the labels (default ``label``, ``cryoalLabel``, else
        ``rlnClassNumber``; copick: the object name).
    class_names
        Class number → name for ``rlnClassNumber`` (see :func:`read_class_names`).
    units, pixel_size, tomogram_shapes, tomograms, reader_options
        For reading coordinates (see :func:`cryoal.io.particles.read_particles`); only
        needed when matching by coordinate. copick filters (``object_name``,
        ``user_id``, ``session_id``) go in ``reader_options``.

    Returns
    -------
    LabelMatch

    Raises
    ------
    InvalidLabelsError
        (or its subclass :class:`cryoal.errors.InvalidParticlesError`) unreadable file,
        no label column, class numbers without names in ``class_names``, match problems.
    """
    p = Path(path)
    where = str(p)
    if not p.exists():
        raise InvalidLabelsError(f"{p}: file not found")
    names = read_class_names(class_names)
    raw, kind = _raw_table(p, fmt)
    known = set(map(str, pool_ids))
    if kind in ("star", "csv") and len(raw):
        table = raw.copy()
        col = _pick_label_column(table, label_column, where)
        table["label"] = pd.Series(_label_values(table, col, names, where), dtype=object)
        # rows that carry pool ids or image paths need no coordinates
        if kind == "star" and "cryoalId" in table.columns:
            table = table.rename(columns={"cryoalId": "id"})
        ident = next((c for c in ("id", "rlnImageName") if c in table.columns), None)
        can_id = ident is not None and by in ("auto", "id", "image")
        if (
            can_id
            and ident is not None
            and (
                by != "auto"
                or pool_particles is None
                or not _has_coordinates(table)
                or _looks_matchable(table[ident], known)
            )
        ):
            table.attrs["source"] = where
            return match_labels(
                table,
                pool_ids=known,
                pool_particles=pool_particles,
                by=by,
                tolerance=tolerance,
                strict=strict,
                where=where,
            )
    elif kind == "star":
        raise InvalidLabelsError(f"{p}: no particles (the table is empty)")
    # coordinates: read the file as a particle list
    f = fmt or sniff_particle_format(p)
    pl = read_particles(
        p,
        fmt=f,
        units=units,
        pixel_size=pixel_size,
        tomogram_shapes=tomogram_shapes,
        tomograms=tomograms,
        **reader_options,
    )
    pl = labels_from_particles(pl, column=label_column, class_names=names or None)
    return match_labels(
        pl,
        pool_ids=known,
        pool_particles=pool_particles,
        by="coordinate" if by == "auto" else by,
        tolerance=tolerance,
        strict=strict,
        where=where,
    )


def _has_coordinates(table: pd.DataFrame) -> bool:
    cols = {str(c).lower() for c in table.columns}
    return bool(
        {"rlncenteredcoordinatexangst", "rlncoordinatex"} & cols
        or ({"x", "x_angst", "x_px", "x_a", "x_pix", "x_pixel", "x_angstrom"} & cols)
    )


def _looks_matchable(values: pd.Series, known: set[str]) -> bool:
    """Whether an id / image column can match without coordinates: any exact or path-suffix hit."""
    vals = [str(v) for v in values.head(50)]
    if any(v in known for v in vals):
        return True
    bases = {(_components(k) or [""])[-1] for k in known}
    return any((_components(v) or [""])[-1] in bases for v in vals)

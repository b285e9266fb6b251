"""Label, pick and prediction tables: CSV and RELION-style STAR, validated.

Every table is a :class:`pandas.DataFrame` with an ``id`` column (the pool id of a
volume) and, for labels, a ``label`` column; other columns are kept as they are.

CSV files have a header row: ``id,label[,extra...]``. STAR files (read and written with
``starfile``) use these column names:

==================  ===============================================================
table column        STAR column
==================  ===============================================================
``id``              ``_rlnImageName`` — ``stack.mrcs#4`` is written the RELION way,
                    ``000005@stack.mrcs`` (1-based), and read back as ``stack.mrcs#4``
``label``           ``_cryoalLabel``
``score``           ``_cryoalScore``
``rank``            ``_cryoalRank``
any other ``name``  ``_cryoalName`` (first letter upper-cased; read back lower-cased);
                    columns already named ``rln...`` or ``cryoal...`` are kept as is
==================  ===============================================================

Errors list at most five offending rows, numbered as the user sees them: ``line N`` of
a CSV file (the header is line 1), ``row N`` (1-based) of a STAR table or DataFrame.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection
from pathlib import Path

import pandas as pd
import starfile

from cryoal._atomic import atomic_path, atomic_write
from cryoal.errors import InvalidLabelsError

__all__ = [
    "read_labels",
    "read_table",
    "validate_labels",
    "write_labels",
    "write_table",
]

_MAX_LISTED = 5
_NA = ["", "NA", "N/A", "NaN", "nan", "null", "NULL", "None", "none"]
_TO_STAR = {
    "id": "rlnImageName",
    "label": "cryoalLabel",
    "score": "cryoalScore",
    "rank": "cryoalRank",
}
_FROM_STAR = {v: k for k, v in _TO_STAR.items()}
_RELION_NAME = re.compile(r"^(\d+)@(.+)$")
_STACK_ID = re.compile(r"^(.+)#(\d+)$")


def _fmt(path: str | os.PathLike[str]) -> tuple[Path, str]:
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".csv") or name.endswith(".tsv"):
        return p, "csv"
    if name.endswith(".star"):
        return p, "star"
    raise InvalidLabelsError(
        f"{p}: unknown table extension {p.suffix or '(none)'!r}; use .csv or .star"
    )


def read_table(
    path: str | os.PathLike[str], *, required: Collection[str] = ("id",)
) -> pd.DataFrame:
    """Read a CSV or STAR table into a DataFrame with cryoal column names.

    Parameters
    ----------
    path
        ``.csv`` (comma-separated, header row; ``.tsv`` tab-separated) or ``.star``.
    required
        Columns that must be present.

    Returns
    -------
    pandas.DataFrame
        ``id`` (and ``label`` when present) as strings, empty cells as NA; other columns
        with pandas' inferred types. The index is 0..N-1. ``df.attrs["source"]`` and
        ``df.attrs["format"]`` record where rows came from (for error messages).

    Raises
    ------
    InvalidLabelsError
        Missing file, unknown extension, unparsable file, missing required columns.
    """
    p, fmt = _fmt(path)
    if not p.exists():
        raise InvalidLabelsError(f"{p}: file not found")
    if fmt == "csv":
        df = _read_csv(p)
    else:
        df = _read_star(p)
    df.attrs["source"] = str(p)
    df.attrs["format"] = fmt
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InvalidLabelsError(
            f"{p}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, df.columns)) or '(none)'}"
            + ("; a labels CSV starts with the header line 'id,label'" if fmt == "csv" else "")
        )
    return df


def _read_csv(p: Path) -> pd.DataFrame:
    sep = "\t" if p.name.lower().endswith(".tsv") else ","
    try:
        columns = pd.read_csv(p, sep=sep, nrows=0).columns
        text_cols = {c: [""] for c in columns if c in ("id", "label")}
        na = {c: _NA for c in columns if c not in text_cols} | text_cols
        df = pd.read_csv(
            p,
            sep=sep,
            dtype={c: str for c in text_cols},
            keep_default_na=False,
            na_values=na,
            skipinitialspace=True,
        )
    except pd.errors.EmptyDataError:
        raise InvalidLabelsError(f"{p}: empty file; a labels CSV starts with 'id,label'") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InvalidLabelsError(f"{p}: not a readable CSV file ({exc})") from None
    for col in ("id", "label"):
        if col in df.columns:
            df[col] = df[col].str.strip()
    return df


def _read_star(p: Path) -> pd.DataFrame:
    try:
        data = starfile.read(p, always_dict=True, parse_as_string=["rlnImageName", "cryoalLabel"])
    except Exception as exc:  # starfile raises assorted parser errors
        raise InvalidLabelsError(f"{p}: not a readable STAR file ({exc})") from None
    tables = [(name, t) for name, t in data.items() if isinstance(t, pd.DataFrame)]
    if not tables:
        raise InvalidLabelsError(f"{p}: no table (loop_) found in the STAR file")
    chosen = next((t for _, t in tables if "rlnImageName" in t.columns), tables[-1][1])
    df = chosen.rename(columns={c: _star_to_column(str(c)) for c in chosen.columns})
    df = df.reset_index(drop=True)
    if "id" in df.columns:
        df["id"] = df["id"].map(_relion_to_id)
    if "label" in df.columns:
        df["label"] = df["label"].map(
            lambda v: None if pd.isna(v) or str(v).strip() in ("", "<NA>") else str(v).strip()
        )
    return df


def _star_to_column(name: str) -> str:
    if name in _FROM_STAR:
        return _FROM_STAR[name]
    if name.startswith("cryoal") and len(name) > 6:
        rest = name[6:]
        return rest[0].lower() + rest[1:]
    return name


def _column_to_star(name: str) -> str:
    if name in _TO_STAR:
        return _TO_STAR[name]
    if name.startswith("rln") or name.startswith("cryoal"):
        return name
    clean = re.sub(r"\s+", "_", name.strip())
    return "cryoal" + clean[:1].upper() + clean[1:]


def _relion_to_id(value: object) -> object:
    if not isinstance(value, str):
        return None if pd.isna(value) else str(value)  # type: ignore[call-overload]
    m = _RELION_NAME.match(value.strip())
    return f"{m.group(2)}#{int(m.group(1)) - 1}" if m else value.strip()


def _id_to_relion(value: object) -> object:
    if not isinstance(value, str):
        return value
    m = _STACK_ID.match(value)
    return f"{int(m.group(2)) + 1:06d}@{m.group(1)}" if m else value


def _row_namer(df: pd.DataFrame) -> Callable[[int], str]:
    if df.attrs.get("format") == "csv":
        return lambda i: f"line {i + 2}"
    return lambda i: f"row {i + 1}"


def _where(df: pd.DataFrame) -> str:
    return str(df.attrs.get("source", "labels table"))


def validate_labels(
    df: pd.DataFrame,
    *,
    known_ids: Collection[str] | None = None,
    require_labels: bool = True,
) -> pd.DataFrame:
    """Check a labels table; return it with ``id``/``label`` as stripped strings.

    Parameters
    ----------
    df
        A table with ``id`` and ``label`` columns (from :func:`read_labels` or built
        in memory).
    known_ids
        The pool's ids; ids not among them are errors.
    require_labels
        Empty labels are errors (set False for tables where ``label`` may be blank).

    Returns
    -------
    pandas.DataFrame
        A copy with a 0..N-1 index.

    Raises
    ------
    InvalidLabelsError
        Missing ``id``/``label`` columns, empty ids, empty labels, duplicate ids, ids
        not in ``known_ids`` — each listing the first five offending rows.
    """
    where = _where(df)
    missing = [c for c in ("id", "label") if c not in df.columns]
    if missing:
        raise InvalidLabelsError(
            f"{where}: missing column(s) {', '.join(missing)}; found "
            f"{', '.join(map(str, df.columns)) or '(none)'}"
        )
    out = df.reset_index(drop=True).copy()
    out.attrs.update(df.attrs)
    name = _row_namer(out)
    ids = out["id"].map(lambda v: "" if v is None or pd.isna(v) else str(v).strip())
    labels = out["label"].map(lambda v: "" if v is None or pd.isna(v) else str(v).strip())
    _fail_rows(
        where, "have an empty id", [name(i) for i in range(len(ids)) if not ids[i]], len(ids)
    )
    if require_labels:
        empty = [f"{name(i)} (id {ids[i]!r})" for i in range(len(ids)) if not labels[i]]
        _fail_rows(where, "have an empty label", empty, len(ids))
    first: dict[str, int] = {}
    dups = []
    for i, s in enumerate(ids):
        if s in first:
            dups.append(f"{name(i)} {s!r} (first at {name(first[s])})")
        else:
            first[s] = i
    _fail_rows(where, "repeat an earlier id", dups, len(ids))
    if known_ids is not None:
        known = known_ids if isinstance(known_ids, (set, frozenset, dict)) else set(known_ids)
        unknown = [f"{name(i)} {s!r}" for i, s in enumerate(ids) if s not in known]
        if unknown:
            example = next(iter(known), None)
            hint = f"; pool ids look like {example!r}" if example is not None else ""
            _fail_rows(where, "have an id not in the pool", unknown, len(ids), hint=hint)
    out["id"] = pd.Series(list(ids), dtype=object)
    # object dtype keeps None for unlabelled rows (pandas' str dtype would turn it into NaN)
    out["label"] = pd.Series([s if s else None for s in labels], dtype=object)
    return out


def _fail_rows(where: str, what: str, rows: list[str], total: int, *, hint: str = "") -> None:
    if not rows:
        return
    listed = "; ".join(rows[:_MAX_LISTED])
    more = f" (and {len(rows) - _MAX_LISTED} more)" if len(rows) > _MAX_LISTED else ""
    raise InvalidLabelsError(f"{where}: {len(rows)} of {total} rows {what}: {listed}{more}{hint}")


def read_labels(
    path: str | os.PathLike[str],
    *,
    known_ids: Collection[str] | None = None,
    require_labels: bool = True,
) -> pd.DataFrame:
    """Read and validate a labels file (CSV ``id,label`` or STAR).

    Parameters
    ----------
    path
        ``.csv`` or ``.star`` file.
    known_ids
        When given, every id must be one of them.
    require_labels
        Reject rows with an empty label (default).

    Returns
    -------
    pandas.DataFrame
        Columns ``id``, ``label`` (str) and any extra columns, in file order.

    Raises
    ------
    InvalidLabelsError
        See :func:`read_table` and :func:`validate_labels`.
    """
    df = read_table(path, required=("id", "label"))
    return validate_labels(df, known_ids=known_ids, require_labels=require_labels)


def write_table(path: str | os.PathLike[str], df: pd.DataFrame) -> Path:
    """Write a table as CSV or STAR (by extension), atomically.

    Parameters
    ----------
    path
        ``.csv``, ``.tsv`` or ``.star``.
    df
        Any table; for STAR, column names are mapped as in the module docs.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InvalidLabelsError
        Unknown extension.
    """
    p, fmt = _fmt(path)
    if fmt == "csv":
        sep = "\t" if p.name.lower().endswith(".tsv") else ","
        with atomic_write(p, "w", encoding="utf-8", newline="") as fh:
            df.to_csv(fh, sep=sep, index=False)
        return p
    star = df.reset_index(drop=True).rename(
        columns={c: _column_to_star(str(c)) for c in df.columns}
    )
    if "rlnImageName" in star.columns:
        star["rlnImageName"] = star["rlnImageName"].map(_id_to_relion)
    with atomic_path(p) as tmp:
        starfile.write(star, tmp)
    return p


def write_labels(path: str | os.PathLike[str], df: pd.DataFrame) -> Path:
    """Validate a labels table (``id``, ``label``) and write it with :func:`write_table`."""
    checked = validate_labels(df)
    return write_table(path, checked)

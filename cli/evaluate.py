"""``cryoal evaluate picks``: per-class F-beta of picked particles against ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cryoal.errors import ConfigError

from ._common import example_epilog

EXAMPLES = """
cryoal evaluate picks --truth truth.csv --pred picks.csv --units angstrom --copick copick_config.json
cryoal evaluate picks --truth truth.star --pred picks.star --tomograms tomograms.star --radius ribosome=150
cryoal evaluate picks --truth gt.csv --pred sub.csv --units angstrom --czii   # the Kaggle CZII score
"""

#: Class columns tried in this order when --label-column is not given (the first with a
#: value is used: a picks file's empty ``label`` column gives way to ``predicted``, and a
#: ``cryoal predict`` STAR's ``cryoalPredicted`` names come before its class numbers).
LABEL_COLUMNS = ("label", "cryoalLabel", "predicted", "cryoalPredicted", "rlnClassNumber")


def _pairs(values: tuple[str, ...], option: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for text in values:
        name, sep, value = text.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or not name or number != number:
            raise ConfigError(
                f"{option} {text!r}: expected NAME=NUMBER, e.g. {option} ribosome=150"
            )
        out[name] = number
    return out


def _has_values(column: Any) -> bool:
    """Whether a class column holds at least one non-empty value."""
    return bool(column.notna().any() and (column.astype(str).str.strip() != "").any())


def _copick_radii(config: Path) -> dict[str, float]:
    import json

    try:
        objects = json.loads(config.read_text(encoding="utf-8"))["pickable_objects"]
        radii = {str(o["name"]): o.get("radius") for o in objects if o.get("is_particle", True)}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{config}: not a readable copick config ({exc})") from exc
    missing = sorted(n for n, r in radii.items() if r is None)
    if missing:
        raise ConfigError(f"{config}: object(s) {', '.join(missing)} have no radius; add --radius")
    return {n: float(r) for n, r in radii.items()}


@click.group("evaluate", short_help="Score predictions against ground truth.")
def evaluate() -> None:
    """Score predictions against ground truth (picks: per-class F-beta)."""


@evaluate.command(
    "picks",
    epilog=example_epilog(EXAMPLES),
    short_help="Per-class precision, recall and F-beta of particle picks.",
)
@click.option("--truth", required=True, type=click.Path(path_type=Path), help="True particles.")
@click.option("--pred", required=True, type=click.Path(path_type=Path), help="Predicted particles.")
@click.option(
    "--radius",
    "radius",
    multiple=True,
    metavar="NAME=Å",
    help="Particle radius of a class in Å (repeat per class).",
)
@click.option(
    "--copick",
    "copick_config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Take the radii from this copick config's pickable_objects.",
)
@click.option("--czii", is_flag=True, help="The CZII challenge's radii and class weights.")
@click.option(
    "--weight", "weight", multiple=True, metavar="NAME=W", help="Class weight (default 1)."
)
@click.option("--beta", type=click.FloatRange(min=0, min_open=True), default=4.0, show_default=True)
@click.option(
    "--radius-factor",
    type=click.FloatRange(min=0, min_open=True),
    default=0.5,
    show_default=True,
    help="A prediction within radius-factor x radius of a true particle is a hit.",
)
@click.option(
    "--label-column",
    default=None,
    help=f"Class column of both files (default: the first of {', '.join(LABEL_COLUMNS)} "
    "that has a value).",
)
@click.option(
    "--units",
    type=click.Choice(["angstrom", "pixel"]),
    default=None,
    help="CSV coordinates: Å or voxels (with --pixel-size).",
)
@click.option("--pixel-size", type=float, default=None, help="Å/voxel (CSV pixels, RELION 4).")
@click.option(
    "--tomograms",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="RELION 5 tomograms.star (tomogram sizes).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the per-class table as CSV.",
)
def picks(
    truth: Path,
    pred: Path,
    radius: tuple[str, ...],
    copick_config: Path | None,
    czii: bool,
    weight: tuple[str, ...],
    beta: float,
    radius_factor: float,
    label_column: str | None,
    units: str | None,
    pixel_size: float | None,
    tomograms: Path | None,
    out: Path | None,
) -> None:
    """Score predicted particle centres per class, as the CZII challenge does.

    Classes: those of --czii (all six, as the challenge scores them), the copick
    objects that occur in either file (--copick), and each --radius.

    A prediction hits a true particle of its class in the same tomogram within
    radius-factor x radius; TP counts the true particles hit, FP the other predictions,
    FN the true particles missed, summed over tomograms; F-beta per class (beta 4:
    recall counts most) and their weighted mean. Files: anything cryoal reads as a
    particle list (RELION 5/4 .star, .csv, ...), with a class column.
    """
    from cryoal.io.particles import read_particles
    from cryoal.tasks.particle_metrics import CZII_RADII, CZII_WEIGHTS, pick_fbeta

    if not (radius or copick_config or czii):
        raise ConfigError("give the particle radii: --radius NAME=Å, --copick CONFIG or --czii")
    weights = {**(dict(CZII_WEIGHTS) if czii else {}), **_pairs(weight, "--weight")}
    tables = []
    for path in (truth, pred):
        plist = read_particles(
            path,
            units=units,  # type: ignore[arg-type]
            pixel_size=pixel_size,
            tomograms=tomograms,
        )
        table = plist.table
        column = label_column or next(
            (c for c in LABEL_COLUMNS if c in table.columns and _has_values(table[c])), None
        )
        if column is None or column not in table.columns:
            raise ConfigError(
                f"{path}: no class column {label_column or ' / '.join(LABEL_COLUMNS)} "
                f"(columns: {', '.join(map(str, table.columns))}); choose one with --label-column"
            )
        tables.append(table.assign(label=table[column].astype(str)))
    radii: dict[str, float] = dict(CZII_RADII) if czii else {}
    if copick_config is not None:  # the objects that occur in either file
        seen = set(tables[0]["label"]) | set(tables[1]["label"])
        radii.update({k: v for k, v in _copick_radii(copick_config).items() if k in seen})
    radii.update(_pairs(radius, "--radius"))
    scores = pick_fbeta(
        tables[0], tables[1], radii, weights=weights, beta=beta, radius_factor=radius_factor
    )
    table = scores.per_class
    fb = f"F{beta:g}"
    click.echo(
        f"{'class':<20}{'radius':>8}{'weight':>7}{'true':>6}{'pred':>6}{'TP':>6}{'FP':>6}"
        f"{'FN':>6}{'precision':>10}{'recall':>8}{fb:>7}"
    )
    for r in table.itertuples():
        click.echo(
            f"{r.label:<20}{r.radius:>8.1f}{r.weight:>7g}{r.n_true:>6}{r.n_pred:>6}{r.tp:>6}"
            f"{r.fp:>6}{r.fn:>6}{r.precision:>10.3f}{r.recall:>8.3f}{r.fbeta:>7.3f}"
        )
    click.echo(
        f"score (weighted mean {fb}, hit within {radius_factor:g} x radius): {scores.score:.4f}"
    )
    if out is not None:
        from cryoal._atomic import atomic_write_text

        atomic_write_text(out, table.to_csv(index=False))
        click.echo(f"wrote {out}")

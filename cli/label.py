"""``cryoal label``: import, export and count the labels of an active-learning project."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._common import example_epilog
from ._label_counts import format_label_status
from ._options import OptionsCommand
from ._tomo import star_coordinates_option

if TYPE_CHECKING:
    from cryoal.active import Project

EXAMPLES = """
cryoal label import round-001-labelled.csv --project cryoal-project
cryoal label import fixes.star --project cryoal-project --overwrite --annotator alice
cryoal label import classes.star --class-names 1=ribosome,2=proteasome --project tomo/
cryoal label import copick/config.json --user-id alice --project tomo/   # object = class
cryoal label import run_data.star --match coordinate --tolerance 20 --project tomo/
cryoal label export --project cryoal-project --out labels.csv
cryoal label export --project tomo/ --out labels.star --coordinates both   # RELION 5 + 4 forms
cryoal label export --project tomo/ --copick copick/config.json            # object = label
cryoal label status --project cryoal-project
"""

project_option = click.option(
    "--project",
    default="cryoal-project",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Project directory (made by `cryoal select`).",
)


@click.group(
    "label", epilog=example_epilog(EXAMPLES), short_help="Import, export and count labels."
)
def label() -> None:
    """Import, export and count the labels of a project.

    Labels are never silently overwritten: a label that differs from the stored one
    needs --overwrite, and the old one stays in the project's label history.
    """


@dataclasses.dataclass(frozen=True)
class MatchOptions:
    """How ``cryoal label import`` matches FILE's rows to a tomogram project's particles
    (the options passed on to :func:`cryoal.io.particle_labels.read_particle_labels`)."""

    class_names: str | None = None
    label_column: str | None = None
    match_by: str = "auto"
    tolerance: float | None = None
    object_name: str | None = None
    user_id: str | None = None
    session_id: str | None = None


@dataclasses.dataclass(frozen=True)
class ImportOptions:
    """The options of ``cryoal label import`` as parsed (one field per click parameter)."""

    file: Path
    project: Path
    overwrite: bool = False
    allow_new_classes: bool = False
    annotator: str | None = None
    source: str = "expert"
    lock_timeout: float = 30.0
    match: MatchOptions = MatchOptions()


@label.command("import", cls=OptionsCommand, options=ImportOptions, epilog=example_epilog(EXAMPLES))
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@project_option
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace labels that differ from stored ones (old ones kept in history).",
)
@click.option(
    "--allow-new-classes",
    is_flag=True,
    help="Accept class names that look like typos of known classes.",
)
@click.option("--annotator", default=None, help="Who labelled these volumes (recorded).")
@click.option(
    "--source",
    type=click.Choice(["expert", "import"]),
    default="expert",
    show_default=True,
    help="Recorded origin of the labels.",
)
@click.option(
    "--lock-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to wait for another process writing the project.",
)
@click.option(
    "--class-names",
    default=None,
    help="rlnClassNumber -> class name: '1=ribosome,2=proteasome' or a .yaml/.json/.csv "
    "file [default: the numbers are the names].",
)
@click.option(
    "--label-column",
    default=None,
    help="Column holding the labels [default: label, cryoalLabel, else rlnClassNumber; "
    "copick: the object name].",
)
@click.option(
    "--match",
    "match_by",
    type=click.Choice(["auto", "id", "image", "coordinate"]),
    default="auto",
    show_default=True,
    help="Tomogram projects: match rows to particles by id, by image path (trailing "
    "folders), or by (tomogram, coordinate) within --tolerance.",
)
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Coordinate matching radius in Å [default: two voxels].",
)
@click.option("--object", "object_name", default=None, help="copick FILE: only this object.")
@click.option("--user-id", default=None, help="copick FILE: only picks of this user.")
@click.option("--session-id", default=None, help="copick FILE: only picks of this session.")
def import_(opts: ImportOptions) -> None:
    """Import labels from FILE into the project: a .csv with id,label, a .star (cryoal's
    picks, or a RELION 5 particles.star with rlnClassNumber), or a copick config.

    Rows with an empty label are skipped (so a picks file with a half-filled 'label'
    column imports as is). Rows must name volumes of the project's pool: by id, or for
    projects built on tomograms (--tomograms/--copick) also by image path or by
    (tomogram, coordinate) within --tolerance Å. Class names that look like typos of
    known classes are refused with a suggestion.
    """
    from cryoal.active import Project
    from cryoal.errors import InvalidLabelsError
    from cryoal.io import read_labels
    from cryoal.io.particle_labels import read_particle_labels

    file, project = opts.file, opts.project
    proj = Project(project, create=False)
    try:
        with proj.lock(timeout=opts.lock_timeout):
            if proj.get_meta("task") == "segmentation":
                raise InvalidLabelsError(
                    f"project {project} is a segmentation project: its labels are the voxel "
                    "label maps (--masks); annotate those and re-run `cryoal select --task "
                    "segmentation`"
                )
            ids = proj.pool_ids()
            if not ids:
                raise InvalidLabelsError(
                    f"project {project} has no pool yet; run `cryoal select --volumes DIR "
                    f"--project {project}` first (or pass --labels to it)"
                )
            particles = particle_matching(proj, file, opts.match)
            if particles is None:
                table = read_labels(file, known_ids=set(ids), require_labels=False)
                filled = table[table["label"].notna()]
                skipped = len(table) - len(filled)
            else:
                found = read_particle_labels(file, pool_ids=ids, **particles)
                filled, skipped = found.table, None
                click.echo(found.summary(str(file)))
            if filled.empty:
                raise InvalidLabelsError(f"{file}: no row has a label; fill the 'label' column")
            report = proj.add_labels(
                list(zip(filled["id"], filled["label"], strict=True)),
                source=opts.source,  # type: ignore[arg-type]
                annotator=opts.annotator,
                overwrite=opts.overwrite,
                allow_new_classes=opts.allow_new_classes,
                where=str(file),
            )
            counts = proj.label_counts()
    finally:
        proj.close()
    click.echo(
        f"{file}: {len(report.added)} added, {len(report.unchanged)} unchanged, "
        f"{len(report.overwritten)} replaced"
        + (f", {skipped} rows without a label skipped" if skipped is not None else "")
    )
    if report.new_classes:
        click.echo(f"new classes: {', '.join(report.new_classes)}")
    click.echo(f"labels now: {sum(counts.values())} ({_fmt_counts(counts)})")


@label.command("export", epilog=example_epilog(EXAMPLES))
@project_option
@click.option(
    "--out",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output table (.csv or .star).",
)
@click.option("--history", is_flag=True, help="Also write the replaced labels (column 'replaced').")
@star_coordinates_option
@click.option(
    "--copick",
    "copick_config",
    default=None,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Tomogram projects: also write the labels into this copick project as picks "
    "(object = label, user cryoal, session --copick-session, score 1).",
)
@click.option(
    "--copick-session",
    default="labels",
    show_default=True,
    help="--copick: the copick session id (its earlier picks by cryoal are replaced).",
)
def export(
    project: Path,
    out: Path | None,
    history: bool,
    star_coordinates: str,
    copick_config: Path | None,
    copick_session: str,
) -> None:
    """Write the project's labels (id, label, source, annotator, time, round) to a table.

    For a project built on tomograms the table also has tomo, x, y, z (Å), and a .star
    output is a RELION 5 particles.star (rlnTomoName, centred Å coordinates — or RELION 4
    pixels with --coordinates — and rlnClassNumber = 1-based index of the label in the
    sorted class names). --copick writes the labels into a copick project as picks, one
    picks set per tomogram and class (the class is the copick object, so every label must
    be a pickable object of that project).
    """
    import pandas as pd

    from cryoal.active import Project
    from cryoal.errors import ConfigError
    from cryoal.io import write_table

    if out is None and copick_config is None:
        raise click.UsageError("give --out FILE, --copick CONFIG or both")

    proj = Project(project, readonly=True)
    try:
        rows = [
            {
                "id": r.id,
                "label": r.label,
                "source": r.source,
                "annotator": r.annotator or "",
                "time": r.time,
                "round": r.round if r.round is not None else 0,
            }
            for r in proj.labels()
        ]
        cols = ["id", "label", "source", "annotator", "time", "round"]
        if history:
            for r in rows:
                r["replaced"] = ""
            for h in proj.label_history():
                rows.append(
                    {
                        "id": h["id"],
                        "label": h["label"],
                        "source": h["source"],
                        "annotator": h["annotator"] or "",
                        "time": h["time"],
                        "round": h["round"] if h["round"] is not None else 0,
                        "replaced": h["replaced_time"],
                    }
                )
            cols.append("replaced")
        particles = particle_table(proj)
        centres = proj.get_meta("pool_centres") or {}
        voxel = proj.get_meta("voxel_size")
    finally:
        proj.close()
    table = pd.DataFrame(rows, columns=cols)
    if particles is None:
        if copick_config is not None:
            raise ConfigError(
                f"project {project} is not built on tomograms (--tomograms/--copick): its "
                "labels have no coordinates to write as copick picks"
            )
        if out is not None:  # (one of --out / --copick is given)
            write_table(out, table)
            click.echo(f"wrote {len(rows)} labels to {out}")
        return
    from ._tomo import particle_label_table, write_class_picks, write_particle_labels

    # tomogram project: coordinates too; .star is a RELION particles.star
    if copick_config is not None:  # all copick checks run before anything is written
        current = table[table["replaced"] == ""] if history else table
        line = write_class_picks(
            copick_config,
            particle_label_table(current, particles),
            float(voxel),
            class_column="label",
            session_id=copick_session,
        )
        click.echo(f"copick: {line}")
    if out is not None:
        write_particle_labels(
            out, table, particles, centres, float(voxel), coordinates=star_coordinates
        )
        click.echo(f"wrote {len(rows)} labels to {out}")


@label.command("status", epilog=example_epilog(EXAMPLES))
@project_option
def status(project: Path) -> None:
    """Count labels per class and per source."""
    from cryoal.active import Project

    proj = Project(project, readonly=True)
    try:
        click.echo(format_label_status(proj))
    finally:
        proj.close()


def particle_table(proj: Project) -> Any:
    """The pool's particle table (id, tomo, x, y, z Å) of a tomogram project, else None."""
    path = proj.layout.pool_particles
    if not path.exists():
        return None
    import pandas as pd

    return pd.read_csv(path, dtype={"id": str, "tomo": str})


def particle_matching(proj: Project, file: Path, options: MatchOptions) -> dict[str, Any] | None:
    """Keyword arguments for :func:`cryoal.io.particle_labels.read_particle_labels` when
    FILE must be matched as particles (a tomogram project, a copick config, or matching
    options given), else None (a plain id,label table)."""
    table = proj.layout.pool_particles
    values = dataclasses.asdict(options)
    given = any(v is not None for k, v in values.items() if k != "match_by")
    is_copick = file.is_dir() or file.suffix.lower() == ".json"
    if not (table.exists() or is_copick or given or options.match_by != "auto"):
        return None
    kw: dict[str, Any] = {
        "class_names": options.class_names,
        "label_column": options.label_column,
        "by": options.match_by,
    }
    reader = {k: values[k] for k in ("object_name", "user_id", "session_id") if values[k]}
    kw.update(reader)
    if table.exists():
        particles = particle_table(proj)
        voxel = float(proj.get_meta("voxel_size"))
        centres = proj.get_meta("pool_centres") or {}
        kw["pool_particles"] = particles
        kw["tolerance"] = options.tolerance or 2.0 * voxel
        kw["pixel_size"] = voxel
        # RELION 5 centred coordinates need each tomogram's size: centre = n * voxel / 2
        kw["tomogram_shapes"] = {
            t: tuple(int(round(2.0 * c / voxel)) for c in reversed(xyz))
            for t, xyz in centres.items()
        }
    elif options.tolerance is not None:
        kw["tolerance"] = options.tolerance
    return kw


def _fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{c} {n}" for c, n in counts.items())

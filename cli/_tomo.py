"""Options and helpers for pools cut from tomograms at particle coordinates.

``--tomograms DIR|tomograms.star --coords particles.star`` or ``--copick config.json
--object NAME``: shared by ``select``, ``predict`` and ``info`` (parsing only; the pool
is :func:`cryoal.io.tomopool.open_tomogram_pool`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

#: the keyword names these options add to a command
TOMOGRAM_KEYS = (
    "tomograms",
    "coords",
    "box",
    "edge",
    "shift",
    "units",
    "coords_pixel_size",
    "tomo_list",
    "copick",
    "object_name",
    "voxel_spacing",
    "tomo_type",
    "user_id",
    "session_id",
)


@dataclasses.dataclass(frozen=True)
class CoordinateOptions:
    """The particle-coordinate options (:func:`coordinate_options`), as parsed."""

    coords: Path | None = None
    box: int = 32
    edge: str = "mean"
    shift: str = "none"
    units: str | None = None
    coords_pixel_size: float | None = None
    tomo_list: Path | None = None
    object_name: str | None = None
    voxel_spacing: float | None = None
    tomo_type: str | None = None
    user_id: str | None = None
    session_id: str | None = None


@dataclasses.dataclass(frozen=True)
class TomogramOptions(CoordinateOptions):
    """The tomogram-pool options (:func:`tomogram_options`), as parsed: the source
    (``--tomograms`` or ``--copick``) and its coordinate options."""

    tomograms: Path | None = None
    copick: Path | None = None

    @classmethod
    def of(cls, source: Path, coords: CoordinateOptions) -> TomogramOptions:
        """``source`` (a copick config ``.json``, else tomograms) with ``coords``."""
        key = "copick" if source.name.lower().endswith(".json") else "tomograms"
        return cls(**{**dataclasses.asdict(coords), key: source})


def tomogram_options(f: F) -> F:
    """Add the tomogram-pool options to a click command."""
    for option in reversed(_options()):
        f = option(f)
    return f


def coordinate_options(f: F) -> F:
    """The tomogram-pool options less ``--tomograms``/``--copick`` (given as an argument)."""
    skip = {"tomograms", "copick"}
    for option in reversed([o for o in _options() if o.__name__ not in skip]):
        f = option(f)
    return f


def _named(name: str, option: Callable[[F], F]) -> Callable[[F], F]:
    option.__name__ = name
    return option


def _options() -> list[Callable[[F], F]]:
    options = [
        click.option(
            "--tomograms",
            type=click.Path(path_type=Path),
            help="Tomograms to cut boxes from: a folder of .mrc/.rec/.map files and *.zarr "
            "OME-Zarr groups (named by file stem), a RELION 5 tomograms.star, or one tomogram; "
            "with --coords.",
        ),
        click.option(
            "--coords",
            type=click.Path(path_type=Path),
            help="Particle coordinates for --tomograms: RELION 5/4 particles.star, Dynamo "
            ".tbl, or CSV (id, tomo, x, y, z).",
        ),
        click.option(
            "--box",
            default=32,
            show_default=True,
            type=click.IntRange(min=4),
            help="--tomograms/--copick: box edge in voxels.",
        ),
        click.option(
            "--edge",
            type=click.Choice(["mean", "zero", "refuse"]),
            default="mean",
            show_default=True,
            help="Boxes reaching past a tomogram edge: fill with the mean of the box's voxels "
            "inside, with zeros, or leave those particles out.",
        ),
        click.option(
            "--shift",
            type=click.Choice(["none", "trilinear", "fourier"]),
            default="none",
            show_default=True,
            help="Sub-voxel particle positions: nearest voxel, or resample the box "
            "(trilinear / Fourier shift) so the particle sits exactly at its centre.",
        ),
        click.option(
            "--units",
            type=click.Choice(["angstrom", "pixel"]),
            default=None,
            help="CSV coordinates: Å or pixels [default: from the file's columns].",
        ),
        click.option(
            "--coords-pixel-size",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            help="Å per pixel of pixel coordinates (RELION 4, Dynamo, CSV) [default: the "
            "tomograms' voxel size].",
        ),
        click.option(
            "--tomo-list",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Dynamo --coords: the tomogram list (.doc 'index path' lines, or .vll) that "
            "names the table's tomogram numbers [default: the numbers are the names].",
        ),
        click.option(
            "--copick",
            type=click.Path(dir_okay=False, path_type=Path),
            help="A copick project config (.json): tomograms and picks from it (with --object).",
        ),
        click.option(
            "--object", "object_name", help="--copick: the pickable object whose picks to use."
        ),
        click.option(
            "--voxel-spacing",
            type=click.FloatRange(min=0, min_open=True),
            default=None,
            help="--copick: voxel spacing (Å) of the tomograms [default: the only one].",
        ),
        click.option(
            "--tomo-type",
            default=None,
            help="--copick: tomogram type (wbp, denoised, ...) [default: the only one].",
        ),
        click.option("--user-id", default=None, help="--copick: only picks of this user."),
        click.option("--session-id", default=None, help="--copick: only picks of this session."),
    ]
    return [_named(k, o) for k, o in zip(TOMOGRAM_KEYS, options, strict=True)]


copick_picks_option = click.option(
    "--copick-picks",
    is_flag=True,
    help="--copick: also write each round's picks into the copick project (object --object, "
    "user cryoal, session round-NNN) to open them in copick tools.",
)


star_coordinates_option = click.option(
    "--coordinates",
    "star_coordinates",
    type=click.Choice(["relion5", "relion4", "both"]),
    default="relion5",
    show_default=True,
    help="Tomogram pools, .star output: RELION 5 centred Å (rlnCenteredCoordinate*Angst), "
    "RELION 4 pixels (rlnCoordinate*, at the tomograms' voxel size), or both.",
)


def uses_tomograms(tomo: TomogramOptions) -> bool:
    """Whether the command line asks for a tomogram pool."""
    return tomo.tomograms is not None or tomo.copick is not None


def tomogram_pool(
    tomo: TomogramOptions,
    *,
    volumes: Path | None = None,
    copick_picks: bool = False,
    edge: str | None = None,
) -> Any:
    """The :class:`~cryoal.io.tomopool.TomogramPool` the options describe, or None.

    ``volumes`` and ``copick_picks`` are the command's ``--volumes`` and
    ``--copick-picks`` (checked against the tomogram options).

    Raises
    ------
    click.UsageError
        Options that do not go together.
    """
    if copick_picks and tomo.copick is None:
        raise click.UsageError("--copick-picks needs --copick")
    if not uses_tomograms(tomo):
        if tomo.coords is not None:
            raise click.UsageError("--coords needs --tomograms")
        if tomo.object_name is not None:
            raise click.UsageError("--object needs --copick")
        return None
    if volumes is not None:
        raise click.UsageError("pass either --volumes or --tomograms/--copick, not both")
    if tomo.tomograms is not None and tomo.copick is not None:
        raise click.UsageError("pass either --tomograms (with --coords) or --copick, not both")
    if tomo.tomograms is not None and tomo.coords is None:
        raise click.UsageError("--tomograms needs --coords (the particle coordinates)")
    if tomo.copick is not None and not tomo.object_name:
        raise click.UsageError("--copick needs --object (the pickable object whose picks to use)")
    from cryoal.io.tomopool import open_tomogram_pool

    source = tomo.tomograms or tomo.copick
    assert source is not None  # uses_tomograms
    return open_tomogram_pool(
        source,
        tomo.coords,
        box=tomo.box,
        edge=edge or tomo.edge,
        shift=tomo.shift,
        units=tomo.units,
        pixel_size=tomo.coords_pixel_size,
        tomo_names=tomo.tomo_list,
        object_name=tomo.object_name,
        voxel_spacing=tomo.voxel_spacing,
        tomo_type=tomo.tomo_type,
        user_id=tomo.user_id,
        session_id=tomo.session_id,
    )


def describe_pool(pool: Any) -> str:
    """One line: particles, tomograms, box, voxel size, boxes at the edge."""
    report = pool.edge_report()
    line = (
        f"{len(pool)} particles in {len(pool.tomograms)} tomograms, box "
        f"{'x'.join(map(str, pool.box))} voxels at {pool.voxel_size:g} Å"
    )
    if report.n_edge:
        line += f", {report.n_edge} boxes at a tomogram edge ({pool.edge})"
    if pool.refused:
        line += f", {len(pool.refused)} refused"
    return line


def tomogram_args(tomo: TomogramOptions) -> str:
    """The tomogram-pool options of a command line as text ('' without a tomogram pool)."""
    if not uses_tomograms(tomo):
        return ""
    if tomo.copick is not None:
        parts = [f"--copick {tomo.copick}", f"--object {tomo.object_name}"]
        for value, flag in (
            (tomo.voxel_spacing, "--voxel-spacing"),
            (tomo.tomo_type, "--tomo-type"),
            (tomo.user_id, "--user-id"),
            (tomo.session_id, "--session-id"),
        ):
            if value is not None:
                parts.append(f"{flag} {value}")
    else:
        parts = [f"--tomograms {tomo.tomograms}", f"--coords {tomo.coords}"]
        if tomo.tomo_list is not None:
            parts.append(f"--tomo-list {tomo.tomo_list}")
    parts.append(f"--box {tomo.box}")
    return " ".join(parts)


def remember_particles(project: Any, pool: Any) -> None:
    """Keep a tomogram pool's particle table in the project (``pool-particles.csv``:
    id, tomo, x, y, z in Å) so ``cryoal label import`` can match files by coordinates.
    Other pools: nothing."""
    item_table = getattr(pool, "item_table", None)
    if item_table is None:
        return
    from cryoal.active.loop import register_pool
    from cryoal.io import write_table

    register_pool(project, pool)  # first: a project of another pool refuses this one
    target = project.layout.pool_particles
    table = item_table()
    if target.exists():
        import pandas as pd

        old = pd.read_csv(target, dtype={"id": str, "tomo": str})
        if list(old["id"]) == list(table["id"]):
            return
    write_table(target, table)
    project.set_meta("pool_centres", {k: list(v) for k, v in pool.centres().items()})


def write_copick_picks(tomo: TomogramOptions, pool: Any, result: Any) -> str:
    """For ``--copick-picks``: the round's picks as copick points (user ``cryoal``,
    session ``round-NNN``, object ``--object``, score = the pick's score) in the
    ``--copick`` project; returns what was written."""
    assert tomo.copick is not None  # tomogram_pool(copick_picks=True) checked it
    from cryoal.io.particles import ParticleList, write_copick
    from cryoal.io.tomopool import COPICK_USER

    table = result.table
    coords = pool.item_table([str(v) for v in table["id"]])
    coords["score"] = [float(s) if s == s and s is not None else 1.0 for s in table["score"]]
    session = f"round-{result.round.n:03d}"
    n = write_copick(
        tomo.copick,
        ParticleList(coords, {t: pool.voxel_size for t in pool.tomograms}, "cryoal"),
        user_id=COPICK_USER,
        session_id=session,
        object_name=tomo.object_name,
        overwrite=True,
        create_runs=False,
    )
    return f"{n} picks as {tomo.object_name} / user {COPICK_USER} / session {session}"


def particle_label_table(labels: Any, particles: Any) -> Any:
    """The label rows (``id`` first) joined with the pool's ``tomo, x, y, z`` (Å)."""
    return labels.merge(particles, on="id", how="left", validate="many_to_one")


def check_copick_objects(config: Path, names: list[str]) -> None:
    """Refuse class names that are not pickable objects of the copick project.

    Raises
    ------
    InvalidParticlesError
        One line naming the classes and the project's objects.
    """
    from cryoal.errors import InvalidParticlesError
    from cryoal.io.tomograms import open_copick_root

    known = {o.name for o in open_copick_root(config).pickable_objects}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidParticlesError(
            f"{config}: class(es) {', '.join(unknown)} are not pickable objects of the copick "
            f"project ({', '.join(sorted(known)) or 'none'}); add them to its config or leave "
            "out --copick-picks"
        )


def write_class_picks(
    config: Path,
    table: Any,
    voxel_size: float,
    *,
    class_column: str,
    session_id: str,
    score_column: str | None = None,
) -> str:
    """Write particles (``id, tomo, x, y, z`` Å and ``class_column``) into a copick
    project as picks: one picks set per (run, class), the class as the copick object,
    user ``cryoal``, ``session_id``, point score from ``score_column`` (else 1.0).
    Replaces earlier picks of that user and session; every class must be a pickable
    object of the project (checked before anything is written). Returns a summary."""
    from cryoal.io.particles import ParticleList, write_copick
    from cryoal.io.tomopool import COPICK_USER

    cols = ["id", "tomo", "x", "y", "z", *[c for c in ("rot", "tilt", "psi") if c in table]]
    out = table[cols].reset_index(drop=True).copy()
    out["label"] = [str(v) for v in table[class_column]]
    if score_column is not None:
        out["score"] = table[score_column].to_numpy(dtype=float)
    n = write_copick(
        config,
        ParticleList(out, {str(t): voxel_size for t in out["tomo"].unique()}, "cryoal"),
        user_id=COPICK_USER,
        session_id=session_id,
        overwrite=True,
        create_runs=False,
    )
    classes = sorted(set(out["label"]))
    return (
        f"{n} picks of {len(classes)} object(s) ({', '.join(classes)}) as user {COPICK_USER} / "
        f"session {session_id} in {config}"
    )


def write_particle_labels(
    out: Path,
    labels: Any,
    particles: Any,
    centres: dict[str, Any],
    voxel_size: float,
    *,
    coordinates: str = "relion5",
) -> Path:
    """A tomogram project's label table with the particles' tomo, x, y, z (Å): CSV, or a
    RELION particles.star with rlnClassNumber (1-based in the sorted class names) and
    ``coordinates`` as :func:`cryoal.io.particles.write_relion` takes them."""
    from cryoal.io import write_table
    from cryoal.io.particles import ParticleList, write_relion

    table = particle_label_table(labels, particles)
    table = table[["id", "tomo", "x", "y", "z", *[c for c in labels.columns if c != "id"]]]
    if not str(out).lower().endswith(".star"):
        return write_table(out, table)
    classes = sorted({str(v) for v in table["label"]})
    return write_relion(
        out,
        ParticleList(
            table.reset_index(drop=True),
            {t: voxel_size for t in table["tomo"].unique()},
            "cryoal",
            {t: (float(c[0]), float(c[1]), float(c[2])) for t, c in centres.items()},
        ),
        class_numbers=classes,
        class_column="label",
        coordinates=coordinates,  # type: ignore[arg-type]
    )

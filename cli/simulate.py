"""``cryoal simulate``: build a simulated data set from a manifest, list or verify manifests.

``cryoal simulate tomo-copick`` is a builder, not a manifest: the first argument is
checked against :data:`BUILDERS` before any manifest lookup, so a file or folder of that
name in the working directory cannot shadow it (bundled manifests never use these names).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cryoal.errors import ConfigError

from ._common import device_option, example_epilog, progress_option

EXAMPLES = """
cryoal simulate --list                              # the bundled manifests
cryoal simulate demo --out demo/                    # 4 classes x 24 subtomograms + test split
cryoal simulate snr-benchmark --out snr/ --seed 1   # one set per SNR under snr/snr-<v>/
cryoal simulate my-recipe.yaml --out data/          # your own manifest (see docs/simulation.md)
cryoal simulate shrec2021 --verify ~/data/shrec2021 # check a downloaded external data set
cryoal simulate tomo-copick --out sim-copick/       # a copick project (see its --help)
"""

TOMO_COPICK_EXAMPLES = """
cryoal simulate tomo-copick --out sim-copick/                 # 2 tomograms, 6 classes x 12 each
cryoal simulate tomo-copick --out sim-copick/ --relion --seed 3   # + RELION 5 STAR files and MRCs
cryoal simulate tomo-copick --out big/ --tomograms 4 --shape 128 256 256 --per-class 40
"""


@click.command(
    "tomo-copick",
    epilog=example_epilog(TOMO_COPICK_EXAMPLES),
    short_help="Simulate a small copick project (OME-Zarr tomograms + ground-truth picks).",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Project folder (must be new or empty, unless --overwrite).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--tomograms",
    "n_tomograms",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Runs (tomograms) to simulate.",
)
@click.option(
    "--shape",
    type=click.IntRange(min=8),
    nargs=3,
    default=(96, 128, 128),
    show_default=True,
    help="Tomogram size in voxels, Z Y X.",
)
@click.option(
    "--voxel-size",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Voxel size in Å.",
)
@click.option(
    "--per-class",
    "n_per_class",
    type=click.IntRange(min=0),
    default=12,
    show_default=True,
    help="Particles per class and tomogram.",
)
@click.option(
    "--snr",
    type=click.FloatRange(min=0, min_open=True),
    default=0.1,
    show_default=True,
    help="SNR = var(signal) / var(noise) over each tomogram.",
)
@click.option(
    "--tomo-type", default="wbp", show_default=True, help="Copick tomogram type of the volumes."
)
@click.option(
    "--user-id", default="curation", show_default=True, help="Copick user_id of the true picks."
)
@click.option(
    "--relion",
    is_flag=True,
    help="Also write relion/: RELION 5 tomograms.star, particles.star and MRC tomograms.",
)
@click.option(
    "--candidates/--no-candidates",
    default=True,
    show_default=True,
    help="Also write unlabelled candidate picks of every particle (object 'particle', "
    "user 'picker'), shuffled and ~0.5 voxel off centre, as a picker would give them.",
)
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out folder.")
@device_option
@progress_option
def tomo_copick(
    out: Path,
    seed: int,
    n_tomograms: int,
    shape: tuple[int, int, int],
    voxel_size: float,
    n_per_class: int,
    snr: float,
    tomo_type: str,
    user_id: str,
    relion: bool,
    candidates: bool,
    overwrite: bool,
    device: str,
    progress: bool,
) -> None:
    """Simulate a copick project with known particles, for trying cryoal on real formats.

    Six bundled structures (ribosome 6ZU5, chaperonin 4V8R-A, mtor 4JSV, ruvab 7PBL,
    glua3-ntd 3O21, enolase 3ENL) at random positions (non-overlapping) and orientations,
    with CTF, missing wedge and noise at SNR. Writes OUT/copick_config.json, the
    tomograms as OME-Zarr under OUT/overlay/ExperimentRuns/TS_NNN/, one ground-truth
    picks file per object (user 'curation'), unlabelled candidate picks (object
    'particle', user 'picker'), OUT/truth.csv, OUT/config.json and, with --relion,
    OUT/relion/.
    The project appears at OUT only once it is complete.
    """
    from cryoal.runtime import resolve_device
    from cryoal.simulate import simulate_copick_project

    project = simulate_copick_project(
        out,
        n_tomograms=n_tomograms,
        shape=shape,
        voxel_size=voxel_size,
        n_per_class=n_per_class,
        snr=snr,
        tomo_type=tomo_type,
        user_id=user_id,
        relion=relion,
        candidates=candidates,
        seed=seed,
        overwrite=overwrite,
        device=str(resolve_device(device)),
        progress=progress,
    )
    counts = ", ".join(f"{r.name} {r.count}" for r in project.objects.itertuples())
    click.echo(
        f"wrote copick project {project.root}: {len(project.runs)} tomograms "
        f"{'x'.join(map(str, project.shape[::-1]))} at {project.voxel_size:g} Å, "
        f"{len(project.particles)} particles ({counts})"
    )
    click.echo(f"config: {project.config}")
    if project.candidates is not None:
        obj, user = project.candidates
        click.echo(
            f"next: cryoal select --copick {project.config} --object {obj} --user-id {user} "
            "--box 32 --budget 12"
        )
    if project.relion is not None:
        click.echo(
            f"RELION 5: {project.relion / 'particles.star'}, {project.relion / 'tomograms.star'}"
        )


#: Builders reached as ``cryoal simulate NAME``; checked before any manifest lookup.
BUILDERS: dict[str, click.Command] = {"tomo-copick": tomo_copick}


class _SimulateCommand(click.Command):
    """``cryoal simulate MANIFEST ...``, or ``cryoal simulate BUILDER ...`` (see BUILDERS)."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        if args and args[0] in BUILDERS:
            name = args[0]
            return BUILDERS[name].make_context(
                f"{info_name} {name}" if info_name else name, args[1:], parent=parent, **extra
            )
        return super().make_context(info_name, args, parent=parent, **extra)


def _list() -> None:
    from cryoal.manifests import list_manifests, load_manifest

    for name in list_manifests():
        m = load_manifest(name)
        click.echo(f"{name:<20} {m.kind:<13} {m.description}")
    for name, command in BUILDERS.items():
        click.echo(f"{name:<20} {'builder':<13} {command.get_short_help_str(200)}")


def _verify(manifest: str, root: Path, write_checksums: Path | None) -> None:
    from tqdm.auto import tqdm

    from cryoal.manifests import load_manifest, verify
    from cryoal.manifests import write_checksums as record

    m = load_manifest(manifest)
    with tqdm(desc="verify", unit="file") as bar:
        report = verify(m, root, on_file=lambda _p: bar.update())
    for problem in report.problems:
        click.echo(f"FAIL {problem}")
    if not report.ok:
        raise ConfigError(
            f"{root} does not match manifest '{m.name}' ({len(report.problems)} problem(s) above)"
        )
    note = (
        " (no checksums in the manifest: layout only)"
        if not any(f["sha256"] for f in m.spec["files"])
        else ""
    )
    click.echo(f"OK {root} matches '{m.name}': {report.checked} file(s) checked{note}")
    if write_checksums is not None:
        out = record(m, root, write_checksums)
        click.echo(f"wrote checksums of this copy to {out}")


@click.command(
    "simulate",
    cls=_SimulateCommand,
    epilog=example_epilog(EXAMPLES),
    short_help="Simulate a labelled data set from a manifest (or verify an external one).",
)
@click.argument("manifest", required=False)
@click.option(
    "--out", "out", type=click.Path(file_okay=False, path_type=Path), help="Output folder."
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Random seed (default: the manifest's seed); the same seed gives identical volumes.",
)
@device_option
@click.option("--list", "list_", is_flag=True, help="List the bundled manifests and exit.")
@click.option(
    "--verify",
    "verify_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Check a downloaded external data set in this folder against MANIFEST.",
)
@click.option(
    "--write-checksums",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --verify: record SHA-256 of every file of this copy in a new manifest.",
)
def simulate(
    manifest: str | None,
    out: Path | None,
    seed: int | None,
    device: str,
    list_: bool,
    verify_dir: Path | None,
    write_checksums: Path | None,
) -> None:
    """Build the data set MANIFEST describes (a bundled name or a YAML file).

    `cryoal simulate tomo-copick --out DIR` builds a copick project instead (see its --help).

    Writes OUT/volumes/*.mrc (voxel size in the header), OUT/labels.csv and .star (ids are
    the file names under OUT/volumes), OUT/metadata.csv (rotation, shift, SNR, defocus),
    OUT/manifest.yaml, OUT/config.json, and OUT/test/ when the manifest has a test split.
    """
    if list_:
        _list()
        return
    if manifest is None:
        raise click.UsageError("give a MANIFEST (a bundled name or a .yaml file), or --list")
    if verify_dir is not None:
        _verify(manifest, verify_dir, write_checksums)
        return
    if write_checksums is not None:
        raise click.UsageError("--write-checksums needs --verify DIR")
    if out is None:
        raise click.UsageError("give --out DIR for the simulated data")

    from cryoal.manifests import build, load_manifest
    from cryoal.runtime import resolve_device

    m = load_manifest(manifest)
    dev = resolve_device(device)
    result = build(
        m,
        out,
        seed,
        device=str(dev),
        progress=True,
        arguments={"command": "simulate", "seed_option": seed},
    )
    click.echo(f"wrote {result.n_volumes} volume(s) of '{m.name}' to {out}")
    first = result.sets[0]
    if m.kind == "subtomograms":
        click.echo(
            f"next: cryoal select --volumes {first / 'volumes'} --budget 8 --project {Path(out) / 'project'}"
        )

"""``cryoal simulate``: build a simulated data set from a manifest, list or verify manifests."""

from __future__ import annotations

from pathlib import Path

import click
from cryoal.cli._common import device_option, example_epilog

from cryoal.errors import ConfigError

EXAMPLES = """
cryoal simulate --list                              # the bundled manifests
cryoal simulate demo --out demo/                    # 4 classes x 24 subtomograms + test split
cryoal simulate snr-benchmark --out snr/ --seed 1   # one set per SNR under snr/snr-<v>/
cryoal simulate my-recipe.yaml --out data/          # your own manifest (see docs/simulation.md)
cryoal simulate shrec2021 --verify ~/data/shrec2021 # check a downloaded external data set
"""


def _list() -> None:
    from cryoal.manifests import list_manifests, load_manifest

    for name in list_manifests():
        m = load_manifest(name)
        click.echo(f"{name:<20} {m.kind:<13} {m.description}")


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

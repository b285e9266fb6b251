"""``cryoal pack``: convert a folder (or a CSV/STAR list) of MRC volumes to one HDF5 pool.

One chunked HDF5 file (one volume per chunk, see :mod:`cryoal.io.hdf5`) reads faster
than a million small files and moves between machines as one file. Ids are kept (the
paths relative to the folder, ``stack.mrcs#i`` for stack items), so labels and picks
stay valid; labels come from the list's ``label`` column or from ``--labels``. The file
is written atomically: an interrupted pack leaves no partial pool behind.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from ._common import example_epilog
from ._options import OptionsCommand

EXAMPLES = """
cryoal pack subtomos/ --out pool.h5                       # every *.mrc under subtomos/
cryoal pack subtomos/ --out pool.h5 --labels labels.csv   # store labels with the volumes
cryoal pack particles.csv --out pool.h5 --workers 4       # a list: path[,id][,label]
cryoal pack subtomos/ --pattern '*.mrc*' --out pool.h5    # compressed files too
"""


@dataclasses.dataclass(frozen=True)
class PackOptions:
    """The options of ``cryoal pack`` as parsed (one field per click parameter)."""

    source: Path
    out: Path
    pattern: tuple[str, ...] = ("*.mrc",)
    labels: Path | None = None
    workers: int = 2
    overwrite: bool = False
    progress: bool = True


@click.command(
    "pack",
    cls=OptionsCommand,
    options=PackOptions,
    epilog=example_epilog(EXAMPLES),
    short_help="Convert a folder or list of MRC volumes to one chunked HDF5 pool.",
)
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="HDF5 pool to write (.h5 or .hdf5).",
)
@click.option(
    "--pattern",
    multiple=True,
    default=["*.mrc"],
    show_default=True,
    help="File pattern inside SOURCE when it is a folder (repeat for several).",
)
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Labels to store with the volumes (.csv 'id,label' or .star).",
)
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(min=0),
    help="Processes reading MRC files in parallel (0: read in this process).",
)
@click.option("--overwrite", is_flag=True, help="Replace OUT when it exists.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def pack(opts: PackOptions) -> None:
    """Write every volume of SOURCE (a folder of MRC files, or a .csv/.star list) into
    one HDF5 pool, keeping ids and labels."""
    from cryoal.errors import ConfigError
    from cryoal.io.hdf5 import is_hdf5_file
    from cryoal.io.pack import pack_pool

    out = opts.out
    if not is_hdf5_file(out):
        raise ConfigError(f"{out}: the output must end in .h5 or .hdf5")
    if out.exists() and not opts.overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it")
    report = pack_pool(
        opts.source,
        out,
        pattern=list(opts.pattern),
        labels=opts.labels,
        workers=opts.workers,
        progress=opts.progress,
    )
    box = "x".join(str(s) for s in report.box)
    click.echo(
        f"packed {report.n} volumes (box {box}, {report.voxel_size:.4g} Å, "
        f"{report.n_labelled} labelled) into {out} ({report.bytes / 2**20:.1f} MB)"
    )

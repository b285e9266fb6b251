"""``cryoal info``: what is in an MRC file, a stack, an HDF5 pool, a folder of volumes, a
tomogram (MRC or OME-Zarr), tomograms with particle coordinates, or a copick project."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import click
import numpy as np

from cryoal.errors import ConfigError, InvalidVolumeError
from cryoal.io import VolumePool, is_hdf5_file, read_header
from cryoal.io.mrc import MrcHeader, _read_item

from ._common import example_epilog
from ._options import OptionsCommand
from ._tomo import (
    CoordinateOptions,
    TomogramOptions,
    coordinate_options,
    describe_pool,
    tomogram_pool,
)

EXAMPLES = """
cryoal info subtomo_0001.mrc            # shape, mode, voxel size, value range
cryoal info subtomos/                   # count, box sizes, bytes of a folder
cryoal info subtomos/ --labels labels.csv --pattern '*.mrc*'
cryoal info particles.mrcs              # a stack: items, box, values
cryoal info TS_01.zarr                  # an OME-Zarr tomogram: scale levels, shape, voxel size
cryoal info tomos/ --coords particles.star --box 32   # particles per tomogram, edge boxes
cryoal info copick/config.json          # runs, tomograms, picks per object / user / session
cryoal info copick/config.json --object ribosome --box 32
"""


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover - loop always returns


def _box(shape: tuple[int, ...]) -> str:
    return " x ".join(str(s) for s in shape)


def _row(name: str, value: object) -> None:
    click.echo(f"{name:<11}{value}")


def _stats(header: MrcHeader) -> tuple[float, float, float, float]:
    """min, max, mean, std over every item, one item at a time (float64 sums)."""
    lo, hi, total, total_sq, count = np.inf, -np.inf, 0.0, 0.0, 0
    if header.kind == "volume" and header.compression is None:
        # a tomogram can be GBs: memory-map it and sum 16 z-slices at a time
        mm = np.memmap(
            header.path, dtype=header.dtype, mode="r", offset=header.data_offset,
            shape=header.data_shape,
        )  # fmt: skip
        for z in range(0, header.data_shape[0], 16):
            arr = np.asarray(mm[z : z + 16], dtype=np.float64)
            if not np.isfinite(arr).all():
                _read_item(header, None)  # raises, naming the first bad voxel
            lo, hi = min(lo, float(arr.min())), max(hi, float(arr.max()))
            total += float(arr.sum())
            total_sq += float(np.square(arr).sum())
            count += arr.size
        del mm
        mean = total / count
        return lo, hi, mean, float(np.sqrt(max(total_sq / count - mean * mean, 0.0)))
    # compressed files are decompressed whole anyway: read them once
    whole = header.n_items == 1 or header.compression is not None
    items: list[int | None] = [None] if whole else list(range(header.n_items))
    for j in items:
        arr = _read_item(header, j).astype(np.float64)
        lo, hi = min(lo, float(arr.min())), max(hi, float(arr.max()))
        total += float(arr.sum())
        total_sq += float(np.square(arr).sum())
        count += arr.size
    mean = total / count
    std = float(np.sqrt(max(total_sq / count - mean * mean, 0.0)))
    return lo, hi, mean, std


def _file_info(path: Path) -> None:
    header = read_header(path)
    lo, hi, mean, std = _stats(header)
    axes = "(z, y, x)" if len(header.item_shape) == 3 else "(y, x)"
    _row("file", header.path)
    _row("kind", header.kind + (f" ({header.compression})" if header.compression else ""))
    if header.kind.endswith("stack"):
        _row("items", header.n_items)
    _row("shape", f"{_box(header.item_shape)} {axes}")
    _row("mode", header.mode_name)
    _row("voxel size", f"{header.voxel_size:.4g} Å")
    _row("origin", "(" + ", ".join(f"{v:.4g}" for v in header.origin) + ") Å (x, y, z)")
    _row("min / max", f"{lo:.6g} / {hi:.6g}")
    _row("mean / std", f"{mean:.6g} / {std:.6g}")
    _row("size", _human_bytes(header.file_size))


def _pool_info(where: Path, pool: VolumePool, labels: Path | None) -> None:
    summary = pool.summary()
    _row("pool", where)
    _row(
        "items", f"{summary.n_items} ({summary.n_files} file{'s' if summary.n_files != 1 else ''})"
    )
    for box, count in sorted(summary.boxes.items(), key=lambda kv: -kv[1]):
        _row("box", f"{_box(box)} ({count} items)")
    for size, count in sorted(summary.voxel_sizes.items(), key=lambda kv: -kv[1]):
        _row("voxel size", f"{size:.4g} Å ({count} items)")
    _row("total size", _human_bytes(summary.total_bytes))
    if labels is not None:
        pool = pool.with_labels(labels)
    n_lab = len(pool.labelled_indices())
    if labels is not None or n_lab:
        source = f"{labels}: " if labels is not None else ""
        _row(
            "labels", f"{source}{n_lab} of {len(pool)} labelled ({100.0 * n_lab / len(pool):.1f}%)"
        )
        counts = Counter(lab for lab in pool.labels if lab is not None)
        for name in pool.class_names:
            click.echo(f"  {name:<20}{counts[name]:>8}")
    if len(summary.boxes) > 1:
        click.echo("warning    more than one box size: a pool must share one box", err=True)
    if summary.problems:
        for line in summary.problems[:10]:
            click.echo(f"problem    {line}")
        raise InvalidVolumeError(
            f"{len(summary.problems)} of {summary.n_files} files are unreadable "
            f"(first: {summary.problems[0]})"
        )


def _tomogram_set_info(tset: Any) -> None:
    _row("tomograms", f"{len(tset)} from {tset.origin} ({tset.source})")
    width = max(len(n) for n in tset)
    for name, t in tset.items():
        where = f"{t.format}" + (f" level {t.level}" if t.level else "")
        click.echo(
            f"  {name:<{width}}  {_box(t.shape)} (z, y, x)  {t.voxel_size:.4g} Å  {where}  {t.path}"
        )


def _tomogram_pool_info(tomo: TomogramOptions) -> None:
    pool = tomogram_pool(tomo)
    _tomogram_set_info(pool.tomograms)
    report = pool.edge_report()
    _row("particles", describe_pool(pool))
    width = max(len(n) for n in report.per_tomogram)
    click.echo(f"  {'tomogram':<{width}}  particles  at edge")
    for name, (n, edge) in report.per_tomogram.items():
        click.echo(f"  {name:<{width}}  {n:>9}  {edge:>7}")
    for vid, reason in list(report.refused.items())[:10]:
        click.echo(f"refused    {vid}: {reason}")


def _zarr_info(path: Path) -> None:
    from cryoal.io.tomograms import _open_group, _scales, open_zarr_tomogram

    t = open_zarr_tomogram(path)
    _row("file", t.path)
    _row("kind", "OME-Zarr tomogram")
    group = _open_group(t.path, t.path)
    for level, vs in _scales(group, t.path):
        arr = group[level]
        click.echo(
            f"  level {level}: {_box(tuple(arr.shape))} (z, y, x)  {vs:.4g} Å  chunks "
            f"{_box(tuple(arr.chunks))}  {arr.dtype}"
        )


def _copick_info(path: Path) -> None:
    from cryoal.io.tomograms import describe_copick

    summary = describe_copick(path)
    _row("copick", path)
    _row("objects", ", ".join(summary.objects) or "(none)")
    runs = sorted({t[0] for t in summary.tomograms} | {p[0] for p in summary.picks})
    _row("runs", len(runs))
    for run, vs, tt, shape in summary.tomograms:
        shown = f"{_box(shape)} (z, y, x)" if shape is not None else "unreadable"
        click.echo(f"  tomogram  {run}  {vs:g} Å  {tt}  {shown}")
    counts: dict[tuple[str, str, str], list[int]] = {}
    for _run, obj, user, session, n in summary.picks:
        c = counts.setdefault((obj, user, session), [0, 0])
        c[0] += 1
        c[1] += n
    for (obj, user, session), (n_runs, n_points) in sorted(counts.items()):
        click.echo(
            f"  picks     {obj}  user {user}  session {session}: {n_points} points in "
            f"{n_runs} run{'s' if n_runs != 1 else ''}"
        )


@dataclasses.dataclass(frozen=True)
class InfoOptions:
    """The options of ``cryoal info`` as parsed (one field per click parameter; the
    coordinate options are PATH's when PATH is tomograms or a copick config)."""

    path: Path
    labels: Path | None = None
    pattern: str = "*.mrc"
    coordinates: CoordinateOptions = CoordinateOptions()


@click.command(
    "info",
    cls=OptionsCommand,
    options=InfoOptions,
    epilog=example_epilog(EXAMPLES),
    short_help="Describe a volume file, stack, HDF5 pool or folder.",
)
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--labels",
    type=click.Path(path_type=Path),
    default=None,
    help="Labels CSV/STAR (id,label): report coverage per class.",
)
@click.option(
    "--pattern",
    default="*.mrc",
    show_default=True,
    help="File-name glob for folders (e.g. '*.mrc*' to include .mrc.gz).",
)
@coordinate_options
def info(opts: InfoOptions) -> None:
    """Describe PATH: an MRC file, a stack, an HDF5 pool, a folder of volumes, an
    OME-Zarr tomogram, or a copick project (config .json).

    For one volume: shape, mode, voxel size, origin and value statistics. For a folder,
    stack or HDF5 pool: item count, box size(s), voxel size(s), bytes on disk and, with
    --labels, how many items are labelled per class. With --coords (PATH: tomograms) or
    --object (PATH: a copick config): the tomograms, the particles per tomogram and how
    many of their --box boxes reach past a tomogram edge.
    """
    path, labels, pattern = opts.path, opts.labels, opts.pattern
    low = path.name.lower()
    if opts.coordinates.coords is not None or opts.coordinates.object_name is not None:
        _tomogram_pool_info(TomogramOptions.of(path, opts.coordinates))
        return
    if low.endswith(".json"):
        _copick_info(path)
        return
    if low.endswith(".zarr"):
        _zarr_info(path)
        return
    if path.is_dir():
        _pool_info(path, VolumePool.from_directory(path, pattern), labels)
        return
    if not path.exists():
        raise InvalidVolumeError(f"{path}: not found; pass an MRC file, an HDF5 pool or a folder")
    if is_hdf5_file(path):
        _pool_info(path, VolumePool.from_hdf5(path), labels)
        return
    if labels is not None:
        header = read_header(path)
        if header.n_items == 1:
            raise ConfigError(
                "--labels needs a folder, a stack or an HDF5 pool, not a single volume"
            )
        _file_info(path)
        _pool_info(path, VolumePool.from_stack(path), labels)
        return
    _file_info(path)

"""``cryoal info``: what is in an MRC file, a stack, an HDF5 pool or a folder of volumes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click
import numpy as np
from cryoal.cli._common import example_epilog

from cryoal.errors import ConfigError, InvalidVolumeError
from cryoal.io import VolumePool, is_hdf5_file, read_header
from cryoal.io.mrc import MrcHeader, _read_item

EXAMPLES = """
cryoal info subtomo_0001.mrc            # shape, mode, voxel size, value range
cryoal info subtomos/                   # count, box sizes, bytes of a folder
cryoal info subtomos/ --labels labels.csv --pattern '*.mrc*'
cryoal info particles.mrcs              # a stack: items, box, values
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


@click.command(
    "info",
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
def info(path: Path, labels: Path | None, pattern: str) -> None:
    """Describe PATH: an MRC file, a stack, an HDF5 pool or a folder of volumes.

    For one volume: shape, mode, voxel size, origin and value statistics. For a folder,
    stack or HDF5 pool: item count, box size(s), voxel size(s), bytes on disk and, with
    --labels, how many items are labelled per class.
    """
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

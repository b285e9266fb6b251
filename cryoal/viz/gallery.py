"""Picture sheets: four views (three central slices and a projection) per volume."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cryoal.errors import ConfigError
from cryoal.viz.views import PANEL_TITLES, draw_views

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["gallery_figure", "write_gallery"]


def gallery_figure(
    volumes: Sequence[Any],
    captions: Sequence[str] | None = None,
    *,
    title: str | None = None,
    columns: int = 3,
    percentiles: tuple[float, float] = (1.0, 99.0),
    panel_inches: float = 1.1,
    dpi: int = 100,
) -> Figure:
    """A sheet with one block of four panels per volume, captioned.

    Parameters
    ----------
    volumes
        `(D, H, W)` arrays, tensors or Volumes, in the order to show them (rank order).
    captions
        One caption per volume (e.g. ``"#1 tomo1/p07.mrc  score 0.93  pred ribosome"``);
        default ``"#1" ... "#N"``.
    title
        Sheet title.
    columns
        Volumes per row of the sheet.
    percentiles
        Low and high percentiles that set each panel's grey range.
    panel_inches, dpi
        Size of one panel and resolution.

    Raises
    ------
    ConfigError
        No volumes, or captions and volumes differ in number.
    """
    from matplotlib.figure import Figure

    if len(volumes) == 0:
        raise ConfigError("a gallery needs at least one volume")
    if captions is None:
        captions = [f"#{i + 1}" for i in range(len(volumes))]
    if len(captions) != len(volumes):
        raise ConfigError(f"{len(volumes)} volumes but {len(captions)} captions")
    columns = max(1, min(columns, len(volumes)))
    rows = math.ceil(len(volumes) / columns)
    n_panels = len(PANEL_TITLES)
    block_h = panel_inches + 0.45
    fig = Figure(
        figsize=(columns * n_panels * panel_inches, rows * block_h + (0.4 if title else 0.0)),
        dpi=dpi,
    )
    body: Any = fig
    if title:
        parts = np.asarray(fig.subfigures(2, 1, height_ratios=[0.4, rows * block_h]))
        head, body = parts[0], parts[1]
        head.suptitle(title, fontsize=10, y=0.5, va="center")
    subfigs = np.asarray(body.subfigures(rows, columns, squeeze=False)).reshape(rows, columns)
    for i in range(min(rows * columns, len(volumes))):
        sub = subfigs[i // columns, i % columns]
        axes = sub.subplots(1, n_panels)
        sub.subplots_adjust(left=0.02, right=0.98, bottom=0.03, top=0.72, wspace=0.08)
        draw_views(list(axes), volumes[i], percentiles=percentiles, titles=i < columns, fontsize=6)
        sub.suptitle(captions[i], fontsize=7, y=0.98)
    return fig


def write_gallery(
    path: str | os.PathLike[str],
    volumes: Sequence[Any],
    captions: Sequence[str],
    *,
    title: str | None = None,
    columns: int = 3,
    percentiles: tuple[float, float] = (1.0, 99.0),
    panel_inches: float = 1.1,
    dpi: int = 100,
) -> Path:
    """Write a gallery (:func:`gallery_figure`) to ``path`` atomically.

    The format follows the extension (``.png`` or ``.svg``).

    Raises
    ------
    ConfigError
        No volumes, captions and volumes differ in number, or an unknown extension.
    """
    from cryoal.viz.export import save_figure

    fig = gallery_figure(
        volumes,
        captions,
        title=title,
        columns=columns,
        percentiles=percentiles,
        panel_inches=panel_inches,
        dpi=dpi,
    )
    target = Path(path)
    if target.suffix.lower() not in (".png", ".svg"):
        target_fmt = ".png"
        # historical behaviour: galleries are PNG whatever the name says
        from cryoal._atomic import atomic_path

        with atomic_path(target, suffix=target_fmt) as tmp:
            fig.savefig(tmp, format="png")
        return target
    return save_figure(fig, target)

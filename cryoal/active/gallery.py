"""Picture sheets of picks: central slices in three axes and a projection per volume."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from cryoal._atomic import atomic_path
from cryoal.errors import ConfigError, InvalidVolumeError

__all__ = ["PANEL_TITLES", "contrast_limits", "pick_panels", "write_gallery"]

#: What each of a pick's four panels shows.
PANEL_TITLES = ("z slice", "y slice", "x slice", "z projection")


def pick_panels(volume: np.ndarray) -> list[np.ndarray]:
    """The four 2D views of a volume shown in a gallery.

    Parameters
    ----------
    volume
        `(D, H, W)` array (z, y, x).

    Returns
    -------
    list[numpy.ndarray]
        Central z slice `(H, W)`, central y slice `(D, W)`, central x slice `(D, H)`,
        and the sum along z `(H, W)`, all float32.
    """
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 3:
        raise InvalidVolumeError(f"a gallery panel needs a (D, H, W) volume, got shape {vol.shape}")
    d, h, w = vol.shape
    return [vol[d // 2], vol[:, h // 2, :], vol[:, :, w // 2], vol.sum(axis=0)]


def contrast_limits(
    image: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)
) -> tuple[float, float]:
    """Display range of ``image`` from its low and high percentiles.

    A flat image gets a range of width 1 around its value, so it still renders.
    """
    lo, hi = (float(v) for v in np.percentile(image, percentiles))
    if not hi > lo:
        lo, hi = lo - 0.5, lo + 0.5
    return lo, hi


def write_gallery(
    path: str | os.PathLike[str],
    volumes: Sequence[np.ndarray],
    captions: Sequence[str],
    *,
    title: str | None = None,
    columns: int = 3,
    percentiles: tuple[float, float] = (1.0, 99.0),
    panel_inches: float = 1.1,
    dpi: int = 100,
) -> None:
    """Write a gallery PNG: one block of four panels per volume, captioned.

    Parameters
    ----------
    path
        Output PNG; written atomically.
    volumes
        `(D, H, W)` arrays, in the order to show them (rank order).
    captions
        One caption per volume (e.g. ``"#1 tomo1/p07.mrc  score 0.93  pred ribosome"``).
    title
        Sheet title.
    columns
        Volumes per row of the sheet.
    percentiles
        Low and high percentiles that set each panel's grey range.
    panel_inches, dpi
        Size of one panel and resolution of the PNG.

    Raises
    ------
    ConfigError
        No volumes, or captions and volumes differ in number.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    if len(volumes) == 0:
        raise ConfigError("a gallery needs at least one volume")
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
    body = fig
    if title:
        parts = np.asarray(fig.subfigures(2, 1, height_ratios=[0.4, rows * block_h]))
        head, body = parts[0], parts[1]
        head.suptitle(title, fontsize=10, y=0.5, va="center")
    subfigs = np.asarray(body.subfigures(rows, columns, squeeze=False)).reshape(rows, columns)
    for i in range(rows * columns):
        sub = subfigs[i // columns, i % columns]
        if i >= len(volumes):
            continue
        axes = sub.subplots(1, n_panels)
        sub.subplots_adjust(left=0.02, right=0.98, bottom=0.03, top=0.72, wspace=0.08)
        for j, (ax, panel) in enumerate(zip(axes, pick_panels(volumes[i]), strict=True)):
            lo, hi = contrast_limits(panel, percentiles)
            ax.imshow(panel, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i < columns:
                ax.set_title(PANEL_TITLES[j], fontsize=6)
        sub.suptitle(captions[i], fontsize=7, y=0.98)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")

"""Picture sheets: four views (three central slices and a projection) per volume.

Two renderers draw the same sheet: :func:`gallery_figure` (a matplotlib figure, for
notebooks and SVG) and :func:`gallery_image` (numpy + Pillow, no matplotlib: what
:func:`write_gallery` uses for PNG, the picture of every ``cryoal select`` round; about
50x less CPU than drawing and saving the figure, see docs/benchmarks.md).
"""

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
    from PIL import Image as PILImage

__all__ = ["gallery_figure", "gallery_image", "write_gallery"]


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

    captions = _checked_captions(volumes, captions)
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


def _checked_captions(volumes: Sequence[Any], captions: Sequence[str] | None) -> list[str]:
    if len(volumes) == 0:
        raise ConfigError("a gallery needs at least one volume")
    if captions is None:
        return [f"#{i + 1}" for i in range(len(volumes))]
    if len(captions) != len(volumes):
        raise ConfigError(f"{len(volumes)} volumes but {len(captions)} captions")
    return list(captions)


def _font(px: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=max(6, px))
    except TypeError:  # Pillow < 10.1: one fixed-size bitmap font
        return ImageFont.load_default()


def _fit(draw: Any, text: str, font: Any, width: int) -> str:
    """``text``, shortened with an ellipsis to at most ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def gallery_image(
    volumes: Sequence[Any],
    captions: Sequence[str] | None = None,
    *,
    title: str | None = None,
    columns: int = 3,
    percentiles: tuple[float, float] = (1.0, 99.0),
    panel_inches: float = 1.1,
    dpi: int = 100,
) -> PILImage.Image:
    """The sheet of :func:`gallery_figure` as a greyscale Pillow image, without matplotlib.

    Same layout and pixel size as the figure saved at ``dpi``: ``columns`` blocks per
    row, one block of four panels (:data:`~cryoal.viz.views.PANEL_TITLES`, titled on the
    first row) per volume under its caption; each panel scaled to its square with
    nearest-neighbour pixels (aspect kept) and its own grey range from ``percentiles``.

    Parameters
    ----------
    volumes
        `(D, H, W)` arrays, tensors or Volumes, in the order to show them (rank order).
    captions
        One caption per volume; default ``"#1" ... "#N"``. Long captions are shortened
        with an ellipsis to the block's width.
    title, columns, percentiles, panel_inches, dpi
        As for :func:`gallery_figure`.

    Returns
    -------
    PIL.Image.Image
        Mode ``"L"``, ``(columns · 4 · panel_inches · dpi)`` pixels wide and
        ``(rows · (panel_inches + 0.45) + 0.4 if title) · dpi`` high.

    Raises
    ------
    ConfigError
        No volumes, captions and volumes differ in number, or bad percentiles.
    """
    from PIL import Image, ImageDraw

    from cryoal.viz.views import contrast_limits, orthogonal_views

    captions = _checked_captions(volumes, captions)
    columns = max(1, min(columns, len(volumes)))
    rows = math.ceil(len(volumes) / columns)
    n_panels = len(PANEL_TITLES)
    panel = round(panel_inches * dpi)
    block_w = n_panels * panel
    block_h = round((panel_inches + 0.45) * dpi)
    head = round(0.4 * dpi) if title else 0
    width = round(columns * n_panels * panel_inches * dpi)
    height = round((rows * (panel_inches + 0.45) + (0.4 if title else 0.0)) * dpi)
    sheet = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(sheet)
    small, caption_font = _font(round(6 / 72 * dpi)), _font(round(7 / 72 * dpi))
    if title:
        font = _font(round(10 / 72 * dpi))
        text = _fit(draw, title, font, width - 4)
        draw.text((width / 2, head / 2), text, fill=0, font=font, anchor="mm")
    margin = max(1, round(0.04 * panel))
    side = panel - 2 * margin
    for i, volume in enumerate(volumes):
        x0 = (i % columns) * block_w
        y0 = head + (i // columns) * block_h
        top = y0 + block_h - panel
        # the caption right above its panels (above the panel titles on the first row)
        text = _fit(draw, captions[i], caption_font, block_w - 4)
        cy = top - (0.3 if i < columns else 0.14) * dpi
        draw.text((x0 + block_w / 2, cy), text, fill=0, font=caption_font, anchor="mm")
        for j, view in enumerate(orthogonal_views(volume)):
            lo, hi = contrast_limits(view, percentiles)
            grey = np.clip((view - lo) / (hi - lo), 0.0, 1.0)
            img = Image.fromarray(np.round(grey * 255).astype(np.uint8), mode="L")
            scale = side / max(view.shape)
            size = (max(1, round(view.shape[1] * scale)), max(1, round(view.shape[0] * scale)))
            img = img.resize(size, Image.Resampling.NEAREST)
            px = x0 + j * panel + margin + (side - size[0]) // 2
            py = top + margin + (side - size[1]) // 2
            sheet.paste(img, (px, py))
            draw.rectangle((px - 1, py - 1, px + size[0], py + size[1]), outline=0)
            if i < columns:
                draw.text(
                    (x0 + j * panel + panel / 2, top - 1),
                    PANEL_TITLES[j],
                    fill=0,
                    font=small,
                    anchor="mb",
                )
    return sheet


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
    """Write a gallery to ``path`` atomically.

    ``.svg``: the matplotlib sheet (:func:`gallery_figure`); any other name: PNG drawn by
    :func:`gallery_image` (same layout and pixel size, no matplotlib).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ConfigError
        No volumes, or captions and volumes differ in number.
    """
    from cryoal._atomic import atomic_path

    target = Path(path)
    options: dict[str, Any] = {
        "title": title,
        "columns": columns,
        "percentiles": percentiles,
        "panel_inches": panel_inches,
        "dpi": dpi,
    }
    if target.suffix.lower() == ".svg":
        from cryoal.viz.export import save_figure

        return save_figure(gallery_figure(volumes, captions, **options), target)
    # .png, and (historical behaviour) PNG whatever another name says
    image = gallery_image(volumes, captions, **options)
    with atomic_path(target, suffix=".png") as tmp:
        image.save(tmp, format="PNG")
    return target

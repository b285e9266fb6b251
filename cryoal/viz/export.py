"""Save figures as PNG or SVG, atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from cryoal._atomic import atomic_path
from cryoal.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["FIGURE_FORMATS", "save_figure"]

#: File formats :func:`save_figure` writes, by extension.
FIGURE_FORMATS = {".png": "png", ".svg": "svg"}


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int | None = None) -> Path:
    """Write ``fig`` to ``path`` as PNG or SVG (chosen by the extension), atomically.

    Parameters
    ----------
    fig
        A matplotlib figure (e.g. from :func:`cryoal.viz.plot_volume`).
    path
        Target file ending in ``.png`` or ``.svg``; folders are created.
    dpi
        Resolution of a PNG (default: the figure's own).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ConfigError
        The extension is neither ``.png`` nor ``.svg``.
    """
    target = Path(path)
    fmt = FIGURE_FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"{target}: cannot save a figure as {target.suffix or 'a file without extension'}; "
            "use .png or .svg"
        )
    with atomic_path(target, suffix=target.suffix) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi if dpi is not None else "figure")
    return target

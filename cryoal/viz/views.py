"""Orthogonal slices, projections and percentile contrast of one subtomogram.

Every function here takes a volume as a NumPy array, a torch tensor or a
:class:`cryoal.io.Volume`, shaped `(D, H, W)` (z, y, x) or `(1, D, H, W)`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cryoal.errors import ConfigError, InvalidVolumeError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "PANEL_TITLES",
    "as_volume_array",
    "contrast_limits",
    "draw_views",
    "image_png",
    "orthogonal_views",
    "plot_volume",
    "projection",
]

#: What each of the four views shows, in the order :func:`orthogonal_views` returns them.
PANEL_TITLES = ("z slice", "y slice", "x slice", "z projection")

_AXES = {"z": 0, "y": 1, "x": 2}


def as_volume_array(volume: Any) -> np.ndarray:
    """A `(D, H, W)` float32 array from an array, tensor or :class:`cryoal.io.Volume`.

    Raises
    ------
    InvalidVolumeError
        The input is not 3D after dropping one leading channel axis.
    """
    data = getattr(volume, "data", volume)
    if hasattr(data, "detach"):
        data = data.detach().cpu().numpy()
    arr = np.asarray(data, dtype=np.float32)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise InvalidVolumeError(
            f"a volume view needs a (D, H, W) or (1, D, H, W) volume, got shape {arr.shape}"
        )
    return arr


def projection(volume: Any, axis: str = "z") -> np.ndarray:
    """Sum of the volume along ``axis`` (``"z"``, ``"y"`` or ``"x"``): a 2D image.

    Returns
    -------
    numpy.ndarray
        `(H, W)` for z, `(D, W)` for y, `(D, H)` for x; float32.
    """
    if axis not in _AXES:
        raise ConfigError(f"projection axis must be 'z', 'y' or 'x', got {axis!r}")
    return as_volume_array(volume).sum(axis=_AXES[axis], dtype=np.float32)


def orthogonal_views(volume: Any) -> list[np.ndarray]:
    """The four 2D views shown for a volume.

    Parameters
    ----------
    volume
        `(D, H, W)` (or `(1, D, H, W)`) array, tensor or Volume.

    Returns
    -------
    list[numpy.ndarray]
        Central z slice `(H, W)`, central y slice `(D, W)`, central x slice `(D, H)`,
        and the sum along z `(H, W)`, all float32 (see :data:`PANEL_TITLES`).
    """
    vol = as_volume_array(volume)
    d, h, w = vol.shape
    return [vol[d // 2], vol[:, h // 2, :], vol[:, :, w // 2], vol.sum(axis=0, dtype=np.float32)]


def contrast_limits(
    image: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)
) -> tuple[float, float]:
    """Display range of ``image`` from its low and high percentiles.

    A flat image gets a range of width 1 around its value, so it still renders.

    Raises
    ------
    ConfigError
        The percentiles are not ``0 <= low < high <= 100``.
    """
    low, high = percentiles
    if not 0.0 <= low < high <= 100.0:
        raise ConfigError(
            f"contrast percentiles must satisfy 0 <= low < high <= 100, got {percentiles}"
        )
    lo, hi = (float(v) for v in np.percentile(image, percentiles))
    if not hi > lo:
        lo, hi = lo - 0.5, lo + 0.5
    return lo, hi


def image_png(
    image: np.ndarray,
    *,
    percentiles: tuple[float, float] = (1.0, 99.0),
    cmap: str = "gray",
) -> bytes:
    """Encode a 2D image as PNG bytes, one pixel per value, grey range from percentiles."""
    from matplotlib.image import imsave

    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise InvalidVolumeError(f"a PNG image must be 2D, got shape {img.shape}")
    lo, hi = contrast_limits(img, percentiles)
    buf = io.BytesIO()
    imsave(buf, img, cmap=cmap, vmin=lo, vmax=hi, format="png", origin="upper")
    return buf.getvalue()


def draw_views(
    axes: Sequence[Axes],
    volume: Any,
    *,
    percentiles: tuple[float, float] = (1.0, 99.0),
    titles: bool = True,
    fontsize: float = 7.0,
) -> None:
    """Draw :func:`orthogonal_views` of ``volume`` into four matplotlib axes.

    Each panel gets its own grey range from ``percentiles`` of its pixels.
    """
    if len(axes) != len(PANEL_TITLES):
        raise ConfigError(f"draw_views needs {len(PANEL_TITLES)} axes, got {len(axes)}")
    for j, (ax, panel) in enumerate(zip(axes, orthogonal_views(volume), strict=True)):
        lo, hi = contrast_limits(panel, percentiles)
        ax.imshow(panel, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if titles:
            ax.set_title(PANEL_TITLES[j], fontsize=fontsize)


def plot_volume(
    volume: Any,
    *,
    title: str | None = None,
    percentiles: tuple[float, float] = (1.0, 99.0),
    panel_inches: float = 1.8,
    dpi: int = 100,
) -> Figure:
    """A figure with the three central slices and the z projection of ``volume``.

    Parameters
    ----------
    volume
        `(D, H, W)` array, tensor or :class:`cryoal.io.Volume`.
    title
        Figure title (default: the Volume's file name when there is one).
    percentiles
        Low and high percentiles that set each panel's grey range.
    panel_inches, dpi
        Size of one panel and resolution.

    Returns
    -------
    matplotlib.figure.Figure
        Not attached to pyplot; show it in Jupyter as the cell's value, or save it with
        :func:`cryoal.viz.save_figure`.
    """
    from matplotlib.figure import Figure

    if title is None and getattr(volume, "path", None) is not None:
        title = str(volume.path.name)
        if getattr(volume, "index", None) is not None:
            title += f"#{volume.index}"
    fig = Figure(figsize=(4 * panel_inches, panel_inches + (0.5 if title else 0.3)), dpi=dpi)
    axes = fig.subplots(1, len(PANEL_TITLES))
    draw_views(list(axes), volume, percentiles=percentiles, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(
        left=0.02, right=0.98, bottom=0.03, top=0.78 if title else 0.85, wspace=0.08
    )
    return fig

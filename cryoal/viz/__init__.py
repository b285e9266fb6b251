"""Looking at subtomograms: orthogonal slices, projections, galleries, learning curves.

Figures are plain matplotlib :class:`~matplotlib.figure.Figure` objects (not attached to
pyplot): a notebook shows one as a cell's value, :func:`save_figure` writes PNG or SVG.
Grey ranges come from percentiles of each image (default 1st–99th), which keeps noisy
cryo-ET data readable.

>>> from cryoal import viz
>>> fig = viz.plot_volume(volume)                   # doctest: +SKIP
>>> viz.save_figure(fig, "particle.svg")            # doctest: +SKIP
"""

from __future__ import annotations

from cryoal.viz.curves import learning_curve_points, plot_learning_curve
from cryoal.viz.export import FIGURE_FORMATS, save_figure
from cryoal.viz.gallery import gallery_figure, gallery_image, write_gallery
from cryoal.viz.views import (
    PANEL_TITLES,
    as_volume_array,
    contrast_limits,
    draw_views,
    image_png,
    orthogonal_views,
    plot_volume,
    projection,
)

__all__ = [
    "FIGURE_FORMATS",
    "PANEL_TITLES",
    "as_volume_array",
    "contrast_limits",
    "draw_views",
    "gallery_figure",
    "gallery_image",
    "image_png",
    "learning_curve_points",
    "orthogonal_views",
    "plot_learning_curve",
    "plot_volume",
    "projection",
    "save_figure",
    "write_gallery",
]

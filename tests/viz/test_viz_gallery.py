"""Galleries: one block of four panels per volume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cryoal import viz
from cryoal.errors import ConfigError


def test_gallery_figure_layout() -> None:
    rng = np.random.default_rng(1)
    vols = [rng.normal(size=(8, 8, 8)).astype(np.float32) for _ in range(5)]
    fig = viz.gallery_figure(vols, title="round 2", columns=2)
    axes = [ax for sub in fig.subfigs[1].subfigs for ax in sub.axes]
    assert len(axes) == 5 * 4
    # titles only on the first row of blocks (2 blocks x 4 panels)
    assert sum(ax.get_title() != "" for ax in axes) == 8
    captions = [sub._suptitle.get_text() for sub in fig.subfigs[1].subfigs if sub.axes]
    assert captions == ["#1", "#2", "#3", "#4", "#5"]


def test_write_gallery_png_and_svg(tmp_path: Path) -> None:
    vols = [np.full((8, 8, 8), float(i), dtype=np.float32) for i in range(3)]
    png = viz.write_gallery(tmp_path / "g.png", vols, ["a", "b", "c"], columns=3, dpi=40)
    with Image.open(png) as im:
        assert im.size == (round(3 * 4 * 1.1 * 40), round((1.1 + 0.45) * 40))
    svg = viz.write_gallery(tmp_path / "g.svg", vols, ["a", "b", "c"])
    assert "<svg" in svg.read_text(encoding="utf-8")


def test_gallery_errors() -> None:
    with pytest.raises(ConfigError, match="^a gallery needs at least one volume$"):
        viz.gallery_figure([])
    with pytest.raises(ConfigError, match="^2 volumes but 1 captions$"):
        viz.gallery_figure([np.zeros((4, 4, 4))] * 2, ["x"])

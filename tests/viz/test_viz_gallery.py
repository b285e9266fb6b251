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


def test_gallery_image_pixels_follow_the_views() -> None:
    # a volume whose z slice is a left/right step: the panel shows black | white
    vol = np.zeros((8, 8, 8), dtype=np.float32)
    vol[:, :, 4:] = 1.0
    img = viz.gallery_image([vol, vol + 5.0], ["#1 a", "#2 b"], columns=2, dpi=50)
    assert img.mode == "L"
    assert img.size == (round(2 * 4 * 1.1 * 50), round(1.55 * 50))
    a = np.asarray(img)
    panel = round(1.1 * 50)
    top = a.shape[0] - panel
    margin = max(1, round(0.04 * panel))
    side = panel - 2 * margin
    for block in range(2):  # per-panel contrast: the +5 offset does not change the picture
        x0 = block * 4 * panel + margin
        row = a[top + margin + side // 2, x0 : x0 + side]
        assert (row[: side // 2 - 1] == 0).all() and (row[side // 2 + 1 :] == 255).all()
    # the title row adds 0.4 in; an overlong caption is shortened, not spilled
    titled = viz.gallery_image([vol], ["x" * 500], title="round 3", dpi=50)
    assert titled.size == (round(4 * 1.1 * 50), round((1.55 + 0.4) * 50))


def test_write_gallery_png_without_matplotlib(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from cryoal.viz.gallery import write_gallery\n"
        f"write_gallery({str(tmp_path / 'g.png')!r}, [np.ones((6, 6, 6))] * 4, list('abcd'))\n"
        "print('matplotlib' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    with Image.open(tmp_path / "g.png") as im:
        assert im.format == "PNG" and im.size == (3 * 4 * 110, round(2 * 1.55 * 100))

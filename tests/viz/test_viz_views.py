"""Slices, projections, percentile contrast, PNG encoding and figure export."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cryoal import viz
from cryoal.errors import ConfigError, InvalidVolumeError
from cryoal.io import read_volume


def test_orthogonal_views_are_central_slices_and_z_sum(ramp_volume: np.ndarray) -> None:
    z, y, x, proj = viz.orthogonal_views(ramp_volume)
    np.testing.assert_array_equal(z, ramp_volume[3])
    np.testing.assert_array_equal(y, ramp_volume[:, 4, :])
    np.testing.assert_array_equal(x, ramp_volume[:, :, 5])
    np.testing.assert_allclose(proj, ramp_volume.sum(axis=0))
    assert [v.shape for v in (z, y, x, proj)] == [(8, 10), (6, 10), (6, 8), (8, 10)]
    assert all(v.dtype == np.float32 for v in (z, y, x, proj))


def test_views_accept_tensors_and_volumes(ramp_volume: np.ndarray, volume_file: Path) -> None:
    as_tensor = viz.orthogonal_views(torch.from_numpy(ramp_volume).unsqueeze(0))
    as_volume = viz.orthogonal_views(read_volume(volume_file))
    for a, b, c in zip(viz.orthogonal_views(ramp_volume), as_tensor, as_volume, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    with pytest.raises(InvalidVolumeError, match=r"got shape \(2, 6, 8, 10\)"):
        viz.orthogonal_views(np.zeros((2, 6, 8, 10)))


@pytest.mark.parametrize(("axis", "dim"), [("z", 0), ("y", 1), ("x", 2)])
def test_projection_is_a_sum(ramp_volume: np.ndarray, axis: str, dim: int) -> None:
    np.testing.assert_allclose(viz.projection(ramp_volume, axis), ramp_volume.sum(axis=dim))


def test_projection_bad_axis() -> None:
    with pytest.raises(ConfigError, match=r"^projection axis must be 'z', 'y' or 'x', got 'w'$"):
        viz.projection(np.zeros((4, 4, 4)), "w")


def test_contrast_limits_are_percentiles() -> None:
    img = np.arange(101, dtype=np.float32).reshape(1, -1)
    assert viz.contrast_limits(img) == pytest.approx((1.0, 99.0))
    assert viz.contrast_limits(img, (5.0, 50.0)) == pytest.approx((5.0, 50.0))
    assert viz.contrast_limits(np.full((3, 3), 7.0)) == (6.5, 7.5)
    with pytest.raises(ConfigError, match=r"0 <= low < high <= 100, got \(50\.0, 10\.0\)"):
        viz.contrast_limits(img, (50.0, 10.0))


def test_image_png_maps_percentile_range_to_black_and_white() -> None:
    img = np.tile(np.arange(101, dtype=np.float32), (3, 1))
    with Image.open(io.BytesIO(viz.image_png(img))) as im:
        decoded = np.asarray(im.convert("L"))
    assert decoded.shape == (3, 101)
    assert decoded[0, 0] == 0 and decoded[0, 1] == 0  # at or below the 1st percentile
    assert decoded[0, 99] == 255 and decoded[0, 100] == 255
    assert 120 <= decoded[0, 50] <= 135  # mid-grey in the middle
    with pytest.raises(InvalidVolumeError, match="must be 2D"):
        viz.image_png(np.zeros((2, 2, 2)))


def test_plot_volume_has_four_titled_panels(volume_file: Path) -> None:
    fig = viz.plot_volume(read_volume(volume_file))
    assert [ax.get_title() for ax in fig.axes] == list(viz.PANEL_TITLES)
    assert fig._suptitle is not None and fig._suptitle.get_text() == "ramp.mrc"
    # each panel's grey range comes from its own percentiles
    z_img = fig.axes[0].images[0]
    assert z_img.get_clim() == pytest.approx(
        viz.contrast_limits(viz.orthogonal_views(read_volume(volume_file))[0])
    )


def test_save_figure_png_and_svg(tmp_path: Path, ramp_volume: np.ndarray) -> None:
    fig = viz.plot_volume(ramp_volume, title="ramp")
    png = viz.save_figure(fig, tmp_path / "a" / "ramp.png", dpi=50)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        width, height = im.size
    assert (width, height) == (round(fig.get_figwidth() * 50), round(fig.get_figheight() * 50))
    svg = viz.save_figure(fig, tmp_path / "ramp.svg")
    text = svg.read_text(encoding="utf-8")
    assert "<svg" in text and text.rstrip().endswith("</svg>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "ramp.svg"]  # no temp files left
    with pytest.raises(
        ConfigError, match=r"ramp\.pdf: cannot save a figure as \.pdf; use \.png or \.svg"
    ):
        viz.save_figure(fig, tmp_path / "ramp.pdf")

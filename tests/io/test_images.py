"""2D image I/O: PNG/TIFF/MRC/NumPy readers, ImagePool, clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cryoal.errors import EmptyPoolError, InvalidLabelsError, InvalidVolumeError
from cryoal.io import write_volume
from cryoal.io.images import ImagePool, read_image, write_image


@pytest.fixture
def img() -> np.ndarray:
    return np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000


@pytest.mark.parametrize("ext", [".png", ".tif", ".mrc", ".npy"])
def test_round_trip_every_format(tmp_path: Path, img: np.ndarray, ext: str) -> None:
    data = img if ext == ".png" else img.astype(np.float32) / 7
    path = write_image(tmp_path / f"a{ext}", data, pixel_size=2.5)
    got, size = read_image(path)
    assert got.dtype == np.float32 and got.shape == (6, 8)
    np.testing.assert_allclose(got, data.astype(np.float32), rtol=1e-6)
    assert size == (2.5 if ext == ".mrc" else 1.0)


def test_rgb_is_converted_to_luminance(tmp_path: Path) -> None:
    rgb = np.zeros((5, 6, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 100, 50, 10
    Image.fromarray(rgb).save(tmp_path / "c.png")
    got, _ = read_image(tmp_path / "c.png")
    np.testing.assert_allclose(
        got, np.full((5, 6), 0.299 * 100 + 0.587 * 50 + 0.114 * 10), rtol=1e-6
    )


def test_bad_files_say_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "fake.png").write_text("not an image")
    with pytest.raises(InvalidVolumeError, match=r"fake.png: not a readable PNG image"):
        read_image(tmp_path / "fake.png")
    np.save(tmp_path / "cube.npy", np.zeros((3, 4, 5), np.float32))
    with pytest.raises(
        InvalidVolumeError, match=r"cube.npy: image has shape \(3, 4, 5\); .* one 2D"
    ):
        read_image(tmp_path / "cube.npy")
    write_volume(tmp_path / "vol.mrc", np.zeros((4, 4, 4), np.float32))
    with pytest.raises(InvalidVolumeError, match=r"vol.mrc: image has shape \(4, 4, 4\)"):
        read_image(tmp_path / "vol.mrc")
    np.save(tmp_path / "nan.npy", np.full((3, 3), np.nan, np.float32))
    with pytest.raises(InvalidVolumeError, match="NaN or Inf"):
        read_image(tmp_path / "nan.npy")
    with pytest.raises(InvalidVolumeError, match="PNG stores uint8/uint16"):
        write_image(tmp_path / "f.png", np.zeros((3, 3), np.float32))


def _folder(tmp_path: Path, n: int = 4) -> Path:
    root = tmp_path / "imgs"
    for i in range(n):
        write_image(root / "sub" / f"i{i}.png", np.full((8, 8), i * 10, np.uint8))
    (root / "labels.csv").write_text("id,label\n")  # side files are skipped
    return root


def test_pool_from_directory(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    pool = ImagePool.from_directory(root)
    assert pool.ids == [f"sub/i{i}.png" for i in range(4)]
    assert len(pool) == 4 and pool.box == (8, 8) and pool.voxel_size == 1.0
    x = pool[2]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and float(x.max()) == 20.0
    assert pool.path_of(1) == root / "sub" / "i1.png" and pool.index_of("sub/i3.png") == 3
    labelled = pool.with_labels(
        __import__("pandas").DataFrame({"id": ["sub/i0.png", "sub/i3.png"], "label": ["a", "b"]})
    )
    assert labelled.labels == ["a", None, None, "b"] and labelled.class_names == ["a", "b"]
    ds = labelled.dataset()
    assert [ds[i][1] for i in range(4)] == [0, -1, -1, 1]
    sub = labelled.subset([3, 0])
    assert sub.ids == ["sub/i3.png", "sub/i0.png"] and sub.labels == ["b", "a"]
    with pytest.raises(InvalidLabelsError):
        pool.with_labels(__import__("pandas").DataFrame({"id": ["nope.png"], "label": ["a"]}))
    # the same id and subset rules as every labelled pool (cryoal.io._items)
    assert labelled.subset([-1]).ids == ["sub/i3.png"] and labelled.labelled_indices() == [0, 3]
    with pytest.raises(InvalidLabelsError, match=r"'nope.png' is not in the pool \(4 images under"):
        pool.index_of("nope.png")
    with pytest.raises(IndexError, match="subset index 4 out of range for 4 items"):
        pool.subset([4])
    with pytest.raises(EmptyPoolError, match="subset of no items"):
        pool.subset([])


def test_pool_rejects_non_images_and_mixed_sizes(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    (root / "sub" / "notes.docx").write_bytes(b"PK")
    with pytest.raises(InvalidVolumeError, match=r"1 file\(s\) are not images \(sub/notes.docx\)"):
        ImagePool.from_directory(root)
    assert len(ImagePool.from_directory(root, "*.png")) == 4
    (root / "sub" / "notes.docx").unlink()
    write_image(root / "sub" / "z.png", np.zeros((9, 8), np.uint8))
    pool = ImagePool.from_directory(root)
    with pytest.raises(
        InvalidVolumeError, match=r"z.png: image is 9x8 px but the pool's images are 8x8"
    ):
        pool.check()
    with pytest.raises(EmptyPoolError, match="no images found"):
        ImagePool.from_directory(tmp_path / "imgs", "*.tif")


def test_pool_from_array() -> None:
    pool = ImagePool.from_array(np.ones((3, 4, 5)), labels=["x", None, "y"], pixel_size=3.0)
    assert pool.box == (4, 5) and pool.voxel_size == 3.0 and pool.ids[0] == "img_00000"
    assert pool[1].shape == (1, 4, 5) and pool.labels == ["x", None, "y"]
    with pytest.raises(InvalidVolumeError, match=r"needs images \(N, H, W\)"):
        ImagePool.from_array(np.ones((4, 5)))

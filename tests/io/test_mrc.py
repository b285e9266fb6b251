"""MRC reading and writing: every mode, stacks, compression, and every broken-file error."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import torch

from cryoal.errors import CryoalWarning, InvalidVolumeError
from cryoal.io import read_header, read_volume, write_volume

BOX = 16


def _exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


@pytest.mark.parametrize(
    ("name", "mode", "convert"),
    [
        ("mode0.mrc", 0, lambda v: np.clip(v * 30, -128, 127).astype(np.int8)),
        ("mode1.mrc", 1, lambda v: (v * 1000).astype(np.int16)),
        ("mode2.mrc", 2, lambda v: v),
        ("mode6.mrc", 6, lambda v: (np.abs(v) * 1000).astype(np.uint16)),
        ("mode12.mrc", 12, lambda v: v.astype(np.float16)),
        ("big_endian.mrc", 2, lambda v: v),
    ],
)
def test_read_every_mode_as_float32(data_dir: Path, base_volume: np.ndarray, name, mode, convert):
    vol = read_volume(data_dir / name)
    assert read_header(data_dir / name).mode == mode
    assert vol.data.dtype == np.float32
    assert vol.data.shape == (BOX, BOX, BOX)
    np.testing.assert_array_equal(vol.data, convert(base_volume).astype(np.float32))
    assert vol.voxel_size == 4.0
    assert vol.index is None
    assert vol.data.flags.writeable  # a copy, not the read-only map


@pytest.mark.parametrize("name", ["vol.map", "vol.rec", "vol.mrc.gz", "vol.mrc.bz2"])
def test_extensions_and_compression(data_dir: Path, base_volume: np.ndarray, name: str):
    vol = read_volume(data_dir / name)
    np.testing.assert_array_equal(vol.data, base_volume)
    header = read_header(data_dir / name)
    assert header.kind == "volume"
    assert header.compression == {"gz": "gzip", "bz2": "bzip2"}.get(name.rsplit(".", 1)[1])


@pytest.mark.parametrize("name", ["vstack.mrcs", "vstack.mrcs.gz"])
def test_volume_stack_items(data_dir: Path, name: str, make_volumes):
    vols = make_volumes(4)
    header = read_header(data_dir / name)
    assert header.kind == "volume-stack"
    assert header.n_items == 4
    assert header.item_shape == (BOX, BOX, BOX)
    for i in (0, 3):
        vol = read_volume(data_dir / name, index=i)
        np.testing.assert_array_equal(vol.data, vols[i])
        assert vol.index == i
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(
            f"{data_dir / name}: is a stack of 4 volumes; pass index=0..3 or use VolumePool.from_stack"
        ),
    ):
        read_volume(data_dir / name)
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(f"{data_dir / name}: index 4 out of range for a stack of 4 volumes"),
    ):
        read_volume(data_dir / name, index=4)


def test_image_stack_is_not_a_volume(data_dir: Path):
    header = read_header(data_dir / "images.mrcs")
    assert (header.kind, header.n_items, header.item_shape) == ("image-stack", BOX, (BOX, BOX))
    assert read_header(data_dir / "tilts.st").kind == "image-stack"
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(
            f"{data_dir / 'images.mrcs'}: is a stack of 16 2D images (16x16), not a volume; "
            "read 2D images with VolumePool.from_stack"
        ),
    ):
        read_volume(data_dir / "images.mrcs")


def test_single_volume_rejects_index(data_dir: Path):
    assert read_volume(data_dir / "mode2.mrc", index=0).index is None
    with pytest.raises(InvalidVolumeError, match="holds one volume; index 1 is out of range"):
        read_volume(data_dir / "mode2.mrc", index=1)


def test_image_stack_flag_on_mrc_is_still_a_volume(tmp_path: Path, base_volume: np.ndarray, raw):
    # many tomography programs write ispg=0 for plain volumes
    path = raw(tmp_path / "ispg0.mrc", base_volume, image_stack=True)
    with mrcfile.open(path) as mrc:
        assert mrc.header.ispg == 0
    np.testing.assert_array_equal(read_volume(path).data, base_volume)


def test_write_read_roundtrip_header(tmp_path: Path, base_volume: np.ndarray):
    path = write_volume(
        tmp_path / "out.mrc", torch.from_numpy(base_volume), 2.5, origin=(1.0, -2.0, 3.5)
    )
    vol = read_volume(path)
    np.testing.assert_array_equal(vol.data, base_volume)
    assert vol.voxel_size == 2.5
    assert vol.origin == (1.0, -2.0, 3.5)
    with mrcfile.open(path) as mrc:  # the header as any other program sees it
        assert mrc.voxel_size.x == pytest.approx(2.5)
        assert float(mrc.header.origin.y) == -2.0
        assert mrc.header.mode == 2
    assert not list(tmp_path.glob(".*tmp*"))  # atomic: no temporary file left


def test_write_stack_dtypes_and_compression(tmp_path: Path, make_volumes):
    vols = make_volumes(3)
    write_volume(tmp_path / "s.mrcs.bz2", vols, 3.0)
    header = read_header(tmp_path / "s.mrcs.bz2")
    assert (header.kind, header.n_items) == ("volume-stack", 3)
    np.testing.assert_array_equal(read_volume(tmp_path / "s.mrcs.bz2", index=2).data, vols[2])
    write_volume(tmp_path / "i16.mrc", (vols[0] * 100).astype(np.int16))
    assert read_header(tmp_path / "i16.mrc").mode == 1
    write_volume(tmp_path / "f64.mrc", vols[0].astype(np.float64))
    assert read_header(tmp_path / "f64.mrc").mode == 2
    write_volume(tmp_path / "imgs.mrcs", vols[0])
    assert read_header(tmp_path / "imgs.mrcs").kind == "image-stack"


def test_write_errors(tmp_path: Path, make_volumes):
    vol = make_volumes(1)[0]
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(
            f"{tmp_path / 'a.tif'}: unknown volume extension '.tif'; cryoal reads "
            ".mrc .map .rec .mrcs .st .ali (optionally + .gz or .bz2)"
        ),
    ):
        write_volume(tmp_path / "a.tif", vol)
    with pytest.raises(InvalidVolumeError, match=r"voxel size must be > 0 Å, got 0.0$"):
        write_volume(tmp_path / "a.mrc", vol, 0.0)
    bad = vol.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InvalidVolumeError, match=r"refusing to write 1 NaN/Inf values$"):
        write_volume(tmp_path / "a.mrc", bad)
    with pytest.raises(InvalidVolumeError, match=r"cannot write an array of shape \(16,\)"):
        write_volume(tmp_path / "a.mrc", vol[0, 0])
    assert not (tmp_path / "a.mrc").exists()


# ---------------------------------------------------------------- broken files


def test_truncated_file(tmp_path: Path, base_volume: np.ndarray, raw):
    path = raw(tmp_path / "cut.mrc", base_volume)
    path.write_bytes(path.read_bytes()[:2024])
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(
            f"{path}: truncated: the header says 16x16x16 voxels of mode 2 (17408 bytes with "
            "the 1024-byte header) but the file has 2024 bytes; re-copy or re-export it"
        ),
    ):
        read_volume(path)


def test_header_claims_more_voxels(tmp_path: Path, base_volume: np.ndarray, raw):
    path = raw(tmp_path / "liar.mrc", base_volume)
    raw = bytearray(path.read_bytes())
    raw[8:12] = np.int32(32).tobytes()  # nz: 16 -> 32
    path.write_bytes(bytes(raw))
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(
            f"{path}: truncated: the header says 32x16x16 voxels of mode 2 (33792 bytes with "
            "the 1024-byte header) but the file has 17408 bytes; re-copy or re-export it"
        ),
    ):
        read_header(path)


def test_shorter_than_header(tmp_path: Path):
    path = tmp_path / "tiny.mrc"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(
            f"{path}: truncated: the file has 100 bytes, less than the 1024-byte MRC header; "
            "re-copy or re-export it"
        ),
    ):
        read_volume(path)


def test_not_an_mrc_file(tmp_path: Path):
    path = tmp_path / "junk.mrc"
    path.write_bytes(np.random.default_rng(1).integers(1, 255, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(
            f"{path}: not an MRC file (no 'MAP ' ID in the header) or the file is corrupt; "
            "pass permissive=True to try anyway"
        ),
    ):
        read_volume(path)


def test_truncated_compressed_file(tmp_path: Path, base_volume: np.ndarray, raw):
    path = raw(tmp_path / "cut.mrc.gz", base_volume, compression="gzip")
    path.write_bytes(path.read_bytes()[:-2000])
    with pytest.raises(
        InvalidVolumeError,
        match=re.escape(f"{path}: cannot read the compressed data (")
        + r".*\); the file is truncated or corrupt, re-copy or re-export it$",
    ):
        read_volume(path)


def test_nan_and_inf(tmp_path: Path, base_volume: np.ndarray, raw):
    bad = base_volume.copy()
    bad[1, 2, 3] = np.nan
    bad[4, 5, 6] = np.inf
    path = raw(tmp_path / "nan.mrc", bad)
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(
            f"{path}: 2 NaN/Inf values (first at voxel (1, 2, 3), z-y-x order); "
            "fix or remove this volume"
        ),
    ):
        read_volume(path)
    with pytest.warns(CryoalWarning, match="2 NaN/Inf values"):
        vol = read_volume(path, permissive=True)
    assert np.isnan(vol.data[1, 2, 3])


def test_2d_image_where_volume_expected(tmp_path: Path, raw, make_volumes):
    path = raw(tmp_path / "image.mrc", make_volumes(1)[0, 0])
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(
            f"{path}: is a 2D image (16x16), not a volume; cryoal needs 3D subtomograms (D, H, W)"
        ),
    ):
        read_volume(path)


def test_unknown_extension(tmp_path: Path):
    path = tmp_path / "vol.tif"
    path.write_bytes(b"x")
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(
            f"{path}: unknown volume extension '.tif'; cryoal reads "
            ".mrc .map .rec .mrcs .st .ali (optionally + .gz or .bz2)"
        ),
    ):
        read_volume(path)


def test_missing_file(tmp_path: Path):
    with pytest.raises(
        InvalidVolumeError, match=_exact(f"{tmp_path / 'nope.mrc'}: file not found")
    ):
        read_volume(tmp_path / "nope.mrc")


def test_unsupported_mode(tmp_path: Path, raw, make_volumes):
    path = raw(tmp_path / "complex.mrc", make_volumes(1)[0].astype(np.complex64))
    with pytest.raises(
        InvalidVolumeError,
        match=_exact(
            f"{path}: unsupported MRC mode 4; cryoal reads modes 0 (int8), 1 (int16), "
            "2 (float32), 6 (uint16), 12 (float16)"
        ),
    ):
        read_volume(path)


def test_zero_voxel_size_warns_and_defaults(tmp_path: Path, base_volume: np.ndarray, raw):
    path = raw(tmp_path / "novox.mrc", base_volume, voxel_size=None)
    with pytest.warns(
        CryoalWarning,
        match=re.escape(f"{path}: voxel size 0 Å in the header is not positive; using 1.0 Å"),
    ):
        vol = read_volume(path)
    assert vol.voxel_size == 1.0


def test_valid_file_raises_no_warning(data_dir: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_volume(data_dir / "mode2.mrc")


def test_permissive_reads_a_file_without_map_id(tmp_path: Path, base_volume: np.ndarray, raw):
    path = raw(tmp_path / "nomap.mrc", base_volume)
    data = bytearray(path.read_bytes())
    data[208:212] = b"\0\0\0\0"  # the 'MAP ' ID
    path.write_bytes(bytes(data))
    with pytest.warns(CryoalWarning, match=re.escape(f"{path}: not an MRC file (no 'MAP ' ID")):
        vol = read_volume(path, permissive=True)
    np.testing.assert_array_equal(vol.data, base_volume)

"""The failures the fuzzers found, as fixed inputs: each is one typed error, fast.

Each test builds the minimal input of one class of failure (an untyped exception, a hang
or an allocation sized by a header) and checks the exact error and that it comes
before any allocation of the claimed size (a time bound well under a second).
"""

from __future__ import annotations

import bz2
import gzip
import io
import struct
import time
from pathlib import Path

import _fuzzlib as fz
import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cryoal.errors import CheckpointError, InvalidVolumeError
from cryoal.io import VolumePool, read_header, read_volume

BIG = 2**31 - 1  # the largest int32 a header field can hold


def _vol_bytes() -> bytes:
    return fz._mrc_bytes(np.random.default_rng(0).standard_normal((6, 6, 6)).astype(np.float32))


def _huge_header() -> bytes:
    raw = bytearray(_vol_bytes())
    raw[0:12] = struct.pack("<3i", BIG, BIG, BIG)  # nx = ny = nz: 9.9e27 voxels
    return bytes(raw)


@pytest.mark.parametrize(
    ("name", "pack", "reason"),
    [
        ("h.mrc", lambda b: b, "but the file has 1888 bytes"),
        ("h.mrc.gz", lambda b: gzip.compress(b, mtime=0), "gzip file cannot hold more than"),
        ("h.mrc.bz2", bz2.compress, "bzip2 file cannot hold more than 17179869184 bytes"),
    ],
)
def test_header_claiming_huge_size_fails_fast(tmp_path: Path, name, pack, reason) -> None:
    path = tmp_path / name
    path.write_bytes(pack(_huge_header()))
    t0 = time.perf_counter()
    for read in (read_header, read_volume, VolumePool.from_path):
        with pytest.raises(InvalidVolumeError, match=r"2147483647x2147483647x2147483647 voxels"):
            read(path)
    with pytest.raises(InvalidVolumeError, match=reason):
        read_header(path)
    assert time.perf_counter() - t0 < 1.0


def test_cryoal_info_on_huge_header_is_one_line(tmp_path: Path) -> None:
    """The first probe's OverflowError from ``cryoal info``."""
    from cryoal.cli.main import cli

    path = tmp_path / "h.mrc.gz"
    path.write_bytes(gzip.compress(_huge_header(), mtime=0))
    result = CliRunner().invoke(cli, ["info", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {path}: the header says"), lines


def test_corrupt_gzip_stream_is_typed(tmp_path: Path) -> None:
    """The first probe's zlib.error: a flipped byte inside the deflate stream."""
    data = bytearray(gzip.compress(_vol_bytes(), mtime=0))
    data[20] ^= 0xFF
    path = tmp_path / "c.mrc.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidVolumeError, match=r"c\.mrc\.gz: .*(decompress|readable)"):
        read_volume(path)


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress])
def test_decompression_bomb_is_bounded(tmp_path: Path, compress) -> None:
    """A valid 6³ header followed by 50 MiB of zeros: at most 1 MiB past the data is inflated."""
    path = tmp_path / ("b.mrc.gz" if compress is gzip.compress else "b.mrc.bz2")
    path.write_bytes(compress(_vol_bytes() + bytes(50 * 2**20)))
    assert path.stat().st_size < 200_000
    with pytest.raises(
        InvalidVolumeError,
        match=r"decompresses to more than 1048576 bytes past the 1888 bytes its header says "
        r"\(a decompression bomb or a corrupt header\)",
    ):
        read_volume(path)


def test_truncated_gzip_is_typed(tmp_path: Path) -> None:
    data = gzip.compress(_vol_bytes(), mtime=0)
    path = tmp_path / "t.mrc.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidVolumeError, match=r"t\.mrc\.gz: "):
        read_volume(path)


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_hdf5_dataset_claiming_more_than_the_file_fails_fast(tmp_path: Path, compression) -> None:
    """An unwritten dataset of 10⁶ 64³ volumes reads as fill values: refused up front."""
    path = tmp_path / "p.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset(
            "volumes",
            shape=(10**6, 64, 64, 64),
            dtype="f4",
            chunks=(1, 64, 64, 64) if compression else None,
            compression=compression,
        )
    t0 = time.perf_counter()
    with pytest.raises(
        InvalidVolumeError,
        match=r"p\.h5: dataset 'volumes' claims \(1000000, 64, 64, 64\) values of float32 "
        r"\(1048576000000 bytes\) but the file has \d+ bytes",
    ):
        VolumePool.from_path(path)
    assert time.perf_counter() - t0 < 1.0


def test_hdf5_ids_of_wrong_kind_are_typed(tmp_path: Path) -> None:
    """The first probe's KeyError/RuntimeError class: ids as a group, labels as a scalar."""
    path = tmp_path / "p.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("volumes", data=np.zeros((2, 4, 4, 4), np.float32))
        fh.create_group("ids")
    with pytest.raises(InvalidVolumeError, match=r"'ids' is a group; expected 2 strings"):
        VolumePool.from_path(path)
    with h5py.File(path, "w") as fh:
        fh.create_dataset("volumes", data=np.zeros((2, 4, 4, 4), np.float32))
        fh.create_dataset("labels", data=np.float64(3.0))
    with pytest.raises(InvalidVolumeError, match=r"'labels' is shape \(\); expected 2 strings"):
        VolumePool.from_path(path)


def _checkpoint(tmp_path: Path, edit) -> Path:
    payload = fz.checkpoint_payload()
    import copy

    payload = copy.deepcopy(payload)
    edit(payload)
    buf = io.BytesIO()
    torch.save(payload, buf)
    path = tmp_path / "model.pt"
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (  # the probe's 10¹⁵-byte allocation: a 256 GiB layer claimed, checked on "meta"
            lambda p: p["arch"].update(kwargs={"fc_units": 2**30}),
            r"weights do not fit architecture 'cb3d' with in_shape \(1, 8, 8, 8\): '.*' is "
            r"\(\d+, \d+\), the model needs \(1073741824, \d+\)",
        ),
        (
            lambda p: p["arch"].update(in_shape=[1, 2**20, 8, 8]),
            r"in_shape = \[1, 1048576, 8, 8\] is not \(C, D, H, W\) or \(C, H, W\)",
        ),
        (
            lambda p: p["arch"].update(num_classes="x"),
            r"num_classes = 'x' is not a whole number from 2 to 100000",
        ),
        (
            lambda p: p["arch"].update(kwargs={"width": -3}),
            r"cannot rebuild architecture 'cb3d' with in_shape \(1, 8, 8, 8\) and options",
        ),
        (
            lambda p: p["arch"].update(kwargs=[1, 2]),
            r"kwargs = \[1, 2\] is not a dict of named options",
        ),
        (
            lambda p: p["state_dict"].update(
                {k: torch.zeros(0) for k in list(p["state_dict"])[:1]}
            ),
            r"weights do not fit .* is \(0,\), the model needs",
        ),
        (
            lambda p: p["state_dict"].update(
                {k: torch.full_like(v, float("nan")) for k, v in list(p["state_dict"].items())[:1]}
            ),
            r"holds NaN or infinite values",
        ),
        (
            lambda p: p["meta"].update(class_names=["a"]),
            r"class_names = \['a'\] is not a list of 2 names",
        ),
        (
            lambda p: p["meta"].update(voxel_size="4"),
            r"voxel_size = '4' is not a positive number of Å",
        ),
        (lambda p: p["meta"].update(metrics=[1]), r"meta 'metrics' is list, not a dict"),
    ],
)
def test_broken_checkpoint_fields_are_typed(tmp_path: Path, edit, message) -> None:
    from cryoal.models import load_checkpoint

    path = _checkpoint(tmp_path, edit)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError, match=r"model\.pt: .*" + message):
        load_checkpoint(path)
    assert time.perf_counter() - t0 < 5.0


def test_cryoal_predict_with_broken_checkpoint_is_one_line(tmp_path: Path) -> None:
    """The probe's TypeError through ``cryoal predict``: exit 2, one line, nothing written."""
    from cryoal.cli.main import cli

    from cryoal.io import write_volume

    vols = tmp_path / "vols"
    vols.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        write_volume(vols / f"v{i}.mrc", rng.standard_normal((8, 8, 8)).astype(np.float32), 4.0)
    path = _checkpoint(tmp_path, lambda p: p["arch"].update(in_shape=None))
    out = tmp_path / "pred.csv"
    result = CliRunner().invoke(
        cli, ["predict", "--volumes", str(vols), "--model", str(path), "--out", str(out)]
    )
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "model.pt: cannot rebuild architecture 'cb3d'" in lines[0], lines
    assert not out.exists()


# ---------------------------------------------------------------- particles and copick


def _seed(name: str) -> str:
    return dict(fz.particle_seeds())[name].decode()


def test_star_with_a_repeated_column_is_typed(tmp_path: Path) -> None:
    """pandas' "Cannot set a DataFrame with multiple columns" ValueError."""
    from cryoal.errors import InvalidParticlesError
    from cryoal.io import read_particles

    text = _seed("both.star").replace("_cryoalId #13", "_rlnClassNumber #12")
    path = tmp_path / "p.star"
    path.write_text(text)
    with pytest.raises(
        InvalidParticlesError,
        match=r"p\.star: block data_particles names column\(s\) rlnClassNumber twice",
    ):
        read_particles(path, tomogram_shapes=fz._TOMO_SHAPES, pixel_size=fz._PIXEL)


def test_optics_block_with_garbage_group_is_typed(tmp_path: Path) -> None:
    """``pd.to_numeric`` on the optics block's group column raised ValueError."""
    from cryoal.errors import InvalidParticlesError
    from cryoal.io import read_particles

    text = _seed("r4.star").replace("1\topticsGroup1\t10.000000", "x1\topticsGroup1\t10.000000")
    path = tmp_path / "p.star"
    path.write_text(text)
    with pytest.raises(
        InvalidParticlesError, match=r"p\.star \(optics\): .*non-numeric rlnOpticsGroup"
    ):
        read_particles(path)


def test_dynamo_row_with_too_many_fields_is_typed(tmp_path: Path) -> None:
    from cryoal.errors import InvalidParticlesError
    from cryoal.io import read_particles

    lines = _seed("p.tbl").splitlines()
    path = tmp_path / "p.tbl"
    path.write_text(lines[0] + " " + lines[1] + "\n")  # two rows on one line
    with pytest.raises(
        InvalidParticlesError, match=r"p\.tbl: column\(s\) .* appear more than once"
    ):
        read_particles(path, pixel_size=fz._PIXEL)


def test_coordinate_overflowing_to_inf_in_angstrom_is_typed(tmp_path: Path) -> None:
    """1e308 pixels × 10 Å is inf: the k-d tree of the label matcher raised ValueError.

    Numbers beyond ±1e15 are refused as read, so no product with a pixel size overflows.
    """
    from cryoal.errors import InvalidParticlesError
    from cryoal.io import read_particles

    fields = _seed("p.tbl").splitlines()[0].split()
    fields[23] = "1e308"  # x, column 24
    path = tmp_path / "p.tbl"
    path.write_text(" ".join(fields) + "\n")
    with pytest.raises(
        InvalidParticlesError,
        match=r"p\.tbl: 1 of 1 rows have a x beyond ±1e\+15: row 1 \('1e\+308'\)",
    ):
        read_particles(path, pixel_size=fz._PIXEL)


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda t: t[: len(t) // 2], "JSONDecodeError"),
        (lambda t: t.replace('"user_id": "alice"', '"user_id": 0'), "ValidationError"),
        (lambda t: t.encode("latin-1").replace(b'"a"', b'"\xff"'), "UnicodeDecodeError"),
        (  # found by the long run: OverflowError converting to int64
            lambda t: t.replace('"instance_id": 0', '"instance_id": 99999999999999999999'),
            "ValueError: instance_id 99999999999999999999 does not fit a 64-bit",
        ),
    ],
)
def test_corrupt_copick_picks_file_is_typed(tmp_path: Path, edit, why) -> None:
    """copick parses picks lazily: JSON/pydantic/Unicode errors escaped from read_copick."""
    from cryoal.errors import InvalidParticlesError
    from cryoal.io import read_particles

    files = dict(fz.copick_seed())
    key = "overlay/ExperimentRuns/TS_1/Picks/alice_expert_a.json"
    text = edit(files[key].decode())
    files[key] = text if isinstance(text, bytes) else text.encode()
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data.replace(fz._ROOT_TOKEN.encode(), str(tmp_path).encode()))
    with pytest.raises(
        InvalidParticlesError,
        match=rf"copick_config\.json: copick picks file .*alice_expert_a\.json: not readable "
        rf"\({why}.*\); fix or remove the file",
    ):
        read_particles(tmp_path / "copick_config.json", fmt="copick")


def test_infinite_class_number_is_typed(tmp_path: Path) -> None:
    """Found by the long run: ``int(float("inf"))`` (OverflowError) in the class-number map."""
    from cryoal.errors import InvalidLabelsError
    from cryoal.io.particle_labels import read_particle_labels

    lines = _seed("p.tbl").splitlines()
    fields = lines[-1].split()
    fields[21] = "inf"  # class, column 22
    path = tmp_path / "p.tbl"
    path.write_text("\n".join([*lines[:-1], " ".join(fields)]) + "\n")
    pool = fz._pool_particles()
    with pytest.raises(
        InvalidLabelsError,
        match=r"p\.tbl: 1 of 4 rows have a class with no class name: row 4 \(inf\)",
    ):
        read_particle_labels(
            path,
            pool_ids=pool.ids,
            pool_particles=pool,
            pixel_size=fz._PIXEL,
            tomo_names={1: "TS_1", 2: "TS_2"},
            label_column="class",
            class_names={1: "a", 2: "b"},
        )

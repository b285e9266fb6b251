"""Tomogram sources: MRC and OME-Zarr tomograms found by stem, tomograms.star, copick."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
import zarr
from _tomodata import (
    SHAPE,
    VOXEL,
    tomogram_data,
    write_copick_project,
    write_mrc,
    write_ome_zarr,
)

from cryoal.errors import InvalidVolumeError
from cryoal.io.tomograms import open_tomogram, open_tomograms, open_zarr_tomogram


@pytest.fixture
def tomo_dir(tmp_path: Path) -> Path:
    d = tmp_path / "tomos"
    write_mrc(d / "TS_01.mrc", tomogram_data(0))
    write_mrc(d / "TS_02.rec", tomogram_data(1))
    write_ome_zarr(d / "TS_03.zarr", tomogram_data(2))
    (d / "notes.txt").write_text("not a tomogram")
    return d


def test_directory_names_shapes_voxel_sizes(tomo_dir: Path) -> None:
    ts = open_tomograms(tomo_dir)
    assert list(ts) == ["TS_01", "TS_02", "TS_03"]
    assert ts.shapes() == {n: SHAPE for n in ts}
    assert ts.voxel_sizes() == pytest.approx({n: VOXEL for n in ts})
    assert [ts[n].format for n in ts] == ["mrc", "mrc", "zarr"]
    nz, ny, nx = SHAPE
    assert ts["TS_01"].centre == pytest.approx((nx * VOXEL / 2, ny * VOXEL / 2, nz * VOXEL / 2))


def test_mrc_is_memory_mapped_and_equals_the_file(tomo_dir: Path) -> None:
    t = open_tomograms(tomo_dir)["TS_01"]
    arr = t.array()
    assert isinstance(arr, np.memmap)
    assert not arr.flags.writeable
    with mrcfile.open(tomo_dir / "TS_01.mrc") as mrc:
        np.testing.assert_array_equal(arr[3:9, 10:20, 40:50], mrc.data[3:9, 10:20, 40:50])


def test_zarr_level_zero_by_default_and_level_by_voxel_spacing(tomo_dir: Path) -> None:
    path = tomo_dir / "TS_03.zarr"
    t0 = open_zarr_tomogram(path)
    assert (t0.level, t0.shape, t0.voxel_size) == ("0", SHAPE, VOXEL)
    assert isinstance(t0.array(), zarr.Array)
    np.testing.assert_array_equal(t0.array()[:4, :4, :4], tomogram_data(2)[:4, :4, :4])
    t1 = open_zarr_tomogram(path, voxel_spacing=2 * VOXEL)
    assert (t1.level, t1.shape, t1.voxel_size) == ("1", (32, 48, 48), 2 * VOXEL)
    with pytest.raises(InvalidVolumeError, match=r"no scale with voxel spacing 15 Å; it has 10 Å"):
        open_zarr_tomogram(path, voxel_spacing=15.0)


def test_zarr_nanometer_axes_are_converted_to_angstrom(tmp_path: Path) -> None:
    path = write_ome_zarr(tmp_path / "nm.zarr", tomogram_data(0), VOXEL, unit="nanometer")
    assert open_zarr_tomogram(path).voxel_size == pytest.approx(VOXEL)


def test_broken_zarr_groups_are_one_clear_error(tmp_path: Path) -> None:
    src = write_ome_zarr(tmp_path / "ok.zarr", tomogram_data(0), levels=1)
    no_meta = tmp_path / "nometa.zarr"
    shutil.copytree(src, no_meta)
    (no_meta / ".zattrs").write_text("{}")
    with pytest.raises(InvalidVolumeError, match="no OME-NGFF 'multiscales' metadata"):
        open_zarr_tomogram(no_meta)
    not_zarr = tmp_path / "empty.zarr"
    not_zarr.mkdir()
    with pytest.raises(InvalidVolumeError, match="not a readable zarr group"):
        open_zarr_tomogram(not_zarr)
    bad_json = tmp_path / "badjson.zarr"
    shutil.copytree(src, bad_json)
    (bad_json / ".zattrs").write_text("{not json")
    with pytest.raises(InvalidVolumeError, match=r"badjson\.zarr"):
        open_zarr_tomogram(bad_json)
    no_level = tmp_path / "nolevel.zarr"
    shutil.copytree(src, no_level)
    shutil.rmtree(no_level / "0")
    with pytest.raises(
        InvalidVolumeError, match="scale level '0' listed in multiscales is missing"
    ):
        open_zarr_tomogram(no_level)


def test_damaged_zarr_chunk_fails_on_read_naming_the_tomogram(tmp_path: Path) -> None:
    path = write_ome_zarr(tmp_path / "TS_09.zarr", tomogram_data(0), levels=1)
    (path / "0" / "0.0.0").write_bytes(b"garbage, not a blosc chunk")
    t = open_zarr_tomogram(path)
    with pytest.raises(InvalidVolumeError, match=r"TS_09.*damaged"):
        t.fingerprint()


def test_bad_mrc_tomograms_are_refused(tmp_path: Path) -> None:
    import gzip

    plain = write_mrc(tmp_path / "a.mrc", tomogram_data(0))
    gz = tmp_path / "b.mrc.gz"
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    with pytest.raises(InvalidVolumeError, match="cannot be memory-mapped; decompress it first"):
        open_tomogram(gz)
    flat = write_mrc(tmp_path / "c.mrc", np.zeros((1, 8, 8), dtype=np.float32))
    with pytest.raises(InvalidVolumeError, match="not one 3D tomogram"):
        open_tomogram(flat)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(InvalidVolumeError, match="no tomograms"):
        open_tomograms(tmp_path / "nothing")


def test_same_stem_twice_is_refused(tmp_path: Path) -> None:
    write_mrc(tmp_path / "TS_01.mrc", tomogram_data(0))
    write_ome_zarr(tmp_path / "TS_01.zarr", tomogram_data(0), levels=1)
    with pytest.raises(InvalidVolumeError, match="two tomograms are named 'TS_01'"):
        open_tomograms(tmp_path)


def test_resolve_by_stem_with_a_suffix(tmp_path: Path) -> None:
    write_mrc(tmp_path / "TS_01_rec.mrc", tomogram_data(0))
    write_mrc(tmp_path / "TS_02_rec.mrc", tomogram_data(1))
    ts = open_tomograms(tmp_path)
    assert ts.resolve("TS_01").path.endswith("TS_01_rec.mrc")
    with pytest.raises(KeyError):
        ts.resolve("TS_0")
    assert "did you mean 'TS_02_rec'" in ts.missing_message(["TS_02_re"])


def test_fingerprint_is_stable_and_changes_with_the_data(tmp_path: Path) -> None:
    path = write_mrc(tmp_path / "TS_01.mrc", tomogram_data(0))
    before = open_tomogram(path).fingerprint()
    assert open_tomogram(path).fingerprint() == before
    data = tomogram_data(0)
    data[-1, -1, -1] += 1.0  # one voxel in the last-corner probe
    write_mrc(path, data)
    assert open_tomogram(path).fingerprint() != before
    z = write_ome_zarr(tmp_path / "TS_02.zarr", tomogram_data(1), levels=1)
    zb = open_zarr_tomogram(z).fingerprint()
    arr = zarr.open_group(str(z), mode="r+")["0"]
    arr[32, 48, 48] = 99.0  # the centre probe
    assert open_zarr_tomogram(z).fingerprint() != zb


def _tomograms_star(path: Path, rows: list[tuple[str, str]]) -> Path:
    table = pd.DataFrame(
        {
            "rlnTomoName": [r[0] for r in rows],
            "rlnTomoSizeX": [SHAPE[2]] * len(rows),
            "rlnTomoSizeY": [SHAPE[1]] * len(rows),
            "rlnTomoSizeZ": [SHAPE[0]] * len(rows),
            "rlnTomoTiltSeriesPixelSize": [VOXEL] * len(rows),
            "rlnTomoReconstructedTomogram": [r[1] for r in rows],
        }
    )
    starfile.write({"global": table}, path)
    return path


def test_relion_tomograms_star_maps_names_to_files(tmp_path: Path) -> None:
    write_mrc(tmp_path / "Tomograms" / "job010" / "tomograms" / "rec_TS_01.mrc", tomogram_data(0))
    write_ome_zarr(
        tmp_path / "Tomograms" / "job010" / "tomograms" / "rec_TS_02.zarr", tomogram_data(1)
    )
    star = _tomograms_star(
        tmp_path / "tomograms.star",
        [
            ("TS_01", "Tomograms/job010/tomograms/rec_TS_01.mrc"),
            ("TS_02", "Tomograms/job010/tomograms/rec_TS_02.zarr"),
        ],
    )
    ts = open_tomograms(star)
    assert ts.source == "relion"
    assert list(ts) == ["TS_01", "TS_02"]
    assert ts["TS_01"].path.endswith("rec_TS_01.mrc") and ts["TS_02"].format == "zarr"


def test_relion_tomograms_star_missing_file_names_the_row(tmp_path: Path) -> None:
    star = _tomograms_star(tmp_path / "tomograms.star", [("TS_07", "tomograms/rec_TS_07.mrc")])
    with pytest.raises(
        InvalidVolumeError, match=r"row 1: tomogram 'TS_07' file 'tomograms/rec_TS_07.mrc'"
    ):
        open_tomograms(star)


def _copick_project(tmp_path: Path, types: tuple[str, ...] = ("wbp",)) -> Path:
    return write_copick_project(tmp_path / "copick", types=types)


def test_copick_project_runs_to_tomograms(tmp_path: Path) -> None:
    config = _copick_project(tmp_path)
    ts = open_tomograms(config)
    assert ts.source == "copick"
    assert list(ts) == ["TS_01", "TS_02"]
    assert ts.shapes() == {"TS_01": SHAPE, "TS_02": SHAPE}
    assert Path(ts["TS_01"].path).is_dir() and ts["TS_01"].path.endswith("wbp.zarr")
    np.testing.assert_array_equal(
        ts["TS_02"].array()[5:9, 5:9, 5:9], tomogram_data(1)[5:9, 5:9, 5:9]
    )
    assert open_tomograms(config, voxel_spacing=VOXEL).shapes() == ts.shapes()
    with pytest.raises(InvalidVolumeError, match="no run has a tomogram of voxel spacing 20 Å"):
        open_tomograms(config, voxel_spacing=20.0)


def test_copick_project_with_two_tomo_types_needs_a_choice(tmp_path: Path) -> None:
    config = _copick_project(tmp_path, types=("wbp", "denoised"))
    with pytest.raises(
        InvalidVolumeError, match="tomogram types denoised, wbp; choose one with --tomo-type"
    ):
        open_tomograms(config)
    assert list(open_tomograms(config, tomo_type="denoised")) == ["TS_01", "TS_02"]


def test_missing_path_and_bad_config(tmp_path: Path) -> None:
    with pytest.raises(InvalidVolumeError, match="not found"):
        open_tomograms(tmp_path / "nope")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"config_type": "nonsense"}))
    with pytest.raises(InvalidVolumeError, match="not a readable copick config") as exc:
        open_tomograms(cfg)
    assert "\n" not in str(exc.value)  # pydantic's several lines folded into one

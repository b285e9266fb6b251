"""``cryoal info`` on tomograms: an OME-Zarr tomogram, tomograms + coordinates, copick."""

from __future__ import annotations

import sys
from pathlib import Path

from click.testing import CliRunner, Result
from cryoal.cli.main import cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from _tomodata import (
    SHAPE,
    VOXEL,
    particles_table,
    tomogram_data,
    write_copick_project,
    write_mrc,
    write_ome_zarr,
)


def info(*args: object) -> Result:
    return CliRunner().invoke(cli, ["info", *(str(a) for a in args)])


def test_info_on_an_ome_zarr_tomogram_lists_its_scales(tmp_path: Path) -> None:
    path = write_ome_zarr(tmp_path / "TS_01.zarr", tomogram_data(0))
    r = info(path)
    assert r.exit_code == 0, r.output
    assert "OME-Zarr tomogram" in r.output
    assert "level 0: 64 x 96 x 96 (z, y, x)  10 Å  chunks 32 x 32 x 32  float32" in r.output
    assert "level 1: 32 x 48 x 48 (z, y, x)  20 Å" in r.output


def test_info_on_tomograms_with_coordinates_counts_particles_and_edge_boxes(
    tmp_path: Path,
) -> None:
    tomos = tmp_path / "tomos"
    write_mrc(tomos / "TS_01.mrc", tomogram_data(0))
    write_ome_zarr(tomos / "TS_02.zarr", tomogram_data(1))
    table = particles_table({"TS_01": SHAPE, "TS_02": SHAPE}, per_tomo=5)
    table.loc[[0, 1], "x"] = 3 * VOXEL  # 5 voxels short of a 16-voxel box
    table.loc[7, "z"] = (SHAPE[0] - 2) * VOXEL
    csv = tmp_path / "coords.csv"
    table.rename(columns={"x": "x_angst", "y": "y_angst", "z": "z_angst"}).to_csv(csv, index=False)
    r = info(tomos, "--coords", csv, "--box", 16)
    assert r.exit_code == 0, r.output
    assert "tomograms  2 from" in r.output
    assert "TS_01  64 x 96 x 96 (z, y, x)  10 Å  mrc" in r.output
    assert "TS_02  64 x 96 x 96 (z, y, x)  10 Å  zarr level 0" in r.output
    assert (
        "10 particles in 2 tomograms, box 16x16x16 voxels at 10 Å, 3 boxes at a tomogram edge (mean)"
        in r.output
    )
    assert "  TS_01          5        2" in r.output
    assert "  TS_02          5        1" in r.output
    refused = info(tomos, "--coords", csv, "--box", 16, "--edge", "refuse")
    assert refused.exit_code == 0, refused.output
    assert "7 particles in 2 tomograms" in refused.output and "3 refused" in refused.output
    assert "refused    TS_01:000000: box 16x16x16 at voxel" in refused.output
    big = info(tomos, "--coords", csv, "--box", 200, "--edge", "refuse")
    assert big.exit_code == 2 and "all 10 particles were refused" in big.output


def test_info_on_a_copick_project(tmp_path: Path) -> None:
    picks = particles_table({"TS_01": SHAPE, "TS_02": SHAPE}, per_tomo=4)
    config = write_copick_project(tmp_path / "copick", picks=picks.iloc[:6])
    r = info(config)
    assert r.exit_code == 0, r.output
    assert "objects    ribosome, proteasome" in r.output
    assert "runs       2" in r.output
    assert "tomogram  TS_01  10 Å  wbp  64 x 96 x 96 (z, y, x)" in r.output
    assert "picks     ribosome  user expert  session 1: 6 points in 2 runs" in r.output


def test_info_on_a_broken_zarr_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "TS_01.zarr"
    bad.mkdir()
    (bad / ".zgroup").write_text('{"zarr_format": 2}')
    r = info(bad)
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        f"Error: {bad}: no OME-NGFF 'multiscales' metadata in .zattrs; an OME-Zarr tomogram "
        "lists its scale levels there"
    ]


def test_info_on_an_mrc_tomogram_sums_it_in_slabs(tmp_path: Path) -> None:
    import numpy as np

    data = tomogram_data(5)
    path = write_mrc(tmp_path / "TS_05.mrc", data)
    r = info(path)
    assert r.exit_code == 0, r.output
    assert "shape      64 x 96 x 96 (z, y, x)" in r.output
    d = data.astype(np.float64)
    assert f"min / max  {d.min():.6g} / {d.max():.6g}" in r.output
    assert f"mean / std {d.mean():.6g} / {d.std():.6g}" in r.output
    data[40, 3, 3] = np.nan
    write_mrc(path, data)
    bad = info(path)
    assert bad.exit_code == 2 and "NaN/Inf values (first at voxel (40, 3, 3)" in bad.output

"""``cryoal label import`` into tomogram projects: RELION 5 class numbers, copick picks,
cryoal's own picks; matched by id or by (tomogram, coordinate)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
from _simpool import FAST_ARGS
from click.testing import CliRunner, Result
from cryoal.cli.main import cli

from cryoal.active import Project

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


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def relion5_classes(path: Path, table: pd.DataFrame, classes: list[int]) -> Path:
    """RELION 5 particles.star with rlnClassNumber and no ids (as a 3D classification writes)."""
    nz, ny, nx = SHAPE
    optics = pd.DataFrame(
        {"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["g1"], "rlnTomoTiltSeriesPixelSize": [VOXEL]}
    )
    parts = pd.DataFrame(
        {
            "rlnTomoName": table["tomo"],
            "rlnCenteredCoordinateXAngst": table["x"] - nx * VOXEL / 2,
            "rlnCenteredCoordinateYAngst": table["y"] - ny * VOXEL / 2,
            "rlnCenteredCoordinateZAngst": table["z"] - nz * VOXEL / 2,
            "rlnOpticsGroup": 1,
            "rlnClassNumber": classes,
        }
    )
    starfile.write({"optics": optics, "particles": parts}, path)
    return path


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    tomos = tmp_path / "tomos"
    write_mrc(tomos / "TS_01.mrc", tomogram_data(0))
    write_ome_zarr(tomos / "TS_02.zarr", tomogram_data(1))
    table = particles_table({"TS_01": SHAPE, "TS_02": SHAPE}, per_tomo=6)
    coords = tmp_path / "coords.csv"
    table.rename(columns={"x": "x_angst", "y": "y_angst", "z": "z_angst"}).to_csv(
        coords, index=False
    )
    proj = tmp_path / "proj"
    r = run(
        "select",
        "--tomograms",
        tomos,
        "--coords",
        coords,
        "--box",
        16,
        "--budget",
        2,
        "--project",
        proj,
        *FAST_ARGS,
    )
    assert r.exit_code == 0, r.output
    return proj, table


def test_relion5_class_numbers_import_by_coordinate_with_class_names(
    project: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    proj, table = project
    rows = table.iloc[[0, 3, 7, 10]].copy()
    rows["x"] += 4.0  # refined positions: within two voxels (20 Å) of the pool's
    rows["z"] -= 6.0
    star = relion5_classes(tmp_path / "run_data.star", rows, [1, 2, 2, 1])
    r = run("label", "import", star, "--project", proj, "--class-names", "1=ribosome,2=empty")
    assert r.exit_code == 0, r.output
    assert "4 rows matched by coordinate" in r.output
    with Project(proj, readonly=True) as p:
        assert p.label_map() == {
            "TS_01:000000": "ribosome",
            "TS_01:000003": "empty",
            "TS_02:000001": "empty",
            "TS_02:000004": "ribosome",
        }


def test_far_coordinates_are_one_line_and_nothing_imported(
    project: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    proj, table = project
    rows = table.iloc[[0, 1]].copy()
    rows.loc[rows.index[1], "y"] += 300.0
    star = relion5_classes(tmp_path / "far.star", rows, [1, 2])
    r = run("label", "import", star, "--project", proj, "--class-names", "1=a,2=b")
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "1 match no pool item" in lines[0]
    no_name = run("label", "import", star, "--project", proj, "--class-names", "1=a")
    assert no_name.exit_code == 2 and "with no class name" in no_name.output
    with Project(proj, readonly=True) as p:
        assert p.label_map() == {}


def test_cryoal_picks_star_imports_by_id(project: tuple[Path, pd.DataFrame]) -> None:
    proj, _ = project
    star = proj / "picks" / "round-001.star"
    blocks = starfile.read(star, always_dict=True)
    blocks["particles"]["cryoalLabel"] = ["ribosome", ""]
    filled = star.with_name("filled.star")
    starfile.write(blocks, filled)
    r = run("label", "import", filled, "--project", proj)
    assert r.exit_code == 0, r.output
    assert "1 rows matched by id" in r.output
    with Project(proj, readonly=True) as p:
        assert p.label_map() == {blocks["particles"]["cryoalId"][0]: "ribosome"}


def test_copick_picks_import_by_coordinate_object_is_the_class(
    project: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    proj, table = project
    picks = table.iloc[[2, 8]].copy()
    picks["y"] += 5.0
    config = write_copick_project(tmp_path / "cp", picks=picks, object_name="proteasome")
    r = run("label", "import", config, "--project", proj, "--user-id", "expert")
    assert r.exit_code == 0, r.output
    with Project(proj, readonly=True) as p:
        assert p.label_map() == {"TS_01:000002": "proteasome", "TS_02:000002": "proteasome"}


def test_export_of_a_tomogram_project_is_relion5_and_imports_back(
    project: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    proj, table = project
    rows = table.iloc[[1, 4, 9]]
    star = relion5_classes(tmp_path / "c.star", rows, [2, 1, 2])
    assert (
        run("label", "import", star, "--project", proj, "--class-names", "1=a,2=b").exit_code == 0
    )
    out = tmp_path / "labels.star"
    r = run("label", "export", "--project", proj, "--out", out)
    assert r.exit_code == 0, r.output
    p = starfile.read(out, always_dict=True)["particles"]
    assert p["cryoalId"].tolist() == rows["id"].tolist()
    assert p["cryoalLabel"].tolist() == ["b", "a", "b"]
    assert p["rlnClassNumber"].tolist() == [2, 1, 2]
    x = p["rlnCenteredCoordinateXAngst"].to_numpy() + SHAPE[2] * VOXEL / 2
    assert x.tolist() == pytest.approx(rows["x"].tolist())
    csv_out = tmp_path / "labels.csv"
    assert run("label", "export", "--project", proj, "--out", csv_out).exit_code == 0
    assert list(pd.read_csv(csv_out).columns[:6]) == ["id", "tomo", "x", "y", "z", "label"]
    again = run("label", "import", out, "--project", proj)
    assert again.exit_code == 0, again.output
    assert "0 added, 3 unchanged" in again.output


def test_export_writes_relion4_pixels_on_request_read_back_by_starfile_and_us(
    project: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    from cryoal.io import read_particles

    proj, table = project
    rows = table.iloc[[0, 5, 11]]
    star = relion5_classes(tmp_path / "c.star", rows, [1, 2, 1])
    assert (
        run("label", "import", star, "--project", proj, "--class-names", "1=a,2=b").exit_code == 0
    )
    both = tmp_path / "both.star"
    r = run("label", "export", "--project", proj, "--out", both, "--coordinates", "both")
    assert r.exit_code == 0, r.output
    p = starfile.read(both, always_dict=True)["particles"]
    for a, n in zip("XYZ", SHAPE[::-1], strict=True):
        want = rows[a.lower()].to_numpy()
        np.testing.assert_allclose(p[f"rlnCoordinate{a}"].to_numpy() * VOXEL, want, atol=1e-3)
        np.testing.assert_allclose(
            p[f"rlnCenteredCoordinate{a}Angst"].to_numpy() + n * VOXEL / 2, want, atol=1e-3
        )
    r4 = tmp_path / "r4.star"
    r = run("label", "export", "--project", proj, "--out", r4, "--coordinates", "relion4")
    assert r.exit_code == 0, r.output
    assert "rlnCenteredCoordinateXAngst" not in starfile.read(r4, always_dict=True)["particles"]
    back = read_particles(r4)  # pixel size from the optics block
    assert back.source == "relion4" and back.tomograms == ["TS_01", "TS_02"]
    np.testing.assert_allclose(back.coordinates(), rows[["x", "y", "z"]].to_numpy(), atol=1e-3)
    assert back.table["cryoalLabel"].tolist() == ["a", "b", "a"]
    assert starfile.read(r4, always_dict=True)["particles"]["rlnClassNumber"].tolist() == [1, 2, 1]
    again = run("label", "import", r4, "--project", proj)  # by id
    assert again.exit_code == 0 and "0 added, 3 unchanged" in again.output


def test_export_into_copick_object_is_the_label_read_back_by_copick(
    project: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    import copick

    proj, table = project
    rows = table.iloc[[0, 3, 7, 10]]
    star = relion5_classes(tmp_path / "c.star", rows, [1, 2, 2, 1])
    names = "1=ribosome,2=proteasome"
    assert run("label", "import", star, "--project", proj, "--class-names", names).exit_code == 0
    config = write_copick_project(tmp_path / "cp")  # same runs, no picks yet
    r = run("label", "export", "--project", proj, "--copick", config)
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == [
        "copick: 4 picks of 2 object(s) (proteasome, ribosome) as user cryoal / session labels "
        f"in {config}"
    ]
    root = copick.from_file(str(config))
    truth = rows.assign(label=["ribosome", "proteasome", "proteasome", "ribosome"])
    for (tomo, obj), want in truth.groupby(["tomo", "label"]):
        (picks,) = root.get_run(tomo).get_picks(
            object_name=obj, user_id="cryoal", session_id="labels"
        )
        pts, _ = picks.numpy()
        np.testing.assert_allclose(pts, want[["x", "y", "z"]].to_numpy(), atol=1e-3)
        assert picks.scores().tolist() == [1.0] * len(want)
    # and it imports back by coordinate with the object as the class
    again = run("label", "import", config, "--project", proj, "--user-id", "cryoal")
    assert again.exit_code == 0, again.output
    assert "0 added, 4 unchanged" in again.output


def test_export_errors_are_one_line_and_write_nothing(
    project: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    import copick

    proj, table = project
    star = relion5_classes(tmp_path / "c.star", table.iloc[[0, 1]], [1, 2])
    assert (
        run("label", "import", star, "--project", proj, "--class-names", "1=a,2=b").exit_code == 0
    )
    config = write_copick_project(tmp_path / "cp")
    out = tmp_path / "labels.star"
    r = run("label", "export", "--project", proj, "--copick", config, "--out", out)
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ")
    assert "object(s) a, b are not pickable objects of the project" in lines[0]
    assert not out.exists()
    root = copick.from_file(str(config))
    assert not any(p.user_id == "cryoal" for run_ in root.runs for p in run_.picks)
    r = run("label", "export", "--project", proj)
    assert r.exit_code == 2 and "give --out FILE, --copick CONFIG or both" in r.output

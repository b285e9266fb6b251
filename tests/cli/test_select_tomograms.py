"""``cryoal select --tomograms DIR --coords particles.star``: rounds on boxes cut on the fly."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
from _simpool import FAST_ARGS, cryoal_subprocess
from click.testing import CliRunner, Result
from cryoal.cli.main import cli

from cryoal.active import Project
from cryoal.io import read_table

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

N_PER_TOMO = 12


def relion5_star(path: Path, table: pd.DataFrame, shape: tuple[int, int, int] = SHAPE) -> Path:
    """A RELION 5 particles.star (optics + particles, centred Å) written with starfile."""
    nz, ny, nx = shape
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnTomoTiltSeriesPixelSize": [VOXEL],
        }
    )
    particles = pd.DataFrame(
        {
            "rlnTomoName": table["tomo"],
            "rlnCenteredCoordinateXAngst": table["x"] - nx * VOXEL / 2,
            "rlnCenteredCoordinateYAngst": table["y"] - ny * VOXEL / 2,
            "rlnCenteredCoordinateZAngst": table["z"] - nz * VOXEL / 2,
            "rlnOpticsGroup": 1,
        }
    )
    starfile.write({"optics": optics, "particles": particles}, path)
    return path


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path, pd.DataFrame]:
    tomos = tmp_path / "tomos"
    write_mrc(tomos / "TS_01.mrc", tomogram_data(0))
    write_ome_zarr(tomos / "TS_02.zarr", tomogram_data(1))
    table = particles_table({"TS_01": SHAPE, "TS_02": SHAPE}, per_tomo=N_PER_TOMO)
    return tomos, relion5_star(tmp_path / "particles.star", table), table


def select(*args: object) -> Result:
    return CliRunner().invoke(cli, ["select", *(str(a) for a in args), *FAST_ARGS])


def test_a_round_on_tomograms_writes_relion5_picks_and_resumes(
    data: tuple[Path, Path, pd.DataFrame], tmp_path: Path
) -> None:
    tomos, star, table = data
    proj = tmp_path / "proj"
    args = ["--tomograms", tomos, "--coords", star, "--box", 16, "--budget", 4, "--project", proj]
    r1 = select(*args, "--out", tmp_path / "picks.star")
    assert r1.exit_code == 0, r1.output
    assert "pool 24 volumes, 24 unlabelled; picked 4" in r1.output
    assert (
        f"cryoal select --tomograms {tomos} --coords {star} --box 16 --project {proj}" in r1.output
    )
    picks_csv = read_table(proj / "picks" / "round-001.csv")
    assert len(picks_csv) == 4
    assert set(picks_csv["id"]) <= set(table["id"])
    assert list(picks_csv.columns[:6]) == ["id", "path", "tomo", "x", "y", "z"]
    truth = table.set_index("id")
    for _, row in picks_csv.iterrows():
        assert row["x"] == pytest.approx(truth.loc[row["id"], "x"])
        assert row["tomo"] == truth.loc[row["id"], "tomo"]
    for star_out in (proj / "picks" / "round-001.star", tmp_path / "picks.star"):
        blocks = starfile.read(star_out, always_dict=True)
        assert set(blocks) == {"optics", "particles"}
        p = blocks["particles"]
        assert p["cryoalId"].tolist() == picks_csv["id"].tolist()
        x = p["rlnCenteredCoordinateXAngst"].to_numpy() + SHAPE[2] * VOXEL / 2
        np.testing.assert_allclose(x, picks_csv["x"].to_numpy())
    assert (proj / "gallery" / "round-001.png").exists()
    assert (proj / "pool-particles.csv").exists()
    with Project(proj, readonly=True) as p:
        assert p.pool_ids() == table["id"].tolist()
        assert p.get_meta("box") == [16, 16, 16]
        assert p.get_meta("voxel_size") == VOXEL
        first = [pk.id for pk in p.picks(1)]

    again = select(*args)  # same command: the complete round is shown again
    assert again.exit_code == 0, again.output
    assert "round 1 is complete and no label was added since" in again.output
    with Project(proj, readonly=True) as p:
        assert [pk.id for pk in p.picks(1)] == first and len(p.rounds()) == 1

    labelled = picks_csv.copy()
    labelled["label"] = ["a", "b", "a", "b"]
    labelled.to_csv(tmp_path / "labelled.csv", index=False)
    imp = CliRunner().invoke(
        cli, ["label", "import", str(tmp_path / "labelled.csv"), "--project", str(proj)]
    )
    assert imp.exit_code == 0, imp.output
    r2 = select(*args)
    assert r2.exit_code == 0, r2.output
    assert "round 2: trained on 4 labels" in r2.output
    p2 = starfile.read(proj / "picks" / "round-002.star", always_dict=True)["particles"]
    assert set(p2["rlnClassNumber"]) <= {1, 2}  # predicted class, 1-based in (a, b)
    assert not set(p2["cryoalId"]) & set(labelled["id"])


def test_moved_coordinates_are_refused_on_resume(
    data: tuple[Path, Path, pd.DataFrame], tmp_path: Path
) -> None:
    tomos, star, table = data
    proj = tmp_path / "proj"
    args = ["--tomograms", tomos, "--coords", star, "--box", 16, "--budget", 2, "--project", proj]
    assert select(*args).exit_code == 0
    moved = table.copy()
    moved.loc[3, "x"] += 20.0
    relion5_star(star, moved)
    r = select(*args)
    assert r.exit_code == 2
    assert (
        "1 volume(s) changed on disk since they were registered (first: TS_01:000003)" in r.output
    )


def _error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_bad_input_is_one_line_exit_2_and_nothing_written(
    data: tuple[Path, Path, pd.DataFrame], tmp_path: Path
) -> None:
    tomos, star, table = data
    proj = tmp_path / "proj"

    def run(coords: Path, *extra: object, where: Path = tomos) -> str:
        line = _error(
            select("--tomograms", where, "--coords", coords, "--box", 16, "--project", proj, *extra)
        )
        assert not proj.exists()
        return line

    missing = table.copy()
    missing.loc[0, "tomo"] = "TS_07"
    assert "'TS_07'" in run(relion5_star(tmp_path / "missing.star", missing))
    outside = table.copy()
    outside.loc[5, "z"] = SHAPE[0] * VOXEL * 3
    assert "lie outside their tomogram" in run(relion5_star(tmp_path / "outside.star", outside))
    empty = tmp_path / "empty.star"
    empty.write_text("")
    run(empty)
    broken = tmp_path / "broken_tomos"
    broken.mkdir()
    (broken / "TS_01.zarr").mkdir()
    (broken / "TS_01.zarr" / ".zgroup").write_text("{broken")
    assert "TS_01.zarr" in run(star, where=broken)
    mixed = tmp_path / "mixed"
    write_mrc(mixed / "TS_01.mrc", tomogram_data(0), VOXEL)
    write_mrc(mixed / "TS_02.mrc", tomogram_data(1), 2 * VOXEL)
    assert "different voxel sizes" in run(star, where=mixed)
    csv = tmp_path / "pixels.csv"
    px = table.copy()
    for a in "xyz":
        px[a] = px[a] / VOXEL  # pixel values, declared as Å
    px.to_csv(csv, index=False)
    assert "look like pixel coordinates read as Å" in run(csv, "--units", "angstrom")
    # units not stated: the message names the command-line option
    assert "pass --units angstrom or --units pixel" in run(csv)


def test_usage_errors() -> None:
    r = CliRunner().invoke(cli, ["select", "--coords", "x.star"])
    assert r.exit_code == 2 and "--volumes (or --tomograms/--copick) is required" in r.output
    r = CliRunner().invoke(cli, ["select", "--volumes", "v/", "--coords", "x.star"])
    assert r.exit_code == 2 and "--coords needs --tomograms" in r.output
    r = CliRunner().invoke(cli, ["select", "--volumes", "v/", "--tomograms", "t/", "--coords", "x"])
    assert r.exit_code == 2 and "either --volumes or --tomograms/--copick, not both" in r.output
    r = CliRunner().invoke(cli, ["select", "--tomograms", "t/"])
    assert r.exit_code == 2 and "--tomograms needs --coords" in r.output
    r = CliRunner().invoke(cli, ["select", "--copick", "c.json"])
    assert r.exit_code == 2 and "--copick needs --object" in r.output


def test_a_round_on_a_copick_project(tmp_path: Path) -> None:
    table = particles_table({"TS_01": SHAPE, "TS_02": SHAPE}, per_tomo=5)
    config = write_copick_project(tmp_path / "cp", picks=table)
    proj = tmp_path / "proj"
    args = ["--copick", config, "--object", "ribosome", "--user-id", "expert", "--box", 16]
    r = select(*args, "--voxel-spacing", VOXEL, "--budget", 3, "--project", proj)
    assert r.exit_code == 0, r.output
    assert "pool 10 volumes, 10 unlabelled; picked 3" in r.output
    assert (
        f"--copick {config} --object ribosome --voxel-spacing {VOXEL} --user-id expert" in r.output
    )
    with Project(proj, readonly=True) as p:
        ids = p.pool_ids()
    assert ids == [f"TS_0{t}:{i:06d}" for t in (1, 2) for i in range(5)]
    picks = read_table(proj / "picks" / "round-001.csv")
    truth = table.set_index("id")
    for _, row in picks.iterrows():
        assert row["z"] == pytest.approx(truth.loc[row["id"], "z"])
    again = select(
        *args, "--voxel-spacing", VOXEL, "--budget", 3, "--project", proj, "--copick-picks"
    )
    assert again.exit_code == 0, again.output
    assert "copick:  3 picks as ribosome / user cryoal / session round-001" in again.output
    import copick

    run = copick.from_file(str(config))
    written = {
        (r.name, round(pt.location.x, 3), round(pt.location.z, 3))
        for r in run.runs
        for pk in r.get_picks(object_name="ribosome", user_id="cryoal", session_id="round-001")
        for pt in pk.points
    }
    want = {(row["tomo"], round(row["x"], 3), round(row["z"], 3)) for _, row in picks.iterrows()}
    assert written == want
    # without --user-id the pool is every user's picks but cryoal's own: unchanged
    same = select("--copick", config, "--object", "ribosome", "--box", 16, "--budget", 3,
                  "--voxel-spacing", VOXEL, "--project", proj)  # fmt: skip
    assert same.exit_code == 0, same.output
    assert "round 1 is complete and no label was added since" in same.output
    none = select(
        "--copick", config, "--object", "proteasome", "--box", 16, "--project", tmp_path / "p2"
    )
    assert none.exit_code == 2 and "Error:" in none.output
    assert not (tmp_path / "p2").exists()


def test_killed_tomogram_round_resumes_to_the_same_picks(
    data: tuple[Path, Path, pd.DataFrame], tmp_path: Path
) -> None:
    tomos, star, _ = data
    proj, ref = tmp_path / "killed", tmp_path / "reference"

    def args(p: Path) -> list[str]:
        return [
            "select", "--tomograms", str(tomos), "--coords", str(star), "--box", "16",
            "--budget", "3", "--project", str(p), *FAST_ARGS,
        ]  # fmt: skip

    done = cryoal_subprocess(args(ref))
    assert done.returncode == 0, done.stderr
    killed = cryoal_subprocess(args(proj), env={"CRYOAL_TEST_KILL_AT": "picks"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not (proj / "picks" / "round-001.star").exists()
    resumed = cryoal_subprocess(args(proj))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed round 1 from step 'scored'" in resumed.stdout
    pd.testing.assert_frame_equal(
        read_table(proj / "picks" / "round-001.csv").drop(columns="path"),
        read_table(ref / "picks" / "round-001.csv").drop(columns="path"),
    )
    a = starfile.read(proj / "picks" / "round-001.star", always_dict=True)["particles"]
    b = starfile.read(ref / "picks" / "round-001.star", always_dict=True)["particles"]
    pd.testing.assert_frame_equal(a, b)

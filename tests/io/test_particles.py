"""Particle lists: RELION 5/4 STAR, CSV — read against files written with starfile/pandas directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from cryoal.errors import InvalidLabelsError, InvalidParticlesError
from cryoal.io import ParticleList, read_particles, read_relion4, read_relion5
from cryoal.io.particles import make_particle_ids, sniff_particle_format


def _optics(ps: float = 2.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnTomoTiltSeriesPixelSize": [ps],
        }
    )


def _relion5(path: Path, parts: dict[str, list[object]], ps: float = 2.0) -> Path:
    df = pd.DataFrame(parts)
    if "rlnOpticsGroup" not in df.columns:
        df["rlnOpticsGroup"] = 1
    starfile.write({"optics": _optics(ps), "particles": df}, path)
    return path


def _tomograms_star(path: Path, rows: list[tuple[str, int, int, int, float, float]]) -> Path:
    df = pd.DataFrame(
        rows,
        columns=[
            "rlnTomoName",
            "rlnTomoSizeX",
            "rlnTomoSizeY",
            "rlnTomoSizeZ",
            "rlnTomoTiltSeriesPixelSize",
            "rlnTomoTomogramBinning",
        ],
    )
    starfile.write({"global": df}, path)
    return path


# ---------------------------------------------------------------- centre convention


def test_relion5_centre_convention_against_a_hand_made_case(tmp_path: Path) -> None:
    # Naive reference: a tomogram of nx voxels has its RELION 5 centre at nx / 2 in
    # 0-based voxel coordinates (float division): nx = 30 -> voxel 15, nx = 31 -> 15.5.
    # A particle at centred 0 Å sits there; one at +2 Å (1 voxel of 2 Å) one voxel on.
    path = _relion5(
        tmp_path / "p.star",
        {
            "rlnTomoName": ["even", "even", "odd"],
            "rlnCenteredCoordinateXAngst": [0.0, 2.0, 0.0],
            "rlnCenteredCoordinateYAngst": [0.0, 0.0, -3.0],
            "rlnCenteredCoordinateZAngst": [0.0, 0.0, 1.0],
        },
    )
    shapes = {"even": (10, 20, 30), "odd": (11, 21, 31)}  # (nz, ny, nx)
    pl = read_relion5(path, tomogram_shapes=shapes, pixel_size=2.0)
    px = pl.coordinates("pixel")
    expected_px = np.array([[15.0, 10.0, 5.0], [16.0, 10.0, 5.0], [15.5, 10.5 - 1.5, 5.5 + 0.5]])
    np.testing.assert_allclose(px, expected_px, atol=1e-9)
    np.testing.assert_allclose(pl.coordinates(), expected_px * 2.0, atol=1e-9)
    assert pl.ids == ["even:000000", "even:000001", "odd:000000"]
    assert pl.source == "relion5"
    assert pl.pixel_size == {"even": 2.0, "odd": 2.0}
    assert pl.centres["odd"] == (31.0, 21.0, 11.0)


def test_relion5_tomograms_star_gives_sizes_and_binned_pixel_size(tmp_path: Path) -> None:
    tomos = _tomograms_star(tmp_path / "tomograms.star", [("TS_01", 4092, 4092, 1392, 2.39, 6.0)])
    path = _relion5(
        tmp_path / "p.star",
        {
            "rlnTomoName": ["TS_01"],
            "rlnCenteredCoordinateXAngst": [100.0],
            "rlnCenteredCoordinateYAngst": [-50.0],
            "rlnCenteredCoordinateZAngst": [0.0],
        },
        ps=2.39,
    )
    pl = read_particles(path, tomograms=tomos)
    half = np.array([4092, 4092, 1392]) * 2.39 / 2
    np.testing.assert_allclose(pl.coordinates()[0], half + [100.0, -50.0, 0.0], atol=1e-9)
    assert pl.pixel_size["TS_01"] == pytest.approx(2.39 * 6)
    # in voxels of the bin-6 tomogram (682 x 682 x 232), the centre is at 341, 341, 116
    np.testing.assert_allclose(
        pl.coordinates("pixel")[0], [341 + 100 / 14.34, 341 - 50 / 14.34, 116], atol=1e-9
    )


def test_relion5_origin_shift_subtracted_and_rotated_by_subtomogram_angles(tmp_path: Path) -> None:
    path = _relion5(
        tmp_path / "p.star",
        {
            "rlnTomoName": ["t", "t"],
            "rlnCenteredCoordinateXAngst": [0.0, 0.0],
            "rlnCenteredCoordinateYAngst": [0.0, 0.0],
            "rlnCenteredCoordinateZAngst": [0.0, 0.0],
            "rlnOriginXAngst": [4.0, 4.0],
            "rlnOriginYAngst": [0.0, 0.0],
            "rlnOriginZAngst": [0.0, 0.0],
            # second particle's subtomogram frame: +90 deg about z (rot=90)
            "rlnTomoSubtomogramRot": [0.0, 90.0],
            "rlnTomoSubtomogramTilt": [0.0, 0.0],
            "rlnTomoSubtomogramPsi": [0.0, 0.0],
            "rlnAngleRot": [0.0, 0.0],
            "rlnAngleTilt": [0.0, 0.0],
            "rlnAnglePsi": [0.0, 0.0],
        },
    )
    pl = read_relion5(path, tomogram_shapes={"t": (10, 10, 10)}, pixel_size=2.0)
    xyz = pl.coordinates()
    np.testing.assert_allclose(xyz[0], [10.0 - 4.0, 10.0, 10.0], atol=1e-9)
    # RELION's matrix for rot=90 is Rz(90)^T = Rz(-90): A_sub @ (4, 0, 0) = (0, -4, 0)
    np.testing.assert_allclose(xyz[1], [10.0, 10.0 + 4.0, 10.0], atol=1e-9)
    # angles composed into the tomogram frame (A_sub @ A_particle, A_particle = I)
    t = pl.table
    assert t["tilt"][1] == pytest.approx(0.0, abs=1e-9)
    assert (t["rot"][1] + t["psi"][1]) % 360 == pytest.approx(90.0)
    unshifted = read_relion5(
        path, tomogram_shapes={"t": (10, 10, 10)}, pixel_size=2.0, apply_shifts=False
    )
    np.testing.assert_allclose(unshifted.coordinates(), [[10.0, 10.0, 10.0]] * 2)


def test_relion4_and_relion5_forms_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n, ps, shape = 7, 3.5, (40, 64, 96)
    px = rng.uniform(0, 40, size=(n, 3))
    tomo = ["A"] * 4 + ["B"] * 3
    centre_px = np.array([shape[2], shape[1], shape[0]]) / 2
    r5 = _relion5(
        tmp_path / "r5.star",
        {
            "rlnTomoName": tomo,
            **{
                f"rlnCenteredCoordinate{a}Angst": list((px[:, i] - centre_px[i]) * ps)
                for i, a in enumerate("XYZ")
            },
        },
        ps=ps,
    )
    r4 = _relion5(
        tmp_path / "r4.star",
        {"rlnTomoName": tomo, **{f"rlnCoordinate{a}": list(px[:, i]) for i, a in enumerate("XYZ")}},
        ps=ps,
    )
    a = read_particles(r5, tomogram_shapes={"A": shape, "B": shape}, pixel_size=ps)
    b = read_particles(r4)
    assert (a.source, b.source) == ("relion5", "relion4")
    np.testing.assert_allclose(a.coordinates(), b.coordinates(), atol=1e-4)
    np.testing.assert_allclose(b.coordinates("pixel"), px, atol=1e-5)
    assert a.ids == b.ids == make_particle_ids(tomo)


def test_relion4_pixel_shifts_and_pytom_columns(tmp_path: Path) -> None:
    # pytom-match-pick (non-RELION-5 mode): rlnMicrographName + rlnDetectorPixelSize per row
    df = pd.DataFrame(
        {
            "rlnCoordinateX": [10.0, 20.0],
            "rlnCoordinateY": [5.0, 6.0],
            "rlnCoordinateZ": [1.0, 2.0],
            "rlnOriginX": [1.0, 0.0],
            "rlnLCCmax": [0.3, 0.2],
            "rlnDetectorPixelSize": [10.0, 10.0],
            "rlnMicrographName": ["tomo_1", "tomo_1"],
        }
    )
    starfile.write({"particles": df}, tmp_path / "pytom.star")
    pl = read_particles(tmp_path / "pytom.star")
    np.testing.assert_allclose(pl.coordinates(), [[90.0, 50.0, 10.0], [200.0, 60.0, 20.0]])
    assert pl.tomograms == ["tomo_1"]
    assert list(pl.table["rlnLCCmax"]) == [0.3, 0.2]  # source columns kept


# ---------------------------------------------------------------- CSV


def test_csv_pixel_and_angstrom_units(tmp_path: Path) -> None:
    (tmp_path / "px.csv").write_text("tomo,x,y,z,label\nt1,1,2,3,ribosome\nt1,4,5,6,\nt2,0,0,0,x\n")
    pl = read_particles(tmp_path / "px.csv", units="pixel", pixel_size={"t1": 2.0, "t2": 4.0})
    np.testing.assert_allclose(pl.coordinates(), [[2, 4, 6], [8, 10, 12], [0, 0, 0]])
    assert list(pl.table["label"]) == ["ribosome", None, "x"]
    (tmp_path / "a.csv").write_text("tomogram,x_angst,y_angst,z_angst,id\nt1,1.5,2,3,p1\n")
    pl = read_particles(tmp_path / "a.csv")
    assert pl.ids == ["p1"] and pl.coordinates()[0].tolist() == [1.5, 2.0, 3.0]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("content", "kwargs", "match"),
    [
        ("tomo,x,y,z\nt,1,2,3\n", {}, "units of x, y, z are not stated"),
        ("tomo,x,y\nt,1,2\n", {"units": "angstrom"}, "missing column z"),
        ("x,y,z\n1,2,3\n", {"units": "angstrom"}, "missing tomogram column"),
        (
            "tomo,x,y,z\nt,1,,3\n",
            {"units": "angstrom"},
            r"missing or non-numeric y: row 1 \(empty\)",
        ),
        ("tomo,x,y,z\nt,1,2,3\n", {"units": "pixel"}, "in pixels with no pixel size"),
        ("tomo,x_px,y_px,z_px\nt,1,2,3\n", {"units": "angstrom"}, "contradicts"),
        (
            "tomo,x,y,z,pixel_size\nt,1,2,3,2\nt,1,2,3,3\n",
            {"units": "pixel"},
            "different pixel sizes",
        ),
        ("", {"units": "angstrom"}, "empty file"),
        ("tomo,x,y,z\n", {"units": "angstrom"}, "no particles"),
        ("tomo,x,y,z,id\nt,1,2,3,a\nt,1,2,3,a\n", {"units": "angstrom"}, "repeat an earlier id"),
    ],
)
def test_csv_bad_input(tmp_path: Path, content: str, kwargs: dict[str, object], match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(InvalidParticlesError, match=match) as info:
        read_particles(path, **kwargs)  # type: ignore[arg-type]
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_relion_bad_input(tmp_path: Path) -> None:
    ok = {
        "rlnTomoName": ["t"],
        "rlnCenteredCoordinateXAngst": [0.0],
        "rlnCenteredCoordinateYAngst": [0.0],
        "rlnCenteredCoordinateZAngst": [0.0],
    }
    path = _relion5(tmp_path / "p.star", ok)
    with pytest.raises(InvalidParticlesError, match=r"size\s+of tomogram\(s\) t is unknown"):
        read_relion5(path)
    with pytest.raises(InvalidParticlesError, match="no pixel size"):
        read_relion5(path, tomogram_shapes={"t": (4, 4, 4)})
    nan = _relion5(tmp_path / "nan.star", {**ok, "rlnCenteredCoordinateYAngst": [float("nan")]})
    with pytest.raises(
        InvalidParticlesError, match=r"non-numeric rlnCenteredCoordinateYAngst: row 1 \(empty\)"
    ):
        read_relion5(nan, tomogram_shapes={"t": (4, 4, 4)}, pixel_size=1.0)
    no_tomo = _relion5(tmp_path / "nt.star", {k: v for k, v in ok.items() if k != "rlnTomoName"})
    with pytest.raises(InvalidParticlesError, match="missing column.*rlnTomoName"):
        read_relion5(no_tomo)
    mixed = tmp_path / "mixed.star"
    starfile.write(
        {
            "optics": pd.DataFrame(
                {"rlnOpticsGroup": [1, 2], "rlnTomoTiltSeriesPixelSize": [1.0, 2.0]}
            ),
            "particles": pd.DataFrame(
                {
                    "rlnTomoName": ["t", "t"],
                    "rlnCoordinateX": [1.0, 2.0],
                    "rlnCoordinateY": [1.0, 2.0],
                    "rlnCoordinateZ": [1.0, 2.0],
                    "rlnOpticsGroup": [1, 2],
                }
            ),
        },
        mixed,
    )
    with pytest.raises(InvalidParticlesError, match="'t' has particles with different pixel sizes"):
        read_relion4(mixed)
    no_ps = tmp_path / "nops.star"
    starfile.write(
        pd.DataFrame(
            {
                "rlnTomoName": ["t"],
                "rlnCoordinateX": [1.0],
                "rlnCoordinateY": [1.0],
                "rlnCoordinateZ": [1.0],
            }
        ),
        no_ps,
    )
    with pytest.raises(InvalidParticlesError, match="pass pixel_size"):
        read_relion4(no_ps)
    assert read_relion4(no_ps, pixel_size=2.0).coordinates()[0].tolist() == [2.0, 2.0, 2.0]
    empty = tmp_path / "empty.star"
    empty.write_text("")
    with pytest.raises(InvalidParticlesError, match="empty file"):
        read_particles(empty)


def test_unknown_format_and_sniffing(tmp_path: Path) -> None:
    (tmp_path / "p.xyz").write_text("1 2 3\n")
    with pytest.raises(InvalidParticlesError, match="unknown particle format"):
        read_particles(tmp_path / "p.xyz")
    with pytest.raises(InvalidParticlesError, match="unknown particle format 'pdb'"):
        read_particles(tmp_path / "p.xyz", fmt="pdb")
    with pytest.raises(InvalidParticlesError, match="file not found"):
        read_particles(tmp_path / "missing.star")
    starfile.write(pd.DataFrame({"rlnImageName": ["a.mrc"]}), tmp_path / "img.star")
    with pytest.raises(InvalidParticlesError, match="neither rlnCenteredCoordinateXAngst"):
        sniff_particle_format(tmp_path / "img.star")
    assert issubclass(InvalidParticlesError, InvalidLabelsError)


def test_particle_list_helpers(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("tomo,x,y,z\na,1,2,3\nb,4,5,6\na,7,8,9\n")
    pl = read_particles(tmp_path / "p.csv", units="angstrom")
    assert isinstance(pl, ParticleList) and len(pl) == 3
    assert pl.ids == ["a:000000", "b:000000", "a:000001"]
    sub = pl.for_tomogram("a")
    assert sub.ids == ["a:000000", "a:000001"]
    with pytest.raises(InvalidParticlesError, match="pixel size unknown"):
        pl.coordinates("pixel")


def test_optimisation_set_follows_to_particles_and_tomograms(tmp_path: Path) -> None:
    tomos = _tomograms_star(tmp_path / "tomograms.star", [("TS_1", 100, 80, 40, 2.0, 4.0)])
    _relion5(
        tmp_path / "particles.star",
        {
            "rlnTomoName": ["TS_1"],
            "rlnCenteredCoordinateXAngst": [10.0],
            "rlnCenteredCoordinateYAngst": [0.0],
            "rlnCenteredCoordinateZAngst": [-10.0],
        },
    )
    opt = tmp_path / "optimisation_set.star"
    starfile.write(
        {
            "": pd.DataFrame(
                {"rlnTomoParticlesFile": ["particles.star"], "rlnTomoTomogramsFile": [tomos.name]}
            )
        },
        opt,
    )
    assert sniff_particle_format(opt) == "relion5"
    pl = read_particles(opt)
    np.testing.assert_allclose(pl.coordinates()[0], [100.0 + 10.0, 80.0, 40.0 - 10.0])
    assert pl.pixel_size == {"TS_1": 8.0}


def test_tomograms_star_and_option_errors(tmp_path: Path) -> None:
    bad = tmp_path / "tomograms.star"
    starfile.write({"global": pd.DataFrame({"rlnTomoName": ["t"], "rlnTomoSizeX": [10]})}, bad)
    with pytest.raises(InvalidParticlesError, match="missing column.*rlnTomoSizeY"):
        read_particles(
            _relion5(
                tmp_path / "p.star",
                {
                    "rlnTomoName": ["t"],
                    "rlnCenteredCoordinateXAngst": [0.0],
                    "rlnCenteredCoordinateYAngst": [0.0],
                    "rlnCenteredCoordinateZAngst": [0.0],
                },
            ),
            tomograms=bad,
        )
    neg = _tomograms_star(tmp_path / "neg.star", [("t", 10, 10, -1, 1.0, 1.0)])
    with pytest.raises(InvalidParticlesError, match="non-positive size"):
        read_relion5(tmp_path / "p.star", tomograms=neg)
    with pytest.raises(InvalidParticlesError, match="options user_id do not apply to relion5"):
        read_particles(tmp_path / "p.star", user_id="x")
    with pytest.raises(InvalidParticlesError, match="not three positive sizes"):
        read_relion5(tmp_path / "p.star", tomogram_shapes={"t": (10, 10)}, pixel_size=1.0)
    with pytest.raises(InvalidParticlesError, match="positive number of Å"):
        read_relion5(tmp_path / "p.star", tomogram_shapes={"t": (4, 4, 4)}, pixel_size=0.0)


def test_relion5_positions_and_angles_agree_with_copick_conversion(tmp_path: Path) -> None:
    # copick (the field's library) converts RELION particles with its own code
    # (copick.util.formats / copick.util.relion); ours must give the same positions and
    # orientation matrices, subtomogram angles and origin shifts included.
    from copick.util.formats import read_relion_tomograms as copick_tomograms
    from copick.util.formats import relion_coordinates_to_angstrom
    from copick.util.relion import relion_rows_to_poses
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(3)
    n = 12
    cols: dict[str, list[object]] = {"rlnTomoName": ["TS_1"] * 6 + ["TS_2"] * 6}
    for name, lo, hi in (
        ("rlnCenteredCoordinateXAngst", -900, 900),
        ("rlnCenteredCoordinateYAngst", -900, 900),
        ("rlnCenteredCoordinateZAngst", -200, 200),
        ("rlnOriginXAngst", -20, 20),
        ("rlnOriginYAngst", -20, 20),
        ("rlnOriginZAngst", -20, 20),
        ("rlnTomoSubtomogramRot", -180, 180),
        ("rlnTomoSubtomogramTilt", 5, 175),
        ("rlnTomoSubtomogramPsi", -180, 180),
        ("rlnAngleRot", -180, 180),
        ("rlnAngleTilt", 5, 175),
        ("rlnAnglePsi", -180, 180),
    ):
        cols[name] = list(rng.uniform(lo, hi, n))
    star = _relion5(tmp_path / "p.star", cols, ps=1.35)
    tomos = _tomograms_star(
        tmp_path / "tomograms.star",
        [("TS_1", 1000, 800, 201, 1.35, 4.0), ("TS_2", 999, 800, 200, 1.35, 4.0)],
    )
    ours = read_relion5(star, tomograms=tomos)
    data = starfile.read(star, always_dict=True)
    df = data["particles"]
    coords = relion_coordinates_to_angstrom(
        df, voxel_spacing=None, tomograms=copick_tomograms(str(tomos)), optics=data["optics"]
    )
    rotations, offsets = relion_rows_to_poses(df)
    np.testing.assert_allclose(ours.coordinates(), coords - offsets, atol=1e-6)
    mine = Rotation.from_euler(
        "ZYZ", ours.table[["rot", "tilt", "psi"]].to_numpy(), degrees=True
    ).inv()
    np.testing.assert_allclose(mine.as_matrix(), rotations, atol=1e-6)

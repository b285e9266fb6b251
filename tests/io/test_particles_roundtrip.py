"""Particle writers and the copick / Dynamo readers, checked with copick, starfile, dynamotable directly."""

from __future__ import annotations

from pathlib import Path

import copick
import dynamotable
import numpy as np
import pandas as pd
import pytest
import starfile
from copick.models import PickableObject

from cryoal.errors import InvalidParticlesError
from cryoal.io import (
    ParticleList,
    read_copick,
    read_dynamo,
    read_particles,
    write_copick,
    write_csv_particles,
    write_particles,
    write_relion,
)


def _project(tmp_path: Path, objects: tuple[str, ...] = ("ribosome", "proteasome")) -> Path:
    cfg = tmp_path / "copick" / "copick_config.json"
    copick.new_config(
        str(cfg),
        str(tmp_path / "copick" / "overlay"),
        pickable_objects=[
            PickableObject(name=o, is_particle=True, label=i + 1, radius=100.0)
            for i, o in enumerate(objects)
        ],
    )
    return cfg


def _particles(n: int = 9, seed: int = 0) -> ParticleList:
    rng = np.random.default_rng(seed)
    tomos = ["TS_1"] * 5 + ["TS_2"] * (n - 5)
    table = pd.DataFrame(
        {
            "id": [f"{t}:{i:06d}" for i, t in enumerate(tomos)],
            "tomo": tomos,
            "x": rng.uniform(0, 5000, n),
            "y": rng.uniform(0, 5000, n),
            "z": rng.uniform(0, 1500, n),
            "rot": rng.uniform(-180, 180, n),
            "tilt": rng.uniform(5, 175, n),
            "psi": rng.uniform(-180, 180, n),
            "label": ["ribosome", "proteasome"] * (n // 2) + ["ribosome"] * (n % 2),
            "score": rng.uniform(0, 1, n),
            "rank": np.arange(1, n + 1),
        }
    )
    return ParticleList(
        table,
        {"TS_1": 10.0, "TS_2": 10.0},
        "csv",
        {"TS_1": (2560.0, 2560.0, 800.0), "TS_2": (2555.0, 2560.0, 800.0)},
    )


def _relion_matrix(eul: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("ZYZ", eul, degrees=True).inv().as_matrix()


# ---------------------------------------------------------------- RELION


def test_relion5_writer_read_back_by_starfile_and_by_us(tmp_path: Path) -> None:
    pl = _particles()
    out = write_relion(tmp_path / "out.star", pl, class_numbers={"ribosome": 1, "proteasome": 2})
    star = starfile.read(out, always_dict=True)
    assert set(star) == {"optics", "particles"}
    parts = star["particles"]
    centres = np.array([pl.centres[t] for t in pl.table["tomo"]])
    centred = parts[
        [
            "rlnCenteredCoordinateXAngst",
            "rlnCenteredCoordinateYAngst",
            "rlnCenteredCoordinateZAngst",
        ]
    ].to_numpy()
    np.testing.assert_allclose(centred, pl.coordinates() - centres, atol=1e-3)
    assert list(parts["rlnTomoName"]) == list(pl.table["tomo"])
    assert list(parts["rlnClassNumber"]) == [1, 2, 1, 2, 1, 2, 1, 2, 1]
    assert list(parts["cryoalLabel"]) == list(pl.table["label"])
    assert list(parts["cryoalId"]) == pl.ids
    np.testing.assert_allclose(parts["cryoalScore"], pl.table["score"], atol=1e-6)
    assert list(parts["cryoalRank"]) == list(range(1, 10))
    assert float(star["optics"]["rlnTomoTiltSeriesPixelSize"].iloc[0]) == 10.0
    assert "rlnCoordinateX" not in parts.columns
    back = read_particles(
        out, tomogram_shapes={"TS_1": (160, 512, 512), "TS_2": (160, 512, 511)}, pixel_size=10.0
    )
    np.testing.assert_allclose(back.coordinates(), pl.coordinates(), atol=1e-3)
    # orientations survive (compare matrices: Euler triples are not unique)
    np.testing.assert_allclose(
        _relion_matrix(back.table[["rot", "tilt", "psi"]].to_numpy()),
        _relion_matrix(pl.table[["rot", "tilt", "psi"]].to_numpy()),
        atol=1e-5,
    )


def test_relion4_form_agrees_with_relion5_form(tmp_path: Path) -> None:
    pl = _particles()
    both = write_relion(tmp_path / "both.star", pl, coordinates="both")
    r4 = write_particles(tmp_path / "r4.star", pl, fmt="relion4")
    parts = starfile.read(both, always_dict=True)["particles"]
    px = parts[["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]].to_numpy()
    np.testing.assert_allclose(px * 10.0, pl.coordinates(), atol=1e-3)
    a = read_particles(r4)
    assert a.source == "relion4"
    np.testing.assert_allclose(a.coordinates(), pl.coordinates(), atol=1e-3)
    assert a.pixel_size == {"TS_1": 10.0, "TS_2": 10.0}


def test_relion_writer_errors_write_nothing(tmp_path: Path) -> None:
    pl = _particles()
    bare = ParticleList(pl.table, pl.pixel_size, "csv")
    with pytest.raises(InvalidParticlesError, match="need each tomogram's size"):
        write_relion(tmp_path / "x.star", bare)
    with pytest.raises(InvalidParticlesError, match="label missing from class_numbers"):
        write_relion(tmp_path / "x.star", pl, class_numbers={"ribosome": 1})
    nops = ParticleList(pl.table, {}, "csv", pl.centres)
    with pytest.raises(InvalidParticlesError, match="pixel form needs"):
        write_relion(tmp_path / "x.star", nops, coordinates="relion4")
    assert not list(tmp_path.iterdir())
    # with shapes given explicitly it works
    write_relion(tmp_path / "x.star", bare, tomogram_shapes={"TS_1": (1, 2, 3), "TS_2": (1, 2, 3)})
    parts = starfile.read(tmp_path / "x.star", always_dict=True)["particles"]
    np.testing.assert_allclose(
        parts["rlnCenteredCoordinateXAngst"], pl.table["x"] - 15.0, atol=1e-3
    )


# ---------------------------------------------------------------- CSV


def test_csv_writer_roundtrip(tmp_path: Path) -> None:
    pl = _particles()
    out = write_csv_particles(tmp_path / "p.csv", pl)
    raw = pd.read_csv(out)
    assert list(raw.columns[:5]) == ["id", "tomo", "x_angst", "y_angst", "z_angst"]
    back = read_particles(out)
    np.testing.assert_allclose(back.coordinates(), pl.coordinates(), atol=1e-3)
    assert back.ids == pl.ids and list(back.table["label"]) == list(pl.table["label"])
    px = write_csv_particles(tmp_path / "px.tsv", pl, units="pixel")
    back = read_particles(px)
    np.testing.assert_allclose(back.coordinates(), pl.coordinates(), atol=1e-3)
    assert back.pixel_size == pl.pixel_size


# ---------------------------------------------------------------- copick


def test_copick_write_then_read_by_copick_directly(tmp_path: Path) -> None:
    cfg = _project(tmp_path)
    pl = _particles()
    n = write_copick(cfg, pl, user_id="cryoal", session_id="round-001")
    assert n == len(pl)
    root = copick.from_file(str(cfg))
    run = root.get_run("TS_1")
    picks = run.get_picks(object_name="ribosome", user_id="cryoal", session_id="round-001")
    assert len(picks) == 1
    pts, tfs = picks[0].numpy()
    sel = (pl.table["tomo"] == "TS_1") & (pl.table["label"] == "ribosome")
    np.testing.assert_allclose(pts, pl.coordinates()[sel.to_numpy()], atol=1e-3)
    np.testing.assert_allclose(
        tfs[:, :3, :3],
        _relion_matrix(pl.table.loc[sel, ["rot", "tilt", "psi"]].to_numpy()),
        atol=1e-6,
    )
    np.testing.assert_allclose(picks[0].scores(), pl.table.loc[sel, "score"], atol=1e-9)
    # and by our reader: every point back, label = object name
    back = read_copick(cfg, user_id="cryoal")
    assert len(back) == len(pl) and back.source == "copick"
    key = ["tomo", "label"]
    a = pl.table.sort_values(key + ["x"]).reset_index(drop=True)
    b = back.table.sort_values(key + ["x"]).reset_index(drop=True)
    np.testing.assert_allclose(b[["x", "y", "z"]], a[["x", "y", "z"]], atol=1e-3)
    assert list(b["label"]) == list(a["label"])
    np.testing.assert_allclose(b["score"], a["score"], atol=1e-9)
    assert back.ids[:2] == ["TS_1:000000", "TS_1:000001"]


def test_copick_reader_filters_and_pixel_size(tmp_path: Path) -> None:
    cfg = _project(tmp_path)
    root = copick.from_file(str(cfg))
    run = root.new_run("TS_9")
    run.new_voxel_spacing(7.84)
    run.new_picks("ribosome", "manual", "alice").from_numpy(
        np.array([[10.0, 20.0, 30.0], [1.0, 2.0, 3.0]])
    )
    tf = np.eye(4)[None].repeat(1, axis=0)
    tf[0, :3, 3] = [5.0, 0.0, 0.0]  # translation adds to the location
    run.new_picks("proteasome", "auto", "bob").from_numpy(
        np.array([[100.0, 0.0, 0.0]]), tf, scores=np.array([0.25])
    )
    pl = read_particles(cfg.parent, object_name="proteasome")
    assert pl.coordinates().tolist() == [[105.0, 0.0, 0.0]]
    assert pl.table["score"].tolist() == [0.25]
    assert pl.pixel_size == {"TS_9": pytest.approx(7.84)}
    np.testing.assert_allclose(pl.coordinates("pixel"), [[105.0 / 7.84, 0, 0]])
    alice = read_copick(cfg, user_id="alice")
    assert alice.ids == ["TS_9:000000", "TS_9:000001"]
    assert set(alice.table["session_id"]) == {"manual"}
    with pytest.raises(InvalidParticlesError, match="no copick picks match.*ribosome/alice/manual"):
        read_copick(cfg, user_id="carol")
    with pytest.raises(InvalidParticlesError, match="run\\(s\\) TS_0 not in the copick project"):
        read_copick(cfg, runs=["TS_0"])


def test_copick_writer_refuses_bad_input_before_writing(tmp_path: Path) -> None:
    cfg = _project(tmp_path, objects=("ribosome",))
    pl = _particles()
    with pytest.raises(InvalidParticlesError, match="proteasome are not pickable objects"):
        write_copick(cfg, pl, user_id="u", session_id="s")
    assert not list(copick.from_file(str(cfg)).runs)  # nothing written
    write_copick(cfg, pl, user_id="u", session_id="s", object_name="ribosome")
    with pytest.raises(InvalidParticlesError, match="already exist"):
        write_copick(cfg, pl, user_id="u", session_id="s", object_name="ribosome")
    write_copick(cfg, pl, user_id="u", session_id="s", object_name="ribosome", overwrite=True)
    assert len(read_copick(cfg)) == len(pl)
    nolabel = ParticleList(pl.table.drop(columns=["label"]), pl.pixel_size, "csv")
    with pytest.raises(InvalidParticlesError, match="no label column"):
        write_copick(cfg, nolabel, user_id="u", session_id="t")
    with pytest.raises(InvalidParticlesError, match="not a copick project"):
        read_copick(tmp_path)


# ---------------------------------------------------------------- Dynamo


def _dynamo_table(path: Path, **cols: list[float]) -> Path:
    n = len(cols["x"])
    base = {"tag": list(range(1, n + 1)), "aligned_value": [1] * n, "averaged_value": [0] * n}
    dynamotable.write(pd.DataFrame({**base, **cols}), str(path))
    return path


def test_dynamo_reader_one_based_with_shifts_and_names(tmp_path: Path) -> None:
    tbl = _dynamo_table(
        tmp_path / "p.tbl",
        dx=[0.5, 0.0, 0.0],
        dy=[0.0, 0.0, 0.0],
        dz=[0.0, 0.0, -1.0],
        tdrot=[0.0, 30.0, 0.0],
        tilt=[0.0, 40.0, 0.0],
        narot=[0.0, 50.0, 0.0],
        cc=[0.9, 0.8, 0.7],
        tomo=[1, 1, 2],
        x=[1.0, 11.0, 5.0],
        y=[1.0, 21.0, 5.0],
        z=[1.0, 31.0, 5.0],
    )
    pl = read_dynamo(tbl, pixel_size=2.0)
    # voxel 1 (MATLAB) is our voxel 0
    np.testing.assert_allclose(
        pl.coordinates("pixel"), [[0.5, 0.0, 0.0], [10.0, 20.0, 30.0], [4.0, 4.0, 3.0]]
    )
    assert pl.tomograms == ["1", "2"] and pl.table["score"].tolist() == [0.9, 0.8, 0.7]
    assert "dynamo_tilt" in pl.table.columns
    # angles: the RELION matrix equals copick's Dynamo conversion
    from scipy.spatial.transform import Rotation

    want = Rotation.from_euler("zxz", [30.0, 40.0, 50.0], degrees=True).inv().as_matrix()
    got = _relion_matrix(pl.table.loc[[1], ["rot", "tilt", "psi"]].to_numpy())[0]
    np.testing.assert_allclose(got, want, atol=1e-9)
    np.testing.assert_allclose(
        read_dynamo(tbl, pixel_size=2.0, index_base=0, apply_shifts=False).coordinates("pixel")[0],
        [1.0, 1.0, 1.0],
    )
    doc = tmp_path / "tomos.doc"
    doc.write_text("1 /data/TS_01.mrc\n2 /data/TS_02.rec\n")
    named = read_particles(tbl, pixel_size=2.0, tomo_names=doc)
    assert named.tomograms == ["TS_01", "TS_02"] and named.ids[2] == "TS_02:000000"
    vll = tmp_path / "tomos.vll"
    vll.write_text("/data/a.mrc\n/data/b.mrc\n")
    assert read_dynamo(tbl, pixel_size=2.0, tomo_names=vll).tomograms == ["a", "b"]
    with pytest.raises(InvalidParticlesError, match="tomogram number\\(s\\) 2 are not"):
        read_dynamo(tbl, pixel_size=2.0, tomo_names={1: "a"})
    with pytest.raises(InvalidParticlesError, match="no pixel size"):
        read_dynamo(tbl)
    empty = tmp_path / "e.tbl"
    empty.write_text("")
    with pytest.raises(InvalidParticlesError, match="empty file"):
        read_dynamo(empty, pixel_size=1.0)


def test_relion_writer_class_numbers_from_ordered_names(tmp_path: Path) -> None:
    pl = _particles()
    table = pl.table.assign(predicted=pl.table["label"]).drop(columns=["label"])
    table.loc[0, "predicted"] = None
    pl = ParticleList(table, pl.pixel_size, "csv", pl.centres)
    out = write_relion(
        tmp_path / "pred.star",
        pl,
        class_numbers=["proteasome", "ribosome"],
        class_column="predicted",
    )
    parts = starfile.read(out, always_dict=True)["particles"]
    assert list(parts["rlnClassNumber"]) == [0, 1, 2, 1, 2, 1, 2, 1, 2]
    assert list(parts["cryoalPredicted"].fillna(""))[1:3] == ["proteasome", "ribosome"]


def test_dynamo_and_copick_bad_input(tmp_path: Path) -> None:
    # 40 columns as Dynamo writes them; x (column 24) is NaN in the second row
    row = ["0"] * 40
    row[0], row[19], row[23], row[24], row[25] = "1", "1", "1", "1", "1"
    nan_row = list(row)
    nan_row[0], nan_row[23] = "2", "NaN"
    tbl = tmp_path / "nan.tbl"
    tbl.write_text(" ".join(row) + "\n" + " ".join(nan_row) + "\n")
    with pytest.raises(InvalidParticlesError, match=r"non-numeric x: row 2 \(empty\)"):
        read_dynamo(tbl, pixel_size=1.0)
    bad = tmp_path / "cfg.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidParticlesError, match="not a readable copick config"):
        read_copick(bad)

"""Labels from real particle files (RELION STAR, copick, CSV) matched to pool items."""

from __future__ import annotations

from pathlib import Path

import copick
import numpy as np
import pandas as pd
import pytest
import starfile
from copick.models import PickableObject

from cryoal.errors import InvalidLabelsError
from cryoal.io import ParticleList
from cryoal.io.labels import read_labels
from cryoal.io.particle_labels import (
    labels_from_particles,
    match_labels,
    read_class_names,
    read_particle_labels,
)
from cryoal.io.particles import make_particle_ids, write_relion


def _pool(n_per_tomo: int = 4, spacing: float = 200.0) -> ParticleList:
    tomos = ["TS_1"] * n_per_tomo + ["TS_2"] * n_per_tomo
    xs = [spacing * (i % n_per_tomo + 1) for i in range(len(tomos))]
    table = pd.DataFrame(
        {
            "id": make_particle_ids(tomos),
            "tomo": tomos,
            "x": np.asarray(xs, dtype=np.float64),
            "y": 500.0,
            "z": 300.0,
        }
    )
    return ParticleList(
        table,
        {"TS_1": 10.0, "TS_2": 10.0},
        "csv",
        {"TS_1": (640.0, 640.0, 320.0), "TS_2": (640.0, 640.0, 320.0)},
    )


def _relion5_labels(
    path: Path, pool: ParticleList, rows: list[int], classes: list[int], jitter: float = 3.0
) -> Path:
    t = pool.table.iloc[rows]
    centres = np.array([pool.centres[x] for x in t["tomo"]])
    xyz = t[["x", "y", "z"]].to_numpy() - centres + jitter
    parts = pd.DataFrame(
        {
            "rlnTomoName": list(t["tomo"]),
            "rlnCenteredCoordinateXAngst": xyz[:, 0],
            "rlnCenteredCoordinateYAngst": xyz[:, 1],
            "rlnCenteredCoordinateZAngst": xyz[:, 2],
            "rlnClassNumber": classes,
            "rlnOpticsGroup": 1,
        }
    )
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnTomoTiltSeriesPixelSize": [10.0]})
    starfile.write({"optics": optics, "particles": parts}, path)
    return path


SHAPES = {"TS_1": (64, 128, 128), "TS_2": (64, 128, 128)}


def test_class_names_from_string_yaml_csv(tmp_path: Path) -> None:
    assert read_class_names("1=ribosome, 2:proteasome") == {1: "ribosome", 2: "proteasome"}
    (tmp_path / "c.yaml").write_text("1: ribosome\n2: proteasome\n")
    assert read_class_names(tmp_path / "c.yaml") == {1: "ribosome", 2: "proteasome"}
    (tmp_path / "c.csv").write_text("class,name\n3,fas\n")
    assert read_class_names(str(tmp_path / "c.csv")) == {3: "fas"}
    with pytest.raises(InvalidLabelsError, match="not an integer"):
        read_class_names({"a": "x"})
    with pytest.raises(InvalidLabelsError, match="given to two classes"):
        read_class_names("1=a,2=a")
    with pytest.raises(InvalidLabelsError, match="not 'number=name'"):
        read_class_names("ribosome")


def test_relion5_class_numbers_import_by_coordinate(tmp_path: Path) -> None:
    # The case label import rejected before: rlnClassNumber, no rlnImageName.
    pool = _pool()
    star = _relion5_labels(tmp_path / "run_data.star", pool, [0, 2, 5], [1, 2, 1])
    with pytest.raises(InvalidLabelsError, match="missing column"):
        read_labels(star)  # the plain labels reader still wants id,label
    m = read_particle_labels(
        star,
        pool_ids=pool.ids,
        pool_particles=pool,
        class_names="1=ribosome,2=proteasome",
        tomogram_shapes=SHAPES,
        pixel_size=10.0,
    )
    assert m.by == "coordinate" and m.ok
    assert list(m.table["id"]) == ["TS_1:000000", "TS_1:000002", "TS_2:000001"]
    assert list(m.table["label"]) == ["ribosome", "proteasome", "ribosome"]
    np.testing.assert_allclose(m.distances, np.sqrt(3) * 3.0, atol=1e-6)
    # without names the class number is the label
    m = read_particle_labels(
        star, pool_ids=pool.ids, pool_particles=pool, tomogram_shapes=SHAPES, pixel_size=10.0
    )
    assert list(m.table["label"]) == ["1", "2", "1"]
    with pytest.raises(
        InvalidLabelsError, match=r"rlnClassNumber with no class name: row 2 \(class 2\)"
    ):
        read_particle_labels(
            star,
            pool_ids=pool.ids,
            pool_particles=pool,
            class_names={1: "ribosome"},
            tomogram_shapes=SHAPES,
            pixel_size=10.0,
        )


def test_coordinate_matching_reports_unknown_duplicate_ambiguous_in_one_line(
    tmp_path: Path,
) -> None:
    pool = _pool(spacing=200.0)
    labels = pd.DataFrame(
        {
            "tomo": ["TS_1", "TS_1", "TS_1", "TS_3", "TS_2"],
            "x": [200.0, 1000.0, 201.0, 0.0, 300.0],
            "y": 500.0,
            "z": 300.0,
            "label": ["a", "b", "c", "d", "e"],
        }
    )
    labels.attrs["source"] = "labels.csv"
    # row 5 sits between TS_2:000000 (x=200) and TS_2:000001 (x=400): 100 Å from both
    with pytest.raises(InvalidLabelsError) as info:
        match_labels(labels, pool_ids=pool.ids, pool_particles=pool, tolerance=150.0)
    msg = str(info.value)
    assert "\n" not in msg
    assert "2 match no pool item" in msg and "tomogram 'TS_3' not in the pool" in msg
    assert "nearest pool particle 200.0 Å away" in msg
    assert (
        "1 repeat a pool item with another label: row 3 'TS_1:000000' 'c' (row 1 says 'a')" in msg
    )
    assert "1 are ambiguous: row 5" in msg
    loose = match_labels(
        labels, pool_ids=pool.ids, pool_particles=pool, tolerance=150.0, strict=False
    )
    assert list(loose.table["id"]) == ["TS_1:000000"] and list(loose.table["row"]) == [1]
    # default tolerance: two voxels of the pool (20 Å): row 3 (1 Å off) still matches
    m = match_labels(labels.iloc[[0]], pool_ids=pool.ids, pool_particles=pool)
    assert m.ok and list(m.table["id"]) == ["TS_1:000000"]


def test_image_names_with_folders_match_pool_ids(tmp_path: Path) -> None:
    pool_ids = [
        "TS_01/1_stack2d.mrcs",
        "TS_02/1_stack2d.mrcs",
        "TS_01/2_stack2d.mrcs",
        "stack.mrcs#4",
    ]
    parts = pd.DataFrame(
        {
            "rlnImageName": [
                "Extract/job013/Subtomograms/TS_01/1_stack2d.mrcs",
                "Extract/job013/Subtomograms/TS_02/1_stack2d.mrcs",
                "000005@stack.mrcs",
                "Extract/job013/Subtomograms/TS_09/1_stack2d.mrcs",
            ],
            "rlnClassNumber": [1, 2, 1, 1],
        }
    )
    starfile.write({"particles": parts}, tmp_path / "data.star")
    m = read_particle_labels(
        tmp_path / "data.star", pool_ids=pool_ids, class_names={1: "ribo", 2: "prot"}, strict=False
    )
    assert m.by == "image"
    assert list(m.table["id"]) == ["TS_01/1_stack2d.mrcs", "TS_02/1_stack2d.mrcs", "stack.mrcs#4"]
    assert list(m.table["label"]) == ["ribo", "prot", "ribo"]
    assert len(m.unknown) == 1 and "TS_09" in m.unknown[0]
    # pool ids longer than the file's names match too; two equally good -> ambiguous
    m = match_labels(
        pd.DataFrame({"image": ["1_stack2d.mrcs"], "label": ["x"]}),
        pool_ids=["a/TS_01/1_stack2d.mrcs", "a/TS_02/1_stack2d.mrcs"],
        by="image",
        strict=False,
    )
    assert m.ambiguous and not len(m.table)


def test_cryoal_written_star_imports_by_id_without_tomogram_sizes(tmp_path: Path) -> None:
    pool = _pool()
    pred = pool.table.copy()
    pred["label"] = ["ribosome", None, "proteasome", None, None, None, None, "ribosome"]
    pl = ParticleList(pred, pool.pixel_size, "csv", pool.centres)
    out = write_relion(tmp_path / "picks.star", pl)
    m = read_particle_labels(out, pool_ids=pool.ids)
    assert m.by == "id"
    assert list(m.table["id"]) == ["TS_1:000000", "TS_1:000002", "TS_2:000003"]
    assert list(m.table["label"]) == ["ribosome", "proteasome", "ribosome"]


def test_csv_label_column_by_name_and_ids(tmp_path: Path) -> None:
    pool = _pool()
    (tmp_path / "l.csv").write_text("id,expert,label\nTS_1:000001,fas,x\nTS_2:000000,ribosome,y\n")
    m = read_particle_labels(tmp_path / "l.csv", pool_ids=pool.ids, label_column="expert")
    assert m.by == "id" and list(m.table["label"]) == ["fas", "ribosome"]
    (tmp_path / "bad.csv").write_text("id,label\nnope,fas\n")
    with pytest.raises(
        InvalidLabelsError, match=r"1 match no pool item: row 1 'nope' \(pool ids look like"
    ):
        read_particle_labels(tmp_path / "bad.csv", pool_ids=pool.ids)
    (tmp_path / "xyz.csv").write_text("tomo,x_angst,y_angst,z_angst,label\nTS_2,801,500,300,fas\n")
    m = read_particle_labels(tmp_path / "xyz.csv", pool_ids=pool.ids, pool_particles=pool)
    assert m.by == "coordinate" and list(m.table["id"]) == ["TS_2:000003"]
    with pytest.raises(InvalidLabelsError, match="no column 'nope'"):
        read_particle_labels(tmp_path / "l.csv", pool_ids=pool.ids, label_column="nope")


def test_copick_picks_per_object_are_labels(tmp_path: Path) -> None:
    pool = _pool()
    cfg = tmp_path / "cp" / "copick_config.json"
    root = copick.new_config(
        str(cfg),
        str(tmp_path / "cp" / "overlay"),
        pickable_objects=[
            PickableObject(name="ribosome", is_particle=True, label=1, radius=100.0),
            PickableObject(name="proteasome", is_particle=True, label=2, radius=80.0),
        ],
    )
    run = root.new_run("TS_1")
    run.new_picks("ribosome", "expert", "alice").from_numpy(
        np.array([[200.0, 500, 300], [600.0, 500, 300]])
    )
    run.new_picks("proteasome", "expert", "alice").from_numpy(np.array([[402.0, 500, 300]]))
    run.new_picks("proteasome", "auto", "tm").from_numpy(np.array([[800.0, 500, 300]]))
    m = read_particle_labels(cfg, pool_ids=pool.ids, pool_particles=pool, user_id="alice")
    assert m.by == "coordinate"
    got = dict(zip(m.table["id"], m.table["label"], strict=True))
    assert got == {
        "TS_1:000000": "ribosome",
        "TS_1:000002": "ribosome",
        "TS_1:000001": "proteasome",
    }


def test_labels_from_particles_column_choice() -> None:
    pool = _pool()
    t = pool.table.copy()
    t["rlnClassNumber"] = [1, 2, 1, 2, 1, 2, 1, 2]
    pl = labels_from_particles(ParticleList(t, {}, "relion5"), class_names={1: "a", 2: "b"})
    assert list(pl.table["label"]) == ["a", "b"] * 4
    with pytest.raises(InvalidLabelsError, match="no label column"):
        labels_from_particles(pool)

"""``cryoal predict --tomograms DIR --coords FILE``: RELION 5 STAR with rlnClassNumber."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import starfile
import torch
from click.testing import CliRunner
from cryoal.cli.main import cli

from cryoal import models
from cryoal.io.tomograms import open_tomograms
from cryoal.io.tomopool import TomogramPool
from cryoal.train import predict as predict_probabilities
from cryoal.transforms import normalize

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


def test_predict_on_a_tomogram_pool_writes_relion5_class_numbers(tmp_path: Path) -> None:
    tomos = tmp_path / "tomos"
    write_mrc(tomos / "TS_01.mrc", tomogram_data(0))
    write_ome_zarr(tomos / "TS_02.zarr", tomogram_data(1))
    table = particles_table({"TS_01": SHAPE, "TS_02": SHAPE}, per_tomo=6)
    coords = tmp_path / "coords.csv"
    table.rename(columns={"x": "x_angst", "y": "y_angst", "z": "z_angst"}).to_csv(
        coords, index=False
    )
    torch.manual_seed(0)
    model = models.create("cb3d", 3, (1, 16, 16, 16))
    ckpt = models.save_checkpoint(
        tmp_path / "m.pt", model, class_names=["empty", "proteasome", "ribosome"], voxel_size=VOXEL
    )
    out = tmp_path / "classes.star"
    args = ["predict", "--tomograms", tomos, "--coords", coords, "--box", 16]
    r = CliRunner().invoke(
        cli,
        [
            str(a)
            for a in [*args, "--model", ckpt, "--out", out, "--device", "cpu", "--no-progress"]
        ],
    )
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"12 volumes -> {out}: ")
    blocks = starfile.read(out, always_dict=True)
    assert set(blocks) == {"optics", "particles"}
    p = blocks["particles"]
    assert p["cryoalId"].tolist() == table["id"].tolist()
    assert p["rlnTomoName"].tolist() == table["tomo"].tolist()
    np.testing.assert_allclose(
        p["rlnCenteredCoordinateYAngst"].to_numpy(), table["y"].to_numpy() - SHAPE[1] * VOXEL / 2
    )
    # the same model on the same boxes, in the library: class numbers are 1-based argmax
    pool = TomogramPool(open_tomograms(tomos), table, 16)
    probs = predict_probabilities(model.eval(), pool.dataset(transform=normalize), batch_size=4)
    assert p["rlnClassNumber"].tolist() == (probs.argmax(1) + 1).tolist()
    classes = ["empty", "proteasome", "ribosome"]
    assert p["cryoalPredicted"].tolist() == [classes[i] for i in probs.argmax(1).tolist()]
    csv_out = tmp_path / "classes.csv"
    r = CliRunner().invoke(
        cli,
        [
            str(a)
            for a in [*args, "--model", ckpt, "--out", csv_out, "--device", "cpu", "--no-progress"]
        ],
    )
    assert r.exit_code == 0, r.output
    csv = pd.read_csv(csv_out)
    assert list(csv.columns[:5]) == ["id", "tomo", "x", "y", "z"]
    inv = tmp_path / "inverted.csv"
    r = CliRunner().invoke(
        cli,
        [str(a) for a in [*args, "--model", ckpt, "--out", inv, "--invert", "--device", "cpu", "--no-progress"]],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    probs_inv = predict_probabilities(
        model.eval(), pool.inverted().dataset(transform=normalize), batch_size=4
    )
    np.testing.assert_allclose(pd.read_csv(inv)["p_ribosome"], probs_inv[:, 2].numpy(), atol=1e-5)
    wrong = CliRunner().invoke(
        cli,
        [
            str(a)
            for a in [
                "predict",
                "--tomograms",
                tomos,
                "--coords",
                coords,
                "--box",
                20,
                "--model",
                ckpt,
                "--out",
                out,
                "--device",
                "cpu",
            ]
        ],
    )
    assert wrong.exit_code == 2 and "Error:" in wrong.output


def test_train_on_a_tomogram_pool_then_predict(tmp_path: Path) -> None:
    tomos = tmp_path / "tomos"
    write_mrc(tomos / "TS_01.mrc", tomogram_data(0))
    table = particles_table({"TS_01": SHAPE}, per_tomo=12)
    coords = tmp_path / "coords.csv"
    table.rename(columns={"x": "x_angst", "y": "y_angst", "z": "z_angst"}).to_csv(
        coords, index=False
    )
    labels = pd.DataFrame({"id": table["id"][:8], "label": ["a", "b"] * 4})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    src = ["--tomograms", tomos, "--coords", coords, "--box", 16]
    r = CliRunner().invoke(
        cli,
        [str(a) for a in ["train", *src, "--labels", tmp_path / "labels.csv", "--model", "cb3d",
                          "--epochs", 1, "--val-fraction", 0, "--out", tmp_path / "m.pt",
                          "--device", "cpu", "--no-progress"]],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert r.output.startswith("8 labelled volumes, box 16x16x16, 2 classes (a, b)")
    _, meta = models.load_checkpoint(tmp_path / "m.pt")
    assert meta.class_names == ["a", "b"] and meta.voxel_size == VOXEL
    out = tmp_path / "p.star"
    r = CliRunner().invoke(
        cli,
        [str(a) for a in ["predict", *src, "--model", tmp_path / "m.pt", "--out", out,
                          "--device", "cpu", "--no-progress"]],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert set(starfile.read(out, always_dict=True)["particles"]["rlnClassNumber"]) <= {1, 2}


def test_predict_on_a_copick_pool_writes_picks_per_class_back_into_copick(tmp_path: Path) -> None:
    import copick

    table = particles_table({"TS_01": SHAPE, "TS_02": SHAPE}, per_tomo=5)
    config = write_copick_project(tmp_path / "cp", picks=table, object_name="ribosome")
    torch.manual_seed(1)
    model = models.create("cb3d", 2, (1, 16, 16, 16))
    classes = ["proteasome", "ribosome"]
    ckpt = models.save_checkpoint(tmp_path / "m.pt", model, class_names=classes, voxel_size=VOXEL)
    out = tmp_path / "classes.star"
    args = ["predict", "--copick", config, "--object", "ribosome", "--box", 16, "--model", ckpt]
    opts = ["--device", "cpu", "--no-progress", "--coordinates", "both", "--copick-picks"]
    r = CliRunner().invoke(cli, [str(a) for a in [*args, "--out", out, *opts]])
    assert r.exit_code == 0, r.output
    pred = starfile.read(out, always_dict=True)["particles"]
    n_by_class = pred["cryoalPredicted"].value_counts().to_dict()
    assert r.output.splitlines()[-1].startswith(f"copick: 10 picks of {len(n_by_class)} object(s) ")
    # RELION 4 pixels on request, next to the centred Å
    np.testing.assert_allclose(pred["rlnCoordinateX"] * VOXEL, table["x"], atol=1e-3)
    np.testing.assert_allclose(
        pred["rlnCenteredCoordinateXAngst"] + SHAPE[2] * VOXEL / 2, table["x"], atol=1e-3
    )
    # read back by copick: one picks set per run and predicted class; score = probability
    root = copick.from_file(str(config))
    got = []
    for run in root.runs:
        for picks in run.get_picks(user_id="cryoal", session_id="predictions"):
            pts, _ = picks.numpy()
            for xyz, score in zip(pts, picks.scores(), strict=True):
                got.append((run.name, picks.pickable_object_name, *xyz, score))
    got_t = pd.DataFrame(got, columns=["tomo", "predicted", "x", "y", "z", "score"])
    want = pred.rename(columns={"rlnTomoName": "tomo", "cryoalPredicted": "predicted"})
    want = want.assign(x=table["x"], y=table["y"], z=table["z"], score=want["cryoalConfidence"])
    key = ["tomo", "predicted", "x"]
    a = got_t.sort_values(key).reset_index(drop=True)
    b = want[["tomo", "predicted", "x", "y", "z", "score"]].sort_values(key).reset_index(drop=True)
    assert a[["tomo", "predicted"]].values.tolist() == b[["tomo", "predicted"]].values.tolist()
    np.testing.assert_allclose(a[["x", "y", "z"]], b[["x", "y", "z"]], atol=1e-3)
    np.testing.assert_allclose(a["score"], b["score"], atol=1e-6)
    # classes that are not pickable objects: one line, nothing written
    bad = models.save_checkpoint(
        tmp_path / "bad.pt", model, class_names=["ribosome", "junk"], voxel_size=VOXEL
    )
    out2 = tmp_path / "bad.star"
    args[-1] = bad
    r = CliRunner().invoke(cli, [str(a) for a in [*args, "--out", out2, *opts]])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0] == (
        f"Error: {config}: class(es) junk are not pickable objects of the copick project "
        "(proteasome, ribosome); add them to its config or leave out --copick-picks"
    )
    assert not out2.exists()
    r = CliRunner().invoke(
        cli, [str(a) for a in ["predict", "--volumes", tmp_path, "--model", ckpt, "--out", out2,
                               "--copick-picks"]]
    )  # fmt: skip
    assert r.exit_code == 2 and "--copick-picks needs --copick" in r.output

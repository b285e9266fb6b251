"""`cryoal train` and `cryoal predict` on real MRC files, and their one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from cryoal.cli.main import cli

from cryoal.io import read_table, write_volume
from cryoal.models import load_checkpoint

BOX = 16


def _shapes(box: int) -> dict[str, np.ndarray]:
    c = np.arange(box) - box / 2 + 0.5
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    return {
        "sphere": (z**2 + y**2 + x**2 < 25).astype(np.float32),
        "rod": ((y**2 + x**2 < 4) & (np.abs(z) < 7)).astype(np.float32),
    }


def write_pool(
    folder: Path, n: int, *, box: int = BOX, seed: int = 0, voxel_size: float = 10.0
) -> pd.DataFrame:
    """``n`` noisy spheres/rods as MRC files (raw, not normalised: offset and scale vary)."""
    rng = np.random.default_rng(seed)
    shapes = _shapes(box)
    rows = []
    for i in range(n):
        label = "sphere" if i % 2 == 0 else "rod"
        v = shapes[label] + 0.5 * rng.standard_normal((box,) * 3)
        v = 50.0 + 7.0 * v  # raw intensities: the commands must z-score
        write_volume(folder / f"sub_{i:03d}.mrc", v.astype(np.float32), voxel_size=voxel_size)
        rows.append((f"sub_{i:03d}.mrc", label))
    return pd.DataFrame(rows, columns=["id", "label"])


def _train_args(vols: Path, labels: Path, out: Path) -> list[str]:
    """The seeded cb3d training run of the ``trained`` fixture, writing ``out``."""
    return [
        "train",
        "--volumes",
        str(vols),
        "--labels",
        str(labels),
        "--model",
        "cb3d",
        "--epochs",
        "10",
        "--batch-size",
        "8",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--seed",
        "3",
        "--no-progress",
    ]


def _predict_args(vols: Path, model: Path, out: Path) -> list[str]:
    return ["predict", "--volumes", str(vols), "--model", str(model), "--out", str(out)]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("train_predict")
    vols = root / "vols"
    vols.mkdir()
    truth = write_pool(vols, 48)
    labels = root / "labels.csv"
    truth.to_csv(labels, index=False)
    return vols, labels, truth


@pytest.fixture(scope="module")
def trained(
    data: tuple[Path, Path, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    vols, labels, _ = data
    out = tmp_path_factory.mktemp("run") / "model.pt"
    result = CliRunner().invoke(
        cli,
        _train_args(vols, labels, out),
    )
    assert result.exit_code == 0, result.output
    return out, result.output


def test_train_writes_checkpoint_metrics_and_config(
    trained: tuple[Path, str], data: tuple[Path, Path, pd.DataFrame]
) -> None:
    out, output = trained
    assert (
        "48 labelled volumes, box 16x16x16, 2 classes (rod, sphere); train 38, validation 10; model cb3d on cpu"
        in output
    )
    assert "validation accuracy" in output and f"wrote {out}" in output
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "config.json",
        "model.metrics.json",
        "model.pt",
    ]

    metrics = json.loads(out.with_name("model.metrics.json").read_text())
    assert metrics["final"]["split"] == "validation" and metrics["final"]["n"] == 10
    assert metrics["final"]["accuracy"] >= 0.9
    assert len(metrics["history"]["train_loss"]) == 10
    assert len(metrics["train_ids"]) == 38 and len(metrics["val_ids"]) == 10
    assert not set(metrics["train_ids"]) & set(metrics["val_ids"])

    model, info = load_checkpoint(out)
    assert info.arch.name == "cb3d" and info.box == (16, 16, 16)
    assert info.class_names == ["rod", "sphere"] and info.voxel_size == pytest.approx(10.0)
    assert info.normalization == "zscore" and info.train_config["lr"] == 3e-3
    assert info.metrics["accuracy"] == metrics["final"]["accuracy"]
    assert info.extra["seed"] == 3

    config = json.loads((out.parent / "config.json").read_text())
    assert config["seed"] == 3 and config["arguments"]["model_name"] == "cb3d"


def test_train_is_reproducible(
    trained: tuple[Path, str], data: tuple[Path, Path, pd.DataFrame], tmp_path: Path
) -> None:
    vols, labels, _ = data
    again = tmp_path / "again.pt"
    result = CliRunner().invoke(
        cli,
        _train_args(vols, labels, again),
    )
    assert result.exit_code == 0, result.output
    a, _ = load_checkpoint(trained[0])
    b, _ = load_checkpoint(again)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


@pytest.mark.parametrize("suffix", [".csv", ".star"])
def test_predict_table(
    trained: tuple[Path, str], data: tuple[Path, Path, pd.DataFrame], tmp_path: Path, suffix: str
) -> None:
    vols, _, truth = data
    out = tmp_path / f"predictions{suffix}"
    result = CliRunner().invoke(
        cli,
        [*_predict_args(vols, trained[0], out), "--device", "cpu", "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"48 volumes -> {out}: rod ")
    table = read_table(out)
    assert list(table.columns) == ["id", "predicted", "confidence", "p_rod", "p_sphere"]
    assert table["id"].tolist() == truth["id"].tolist()
    p = table[["p_rod", "p_sphere"]].to_numpy(dtype=float)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(table["confidence"].to_numpy(dtype=float), p.max(1), atol=1e-6)
    assert (table["predicted"] == np.where(p[:, 0] > p[:, 1], "rod", "sphere")).all()
    assert float((table["predicted"] == truth["label"]).mean()) >= 0.9


def _fails(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert message in lines[0], lines[0]


def test_labels_for_missing_volumes(data: tuple[Path, Path, pd.DataFrame], tmp_path: Path) -> None:
    vols, _, truth = data
    labels = tmp_path / "labels.csv"
    pd.concat(
        [truth.head(4), pd.DataFrame([("gone_999.mrc", "rod")], columns=["id", "label"])]
    ).to_csv(labels, index=False)
    _fails(
        ["train", "--volumes", str(vols), "--labels", str(labels), "--out", str(tmp_path / "m.pt")],
        "labels.csv: 1 of 5 rows have an id not in the pool: line 6 'gone_999.mrc'",
    )
    assert not (tmp_path / "m.pt").exists()


def test_one_class_only(data: tuple[Path, Path, pd.DataFrame], tmp_path: Path) -> None:
    vols, _, truth = data
    labels = tmp_path / "labels.csv"
    truth[truth["label"] == "rod"].to_csv(labels, index=False)
    _fails(
        ["train", "--volumes", str(vols), "--labels", str(labels), "--out", str(tmp_path / "m.pt")],
        "labels.csv: every labelled volume is 'rod'; training needs at least two classes",
    )


def test_unknown_model_name(data: tuple[Path, Path, pd.DataFrame], tmp_path: Path) -> None:
    vols, labels, _ = data
    _fails(
        [
            "train",
            "--volumes",
            str(vols),
            "--labels",
            str(labels),
            "--model",
            "dsrf",
            "--out",
            str(tmp_path / "m.pt"),
        ],
        "unknown model 'dsrf'. Did you mean 'dsrf3d'?",
    )


def test_box_mismatch_with_checkpoint(trained: tuple[Path, str], tmp_path: Path) -> None:
    vols = tmp_path / "big"
    vols.mkdir()
    write_pool(vols, 2, box=24)
    _fails(
        _predict_args(vols, trained[0], tmp_path / "p.csv"),
        "model.pt: model 'cb3d' was trained on boxes of 16×16×16 voxels but the volumes are 24×24×24",
    )
    assert not (tmp_path / "p.csv").exists()


def test_voxel_size_mismatch_with_checkpoint(trained: tuple[Path, str], tmp_path: Path) -> None:
    vols = tmp_path / "fine"
    vols.mkdir()
    write_pool(vols, 2, voxel_size=5.0)
    _fails(
        _predict_args(vols, trained[0], tmp_path / "p.csv"),
        "model was trained at 10 Å/voxel but the volumes are 5 Å/voxel",
    )


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_checkpoint(
    trained: tuple[Path, str], data: tuple[Path, Path, pd.DataFrame], tmp_path: Path, damage: str
) -> None:
    bad = tmp_path / "bad.pt"
    raw = trained[0].read_bytes()
    bad.write_bytes(raw[: len(raw) // 3] if damage == "truncate" else b"not a checkpoint\n" * 10)
    _fails(
        _predict_args(data[0], bad, tmp_path / "p.csv"),
        "bad.pt: not a readable cryoal checkpoint (",
    )


def test_bad_output_extension(
    trained: tuple[Path, str], data: tuple[Path, Path, pd.DataFrame], tmp_path: Path
) -> None:
    _fails(
        _predict_args(data[0], trained[0], tmp_path / "p.txt"),
        "--out " + str(tmp_path / "p.txt") + ": use a .csv or .star file name",
    )


def test_help_has_examples() -> None:
    for command in ("train", "predict"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0 and "Example usage:" in result.output
        assert f"cryoal {command} --volumes" in result.output


@pytest.mark.skipif(shutil.which("cryoal") is None, reason="console script not installed")
def test_installed_script_predicts(
    trained: tuple[Path, str], data: tuple[Path, Path, pd.DataFrame], tmp_path: Path
) -> None:
    out = tmp_path / "p.csv"
    proc = subprocess.run(
        [
            shutil.which("cryoal") or sys.executable,
            "predict",
            "--volumes",
            str(data[0]),
            "--model",
            str(trained[0]),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(read_table(out)) == 48


def test_train_with_augmentation(data: tuple[Path, Path, pd.DataFrame], tmp_path: Path) -> None:
    vols, labels, _ = data
    out = tmp_path / "aug.pt"
    args = ["train", "--volumes", str(vols), "--labels", str(labels), "--model", "cb3d"]
    args += ["--epochs", "1", "--batch-size", "8", "--out", str(out), "--device", "cpu"]
    result = CliRunner().invoke(cli, [*args, "--augment", "rotate,flip", "--no-progress"])
    assert result.exit_code == 0, result.output
    augment = load_checkpoint(out)[1].train_config["augment"]
    assert "RandomRotate" in augment and "RandomFlip" in augment and "Normalize" in augment


def test_unknown_augmentation(data: tuple[Path, Path, pd.DataFrame], tmp_path: Path) -> None:
    vols, labels, _ = data
    _fails(
        [
            "train",
            "--volumes",
            str(vols),
            "--labels",
            str(labels),
            "--augment",
            "rotat",
            "--out",
            str(tmp_path / "m.pt"),
        ],
        "unknown transform 'rotat' (did you mean 'rotate'?)",
    )


def _negated_copy(vols: Path, dest: Path) -> Path:
    """The pool with every volume's contrast inverted (bright particles: RELION, aitom)."""
    from cryoal.io import read_volume

    dest.mkdir()
    for f in sorted(vols.glob("*.mrc")):
        v = read_volume(f)
        write_volume(dest / f.name, -v.data, voxel_size=v.voxel_size)
    return dest


def test_invert_matches_pools_of_either_contrast(
    trained: tuple[Path, str], data: tuple[Path, Path, pd.DataFrame], tmp_path: Path
) -> None:
    vols, labels, _ = data
    bright = _negated_copy(vols, tmp_path / "bright")
    # training on the inverted copy with --invert is training on the original pool
    model = tmp_path / "inv.pt"
    result = CliRunner().invoke(cli, [*_train_args(bright, labels, model), "--invert"])
    assert result.exit_code == 0, result.output
    a, _ = load_checkpoint(trained[0])
    b, info = load_checkpoint(model)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert info.train_config["invert"] is True

    def predict(pool: Path, ckpt: Path, name: str, *flags: str) -> pd.DataFrame:
        out = tmp_path / f"{name}.csv"
        args = [*_predict_args(pool, ckpt, out), "--device", "cpu", "--no-progress", *flags]
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0, res.output
        return read_table(out)

    reference = predict(vols, trained[0], "ref")
    # predict follows the checkpoint (trained with --invert) unless told otherwise
    pd.testing.assert_frame_equal(predict(bright, model, "follows"), reference)
    pd.testing.assert_frame_equal(predict(bright, trained[0], "flag", "--invert"), reference)
    wrong = predict(bright, model, "wrong", "--no-invert")
    assert not wrong[["p_rod", "p_sphere"]].equals(reference[["p_rod", "p_sphere"]])

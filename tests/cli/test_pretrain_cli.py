"""`cryoal pretrain`: writes an encoder checkpoint + config, caches in a project, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _simpool import make_pool
from click.testing import CliRunner
from cryoal.cli.main import cli

from cryoal.active import ProjectLayout
from cryoal.pretrain import init_from_encoder, load_encoder

FAST = ["--model", "cb3d", "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pool")
    make_pool(root, n=10)
    return root


def test_out_writes_encoder_and_config(volumes: Path, tmp_path: Path) -> None:
    out = tmp_path / "enc" / "encoder.pt"
    res = CliRunner().invoke(cli, ["pretrain", "--volumes", str(volumes), *FAST, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "10 volumes, box 16x16x16; pretraining cb3d for 1 epochs on cpu" in res.output
    assert f"wrote {out}" in res.output and "NT-Xent" in res.output
    model, info = load_encoder(out)
    assert info.extra["kind"] == "encoder" and info.voxel_size == 10.0 and info.arch.name == "cb3d"
    assert json.loads((out.parent / "config.json").read_text())["arguments"]["epochs"] == 1
    from cryoal import models

    init_from_encoder(models.create("cb3d", 3, (1, 16, 16, 16)), out)  # fits a 3-class classifier


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 real handwritten digits (8×8 px) as PNG files."""
    from cryoal.tasks.image2d import load_digits_images, write_image_set

    pixels, labels = load_digits_images()
    return write_image_set(tmp_path_factory.mktemp("digits"), pixels[:40], labels[:40])["images"]


def test_images_pretrain_a_2d_encoder(images: Path, tmp_path: Path) -> None:
    args = ["pretrain", "--images", str(images), "--epochs", "1", "--batch-size", "8"]
    args += ["--device", "cpu", "--no-progress", "--project", str(tmp_path)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert "40 images, 8x8 px; pretraining cnn2d for 1 epochs on cpu" in res.output
    assert "NT-Xent" in res.output and "40 images)" in res.output
    model, info = load_encoder(tmp_path / ProjectLayout.ENCODER)
    assert info.arch.name == "cnn2d" and list(info.arch.in_shape) == [1, 8, 8]
    record = json.loads((tmp_path / "models" / "config.json").read_text())
    assert record["arguments"]["model_name"] == "cnn2d"
    from cryoal import models

    init_from_encoder(models.create("cnn2d", 10, (1, 8, 8)), tmp_path / ProjectLayout.ENCODER)


def test_project_cache_is_reused(volumes: Path, tmp_path: Path) -> None:
    args = ["pretrain", "--volumes", str(volumes), *FAST, "--project", str(tmp_path)]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    path = tmp_path / ProjectLayout.ENCODER
    stamp = path.stat().st_mtime_ns
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and path.stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    "extra,message",
    [
        ([], "Error: give exactly one of --out FILE or --project DIR"),
        (
            ["--out", "a.pt", "--project", "p"],
            "Error: give exactly one of --out FILE or --project DIR",
        ),
        (["--model", "nonet", "--out", "a.pt"], "unknown model"),
        (
            ["--images", ".", "--out", "a.pt"],
            "Error: give exactly one of --volumes (subtomograms) or --images",
        ),
    ],
)
def test_bad_input_exits_2(volumes: Path, extra: list[str], message: str) -> None:
    res = CliRunner().invoke(cli, ["pretrain", "--volumes", str(volumes), "--epochs", "1", *extra])
    assert res.exit_code == 2 and message in res.output


def test_help_has_examples() -> None:
    res = CliRunner().invoke(cli, ["pretrain", "--help"])
    assert (
        res.exit_code == 0
        and "Example usage:" in res.output
        and "cryoal pretrain --volumes" in res.output
    )

"""The secondary pipelines end to end through the CLI, on tiny real data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result
from cryoal.cli.main import cli

from cryoal.io import read_table, write_table, write_volume
from cryoal.tasks.seg_data import PatchPool, annotate_from_truth


def invoke(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="session")
def digits_master(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """120 real handwritten digits (scikit-learn's bundled set) as PNG + labels."""
    from cryoal.tasks.image2d import load_digits_images, write_image_set

    images, labels = load_digits_images()
    return write_image_set(
        tmp_path_factory.mktemp("digits"), images[:120], labels[:120], initial_per_class=2
    )


@pytest.fixture
def digits(digits_master: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    base = digits_master["images"].parent
    shutil.copytree(base, tmp_path / "digits")
    return {k: tmp_path / "digits" / v.relative_to(base) for k, v in digits_master.items()}


COMMON = ("--no-progress", "--device", "cpu", "--seed", 0)


def test_image2d_two_rounds(digits: dict[str, Path], tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    args = ("select", "--task", "image2d", "--images", digits["images"], "--project", proj)
    r1 = invoke(
        *args,
        "--labels",
        digits["initial"],
        "--budget",
        10,
        "--epochs",
        3,
        "--strategy",
        "entropy",
        *COMMON,
    )
    assert r1.exit_code == 0, r1.output
    assert "labels from" in r1.output and "20 added" in r1.output
    assert (
        "round 1 (image2d): trained on 20 labels (cnn2d); strategy entropy; pool 120 images 8x8 px"
        in r1.output
    )
    picks = read_table(proj / "picks" / "round-001.csv")
    initial = set(pd.read_csv(digits["initial"])["id"])
    assert len(picks) == 10 and not set(picks["id"]) & initial
    assert list(picks["rank"]) == list(range(1, 11))
    assert {f"p_{d}" for d in "0123456789"} <= set(picks.columns)
    assert (proj / "gallery" / "round-001.png").stat().st_size > 1000
    assert (proj / "models" / "round-001.pt").is_file()

    # the expert labels the picks; round 2 scores with expected-gradnorm
    truth = pd.read_csv(digits["truth"]).set_index("id")["label"].astype(str)
    picks["label"] = picks["id"].map(truth)
    write_table(tmp_path / "labelled.csv", picks)
    assert invoke("label", "import", tmp_path / "labelled.csv", "--project", proj).exit_code == 0
    r2 = invoke(*args, "--budget", 5, "--epochs", 2, "--strategy", "expected-gradnorm", *COMMON)
    assert r2.exit_code == 0, r2.output
    assert "round 2 (image2d): trained on 30 labels" in r2.output
    picks2 = read_table(proj / "picks" / "round-002.csv")
    assert len(picks2) == 5 and not set(picks2["id"]) & (initial | set(picks["id"]))
    assert (picks2["strategy"] == "expected-gradnorm").all()


def test_image2d_cold_start_and_strategy_list(digits: dict[str, Path], tmp_path: Path) -> None:
    res = invoke(
        "select",
        "--task",
        "image2d",
        "--images",
        digits["images"],
        "--project",
        tmp_path / "p",
        "--budget",
        6,
        *COMMON,
    )
    assert res.exit_code == 0, res.output
    assert "round 1 (image2d): cold start (cnn2d); strategy " in res.output
    assert len(read_table(tmp_path / "p" / "picks" / "round-001.csv")) == 6
    listed = invoke("select", "--task", "segmentation", "--list-strategies").output.split()
    assert listed == ["entropy", "entropy-gradnorm", "expected-gradnorm", "random"]
    assert "badge" in invoke("select", "--task", "image2d", "--list-strategies").output


def test_image2d_non_image_file_is_one_line_error(digits: dict[str, Path], tmp_path: Path) -> None:
    (digits["images"] / "notes.docx").write_bytes(b"PK\x03\x04")
    res = invoke(
        "select",
        "--task",
        "image2d",
        "--images",
        digits["images"],
        "--project",
        tmp_path / "p",
        *COMMON,
    )
    assert res.exit_code == 2
    assert res.output.strip() == (
        f"Error: {digits['images']}: 1 file(s) are not images (notes.docx); supported: .png, "
        ".tif, .tiff, .jpg, .jpeg, .mrc, .npy. Move them out of the folder or pass a --pattern "
        "such as '*.png'"
    )
    (digits["images"] / "notes.docx").unlink()
    (digits["images"] / "broken.png").write_text("oops")
    res = invoke(
        "select",
        "--task",
        "image2d",
        "--images",
        digits["images"],
        "--project",
        tmp_path / "p",
        *COMMON,
    )
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert "broken.png: not a readable PNG image" in res.output


def test_image2d_pretrain_epochs_pretrains_on_the_images(
    digits: dict[str, Path], tmp_path: Path
) -> None:
    from cryoal.active import Project, ProjectLayout
    from cryoal.pretrain import load_encoder

    proj = tmp_path / "proj"
    res = invoke(
        "select",
        "--task",
        "image2d",
        "--images",
        digits["images"],
        "--project",
        proj,
        "--labels",
        digits["initial"],
        "--budget",
        6,
        "--epochs",
        1,
        "--pretrain-epochs",
        1,
        "--strategy",
        "typicality",
        *COMMON,
    )
    assert res.exit_code == 0, res.output
    assert "round 1 (image2d): trained on 20 labels (cnn2d); strategy typicality" in res.output
    assert "pretrained encoder: models/encoder.pt" in res.output
    picks = read_table(proj / "picks" / "round-001.csv")
    assert len(picks) == 6 and not set(picks["id"]) & set(pd.read_csv(digits["initial"])["id"])
    with Project(proj, readonly=True) as p:
        rnd = p.latest_round()
        assert rnd is not None and rnd.metrics["encoder"] == str(ProjectLayout.ENCODER)
    _, info = load_encoder(proj / ProjectLayout.ENCODER)
    assert info.arch.name == "cnn2d" and list(info.arch.in_shape) == [1, 8, 8]
    assert info.extra["n_items"] == 120 and len(info.extra["losses"]) == 1


def test_segmentation_refuses_pretrain_epochs(tmp_path: Path) -> None:
    res = invoke(
        "select",
        "--task",
        "segmentation",
        "--volumes",
        tmp_path,
        "--masks",
        tmp_path,
        "--pretrain-epochs",
        2,
        "--project",
        tmp_path / "p",
        *COMMON,
    )
    assert res.exit_code == 2
    assert res.output.startswith(
        "Error: --pretrain-epochs is not supported for --task segmentation: pool pretraining "
        "trains a classifier's encoder"
    )
    assert "drop --pretrain-epochs" in res.output
    assert not (tmp_path / "p").exists()


@pytest.fixture
def seg(seg_example: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    base = seg_example["volumes"].parent
    shutil.copytree(base, tmp_path / "seg")
    return {k: tmp_path / "seg" / v.relative_to(base) for k, v in seg_example.items()}


def test_segmentation_two_rounds(seg: dict[str, Path], tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    args = (
        "select",
        "--task",
        "segmentation",
        "--volumes",
        seg["volumes"],
        "--masks",
        seg["masks"],
        "--patch",
        16,
        "--project",
        proj,
        "--epochs",
        2,
        *COMMON,
    )
    r1 = invoke(*args, "--budget", 4, "--strategy", "expected-gradnorm")
    assert r1.exit_code == 0, r1.output
    assert (
        "round 1 (segmentation): trained monai-unet on 8 annotated patches; strategy "
        "expected-gradnorm; 24 patches of 16³ from 3 crops, 16 unannotated; picked 4"
    ) in r1.output
    assert "training mean Dice" in r1.output
    picks = read_table(proj / "picks" / "round-001.csv")
    assert len(picks) == 4 and not picks["volume"].eq("tomo_000.mrc").any()
    assert {"frac_background", "frac_membrane", "z", "y", "x", "size", "path"} <= set(picks.columns)
    assert (proj / "gallery" / "round-001.png").is_file()
    assert (proj / "models" / "round-001.pt").is_file()

    annotate_from_truth(picks, seg["truth"], seg["masks"])
    pool = PatchPool.from_directories(seg["volumes"], seg["masks"], patch=16)
    assert len(pool.labelled_indices()) == 12
    r2 = invoke(*args, "--budget", 3, "--strategy", "entropy")
    assert r2.exit_code == 0, r2.output
    assert "round 2 (segmentation): trained monai-unet on 12 annotated patches" in r2.output
    picks2 = read_table(proj / "picks" / "round-002.csv")
    assert len(picks2) == 3 and not set(picks2["id"]) & set(picks["id"])


def test_segmentation_cold_start(seg: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "none"
    empty.mkdir()
    res = invoke(
        "select",
        "--task",
        "segmentation",
        "--volumes",
        seg["volumes"],
        "--masks",
        empty,
        "--classes",
        "bg,a,b,m",
        "--project",
        tmp_path / "p",
        "--budget",
        5,
        *COMMON,
    )
    assert res.exit_code == 0, res.output
    assert "cold start (no annotated patch yet: random picks); strategy random" in res.output
    assert len(read_table(tmp_path / "p" / "picks" / "round-001.csv")) == 5


def test_segmentation_bad_masks_are_one_line_errors(seg: dict[str, Path], tmp_path: Path) -> None:
    args = (
        "select",
        "--task",
        "segmentation",
        "--volumes",
        seg["volumes"],
        "--masks",
        seg["masks"],
        "--project",
        tmp_path / "p",
        *COMMON,
    )
    write_volume(seg["masks"] / "tomo_001.mrc", np.zeros((32, 32, 16), np.int16), 15.0)
    res = invoke(*args)
    assert res.exit_code == 2
    assert res.output.strip() == (
        f"Error: {seg['masks'] / 'tomo_001.mrc'}: label map is 32x32x16 but volume tomo_001.mrc "
        "is 32x32x32; masks must have their volume's shape"
    )
    bad = np.zeros((32, 32, 32), np.int16)
    bad[0, 0, 0] = 9
    write_volume(seg["masks"] / "tomo_001.mrc", bad, 15.0)
    res = invoke(*args)
    assert res.exit_code == 2
    assert res.output.strip() == (
        f"Error: {seg['masks'] / 'tomo_001.mrc'}: label values [9] are outside the class list "
        "0..3 (background, 4V8R-A, 7PBL, membrane; -1 = not annotated); fix the mask or the "
        "class list"
    )
    res = invoke("select", "--task", "segmentation", "--images", seg["volumes"])
    assert res.exit_code == 2 and "--task segmentation needs --volumes DIR" in res.output

"""Segmentation rounds in the project database: recorded steps, resume after a kill, status."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result
from cryoal.cli.main import cli

from cryoal.active import Project
from cryoal.io import read_table
from cryoal.tasks.seg_data import PatchPool, annotate_from_truth, read_mask

CLASSES = ["background", "4V8R-A", "7PBL", "membrane"]


def invoke(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def run_cli(args: list[str], kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m cryoal.cli ARGS`` in a real process, one torch thread."""
    env = {k: v for k, v in os.environ.items() if k != "CRYOAL_TEST_KILL_AT"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if kill_at is not None:
        env["CRYOAL_TEST_KILL_AT"] = kill_at
    return subprocess.run(
        [sys.executable, "-m", "cryoal.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def copy_example(seg_example: dict[str, Path], dest: Path) -> dict[str, Path]:
    base = seg_example["volumes"].parent
    shutil.copytree(base, dest)
    return {k: dest / v.relative_to(base) for k, v in seg_example.items()}


def select_args(seg: dict[str, Path], project: Path, *extra: object) -> list[str]:
    args: list[object] = [
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
        project,
        "--epochs",
        2,
        "--budget",
        4,
        "--strategy",
        "expected-gradnorm",
        "--no-progress",
        "--device",
        "cpu",
        "--seed",
        0,
        *extra,
    ]
    return [str(a) for a in args]


@pytest.fixture(scope="module")
def reference(
    seg_example: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Path], Path, pd.DataFrame]:
    """An uninterrupted round 1 in a real process: (data, project, picks table)."""
    base = tmp_path_factory.mktemp("seg-ref")
    seg = copy_example(seg_example, base / "seg")
    proj = base / "proj"
    res = run_cli(select_args(seg, proj))
    assert res.returncode == 0, res.stderr
    return seg, proj, read_table(proj / "picks" / "round-001.csv")


def test_round_is_recorded_in_the_project(
    reference: tuple[dict[str, Path], Path, pd.DataFrame],
) -> None:
    seg, proj, picks = reference
    pool = PatchPool.from_directories(seg["volumes"], seg["masks"], patch=16)
    with Project(proj, readonly=True) as p:
        assert p.get_meta("task") == "segmentation"
        assert p.pool_ids() == pool.ids and len(pool.ids) == 24
        assert p.pool_ids()[0] == "tomo_000.mrc@0,0,0"
        (rnd,) = p.rounds()
        assert (rnd.n, rnd.mode, rnd.strategy, rnd.status) == (
            1,
            "train",
            "expected-gradnorm",
            "picked",
        )
        assert rnd.n_labels == 8 and rnd.budget == 4 and rnd.seed == 0
        assert rnd.config["annotated"] == [pool.ids[i] for i in pool.labelled_indices()]
        assert all(a.startswith("tomo_000.mrc@") for a in rnd.config["annotated"])
        assert rnd.model_path == "models/round-001.pt" and (proj / rnd.model_path).is_file()
        assert rnd.trained and rnd.scored and rnd.picked
        assert set(rnd.metrics["train_dice"]) == set(pool.class_names)
        assert 0.0 <= rnd.metrics["train_mean_dice"] <= 1.0
        recorded = p.picks(1)
    assert [r.id for r in recorded] == picks["id"].tolist()
    assert [r.rank for r in recorded] == [1, 2, 3, 4]
    assert not set(picks["id"]) & set(rnd.config["annotated"])
    for r, row in zip(recorded, picks.to_dict("records"), strict=True):
        assert r.probabilities is not None
        assert sum(r.probabilities.values()) == pytest.approx(1.0)
        for c in pool.class_names:
            assert row[f"frac_{c}"] == pytest.approx(r.probabilities[c])
        assert r.score == pytest.approx(row["score"])
    for f in ("picks/round-001.star", "gallery/round-001.png", "config/round-001.json"):
        assert (proj / f).is_file()


@pytest.mark.parametrize(
    "point",
    [
        pytest.param("started", marks=pytest.mark.slow),
        pytest.param("training", marks=pytest.mark.slow),
        "scored",
        pytest.param("picks", marks=pytest.mark.slow),
    ],
)
def test_killed_round_resumes_to_the_same_picks(
    reference: tuple[dict[str, Path], Path, pd.DataFrame],
    seg_example: dict[str, Path],
    tmp_path: Path,
    point: str,
) -> None:
    _, _, expected = reference
    seg = copy_example(seg_example, tmp_path / "seg")
    proj = tmp_path / "proj"
    args = select_args(seg, proj)
    killed = run_cli(args, kill_at=point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with Project(proj, readonly=True) as p:
        (rnd,) = p.rounds()
        assert (
            rnd.status
            == {
                "started": "started",
                "training": "started",
                "scored": "scored",
                "picks": "scored",
            }[point]
        )
    # the expert annotates more while the run is down: the round keeps the patches it
    # started with, so the resumed picks equal an uninterrupted run's
    annotate_from_truth(expected.iloc[:1], seg["truth"], seg["masks"])
    resumed = run_cli(args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed round 1 from step '{rnd.status}'" in resumed.stdout
    assert "trained monai-unet on 8 annotated patches" in resumed.stdout
    got = read_table(proj / "picks" / "round-001.csv")
    pd.testing.assert_frame_equal(got.drop(columns="path"), expected.drop(columns="path"))
    assert not list(proj.glob("**/.*.tmp*"))
    with Project(proj, readonly=True) as p:
        assert [r.status for r in p.rounds()] == ["picked"]
        assert p.rounds()[0].n_labels == 8


def test_rerun_shows_the_round_then_next_round_after_annotation(
    seg_example: dict[str, Path], tmp_path: Path
) -> None:
    seg = copy_example(seg_example, tmp_path / "seg")
    proj = tmp_path / "proj"
    args = select_args(seg, proj)
    r1 = invoke(*args)
    assert r1.exit_code == 0, r1.output
    picks = read_table(proj / "picks" / "round-001.csv")
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert "round 1 is complete and no mask changed since; showing its picks again" in again.output
    assert read_table(proj / "picks" / "round-001.csv")["id"].tolist() == picks["id"].tolist()
    with Project(proj, readonly=True) as p:
        assert len(p.rounds()) == 1

    annotate_from_truth(picks, seg["truth"], seg["masks"])
    r2 = invoke(*args, "--budget", 3, "--strategy", "entropy")
    assert r2.exit_code == 0, r2.output
    assert "round 2 (segmentation): trained monai-unet on 12 annotated patches" in r2.output
    picks2 = read_table(proj / "picks" / "round-002.csv")
    with Project(proj, readonly=True) as p:
        rounds = p.rounds()
        assert [(r.n, r.n_labels, r.strategy, r.status) for r in rounds] == [
            (1, 8, "expected-gradnorm", "picked"),
            (2, 12, "entropy", "picked"),
        ]
        assert [r.id for r in p.picks(2)] == picks2["id"].tolist()
        assert not set(picks2["id"]) & set(rounds[1].config["annotated"])

    out = invoke("status", "--project", proj).output.splitlines()
    assert out[0] == f"project: {proj} (segmentation)"
    assert out[1] == (
        f"pool: 24 patches of 16³ from the crops in {seg['volumes'].resolve()}, 15 Å/voxel; "
        "classes background, 4V8R-A, 7PBL, membrane"
    )
    assert (
        out[2]
        == "annotated: 12 of 24 patches when round 2 started (labels are the label maps on disk)"
    )
    assert out[3] == "rounds:"
    assert out[4].split() == [
        "round",
        "mode",
        "strategy",
        "budget",
        "annotated",
        "status",
        "train",
        "Dice",
        "background",
        "4V8R-A",
        "7PBL",
        "membrane",
    ]
    for line, r in zip(out[5:7], rounds, strict=True):
        dice = r.metrics["train_dice"]
        want = [str(r.n), "train", r.strategy, str(r.budget), str(r.n_labels), "picked"]
        want += [f"{r.metrics['train_mean_dice']:.2f}"]
        want += ["-" if np.isnan(dice[c]) else f"{dice[c]:.2f}" for c in CLASSES]
        assert line.split() == want
    assert len(out) == 7
    assert invoke("label", "status", "--project", proj).output.strip() == out[2]
    refused = CliRunner().invoke(
        cli, ["label", "import", str(proj / "picks" / "round-002.csv"), "--project", str(proj)]
    )
    assert refused.exit_code == 2
    assert refused.output.strip() == (
        f"Error: project {proj} is a segmentation project: its labels are the voxel label maps "
        "(--masks); annotate those and re-run `cryoal select --task segmentation`"
    )


def test_unfinished_round_with_other_options_is_refused_then_restarted(
    seg_example: dict[str, Path], tmp_path: Path
) -> None:
    seg = copy_example(seg_example, tmp_path / "seg")
    proj = tmp_path / "proj"
    killed = run_cli(select_args(seg, proj, "--epochs", 1), kill_at="started")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    status = invoke("status", "--project", proj).output
    assert "round 1 is unfinished (started): re-run the same `cryoal select --task " in status
    res = CliRunner().invoke(cli, select_args(seg, proj, "--budget", 5, "--epochs", 1))
    assert res.exit_code == 2
    assert res.output.strip() == (
        f"Error: round 1 of {proj} is unfinished (started) and was started with budget=4; "
        "re-run with the same options to resume it, or pass --restart to discard it"
    )
    res = invoke(*select_args(seg, proj, "--budget", 5, "--epochs", 1, "--restart"))
    assert res.exit_code == 0, res.output
    with Project(proj, readonly=True) as p:
        assert [(r.n, r.budget, r.status) for r in p.rounds()] == [(1, 5, "picked")]


def test_masks_unchanged_on_disk_and_classification_project_refused(
    seg_example: dict[str, Path], tmp_path: Path
) -> None:
    seg = copy_example(seg_example, tmp_path / "seg")
    before = {p.name: read_mask(p)[0].copy() for p in seg["masks"].glob("*.mrc")}
    proj = tmp_path / "proj"
    with Project(proj) as p:
        p.set_meta("task", "image2d")
    res = CliRunner().invoke(cli, select_args(seg, proj))
    assert res.exit_code == 2
    assert res.output.strip() == (
        f"Error: project {proj} belongs to task 'image2d'; use a new --project for segmentation"
    )
    after = {p.name: read_mask(p)[0] for p in seg["masks"].glob("*.mrc")}
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[k], after[k]) for k in before)

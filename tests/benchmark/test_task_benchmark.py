"""Noise benchmark of the image2d and segmentation pipelines (library and CLI)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from cryoal.cli.main import cli

from cryoal.active import Project
from cryoal.benchmark import engine, noise
from cryoal.benchmark import tasks as tb
from cryoal.benchmark._blocks import block_dir
from cryoal.benchmark.report import RESULT_COLUMNS
from cryoal.errors import ConfigError
from cryoal.tasks.seg_data import read_mask

VALUES = [c for c in RESULT_COLUMNS if c != "wall_time"]


def test_presets_are_valid_and_sized() -> None:
    for (task, name), cfg in tb.TASK_PRESETS.items():
        assert cfg.task == task and cfg.preset == f"{task}-{name}"
        assert "random" in cfg.strategies
        assert cfg.initial + cfg.rounds * cfg.budget <= cfg.pool_size()
    assert tb.preset("segmentation").pool_size() == 3 * 8


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"strategies bald do not apply to segmentation"):
        tb.preset("segmentation", strategies=("random", "bald"))
    with pytest.raises(
        ConfigError, match=r"initial \+ rounds × budget = 28 exceeds the pool of 24 items less one"
    ):
        tb.preset("segmentation", rounds=6)
    with pytest.raises(
        ConfigError, match=r"no 'paper' preset for task 'image2d' \(presets: quick, standard\)"
    ):
        tb.preset("image2d", "paper")
    with pytest.raises(ConfigError, match="unknown option"):
        tb.preset("image2d", epoch=3)


@pytest.mark.parametrize("task", ["image2d", "segmentation"])
def test_tiny_run_through_noise_run_resumes(task: str, tmp_path: Path) -> None:
    cfg = tb.preset(
        task, strategies=("random", "expected-gradnorm"), snrs=(math.inf,), rounds=1, epochs=2
    )
    table = noise.run(cfg, tmp_path / "b")  # the subtomogram entry point dispatches
    assert list(table.columns) == list(RESULT_COLUMNS)
    assert len(table) == 2 * 2 and set(table["strategy"]) == {"random", "expected-gradnorm"}
    assert list(table["n_labels"]) == [cfg.initial, cfg.initial + cfg.budget] * 2
    assert (
        table[["accuracy", "balanced_accuracy", "macro_f1"]]
        .apply(lambda c: c.between(0, 1))
        .all()
        .all()
    )
    # same starting set for every strategy of a seed: round 0 identical
    r0 = table[table["round"] == 0]
    assert r0["accuracy"].nunique() == 1
    assert (tmp_path / "b" / "summary.md").is_file() and (tmp_path / "b" / "config.json").is_file()
    again = noise.run(cfg, tmp_path / "b")  # resumes: nothing left to run
    pd.testing.assert_frame_equal(again, table)
    with pytest.raises(ConfigError, match="holds results of a benchmark with other options"):
        noise.run(cfg.replace(epochs=3), tmp_path / "b")
    # every block ran in its own project through the round engine: rounds 0 and 1, then
    # the last round's single random pick
    folder = block_dir(tmp_path / "b", (math.inf, "expected-gradnorm", 0))
    assert not (folder / "models").exists()  # checkpoints dropped once the rows are recorded
    with Project(folder) as project:
        rounds = project.rounds()
        assert [(r.status, r.strategy, r.budget) for r in rounds] == [
            ("picked", "expected-gradnorm", cfg.budget),
            ("picked", "random", 1),
        ]
        assert [r.n_labels for r in rounds] == list(table["n_labels"][:2])


@pytest.mark.parametrize("task", ["image2d", "segmentation"])
def test_block_killed_half_way_resumes_to_the_uninterrupted_rows(task: str, tmp_path: Path) -> None:
    """SIGKILL once round 0 is picked but not answered; the rerun gives the same rows."""
    cfg = tb.preset(task, strategies=("entropy",), snrs=(math.inf,), rounds=1, epochs=2)
    cfg = cfg.replace(device="cpu")
    reference = engine.run(cfg)  # uninterrupted, in a temporary folder
    out = tmp_path / "b"
    code = (
        "import json, sys; from cryoal.benchmark import engine, presets; "
        "engine.run(presets.from_dict(json.loads(sys.argv[1])), sys.argv[2])"
    )
    env = {**os.environ, "CRYOAL_TEST_KILL_AT": "picked", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(cfg.to_dict()), str(out)],
        env={**env, "MKL_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (out / "results.csv").exists()
    folder = block_dir(out, (math.inf, "entropy", 0))
    with Project(folder) as project:
        (first,) = project.rounds()
        assert first.status == "picked" and first.n_labels == cfg.initial
        picked = [p.id for p in project.picks(first.n)]
        if task == "image2d":  # the oracle has not answered the picks yet
            assert len(project.label_map()) == cfg.initial
        else:  # no picked patch is annotated in the block's masks yet
            for pid in picked:
                crop, corner = pid.split("@")
                z, y, x = (int(v) for v in corner.split(","))
                mask = read_mask(folder / "masks" / crop)[0]
                b = cfg.box
                assert (mask[z : z + b, y : y + b, x : x + b] == -1).all()
    table = engine.run(cfg, out)
    pd.testing.assert_frame_equal(table[VALUES], reference[VALUES])
    with Project(folder) as project:  # round 0 was answered, not redone
        assert [p.id for p in project.picks(first.n)] == picked
        assert [r.n for r in project.rounds()] == [first.n, first.n + 1]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["image2d", "segmentation"])
def test_quick_preset_through_the_cli(task: str, tmp_path: Path) -> None:
    out = tmp_path / task
    res = CliRunner().invoke(
        cli,
        [
            "benchmark",
            "noise",
            "--task",
            task,
            "--preset",
            "quick",
            "--snr",
            "inf",
            "--strategies",
            "random,expected-gradnorm",
            "--device",
            "cpu",
            "--out",
            str(out),
        ],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    cfg = tb.preset(task)
    assert f"noise benchmark ({task}-quick (modified))" in res.output
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 2 * (cfg.rounds + 1)
    assert (out / "curves_snrinf.png").is_file() or list(out.glob("curves_snr*.png"))

"""Noise benchmark of the image2d and segmentation pipelines (library and CLI)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from cryoal.cli.main import cli

from cryoal.benchmark import noise
from cryoal.benchmark import tasks as tb
from cryoal.benchmark.report import RESULT_COLUMNS
from cryoal.errors import ConfigError


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
        ConfigError, match=r"initial \+ rounds × budget = 28 exceeds the pool of 24"
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

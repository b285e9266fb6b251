"""The one benchmark engine: every task's tiny config through engine.run, rows and resume."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cryoal import tasks
from cryoal.benchmark import engine, noise, presets
from cryoal.benchmark import tasks as task_bench
from cryoal.benchmark.report import RESULT_COLUMNS
from cryoal.errors import ConfigError

Factory = Callable[..., noise.NoiseBenchmarkConfig]
VALUES = [c for c in RESULT_COLUMNS if c != "wall_time"]


def _tiny(task: str, tiny_config: Factory) -> Any:
    """Two strategies, one SNR, one seed, rounds 0 and 1: seconds on a CPU."""
    if task == presets.DEFAULT_TASK:
        return tiny_config(rounds=1, robustness=False)
    return task_bench.preset(
        task,
        strategies=("random", "expected-gradnorm"),
        snrs=(math.inf,),
        rounds=1,
        epochs=2,
        device="cpu",
    )


def test_every_registered_task_is_benchmarked() -> None:
    assert presets.benchmarked_tasks() == tasks.available()
    for task in tasks.available():
        cfg = presets.preset("quick", task=task)
        assert cfg.task == task and isinstance(cfg, presets.config_type(task))
        assert "quick" in presets.preset_names(task)
    assert presets.preset_names() == ["quick", "standard", "low-budget", "paper"]
    with pytest.raises(ConfigError, match="task 'volumes' has no benchmark"):
        presets.config_type("volumes")


@pytest.mark.parametrize("task", ["classification3d", "image2d", "segmentation"])
def test_tiny_config_rows_are_deterministic(task: str, tiny_config: Factory) -> None:
    cfg = _tiny(task, tiny_config)
    first = engine.run(cfg)
    second = engine.run(cfg)
    # schema: the report's columns and dtypes, one row per (snr, strategy, seed, round)
    assert list(first.columns) == list(RESULT_COLUMNS)
    assert pd.api.types.is_string_dtype(first["strategy"])
    assert first.drop(columns="strategy").dtypes.astype(str).to_dict() == {
        "snr": "float64",
        "seed": "int64",
        "round": "int64",
        "n_labels": "int64",
        "accuracy": "float64",
        "balanced_accuracy": "float64",
        "macro_f1": "float64",
        "wall_time": "float64",
    }
    strategies = list(cfg.strategies)
    assert first["strategy"].tolist() == [s for s in strategies for _ in range(2)]
    assert first["round"].tolist() == [0, 1] * 2
    assert first["n_labels"].tolist() == [cfg.initial, cfg.initial + cfg.budget] * 2
    assert set(first["snr"]) == set(cfg.snrs) and set(first["seed"]) == {0}
    assert first[["accuracy", "balanced_accuracy", "macro_f1"]].stack().between(0, 1).all()
    assert (first["wall_time"] > 0).all()
    # values: the same seed gives the same rows; round 0 shares its labelled set
    pd.testing.assert_frame_equal(first[VALUES], second[VALUES])
    r0 = first[first["round"] == 0]
    assert r0["accuracy"].nunique() == 1 and r0["macro_f1"].nunique() == 1
    assert list(first.attrs["robustness"].columns)[:4] == [
        "train_snr",
        "test_snr",
        "seed",
        "accuracy",
    ]


def test_resume_rules_are_the_same_for_every_task(tmp_path: Path) -> None:
    """Device and strategies may change (the run extends); training options may not."""
    cfg = task_bench.preset(
        "image2d", strategies=("random",), snrs=(math.inf,), rounds=1, epochs=2, device="cpu"
    )
    out = tmp_path / "b"
    table = engine.run(cfg, out)
    seen: list[tuple[Any, ...]] = []
    again = engine.run(
        cfg.replace(device="auto", strategies=("random", "entropy")),
        out,
        on_block=lambda kind, key, rows: seen.append(key),
    )
    assert seen == [(math.inf, "entropy", 0)]  # the random block is kept
    pd.testing.assert_frame_equal(again[again["strategy"] == "random"][VALUES], table[VALUES])
    recorded = json.loads((out / "config.json").read_text())["arguments"]
    assert recorded["benchmark"]["strategies"] == ["random", "entropy"]
    with pytest.raises(ConfigError) as info:
        engine.run(cfg.replace(epochs=3), out)
    assert "other options (epochs 2 → 3)" in str(info.value)


def test_config_files_of_every_task_round_trip() -> None:
    for task in tasks.available():
        cfg = presets.preset("quick", task=task)
        data = json.loads(json.dumps(cfg.to_dict()))
        again = presets.from_dict(data)
        assert type(again) is type(cfg)
        assert json.loads(json.dumps(again.to_dict())) == data
    assert presets.from_dict({"epochs": 3}).task == presets.DEFAULT_TASK
    with pytest.raises(ConfigError, match="noise benchmark config: unknown option"):
        presets.from_dict({"epoch": 3})


def test_model_is_checked_against_the_tasks_model_kind() -> None:
    cfg = task_bench.preset("segmentation", model="cnn2d", snrs=(math.inf,), rounds=1)
    with pytest.raises(ConfigError, match="unknown model 'cnn2d'; available segmentation models"):
        engine.run(cfg)

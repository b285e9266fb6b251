"""`cryoal benchmark noise`: options, one-line errors, a tiny run, kill + resume, the quick preset."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from _simpool import TINY_BENCHMARK
from click.testing import CliRunner
from cryoal.cli.main import cli

from cryoal.benchmark import noise, report

TINY = dict(TINY_BENCHMARK)
COLUMNS = [c for c in report.RESULT_COLUMNS if c != "wall_time"]


def _tiny_file(folder: Path) -> Path:
    path = folder / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


def _cryoal() -> list[str]:
    beside = Path(sys.executable).with_name("cryoal")
    found = str(beside) if beside.exists() else shutil.which("cryoal")
    return [found] if found else [sys.executable, "-m", "cryoal.cli"]


def test_help_has_examples() -> None:
    result = CliRunner().invoke(cli, ["benchmark", "noise", "--help"])
    assert result.exit_code == 0
    assert "Example usage:" in result.output
    assert "cryoal benchmark noise --preset quick --out bench/quick" in result.output
    listed = CliRunner().invoke(cli, ["--help"])
    assert "benchmark" in listed.output


def test_print_config_paper() -> None:
    result = CliRunner().invoke(cli, ["benchmark", "noise", "--preset", "paper", "--print-config"])
    assert result.exit_code == 0, result.output
    assert "snrs: ['inf', 0.1, 0.05, 0.03, 0.01]" in result.output
    assert "seeds: [0, 1, 2, 3, 4]" in result.output
    assert "box: 32" in result.output
    assert "expected time: " + noise.PRESET_RUNTIMES["paper"] in result.output


def test_overrides_apply() -> None:
    result = CliRunner().invoke(
        cli,
        [
            "benchmark",
            "noise",
            "--preset",
            "quick",
            "--snr",
            "inf,0.05",
            "--seeds",
            "3",
            "--strategies",
            "random,margin",
            "--model",
            "dsrf3d",
            "--device",
            "cpu",
            "--print-config",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "snrs: ['inf', 0.05]" in result.output
    assert "seeds: [0, 1, 2]" in result.output
    assert "strategies: ['random', 'margin']" in result.output
    assert "model: dsrf3d" in result.output and "model_kwargs: {}" in result.output
    assert "device: cpu" in result.output
    assert "preset: quick (modified)" in result.output
    assert "expected time: n/a (custom)" in result.output


def test_low_budget_options() -> None:
    shown = CliRunner().invoke(
        cli, ["benchmark", "noise", "--preset", "low-budget", "--print-config"]
    )
    assert shown.exit_code == 0, shown.output
    assert "schedule: [20, 40, 80, 160, 280, 400]" in shown.output
    assert "initial_from: cold-start" in shown.output
    assert "expected time: " + noise.PRESET_RUNTIMES["low-budget"] in shown.output
    result = CliRunner().invoke(
        cli,
        [
            "benchmark",
            "noise",
            "--preset",
            "quick",
            "--pretrain-epochs",
            "7",
            "--schedule",
            "8, 16,32",
            "--initial-from",
            "cold-start",
            "--strategies",
            "random,random@scratch,auto",
            "--print-config",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "pretrain_epochs: 7" in result.output
    assert "schedule: [8, 16, 32]" in result.output
    assert "initial_from: cold-start" in result.output
    assert "strategies: ['random', 'random@scratch', 'auto']" in result.output
    assert "preset: quick (modified)" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--schedule", "8,x", "--out", "x"], "--schedule takes comma-separated label counts"),
        (["--schedule", "16,8", "--out", "x"], "schedule must be increasing label counts"),
        (
            ["--strategies", "random,auto@scratch", "--out", "x"],
            "auto@scratch: the @scratch arms need pretrain_epochs > 0",
        ),
        (["--snr", "0.1,abc", "--out", "x"], "'abc' is not a number (use e.g. inf,0.1,0.05)"),
        (["--snr", "0.1,-2", "--out", "x"], "Error: noise benchmark config: snrs must be > 0"),
        (
            ["--strategies", "random,gradnrom", "--out", "x"],
            "Error: unknown strategy(ies) gradnrom",
        ),
        ([], "Error: --out is required"),
        (["--device", "tpu", "--out", "x"], "Error: unknown device 'tpu'"),
    ],
)
def test_bad_input_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["benchmark", "noise", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_config_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"epochs": 2, "epoch": 3}')
    result = CliRunner().invoke(
        cli, ["benchmark", "noise", "--config", str(bad), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert result.output.strip() == "Error: noise benchmark config: unknown option(s) epoch"


def test_tiny_run_through_cli(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["benchmark", "noise", "--config", str(_tiny_file(tmp_path)), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 2 * 3
    final = report.final_table(table).set_index("strategy")
    line = f"SNR    0.5  random               {final.loc['random', 'mean']:.3f} ± n/a  (1 seeds, 10 labels)"
    assert line in result.output
    assert (out / "curves_snr0.5.png").exists() and (out / "summary.md").exists()
    assert not (out / "robustness.png").exists()  # robustness is off in this config
    record = json.loads((out / "config.json").read_text())
    assert record["arguments"]["benchmark"]["epochs"] == 2
    assert record["arguments"]["command"]["config_file"] == str(tmp_path / "tiny.json")
    # an earlier run's config.json reproduces it
    again = CliRunner().invoke(
        cli, ["benchmark", "noise", "--config", str(out / "config.json"), "--print-config"]
    )
    assert "preset: tiny-cli" in again.output


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_table(tmp_path: Path) -> None:
    """SIGKILL inside the first run's first round (loop test hook), re-run, compare."""
    config = _tiny_file(tmp_path)
    reference = tmp_path / "reference"
    killed = tmp_path / "killed"
    base = [*_cryoal(), "benchmark", "noise", "--config", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*base, "--out", str(reference)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    first = subprocess.run(
        [*base, "--out", str(killed)],
        env={**env, "CRYOAL_TEST_KILL_AT": "scored"},
        capture_output=True,
        text=True,
    )
    assert first.returncode == -9
    assert not (killed / "results.csv").exists()
    second = subprocess.run([*base, "--out", str(killed)], env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-2000:]
    pd.testing.assert_frame_equal(
        pd.read_csv(killed / "results.csv")[COLUMNS],
        pd.read_csv(reference / "results.csv")[COLUMNS],
    )


@pytest.mark.slow
def test_quick_preset(tmp_path: Path) -> None:
    """The quick preset's shape end to end, at a test's cost: files, and numbers that agree.

    The quick preset's data, strategies, SNRs, seeds and robustness matrix, from a config
    file with 2 rounds of 4 epochs instead of 4 of 30 (36 + 4 trainings, not 60 + 4).
    """
    out = tmp_path / "quick"
    cfg = noise.preset("quick").replace(
        preset="quick-test", rounds=2, epochs=4, robustness_epochs=15
    )
    path = tmp_path / "quick.json"
    path.write_text(json.dumps(cfg.to_dict()))
    result = CliRunner().invoke(
        cli, ["benchmark", "noise", "--config", str(path), "--device", "cpu", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert len(cfg.snrs) == 2 and len(cfg.seeds) == 2 and len(cfg.strategies) == 3
    for name in (
        "results.csv",
        "robustness.csv",
        "summary.md",
        "robustness.png",
        "config.json",
        "curves_snrinf.png",
        "curves_snr0.1.png",
    ):
        assert (out / name).exists(), name
    table = pd.read_csv(out / "results.csv")
    assert len(table) == len(cfg.snrs) * len(cfg.strategies) * len(cfg.seeds) * (cfg.rounds + 1)
    expected_n = [cfg.initial + r * cfg.budget for r in range(cfg.rounds + 1)]
    for _, run in table.groupby(["snr", "strategy", "seed"]):
        assert run["n_labels"].tolist() == expected_n
    # round 0 is the same model for every strategy of a seed
    r0 = table[table["round"] == 0].groupby(["snr", "seed"])["accuracy"].nunique()
    assert (r0 == 1).all()
    summary = (out / "summary.md").read_text()
    for (snr, strategy), runs in table[table["round"] == cfg.rounds].groupby(["snr", "strategy"]):
        acc = runs["accuracy"]
        assert (
            f"| {report.format_snr(snr)} | {strategy} | 2 | {expected_n[-1]} | {acc.mean():.3f} ± {acc.std():.3f} |"
            in summary
        )
    robust = pd.read_csv(out / "robustness.csv")
    assert len(robust) == len(cfg.snrs) ** 2
    # trained and tested without noise beats chance (4 classes) by a wide margin
    clean = robust[(robust["train_snr"] == math.inf) & (robust["test_snr"] == math.inf)]
    assert float(clean["accuracy"].iloc[0]) > 0.5

"""The noise benchmark through its Python API: config, presets, a tiny run, resume."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cryoal.benchmark import noise, report
from cryoal.errors import ConfigError

Factory = Callable[..., noise.NoiseBenchmarkConfig]


class Interrupt(Exception):
    """Raised by the test hook to stop a benchmark after its first block."""


# ---------------------------------------------------------------------- config
def test_presets_follow_the_brief() -> None:
    quick = noise.preset("quick")
    assert 16 <= quick.box <= 24 and 3 <= len(quick.classes) <= 4
    assert len(quick.snrs) == 2 and len(quick.seeds) == 2
    assert {"random", "entropy-gradnorm"} <= set(quick.strategies) and len(quick.strategies) <= 3
    paper = noise.preset("paper")
    assert len(paper.classes) == 10 and paper.box == 32 and len(paper.seeds) == 5
    assert paper.snrs == (math.inf, 0.1, 0.05, 0.03, 0.01)
    assert (
        set(noise.PRESET_RUNTIMES)
        == set(noise.PRESETS)
        == {
            "quick",
            "standard",
            "low-budget",
            "paper",
        }
    )
    assert noise.preset("quick", seeds=(3,)).seeds == (3,)


def test_low_budget_preset_spans_5_to_100_labels_per_class() -> None:
    low = noise.preset("low-budget")
    per_class = [n / len(low.classes) for n in low.label_counts()]
    assert per_class[0] == 5 and per_class[-1] == 100
    assert low.initial_from == "cold-start" and low.pretrain_epochs > 0
    assert len(low.seeds) >= 3 and {0.1, 0.05} <= set(low.snrs)
    new = {"auto", "typicality", "diverse-entropy-gradnorm", "diverse-expected-gradnorm"}
    assert new | {"random", "random@scratch"} <= set(low.strategies)


def test_label_counts_and_pick_sizes(tiny_config: Factory) -> None:
    cfg = tiny_config()  # initial 4, budget 3, rounds 2
    assert cfg.label_counts() == (4, 7, 10)
    assert cfg.pick_sizes() == (3, 3, 3)  # the last round picks a budget, as always
    sched = tiny_config(schedule=(4, 6, 9))
    assert sched.label_counts() == (4, 6, 9)
    assert sched.pick_sizes() == (2, 3, 1)  # the unevaluated last pick is one volume
    assert "budget: 3  (replaced by schedule)" in sched.describe()
    assert "budget: 3\n" in cfg.describe()


def test_split_arm_and_cold_starts() -> None:
    assert noise.split_arm("random@scratch") == ("random", True)
    assert noise.split_arm("diverse-entropy-gradnorm") == ("diverse-entropy-gradnorm", False)
    assert [
        noise.cold_start_of(s)
        for s in ("auto", "typicality", "diverse-expected-gradnorm", "coreset", "entropy")
    ] == ["auto", "typicality", "typicality", "coreset", "random"]


def test_unknown_preset_suggests() -> None:
    with pytest.raises(ConfigError, match="unknown preset 'quik'. Did you mean 'quick'?"):
        noise.preset("quik")


def test_config_round_trips_through_json(tiny_config: Factory) -> None:
    cfg = tiny_config(snrs=(math.inf, 0.1))
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["snrs"] == ["inf", 0.1]
    assert noise.NoiseBenchmarkConfig.from_dict(data) == cfg
    assert "strategies: ['random', 'entropy-gradnorm']" in cfg.describe()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"snrs": (0.1, -1.0)}, "snrs must be > 0 (inf = no noise), got [0.1, -1.0]"),
        ({"strategies": ("random", "random")}, "strategies repeat: random, random"),
        ({"classes": ("7PBL",)}, "classes must be at least two distinct names, got ['7PBL']"),
        ({"task": "segmentation"}, "task 'segmentation' is not benchmarked (use classification3d)"),
        (
            {"rounds": 5},
            "initial + (rounds + 1) × budget = 22 labels exceed the pool of 20 (n_pool 10 × 2 classes",
        ),
        ({"initial": 1}, "initial must be >= 2"),
        ({"schedule": (4, 4, 8)}, "schedule must be increasing label counts starting at >= 2"),
        ({"schedule": (1, 4)}, "schedule must be increasing label counts starting at >= 2"),
        (
            {"schedule": (4, 20)},
            "the schedule's last label count 20 (+1: the loop also picks after the last "
            "evaluated round) exceeds the pool of 20",
        ),
        ({"initial_from": "typical"}, "initial_from must be one of balanced-random, cold-start"),
        ({"pretrain_epochs": -1}, "pretrain_epochs must be >= 0"),
        (
            {"strategies": ("random", "random@scratch")},
            "random@scratch: the @scratch arms need pretrain_epochs > 0",
        ),
    ],
)
def test_config_errors(tiny_config: Factory, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        tiny_config(**changes)
    assert message in str(info.value)


def test_unknown_option_is_named(tiny_config: Factory) -> None:
    with pytest.raises(ConfigError, match="unknown option\\(s\\) epoch"):
        tiny_config().replace(epoch=3)


def test_initial_indices_balanced_and_deterministic() -> None:
    labels = ["a"] * 10 + ["b"] * 6 + ["c"] * 2
    first = noise.initial_indices(labels, 7, seed=3)
    assert first == noise.initial_indices(labels, 7, seed=3)
    assert first != noise.initial_indices(labels, 7, seed=4)
    assert len(set(first)) == 7 and first == sorted(first)
    counts = pd.Series([labels[i] for i in first]).value_counts().to_dict()
    assert counts == {"a": 3, "b": 2, "c": 2}
    # more than a class holds: the others fill in
    counts = pd.Series(
        [labels[i] for i in noise.initial_indices(labels, 12, seed=0)]
    ).value_counts()
    assert counts.to_dict() == {"a": 5, "b": 5, "c": 2}
    with pytest.raises(ConfigError, match="initial labelled set of 19 exceeds the pool of 18"):
        noise.initial_indices(labels, 19, seed=0)


# ---------------------------------------------------------------------- a tiny run
def test_tiny_run_table(tiny_run: tuple[Path, pd.DataFrame], tiny_config: Factory) -> None:
    out, table = tiny_run
    cfg = tiny_config()
    assert list(table.columns) == list(report.RESULT_COLUMNS)
    assert len(table) == len(cfg.strategies) * len(cfg.seeds) * (cfg.rounds + 1)
    assert list(table["strategy"].unique()) == list(cfg.strategies)
    for _, run in table.groupby(["strategy", "seed"]):
        assert run["round"].tolist() == [0, 1, 2]
        assert run["n_labels"].tolist() == [4, 7, 10]  # initial + r × budget
    n_test = cfg.n_test * len(cfg.classes)
    for col in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert table[col].between(0, 1).all()
    # accuracy on 12 test volumes is a multiple of 1/12
    assert np.allclose(table["accuracy"] * n_test, np.round(table["accuracy"] * n_test))
    assert (table["wall_time"] > 0).all()
    # the same initial set for every strategy: round 0 trains on the same labels with the
    # same seed, so round-0 models agree
    r0 = table[table["round"] == 0].set_index("strategy")
    assert r0.loc["random", "accuracy"] == r0.loc["entropy-gradnorm", "accuracy"]


def test_tiny_run_files(tiny_run: tuple[Path, pd.DataFrame]) -> None:
    out, table = tiny_run
    names = {p.name for p in out.iterdir()}
    assert {
        "results.csv",
        "robustness.csv",
        "summary.md",
        "curves_snr0.5.png",
        "robustness.png",
        "config.json",
        "data",
        "runs",
    } <= names
    on_disk = pd.read_csv(out / "results.csv")
    pd.testing.assert_frame_equal(on_disk, table, check_dtype=False)
    record = json.loads((out / "config.json").read_text())
    assert record["arguments"]["benchmark"]["preset"] == "tiny-test"
    assert record["versions"]["torch"]
    assert record["arguments"]["physics"] == noise.manifest_physics("snr-benchmark")
    robust = table.attrs["robustness"]
    assert robust[["train_snr", "test_snr", "seed"]].values.tolist() == [[0.5, 0.5, 0]]
    summary = (out / "summary.md").read_text()
    final = report.final_table(table).set_index("strategy")
    acc = final.loc["entropy-gradnorm", "mean"]
    assert f"| 0.5 | entropy-gradnorm | 1 | 10 | {acc:.3f} ± n/a |" in summary
    # checkpoints are dropped once a block is recorded (keep_models=False)
    assert not (out / "runs" / "snr-0.5" / "random" / "seed-0" / "models").exists()
    assert (out / "data" / "snr-0.5" / "pool.mrcs").exists()


def test_resume_after_interrupt_equals_uninterrupted(
    tmp_path: Path, tiny_run: tuple[Path, pd.DataFrame], tiny_config: Factory
) -> None:
    _, reference = tiny_run
    seen: list[tuple[Any, ...]] = []

    def stop_after_first(kind: str, key: tuple[Any, ...], rows: list[dict[str, Any]]) -> None:
        seen.append(key)
        raise Interrupt

    with pytest.raises(Interrupt):
        noise.run(tiny_config(), tmp_path, on_block=stop_after_first)
    partial = pd.read_csv(tmp_path / "results.csv")
    assert seen == [(0.5, "random", 0)]
    assert set(partial["strategy"]) == {"random"} and len(partial) == 3
    assert not (tmp_path / "robustness.csv").exists()

    resumed_blocks: list[tuple[Any, ...]] = []
    table = noise.run(
        tiny_config(), tmp_path, on_block=lambda k, key, r: resumed_blocks.append(key)
    )
    assert resumed_blocks == [
        (0.5, "entropy-gradnorm", 0),
        (0.5, 0),
    ]  # the random block is not redone
    cols = [c for c in report.RESULT_COLUMNS if c != "wall_time"]
    pd.testing.assert_frame_equal(table[cols], reference[cols])
    robust_cols = ["train_snr", "test_snr", "seed", "accuracy", "balanced_accuracy", "macro_f1"]
    pd.testing.assert_frame_equal(
        table.attrs["robustness"][robust_cols], reference.attrs["robustness"][robust_cols]
    )

    # a third run has nothing left to do
    again: list[tuple[Any, ...]] = []
    noise.run(tiny_config(), tmp_path, on_block=lambda k, key, r: again.append(key))
    assert again == []


def test_resume_refuses_other_options(tmp_path: Path, tiny_config: Factory) -> None:
    noise.run(tiny_config(strategies=("random",), robustness=False), tmp_path)
    with pytest.raises(ConfigError) as info:
        noise.run(tiny_config(strategies=("random",), robustness=False, epochs=3), tmp_path)
    assert "physics" not in str(info.value)
    assert str(info.value) == (
        f"{tmp_path} holds results of a benchmark with other options (epochs 2 → 3); re-run "
        "with the same options to resume, pass --no-resume to start over, or choose another --out"
    )
    # --no-resume starts over with the new options
    table = noise.run(
        tiny_config(strategies=("random",), robustness=False, epochs=3), tmp_path, resume=False
    )
    assert len(table) == 3
    assert "robustness" not in {p.stem for p in tmp_path.glob("*.png")}


def test_unknown_strategy_and_model(tiny_config: Factory) -> None:
    with pytest.raises(ConfigError, match="unknown strategy\\(ies\\) gradnrom; available: "):
        noise.run(tiny_config(strategies=("random", "gradnrom")))
    with pytest.raises(ConfigError, match="unknown model 'dsrf'"):
        noise.run(tiny_config(model="dsrf"))


def test_run_without_out_keeps_nothing(
    tiny_config: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    # A private temp folder: other workers' benchmarks use the shared one at the same time.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    table = noise.run(tiny_config(strategies=("random",), rounds=1))
    assert table["n_labels"].tolist() == [4, 7]
    assert list(table.attrs["robustness"]["test_snr"]) == [0.5]
    assert list(tmp_path.glob("cryoal-*")) == []


def test_manifest_physics_of_the_snr_benchmark() -> None:
    physics = noise.manifest_physics("snr-benchmark")
    assert physics["tilt_range"] == [-60.0, 60.0]
    assert physics["defocus_um"] == 5.0 and physics["voltage_kv"] == 300.0
    assert physics["noise"] == "two-stage"


@pytest.mark.cuda
def test_tiny_run_on_cuda(tmp_path: Path, tiny_config: Factory) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    table = noise.run(tiny_config(device="cuda", robustness=False), tmp_path)
    assert len(table) == 6 and table["accuracy"].between(0, 1).all()
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["arguments"]["device_resolved"].startswith("cuda")


def test_resume_refuses_changed_manifest_physics(tmp_path: Path, tiny_config: Factory) -> None:
    from cryoal.manifests import load_manifest

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(load_manifest("snr-benchmark").text)
    cfg = tiny_config(strategies=("random",), robustness=False, rounds=1, manifest=str(recipe))
    noise.run(cfg, tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "data" / "snr-0.5" / "meta.json").read_text())
    assert meta["physics"]["defocus_um"] == 5.0
    recipe.write_text(recipe.read_text().replace("defocus_um: 5.0", "defocus_um: 3.0"))
    with pytest.raises(ConfigError, match="other options \\(physics .*'defocus_um': 3.0"):
        noise.run(cfg, tmp_path / "out")


# ---------------------------------------------------------------------- low-budget options
@pytest.fixture(scope="module")
def cold_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_config: Factory
) -> tuple[Path, pd.DataFrame, noise.NoiseBenchmarkConfig]:
    """A schedule + cold start + pretrained-encoder run of three arms."""
    cfg = tiny_config(
        strategies=("random", "random@scratch", "auto"),
        schedule=(4, 6, 9),
        initial_from="cold-start",
        pretrain_epochs=1,
        robustness=False,
    )
    out = tmp_path_factory.mktemp("cold-bench")
    return out, noise.run(cfg, out), cfg


def _rounds(out: Path, arm: str) -> list[Any]:
    from cryoal.active import Project

    with Project(out / "runs" / "snr-0.5" / arm / "seed-0") as project:
        return project.rounds()


def test_schedule_rows_at_the_scheduled_label_counts(
    cold_run: tuple[Path, pd.DataFrame, noise.NoiseBenchmarkConfig],
) -> None:
    out, table, cfg = cold_run
    assert list(table["strategy"].unique()) == list(cfg.strategies)
    for _, run in table.groupby("strategy"):
        assert run["n_labels"].tolist() == [4, 6, 9]
        assert run["round"].tolist() == [0, 1, 2]  # the untrained cold round is not a row


def test_cold_start_picks_the_first_labels_with_the_strategys_own_cold_start(
    cold_run: tuple[Path, pd.DataFrame, noise.NoiseBenchmarkConfig],
) -> None:
    out, _, _ = cold_run
    for arm, choice in (("auto", "typicality"), ("random", None)):
        rounds = _rounds(out, arm)
        assert rounds[0].mode == "cold" and rounds[0].n_labels == 0 and rounds[0].budget == 4
        assert (rounds[0].metrics.get("selection") or {}).get("choice") == choice
        # schedule 4 → 6 → 9, then the single unevaluated pick
        assert [r.budget for r in rounds[1:]] == [2, 3, 1]


def test_pretrained_encoder_is_shared_except_by_scratch_arms(
    cold_run: tuple[Path, pd.DataFrame, noise.NoiseBenchmarkConfig],
) -> None:
    out, _, _ = cold_run
    assert (out / "data" / "snr-0.5" / "models" / "encoder.pt").is_file()
    for arm, encoder in (("random", "models/encoder.pt"), ("auto", "models/encoder.pt")):
        assert {r.metrics["encoder"] for r in _rounds(out, arm)} == {encoder}
    assert {r.metrics["encoder"] for r in _rounds(out, "random@scratch")} == {None}


def test_low_budget_summary_compares_with_both_randoms(
    cold_run: tuple[Path, pd.DataFrame, noise.NoiseBenchmarkConfig],
) -> None:
    out, _, _ = cold_run
    text = (out / "summary.md").read_text(encoding="utf-8")
    assert "labels to reach random's final | labels to reach random@scratch's final |" in text
    assert "## Gap to random at every budget" in text
    assert "## Gap to random@scratch at every budget" in text
    assert "| labels | random | random@scratch | auto |" in text


def test_results_recorded_before_schedules_existed_still_resume(
    tiny_run: tuple[Path, pd.DataFrame], tiny_config: Factory, tmp_path: Path
) -> None:
    import shutil

    src, table = tiny_run
    out = tmp_path / "old"
    shutil.copytree(src, out)
    path = out / "config.json"
    recorded = json.loads(path.read_text(encoding="utf-8"))
    for key in ("schedule", "initial_from", "pretrain_epochs"):
        del recorded["arguments"]["benchmark"][key]
    path.write_text(json.dumps(recorded), encoding="utf-8")
    again = noise.run(tiny_config(), out)  # nothing to do: every block is in results.csv
    cols = [c for c in report.RESULT_COLUMNS if c != "wall_time"]
    pd.testing.assert_frame_equal(again[cols], table[cols])


def test_label_balance_by_hand() -> None:
    b = noise.label_balance(["a", "a", "a", "b"], ["a", "b", "c", "d"])
    assert b["classes_seen"] == 2 and b["min_share"] == 0.0 and b["max_share"] == 0.75
    # −(0.75 ln 0.75 + 0.25 ln 0.25) / ln 4
    assert b["class_entropy"] == pytest.approx(0.5623351446188083 / math.log(4))
    even = noise.label_balance(["a", "b", "c", "d"] * 3, ["a", "b", "c", "d"])
    assert even == {"classes_seen": 4, "min_share": 0.25, "max_share": 0.25, "class_entropy": 1.0}
    assert noise.label_balance([], ["a", "b"])["classes_seen"] == 0


def test_balance_table_matches_the_labelled_sets(
    cold_run: tuple[Path, pd.DataFrame, noise.NoiseBenchmarkConfig],
) -> None:
    from cryoal.active import Project

    out, table, cfg = cold_run
    balance = pd.read_csv(out / "balance.csv")
    assert list(balance.columns) == list(noise.BALANCE_COLUMNS)
    assert len(balance) == len(table)
    assert sorted(balance["n_labels"].unique()) == [4, 6, 9]
    # the final labelled set of the auto run, recounted from its project
    with Project(out / "runs" / "snr-0.5" / "auto" / "seed-0") as project:
        rnd = [r for r in project.rounds() if r.mode != "cold"][-1]  # trained on 9 labels
        labels = list(project.label_map(as_of_seq=rnd.label_seq).values())
    assert len(labels) == 9
    row = balance[(balance["strategy"] == "auto") & (balance["n_labels"] == 9)].iloc[0]
    shares = [labels.count(c) / len(labels) for c in cfg.classes]
    assert row["min_share"] == pytest.approx(min(shares))
    assert row["max_share"] == pytest.approx(max(shares))
    assert "## Class balance of the labelled set" in (out / "summary.md").read_text("utf-8")

"""Report statistics and figures on hand-made results tables (values checked by hand)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cryoal.benchmark import report
from cryoal.errors import ConfigError

# accuracy per (strategy, seed) at n_labels = 10, 20, 30
CURVES = {
    ("random", 0): [0.5, 0.6, 0.7],
    ("random", 1): [0.4, 0.6, 0.8],
    ("random", 2): [0.5, 0.5, 0.6],
    ("gradnorm", 0): [0.5, 0.7, 0.8],
    ("gradnorm", 1): [0.4, 0.8, 0.8],
    ("gradnorm", 2): [0.5, 0.6, 0.6],
    ("entropy", 0): [0.5, 0.5, 0.5],
    ("entropy", 1): [0.4, 0.5, 0.6],
    ("entropy", 2): [0.5, 0.5, 0.55],
}


def make_results(snrs: tuple[float, ...] = (0.1,)) -> pd.DataFrame:
    rows = []
    for snr in snrs:
        for (strategy, seed), accs in CURVES.items():
            for r, acc in enumerate(accs):
                rows.append(
                    {
                        "snr": snr,
                        "strategy": strategy,
                        "seed": seed,
                        "round": r,
                        "n_labels": 10 * (r + 1),
                        "accuracy": acc,
                        "balanced_accuracy": acc - 0.05,
                        "macro_f1": acc - 0.1,
                        "wall_time": 1.5,
                    }
                )
    return pd.DataFrame(rows, columns=list(report.RESULT_COLUMNS))


def test_normalized_auc_trapezoid_and_edge_cases() -> None:
    # (10 * (0.5 + 0.6) / 2 + 10 * (0.6 + 0.7) / 2) / 20 = 0.6
    assert report.normalized_auc([10, 20, 30], [0.5, 0.6, 0.7]) == pytest.approx(0.6)
    # unequal spacing, unsorted input: (10*(0.2+0.4)/2 + 20*(0.4+1.0)/2) / (40 - 10)
    assert report.normalized_auc([40, 10, 20], [1.0, 0.2, 0.4]) == pytest.approx((3.0 + 14.0) / 30)
    assert report.normalized_auc([5], [0.42]) == pytest.approx(0.42)
    assert report.normalized_auc([1, 2, 3], [0.7, 0.7, 0.7]) == pytest.approx(0.7)
    with pytest.raises(ConfigError, match="repeated label counts"):
        report.normalized_auc([10, 10], [0.1, 0.2])
    with pytest.raises(ConfigError, match="equal-length"):
        report.normalized_auc([10, 20], [0.1])


def test_labels_to_reach_interpolates() -> None:
    assert report.labels_to_reach([10, 20, 30], [0.5, 0.6, 0.8], 0.7) == pytest.approx(25.0)
    assert report.labels_to_reach([10, 20, 30], [0.5, 0.6, 0.8], 0.6) == pytest.approx(20.0)
    assert report.labels_to_reach([10, 20, 30], [0.9, 0.6, 0.8], 0.7) == pytest.approx(10.0)
    assert report.labels_to_reach([10, 20, 30], [0.5, 0.6, 0.65], 0.7) is None


def test_final_table_mean_std() -> None:
    final = report.final_table(make_results())
    row = final[final["strategy"] == "random"].iloc[0]
    assert row["n_seeds"] == 3
    assert row["n_labels"] == 30
    assert row["mean"] == pytest.approx(0.7)
    assert row["std"] == pytest.approx(np.std([0.7, 0.8, 0.6], ddof=1))
    bal = report.final_table(make_results(), "balanced_accuracy")
    assert bal[bal["strategy"] == "random"]["mean"].iloc[0] == pytest.approx(0.65)
    with pytest.raises(ConfigError, match="unknown metric 'auc'"):
        report.final_table(make_results(), "auc")


def test_auc_table_matches_naive() -> None:
    table = report.auc_table(make_results())
    naive = [np.trapezoid(CURVES[("gradnorm", s)], [10, 20, 30]) / 20 for s in range(3)]
    row = table[table["strategy"] == "gradnorm"].iloc[0]
    assert row["mean"] == pytest.approx(np.mean(naive))
    assert row["std"] == pytest.approx(np.std(naive, ddof=1))


def test_labels_to_reach_table() -> None:
    reach = report.labels_to_reach_table(make_results()).set_index("strategy")
    assert reach.loc["random", "target"] == pytest.approx(0.7)
    assert reach.loc["random", "n_labels"] == pytest.approx(30.0)
    # gradnorm mean curve: 0.4667, 0.7, 0.7333 -> reaches 0.7 at 20 labels exactly
    assert reach.loc["gradnorm", "n_labels"] == pytest.approx(20.0)
    # entropy mean curve tops out at 0.55
    assert math.isnan(reach.loc["entropy", "n_labels"])


def test_labels_to_reach_table_without_baseline_is_empty() -> None:
    results = make_results()
    assert report.labels_to_reach_table(results[results["strategy"] != "random"]).empty


def test_paired_comparison_final() -> None:
    cmp = report.paired_comparison(make_results()).set_index("strategy")
    assert list(cmp.index) == ["entropy", "gradnorm"]
    g = cmp.loc["gradnorm"]
    # final differences per seed: +0.1, 0, 0
    assert g["n_seeds"] == 3
    assert g["mean_diff"] == pytest.approx(0.1 / 3)
    assert (g["wins"], g["ties"], g["losses"]) == (1, 2, 0)
    assert g["p_ttest"] == pytest.approx(stats.ttest_rel([0.8, 0.8, 0.6], [0.7, 0.8, 0.6]).pvalue)
    assert g["p_wilcoxon"] == pytest.approx(stats.wilcoxon([0.1]).pvalue)
    e = cmp.loc["entropy"]
    # -0.2, -0.2, -0.05
    assert (e["wins"], e["ties"], e["losses"]) == (0, 0, 3)
    assert e["mean_diff"] == pytest.approx(-0.15)
    assert e["p_wilcoxon"] == pytest.approx(0.25)


def test_paired_comparison_auc_and_degenerate_cases() -> None:
    results = make_results()
    cmp = report.paired_comparison(results, quantity="auc").set_index("strategy")
    d = [
        (
            np.trapezoid(CURVES[("gradnorm", s)], [10, 20, 30])
            - np.trapezoid(CURVES[("random", s)], [10, 20, 30])
        )
        / 20
        for s in range(3)
    ]
    assert cmp.loc["gradnorm", "mean_diff"] == pytest.approx(np.mean(d))
    # one seed: p-values undefined
    one = report.paired_comparison(results[results["seed"] == 0]).set_index("strategy")
    assert one.loc["gradnorm", "n_seeds"] == 1
    assert math.isnan(one.loc["gradnorm", "p_ttest"]) and math.isnan(
        one.loc["gradnorm", "p_wilcoxon"]
    )
    # identical strategies: all ties, p = 1
    twin = results[results["strategy"] == "random"].assign(strategy="twin")
    same = report.paired_comparison(pd.concat([results, twin])).set_index("strategy")
    assert (
        same.loc["twin", "ties"],
        same.loc["twin", "p_ttest"],
        same.loc["twin", "p_wilcoxon"],
    ) == (3, 1.0, 1.0)
    with pytest.raises(ConfigError, match="unknown quantity"):
        report.paired_comparison(results, quantity="median")


def test_missing_columns_error_names_them() -> None:
    with pytest.raises(ConfigError, match="lacks column\\(s\\) n_labels, accuracy"):
        report.final_table(
            pd.DataFrame({"snr": [1.0], "strategy": ["a"], "seed": [0], "round": [0]})
        )


def make_robustness() -> pd.DataFrame:
    rows = []
    acc = {(math.inf, math.inf): 0.9, (math.inf, 0.1): 0.4, (0.1, math.inf): 0.8, (0.1, 0.1): 0.7}
    for seed in (0, 1):
        for (tr, te), a in acc.items():
            rows.append(
                {"train_snr": tr, "test_snr": te, "seed": seed, "accuracy": a + 0.02 * seed}
            )
    return pd.DataFrame(rows)


def test_robustness_matrix_order_and_means() -> None:
    mat = report.robustness_matrix(make_robustness())
    assert list(mat.index) == [math.inf, 0.1]
    assert list(mat.columns) == [math.inf, 0.1]
    assert mat.loc[math.inf, 0.1] == pytest.approx(0.41)
    assert mat.loc[0.1, math.inf] == pytest.approx(0.81)


def test_budget_comparison_against_hand_computed_gaps() -> None:
    gaps = report.budget_comparison(make_results()).set_index(["strategy", "n_labels"])
    assert len(gaps) == 6 and set(gaps["n_seeds"]) == {3}
    # gradnorm − random at 20 labels: 0.1, 0.2, 0.1 → mean 0.1333, SE 0.0577/√3 = 0.0333
    g = gaps.loc[("gradnorm", 20)]
    assert g["mean_diff"] == pytest.approx(0.4 / 3) and g["se"] == pytest.approx(0.1 / 3)
    assert g["verdict"] == "better"
    assert g["p_ttest"] == pytest.approx(stats.ttest_rel([0.7, 0.8, 0.6], [0.6, 0.6, 0.5]).pvalue)
    # entropy − random at 30: −0.2, −0.2, −0.05 → mean −0.15, SE 0.05: beyond 2·SE
    e = gaps.loc[("entropy", 30)]
    assert e["mean_diff"] == pytest.approx(-0.15) and e["se"] == pytest.approx(0.05)
    assert e["verdict"] == "worse"
    # gradnorm at 30: 0.1, 0, 0 → mean 0.0333 < 2·SE 0.0667; equal curves at 10 labels
    assert gaps.loc[("gradnorm", 30), "verdict"] == "within noise"
    assert gaps.loc[("entropy", 10), "mean_diff"] == 0.0
    assert gaps.loc[("entropy", 10), "verdict"] == "within noise"
    one_seed = make_results()
    one_seed = one_seed[one_seed["seed"] == 0]
    assert set(report.budget_comparison(one_seed)["verdict"]) == {"n/a"}
    assert report.budget_comparison(make_results(), baseline="bald").empty


def test_summary_markdown_content() -> None:
    text = report.summary_markdown(
        make_results(), robustness=make_robustness(), notes=["Machine: test VM"]
    )
    assert text.startswith("# Noise-robustness benchmark\n\nMachine: test VM\n")
    assert "| 0.1 | random | 3 | 30 | 0.700 ± 0.100 | 0.575 ± 0.043 | 30.0 (0 % fewer) |" in text
    assert "| 0.1 | gradnorm | 3 | 30 | 0.733 ± 0.115 |" in text
    assert "| 0.1 | entropy | 3 | 30 | 0.550 ± 0.050 |" in text and "not reached |" in text
    assert "| 0.1 | gradnorm | 3 | +0.033 | 1/2/0 |" in text
    assert "## Cross-SNR robustness" in text
    assert "| inf | 0.910 | 0.410 |" in text
    assert "| 0.1 | random | 13.5 |" in text  # 9 rows x 1.5 s
    # learning curves and the gap at every budget
    assert "| 20 | 0.567 ± 0.058 | 0.700 ± 0.100 | 0.500 ± 0.000 |" in text
    assert (
        "| gradnorm | +0.000 ± 0.000 | +0.133 ± 0.033 ▲ | +0.033 ± 0.033 | +0.000 at 10 |" in text
    )
    assert "| entropy | +0.000 ± 0.000 | -0.067 ± 0.033 | -0.150 ± 0.050 ▼ | -0.150 at 30 |" in text
    # labels to reach, with the saving relative to the baseline's final label count
    extra = report.summary_markdown(make_results(), extra_baselines=["entropy"])
    assert "| labels to reach random's final | labels to reach entropy's final |" in extra
    # gradnorm's mean curve: 0.467 at 10, 0.700 at 20 labels; random ends at 0.700,
    # entropy at 0.550 → 10 + (0.550 − 0.467) / (0.700 − 0.467) · 10 = 13.6 labels
    assert (
        "| 0.1 | gradnorm | 3 | 30 | 0.733 ± 0.115 | 0.650 ± 0.066 | 20.0 (33 % fewer) "
        "| 13.6 (55 % fewer) |"
    ) in extra
    assert "## Gap to entropy at every budget" in extra


def test_write_report_files(tmp_path: Path) -> None:
    paths = report.write_report(
        make_results((math.inf, 0.05)), tmp_path, robustness=make_robustness()
    )
    assert paths["summary"] == tmp_path / "summary.md"
    assert [p.name for p in paths["curves"]] == ["curves_snrinf.png", "curves_snr0.05.png"]
    for p in [*paths["curves"], paths["robustness"]]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "curves_snr0.05.png",
        "curves_snrinf.png",
        "robustness.png",
        "summary.md",
    ]


def test_write_report_title(tmp_path: Path) -> None:
    paths = report.write_report(make_results(), tmp_path, title="Default select vs random")
    text = paths["summary"].read_text(encoding="utf-8")
    assert text.startswith("# Default select vs random\n")
    assert "Noise-robustness" not in text


def test_benchmark_curves_plot_seed_means() -> None:
    rows = []
    for snr in (math.inf, 0.1):
        for strategy, base in (("random", 0.4), ("entropy", 0.5)):
            for seed in (0, 1):
                for rnd, n in enumerate((8, 16)):
                    acc = base + 0.1 * rnd + 0.02 * seed - (0.1 if snr == 0.1 else 0.0)
                    rows.append(
                        {
                            "snr": snr,
                            "strategy": strategy,
                            "seed": seed,
                            "round": rnd,
                            "n_labels": n,
                            "accuracy": acc,
                            "balanced_accuracy": acc,
                            "macro_f1": acc,
                            "wall_time": 1.0,
                        }
                    )
    fig = report.plot_benchmark_curves(pd.DataFrame(rows))
    assert [ax.get_title() for ax in fig.axes] == ["SNR inf", "SNR 0.1"]
    lines = {ln.get_label(): ln for ln in fig.axes[1].get_lines()}
    np.testing.assert_allclose(lines["entropy"].get_ydata(), [0.41, 0.51])  # mean over seeds
    np.testing.assert_allclose(lines["random"].get_ydata(), [0.31, 0.41])
    assert lines["random"].get_linestyle() == "--"

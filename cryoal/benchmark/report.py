"""Summaries, statistics and figures from a tidy benchmark results table.

The input of every function here is the tidy table that :func:`cryoal.benchmark.noise.run`
returns and writes to ``results.csv``: one row per (snr, strategy, seed, round) with the
columns ``snr, strategy, seed, round, n_labels, accuracy, balanced_accuracy, macro_f1,
wall_time``. ``snr`` is a float (``inf`` for noise-free data), metrics are fractions in
[0, 1] measured on the held-out test set, ``wall_time`` is in seconds.

Definitions (used in ``summary.md`` too):

* **Final accuracy**: the metric at the last round of each (snr, strategy, seed) run;
  reported as mean ± sample standard deviation (ddof = 1) over seeds.
* **Normalised area under the learning curve** (AULC) of one run with label counts
  ``n_0 < n_1 < ... < n_R`` and metric values ``a_0 ... a_R``::

      AULC = 1 / (n_R - n_0) * sum_{r=1..R} (n_r - n_{r-1}) * (a_r + a_{r-1}) / 2

  i.e. the trapezoidal mean of the metric over the label range; a run with one point
  has AULC = a_0. AULC is in [0, 1] and equals the metric for a flat curve.
* **Labels to reach the baseline**: the target is the baseline's (random's) mean final
  metric; on each strategy's mean learning curve (mean over seeds at each label count),
  the first label count where the curve reaches the target, linearly interpolated between
  the last point below and the first point at or above it; ``None`` ("not reached") when
  the mean curve never reaches it.
* **Gap to the baseline at every budget**: at each label count ``n`` that both ran, per
  seed the difference strategy − baseline of the metric; its mean over seeds, standard
  error ``SE = std(ddof=1)/sqrt(k)`` and paired t-test p-value. A strategy is *worse than
  the baseline beyond noise* at ``n`` when the mean difference is below ``−2·SE`` (and
  better beyond noise when above ``+2·SE``); with two or more seeds only.
* **Paired comparison vs the baseline**: per seed, difference strategy − baseline of the
  final metric (and of AULC); mean difference, wins / ties / losses (ties when
  ``|d| <= tie_tolerance``), and two-sided p-values of the paired t-test
  (:func:`scipy.stats.ttest_rel`) and the Wilcoxon signed-rank test
  (:func:`scipy.stats.wilcoxon`) over the seeds both strategies ran.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryoal._atomic import atomic_path, atomic_write_text
from cryoal.errors import ConfigError

__all__ = [
    "RESULT_COLUMNS",
    "ROBUSTNESS_COLUMNS",
    "auc_table",
    "budget_comparison",
    "final_table",
    "format_snr",
    "labels_to_reach",
    "labels_to_reach_table",
    "learning_curve_table",
    "normalized_auc",
    "paired_comparison",
    "plot_benchmark_curves",
    "plot_curves",
    "plot_robustness",
    "robustness_matrix",
    "summary_markdown",
    "write_report",
]

logger = logging.getLogger(__name__)

#: Columns of the tidy results table (``results.csv``), in order.
RESULT_COLUMNS: tuple[str, ...] = (
    "snr",
    "strategy",
    "seed",
    "round",
    "n_labels",
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "wall_time",
)

#: Columns of the tidy cross-SNR robustness table (``robustness.csv``), in order.
ROBUSTNESS_COLUMNS: tuple[str, ...] = ("train_snr", "test_snr", "seed", "accuracy")

METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "macro_f1")


def format_snr(snr: float) -> str:
    """Short text for an SNR value: ``inf`` for noise-free data, else ``%g`` (``0.05``)."""
    return "inf" if math.isinf(snr) else f"{snr:g}"


def _check_columns(table: pd.DataFrame, required: Sequence[str], what: str) -> None:
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ConfigError(
            f"{what} table lacks column(s) {', '.join(missing)}; it has "
            f"{', '.join(map(str, table.columns))}. Pass the table written by "
            "cryoal.benchmark.noise.run (results.csv)."
        )
    if len(table) == 0:
        raise ConfigError(f"{what} table is empty: run the benchmark first.")


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")


def normalized_auc(
    n_labels: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray
) -> float:
    """Area under one learning curve divided by its label range (trapezoidal rule).

    Parameters
    ----------
    n_labels
        Label counts, shape ``(R,)``; sorted here, duplicates are not allowed.
    values
        Metric at each label count, shape ``(R,)`` (fractions in [0, 1]).

    Returns
    -------
    float
        ``1 / (n_max - n_min) * ∫ metric d(n_labels)``; the single value when ``R == 1``.

    Raises
    ------
    ConfigError
        Empty input, mismatched lengths or repeated label counts.
    """
    n = np.asarray(n_labels, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if n.ndim != 1 or n.shape != v.shape or n.size == 0:
        raise ConfigError(
            f"learning curve needs equal-length 1-D label counts and values, got shapes "
            f"{n.shape} and {v.shape}"
        )
    order = np.argsort(n, kind="stable")
    n, v = n[order], v[order]
    if np.any(np.diff(n) == 0):
        raise ConfigError(f"learning curve has repeated label counts {n.tolist()}")
    if n.size == 1:
        return float(v[0])
    area = float(np.sum(np.diff(n) * (v[1:] + v[:-1]) / 2.0))
    return area / float(n[-1] - n[0])


def labels_to_reach(
    n_labels: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray, target: float
) -> float | None:
    """Label count at which a (mean) learning curve first reaches ``target``.

    Linear interpolation between the last point below the target and the first point at
    or above it; the first label count when the curve starts at or above the target.

    Parameters
    ----------
    n_labels
        Label counts, shape ``(R,)`` (sorted here).
    values
        Metric at each label count, shape ``(R,)``.
    target
        Metric value to reach.

    Returns
    -------
    float or None
        The interpolated label count, or ``None`` when the curve never reaches ``target``.
    """
    n = np.asarray(n_labels, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if n.ndim != 1 or n.shape != v.shape or n.size == 0:
        raise ConfigError(
            f"learning curve needs equal-length 1-D label counts and values, got shapes "
            f"{n.shape} and {v.shape}"
        )
    order = np.argsort(n, kind="stable")
    n, v = n[order], v[order]
    hits = np.flatnonzero(v >= target)
    if hits.size == 0:
        return None
    i = int(hits[0])
    if i == 0:
        return float(n[0])
    n0, n1, v0, v1 = n[i - 1], n[i], v[i - 1], v[i]
    return float(n0 + (target - v0) / (v1 - v0) * (n1 - n0))


def _final_rows(results: pd.DataFrame) -> pd.DataFrame:
    results = results.reset_index(drop=True)
    idx = results.groupby(["snr", "strategy", "seed"], sort=True)["n_labels"].idxmax()
    return results.loc[idx.to_numpy()]


def final_table(results: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Mean ± std over seeds of the final-round metric, per (snr, strategy).

    Parameters
    ----------
    results
        Tidy results table (see module docstring).
    metric
        ``accuracy``, ``balanced_accuracy`` or ``macro_f1``.

    Returns
    -------
    pandas.DataFrame
        Columns ``snr, strategy, n_seeds, n_labels, mean, std`` (std with ddof = 1, NaN for
        one seed); ``n_labels`` is the mean final label count.
    """
    _check_columns(results, RESULT_COLUMNS[:6], "results")
    _check_metric(metric)
    final = _final_rows(results)
    grouped = final.groupby(["snr", "strategy"], sort=True)
    out = grouped.agg(
        n_seeds=("seed", "nunique"),
        n_labels=("n_labels", "mean"),
        mean=(metric, "mean"),
        std=(metric, "std"),
    )
    return out.reset_index()


def _run_aucs(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = []
    for (snr, strategy, seed), run in results.groupby(["snr", "strategy", "seed"], sort=True):
        rows.append(
            {
                "snr": snr,
                "strategy": strategy,
                "seed": seed,
                "auc": normalized_auc(run["n_labels"].to_numpy(), run[metric].to_numpy()),
            }
        )
    return pd.DataFrame(rows, columns=["snr", "strategy", "seed", "auc"])


def auc_table(results: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Mean ± std over seeds of the normalised area under the learning curve.

    Returns
    -------
    pandas.DataFrame
        Columns ``snr, strategy, n_seeds, mean, std`` (see the module docstring for the
        AULC formula; std with ddof = 1).
    """
    _check_columns(results, RESULT_COLUMNS[:6], "results")
    _check_metric(metric)
    per_run = _run_aucs(results, metric)
    out = per_run.groupby(["snr", "strategy"], sort=True).agg(
        n_seeds=("seed", "nunique"), mean=("auc", "mean"), std=("auc", "std")
    )
    return out.reset_index()


def learning_curve_table(results: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Mean and std over seeds at each label count, per (snr, strategy).

    Returns
    -------
    pandas.DataFrame
        Columns ``snr, strategy, n_labels, n_seeds, mean, std``, sorted by label count.
    """
    _check_columns(results, RESULT_COLUMNS[:6], "results")
    _check_metric(metric)
    out = results.groupby(["snr", "strategy", "n_labels"], sort=True).agg(
        n_seeds=("seed", "nunique"), mean=(metric, "mean"), std=(metric, "std")
    )
    return out.reset_index()


def labels_to_reach_table(
    results: pd.DataFrame, metric: str = "accuracy", baseline: str = "random"
) -> pd.DataFrame:
    """Labels each strategy needs to reach the baseline's mean final metric, per SNR.

    Returns
    -------
    pandas.DataFrame
        Columns ``snr, strategy, target, n_labels`` (``n_labels`` NaN when not reached).
        Empty when the baseline did not run.
    """
    final = final_table(results, metric)
    curves = learning_curve_table(results, metric)
    rows = []
    for snr, at_snr in curves.groupby("snr", sort=True):
        base = final[(final["snr"] == snr) & (final["strategy"] == baseline)]
        if base.empty:
            continue
        target = float(base["mean"].iloc[0])
        for strategy, curve in at_snr.groupby("strategy", sort=True):
            reached = labels_to_reach(
                curve["n_labels"].to_numpy(), curve["mean"].to_numpy(), target
            )
            rows.append(
                {
                    "snr": snr,
                    "strategy": strategy,
                    "target": target,
                    "n_labels": math.nan if reached is None else reached,
                }
            )
    return pd.DataFrame(rows, columns=["snr", "strategy", "target", "n_labels"])


def _p_values(diffs: np.ndarray, tie_tolerance: float) -> tuple[float, float]:
    """Two-sided paired t-test and Wilcoxon p-values of differences; NaN when undefined."""
    from scipy import stats

    if diffs.size < 2:
        return math.nan, math.nan
    nonzero = np.abs(diffs) > tie_tolerance
    if not nonzero.any():
        return 1.0, 1.0
    if np.std(diffs, ddof=1) == 0.0:
        p_t = math.nan  # constant non-zero differences: t is infinite, the test is undefined
    else:
        p_t = float(stats.ttest_rel(diffs, np.zeros_like(diffs)).pvalue)
    p_w = float(stats.wilcoxon(diffs[nonzero], zero_method="wilcox").pvalue)
    return p_t, p_w


def _seed_differences(values: pd.Series, base: pd.Series) -> np.ndarray:
    """``values − base`` over the seeds both hold (both indexed by seed), in seed order."""
    seeds = sorted(set(values.index) & set(base.index))
    return values.loc[seeds].to_numpy(np.float64) - base.loc[seeds].to_numpy(np.float64)


def paired_comparison(
    results: pd.DataFrame,
    *,
    baseline: str = "random",
    metric: str = "accuracy",
    quantity: str = "final",
    tie_tolerance: float = 1e-9,
) -> pd.DataFrame:
    """Compare every strategy with the baseline seed by seed, per SNR.

    Parameters
    ----------
    results
        Tidy results table.
    baseline
        Strategy compared against (``random``).
    metric
        Metric column to compare.
    quantity
        ``final`` (metric at the last round) or ``auc`` (normalised AULC).
    tie_tolerance
        ``|difference| <= tie_tolerance`` counts as a tie.

    Returns
    -------
    pandas.DataFrame
        Columns ``snr, strategy, n_seeds, mean_diff, wins, ties, losses, p_ttest,
        p_wilcoxon`` over the seeds both strategies ran; empty when the baseline is
        missing. p-values are NaN with fewer than two seeds; the t-test p-value is NaN when
        all differences are equal and non-zero; both are 1 when all differences are ties.
    """
    _check_columns(results, RESULT_COLUMNS[:6], "results")
    _check_metric(metric)
    if quantity == "final":
        per_run = _final_rows(results)[["snr", "strategy", "seed", metric]].rename(
            columns={metric: "value"}
        )
    elif quantity == "auc":
        per_run = _run_aucs(results, metric).rename(columns={"auc": "value"})
    else:
        raise ConfigError(f"unknown quantity {quantity!r}: use 'final' or 'auc'")
    columns = [
        "snr",
        "strategy",
        "n_seeds",
        "mean_diff",
        "wins",
        "ties",
        "losses",
        "p_ttest",
        "p_wilcoxon",
    ]
    rows = []
    for snr, at_snr in per_run.groupby("snr", sort=True):
        base = at_snr[at_snr["strategy"] == baseline].set_index("seed")["value"]
        if base.empty:
            continue
        for strategy, other in at_snr.groupby("strategy", sort=True):
            if strategy == baseline:
                continue
            d = _seed_differences(other.set_index("seed")["value"], base)
            p_t, p_w = _p_values(d, tie_tolerance)
            rows.append(
                {
                    "snr": snr,
                    "strategy": strategy,
                    "n_seeds": int(d.size),
                    "mean_diff": float(d.mean()) if d.size else math.nan,
                    "wins": int(np.sum(d > tie_tolerance)),
                    "ties": int(np.sum(np.abs(d) <= tie_tolerance)),
                    "losses": int(np.sum(d < -tie_tolerance)),
                    "p_ttest": p_t,
                    "p_wilcoxon": p_w,
                }
            )
    return pd.DataFrame(rows, columns=columns)


def budget_comparison(
    results: pd.DataFrame, *, baseline: str = "random", metric: str = "accuracy"
) -> pd.DataFrame:
    """Paired gap to the baseline at every label count, per (snr, strategy).

    Parameters
    ----------
    results
        Tidy results table.
    baseline
        Strategy compared against.
    metric
        Metric column to compare.

    Returns
    -------
    pandas.DataFrame
        Columns ``snr, strategy, n_labels, n_seeds, mean_diff, se, p_ttest, verdict``:
        one row per label count both ran (on the same seeds); ``se`` = std(ddof=1)/√k of
        the per-seed differences (NaN for one seed); ``verdict`` is ``"worse"`` /
        ``"better"`` when the mean difference is beyond ∓2·SE, else ``"within noise"``
        (``"n/a"`` with one seed). Empty when the baseline did not run.
    """
    _check_columns(results, RESULT_COLUMNS[:6], "results")
    _check_metric(metric)
    columns = ["snr", "strategy", "n_labels", "n_seeds", "mean_diff", "se", "p_ttest", "verdict"]
    rows = []
    for snr, at_snr in results.groupby("snr", sort=True):
        base = at_snr[at_snr["strategy"] == baseline].set_index(["n_labels", "seed"])[metric]
        if base.empty:
            continue
        for strategy, other in at_snr.groupby("strategy", sort=True):
            if strategy == baseline:
                continue
            vals = other.set_index(["n_labels", "seed"])[metric]
            for n in sorted({int(k[0]) for k in vals.index} & {int(k[0]) for k in base.index}):
                d = _seed_differences(vals.loc[n], base.loc[n])
                if not d.size:
                    continue
                se = float(np.std(d, ddof=1) / math.sqrt(d.size)) if d.size > 1 else math.nan
                mean = float(d.mean())
                if math.isnan(se):
                    verdict = "n/a"
                elif mean < -2 * se:
                    verdict = "worse"
                elif mean > 2 * se:
                    verdict = "better"
                else:
                    verdict = "within noise"
                rows.append(
                    {
                        "snr": snr,
                        "strategy": strategy,
                        "n_labels": n,
                        "n_seeds": int(d.size),
                        "mean_diff": mean,
                        "se": se,
                        "p_ttest": _p_values(d, 1e-9)[0],
                        "verdict": verdict,
                    }
                )
    return pd.DataFrame(rows, columns=columns)


def robustness_matrix(robustness: pd.DataFrame) -> pd.DataFrame:
    """Mean test accuracy over seeds as a (train SNR × test SNR) matrix.

    Parameters
    ----------
    robustness
        Tidy table with columns ``train_snr, test_snr, seed, accuracy``.

    Returns
    -------
    pandas.DataFrame
        Index ``train_snr`` and columns ``test_snr``, both sorted from clean (inf) to noisy.
    """
    _check_columns(robustness, ROBUSTNESS_COLUMNS, "robustness")
    mat = robustness.pivot_table(
        index="train_snr", columns="test_snr", values="accuracy", aggfunc="mean"
    )
    order_rows = sorted(mat.index, reverse=True)
    order_cols = sorted(mat.columns, reverse=True)
    return mat.loc[order_rows, order_cols]


def _pairs(series: pd.Series) -> list[tuple[tuple[Any, Any], float]]:
    """(key pair, value) items of a Series indexed by two levels."""
    return [(tuple(k), float(v)) for k, v in series.items()]  # type: ignore[arg-type,misc]


def _fmt(value: float, digits: int = 3) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.{digits}f}"
    )


def _fmt_p(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.3g}"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _reached(
    reach: pd.DataFrame, final: pd.DataFrame, snr: float, strategy: str, baseline: str
) -> str:
    """ "N (x % fewer)" labels to reach the baseline's final metric, or why not."""
    r = reach[(reach["snr"] == snr) & (reach["strategy"] == strategy)]
    if r.empty:
        return "n/a"
    n = float(r["n_labels"].iloc[0])
    if math.isnan(n):
        return "not reached"
    base = final[(final["snr"] == snr) & (final["strategy"] == baseline)]
    spent = float(base["n_labels"].iloc[0])
    return f"{n:.1f} ({100.0 * (1.0 - n / spent):.0f} % fewer)" if spent > 0 else f"{n:.1f}"


def _label_tables(cells: dict[tuple[float, str, int], str]) -> list[str]:
    """One Markdown table per SNR from ``{(snr, strategy, n_labels): text}``.

    Label counts run down, strategies across in the order they first appear in ``cells``;
    a missing cell is blank.
    """
    out: list[str] = []
    for snr in sorted({k[0] for k in cells}):
        keys = [k for k in cells if k[0] == snr]
        strategies = list(dict.fromkeys(k[1] for k in keys))
        rows = [
            [str(int(n)), *[cells.get((snr, st, n), "") for st in strategies]]
            for n in sorted({k[2] for k in keys})
        ]
        out += [f"SNR {format_snr(float(snr))}:", ""]
        out.append(_md_table(["labels", *strategies], rows))
        out.append("")
    return out


def _in_run_order(table: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its rows in the order the strategies first appear in ``results``."""
    order = {st: i for i, st in enumerate(dict.fromkeys(results["strategy"]))}
    return table.sort_values("strategy", key=lambda col: col.map(order), kind="stable")


def _curve_tables(results: pd.DataFrame, metric: str) -> list[str]:
    """Per SNR: mean ± std of the metric by label count and strategy."""
    curves = _in_run_order(learning_curve_table(results, metric), results)
    return _label_tables(
        {
            (c["snr"], c["strategy"], int(c["n_labels"])): f"{_fmt(c['mean'])} ± {_fmt(c['std'])}"
            for _, c in curves.iterrows()
        }
    )


def _gap_tables(results: pd.DataFrame, baseline: str, metric: str) -> list[str]:
    """Per SNR: mean paired difference ± SE to the baseline at each label count."""
    gaps = budget_comparison(results, baseline=baseline, metric=metric)
    if gaps.empty:
        return [f"No {baseline} runs to compare against."]
    out = [
        f"Per seed, strategy − {baseline} at the same label count; mean ± SE over seeds; "
        "▲ / ▼ = better / worse beyond noise (|mean| > 2·SE). Last column: the strategy's "
        f"worst mean gap over the budgets.",
        "",
    ]
    for snr, at_snr in gaps.groupby("snr", sort=True):
        counts = sorted(at_snr["n_labels"].unique())
        rows = []
        for strategy in dict.fromkeys(results[results["snr"] == snr]["strategy"]):
            g = at_snr[at_snr["strategy"] == strategy]
            if g.empty:
                continue
            by_n = {int(r["n_labels"]): r for _, r in g.iterrows()}
            cells = []
            for n in counts:
                if n not in by_n:
                    cells.append("")
                    continue
                r = by_n[n]
                mark = {"better": " ▲", "worse": " ▼"}.get(str(r["verdict"]), "")
                cells.append(f"{r['mean_diff']:+.3f} ± {_fmt(r['se'])}{mark}")
            worst = g.loc[g["mean_diff"].idxmin()]
            rows.append(
                [str(strategy), *cells, f"{worst['mean_diff']:+.3f} at {int(worst['n_labels'])}"]
            )
        out += [f"SNR {format_snr(float(snr))}:", ""]  # type: ignore[arg-type]
        out.append(_md_table(["strategy", *[str(int(n)) for n in counts], "worst"], rows))
        out.append("")
    return out


def _balance_tables(balance: pd.DataFrame) -> list[str]:
    """Per SNR: smallest class share (and classes seen) by label count and strategy."""
    mean = balance.groupby(["snr", "strategy", "n_labels"], as_index=False).agg(
        share=("min_share", "mean"), seen=("classes_seen", "mean")
    )
    return _label_tables(
        {
            (m["snr"], m["strategy"], int(m["n_labels"])): (
                f"{100 * m['share']:.1f} % ({m['seen']:.1f})"
            )
            for _, m in _in_run_order(mean, balance).iterrows()
        }
    )


def summary_markdown(
    results: pd.DataFrame,
    *,
    robustness: pd.DataFrame | None = None,
    metric: str = "accuracy",
    baseline: str = "random",
    title: str = "Noise-robustness benchmark",
    notes: Sequence[str] = (),
    extra_baselines: Sequence[str] = (),
    balance: pd.DataFrame | None = None,
) -> str:
    """Render the benchmark summary as Markdown (the content of ``summary.md``).

    Parameters
    ----------
    results
        Tidy results table.
    robustness
        Optional tidy robustness table (``train_snr, test_snr, seed, accuracy``).
    metric
        Metric summarised.
    baseline
        Strategy the others are compared with.
    title
        Level-1 heading.
    notes
        Extra lines (machine, preset, run time) placed under the heading.
    extra_baselines
        Further strategies (e.g. ``random@scratch``) that get their own labels-to-reach
        column and gap-at-every-budget section.
    balance
        Optional class make-up of the labelled sets (``snr, strategy, seed, n_labels,
        min_share, ...``, :data:`cryoal.benchmark.noise.BALANCE_COLUMNS`): a table of the
        smallest class's share at every label count.
    """
    final = final_table(results, metric)
    aulc = auc_table(results, metric)
    bases = [baseline, *[b for b in extra_baselines if b != baseline]]
    reaches = {b: labels_to_reach_table(results, metric, b) for b in bases}
    cmp_final = paired_comparison(results, baseline=baseline, metric=metric, quantity="final")
    cmp_auc = paired_comparison(results, baseline=baseline, metric=metric, quantity="auc")
    label = metric.replace("_", " ")
    out = [f"# {title}", ""]
    out += [f"{n}" for n in notes]
    if notes:
        out.append("")
    out += [
        f"Metric: test-set {label}. Mean ± std (ddof = 1) over seeds. AULC = area under the "
        "learning curve divided by its label range, 1/(n_R − n_0) · Σ_r (n_r − n_{r−1}) · "
        "(a_r + a_{r−1})/2 (trapezoidal mean of the metric over the labels spent).",
        "",
        "## Final " + label + " and AULC",
        "",
    ]
    rows = []
    for _, f in final.iterrows():
        a = aulc[(aulc["snr"] == f["snr"]) & (aulc["strategy"] == f["strategy"])].iloc[0]
        reached = [_reached(reaches[b], final, f["snr"], f["strategy"], b) for b in bases]
        rows.append(
            [
                format_snr(float(f["snr"])),
                str(f["strategy"]),
                str(int(f["n_seeds"])),
                f"{f['n_labels']:.0f}",
                f"{_fmt(f['mean'])} ± {_fmt(f['std'])}",
                f"{_fmt(a['mean'])} ± {_fmt(a['std'])}",
                *reached,
            ]
        )
    out.append(
        _md_table(
            [
                "SNR",
                "strategy",
                "seeds",
                "final labels",
                f"final {label}",
                "AULC",
                *[f"labels to reach {b}'s final" for b in bases],
            ],
            rows,
        )
    )
    out += ["", "## Learning curves (mean ± std over seeds)", ""]
    out += _curve_tables(results, metric)
    for b in bases:
        out += ["", f"## Gap to {b} at every budget", ""]
        out += _gap_tables(results, b, metric)
    if balance is not None and len(balance):
        out += [
            "",
            "## Class balance of the labelled set",
            "",
            "Smallest class's share of the labels (mean over seeds; a balanced set has 1/C), "
            "then the mean number of classes with at least one label.",
            "",
        ]
        out += _balance_tables(balance)
    for name, cmp in (("final " + label, cmp_final), ("AULC", cmp_auc)):
        out += ["", f"## Paired comparison vs {baseline}: {name}", ""]
        if cmp.empty:
            out.append(f"No {baseline} runs to compare against.")
            continue
        out.append(
            "Per seed, difference strategy − " + baseline + "; W/T/L = wins/ties/losses; "
            "two-sided p-values of the paired t-test and the Wilcoxon signed-rank test over n seeds "
            "(n/a when undefined; with n < 6 seeds the Wilcoxon test cannot reach p < 0.05)."
        )
        out.append("")
        out.append(
            _md_table(
                ["SNR", "strategy", "n seeds", "mean Δ", "W/T/L", "p (t-test)", "p (Wilcoxon)"],
                [
                    [
                        format_snr(float(c["snr"])),
                        str(c["strategy"]),
                        str(int(c["n_seeds"])),
                        f"{c['mean_diff']:+.3f}",
                        f"{int(c['wins'])}/{int(c['ties'])}/{int(c['losses'])}",
                        _fmt_p(float(c["p_ttest"])),
                        _fmt_p(float(c["p_wilcoxon"])),
                    ]
                    for _, c in cmp.iterrows()
                ],
            )
        )
    if robustness is not None and len(robustness):
        mat = robustness_matrix(robustness)
        out += [
            "",
            "## Cross-SNR robustness (accuracy; rows: training SNR, columns: test SNR)",
            "",
            _md_table(
                ["train \\ test"] + [format_snr(float(c)) for c in mat.columns],
                [
                    [format_snr(float(i))] + [_fmt(float(mat.loc[i, c])) for c in mat.columns]
                    for i in mat.index
                ],
            ),
        ]
    wall = results.groupby(["snr", "strategy"], sort=True)["wall_time"].sum()
    out += [
        "",
        "## Wall time (s, summed over seeds and rounds)",
        "",
        _md_table(
            ["SNR", "strategy", "seconds"],
            [[format_snr(float(k[0])), str(k[1]), f"{v:.1f}"] for k, v in _pairs(wall)],
        ),
        "",
    ]
    return "\n".join(out)


def _figure(figsize: tuple[float, float]) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def plot_curves(
    results: pd.DataFrame,
    out_dir: str | Path,
    *,
    metric: str = "accuracy",
    baseline: str = "random",
) -> list[Path]:
    """Write one learning-curve figure per SNR, ``curves_snr<SNR>.png``, with ±1 std bands.

    Parameters
    ----------
    results
        Tidy results table.
    out_dir
        Folder for the PNG files (created).
    metric
        Metric on the y axis.
    baseline
        Drawn dashed and black; ``NAME@scratch`` arms are dotted. Label counts spanning a
        factor of 8 or more get a logarithmic axis.

    Returns
    -------
    list of Path
        The files written, one per SNR, sorted from clean to noisy.
    """
    curves = learning_curve_table(results, metric)
    out_dir = Path(out_dir)
    paths = []
    for snr in sorted(curves["snr"].unique(), reverse=True):
        at_snr = curves[curves["snr"] == snr]
        fig = _figure((5.0, 3.6))
        ax = fig.add_subplot()
        for strategy, c in at_snr.groupby("strategy", sort=True):
            x = c["n_labels"].to_numpy(dtype=float)
            m = c["mean"].to_numpy(dtype=float)
            s = np.nan_to_num(c["std"].to_numpy(dtype=float))
            style: dict[str, Any] = {}
            if strategy == baseline:
                style = {"color": "black", "linestyle": "--"}
            elif str(strategy).endswith("@scratch"):  # no pretrained encoder: dotted
                style = {"linestyle": ":"}
            (line,) = ax.plot(x, m, marker="o", markersize=3, label=str(strategy), **style)
            ax.fill_between(x, m - s, m + s, color=line.get_color(), alpha=0.2, linewidth=0)
        n_seeds = int(at_snr["n_seeds"].max())
        low, high = float(at_snr["n_labels"].min()), float(at_snr["n_labels"].max())
        if low > 0 and high / low >= 8:  # a schedule over decades: equal room per doubling
            from matplotlib.ticker import NullFormatter

            counts = sorted(at_snr["n_labels"].unique())
            ax.set_xscale("log")
            ax.set_xticks([float(n) for n in counts], [str(int(n)) for n in counts])
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("labelled subtomograms")
        ax.set_ylabel(f"test {metric.replace('_', ' ')}")
        ax.set_title(
            f"SNR {format_snr(float(snr))} (mean ± std, {n_seeds} seed{'s' if n_seeds != 1 else ''})"
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        path = out_dir / f"curves_snr{format_snr(float(snr))}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        paths.append(path)
    return paths


def plot_benchmark_curves(
    results: pd.DataFrame,
    metric: str = "accuracy",
    *,
    baseline: str = "random",
    snrs: Sequence[float] | None = None,
) -> Any:
    """Noise-benchmark learning curves, one panel per SNR, mean ± std over seeds.

    Parameters
    ----------
    results
        The tidy table of :func:`cryoal.benchmark.noise.run` (``results.csv``).
    metric
        ``accuracy``, ``balanced_accuracy`` or ``macro_f1``.
    baseline
        Strategy drawn dashed and black.
    snrs
        SNRs to show (default: all, clean first).

    Returns
    -------
    matplotlib.figure.Figure
        One panel per SNR (titles ``SNR <snr>``), the baseline dashed black.

    Raises
    ------
    ConfigError
        The table has no rows to plot.

    Notes
    -----
    :func:`plot_curves` writes the report's one-figure-per-SNR PNG files instead.
    """
    from matplotlib.figure import Figure

    curves = learning_curve_table(results, metric)
    levels = sorted(curves["snr"].unique(), reverse=True) if snrs is None else list(snrs)
    if not levels:
        raise ConfigError("the results table holds no rows to plot")
    fig = Figure(figsize=(3.6 * len(levels), 3.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(levels), sharey=True))
    for ax, snr in zip(axes, levels, strict=True):
        at_snr = curves[curves["snr"] == snr]
        for strategy, c in at_snr.groupby("strategy", sort=True):
            x = c["n_labels"].to_numpy(dtype=float)
            m = c["mean"].to_numpy(dtype=float)
            s = np.nan_to_num(c["std"].to_numpy(dtype=float))
            style: dict[str, Any] = (
                {"color": "black", "linestyle": "--"} if strategy == baseline else {}
            )
            (line,) = ax.plot(x, m, marker="o", markersize=3, label=str(strategy), **style)
            ax.fill_between(x, m - s, m + s, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_title(f"SNR {format_snr(float(snr))}", fontsize=10)
        ax.set_xlabel("labelled subtomograms")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(f"test {metric.replace('_', ' ')}")
    axes[-1].legend(fontsize="small")
    return fig


def plot_robustness(robustness: pd.DataFrame, path: str | Path) -> Path:
    """Write the cross-SNR robustness heatmap (train SNR × test SNR accuracy) to ``path``."""
    mat = robustness_matrix(robustness)
    values = mat.to_numpy(dtype=float)
    fig = _figure((1.2 + 0.9 * values.shape[1], 1.0 + 0.7 * values.shape[0]))
    ax = fig.add_subplot()
    im = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(values.shape[1]), [format_snr(float(c)) for c in mat.columns])
    ax.set_yticks(range(values.shape[0]), [format_snr(float(i)) for i in mat.index])
    ax.set_xlabel("test SNR")
    ax.set_ylabel("training SNR")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(
                j,
                i,
                _fmt(values[i, j], 2),
                ha="center",
                va="center",
                color="white" if values[i, j] < 0.6 else "black",
                fontsize="small",
            )
    fig.colorbar(im, ax=ax, label="test accuracy")
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path


def write_report(
    results: pd.DataFrame,
    out_dir: str | Path,
    *,
    robustness: pd.DataFrame | None = None,
    metric: str = "accuracy",
    baseline: str = "random",
    notes: Sequence[str] = (),
    extra_baselines: Sequence[str] = (),
    balance: pd.DataFrame | None = None,
    title: str = "Noise-robustness benchmark",
) -> dict[str, Any]:
    """Write ``summary.md``, ``curves_snr*.png`` and (with a robustness table) ``robustness.png``.

    ``extra_baselines`` (e.g. ``random@scratch``) get their own comparisons in
    ``summary.md``, ``balance`` a class-balance section, ``title`` its heading (see
    :func:`summary_markdown`).

    Returns
    -------
    dict
        ``{"summary": Path, "curves": [Path, ...], "robustness": Path | None}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = out_dir / "summary.md"
    atomic_write_text(
        summary,
        summary_markdown(
            results,
            robustness=robustness,
            metric=metric,
            baseline=baseline,
            notes=notes,
            extra_baselines=extra_baselines,
            balance=balance,
            title=title,
        ),
    )
    curves = plot_curves(results, out_dir, metric=metric, baseline=baseline)
    robust_path = None
    if robustness is not None and len(robustness):
        robust_path = plot_robustness(robustness, out_dir / "robustness.png")
    logger.info("benchmark report written to %s", out_dir)
    return {"summary": summary, "curves": curves, "robustness": robust_path}

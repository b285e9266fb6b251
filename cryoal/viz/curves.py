"""Learning curves: test metric against the number of labels."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cryoal.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["learning_curve_points", "plot_benchmark_curves", "plot_learning_curve"]


def learning_curve_points(
    history: Any, metric: str = "test_accuracy"
) -> tuple[np.ndarray, np.ndarray]:
    """``(n_labels, metric)`` arrays from a loop history, a table or a Project.

    Parameters
    ----------
    history
        Rows with ``n_labels`` and ``metric``: the list returned by
        :func:`cryoal.active.loop.run`, a DataFrame, or a :class:`cryoal.active.Project`
        (its rounds' recorded metrics). Rows without the metric (cold-start rounds) are
        skipped.
    metric
        Name of the metric column/key.

    Returns
    -------
    tuple[numpy.ndarray, numpy.ndarray]
        Label counts `(R,)` (int) and metric values `(R,)` (float), sorted by label count.

    Raises
    ------
    ConfigError
        No row carries the metric.
    """
    rows: list[Mapping[str, Any]]
    if hasattr(history, "rounds") and callable(history.rounds):
        rows = [{"n_labels": r.n_labels, **r.metrics} for r in history.rounds()]
    elif isinstance(history, pd.DataFrame):
        rows = history.to_dict("records")  # type: ignore[assignment]
    else:
        rows = list(history)
    points = []
    for row in rows:
        value = row.get(metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        points.append((int(row["n_labels"]), float(value)))
    if not points:
        raise ConfigError(
            f"no round has a {metric!r} value to plot; run rounds with a test set "
            "(cryoal.active.loop.run(..., test_set=...)) or pick another metric"
        )
    points.sort()
    x, y = zip(*points, strict=True)
    return np.asarray(x, dtype=np.int64), np.asarray(y, dtype=np.float64)


def plot_learning_curve(
    history: Any,
    metric: str = "test_accuracy",
    *,
    label: str | None = None,
    title: str | None = None,
    ax: Any = None,
) -> Figure:
    """Plot one learning curve (``metric`` against labelled volumes).

    Parameters
    ----------
    history
        See :func:`learning_curve_points`.
    metric
        Metric on the y axis.
    label
        Legend entry (e.g. the strategy).
    title
        Axes title.
    ax
        Draw into these axes (to overlay several curves); a new figure otherwise.

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the axes.
    """
    from matplotlib.figure import Figure

    x, y = learning_curve_points(history, metric)
    if ax is None:
        fig = Figure(figsize=(4.5, 3.2), layout="constrained")
        ax = fig.add_subplot()
    ax.plot(x, y, marker="o", markersize=4, label=label)
    ax.set_xlabel("labelled subtomograms")
    ax.set_ylabel(metric.replace("_", " "))
    if metric.endswith("accuracy"):
        ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    if label is not None:
        ax.legend(fontsize="small")
    figure: Figure = ax.figure
    return figure


def plot_benchmark_curves(
    results: pd.DataFrame,
    metric: str = "accuracy",
    *,
    baseline: str = "random",
    snrs: Sequence[float] | None = None,
) -> Figure:
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
    """
    from matplotlib.figure import Figure

    from cryoal.benchmark.report import format_snr, learning_curve_table

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

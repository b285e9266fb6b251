"""Learning curves: test metric against the number of labels.

Noise-benchmark curves (one panel per SNR) are drawn by the benchmark itself:
:func:`cryoal.benchmark.report.plot_benchmark_curves` (viz does not import benchmark).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cryoal.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["learning_curve_points", "plot_learning_curve"]


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

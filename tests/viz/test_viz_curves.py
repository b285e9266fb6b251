"""Learning curves from loop histories, tables and projects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryoal import viz
from cryoal.active import Project
from cryoal.errors import ConfigError


def test_points_from_a_loop_history_skip_cold_rounds() -> None:
    history = [
        {"round": 1, "mode": "cold", "n_labels": 0},
        {"round": 3, "mode": "train", "n_labels": 16, "test_accuracy": 0.8},
        {"round": 2, "mode": "train", "n_labels": 8, "test_accuracy": 0.5},
        {"round": 4, "mode": "train", "n_labels": 24, "test_accuracy": float("nan")},
    ]
    x, y = viz.learning_curve_points(history)
    np.testing.assert_array_equal(x, [8, 16])
    np.testing.assert_allclose(y, [0.5, 0.8])
    x2, y2 = viz.learning_curve_points(pd.DataFrame(history))
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_allclose(y2, y)


def test_points_from_a_project(tmp_path: Path) -> None:
    project = Project(tmp_path / "p")
    try:
        for n_labels, acc in ((0, None), (4, 0.25), (8, 0.75)):
            rnd = project.start_round(strategy="entropy", budget=4, seed=0, mode="train", config={})
            project.mark_trained(rnd.n, None, {} if acc is None else {"test_accuracy": acc})
            project.record_scores(rnd.n, [], [])
            project.mark_picked(rnd.n)
            with project._transaction() as conn:  # labels counted when each round started
                conn.execute("UPDATE rounds SET n_labels = ? WHERE n = ?", (n_labels, rnd.n))
        x, y = viz.learning_curve_points(project)
        np.testing.assert_array_equal(x, [4, 8])
        np.testing.assert_allclose(y, [0.25, 0.75])
        fig = viz.plot_learning_curve(project, label="entropy", title="demo")
        (line,) = fig.axes[0].get_lines()
        np.testing.assert_allclose(line.get_ydata(), [0.25, 0.75])
        assert fig.axes[0].get_ylim() == pytest.approx((0.0, 1.02))
    finally:
        project.close()


def test_points_error_names_the_metric() -> None:
    with pytest.raises(ConfigError, match=r"^no round has a 'f1' value to plot"):
        viz.learning_curve_points([{"n_labels": 4, "test_accuracy": 0.5}], "f1")


def test_overlaying_curves_on_one_axes() -> None:
    fig = viz.plot_learning_curve([{"n_labels": 4, "test_accuracy": 0.5}], label="a")
    viz.plot_learning_curve([{"n_labels": 4, "test_accuracy": 0.7}], label="b", ax=fig.axes[0])
    assert [ln.get_label() for ln in fig.axes[0].get_lines()] == ["a", "b"]

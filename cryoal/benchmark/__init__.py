"""Benchmarks: noise robustness of acquisition strategies (strategies × SNR × seeds).

:func:`cryoal.benchmark.engine.run` (also ``noise.run``) runs the benchmark of every
task: the subtomogram suite of :mod:`cryoal.benchmark.noise` and the image2d /
segmentation suite of :mod:`cryoal.benchmark.tasks` feed it; :mod:`cryoal.benchmark.presets`
maps a task to its config and presets. :mod:`cryoal.benchmark.report` turns the tidy
results table into statistics, figures and ``summary.md``. Arrows run one way:
``presets -> noise, tasks -> engine -> _blocks -> report``; nothing here is imported
back by :mod:`cryoal.tasks`.
"""

from __future__ import annotations

from cryoal.benchmark.report import (
    RESULT_COLUMNS,
    auc_table,
    final_table,
    labels_to_reach_table,
    learning_curve_table,
    normalized_auc,
    paired_comparison,
    plot_benchmark_curves,
    write_report,
)

__all__ = [
    "RESULT_COLUMNS",
    "auc_table",
    "final_table",
    "labels_to_reach_table",
    "learning_curve_table",
    "normalized_auc",
    "paired_comparison",
    "plot_benchmark_curves",
    "write_report",
]

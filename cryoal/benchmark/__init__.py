"""Benchmarks: noise robustness of acquisition strategies (strategies × SNR × seeds).

:func:`cryoal.benchmark.noise.run` is the one entry point for every task: it runs
subtomogram classification itself and hands image2d / segmentation configs
(:class:`cryoal.benchmark.tasks.TaskBenchmarkConfig`) to :mod:`cryoal.benchmark.tasks`.
Both engines share :mod:`cryoal.benchmark._blocks` (resumable blocks, config views,
initial sets) and :mod:`cryoal.benchmark.report`, which turns the tidy results table
into statistics, figures and ``summary.md``. Arrows run one way:
``noise -> tasks -> _blocks -> report``; nothing here is imported back by
:mod:`cryoal.tasks`.
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

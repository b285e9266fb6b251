"""Benchmarks: noise robustness of acquisition strategies (strategies × SNR × seeds).

:mod:`cryoal.benchmark.noise` runs the benchmark (:func:`~cryoal.benchmark.noise.run`);
:mod:`cryoal.benchmark.report` turns its tidy results table into statistics, figures and
``summary.md``.
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
    "write_report",
]

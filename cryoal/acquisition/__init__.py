"""Acquisition: which unlabelled subtomograms are most worth an expert's time.

Every strategy has one shape, ``strategy.select(model, pool, budget, *, labelled=None,
generator=None) -> Selection``; score-based ones also have ``strategy.score(model, pool)``.
Build one by name with :func:`get`; :func:`available` lists the names. The registry is
task-aware: ``get(name, task="segmentation")`` builds the segmentation strategy of that
name (:mod:`cryoal.acquisition.segmentation`), the default task is ``classification3d``::

    from cryoal import acquisition
    strategy = acquisition.get("expected-gradnorm", batch_size=16, device="cuda")
    picks = strategy.select(model, pool.dataset(transform=normalize), budget=50, labelled=done)

The engine, :func:`per_sample_grad_norms`, gives exact per-sample gradient norms of a batch
without a Python loop over samples (see ``docs/acquisition.md``).
"""

from __future__ import annotations

from cryoal.acquisition._persample import PerSampleLoss, is_cross_entropy
from cryoal.acquisition._stream import eval_mode, iter_batches, mc_dropout_mode, stream_scores
from cryoal.acquisition.auto import Auto, choose
from cryoal.acquisition.base import (
    CLASSIFICATION_TASKS,
    DEFAULT_TASK,
    ScoreStrategy,
    Selection,
    Strategy,
    available,
    check_budget,
    get,
    register,
    select_topk,
    strategy_class,
    summary,
    tasks_of,
)
from cryoal.acquisition.diverse import DiverseEntropyGradNorm, DiverseExpectedGradNorm
from cryoal.acquisition.diversity import BADGE, Coreset, kcenter_greedy, kmeanspp_factored
from cryoal.acquisition.gradnorm import (
    EntropyGradNorm,
    ExpectedGradNorm,
    LastLayerGradNorm,
    entropy,
    expected_ce,
    last_layer_scores,
    per_sample_class_grad_norms,
    per_sample_grad_norms,
)
from cryoal.acquisition.segmentation import (
    SegEntropy,
    SegEntropyGradNorm,
    SegExpectedGradNorm,
    expected_gradnorm_scores,
    mean_voxel_entropy,
    sample_label_maps,
)
from cryoal.acquisition.sharded import auto_choice, shardable, sharded_score, sharded_select
from cryoal.acquisition.typicality import Typicality, typiclust_select
from cryoal.acquisition.uncertainty import (
    BALD,
    Entropy,
    LeastConfidence,
    Margin,
    Random,
    bald_scores,
    entropy_of,
    margin_scores,
)

__all__ = [
    "CLASSIFICATION_TASKS",
    "DEFAULT_TASK",
    "SegEntropy",
    "SegEntropyGradNorm",
    "SegExpectedGradNorm",
    "expected_gradnorm_scores",
    "mean_voxel_entropy",
    "sample_label_maps",
    "strategy_class",
    "tasks_of",
    "Auto",
    "BADGE",
    "BALD",
    "Coreset",
    "DiverseEntropyGradNorm",
    "DiverseExpectedGradNorm",
    "Entropy",
    "EntropyGradNorm",
    "ExpectedGradNorm",
    "LastLayerGradNorm",
    "LeastConfidence",
    "Margin",
    "Random",
    "ScoreStrategy",
    "Selection",
    "Strategy",
    "Typicality",
    "available",
    "bald_scores",
    "check_budget",
    "choose",
    "entropy",
    "entropy_of",
    "eval_mode",
    "expected_ce",
    "get",
    "iter_batches",
    "kcenter_greedy",
    "kmeanspp_factored",
    "last_layer_scores",
    "margin_scores",
    "mc_dropout_mode",
    "per_sample_class_grad_norms",
    "per_sample_grad_norms",
    "is_cross_entropy",
    "PerSampleLoss",
    "register",
    "select_topk",
    "summary",
    "stream_scores",
    "typiclust_select",
    "auto_choice",
    "shardable",
    "sharded_score",
    "sharded_select",
]

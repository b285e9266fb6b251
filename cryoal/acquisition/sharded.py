"""Sharded scoring: a strategy scores a pool with the work split between torchrun ranks.

This is the public API the round loop (and any SPMD script) uses past one process; the
process-group plumbing (:func:`cryoal.distributed.shard_indices`,
:func:`cryoal.distributed.gather_scores`) lives in :mod:`cryoal.distributed`, which knows
nothing of strategies. Every function here is called by **every** rank with the same
arguments and returns the same result on every rank; without a process group it is the
plain single-process call.

* :func:`sharded_score`: ``strategy.score(model, pool)`` for a
  :class:`~cryoal.acquisition.base.ScoreStrategy`;
* :func:`sharded_select`: ``strategy.select(...)``, sharded for score strategies and for
  :class:`~cryoal.acquisition.auto.Auto` whenever its choice for the labelled set is one
  (``entropy-gradnorm`` / ``expected-gradnorm``); typicality, the diverse strategies,
  coreset and BADGE select a batch jointly and run whole in each process;
* :func:`shardable`: whether :func:`sharded_select` splits the work for this strategy,
  model and labelled count (callers run the others on one rank only).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from torch import Tensor, nn

from cryoal.acquisition._stream import PoolLike
from cryoal.acquisition.base import ScoreStrategy, Selection, Strategy
from cryoal.errors import ConfigError

__all__ = ["auto_choice", "shardable", "sharded_score", "sharded_select"]

ShardMode = Literal["contiguous", "strided"]


def _joint(strategy: Strategy) -> ConfigError:
    return ConfigError(
        f"strategy {getattr(strategy, 'name', strategy)!r} selects a batch jointly and "
        "cannot be sharded; run it in one process"
    )


def _rebind_cuda(strategy: Strategy) -> None:
    """A CUDA strategy scores on this rank's GPU."""
    if strategy.device is not None and strategy.device.type == "cuda":
        strategy.device = torch.device("cuda", torch.cuda.current_device())


def auto_choice(
    strategy: Strategy, model: nn.Module, n_labelled: int
) -> tuple[Strategy, dict[str, Any]] | None:
    """:meth:`Auto.choice <cryoal.acquisition.auto.Auto.choice>` when it is a score
    strategy; ``None`` when ``strategy`` is not Auto or its choice for ``n_labelled``
    labels selects a batch jointly.

    Parameters
    ----------
    strategy
        Any strategy.
    model
        The round's classifier (Auto reads the number of classes from its head).
    n_labelled
        Number of labelled pool items.

    Returns
    -------
    (Strategy, dict) or None
        The chosen :class:`~cryoal.acquisition.base.ScoreStrategy` and
        ``{"choice", "reason", "labels", "labels_per_class"}`` that ``Auto.select`` records.
    """
    from cryoal.acquisition.auto import SCORE_CHOICES, Auto

    if not isinstance(strategy, Auto):
        return None
    if strategy.decide(model, int(n_labelled))[0] not in SCORE_CHOICES:
        return None
    inner, info = strategy.choice(model, n_labelled)
    if not isinstance(inner, ScoreStrategy):  # pragma: no cover - both choices score items
        return None
    return inner, info


def shardable(strategy: Strategy, model: nn.Module, n_labelled: int) -> bool:
    """Whether :func:`sharded_select` splits the scoring between ranks for this strategy.

    True for score strategies and for ``auto`` when its choice for ``n_labelled`` labels
    is one; false for strategies that select a batch jointly (they run whole).
    """
    if isinstance(strategy, ScoreStrategy):
        return True
    return auto_choice(strategy, model, n_labelled) is not None


def sharded_score(
    strategy: Strategy, model: nn.Module, pool: PoolLike, *, mode: ShardMode = "contiguous"
) -> Tensor:
    """``strategy.score(model, pool)``, with the pool split between the ranks.

    Every rank calls it with the same arguments. Rank ``r`` scores
    :func:`cryoal.distributed.shard_indices` ``(N, r, W)`` and the shards are merged with
    :func:`cryoal.distributed.gather_scores`, so every rank returns the full ``(N,)``
    vector, equal to the single-process result for strategies whose per-item score
    depends on the item only (entropy, margin, least-confidence, the gradient-norm
    family, random). BALD draws its dropout masks per batch, so its sharded scores are
    reproducible for a given world size but not equal to the single-process ones.

    Parameters
    ----------
    strategy
        A :class:`~cryoal.acquisition.base.ScoreStrategy`. A CUDA device is re-bound to
        this rank's GPU.
    model
        Classifier returning logits.
    pool
        Map-style pool (see :meth:`cryoal.acquisition.Strategy.select`).
    mode
        How the pool is split (:func:`cryoal.distributed.shard_indices`).

    Returns
    -------
    Tensor
        ``(N,)`` float32 scores on the CPU, in pool order, on every rank.

    Raises
    ------
    ConfigError
        ``strategy`` does not score items independently (coreset, BADGE, auto).
    """
    from cryoal import distributed

    if not isinstance(strategy, ScoreStrategy):
        raise _joint(strategy)
    info = distributed.current()
    if not info.distributed:
        return strategy.score(model, pool)
    n = len(pool)
    _rebind_cuda(strategy)
    shard = distributed.shard_indices(n, info.rank, info.world_size, mode=mode)
    gen = strategy._generator(None)
    local = strategy._score_indices(model, pool, shard, gen) if shard.numel() else torch.zeros(0)
    idx, sc = distributed.gather_scores(shard, local.float())
    out = torch.full((n,), float("nan"), dtype=torch.float32)
    out[idx] = sc.to(torch.float32)
    return out


def sharded_select(
    strategy: Strategy,
    model: nn.Module,
    pool: PoolLike,
    budget: int,
    *,
    labelled: Iterable[int | str] | Tensor | None = None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    mode: ShardMode = "contiguous",
) -> Selection:
    """``strategy.select(...)`` with the unlabelled items split between the ranks.

    Every rank calls it with the same arguments and gets the same
    :class:`~cryoal.acquisition.Selection`: the unlabelled indices are sharded, each rank
    scores its shard, and only each rank's top ``budget`` travels
    (:func:`cryoal.distributed.gather_scores` with ``k``). The picks equal the
    single-process ``strategy.select`` for the strategies named in :func:`sharded_score`
    (``random`` included: it draws one number per pool item from the same generator) and
    for ``auto`` when it chooses one of them (its ``info`` is kept). Strategies for which
    :func:`shardable` is false run whole in this process.

    Parameters
    ----------
    strategy, model, pool, budget, labelled
        As :meth:`cryoal.acquisition.Strategy.select`.
    generator
        Randomness of stochastic strategies; ``None``: a generator seeded with ``seed``.
    seed
        Seed of that generator (default: the strategy's ``seed``). A seed travels to
        other ranks where a generator cannot.
    mode
        How the unlabelled items are split (:func:`cryoal.distributed.shard_indices`).

    Returns
    -------
    Selection
        ``budget`` indices best first, their scores, the strategy name (and auto's info).

    Raises
    ------
    ConfigError, EmptyPoolError, PoolExhaustedError
        As :meth:`cryoal.acquisition.Strategy.select`.
    """
    from cryoal import distributed

    if generator is None and seed is not None:
        generator = torch.Generator().manual_seed(int(seed))
    info = distributed.current()
    if not info.distributed:
        return strategy.select(model, pool, budget, labelled=labelled, generator=generator)
    lab, unl = strategy._unlabelled(pool, budget, labelled)
    inner: Strategy = strategy
    extra: dict[str, Any] = {}
    if not isinstance(strategy, ScoreStrategy):
        chosen = auto_choice(strategy, model, int(lab.numel()))
        if chosen is None:
            return strategy.select(model, pool, budget, labelled=lab, generator=generator)
        inner, extra = chosen
    assert isinstance(inner, ScoreStrategy)
    _rebind_cuda(inner)
    shard = distributed.shard_indices(unl, info.rank, info.world_size, mode=mode)
    gen = inner._generator(generator)
    local = inner._score_indices(model, pool, shard, gen) if shard.numel() else torch.zeros(0)
    idx, sc = distributed.gather_scores(shard, local.float(), k=budget)
    return Selection(indices=idx, scores=sc.to(torch.float32), strategy=strategy.name, info=extra)

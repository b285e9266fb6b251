"""Thin helpers over :mod:`torch.distributed`: sharding, merging scores, data-parallel training.

cryoal does not run its own cluster code. Past one process it uses ``torch.distributed``
as launched by ``torchrun`` (NCCL on GPUs, gloo on CPUs):

* :func:`init_distributed` joins the process group described by torchrun's environment
  (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``);
* :func:`shard_indices` splits pool indices between ranks, deterministically;
* :func:`gather_scores` all-gathers each rank's ``(index, score)`` shard and merges them
  into exactly the ranking one process produces: score descending, ties by index
  ascending, NaN last (the order of :func:`cryoal.acquisition.select_topk`);
* sharded scoring of a pool by a strategy is :mod:`cryoal.acquisition.sharded` (built on
  the two functions above; this module knows nothing of strategies);
* :func:`wrap_ddp`, :func:`train_sampler` and :func:`broadcast_module` are what
  :func:`cryoal.train.fit` uses when ``TrainConfig(distributed=True)``;
* :func:`run_everywhere` / :func:`serve` let one driver process (rank 0, which owns the
  project files) run a function on every rank at once: the other ranks wait in
  :func:`serve` and execute what rank 0 broadcasts. ``cryoal select`` under torchrun
  uses it for the two collective steps of a round, training and scoring.

Every function also works without a process group (world size 1), so library code calls
them unconditionally.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, Literal, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DistributedSampler, Sampler

from cryoal.errors import ConfigError

__all__ = [
    "DistInfo",
    "ShardedSampler",
    "broadcast_module",
    "current",
    "gather_scores",
    "in_torchrun",
    "init_distributed",
    "is_leader",
    "rank_scores",
    "run_everywhere",
    "serve",
    "session",
    "shard_indices",
    "shutdown",
    "train_sampler",
    "wrap_ddp",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
_STOP = "__cryoal_stop__"
#: True on rank 0 between :func:`session` enter and exit, when followers are serving
_LEADING = False


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the process group.

    Attributes
    ----------
    rank
        Global rank, ``0 … world_size - 1``.
    world_size
        Number of processes.
    local_rank
        Rank on this node (the GPU index under torchrun).
    backend
        ``"nccl"``, ``"gloo"``, or ``"none"`` without a process group.
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def distributed(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1


def in_torchrun() -> bool:
    """True when torchrun's environment variables (``RANK``, ``WORLD_SIZE``, ...) are set."""
    return all(k in os.environ for k in _TORCHRUN_ENV)


def current() -> DistInfo:
    """The rank and world size of the initialised process group (rank 0 of 1 without one)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
            backend=str(dist.get_backend()),
        )
    return DistInfo(rank=0, world_size=1, local_rank=0, backend="none")


def is_leader() -> bool:
    """True on rank 0 (and in a plain, non-distributed process)."""
    return current().rank == 0


def init_distributed(
    *,
    device: str | torch.device | None = "auto",
    backend: Literal["auto", "nccl", "gloo"] = "auto",
    timeout_s: float = 1800.0,
) -> DistInfo:
    """Join the process group described by torchrun's environment.

    Parameters
    ----------
    device
        ``"auto"``/``None`` (CUDA when available), ``"cpu"`` or ``"cuda"``: with CUDA,
        this process binds to GPU ``LOCAL_RANK`` (``torch.cuda.set_device``), so
        ``"cuda"`` means this rank's own GPU from then on.
    backend
        ``"auto"`` picks NCCL for CUDA and gloo for CPU.
    timeout_s
        Seconds a collective may wait for the other ranks before failing.

    Returns
    -------
    DistInfo
        This process's rank. Without torchrun's environment (a plain ``python`` run) no
        group is created and rank 0 of 1 is returned. Calling it again returns the
        existing group.

    Raises
    ------
    ConfigError
        NCCL asked for without CUDA, or a malformed torchrun environment.
    """
    if dist.is_initialized():
        return current()
    if not in_torchrun():
        return DistInfo(rank=0, world_size=1, local_rank=0, backend="none")
    try:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        int(os.environ["RANK"])
        int(os.environ["WORLD_SIZE"])
    except ValueError as exc:
        raise ConfigError(
            f"malformed torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}"
        ) from None
    dev_type = _device_type(device)
    if backend == "auto":
        backend = "nccl" if dev_type == "cuda" else "gloo"
    if backend == "nccl" and not torch.cuda.is_available():
        raise ConfigError("backend nccl needs CUDA GPUs; use --device cpu (gloo) on CPU nodes")
    if dev_type == "cuda":
        torch.cuda.set_device(local_rank % max(torch.cuda.device_count(), 1))
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    info = current()
    log.info("joined %s process group: rank %d of %d", backend, info.rank, info.world_size)
    return info


def _device_type(device: str | torch.device | None) -> str:
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device).type


def shutdown() -> None:
    """Leave the process group (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# --------------------------------------------------------------------------- sharding


def shard_indices(
    n: int | Tensor | Sequence[int],
    rank: int | None = None,
    world_size: int | None = None,
    *,
    mode: Literal["contiguous", "strided"] = "contiguous",
) -> Tensor:
    """The pool indices one rank handles.

    Parameters
    ----------
    n
        Pool size ``N`` (indices ``0 … N-1``), or the indices to split (kept in order).
    rank, world_size
        Default: this process's (:func:`current`).
    mode
        ``"contiguous"``: rank ``r`` gets one block, the first ``N mod W`` ranks one item
        more (good for file locality). ``"strided"``: rank ``r`` gets items ``r, r+W, …``.

    Returns
    -------
    Tensor
        ``(N_r,)`` int64 indices. The shards of all ranks are disjoint and together cover
        every index exactly once; the split depends only on ``(N, rank, world_size)``.

    Raises
    ------
    ConfigError
        ``rank`` outside ``[0, world_size)`` or an unknown ``mode``.
    """
    info = current()
    r = info.rank if rank is None else int(rank)
    w = info.world_size if world_size is None else int(world_size)
    if w < 1 or not 0 <= r < w:
        raise ConfigError(f"rank {r} is outside a world of {w} processes")
    if isinstance(n, Tensor):
        items = n.to(torch.long).flatten()
    elif isinstance(n, (int, np.integer)):
        items = torch.arange(int(n), dtype=torch.long)
    else:
        items = torch.as_tensor(list(n), dtype=torch.long)
    total = items.numel()
    if mode == "strided":
        return items[r::w].clone()
    if mode != "contiguous":
        raise ConfigError(f"shard mode must be 'contiguous' or 'strided', got {mode!r}")
    base, extra = divmod(total, w)
    start = r * base + min(r, extra)
    stop = start + base + (1 if r < extra else 0)
    return items[start:stop].clone()


def rank_scores(indices: Tensor, scores: Tensor, k: int | None = None) -> tuple[Tensor, Tensor]:
    """Order ``(index, score)`` pairs best first: score descending, then index ascending.

    NaN scores rank last (as in :func:`cryoal.acquisition.select_topk`).

    Parameters
    ----------
    indices
        ``(M,)`` int64 pool indices (unique).
    scores
        ``(M,)`` scores; higher = more worth labelling.
    k
        Keep the best ``k`` only (default all).

    Returns
    -------
    indices, scores
        ``(min(k, M),)`` each, best first; scores keep their dtype.
    """
    idx = indices.detach().to("cpu", torch.long).flatten()
    sc = scores.detach().cpu().flatten()
    if idx.numel() != sc.numel():
        raise ConfigError(f"{idx.numel()} indices but {sc.numel()} scores")
    key = sc.to(torch.float64).clone()
    key[torch.isnan(key)] = -torch.inf
    by_index = torch.argsort(idx, stable=True)
    order = by_index[torch.sort(key[by_index], descending=True, stable=True).indices]
    if k is not None:
        order = order[: max(int(k), 0)]
    return idx[order], sc[order]


def gather_scores(
    indices: Tensor, scores: Tensor, *, k: int | None = None
) -> tuple[Tensor, Tensor]:
    """All-gather every rank's ``(index, score)`` shard and merge them into one ranking.

    Every rank calls it (a collective). Each rank may hold a different number of items.

    Parameters
    ----------
    indices
        ``(M_r,)`` pool indices this rank scored.
    scores
        ``(M_r,)`` their scores (float).
    k
        Keep only the global top ``k``: each rank sends its own top ``k`` (the global top
        ``k`` is always among them), which bounds the traffic by ``k × world_size``.

    Returns
    -------
    indices, scores
        The merged ranking on every rank, best first (:func:`rank_scores` order): the
        same as ranking all items in one process. Scores are float64 on the CPU.
    """
    local_idx, local_sc = rank_scores(indices, scores.to(torch.float64), k)
    info = current()
    if not info.distributed:
        return local_idx, local_sc
    dev = _collective_device()
    count = torch.tensor([local_idx.numel()], dtype=torch.long, device=dev)
    counts = [torch.zeros_like(count) for _ in range(info.world_size)]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    width = max(max(sizes), 1)
    # indices travel as float64 too: exact for |i| < 2**53, one all_gather instead of two
    packed = torch.zeros((width, 2), dtype=torch.float64, device=dev)
    packed[: local_idx.numel(), 0] = local_idx.to(torch.float64).to(dev)
    packed[: local_idx.numel(), 1] = local_sc.to(dev)
    parts = [torch.empty_like(packed) for _ in range(info.world_size)]
    dist.all_gather(parts, packed)
    merged = torch.cat([p[:s].cpu() for p, s in zip(parts, sizes, strict=True)])
    all_idx = merged[:, 0].to(torch.long)
    if all_idx.unique().numel() != all_idx.numel():
        raise ConfigError("gather_scores: ranks scored overlapping indices; shard them disjointly")
    return rank_scores(all_idx, merged[:, 1], k)


def _collective_device() -> torch.device:
    if current().backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# --------------------------------------------------------------------------- training


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """Wrap ``model`` (already on ``device``) in DistributedDataParallel.

    On CUDA the wrapper is bound to ``device``; on CPU (gloo) it has no device ids.
    Parameters and buffers are broadcast from rank 0 when the wrapper is built.
    """
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return DistributedDataParallel(model, device_ids=[index], output_device=index)
    return DistributedDataParallel(model)


def broadcast_module(model: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers (BatchNorm statistics) to every rank."""
    if not current().distributed:
        return
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t.data, src)


def all_reduce_sum(value: Tensor) -> Tensor:
    """Sum ``value`` over ranks (in place; returned for chaining)."""
    if current().distributed:
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


class ShardedSampler(Sampler[int]):
    """Rank ``r``'s share of another sampler's sequence, the same on every rank.

    Every rank draws the full sequence from ``base`` (which must be seeded identically
    on every rank, e.g. a :class:`~torch.utils.data.WeightedRandomSampler` with a fixed
    generator) and keeps items ``r, r+W, …``; the sequence is padded by repeating its
    start so all ranks take the same number of steps.
    """

    def __init__(self, base: Sampler[int], rank: int, world_size: int) -> None:
        self.base, self.rank, self.world_size = base, rank, world_size

    def __len__(self) -> int:
        return math.ceil(len(self.base) / self.world_size)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[int]:
        seq = list(self.base)
        total = len(self) * self.world_size
        seq += seq[: total - len(seq)]
        return iter(seq[self.rank : total : self.world_size])

    def set_epoch(self, epoch: int) -> None:
        """Kept for the DistributedSampler interface; ``base`` advances its own generator."""


def train_sampler(
    dataset: Any,
    *,
    seed: int,
    weights: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Sampler[int]:
    """The training sampler of this rank under DDP.

    Parameters
    ----------
    dataset
        The training set (its length is used).
    seed
        Shuffling seed (shared by every rank; the epoch is mixed in by ``set_epoch``).
    weights
        Per-item sampling weights for class-balanced sampling with replacement, or None
        for a shuffled pass (:class:`~torch.utils.data.DistributedSampler`).
    generator
        Generator of the balanced sampler (seeded identically on every rank).
    """
    info = current()
    if weights is None:
        return DistributedSampler(
            dataset,
            num_replicas=info.world_size,
            rank=info.rank,
            shuffle=True,
            seed=seed,
            drop_last=False,
        )
    from torch.utils.data import WeightedRandomSampler

    base = WeightedRandomSampler(
        weights.tolist(), num_samples=len(weights), replacement=True, generator=generator
    )
    return ShardedSampler(base, info.rank, info.world_size)


# --------------------------------------------------------------------------- driver/followers


def run_everywhere(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` here and, inside a :func:`session` led by this rank,
    on every follower at the same time (they wait in :func:`serve`).

    ``fn`` and its arguments are pickled and broadcast, so ``fn`` must be a module-level
    function. Outside a leading session it simply calls ``fn``. The followers' return
    values are dropped; this rank's is returned.
    """
    if _LEADING and current().distributed:
        box: list[Any] = [(fn, args, kwargs)]
        dist.broadcast_object_list(box, src=0)
    return fn(*args, **kwargs)


def serve() -> int:
    """Follower loop: run each function rank 0 sends with :func:`run_everywhere` until
    rank 0 leaves its :func:`session`. Returns the number of jobs run."""
    jobs = 0
    while True:
        box: list[Any] = [None]
        dist.broadcast_object_list(box, src=0)
        job = box[0]
        if isinstance(job, str) and job == _STOP:
            return jobs
        fn, args, kwargs = job
        log.info("rank %d: running %s", current().rank, getattr(fn, "__name__", fn))
        fn(*args, **kwargs)
        jobs += 1


@contextlib.contextmanager
def session(
    *,
    device: str | torch.device | None = "auto",
    timeout_s: float = 1800.0,
    drive: bool = False,
) -> Iterator[DistInfo]:
    """Join torchrun's process group for the duration of a command.

    By default every rank runs the body (SPMD: the same calls on every rank, e.g. ``fit``
    with ``distributed=True`` and :func:`cryoal.acquisition.sharded_select`). With
    ``drive=True`` rank 0 runs the body alone (the driver: it owns files and the project)
    and every other rank must call :func:`serve` in the body; on exit (also on an error) rank 0 tells the followers
    to stop. Either way all ranks meet at a barrier before the group is destroyed.
    Without torchrun's environment this is a plain single-process context.
    """
    global _LEADING
    info = init_distributed(device=device, timeout_s=timeout_s)
    _LEADING = drive and info.distributed and info.rank == 0
    try:
        yield info
    finally:
        if _LEADING:
            _LEADING = False
            with contextlib.suppress(Exception):
                dist.broadcast_object_list([_STOP], src=0)
        if info.distributed:
            # every rank waits here before the group goes: destroying it while gloo still
            # delivers the stop message to a follower aborted rank 0 ("terminate called
            # without an active exception") under load
            with contextlib.suppress(Exception):
                dist.barrier()
            shutdown()

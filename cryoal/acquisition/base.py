"""Strategy interface, selection result, shared top-k selection and the strategy registry.

Every acquisition strategy has one shape::

    strategy.select(model, pool, budget, *, labelled=None, generator=None) -> Selection

Score-based strategies (:class:`ScoreStrategy`) also expose ``strategy.score(model, pool)``
(higher = more worth labelling) and select the top ``budget`` unlabelled items with
:func:`select_topk`. Batch-aware strategies (coreset, BADGE) override :meth:`Strategy.select`.

The registry is task-aware: :func:`register` names the tasks a strategy applies to
(default the classification tasks), and :func:`get` / :func:`available` take the task
(``cryoal.tasks.Task.strategy`` passes its own name).
"""

from __future__ import annotations

import difflib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from cryoal._repr import html_view
from cryoal.acquisition._persample import PerSampleLoss
from cryoal.acquisition._stream import (
    PoolLike,
    Transform,
    check_pool,
    eval_mode,
    resolve_indices,
    stream_scores,
)
from cryoal.errors import ConfigError, EmptyPoolError, PoolExhaustedError
from cryoal.runtime import resolve_device

__all__ = [
    "CLASSIFICATION_TASKS",
    "DEFAULT_TASK",
    "ScoreStrategy",
    "Selection",
    "Strategy",
    "available",
    "get",
    "register",
    "select_topk",
    "strategy_class",
    "summary",
    "tasks_of",
]

log = logging.getLogger(__name__)

CONTEXT_OPTIONS: tuple[str, ...] = (
    "device",
    "batch_size",
    "amp",
    "transform",
    "progress",
    "num_workers",
    "seed",
    "loss",
)
"""The :class:`Strategy` options every strategy takes (the selection context); a
strategy that builds another (``auto``, sharded scoring) hands them on."""


@dataclass(frozen=True)
class Selection:
    """The items a strategy picked, best first.

    Attributes
    ----------
    indices
        ``(k,)`` int64 pool indices, in pick order (rank 1 first).
    scores
        ``(k,)`` float scores of the picks (for greedy strategies: the score at the time
        of the pick, e.g. the distance to the nearest centre).
    strategy
        Registered name of the strategy that made the selection.
    info
        Plain extra facts about the selection (e.g. ``auto``'s ``choice`` and
        ``reason``); empty for most strategies.
    """

    indices: Tensor
    scores: Tensor
    strategy: str
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.indices.numel())

    _repr_html_ = html_view("selection")


def select_topk(scores: Tensor, k: int, exclude: Iterable[int] | Tensor | None = None) -> Tensor:
    """Indices of the ``k`` highest scores, ties broken by the lower index.

    Parameters
    ----------
    scores
        ``(N,)`` scores; higher is better. NaN counts as the lowest possible score.
    k
        Number of indices to return, ``1 <= k <= N - len(exclude)``.
    exclude
        Indices never returned (e.g. the labelled set).

    Returns
    -------
    Tensor
        ``(k,)`` int64 indices, best first. The order is deterministic: a stable sort by
        score descending, then by index ascending.

    Raises
    ------
    ConfigError
        ``k <= 0`` or ``scores`` is not 1-D.
    EmptyPoolError
        ``scores`` is empty.
    PoolExhaustedError
        ``k`` exceeds the number of items not in ``exclude``.
    """
    if scores.dim() != 1:
        raise ConfigError(f"scores must be 1-D (N,), got shape {tuple(scores.shape)}")
    n = scores.numel()
    excluded = _as_index_tensor(exclude, n)
    check_budget(k, n, n - int(excluded.numel()))
    work = scores.detach().to("cpu", torch.float64).clone()
    work[torch.isnan(work)] = -torch.inf
    keep = torch.ones(n, dtype=torch.bool)
    keep[excluded] = False
    candidates = torch.nonzero(keep).flatten()
    order = torch.sort(work[candidates], descending=True, stable=True).indices
    return candidates[order[:k]]


def check_budget(budget: int, pool_size: int, unlabelled: int) -> None:
    """Validate a selection budget against the pool (shared by every strategy).

    Raises
    ------
    ConfigError
        ``budget`` is not a positive integer.
    EmptyPoolError
        The pool holds no items.
    PoolExhaustedError
        ``budget`` exceeds the number of unlabelled items.
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
        raise ConfigError(f"budget must be a positive integer, got {budget!r}")
    if pool_size == 0:
        raise EmptyPoolError("the pool holds no volumes: nothing to select from")
    if budget > unlabelled:
        raise PoolExhaustedError(
            f"budget {budget} exceeds the {unlabelled} unlabelled volumes left in the pool "
            f"of {pool_size}: lower --budget or add volumes"
        )


def _as_index_tensor(exclude: Iterable[int] | Tensor | None, n: int) -> Tensor:
    if exclude is None:
        return torch.zeros(0, dtype=torch.long)
    raw = torch.as_tensor(list(exclude) if not isinstance(exclude, Tensor) else exclude)
    idx: Tensor = torch.unique(raw.to(torch.long).flatten())
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
        bad = idx[(idx < 0) | (idx >= n)][:5].tolist()
        raise ConfigError(f"excluded indices {bad} are outside the pool of {n} volumes")
    return idx


class Strategy(ABC):
    """Base class of every acquisition strategy.

    Parameters
    ----------
    device
        Torch device for scoring (``"cpu"``, ``"cuda"``, ``"auto"``); ``None`` uses the
        device of the model's parameters. When given, the model is moved there (in place).
    batch_size
        Volumes per forward pass; memory is bounded by the batch, not the pool.
    amp
        Mixed-precision forward passes (CUDA only; ignored with a log line on CPU).
    transform
        Callable applied to each batched input ``(B, C, ...)`` on the device before the
        model sees it (e.g. :func:`cryoal.transforms.normalize`); ``None`` feeds items as
        the pool returns them.
    progress
        Show a tqdm progress bar over the pool.
    num_workers
        DataLoader workers reading the pool.
    seed
        Seed used when :meth:`select` gets no generator (and by strategies that draw
        random numbers while scoring).
    loss
        The task's per-sample label loss ``(logits (B, C), target (B,) int64) -> (B,)``
        (:meth:`cryoal.tasks.Task.per_sample_loss`), used by the strategies that take
        gradients of a label loss (expected-gradnorm, last-layer-gradnorm); ``None``:
        cross-entropy. Strategies without a label loss ignore it.
    """

    name: ClassVar[str] = ""

    def __init__(
        self,
        *,
        device: str | torch.device | None = None,
        batch_size: int = 32,
        amp: bool = False,
        transform: Transform | None = None,
        progress: bool = True,
        num_workers: int = 0,
        seed: int = 0,
        loss: PerSampleLoss | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
        self.device = None if device is None else resolve_device(device)
        self.batch_size = batch_size
        self.amp = amp
        self.transform = transform
        self.progress = progress
        self.num_workers = num_workers
        self.seed = seed
        if loss is not None and not callable(loss):
            raise ConfigError(f"loss must be a callable (logits, target) -> (B,), got {loss!r}")
        self.loss = loss

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, batch_size={self.batch_size})"

    def _prepare(self, model: nn.Module) -> torch.device:
        """Move ``model`` to the configured device and return the device used."""
        if self.device is not None:
            model.to(self.device)
            return self.device
        for p in model.parameters():
            return p.device
        for b in model.buffers():
            return b.device
        return torch.device("cpu")

    def _use_amp(self, device: torch.device) -> bool:
        if self.amp and device.type != "cuda":
            log.info("amp=True ignored on %s: mixed precision is used on CUDA only", device)
            return False
        return self.amp

    def _generator(self, generator: torch.Generator | None) -> torch.Generator:
        return generator if generator is not None else torch.Generator().manual_seed(self.seed)

    def _stream(
        self,
        model: nn.Module,
        fn: Callable[[Tensor], Tensor],
        pool: PoolLike,
        indices: Tensor,
        device: torch.device,
        *,
        desc: str | None = None,
        keep_mode: bool = False,
    ) -> Tensor:
        """Run ``fn`` over the pool items with this strategy's streaming options.

        Parameters
        ----------
        model
            Put in eval mode for the pass (each module's mode restored after) unless
            ``keep_mode=True`` (the caller set its own mode, e.g. MC dropout).
        fn
            Maps a batch ``(b, C, ...)`` on ``device`` to per-item results ``(b, ...)``.
        pool, indices, device
            As in :func:`cryoal.acquisition.stream_scores`.
        desc
            Progress-bar label (default: the strategy name).

        Returns
        -------
        Tensor
            ``(len(indices), ...)`` results on the CPU (see :func:`stream_scores`).
        """

        def run() -> Tensor:
            return stream_scores(
                fn,
                pool,
                indices,
                batch_size=self.batch_size,
                device=device,
                transform=self.transform,
                num_workers=self.num_workers,
                progress=self.progress,
                desc=self.name if desc is None else desc,
            )

        if keep_mode:
            return run()
        with eval_mode(model):
            return run()

    @abstractmethod
    def select(
        self,
        model: nn.Module,
        pool: PoolLike,
        budget: int,
        *,
        labelled: Iterable[int | str] | Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Selection:
        """Pick ``budget`` unlabelled pool items worth labelling.

        Parameters
        ----------
        model
            Classifier returning logits ``(B, C)``; kept in eval mode while scoring and
            restored to its previous mode afterwards.
        pool
            Map-style dataset whose items are a tensor ``(C, ...)`` or a tuple whose first
            element is that tensor (a ``VolumePool`` or ``pool.dataset()``).
        budget
            Number of items to pick.
        labelled
            Indices (or pool ids) never picked.
        generator
            Randomness of stochastic strategies; ``None`` uses ``seed``.

        Returns
        -------
        Selection
            ``budget`` indices best first, their scores and the strategy name.

        Raises
        ------
        ConfigError
            ``budget <= 0``, or unknown labelled ids.
        EmptyPoolError
            The pool is empty.
        PoolExhaustedError
            ``budget`` exceeds the number of unlabelled items.
        """

    def _unlabelled(
        self, pool: PoolLike, budget: int, labelled: Iterable[int | str] | Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Validate and return ``(labelled_indices, unlabelled_indices)`` as int64."""
        n = check_pool(pool)
        lab = resolve_indices(pool, labelled)
        mask = torch.ones(n, dtype=torch.bool)
        mask[lab] = False
        unl = torch.nonzero(mask).flatten()
        check_budget(budget, n, int(unl.numel()))
        return lab, unl


class ScoreStrategy(Strategy):
    """A strategy that scores each item independently and picks the top ``budget``."""

    @abstractmethod
    def _score_indices(
        self, model: nn.Module, pool: PoolLike, indices: Tensor, generator: torch.Generator
    ) -> Tensor:
        """Scores ``(len(indices),)`` of the given pool items (higher = pick first)."""

    def score(self, model: nn.Module, pool: PoolLike) -> Tensor:
        """Score every pool item.

        Parameters
        ----------
        model
            Classifier returning logits ``(B, C)``.
        pool
            Map-style dataset (see :meth:`Strategy.select`).

        Returns
        -------
        Tensor
            ``(N,)`` float32 scores on the CPU; higher = more worth labelling.
        """
        n = check_pool(pool)
        if n == 0:
            raise EmptyPoolError("the pool holds no volumes: nothing to score")
        return self._score_indices(model, pool, torch.arange(n), self._generator(None))

    def select(
        self,
        model: nn.Module,
        pool: PoolLike,
        budget: int,
        *,
        labelled: Iterable[int | str] | Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Selection:
        _, unl = self._unlabelled(pool, budget, labelled)
        scores = self._score_indices(model, pool, unl, self._generator(generator))
        order = select_topk(scores, budget)
        return Selection(indices=unl[order], scores=scores[order], strategy=self.name)


#: the tasks a strategy serves when :func:`register` names none (logits ``(B, K)``)
CLASSIFICATION_TASKS: tuple[str, ...] = ("classification3d", "image2d")
#: the task :func:`available` and :func:`get` mean when given none
DEFAULT_TASK = "classification3d"

#: task -> strategy name -> class: the one strategy registry (task-aware)
_REGISTRY: dict[str, dict[str, type[Strategy]]] = {}
S = TypeVar("S", bound=type[Strategy])


def register(name: str, *, tasks: Iterable[str] = CLASSIFICATION_TASKS) -> Callable[[S], S]:
    """Class decorator registering a strategy under ``name`` for ``tasks``.

    Parameters
    ----------
    name
        Lower-case, dash-separated registry name. One name may stand for different
        classes in different tasks (``entropy`` of class probabilities for the
        classification tasks, mean voxel entropy for ``segmentation``).
    tasks
        Task names (:func:`cryoal.tasks.available`) the strategy applies to; default the
        classification tasks, whose models return logits ``(B, K)``.

    Raises
    ------
    ConfigError
        Another class is already registered under ``name`` for one of ``tasks``.
    """
    task_names = tuple(tasks)

    def deco(cls: S) -> S:
        for task in task_names:
            known = _REGISTRY.get(task, {}).get(name)
            if known is not None and known is not cls:
                raise ConfigError(
                    f"acquisition strategy {name!r} is already registered for task {task!r}"
                )
        cls.name = name
        for task in task_names:
            _REGISTRY.setdefault(task, {})[name] = cls
        return cls

    return deco


def _strategies_of(task: str) -> dict[str, type[Strategy]]:
    key = task.strip().lower().replace("_", "-")
    if key not in _REGISTRY:
        raise ConfigError(
            f"no acquisition strategy is registered for task {task!r} "
            f"(tasks with strategies: {', '.join(sorted(_REGISTRY))})"
        )
    return _REGISTRY[key]


def available(task: str = DEFAULT_TASK) -> list[str]:
    """Strategy names registered for ``task`` (default ``classification3d``), sorted."""
    return sorted(_strategies_of(task))


def tasks_of(name: str) -> list[str]:
    """The tasks strategy ``name`` is registered for, sorted (empty when none)."""
    key = name.strip().lower().replace("_", "-")
    return sorted(t for t, names in _REGISTRY.items() if key in names)


def strategy_class(name: str, task: str = DEFAULT_TASK) -> type[Strategy]:
    """The class registered as ``name`` for ``task``.

    Raises
    ------
    ConfigError
        Unknown name for that task, with the closest names (and the tasks that do have
        it, when it belongs to others).
    """
    registry = _strategies_of(task)
    key = name.strip().lower().replace("_", "-")
    if key not in registry:
        close = difflib.get_close_matches(key, list(registry), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        names = ", ".join(sorted(registry))
        if task.strip().lower() != DEFAULT_TASK:
            others = tasks_of(key)
            where = f"; it is a strategy of {', '.join(others)}" if others else ""
            raise ConfigError(
                f"strategy {name!r} is not available for {task}{hint}{where} (available: {names})"
            )
        raise ConfigError(f"unknown acquisition strategy {name!r}{hint} (available: {names})")
    return registry[key]


def summary(name: str, task: str = DEFAULT_TASK) -> str:
    """One-line description of a registered strategy (its class docstring's first line,
    reST markup removed), e.g. for ``cryoal select --list-strategies``.

    Raises
    ------
    ConfigError
        Unknown name for ``task``.
    """
    doc = (strategy_class(name, task).__doc__ or "").strip()
    return doc.splitlines()[0].replace("``", "") if doc else ""


def get(name: str, *, task: str = DEFAULT_TASK, **kwargs: Any) -> Strategy:
    """Build a registered strategy by name.

    Parameters
    ----------
    name
        One of :func:`available` for ``task`` (case-insensitive; ``_`` and ``-`` are
        equivalent).
    task
        The task whose strategy of that name is meant (default ``classification3d``;
        ``segmentation`` strategies score per-voxel logits ``(B, K, *spatial)``).
    **kwargs
        Options of that strategy (``device``, ``batch_size``, ``variant``, ...).

    Raises
    ------
    ConfigError
        Unknown name (with the closest names), or options the strategy does not take.
    """
    cls = strategy_class(name, task)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        what = "strategy" if task.strip().lower() == DEFAULT_TASK else f"{task} strategy"
        raise ConfigError(f"bad options for {what} {cls.name!r}: {exc}") from exc

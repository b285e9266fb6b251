"""Streaming over a pool: chunked batches, bounded memory, progress, model-mode guards.

Memory is bounded by one batch (plus the ``(N,)`` result vector): items are read lazily
through a DataLoader over the requested indices, pushed through the scoring function
on the device and only the per-item results come back to the CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from cryoal.errors import ConfigError

__all__ = [
    "PoolLike",
    "Transform",
    "check_pool",
    "eval_mode",
    "iter_batches",
    "mc_dropout_mode",
    "resolve_indices",
    "stream_scores",
]

Transform = Callable[[Tensor], Tensor]


class PoolLike(Protocol):
    """A map-style dataset: ``len(pool)`` and ``pool[i]`` (tensor or tuple)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


DROPOUT_TYPES: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)


def check_pool(pool: PoolLike) -> int:
    """Return ``len(pool)``; raise :class:`ConfigError` when the pool has no length."""
    try:
        return len(pool)
    except TypeError as exc:
        raise ConfigError(
            f"acquisition needs a map-style pool with len() and [i], got {type(pool).__name__}"
        ) from exc


def resolve_indices(pool: PoolLike, items: Iterable[int | str] | Tensor | None) -> Tensor:
    """Turn labelled indices or pool ids into a unique ``(k,)`` int64 tensor.

    Raises
    ------
    ConfigError
        An index is outside the pool, or an id is not in the pool (the message names it).
    """
    n = check_pool(pool)
    if items is None:
        return torch.zeros(0, dtype=torch.long)
    if isinstance(items, Tensor):
        values: list[int | str] = items.flatten().tolist()
    else:
        values = list(items)
    out: list[int] = []
    ids: dict[str, int] | None = None
    for v in values:
        if isinstance(v, str):
            if ids is None:
                pool_ids = getattr(pool, "ids", None)
                if pool_ids is None:
                    raise ConfigError(
                        f"labelled item {v!r} is an id but the pool has no ids: pass indices"
                    )
                ids = {str(k): i for i, k in enumerate(pool_ids)}
            if v not in ids:
                raise ConfigError(f"labelled id {v!r} is not in the pool; check the labels file")
            out.append(ids[v])
        else:
            i = int(v)
            if not 0 <= i < n:
                raise ConfigError(f"labelled index {i} is outside the pool of {n} volumes")
            out.append(i)
    return torch.tensor(sorted(set(out)), dtype=torch.long)


def _first_tensor(item: Any) -> Tensor:
    x = item[0] if isinstance(item, (tuple, list)) else item
    if not isinstance(x, Tensor):
        raise ConfigError(
            f"pool items must be a tensor or a tuple starting with one, got {type(x).__name__}"
        )
    return x


def _collate(items: list[Any]) -> Tensor:
    xs = [_first_tensor(it) for it in items]
    shapes = {tuple(x.shape) for x in xs}
    if len(shapes) > 1:
        raise ConfigError(f"pool items differ in shape {sorted(shapes)}: resample to one box")
    return torch.stack(xs)


def iter_batches(
    pool: PoolLike,
    indices: Sequence[int] | Tensor,
    *,
    batch_size: int,
    device: torch.device,
    transform: Callable[[Tensor], Tensor] | None = None,
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "scoring",
) -> Iterator[Tensor]:
    """Yield batches ``(b, C, ...)`` of the given pool items, in order, on ``device``.

    Parameters
    ----------
    pool
        Map-style dataset; items are a tensor ``(C, ...)`` or a tuple starting with one.
    indices
        Pool indices to read, in the order they are yielded.
    batch_size
        Items per batch (the last one may be smaller).
    device
        Where batches are moved (``non_blocking`` from pinned memory on CUDA).
    transform
        Applied to each batch on the device.
    num_workers
        DataLoader worker processes.
    progress
        Show a tqdm bar (automatically off when stderr is not a terminal).
    desc
        Label of the progress bar.
    """
    idx = indices.tolist() if isinstance(indices, Tensor) else list(indices)
    loader: DataLoader[Any] = DataLoader(
        Subset(pool, idx),  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
    )
    with tqdm(total=len(idx), desc=desc, unit="vol", disable=None if progress else True) as bar:
        for x in loader:
            x = x.to(device, non_blocking=True)
            if transform is not None:
                x = transform(x)
            yield x
            bar.update(x.shape[0])


def stream_scores(
    fn: Callable[[Tensor], Tensor],
    pool: PoolLike,
    indices: Sequence[int] | Tensor,
    *,
    batch_size: int,
    device: torch.device,
    transform: Callable[[Tensor], Tensor] | None = None,
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "scoring",
) -> Tensor:
    """Apply ``fn`` to the pool batch by batch and concatenate the results on the CPU.

    Parameters
    ----------
    fn
        Maps a batch ``(b, C, ...)`` to per-item results ``(b, ...)``.
    pool, indices, batch_size, device, transform, num_workers, progress, desc
        As in :func:`iter_batches`.

    Returns
    -------
    Tensor
        ``(len(indices), ...)`` results (detached, CPU, float32 for floating results).
    """
    chunks: list[Tensor] = []
    for x in iter_batches(
        pool,
        indices,
        batch_size=batch_size,
        device=device,
        transform=transform,
        num_workers=num_workers,
        progress=progress,
        desc=desc,
    ):
        r = fn(x).detach()
        chunks.append(r.float().cpu() if r.is_floating_point() else r.cpu())
    if not chunks:
        return torch.zeros(0)
    return torch.cat(chunks)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode; restore each one's own mode on exit."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def mc_dropout_mode(model: nn.Module) -> Iterator[int]:
    """Eval mode except dropout modules, which are put in train mode (MC dropout).

    Yields the number of dropout modules switched on; modes are restored on exit.
    """
    with eval_mode(model):
        n = 0
        for m in model.modules():
            if isinstance(m, DROPOUT_TYPES):
                m.train()
                n += 1
        yield n


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """Mixed-precision context on CUDA when ``enabled``; a no-op otherwise."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()

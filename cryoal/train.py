"""One training loop for every task: ``fit``, ``evaluate``, ``predict``.

Datasets are map-style :class:`torch.utils.data.Dataset` objects yielding ``(x, y)``
with ``x`` a float32 tensor `(C, *spatial)` (already normalised, see
:func:`cryoal.transforms.normalize`) and ``y`` an int class index; ``y = -1`` marks an
unlabelled item, which ``evaluate`` skips and ``fit`` refuses. ``predict`` also accepts
items that are bare tensors (a :class:`cryoal.io.VolumePool`, for instance).

Defaults follow a calibration experiment on small-label subtomogram training: AdamW,
lr 3e-3 with cosine decay to 0 beat a constant 1e-3 by 13–20 accuracy points, and
re-training from scratch beat warm starts, so ``init`` is optional.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import (
    DataLoader,
    Dataset,
    RandomSampler,
    Subset,
    TensorDataset,
    WeightedRandomSampler,
)
from tqdm.auto import tqdm

from cryoal.errors import CheckpointError, ConfigError, EmptyPoolError
from cryoal.runtime import resolve_device

__all__ = [
    "History",
    "TrainConfig",
    "classification_metrics",
    "evaluate",
    "fit",
    "predict",
    "stratified_split",
]

log = logging.getLogger(__name__)

#: ``augment(x, generator=g) -> x`` on one item `(C, *spatial)`
Augment = Callable[..., torch.Tensor]


@dataclasses.dataclass
class TrainConfig:
    """How :func:`fit` trains.

    Attributes
    ----------
    epochs
        Passes over the training set.
    batch_size
        Samples per optimisation step.
    lr
        Peak learning rate (default 3e-3).
    optimizer
        ``"adamw"`` (default), ``"adam"`` or ``"sgd"`` (with ``momentum``, Nesterov).
    schedule
        ``"cosine"`` (per-step cosine decay to 0, default), ``"step"`` (multiply by
        ``gamma`` every ``step_size`` epochs) or ``"constant"``.
    weight_decay
        Decoupled (AdamW) or L2 (Adam, SGD) weight decay.
    balanced
        Draw batches with class-balanced sampling (with replacement) instead of shuffling.
    augment
        Called as ``augment(x, generator=g)`` on each training item `(C, *spatial)`
        (CPU, before the device move), e.g. a :class:`cryoal.transforms.Compose`.
    seed
        Seeds shuffling, sampling, dropout and augmentation: same seed, same model
        (on CPU; CUDA kernels may add non-determinism).
    device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:0"``, ...
    amp
        Mixed precision: bfloat16 autocast (fp16 + gradient scaling on GPUs without bf16).
    patience
        Stop after this many epochs without improvement of ``monitor`` on the
        validation set; ``None`` trains all epochs.
    monitor
        ``"val_loss"`` (lower is better) or ``"val_accuracy"`` (higher is better): picks
        the best epoch, whose weights :func:`fit` restores when a validation set is given.
    drop_last
        Drop the incomplete last batch (a batch of one breaks BatchNorm); a training set
        smaller than one batch is used as a single batch.
    num_workers
        DataLoader worker processes (0 loads in the main process).
    init
        Warm start: a state dict, or a checkpoint path written by
        :func:`cryoal.models.save_checkpoint`.
    label_smoothing
        Cross-entropy label smoothing.
    grad_clip
        Clip the global gradient norm to this value; ``None`` disables clipping.
    momentum, step_size, gamma
        SGD momentum; step schedule period (epochs) and factor.
    progress
        Show a tqdm progress bar.
    distributed
        Data-parallel training over the ``torch.distributed`` process group (torchrun):
        DistributedDataParallel, and each rank draws its share of every epoch
        (:func:`cryoal.distributed.train_sampler`). ``batch_size`` is per rank; every
        rank must call :func:`fit` with the same arguments and ends with the same weights
        and BatchNorm statistics. Without a process group it trains in one process.
    """

    epochs: int = 20
    batch_size: int = 16
    lr: float = 3e-3
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    weight_decay: float = 1e-4
    balanced: bool = False
    augment: Augment | None = None
    seed: int = 0
    device: str | None = "auto"
    amp: bool = False
    patience: int | None = None
    monitor: Literal["val_loss", "val_accuracy"] = "val_loss"
    drop_last: bool = True
    num_workers: int = 0
    init: str | os.PathLike[str] | Mapping[str, torch.Tensor] | None = None
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    momentum: float = 0.9
    step_size: int = 10
    gamma: float = 0.1
    progress: bool = True
    distributed: bool = False

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, f"epochs must be ≥ 1, got {self.epochs}"),
            (self.batch_size >= 2, f"batch_size must be ≥ 2 (BatchNorm), got {self.batch_size}"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (
                self.optimizer in ("adamw", "adam", "sgd"),
                f"optimizer must be adamw, adam or sgd, got {self.optimizer!r}",
            ),
            (
                self.schedule in ("cosine", "step", "constant"),
                f"schedule must be cosine, step or constant, got {self.schedule!r}",
            ),
            (self.weight_decay >= 0, f"weight_decay must be ≥ 0, got {self.weight_decay}"),
            (
                self.patience is None or self.patience >= 1,
                f"patience must be ≥ 1 or None, got {self.patience}",
            ),
            (
                self.monitor in ("val_loss", "val_accuracy"),
                f"monitor must be val_loss or val_accuracy, got {self.monitor!r}",
            ),
            (self.num_workers >= 0, f"num_workers must be ≥ 0, got {self.num_workers}"),
            (
                0 <= self.label_smoothing < 1,
                f"label_smoothing must be in [0, 1), got {self.label_smoothing}",
            ),
            (
                self.grad_clip is None or self.grad_clip > 0,
                f"grad_clip must be > 0 or None, got {self.grad_clip}",
            ),
            (self.step_size >= 1, f"step_size must be ≥ 1, got {self.step_size}"),
            (self.augment is None or callable(self.augment), "augment must be callable or None"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"TrainConfig: {message}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-value view (for checkpoints and run records); callables become their repr."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "init" and isinstance(value, Mapping):
                value = "<state_dict>"
            elif value is not None and not isinstance(value, (bool, int, float, str)):
                value = os.fspath(value) if isinstance(value, os.PathLike) else repr(value)
            out[f.name] = value
        return out


@dataclasses.dataclass
class History:
    """Per-epoch record of a :func:`fit` run.

    Attributes
    ----------
    train_loss, train_accuracy
        Mean cross-entropy and accuracy over the training items seen in each epoch
        (with augmentation and dropout active).
    val_loss, val_accuracy, val_balanced_accuracy
        Validation metrics per epoch (empty without a validation set).
    lr
        Learning rate at the start of each epoch.
    epoch_seconds
        Wall time per epoch, seconds.
    best_epoch
        0-based epoch whose weights the model holds at the end (the last epoch without
        a validation set).
    stopped_early
        Whether early stopping ended training.
    samples_seen
        Training samples processed over the run.
    """

    train_loss: list[float] = dataclasses.field(default_factory=list)
    train_accuracy: list[float] = dataclasses.field(default_factory=list)
    val_loss: list[float] = dataclasses.field(default_factory=list)
    val_accuracy: list[float] = dataclasses.field(default_factory=list)
    val_balanced_accuracy: list[float] = dataclasses.field(default_factory=list)
    lr: list[float] = dataclasses.field(default_factory=list)
    epoch_seconds: list[float] = dataclasses.field(default_factory=list)
    best_epoch: int = -1
    stopped_early: bool = False
    samples_seen: int = 0

    @property
    def epochs_run(self) -> int:
        """Number of epochs trained."""
        return len(self.train_loss)

    @property
    def samples_per_second(self) -> float:
        """Training throughput over the run, samples/s (validation time excluded)."""
        total = sum(self.epoch_seconds)
        return self.samples_seen / total if total > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Plain-value view for JSON."""
        out = dataclasses.asdict(self)
        out["epochs_run"] = self.epochs_run
        return out


# --------------------------------------------------------------------------- helpers


def _split_item(item: Any) -> tuple[torch.Tensor, Any]:
    """``(x, y)``: ``y`` an int class index, or a label map tensor (voxel targets)."""
    if isinstance(item, torch.Tensor):
        return item, -1
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], torch.Tensor):
        label = item[1] if len(item) > 1 else -1
        if isinstance(label, torch.Tensor) and label.dim() > 0:
            return item[0], label.long()
        return item[0], int(label)
    raise ConfigError(
        f"dataset items must be a tensor (C, ...) or a tuple (tensor, label), got {type(item).__name__}"
    )


def _collate(items: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [_split_item(it) for it in items]
    shapes = {tuple(x.shape) for x, _ in pairs}
    if len(shapes) > 1:
        raise ConfigError(
            f"dataset items have different shapes {sorted(shapes)}; all volumes must share one box"
        )
    xs = torch.stack([x for x, _ in pairs]).float()
    if isinstance(pairs[0][1], torch.Tensor):
        return xs, torch.stack([y for _, y in pairs]).long()
    ys = torch.tensor([y for _, y in pairs], dtype=torch.long)
    return xs, ys


def _dataset_targets(ds: Dataset[Any]) -> torch.Tensor:
    """Integer labels of every item, `(N,)`, reading them without loading volumes where possible."""
    if isinstance(ds, Subset):
        return _dataset_targets(ds.dataset)[torch.as_tensor(list(ds.indices), dtype=torch.long)]
    if isinstance(ds, TensorDataset) and len(ds.tensors) > 1:
        return ds.tensors[1].long().reshape(-1)
    for attr in ("targets", "label_indices"):
        value = getattr(ds, attr, None)
        if value is not None:
            return torch.as_tensor(list(value), dtype=torch.long).reshape(-1)
    ys = [_split_item(ds[i])[1] for i in range(len(ds))]  # type: ignore[arg-type]
    if ys and isinstance(ys[0], torch.Tensor):
        return torch.stack(ys).long()  # voxel targets (N, *spatial)
    return torch.tensor(ys, dtype=torch.long)


def _amp_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _apply_init(model: nn.Module, init: Any) -> None:
    if isinstance(init, Mapping):
        state = init
        where = "init state_dict"
    else:
        from cryoal.models.checkpoint import _read

        where = os.fspath(init)
        state = _read(Path(init))["state_dict"]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"{where}: warm-start weights do not fit this model: {str(exc).splitlines()[0][:300]}"
        ) from exc


def _lr_lambda(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    total = config.epochs * steps_per_epoch
    if config.schedule == "cosine":
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    if config.schedule == "step":
        return lambda step: config.gamma ** ((step // steps_per_epoch) // config.step_size)
    return lambda step: 1.0


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.momentum > 0,
        weight_decay=config.weight_decay,
    )


class _Augmented(Dataset[tuple[torch.Tensor, int]]):
    """Applies ``augment`` with a generator seeded per (seed, epoch, index): reproducible
    whatever the worker count or order."""

    def __init__(self, base: Dataset[Any], augment: Augment, seed: int) -> None:
        self.base, self.augment, self.seed, self.epoch = base, augment, seed, 0

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x, y = _split_item(self.base[index])
        state = np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(1)
        g = torch.Generator().manual_seed(int(state[0]))
        return self.augment(x, generator=g), y


def _world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _sync_epoch(
    model: nn.Module,
    loss_sum: torch.Tensor,
    correct: torch.Tensor,
    history: History,
    seen_before: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DDP epoch end: rank 0's BatchNorm statistics everywhere, epoch sums over ranks."""
    from cryoal import distributed

    distributed.broadcast_module(model)
    totals = torch.stack(
        [
            loss_sum.double(),
            correct.double(),
            loss_sum.new_tensor(history.samples_seen - seen_before, dtype=torch.float64),
        ]
    )
    distributed.all_reduce_sum(totals)
    history.samples_seen = seen_before + int(totals[2])
    return totals[0], totals[1].long()


def _n_correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Correct items of a batch; for voxel targets the per-item fraction of correct
    annotated voxels, summed over the batch."""
    hit = logits.argmax(1) == y
    if y.dim() == 1:
        return hit.sum()
    valid = (y >= 0).flatten(1)
    return ((hit.flatten(1) & valid).sum(1) / valid.sum(1).clamp_min(1)).sum()


def _num_classes(model: nn.Module) -> int:
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear):
        return int(head.out_features)
    raise ConfigError("model has no `head: nn.Linear`; build it with cryoal.models.create")


def _batches(
    model: nn.Module,
    data: Dataset[Any],
    *,
    batch_size: int,
    device: torch.device,
    amp: bool,
    num_workers: int,
    progress: bool,
    desc: str,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(logits float32 (b, C) on device, labels (b,) on CPU)`` batch by batch.

    Logits stay on the device so the host prepares the next batch while the device
    computes (no per-batch synchronisation); callers move the gathered result once.
    """
    loader = DataLoader(
        data,  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda" and num_workers > 0,
    )
    with torch.inference_mode():
        for x, y in tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch"):
            if transform is not None:
                x = torch.stack([transform(xi) for xi in x])
            x = x.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=_amp_dtype(device), enabled=amp):
                logits = model(x)
            yield logits.float(), y


# --------------------------------------------------------------------------- public API


def _batch_loss(
    per_sample: Callable[[Tensor, Tensor], Tensor] | None, cfg: TrainConfig
) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss of one batch: the mean of ``per_sample`` (or cross-entropy)."""
    if per_sample is None:
        return nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing, ignore_index=-1)
    if cfg.label_smoothing:
        raise ConfigError(
            "label_smoothing applies to the default cross-entropy only; a task's per-sample "
            "loss was given: set label_smoothing=0"
        )

    def batch_loss(logits: Tensor, y: Tensor) -> Tensor:
        return per_sample(logits, y).mean()

    return batch_loss


def fit(
    model: nn.Module,
    train_ds: Dataset[Any],
    val_ds: Dataset[Any] | None = None,
    config: TrainConfig | None = None,
    *,
    per_sample_loss: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> History:
    """Train ``model`` in place with a task's per-sample loss (default cross-entropy).

    Parameters
    ----------
    model
        A classifier whose ``model(x)`` returns logits `(B, num_classes)`; moved to
        ``config.device`` and left there in eval mode.
    train_ds
        Map-style dataset of ``(x (C, *spatial) float32, y int)``, every item labelled;
        for per-voxel models (segmentation, logits `(B, K, *spatial)`) ``y`` is a label
        map `(*spatial)` int64, ``-1`` on unannotated voxels (skipped by the loss), and
        the accuracy is the mean per-item fraction of correct voxels.
    val_ds
        Optional validation dataset, evaluated after every epoch; with it the weights of
        the best epoch (by ``config.monitor``) are restored at the end.
    config
        :class:`TrainConfig` (defaults when ``None``).
    per_sample_loss
        Per-sample loss ``(logits, y) -> (B,)`` whose batch mean is minimised: the task's
        :meth:`cryoal.tasks.Task.per_sample_loss` (the same loss its acquisition
        differentiates). ``None``: cross-entropy with ``config.label_smoothing``,
        unannotated voxels (``-1``) skipped.

    Returns
    -------
    History
        Per-epoch losses and accuracies, best epoch, throughput.

    Raises
    ------
    EmptyPoolError
        Fewer than two training items.
    ConfigError
        Unlabelled items (``y = -1``), labels outside ``[0, num_classes)``, bad items.
    CheckpointError
        ``config.init`` does not fit the model.
    """
    cfg = config or TrainConfig()
    device = resolve_device(cfg.device)
    n = len(train_ds)  # type: ignore[arg-type]
    if n < 2:
        raise EmptyPoolError(f"training needs at least 2 labelled items, got {n}")
    num_classes = _num_classes(model)
    targets = _dataset_targets(train_ds)
    # voxel targets (segmentation): -1 marks unannotated voxels, which the loss skips
    voxel = targets.dim() > 1
    unlabelled = torch.nonzero(targets == -1).reshape(-1)
    if unlabelled.numel() and not voxel:
        raise ConfigError(
            f"training set holds {unlabelled.numel()} unlabelled items (label -1, first at index "
            f"{int(unlabelled[0])}); train on the labelled subset only"
        )
    bad = targets[(targets < (-1 if voxel else 0)) | (targets >= num_classes)]
    if bad.numel():
        raise ConfigError(
            f"training labels must be class indices in [0, {num_classes}); found "
            f"{sorted(set(bad.tolist()))[:5]}; does the model have the right num_classes?"
        )
    if cfg.init is not None:
        _apply_init(model, cfg.init)

    model.to(device)
    world = _world_size() if cfg.distributed else 1
    n_rank = -(-n // world)  # items per rank and epoch
    batch_size = min(cfg.batch_size, n_rank)
    drop_last = cfg.drop_last and n_rank >= cfg.batch_size
    if batch_size < cfg.batch_size:
        log.info(
            "training set (%d) is smaller than batch_size %d: one batch per epoch",
            n,
            cfg.batch_size,
        )
    base_seed = int(cfg.seed)
    sampler_gen = torch.Generator().manual_seed(base_seed)
    if cfg.balanced and voxel:
        log.info("balanced sampling ignored for voxel targets: batches are shuffled")
    if cfg.balanced and not voxel:
        counts = torch.bincount(targets, minlength=num_classes).double()
        weights = 1.0 / counts[targets]
        sampler: Any = WeightedRandomSampler(
            weights.tolist(), num_samples=n, replacement=True, generator=sampler_gen
        )
    else:
        sampler = RandomSampler(train_ds, generator=sampler_gen)  # type: ignore[arg-type]
    net = model
    if world > 1:
        from cryoal import distributed

        sampler = distributed.train_sampler(
            train_ds,
            seed=base_seed,
            weights=weights if cfg.balanced and not voxel else None,
            generator=sampler_gen,
        )
        net = distributed.wrap_ddp(model, device)
    ds: Dataset[Any] = (
        train_ds if cfg.augment is None else _Augmented(train_ds, cfg.augment, base_seed)
    )
    loader = DataLoader(
        ds,  # type: ignore[arg-type]
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=cfg.num_workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda" and cfg.num_workers > 0,
        persistent_workers=cfg.num_workers > 0,
        generator=torch.Generator().manual_seed(base_seed + 1),
    )
    steps_per_epoch = len(loader)
    optimizer = _make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, steps_per_epoch))
    amp_dtype = _amp_dtype(device)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp and amp_dtype == torch.float16)
    loss_fn = _batch_loss(per_sample_loss, cfg)

    history = History()
    best_score = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    stale = 0
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(base_seed)
        bar = tqdm(range(cfg.epochs), desc="train", unit="epoch", disable=not cfg.progress)
        for epoch in bar:
            if isinstance(ds, _Augmented):
                ds.epoch = epoch
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            model.train()
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.float32 if voxel else torch.long)
            seen_before = history.samples_seen
            history.lr.append(float(optimizer.param_groups[0]["lr"]))
            for x, y in loader:
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=cfg.amp):
                    logits = net(x)
                    loss = loss_fn(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                loss_sum += loss.detach() * y.shape[0]
                correct += _n_correct(logits.detach(), y)
                history.samples_seen += int(y.shape[0])
            if world > 1:
                loss_sum, correct = _sync_epoch(model, loss_sum, correct, history, seen_before)
            n_seen = max(history.samples_seen - seen_before, 1)
            history.train_loss.append(float(loss_sum) / n_seen)
            history.train_accuracy.append(float(correct) / n_seen)
            history.epoch_seconds.append(time.perf_counter() - t0)
            postfix = {
                "loss": f"{history.train_loss[-1]:.3f}",
                "acc": f"{history.train_accuracy[-1]:.3f}",
            }
            if val_ds is not None:
                metrics = evaluate(
                    model, val_ds, batch_size=max(batch_size, 32), device=device, amp=cfg.amp
                )
                history.val_loss.append(metrics["loss"])
                history.val_accuracy.append(metrics["accuracy"])
                history.val_balanced_accuracy.append(metrics["balanced_accuracy"])
                score = -metrics["loss"] if cfg.monitor == "val_loss" else metrics["accuracy"]
                postfix.update(
                    val_loss=f"{metrics['loss']:.3f}", val_acc=f"{metrics['accuracy']:.3f}"
                )
                if score > best_score:
                    best_score, stale = score, 0
                    history.best_epoch = epoch
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    stale += 1
            bar.set_postfix(postfix)
            log.info(
                "epoch %d/%d %s",
                epoch + 1,
                cfg.epochs,
                " ".join(f"{k}={v}" for k, v in postfix.items()),
            )
            if cfg.patience is not None and val_ds is not None and stale >= cfg.patience:
                history.stopped_early = True
                log.info(
                    "early stop after epoch %d: no %s improvement for %d epochs",
                    epoch + 1,
                    cfg.monitor,
                    stale,
                )
                break
        bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        history.best_epoch = history.epochs_run - 1
    model.eval()
    return history


def predict(
    model: nn.Module,
    data: Dataset[Any],
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    amp: bool = False,
    num_workers: int = 0,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Class probabilities for every item, streamed in batches.

    Parameters
    ----------
    model
        Classifier returning logits `(B, C)`; evaluated in eval mode (its previous mode
        is restored afterwards) on ``device``.
    data
        Map-style dataset whose items are tensors `(C_in, *spatial)` or tuples whose first
        element is one (labels are ignored).
    batch_size
        Items per forward pass; memory is bounded by one batch plus the `(N, C)` result,
        which is gathered on ``device`` and moved to the CPU once.
    device
        Device for the forward pass (default: the model's device).
    amp
        bfloat16/float16 autocast.
    num_workers
        DataLoader workers.
    transform
        Applied to each item `(C_in, *spatial)` before batching (e.g. per-volume
        normalisation when ``data`` yields raw volumes).
    progress
        Show a progress bar.

    Returns
    -------
    torch.Tensor
        `(N, C)` float32 softmax probabilities on the CPU, in dataset order.
    """
    dev = _model_device(model) if device is None else resolve_device(device)
    model.to(dev)
    was_training = model.training
    model.eval()
    try:
        chunks = [
            torch.softmax(logits, dim=1)
            for logits, _ in _batches(
                model,
                data,
                batch_size=batch_size,
                device=dev,
                amp=amp,
                num_workers=num_workers,
                progress=progress,
                desc="predict",
                transform=transform,
            )
        ]
    finally:
        model.train(was_training)
    if not chunks:
        return torch.zeros((0, _num_classes(model)))
    return torch.cat(chunks).cpu()


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def evaluate(
    model: nn.Module,
    ds: Dataset[Any],
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    amp: bool = False,
    num_workers: int = 0,
    class_names: Sequence[str] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Loss and classification metrics of ``model`` on the labelled items of ``ds``.

    Parameters
    ----------
    model, ds
        Classifier and a dataset of ``(x, y)``; items with ``y = -1`` are skipped.
    batch_size, device, amp, num_workers, progress
        As for :func:`predict`.
    class_names
        Adds ``"class_names"`` to the result, for reports.

    Returns
    -------
    dict
        ``loss`` (mean cross-entropy), ``n``, and the keys of :func:`classification_metrics`.

    Raises
    ------
    ConfigError
        ``ds`` has no labelled item.
    """
    dev = _model_device(model) if device is None else resolve_device(device)
    model.to(dev)
    num_classes = _num_classes(model)
    was_training = model.training
    model.eval()
    logits_all, labels_all = [], []
    try:
        for logits, y in _batches(
            model,
            ds,
            batch_size=batch_size,
            device=dev,
            amp=amp,
            num_workers=num_workers,
            progress=progress,
            desc="evaluate",
        ):
            logits_all.append(logits)
            labels_all.append(y)
    finally:
        model.train(was_training)
    logits = torch.cat(logits_all).cpu() if logits_all else torch.zeros((0, num_classes))
    labels = torch.cat(labels_all) if labels_all else torch.zeros(0, dtype=torch.long)
    if logits.dim() > 2:  # voxel targets: every annotated voxel is one item
        logits = logits.movedim(1, -1).reshape(-1, num_classes)
        labels = labels.reshape(-1)
    mask = labels >= 0
    if not bool(mask.any()):
        raise ConfigError("evaluation set has no labelled item (every label is -1 or it is empty)")
    logits, labels = logits[mask], labels[mask]
    if int(labels.max()) >= num_classes:
        raise ConfigError(
            f"evaluation labels reach {int(labels.max())} but the model has {num_classes} classes"
        )
    out: dict[str, Any] = {
        "loss": float(nn.functional.cross_entropy(logits, labels)),
        "n": int(labels.numel()),
    }
    out.update(classification_metrics(labels, logits.argmax(1), num_classes))
    if class_names is not None:
        out["class_names"] = [str(c) for c in class_names]
    return out


def classification_metrics(
    y_true: torch.Tensor | np.ndarray | Sequence[int],
    y_pred: torch.Tensor | np.ndarray | Sequence[int],
    num_classes: int,
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro F1, per-class recall and confusion matrix.

    Definitions follow scikit-learn: balanced accuracy is the mean recall over classes
    present in ``y_true``; macro F1 averages F1 over classes present in ``y_true`` or
    ``y_pred`` (F1 = 0 where precision and recall are both undefined).

    Parameters
    ----------
    y_true, y_pred
        `(N,)` class indices in ``[0, num_classes)``.
    num_classes
        Number of classes C.

    Returns
    -------
    dict
        ``accuracy``, ``balanced_accuracy``, ``macro_f1`` (floats),
        ``per_class_recall`` (length-C list, ``None`` for classes absent from ``y_true``),
        ``confusion_matrix`` (C×C list of ints, rows true, columns predicted).
    """
    t = np.asarray(torch.as_tensor(y_true).cpu(), dtype=np.int64).reshape(-1)
    p = np.asarray(torch.as_tensor(y_pred).cpu(), dtype=np.int64).reshape(-1)
    if t.shape != p.shape:
        raise ConfigError(f"y_true has {t.size} items but y_pred has {p.size}")
    if t.size == 0:
        raise ConfigError("cannot compute metrics of zero items")
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.min() < 0 or arr.max() >= num_classes:
            raise ConfigError(f"{name} holds class indices outside [0, {num_classes})")
    cm = np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm)
    present = support > 0
    recall = np.divide(tp, support, out=np.zeros(num_classes), where=present)
    precision = np.divide(tp, predicted, out=np.zeros(num_classes), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(num_classes), where=denom > 0)
    in_either = present | (predicted > 0)
    return {
        "accuracy": float(tp.sum() / t.size),
        "balanced_accuracy": float(recall[present].mean()),
        "macro_f1": float(f1[in_either].mean()),
        "per_class_recall": [
            float(r) if ok else None for r, ok in zip(recall, present, strict=True)
        ],
        "confusion_matrix": cm.astype(int).tolist(),
    }


def stratified_split(
    targets: torch.Tensor | Sequence[int], fraction: float, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split item indices into train and validation sets, class by class.

    Each class with ``n ≥ 2`` items sends ``round(fraction · n)`` of them, clamped to
    ``[1, n - 1]``, to validation; a class with one item stays in training.

    Parameters
    ----------
    targets
        `(N,)` class index of each item.
    fraction
        Validation share in ``[0, 1)``; 0 gives an empty validation set.
    seed
        Seeds the shuffle within each class.

    Returns
    -------
    train_idx, val_idx
        Sorted LongTensors of item positions, disjoint, together ``0 … N-1``.

    Raises
    ------
    ConfigError
        ``fraction`` outside ``[0, 1)``.
    """
    if not 0 <= fraction < 1:
        raise ConfigError(f"validation fraction must be in [0, 1), got {fraction}")
    t = torch.as_tensor(targets, dtype=torch.long).reshape(-1)
    g = torch.Generator().manual_seed(int(seed))
    val: list[torch.Tensor] = []
    for c in torch.unique(t).tolist():
        members = torch.nonzero(t == c).reshape(-1)
        members = members[torch.randperm(members.numel(), generator=g)]
        n = members.numel()
        k = 0 if (fraction == 0 or n < 2) else min(max(round(fraction * n), 1), n - 1)
        val.append(members[:k])
    val_idx = torch.sort(torch.cat(val)).values if val else torch.zeros(0, dtype=torch.long)
    keep = torch.ones(t.numel(), dtype=torch.bool)
    keep[val_idx] = False
    return torch.nonzero(keep).reshape(-1), val_idx

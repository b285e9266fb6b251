"""One active-learning round for segmentation: train on annotated patches, score, pick.

The expert's labels are label maps (``--masks``), not class names, so a segmentation
round keeps its state in files rather than the project database; the project folder has
the same layout as a classification project::

    PROJECT/models/round-NNN.pt        the round's UNet (absent for a cold start)
    PROJECT/picks/round-NNN.csv        picked patches: id, volume, path, z, y, x, size,
                                       rank, score, predicted class fractions, strategy, round
    PROJECT/gallery/round-NNN.png      central z-slice of each pick, prediction overlaid
    PROJECT/config/round-NNN.json      arguments, seed, versions, metrics

``NNN`` is one more than the last round in ``picks/``. The round is deterministic for
given masks and options (seeded initialisation, training and acquisition), so re-running
it reproduces the picks. Labelling a pick means writing its voxels (``z:z+size``, ...)
into the volume's mask (``-1`` elsewhere where not yet annotated).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import Subset

from cryoal.errors import ConfigError, PoolExhaustedError
from cryoal.tasks.seg_data import PatchPool

__all__ = ["SegRoundResult", "SegSelectConfig", "select_segmentation_round"]


@dataclasses.dataclass
class SegSelectConfig:
    """Options of a segmentation round.

    Attributes
    ----------
    strategy
        ``random``, ``entropy``, ``entropy-gradnorm`` or ``expected-gradnorm``.
    budget
        Patches to pick.
    seed
        Seeds model initialisation, training and acquisition.
    arch, arch_kwargs
        Segmentation model (``monai-unet``) and its options.
    epochs, train_batch_size, lr
        Training (:class:`cryoal.train.TrainConfig`).
    batch_size
        Patches per forward pass while scoring.
    samples
        Label maps drawn per patch by ``expected-gradnorm``.
    model
        A checkpoint to score with instead of training.
    device
        ``auto``, ``cpu``, ``cuda`` ...
    gallery_size
        Picks drawn in the gallery (0: none).
    progress
        Progress bars.
    """

    strategy: str = "expected-gradnorm"
    budget: int = 8
    seed: int = 0
    arch: str = "monai-unet"
    arch_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    epochs: int = 20
    train_batch_size: int = 8
    lr: float = 3e-3
    batch_size: int = 16
    samples: int = 8
    model: str | None = None
    device: str = "auto"
    gallery_size: int = 24
    progress: bool = True


@dataclasses.dataclass(frozen=True)
class SegRoundResult:
    """What a segmentation round produced."""

    round: int
    mode: str
    strategy: str
    n_labelled: int
    n_unlabelled: int
    table: pd.DataFrame
    files: dict[str, Path]
    metrics: dict[str, Any]


def _next_round(project: Path) -> int:
    done = [
        int(m.group(1))
        for p in (project / "picks").glob("round-*.csv")
        if (m := re.fullmatch(r"round-(\d+)\.csv", p.name))
    ]
    return max(done, default=0) + 1


def _normalize(x: torch.Tensor) -> torch.Tensor:
    from cryoal.transforms import normalize

    return normalize(x)


def select_segmentation_round(
    project: str | os.PathLike[str],
    pool: PatchPool,
    config: SegSelectConfig,
    *,
    arguments: Mapping[str, Any] | None = None,
    out: str | os.PathLike[str] | None = None,
) -> SegRoundResult:
    """Run one segmentation round (see module doc) and write its files.

    Parameters
    ----------
    project
        Project folder (created).
    pool
        Patches of the crops with the expert's label maps so far.
    config
        Round options.
    arguments
        Recorded in the round's config JSON.
    out
        Also write the picks table here (``.csv`` or ``.star``).

    Returns
    -------
    SegRoundResult
        Round number, mode (``cold``/``train``/``score``), picks table, files, metrics.

    Raises
    ------
    PoolExhaustedError
        ``budget`` exceeds the unannotated patches.
    ConfigError
        Unknown strategy or model, or a checkpoint that is not a segmentation model.
    CheckpointError
        ``model`` does not fit the patches.
    """
    from cryoal import models
    from cryoal.io import write_table
    from cryoal.runtime import resolve_device, write_run_config
    from cryoal.tasks import get
    from cryoal.train import TrainConfig, fit, predict

    task = get("segmentation")
    strategy = task.strategy(
        config.strategy,
        device=resolve_device(config.device),
        batch_size=config.batch_size,
        transform=_normalize,
        progress=config.progress,
        seed=config.seed,
        **({"samples": config.samples} if config.strategy == "expected-gradnorm" else {}),
    )
    root = Path(project)
    n = _next_round(root)
    labelled = pool.labelled_indices()
    unlabelled = len(pool) - len(labelled)
    if config.budget > unlabelled:
        raise PoolExhaustedError(
            f"budget {config.budget} exceeds the {unlabelled} unannotated patches left of "
            f"{len(pool)}; lower --budget or add crops"
        )
    files: dict[str, Path] = {}
    metrics: dict[str, Any] = {"n_labelled": len(labelled)}
    in_shape = task.in_shape(pool)
    model_path = root / "models" / f"round-{n:03d}.pt"
    if config.model is not None:
        mode = "score"
        model, info = models.load_checkpoint(config.model)
        models.check_compatible(info, pool.box, pool.voxel_size)
        if info.arch.name not in models.available(kind="segmentation"):
            raise ConfigError(
                f"{config.model}: {info.arch.name!r} is not a segmentation model "
                f"({', '.join(models.available(kind='segmentation'))})"
            )
    else:
        if config.arch not in models.available(kind="segmentation"):
            raise ConfigError(
                f"model {config.arch!r} is not a segmentation model; use one of "
                f"{', '.join(models.available(kind='segmentation'))}"
            )
        torch.manual_seed(config.seed)
        model = models.create(config.arch, pool.num_classes, in_shape, **config.arch_kwargs)
        mode = "train" if labelled else "cold"
    if mode == "train":
        train_ds = task.dataset(pool, labelled)
        cfg = TrainConfig(
            epochs=config.epochs,
            batch_size=max(2, config.train_batch_size),
            lr=config.lr,
            seed=config.seed,
            device=config.device,
            progress=config.progress,
        )
        history = fit(model, train_ds, None, cfg)
        probs = predict(model, train_ds, batch_size=config.batch_size)
        target = torch.stack([m for i in labelled if (m := pool.mask(i)) is not None])
        train_m = task.metrics(probs, target, pool.class_names)
        metrics.update(
            epochs=history.epochs_run,
            train_loss=history.train_loss[-1],
            train_mean_dice=train_m["mean_dice"],
            train_dice=train_m["dice"],
        )
        files["model"] = models.save_checkpoint(
            model_path,
            model.cpu(),
            class_names=pool.class_names,
            voxel_size=pool.voxel_size,
            train_config=cfg.to_dict(),
            metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))},
            task="segmentation",
            round=n,
        )
    used = config.strategy if mode != "cold" else "random"
    if mode == "cold":
        strategy = task.strategy("random", seed=config.seed, progress=False)
    raw = pool.dataset()
    sel = strategy.select(
        model,
        raw,
        config.budget,
        labelled=labelled,
        generator=torch.Generator().manual_seed(config.seed),
    )
    picks = sel.indices.tolist()
    predictions: list[torch.Tensor] | None = None
    fractions: list[list[float]] = [[math.nan] * pool.num_classes for _ in picks]
    if mode != "cold":
        probs = predict(
            model,
            Subset(task.dataset(pool), picks),
            batch_size=config.batch_size,
            device=config.device,
        )
        predictions = list(probs.argmax(1))
        fractions = [
            torch.bincount(p.flatten(), minlength=pool.num_classes).div(p.numel()).tolist()
            for p in predictions
        ]
    rows = []
    for rank, (i, score) in enumerate(zip(picks, sel.scores.tolist(), strict=True), start=1):
        vid, (z, y, x) = pool.location(i)
        row: dict[str, Any] = {
            "id": pool.ids[i],
            "volume": vid,
            "path": str(pool.path_of(i).resolve()),
            "z": z,
            "y": y,
            "x": x,
            "size": pool.patch,
            "rank": rank,
            "score": float(score),
        }
        for c, f in zip(pool.class_names, fractions[rank - 1], strict=True):
            row[f"frac_{c}"] = f
        row.update(strategy=used, round=n)
        rows.append(row)
    table = pd.DataFrame(rows)
    files["csv"] = write_table(root / "picks" / f"round-{n:03d}.csv", table)
    shown = picks[: config.gallery_size]
    if shown:
        files["gallery"] = task.write_gallery(
            root / "gallery" / f"round-{n:03d}.png",
            [pool[i] for i in shown],
            [_caption(pool, i, r + 1, float(sel.scores[r])) for r, i in enumerate(shown)],
            title=f"round {n} · {used} · {len(labelled)} annotated patches",
            predictions=None if predictions is None else predictions[: len(shown)],
        )
    files["config"] = root / "config" / f"round-{n:03d}.json"
    write_run_config(
        files["config"],
        {
            "task": "segmentation",
            "round": n,
            "mode": mode,
            "strategy": used,
            "select_config": dataclasses.asdict(config),
            "metrics": metrics,
            "command_arguments": dict(arguments or {}),
        },
        seed=config.seed,
    )
    if out is not None:
        files["out"] = write_table(out, table)
    return SegRoundResult(n, mode, used, len(labelled), unlabelled, table, files, metrics)


def _caption(pool: PatchPool, index: int, rank: int, score: float) -> str:
    vid, (z, y, x) = pool.location(index)
    return f"#{rank} {vid}\n@{z},{y},{x}  score {score:.3g}"

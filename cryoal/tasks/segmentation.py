"""3D semantic segmentation of tomogram crops, on the shared engine.

Data: :class:`~cryoal.tasks.seg_data.PatchPool` (cubic patches of crops + integer label
maps, ``-1`` = not annotated). Model: ``monai-unet`` from the registry (per-voxel logits
`(B, K, D, H, W)`). Loss per sample: the mean voxel cross-entropy
(:func:`~cryoal.tasks.seg_metrics.voxel_cross_entropy`), which :func:`cryoal.train.fit`
uses for voxel targets. Metrics: Dice per class and mean
(:func:`~cryoal.tasks.seg_metrics.segmentation_metrics`). Acquisition: random, mean voxel
entropy, entropy-gradnorm and expected-gradnorm over :meth:`Segmentation.per_sample_loss`,
the loss the rounds train with (registered for this task in the one strategy registry,
:mod:`cryoal.acquisition.segmentation`, where the expected-gradnorm definition is stated).
Gallery: the central z-slice of each picked patch with the predicted classes overlaid.
Rounds: :class:`SegmentationRound`, the steps this task gives the one round engine
(:func:`cryoal.active.round.run_round`; options :class:`SegSelectConfig`), run by
:meth:`Segmentation.select_round`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from cryoal._atomic import atomic_path
from cryoal.acquisition import is_cross_entropy
from cryoal.active.loop import register_pool
from cryoal.active.project import PickRecord, Project, RoundRecord
from cryoal.active.round import kill_point
from cryoal.errors import ConfigError, PoolExhaustedError, ProjectError
from cryoal.tasks.base import Task
from cryoal.tasks.seg_data import PatchPool
from cryoal.tasks.seg_metrics import segmentation_metrics, voxel_cross_entropy

__all__ = ["SegSelectConfig", "Segmentation", "SegmentationRound", "seg_picks_table"]

logger = logging.getLogger(__name__)


def _normalize(x: Tensor) -> Tensor:
    from cryoal.transforms import normalize

    return normalize(x)


class Segmentation(Task):
    """3D semantic segmentation over sub-volume patches of tomogram crops."""

    name = "segmentation"
    summary = "segment tomogram crops voxel-wise (MRC crops + integer MRC label maps)"
    spatial_dims = 3
    default_model = "monai-unet"
    model_kind = "segmentation"
    default_in_shape = (1, 16, 16, 16)
    pick_view = "central z-slice of the patch with the predicted classes overlaid"

    def open_pool(
        self,
        path: str | os.PathLike[str],
        *,
        masks: str | os.PathLike[str] | None = None,
        patch: int | None = None,
        stride: int | None = None,
        pattern: str | None = None,
        classes: Sequence[str] | None = None,
        **options: Any,
    ) -> PatchPool:
        """:meth:`PatchPool.from_directories` (crops in ``path``, label maps in ``masks``)."""
        if options:
            raise ConfigError(f"task segmentation does not take {', '.join(sorted(options))}")
        return PatchPool.from_directories(
            path,
            masks,
            patch=patch or self.default_in_shape[1],
            stride=stride,
            pattern=pattern or "*.mrc",
            classes=classes,
        )

    def dataset(self, pool: Any, indices: Sequence[int] | None = None) -> Dataset[Any]:
        """``(normalised patch (1, p, p, p), label map (p, p, p))`` for ``indices``."""
        if not isinstance(pool, PatchPool):
            raise ConfigError(f"segmentation needs a PatchPool, got {type(pool).__name__}")
        return pool.dataset(transform=_normalize, indices=indices)

    def select_config(self, **options: Any) -> SegSelectConfig:
        """:class:`SegSelectConfig` (default model: ``monai-unet``)."""
        options.setdefault("arch", self.default_model)
        try:
            return SegSelectConfig(**options)
        except TypeError as exc:
            raise ConfigError(f"bad round options for task {self.name}: {exc}") from exc

    def round_steps(self, config: Any) -> SegmentationRound:
        """:class:`SegmentationRound` with ``config`` (a :class:`SegSelectConfig`)."""
        return SegmentationRound(config, self)

    @is_cross_entropy
    def per_sample_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """Mean voxel cross-entropy per sample `(B,)` (unannotated voxels skipped).

        Declared cross-entropy (:func:`cryoal.acquisition.is_cross_entropy`): the
        gradient-norm strategies use its closed-form logit gradient ``(p_v − e_{y_v})/V``.
        A subclass overriding this method (class weights, label smoothing, ...) trains
        with its loss and, through :meth:`strategy` and :class:`SegmentationRound`'s score
        step, scores with autograd through the same loss.
        """
        return voxel_cross_entropy(logits, target)

    def metrics(
        self, probs: Tensor, target: Tensor, class_names: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Dice per class and mean, voxel accuracy (``probs`` `(N, K, *spatial)`)."""
        if probs.dim() < 3:
            raise ConfigError(
                f"segmentation metrics need (N, K, *spatial), got {tuple(probs.shape)}"
            )
        return segmentation_metrics(probs.argmax(1), target, int(probs.shape[1]), class_names)

    def write_gallery(
        self,
        path: str | os.PathLike[str],
        items: Sequence[Tensor],
        captions: Sequence[str],
        *,
        title: str | None = None,
        predictions: Sequence[Tensor] | None = None,
    ) -> Path:
        """Central z-slice of each patch, predicted label map overlaid when given."""
        from cryoal.tasks.image2d import image_gallery_figure
        from cryoal.viz import save_figure

        slices, overlays = [], []
        for i, t in enumerate(items):
            vol = t.reshape(t.shape[-3:])
            mid = vol.shape[0] // 2
            slices.append(vol[mid])
            pred = None if predictions is None else predictions[i]
            overlays.append(None if pred is None else pred.reshape(vol.shape)[mid].numpy())
        fig = image_gallery_figure(slices, captions, title=title, overlays=overlays)
        return save_figure(fig, path)


#: ``meta`` key marking a project as a segmentation project.
TASK_KEY = "task"


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

    def __post_init__(self) -> None:
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1:
            raise ConfigError(f"budget must be a positive integer, got {self.budget!r}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")

    def resume_key(self) -> dict[str, Any]:
        """The options that define a round's picks: a resumed round must match them."""
        model = None if self.model is None else str(Path(self.model).resolve())
        key = {
            "task": "segmentation",
            "strategy": self.strategy,
            "budget": self.budget,
            "seed": self.seed,
            "arch": self.arch,
            "arch_kwargs": dict(self.arch_kwargs),
            "epochs": self.epochs,
            "train_batch_size": self.train_batch_size,
            "lr": self.lr,
            "samples": self.samples,
            "model": model,
        }
        return dict(json.loads(json.dumps(key)))


def _check_task(project: Project, pool: PatchPool) -> None:
    task = project.get_meta(TASK_KEY)
    if task is None and project.rounds():
        raise ProjectError(
            f"project {project.path} holds subtomogram/image rounds; use a new --project "
            "for segmentation"
        )
    if task is not None and task != "segmentation":
        raise ProjectError(
            f"project {project.path} belongs to task {task!r}; use a new --project for segmentation"
        )
    known = project.get_meta("seg_class_names")
    if known is not None and list(known) != pool.class_names:
        raise ProjectError(
            f"project {project.path} was built with classes {', '.join(known)}, the masks now "
            f"give {', '.join(pool.class_names)}; keep the class list or use a new --project"
        )
    if task is None:
        project.set_meta(TASK_KEY, "segmentation")
        project.set_meta("seg_class_names", pool.class_names)
        project.set_meta("patch", pool.patch)


class SegmentationRound:
    """The steps of a segmentation round (:class:`cryoal.active.round.RoundSteps`).

    The expert's labels are voxel label maps on disk (``--masks``); everything else lives
    in the same :class:`~cryoal.active.Project` as a subtomogram project: the patches are
    the pool entries (ids ``<crop>@<z>,<y>,<x>``) and each round moves through the
    recorded steps of :mod:`cryoal.active.round`::

        started ──► trained ──► scored ──► picked
        (annotated   (UNet saved    (picks + class   (picks CSV/STAR, gallery,
         patches      to models/)    fractions in     config written)
         frozen)                     the DB)

    and the files are::

        PROJECT/models/round-NNN.pt        the round's UNet (train/score rounds)
        PROJECT/picks/round-NNN.csv|.star  picked patches: id, volume, path, z, y, x,
                                           size, rank, score, predicted class fractions,
                                           strategy, round
        PROJECT/gallery/round-NNN.png      central z-slice of each pick, prediction overlaid
        PROJECT/config/round-NNN.json      arguments, seed, versions, metrics

    A patch counts as labelled when every voxel of it is annotated in its crop's mask.
    The annotated patches are recorded when a round starts (``rounds.config["annotated"]``),
    so a round killed at any step and run again with the same options resumes from its
    last finished step, trains on the same patches and gives the same picks as an
    uninterrupted run (initialisation, training and acquisition are seeded), even if
    masks were edited in between. Running the command again after a finished round shows
    that round again when no mask changed and the options are the same; otherwise it
    starts the next round.

    Raises (from the steps)
    -----------------------
    PoolExhaustedError
        ``budget`` exceeds the unannotated patches.
    ConfigError
        Unknown strategy or model, a checkpoint that is not a segmentation model, or an
        unfinished round started with other options.
    ProjectError
        The project belongs to another task, pool or class list, or a patch annotated
        when the round started is no longer annotated.
    CheckpointError
        ``model`` does not fit the patches.
    """

    def __init__(self, config: SegSelectConfig, task: Task) -> None:
        self.config = config
        self.task = task
        self.annotated: list[str] = []

    def prepare(self, project: Project, pool: Any) -> None:
        _check_task(project, pool)
        register_pool(project, pool)
        self.annotated = [pool.ids[i] for i in pool.labelled_indices()]

    def resume_key(self) -> dict[str, Any]:
        return self.config.resume_key()

    def unchanged(self, project: Project, rnd: RoundRecord) -> bool:
        return bool(rnd.config.get("annotated") == self.annotated)  # no mask changed

    def start(
        self, project: Project, pool: Any, arguments: Mapping[str, Any] | None
    ) -> RoundRecord:
        return _start(project, pool, self.config, self.annotated, arguments, self.task)

    def train(self, project: Project, pool: Any, rnd: RoundRecord) -> None:
        labelled = _recorded_labelled(project, pool, rnd)
        _train(project, pool, rnd, self.config, labelled, self.task)

    def score(self, project: Project, pool: Any, rnd: RoundRecord) -> None:
        labelled = _recorded_labelled(project, pool, rnd)
        _score(project, pool, rnd, self.config, labelled, self.task)

    def write(
        self,
        project: Project,
        pool: Any,
        rnd: RoundRecord,
        arguments: Mapping[str, Any] | None,
        *,
        out: str | os.PathLike[str] | None,
        mark: bool,
    ) -> dict[str, Path]:
        return _write_outputs(
            project, pool, rnd, self.config, arguments, out=out, mark=mark, task=self.task
        )

    def table(
        self, project: Project, pool: Any, rnd: RoundRecord, picks: Sequence[PickRecord]
    ) -> pd.DataFrame:
        return seg_picks_table(pool, rnd, picks)


def _start(
    project: Project,
    pool: PatchPool,
    config: SegSelectConfig,
    annotated: list[str],
    arguments: Mapping[str, Any] | None,
    task: Task,
) -> RoundRecord:
    from cryoal import models

    if config.model is not None:
        mode = "score"
    else:
        if config.arch not in models.available(kind="segmentation"):
            raise ConfigError(
                f"model {config.arch!r} is not a segmentation model; use one of "
                f"{', '.join(models.available(kind='segmentation'))}"
            )
        mode = "train" if annotated else "cold"
    unlabelled = len(pool) - len(annotated)
    if config.budget > unlabelled:
        raise PoolExhaustedError(
            f"budget {config.budget} exceeds the {unlabelled} unannotated patches left of "
            f"{len(pool)}; lower --budget or add crops"
        )
    strategy = config.strategy if mode != "cold" else "random"
    _strategy(task, strategy, config)  # unknown names fail before a round is recorded
    record = {
        "task": "segmentation",
        "resume_key": config.resume_key(),
        "annotated": annotated,
        "select_config": dataclasses.asdict(config),
        "arguments": dict(arguments or {}),
    }
    return project.start_round(
        strategy=strategy,
        budget=config.budget,
        seed=config.seed,
        mode=mode,
        config=record,
        n_labels=len(annotated),
    )


def _recorded_labelled(project: Project, pool: PatchPool, rnd: RoundRecord) -> list[int]:
    """Pool indices of the patches annotated when round ``rnd`` started."""
    ids = list(rnd.config.get("annotated", []))
    index = {vid: i for i, vid in enumerate(pool.ids)}
    missing = [v for v in ids if v not in index]
    if missing:
        raise ProjectError(
            f"round {rnd.n} of {project.path} was started with patch {missing[0]}, which the "
            "pool no longer has; use the same --patch and crops, or pass --restart"
        )
    out = [index[v] for v in ids]
    if rnd.status == "started" and rnd.mode == "train":
        lost = [pool.ids[i] for i in out if not _fully_annotated(pool, i)]
        if lost:
            raise ProjectError(
                f"patch {lost[0]} was annotated when round {rnd.n} started but its mask is no "
                "longer complete; restore the mask, or pass --restart to start the round over"
            )
    return out


def _fully_annotated(pool: PatchPool, index: int) -> bool:
    from cryoal.tasks.seg_metrics import IGNORE

    m = pool.mask(index)
    return m is not None and bool((m != IGNORE).all())


def _strategy(task: Task, name: str, config: SegSelectConfig) -> Any:
    from cryoal.runtime import resolve_device

    if name == "random":
        return task.strategy("random", seed=config.seed, progress=False)
    return task.strategy(
        name,
        device=resolve_device(config.device),
        batch_size=config.batch_size,
        transform=_normalize,
        progress=config.progress,
        seed=config.seed,
        **({"samples": config.samples} if name == "expected-gradnorm" else {}),
    )


def _train(
    project: Project,
    pool: PatchPool,
    rnd: RoundRecord,
    config: SegSelectConfig,
    labelled: Sequence[int],
    task: Task,
) -> None:
    from cryoal import models
    from cryoal.train import TrainConfig, fit, predict

    target = project.model_path(rnd.n)
    rel = str(target.relative_to(project.path))
    metrics: dict[str, Any] = {"n_labelled": len(labelled)}
    if rnd.mode == "cold":
        project.mark_trained(rnd.n, None, metrics)
        kill_point("trained")
        return
    if rnd.mode == "score":
        if config.model is None:
            raise ConfigError(f"round {rnd.n} scores with a given model; pass the same --model")
        _, info = models.load_checkpoint(config.model)
        models.check_compatible(info, pool.box, pool.voxel_size)
        if info.arch.name not in models.available(kind="segmentation"):
            raise ConfigError(
                f"{config.model}: {info.arch.name!r} is not a segmentation model "
                f"({', '.join(models.available(kind='segmentation'))})"
            )
        with atomic_path(target) as tmp:
            shutil.copyfile(config.model, tmp)
        metrics["source_model"] = str(Path(config.model).resolve())
        kill_point("training")
        project.mark_trained(rnd.n, rel, metrics)
        kill_point("trained")
        return
    torch.manual_seed(config.seed)
    model = models.create(config.arch, pool.num_classes, task.in_shape(pool), **config.arch_kwargs)
    train_ds = task.dataset(pool, labelled)
    cfg = TrainConfig(
        epochs=config.epochs,
        batch_size=max(2, config.train_batch_size),
        lr=config.lr,
        seed=config.seed,
        device=config.device,
        progress=config.progress,
    )
    history = fit(model, train_ds, None, cfg, per_sample_loss=task.per_sample_loss)
    kill_point("training")
    probs = predict(model, train_ds, batch_size=config.batch_size)
    masks = [pool.mask(i) for i in labelled]
    target_maps = torch.stack([m for m in masks if m is not None])
    train_m = task.metrics(probs, target_maps, pool.class_names)
    metrics.update(
        epochs=history.epochs_run,
        train_loss=float(history.train_loss[-1]),
        train_mean_dice=float(train_m["mean_dice"]),
        train_dice={k: float(v) for k, v in train_m["dice"].items()},
    )
    models.save_checkpoint(
        target,
        model.cpu(),
        class_names=pool.class_names,
        voxel_size=pool.voxel_size,
        train_config=cfg.to_dict(),
        metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        task="segmentation",
        round=rnd.n,
    )
    project.mark_trained(rnd.n, rel, metrics)
    kill_point("trained")


def _round_model(project: Project, rnd: RoundRecord) -> torch.nn.Module | None:
    from cryoal import models

    if rnd.model_path is None:
        return None
    model, _ = models.load_checkpoint(project.path / rnd.model_path)
    return model


def _predicted_maps(
    model: torch.nn.Module,
    pool: PatchPool,
    indices: Sequence[int],
    config: SegSelectConfig,
    task: Task,
) -> list[torch.Tensor]:
    """Predicted label maps `(p, p, p)` int64 of ``indices``."""
    from cryoal.train import predict

    if not indices:
        return []
    probs = predict(
        model,
        Subset(task.dataset(pool), list(indices)),
        batch_size=config.batch_size,
        device=config.device,
    )
    return list(probs.argmax(1))


def _score(
    project: Project,
    pool: PatchPool,
    rnd: RoundRecord,
    config: SegSelectConfig,
    labelled: Sequence[int],
    task: Task,
) -> None:
    model = _round_model(project, rnd)
    if model is None:  # cold start: random picks need no network
        from cryoal import models

        torch.manual_seed(rnd.seed)
        model = models.create(
            config.arch, pool.num_classes, task.in_shape(pool), **config.arch_kwargs
        )
    strategy = _strategy(task, rnd.strategy, config)
    sel = strategy.select(
        model,
        pool.dataset(),
        rnd.budget,
        labelled=list(labelled),
        generator=torch.Generator().manual_seed(rnd.seed),
    )
    picks = [int(i) for i in sel.indices.tolist()]
    scores = [float(s) for s in sel.scores.tolist()]
    rows: list[tuple[str, float | None, str | None, dict[str, float] | None]] = []
    maps = _predicted_maps(model, pool, picks, config, task) if rnd.model_path is not None else []
    for j, (i, s) in enumerate(zip(picks, scores, strict=True)):
        fractions = None
        if maps:
            f = torch.bincount(maps[j].flatten(), minlength=pool.num_classes)
            fractions = dict(zip(pool.class_names, f.div(maps[j].numel()).tolist(), strict=True))
        rows.append((pool.ids[i], s, None, fractions))
    kill_point("scoring")
    project.record_scores(
        rnd.n, rows, [(pool.ids[i], s) for i, s in zip(picks, scores, strict=True)]
    )
    kill_point("scored")


def seg_picks_table(pool: PatchPool, rnd: RoundRecord, picks: Sequence[PickRecord]) -> pd.DataFrame:
    """Round ``rnd``'s picks as the table written to CSV/STAR.

    Columns: ``id``, ``volume``, ``path`` (absolute crop file), ``z, y, x`` (patch corner,
    voxels), ``size`` (patch edge, voxels), ``rank``, ``score``, one ``frac_<class>`` per
    class (fraction of the patch's voxels the round's model assigns to it; NaN for a cold
    start), ``strategy``, ``round``.
    """
    rows = []
    for p in picks:
        i = pool.index_of(p.id)
        vid, (z, y, x) = pool.location(i)
        row: dict[str, Any] = {
            "id": p.id,
            "volume": vid,
            "path": str(pool.path_of(i).resolve()),
            "z": z,
            "y": y,
            "x": x,
            "size": pool.patch,
            "rank": p.rank,
            "score": math.nan if p.score is None else float(p.score),
        }
        for c in pool.class_names:
            row[f"frac_{c}"] = (p.probabilities or {}).get(c, math.nan)
        row.update(strategy=rnd.strategy, round=rnd.n)
        rows.append(row)
    cols = ["id", "volume", "path", "z", "y", "x", "size", "rank", "score"]
    cols += [f"frac_{c}" for c in pool.class_names] + ["strategy", "round"]
    return pd.DataFrame(rows, columns=cols)


def _write_outputs(
    project: Project,
    pool: PatchPool,
    rnd: RoundRecord,
    config: SegSelectConfig,
    arguments: Mapping[str, Any] | None,
    *,
    out: str | os.PathLike[str] | None,
    mark: bool,
    task: Task,
) -> dict[str, Path]:
    from cryoal.io import write_table
    from cryoal.runtime import write_run_config

    picks = project.picks(rnd.n)
    table = seg_picks_table(pool, rnd, picks)
    files = {"csv": project.picks_path(rnd.n, ".csv"), "star": project.picks_path(rnd.n, ".star")}
    if rnd.model_path is not None:
        files["model"] = project.path / rnd.model_path
    if mark or not files["csv"].exists():
        write_table(files["csv"], table)
    kill_point("picks")
    if mark or not files["star"].exists():
        write_table(files["star"], table)
    shown = [pool.index_of(p.id) for p in picks[: config.gallery_size]]
    gallery = project.gallery_path(rnd.n)
    if shown and (mark or not gallery.exists()):
        model = _round_model(project, rnd)
        maps = None if model is None else _predicted_maps(model, pool, shown, config, task)
        task.write_gallery(
            gallery,
            [pool[i] for i in shown],
            [_caption(pool, i, p) for i, p in zip(shown, picks, strict=False)],
            title=f"round {rnd.n} · {rnd.strategy} · {rnd.n_labels} annotated patches",
            predictions=maps,
        )
    if shown:
        files["gallery"] = gallery
    files["config"] = project.config_path(rnd.n)
    if mark and (rnd.status != "picked" or not files["config"].exists()):
        write_run_config(
            files["config"],
            {
                "task": "segmentation",
                "round": rnd.n,
                "mode": rnd.mode,
                "strategy": rnd.strategy,
                "budget": rnd.budget,
                "project": str(project.path.resolve()),
                "volumes": project.get_meta("pool_root"),
                "model": rnd.model_path,
                "n_annotated": rnd.n_labels,
                "select_config": dataclasses.asdict(config),
                "metrics": rnd.metrics,
                "command_arguments": dict(arguments or {}),
            },
            seed=rnd.seed,
        )
    if out is not None:
        files["out"] = write_table(out, table)
    return files


def _caption(pool: PatchPool, index: int, pick: PickRecord) -> str:
    vid, (z, y, x) = pool.location(index)
    score = "" if pick.score is None else f"  score {pick.score:.3g}"
    return f"#{pick.rank} {vid}\n@{z},{y},{x}{score}"

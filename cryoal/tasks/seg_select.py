"""One active-learning round for segmentation, kept in the project database and resumable.

The expert's labels are voxel label maps on disk (``--masks``); everything else lives in
the same :class:`~cryoal.active.Project` as a subtomogram project: the patches are the
pool entries (ids ``<crop>@<z>,<y>,<x>``), each round moves through the recorded steps
of :mod:`cryoal.active.loop`::

    started ──► trained ──► scored ──► picked
    (annotated   (UNet saved    (picks + class   (picks CSV/STAR, gallery,
     patches      to models/)    fractions in     config written)
     frozen)                     the DB)

and the files are::

    PROJECT/models/round-NNN.pt        the round's UNet (train/score rounds)
    PROJECT/picks/round-NNN.csv|.star  picked patches: id, volume, path, z, y, x, size,
                                       rank, score, predicted class fractions, strategy, round
    PROJECT/gallery/round-NNN.png      central z-slice of each pick, prediction overlaid
    PROJECT/config/round-NNN.json      arguments, seed, versions, metrics

A patch counts as labelled when every voxel of it is annotated in its crop's mask. The
annotated patches are recorded when a round starts (``rounds.config["annotated"]``), so
a round killed at any step and run again with the same options resumes from its last
finished step, trains on the same patches and gives the same picks as an uninterrupted
run (initialisation, training and acquisition are seeded), even if masks were edited in
between. Running the command again after a finished round shows that round again when no
mask changed and the options are the same; otherwise it starts the next round. The
``CRYOAL_TEST_KILL_AT`` hook (:func:`cryoal.active.loop.kill_point`) works here too.
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
from torch.utils.data import Subset

from cryoal._atomic import atomic_path
from cryoal.active.loop import kill_point, pending_round, register_pool
from cryoal.active.project import PickRecord, Project, RoundRecord
from cryoal.errors import ConfigError, PoolExhaustedError, ProjectError
from cryoal.tasks.seg_data import PatchPool

__all__ = ["SegRoundResult", "SegSelectConfig", "seg_picks_table", "select_segmentation_round"]

logger = logging.getLogger(__name__)

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


@dataclasses.dataclass(frozen=True)
class SegRoundResult:
    """What a segmentation round produced.

    ``resumed_from`` is the step an unfinished round resumed from (``None`` for a fresh
    round); ``reused`` is true when a finished round was shown again (no mask changed).
    """

    round: int
    mode: str
    strategy: str
    n_labelled: int
    n_unlabelled: int
    table: pd.DataFrame
    files: dict[str, Path]
    metrics: dict[str, Any]
    resumed_from: str | None = None
    reused: bool = False


def _normalize(x: torch.Tensor) -> torch.Tensor:
    from cryoal.transforms import normalize

    return normalize(x)


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


def _pending_or_new(
    project: Project,
    config: SegSelectConfig,
    annotated: list[str],
    *,
    new_round: bool,
    restart: bool,
) -> tuple[RoundRecord | None, bool]:
    """``(round to resume or show again, shown_again)``; ``None`` means start one.

    A finished round is shown again while the annotated patches are the same.
    """
    return pending_round(
        project,
        config.resume_key(),
        new_round=new_round,
        restart=restart,
        unchanged=lambda rnd: rnd.config.get("annotated") == annotated,
    )


def select_segmentation_round(
    project: Project,
    pool: PatchPool,
    config: SegSelectConfig,
    *,
    arguments: Mapping[str, Any] | None = None,
    out: str | os.PathLike[str] | None = None,
    new_round: bool = False,
    restart: bool = False,
) -> SegRoundResult:
    """Run, resume or show again one segmentation round (see module doc).

    Parameters
    ----------
    project
        An open project; the caller should hold :meth:`Project.lock`.
    pool
        Patches of the crops with the expert's label maps so far.
    config
        Round options.
    arguments
        Recorded in the round's config JSON.
    out
        Also write the picks table here (``.csv`` or ``.star``).
    new_round
        Start a new round even when no mask changed since the last finished one.
    restart
        Discard an unfinished round instead of resuming it.

    Returns
    -------
    SegRoundResult
        Round number, mode (``cold``/``train``/``score``), picks table, files, metrics,
        the step it resumed from and whether it was shown again.

    Raises
    ------
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
    _check_task(project, pool)
    register_pool(project, pool)
    annotated = [pool.ids[i] for i in pool.labelled_indices()]
    rnd, reused = _pending_or_new(project, config, annotated, new_round=new_round, restart=restart)
    resumed_from = None if rnd is None or reused else rnd.status
    if rnd is None:
        rnd = _start(project, pool, config, annotated, arguments)
        kill_point("started")
    elif resumed_from is not None:
        logger.info("resuming round %d from step %r", rnd.n, rnd.status)
    labelled = _recorded_labelled(project, pool, rnd)
    if rnd.status == "started":
        _train(project, pool, rnd, config, labelled)
        rnd = project.get_round(rnd.n)
    if rnd.status == "trained":
        _score(project, pool, rnd, config, labelled)
        rnd = project.get_round(rnd.n)
    table, files = _write_outputs(project, pool, rnd, config, arguments, out=out, mark=not reused)
    rnd = project.get_round(rnd.n)
    return SegRoundResult(
        rnd.n,
        rnd.mode,
        rnd.strategy,
        len(labelled),
        len(pool) - len(labelled),
        table,
        files,
        dict(rnd.metrics),
        resumed_from,
        reused,
    )


def _start(
    project: Project,
    pool: PatchPool,
    config: SegSelectConfig,
    annotated: list[str],
    arguments: Mapping[str, Any] | None,
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
    _strategy(strategy, config)  # unknown names fail before a round is recorded
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


def _strategy(name: str, config: SegSelectConfig) -> Any:
    from cryoal.runtime import resolve_device
    from cryoal.tasks import get

    if name == "random":
        return get("segmentation").strategy("random", seed=config.seed, progress=False)
    return get("segmentation").strategy(
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
) -> None:
    from cryoal import models
    from cryoal.tasks import get
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
    task = get("segmentation")
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
    history = fit(model, train_ds, None, cfg)
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
    model: torch.nn.Module, pool: PatchPool, indices: Sequence[int], config: SegSelectConfig
) -> list[torch.Tensor]:
    """Predicted label maps `(p, p, p)` int64 of ``indices``."""
    from cryoal.tasks import get
    from cryoal.train import predict

    if not indices:
        return []
    probs = predict(
        model,
        Subset(get("segmentation").dataset(pool), list(indices)),
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
) -> None:
    model = _round_model(project, rnd)
    if model is None:  # cold start: random picks need no network
        from cryoal import models
        from cryoal.tasks import get

        torch.manual_seed(rnd.seed)
        model = models.create(
            config.arch, pool.num_classes, get("segmentation").in_shape(pool), **config.arch_kwargs
        )
    strategy = _strategy(rnd.strategy, config)
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
    maps = _predicted_maps(model, pool, picks, config) if rnd.model_path is not None else []
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
) -> tuple[pd.DataFrame, dict[str, Path]]:
    from cryoal.io import write_table
    from cryoal.runtime import write_run_config
    from cryoal.tasks import get

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
        maps = None if model is None else _predicted_maps(model, pool, shown, config)
        get("segmentation").write_gallery(
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
    if rnd.status == "scored":
        project.mark_picked(rnd.n)
        kill_point("picked")
    return table, files


def _caption(pool: PatchPool, index: int, pick: PickRecord) -> str:
    vid, (z, y, x) = pool.location(index)
    score = "" if pick.score is None else f"  score {pick.score:.3g}"
    return f"#{pick.rank} {vid}\n@{z},{y},{x}{score}"

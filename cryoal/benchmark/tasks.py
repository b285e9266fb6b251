"""What the image2d and segmentation tasks add to the benchmark engine.

``cryoal benchmark noise --task image2d|segmentation`` runs strategies × SNR × seeds
through the one engine (:func:`cryoal.benchmark.engine.run`, which also runs the
subtomogram benchmark of :mod:`cryoal.benchmark.noise`) and writes the same files
(``results.csv`` with :data:`cryoal.benchmark.report.RESULT_COLUMNS`, ``summary.md``,
``curves_snr*.png``, ``config.json``). This module holds the config, the presets and the
:class:`~cryoal.benchmark.engine.Suite` of each task. Like the subtomogram suite, every
(SNR, strategy, seed) block runs its rounds on the one round engine
(:meth:`cryoal.tasks.Task.select_round`, :func:`cryoal.active.round.run_round`) in its
own project ``OUT/runs/snr-*/STRATEGY/seed-N``, the ground truth answering each round's
picks the way an expert's labels arrive for the task:

- image2d — data per SNR in ``OUT/data/snr-*`` (:func:`~cryoal.tasks.image2d.simulate_projections`
  of the ``classes`` structures, ``n_pool``/``n_test`` images per class, ``box`` px, as
  ``.npy`` images + ``truth.csv``; seeds ``data_seed``, ``data_seed + 1``); an
  :class:`~cryoal.active.Oracle` adds the picks' classes to the project's labels;
- segmentation — ``n_pool``/``n_test`` crops of side ``2·box`` from
  :func:`cryoal.simulate.simulate_tomogram` (``particles`` particles of ``classes`` and
  one membrane, wedge/CTF as configured) with their true label maps, cut into ``box``³
  patches; the true map of every picked patch is copied into the block's ``masks/``
  (:func:`~cryoal.tasks.seg_data.annotate_from_truth`) and each round reopens the pool
  over them, as ``cryoal select --task segmentation --masks`` reads a user's maps.
  Metrics are over test voxels: ``accuracy`` = voxel accuracy, ``balanced_accuracy`` =
  mean class recall, ``macro_f1`` = mean Dice (Dice_c = F1_c, averaged over classes
  present in truth or prediction).

Rounds ``r = 0 … rounds`` train from scratch on ``initial + r·budget`` labels (image2d:
class-balanced initial set; segmentation: random patches) and pick ``budget``; the last
round picks one item at random (never evaluated). Each trained round's saved model is
scored on the test set. No cross-SNR robustness matrix. An interrupted run resumes (the
engine's rules): finished blocks in ``results.csv`` are kept when ``config.json`` records
the same options that change what a row means (all but the preset name, strategies,
SNRs, seeds and the device), and an unfinished block resumes from its project, so its
rows equal an uninterrupted run's (up to ``wall_time``).
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from cryoal._atomic import atomic_write_text
from cryoal.benchmark._blocks import (
    BlockKey,
    ConfigViews,
    benchmark_oracle,
    block_dir,
    block_rows,
    classifier_metrics,
    config_to_dict,
    drop_checkpoints,
    initial_indices,
    label_initial,
    run_rounds,
    simulated_once,
    snr_dir_name,
)
from cryoal.benchmark.engine import Suite
from cryoal.benchmark.engine import run as engine_run
from cryoal.benchmark.report import format_snr
from cryoal.errors import ConfigError

__all__ = ["TASK_PRESETS", "TaskBenchmarkConfig", "preset", "run"]

logger = logging.getLogger(__name__)

#: The tasks this config benchmarks (the others: :mod:`cryoal.benchmark.noise`).
TASKS: tuple[str, ...] = ("image2d", "segmentation")


@dataclasses.dataclass(frozen=True)
class TaskBenchmarkConfig(ConfigViews):
    """Options of a noise benchmark of the image2d or segmentation pipeline.

    Attributes
    ----------
    task
        ``image2d`` or ``segmentation``.
    preset
        Name of the preset it came from (recorded only).
    strategies, snrs, seeds
        As in :class:`cryoal.benchmark.noise.NoiseBenchmarkConfig` (strategies from
        ``cryoal.tasks.get(task).strategies()``; SNR = var(signal)/var(noise), inf = none).
    model, model_kwargs
        Registry model (default cnn2d / monai-unet) and its options.
    classes
        Bundled structure names (image2d: one class each; segmentation: the particles).
    box
        Image side (px) or patch side (voxels; crops are ``2·box``).
    voxel_size
        Pixel/voxel edge in Å.
    n_pool, n_test
        image2d: images per class; segmentation: crops.
    particles
        Segmentation: particles placed per crop.
    initial, budget, rounds
        Initial labelled items, picks per round, acquisition rounds.
    epochs, batch_size, lr
        Training of each round's model (from scratch).
    tilt_range, defocus_um
        Segmentation crops: missing wedge (degrees) and underfocus (µm).
    data_seed
        Seed of the simulated data.
    device
        ``auto``, ``cpu``, ``cuda`` ...
    keep_models
        Keep every round's checkpoint in the block projects (off: deleted once the
        block's rows are recorded, to bound disk use).
    """

    task: str = "image2d"
    preset: str = "custom"
    strategies: tuple[str, ...] = ("random", "entropy", "expected-gradnorm")
    snrs: tuple[float, ...] = (math.inf, 0.5)
    seeds: tuple[int, ...] = (0,)
    model: str = ""
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    classes: tuple[str, ...] = ("4V8R-A", "7PBL", "3O21")
    box: int = 16
    voxel_size: float = 15.0
    n_pool: int = 30
    n_test: int = 20
    particles: int = 6
    initial: int = 6
    budget: int = 6
    rounds: int = 2
    epochs: int = 15
    batch_size: int = 16
    lr: float = 3e-3
    tilt_range: tuple[float, float] | None = (-60.0, 60.0)
    defocus_um: float | None = 3.0
    data_seed: int = 0
    device: str = "auto"
    keep_models: bool = False

    _what: ClassVar[str] = "task benchmark config"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "strategies", tuple(str(s) for s in self.strategies))
        set_(self, "snrs", tuple(float(s) for s in self.snrs))
        set_(self, "seeds", tuple(int(s) for s in self.seeds))
        set_(self, "classes", tuple(str(c) for c in self.classes))
        set_(self, "model_kwargs", dict(self.model_kwargs))
        if self.tilt_range is not None:
            set_(self, "tilt_range", tuple(float(t) for t in self.tilt_range))
        problems = []
        if self.task not in TASKS:
            problems.append(f"task {self.task!r} is not one of {', '.join(TASKS)}")
        else:
            from cryoal import tasks

            t = tasks.get(self.task)
            if not self.model:
                set_(self, "model", t.default_model)
            bad = [s for s in self.strategies if s not in t.strategies()]
            if bad:
                problems.append(
                    f"strategies {', '.join(bad)} do not apply to {self.task} "
                    f"(available: {', '.join(t.strategies())})"
                )
        if not self.strategies or len(set(self.strategies)) != len(self.strategies):
            problems.append(f"strategies must be distinct and at least one: {self.strategies}")
        if not self.snrs or any(not s > 0 for s in self.snrs):
            problems.append(f"snrs must be > 0 (inf = no noise), got {list(self.snrs)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            problems.append(f"seeds must be distinct and at least one, got {list(self.seeds)}")
        for name in ("box", "n_pool", "n_test", "initial", "budget", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.rounds < 0:
            problems.append(f"rounds must be >= 0, got {self.rounds}")
        pool = self.pool_size() if self.task in TASKS else 0
        need = self.initial + self.rounds * self.budget
        if self.task in TASKS and need >= pool:
            problems.append(
                f"initial + rounds × budget = {need} exceeds the pool of {pool} items less one "
                "(the last round's pick); raise n_pool or lower rounds/budget"
            )
        if problems:
            raise ConfigError(f"{self.task} noise benchmark config: " + "; ".join(problems))

    def pool_size(self) -> int:
        """Items in the pool: images (image2d) or patches (segmentation, 8 per crop)."""
        return _SUITES[self.task].pool_size(self)

    def suite(self, device: torch.device) -> Suite:
        """What :func:`cryoal.benchmark.engine.run` runs for this config."""
        return _SUITES[self.task](self, device)

    @classmethod
    def preset_names(cls, task: str) -> list[str]:
        """Names of ``task``'s presets."""
        return [n for t, n in TASK_PRESETS if t == task]

    @classmethod
    def preset_of(cls, task: str, name: str, **overrides: Any) -> TaskBenchmarkConfig:
        """:func:`preset` ``name`` of ``task``."""
        return preset(task, name, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able view (``inf`` SNR as ``"inf"``)."""
        out = config_to_dict(self)
        if self.tilt_range is not None:
            out["tilt_range"] = list(self.tilt_range)
        return out


# ---------------------------------------------------------------------- data
#: Options that decide an SNR's simulated data (``OUT/data/snr-*/meta.json``).
_DATA_FIELDS: tuple[str, ...] = (
    "task",
    "classes",
    "box",
    "voxel_size",
    "n_pool",
    "n_test",
    "particles",
    "tilt_range",
    "defocus_um",
    "data_seed",
)

#: The two simulated sets of an SNR: (folder name, items option, seed offset).
_SPLITS: tuple[tuple[str, str, int], ...] = (("pool", "n_pool", 0), ("test", "n_test", 1))


def _write_images(config: TaskBenchmarkConfig, snr: float, where: Path) -> None:
    """``n_pool`` / ``n_test`` projections per class as ``.npy`` images + ``truth.csv``."""
    from cryoal.tasks.image2d import simulate_projections, write_image_set

    for name, n_option, offset in _SPLITS:
        imgs, labels = simulate_projections(
            config.classes,
            getattr(config, n_option),
            config.box,
            config.voxel_size,
            snr,
            seed=config.data_seed + offset,
        )
        write_image_set(where / name, imgs, labels, fmt="npy", initial_per_class=0)


def _write_crops(config: TaskBenchmarkConfig, snr: float, where: Path) -> None:
    """``n_pool`` / ``n_test`` crops of side ``2·box`` (MRC) and their true label maps."""
    from cryoal.simulate import simulate_tomogram, write_tomogram

    sim_log = logging.getLogger("cryoal.simulate.tomograms")
    level = sim_log.level
    sim_log.setLevel(max(level, logging.ERROR))  # crowded crops place fewer particles: fine
    try:
        for name, n_option, offset in _SPLITS:
            names: list[str] = []
            for i in range(getattr(config, n_option)):
                tomo = simulate_tomogram(
                    list(config.classes),
                    shape=2 * config.box,
                    voxel_size=config.voxel_size,
                    n_particles=config.particles,
                    snr=snr,
                    tilt_range=config.tilt_range,
                    defocus=config.defocus_um,
                    membranes=1,
                    seed=config.data_seed * 1000 + 500 * offset + i,
                )
                write_tomogram(where / name, tomo, f"crop_{i:03d}")
                names = tomo.class_names
            atomic_write_text(where / name / "label_maps" / "classes.txt", "\n".join(names) + "\n")
    finally:
        sim_log.setLevel(level)


@dataclasses.dataclass
class _Images:
    """One SNR's image pool (labels held back: the oracle has them) and test set."""

    pool: Any
    truth: list[str]
    test_x: torch.Tensor
    test_y: torch.Tensor


@dataclasses.dataclass
class _Crops:
    """One SNR's crops and true label maps on disk, and the annotated test patches."""

    crops: Path
    truth: Path
    class_names: list[str]
    test: Any


def _image_data(config: TaskBenchmarkConfig, where: Path) -> _Images:
    from cryoal.io import read_labels
    from cryoal.tasks import get
    from cryoal.transforms import normalize

    task = get("image2d")
    sets = []
    for name, _, _ in _SPLITS:
        pool = task.open_pool(where / name / "images")
        table = read_labels(where / name / "truth.csv")
        label_of = dict(zip(table["id"].astype(str), table["label"].astype(str), strict=True))
        sets.append((pool, [label_of[i] for i in pool.ids]))
    (pool, truth), (test, test_labels) = sets
    x = normalize(torch.stack([test[i] for i in range(len(test))]))
    y = torch.as_tensor([config.classes.index(c) for c in test_labels], dtype=torch.long)
    return _Images(pool, truth, x, y)


def _crop_data(config: TaskBenchmarkConfig, where: Path) -> _Crops:
    from cryoal.tasks import get

    truth = where / "pool" / "label_maps"
    names = [n for n in (truth / "classes.txt").read_text(encoding="utf-8").split() if n]
    test = get("segmentation").open_pool(
        where / "test" / "tomograms",
        masks=where / "test" / "label_maps",
        patch=config.box,
        classes=names,
    )
    return _Crops(where / "pool" / "tomograms", truth, names, test)


# ---------------------------------------------------------------------- the suites
class _TaskSuite(Suite):
    """What the image2d and segmentation suites share: data on disk, rounds in projects."""

    config: TaskBenchmarkConfig
    #: what the task's metric columns mean
    metrics_note: ClassVar[str] = ""

    #: options of the task's rounds beyond the config's (pinned defaults)
    round_options: ClassVar[dict[str, Any]] = {}

    @staticmethod
    @abc.abstractmethod
    def pool_size(config: TaskBenchmarkConfig) -> int:
        """Items of the pool."""

    @abc.abstractmethod
    def simulate(self, where: Path, snr: float) -> None:
        """Write the pool and test set of ``snr`` into the empty folder ``where``."""

    @abc.abstractmethod
    def load(self, where: Path) -> Any:
        """What the blocks of an SNR need of the data that :meth:`simulate` wrote."""

    def data(self, out: Path, snr: float) -> Any:
        """Simulate (or reuse) ``OUT/data/snr-*``: the pool and test set of ``snr``."""
        config = self.config
        want = {**{k: config.to_dict()[k] for k in _DATA_FIELDS}, "snr": format_snr(snr)}
        where = out / "data" / snr_dir_name(snr)
        simulated_once(where, want, lambda folder: self.simulate(folder, snr))
        return self.load(where)

    def describe(self) -> str:
        """The task and what its metrics are."""
        return f"Task: {self.config.task} ({self.metrics_note})."

    def block_recorded(self, out: Path, key: BlockKey) -> None:
        """Delete the block's checkpoints unless ``keep_models``."""
        if not self.config.keep_models:
            drop_checkpoints(out, key)

    def select_config(self, strategy: str, seed: int) -> Any:
        """The options of every round of a block (the task's :meth:`Task.select_config`)."""
        from cryoal import tasks

        config = self.config
        options: dict[str, Any] = {
            "strategy": strategy,
            "budget": config.budget,
            "seed": seed,
            "arch": config.model,
            "arch_kwargs": dict(config.model_kwargs),
            "epochs": config.epochs,
            "train_batch_size": config.batch_size,
            "lr": config.lr,
            "device": str(self.device),
            "gallery_size": 0,
            "progress": False,
            **self.round_options,
        }
        return tasks.get(config.task).select_config(**options)


class _ImageSuite(_TaskSuite):
    """image2d: the oracle answers the picks as project labels (``cryoal label import``)."""

    metrics_note = "image classification"
    #: the initial set is labelled (no cold start); no encoder, as before rounds had one
    round_options = {"cold_start": "random", "pretrain_epochs": 0}

    @staticmethod
    def pool_size(config: TaskBenchmarkConfig) -> int:
        """``n_pool`` images per class."""
        return config.n_pool * len(config.classes)

    def simulate(self, where: Path, snr: float) -> None:
        """Projections as ``.npy`` images + ``truth.csv`` in ``pool/`` and ``test/``."""
        _write_images(self.config, snr, where)

    def load(self, where: Path) -> _Images:
        """The pool (unlabelled), its truth and the normalised test set."""
        return _image_data(self.config, where)

    def run_block(self, out: Path, key: BlockKey, data: _Images) -> list[dict[str, Any]]:
        """Rounds ``0 … rounds`` through ``Task.select_round`` in the block's project."""
        from cryoal import tasks
        from cryoal.active import Project

        config, device = self.config, self.device
        _, strategy, seed = key
        task = tasks.get(config.task)
        pool = data.pool
        oracle = benchmark_oracle(pool.ids, data.truth, seed)
        steps = _round_configs(self.select_config(strategy, seed), config.rounds)
        with Project(block_dir(out, key)) as project:
            if not project.label_map():
                chosen = initial_indices(data.truth, config.initial, seed)
                label_initial(project, pool, oracle, [pool.ids[i] for i in chosen])

            def one_round(done: list[Any], trained: list[Any]) -> None:
                with project.lock():
                    res = task.select_round(project, pool, steps[len(trained)])
                    project.add_labels(
                        oracle.label([p.id for p in res.picks]),
                        source="oracle",
                        annotator=oracle.annotator,
                        round=res.round.n,
                        where="oracle",
                    )

            def metrics(model: torch.nn.Module, info: Any) -> dict[str, float]:
                names = info.class_names or []
                return classifier_metrics(
                    model, names, data.test_x, data.test_y, config.classes, device
                )

            rounds = run_rounds(project, config.rounds + 1, one_round)
            return block_rows(project, key, rounds, metrics, device)


class _SegmentationSuite(_TaskSuite):
    """segmentation: the truth answers the picks as label maps in the block's ``masks/``."""

    metrics_note = "voxel metrics; macro_f1 = mean Dice"

    @staticmethod
    def pool_size(config: TaskBenchmarkConfig) -> int:
        """8 patches of ``box``³ per crop of ``2·box``."""
        return config.n_pool * 8

    def simulate(self, where: Path, snr: float) -> None:
        """Crops and true label maps in ``pool/`` and ``test/``."""
        _write_crops(self.config, snr, where)

    def load(self, where: Path) -> _Crops:
        """The pool's crops and truth, the annotated test patches."""
        return _crop_data(self.config, where)

    def run_block(self, out: Path, key: BlockKey, data: _Crops) -> list[dict[str, Any]]:
        """Rounds ``0 … rounds`` through ``Task.select_round``; masks written from the truth.

        The block's label maps live in its project folder (``masks/``, a copy of the true
        map on every picked patch and ``-1`` elsewhere, as
        :func:`~cryoal.tasks.seg_data.annotate_from_truth` writes them); each round
        reopens the pool over them, as ``cryoal select --task segmentation --masks`` does.
        """
        from cryoal import tasks
        from cryoal.active import Project
        from cryoal.tasks.seg_data import annotate_from_truth

        config, device = self.config, self.device
        _, strategy, seed = key
        task = tasks.get(config.task)
        folder = block_dir(out, key)
        masks = folder / "masks"

        def pool() -> Any:
            masks.mkdir(parents=True, exist_ok=True)
            return task.open_pool(
                data.crops, masks=masks, patch=config.box, classes=data.class_names
            )

        def annotate(table: pd.DataFrame) -> None:
            annotate_from_truth(table, data.truth, masks)

        steps = _round_configs(self.select_config(strategy, seed), config.rounds)
        with Project(folder) as project:
            if not project.rounds():  # the initial patches (rewritten alike after a crash)
                first = pool()
                rng = np.random.default_rng(seed)
                chosen = rng.choice(len(first), size=config.initial, replace=False)
                annotate(_patch_table(first, sorted(int(i) for i in chosen)))

            def one_round(done: list[Any], trained: list[Any]) -> None:
                current = pool()
                latest = project.latest_round()
                if latest is not None and latest.status == "picked" and latest not in done:
                    # picked before a crash, its maps not (all) written: write them now (a
                    # rerun of the round would see the maps changed and start another)
                    picks = [current.index_of(k.id) for k in project.picks(latest.n)]
                    annotate(_patch_table(current, picks))
                    return
                with project.lock():
                    res = task.select_round(project, current, steps[len(trained)])
                    annotate(res.table)

            def labelled() -> set[str]:
                p = pool()
                return {p.ids[i] for i in p.labelled_indices()}

            def metrics(model: torch.nn.Module, info: Any) -> dict[str, float]:
                return _voxel_metrics(model, data.test, device)

            rounds = run_rounds(project, config.rounds + 1, one_round, labelled)
            return block_rows(project, key, rounds, metrics, device)


#: The suite of each task of this module.
_SUITES: dict[str, type[_TaskSuite]] = {"image2d": _ImageSuite, "segmentation": _SegmentationSuite}


def _round_configs(config: Any, rounds: int) -> list[Any]:
    """The options of rounds ``0 … rounds``: the last round's pick is never evaluated, so
    it picks one item at random (no scoring); its model is trained as every round's."""
    return [config] * rounds + [dataclasses.replace(config, strategy="random", budget=1)]


def _patch_table(pool: Any, indices: Sequence[int]) -> pd.DataFrame:
    """``volume, z, y, x, size`` of patches, as a segmentation round's picks table."""
    rows = []
    for i in indices:
        volume, (z, y, x) = pool.location(i)
        rows.append({"volume": volume, "z": z, "y": y, "x": x, "size": pool.patch})
    return pd.DataFrame(rows, columns=["volume", "z", "y", "x", "size"])


def _voxel_metrics(model: torch.nn.Module, test: Any, device: Any) -> dict[str, float]:
    """Voxel accuracy, mean class recall and mean Dice (macro F1) over the test patches."""
    from cryoal.tasks import get
    from cryoal.train import classification_metrics, predict

    probs = predict(model, get("segmentation").dataset(test), batch_size=16, device=device)
    target = torch.stack([test.mask(i) for i in range(len(test))]).reshape(-1)
    k = int(probs.shape[1])
    pred = probs.movedim(1, -1).reshape(-1, k).argmax(1)
    keep = target >= 0
    m = classification_metrics(target[keep], pred[keep], k)
    return {key: float(m[key]) for key in ("accuracy", "balanced_accuracy", "macro_f1")}


#: The engine (:func:`cryoal.benchmark.engine.run`), here as before.
run = engine_run


# ---------------------------------------------------------------------- presets
#: (task, preset name) -> config; "quick" runs in a few minutes on a 2-core CPU (docs/benchmarks.md)
TASK_PRESETS: dict[tuple[str, str], TaskBenchmarkConfig] = {
    ("image2d", "quick"): TaskBenchmarkConfig(
        task="image2d",
        preset="image2d-quick",
        strategies=("random", "entropy", "expected-gradnorm"),
        snrs=(math.inf, 0.5),
        seeds=(0,),
        model="cnn2d",
        model_kwargs={"channels": (16, 32), "fc_units": 64},
        classes=("4V8R-A", "7PBL", "3O21"),
        box=16,
        voxel_size=15.0,
        n_pool=20,
        n_test=15,
        initial=6,
        budget=6,
        rounds=2,
        epochs=40,
        batch_size=4,
    ),
    ("image2d", "standard"): TaskBenchmarkConfig(
        task="image2d",
        preset="image2d-standard",
        strategies=("random", "entropy", "margin", "entropy-gradnorm", "expected-gradnorm"),
        snrs=(math.inf, 0.5, 0.1),
        seeds=(0, 1, 2),
        model="cnn2d",
        classes=("4V8R-A", "4JSV", "6WG6", "7PBL", "3O21", "6MSM"),
        box=32,
        voxel_size=10.0,
        n_pool=60,
        n_test=40,
        initial=12,
        budget=12,
        rounds=5,
        epochs=20,
        batch_size=32,
    ),
    ("segmentation", "quick"): TaskBenchmarkConfig(
        task="segmentation",
        preset="segmentation-quick",
        strategies=("random", "entropy", "expected-gradnorm"),
        snrs=(math.inf, 1.0),
        seeds=(0,),
        model="monai-unet",
        model_kwargs={"channels": (8, 16), "features": 8},
        classes=("4V8R-A", "7PBL"),
        box=16,
        voxel_size=15.0,
        n_pool=3,
        n_test=1,
        particles=6,
        initial=4,
        budget=4,
        rounds=2,
        epochs=30,
        batch_size=4,
        lr=1e-2,
    ),
    ("segmentation", "standard"): TaskBenchmarkConfig(
        task="segmentation",
        preset="segmentation-standard",
        strategies=("random", "entropy", "entropy-gradnorm", "expected-gradnorm"),
        snrs=(math.inf, 1.0, 0.3),
        seeds=(0, 1, 2),
        model="monai-unet",
        classes=("4V8R-A", "7PBL", "3O21"),
        box=16,
        voxel_size=15.0,
        n_pool=12,
        n_test=4,
        particles=8,
        initial=8,
        budget=8,
        rounds=5,
        epochs=20,
        batch_size=8,
    ),
}


def preset(task: str, name: str = "quick", **overrides: Any) -> TaskBenchmarkConfig:
    """The ``name`` preset of ``task`` (``quick``, ``standard``) with ``overrides``.

    Raises
    ------
    ConfigError
        No such preset for the task.
    """
    key = (task, name)
    if key not in TASK_PRESETS:
        have = ", ".join(n for t, n in TASK_PRESETS if t == task) or "none"
        raise ConfigError(f"no {name!r} preset for task {task!r} (presets: {have})")
    cfg = TASK_PRESETS[key]
    return cfg.replace(**overrides) if overrides else cfg

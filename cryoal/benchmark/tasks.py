"""What the image2d and segmentation tasks add to the benchmark engine.

``cryoal benchmark noise --task image2d|segmentation`` runs strategies × SNR × seeds
through the one engine (:func:`cryoal.benchmark.engine.run`, which also runs the
subtomogram benchmark of :mod:`cryoal.benchmark.noise`) and writes the same files
(``results.csv`` with :data:`cryoal.benchmark.report.RESULT_COLUMNS`, ``summary.md``,
``curves_snr*.png``, ``config.json``). This module holds the config, the presets and the
:class:`~cryoal.benchmark.engine.Suite` of these tasks. Differences:

- data per SNR (seeded by ``data_seed``, test set ``data_seed + 1``):
  image2d — :func:`~cryoal.tasks.image2d.simulate_projections` (2D projections of the
  ``classes`` structures, ``n_pool``/``n_test`` images per class, ``box`` px);
  segmentation — ``n_pool``/``n_test`` crops of side ``2·box`` from
  :func:`cryoal.simulate.simulate_tomogram` (``particles`` particles of ``classes`` and
  one membrane, wedge/CTF as configured), cut into ``box``³ patches;
- the active loop runs in memory (the ground truth answers at once: for segmentation a
  picked patch's whole label map); no projects, no cross-SNR robustness matrix;
- segmentation metrics are over test voxels: ``accuracy`` = voxel accuracy,
  ``balanced_accuracy`` = mean class recall, ``macro_f1`` = mean Dice (Dice_c = F1_c,
  averaged over classes present in truth or prediction).

Rounds ``r = 0 … rounds`` train from scratch on ``initial + r·budget`` labels (image2d:
class-balanced initial set; segmentation: random patches), test, then pick ``budget``.
An interrupted run resumes (the engine's rules): finished (SNR, strategy, seed) blocks in
``results.csv`` are kept when ``config.json`` records the same options that change what
a row means (all but the preset name, strategies, SNRs, seeds and the device).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from cryoal.benchmark._blocks import BlockKey, ConfigViews, config_to_dict, initial_indices
from cryoal.benchmark.engine import Suite
from cryoal.benchmark.engine import run as engine_run
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
        if self.task in TASKS and need > pool:
            problems.append(
                f"initial + rounds × budget = {need} exceeds the pool of {pool} items; raise "
                "n_pool or lower rounds/budget"
            )
        if problems:
            raise ConfigError(f"{self.task} noise benchmark config: " + "; ".join(problems))

    def pool_size(self) -> int:
        """Items in the pool: images (image2d) or patches (segmentation, 8 per crop)."""
        return _TASK_DATA[self.task].pool_size(self)

    def suite(self, device: torch.device) -> Suite:
        """What :func:`cryoal.benchmark.engine.run` runs for this config."""
        return _InMemory(self, device)

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
@dataclasses.dataclass
class _Data:
    """One SNR's pool and test set in memory, and what a block needs to know of them."""

    pool: Any
    test: Any
    n_classes: int
    #: image2d: the pool's ground truth (class-balanced initial sets) and the class order
    #: of the training labels; segmentation: None (random initial patches, task.dataset)
    labels: list[str] | None = None
    class_names: list[str] | None = None


def _image_data(config: TaskBenchmarkConfig, snr: float) -> _Data:
    """``n_pool`` / ``n_test`` projections per class (seeds ``data_seed``, ``data_seed + 1``)."""
    from cryoal.io.images import ImagePool
    from cryoal.tasks.image2d import simulate_projections

    out = []
    for n, seed in ((config.n_pool, config.data_seed), (config.n_test, config.data_seed + 1)):
        imgs, labels = simulate_projections(
            config.classes, n, config.box, config.voxel_size, snr, seed=seed
        )
        out.append(ImagePool.from_array(imgs, labels=labels, pixel_size=config.voxel_size))
    return _Data(
        out[0],
        out[1],
        len(config.classes),
        labels=[str(v) for v in out[0].labels],
        class_names=sorted(config.classes),
    )


def _segmentation_data(config: TaskBenchmarkConfig, snr: float) -> _Data:
    """``n_pool`` / ``n_test`` simulated crops of side ``2·box``, cut into ``box``³ patches."""
    from cryoal.simulate import simulate_tomogram
    from cryoal.tasks.seg_data import PatchPool

    pools = []
    sim_log = logging.getLogger("cryoal.simulate.tomograms")
    level = sim_log.level
    sim_log.setLevel(max(level, logging.ERROR))  # crowded crops place fewer particles: fine
    try:
        for n, base in (
            (config.n_pool, config.data_seed * 1000),
            (config.n_test, config.data_seed * 1000 + 500),
        ):
            vols, masks, names = [], [], []
            for i in range(n):
                tomo = simulate_tomogram(
                    list(config.classes),
                    shape=2 * config.box,
                    voxel_size=config.voxel_size,
                    n_particles=config.particles,
                    snr=snr,
                    tilt_range=config.tilt_range,
                    defocus=config.defocus_um,
                    membranes=1,
                    seed=base + i,
                )
                vols.append(tomo.volume)
                masks.append(tomo.labels)
                names = tomo.class_names
            pools.append(
                PatchPool.from_arrays(
                    vols, masks, class_names=names, patch=config.box, voxel_size=config.voxel_size
                )
            )
    finally:
        sim_log.setLevel(level)
    return _Data(pools[0], pools[1], len(pools[0].class_names))


@dataclasses.dataclass(frozen=True)
class _TaskData:
    """How a task's benchmark data are made and counted."""

    make: Callable[[TaskBenchmarkConfig, float], _Data]
    pool_size: Callable[[TaskBenchmarkConfig], int]
    describe: str


#: The tasks of this module and their data.
_TASK_DATA: dict[str, _TaskData] = {
    "image2d": _TaskData(_image_data, lambda c: c.n_pool * len(c.classes), "image classification"),
    "segmentation": _TaskData(
        _segmentation_data, lambda c: c.n_pool * 8, "voxel metrics; macro_f1 = mean Dice"
    ),
}


def _initial(config: TaskBenchmarkConfig, data: _Data, seed: int) -> list[int]:
    if data.labels is not None:
        return initial_indices(data.labels, config.initial, seed)
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(len(data.pool), size=config.initial, replace=False).tolist())


def _test_metrics(
    task: Any, model: Any, data: _Data, config: TaskBenchmarkConfig, device: Any
) -> dict[str, float]:
    from cryoal.train import classification_metrics, predict

    test_ds = task.dataset(data.test)
    probs = predict(model, test_ds, batch_size=max(config.batch_size, 16), device=device)
    target = torch.stack([torch.as_tensor(test_ds[i][1]) for i in range(len(test_ds))]).long()
    k = int(probs.shape[1])
    if probs.dim() > 2:
        probs = probs.movedim(1, -1).reshape(-1, k)
        target = target.reshape(-1)
    keep = target >= 0
    m = classification_metrics(target[keep], probs[keep].argmax(1), k)
    return {key: float(m[key]) for key in ("accuracy", "balanced_accuracy", "macro_f1")}


def _labelled_set(pool: Any, indices: Sequence[int], class_names: Sequence[str]) -> Any:
    from torch.utils.data import Subset

    from cryoal.transforms import normalize

    return Subset(pool.dataset(transform=normalize, class_names=class_names), list(indices))


class _InMemory(Suite):
    """image2d / segmentation: the active loop in memory, the truth answering at once."""

    config: TaskBenchmarkConfig

    def describe(self) -> str:
        """The task and what its metrics are."""
        return f"Task: {self.config.task} ({_TASK_DATA[self.config.task].describe})."

    def data(self, out: Path, snr: float) -> _Data:
        """Simulate the pool and test set of ``snr`` (in memory, nothing kept in ``out``)."""
        return _TASK_DATA[self.config.task].make(self.config, snr)

    def run_block(self, out: Path, key: BlockKey, data: _Data) -> list[dict[str, Any]]:
        """Rounds ``0 … rounds``: train from scratch, test, pick ``budget`` (not after the last)."""
        from cryoal import models, tasks
        from cryoal.train import TrainConfig, fit

        config, device = self.config, self.device
        snr, strategy_name, seed = key
        task = tasks.get(config.task)
        pool_ds: Any = task.dataset(data.pool)
        labelled = _initial(config, data, seed)
        rows = []
        for r in range(config.rounds + 1):
            t0 = time.perf_counter()
            torch.manual_seed(seed)
            model = models.create(
                config.model, data.n_classes, task.in_shape(data.pool), **config.model_kwargs
            )
            train_ds = (
                task.dataset(data.pool, labelled)
                if data.class_names is None
                else _labelled_set(data.pool, labelled, data.class_names)
            )
            fit(
                model,
                train_ds,
                config=TrainConfig(
                    epochs=config.epochs,
                    batch_size=config.batch_size,
                    lr=config.lr,
                    seed=seed,
                    device=str(device),
                    balanced=data.class_names is not None,
                    progress=False,
                ),
            )
            metrics = _test_metrics(task, model, data, config, device)
            if r < config.rounds:
                strat = task.strategy(
                    strategy_name, device=device, batch_size=32, progress=False, seed=seed
                )
                sel = strat.select(
                    model,
                    pool_ds,
                    config.budget,
                    labelled=labelled,
                    generator=torch.Generator().manual_seed(seed * 1000 + r),
                )
                labelled = sorted(set(labelled) | set(sel.indices.tolist()))
            rows.append(
                {
                    "snr": snr,
                    "strategy": strategy_name,
                    "seed": seed,
                    "round": r,
                    "n_labels": config.initial + r * config.budget,
                    **metrics,
                    "wall_time": time.perf_counter() - t0,
                }
            )
        return rows


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

"""The noise-robustness benchmark: acquisition strategies × SNR × seeds on simulated data.

For every SNR the benchmark simulates (or reuses from ``OUT/data``) a labelled pool and a
held-out test set from the bundled structures with the physics of the
``snr-benchmark`` manifest (random orientation, CTF, missing wedge, Gaussian noise at the
SNR). For every (SNR, strategy, seed) it runs the simulated active loop
(:func:`cryoal.active.loop.run`, an :class:`~cryoal.active.Oracle` answering from the
ground truth) in its own project folder, starting from the same class-balanced random
initial labelled set for every strategy of a seed, and measures each round's model on the
test set (accuracy, balanced accuracy, macro-F1). Each finished (SNR, strategy, seed)
block is appended atomically to ``results.csv``: an interrupted benchmark, run again with
the same configuration, skips the finished blocks and resumes the unfinished one from its
project (the loop's own resume), so the final table equals an uninterrupted run's (up to
``wall_time``). The cross-SNR robustness matrix trains one model on the whole labelled
pool at each SNR and evaluates it on the test set of every SNR (``robustness.csv``).

This module holds the config, the presets and the subtomogram
:class:`~cryoal.benchmark.engine.Suite`; the run/resume path is the engine's
(:func:`cryoal.benchmark.engine.run`, also ``noise.run``), shared with the image2d and
segmentation benchmarks (:mod:`cryoal.benchmark.tasks`).

Randomness: the data of an SNR depend on ``data_seed`` only (the same pool for every run);
a run's seed fixes its initial labelled set, model initialisation, training order and the
strategy's random draws. Rounds retrain from scratch (the loop's default).

>>> from cryoal.benchmark import noise
>>> cfg = noise.preset("quick", seeds=(0,))
>>> table = noise.run(cfg, out="bench/")          # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from cryoal._atomic import atomic_path
from cryoal.benchmark._blocks import (
    BlockKey,
    ConfigViews,
    benchmark_oracle,
    block_dir,
    block_rows,
    classifier_metrics,
    config_to_dict,
    drop_checkpoints,
    finished_rounds,
    initial_indices,
    label_initial,
    run_rounds,
    simulated_once,
    snr_dir_name,
    trained_rounds,
)
from cryoal.benchmark.engine import SCRATCH_SUFFIX, Extra, Suite, split_arm
from cryoal.benchmark.engine import run as engine_run
from cryoal.benchmark.report import ROBUSTNESS_COLUMNS, format_snr
from cryoal.errors import ConfigError

__all__ = [
    "PRESETS",
    "PRESET_RUNTIMES",
    "NoiseBenchmarkConfig",
    "initial_indices",
    "manifest_physics",
    "preset",
    "run",
]

logger = logging.getLogger(__name__)

TASKS: tuple[str, ...] = ("classification3d",)

#: Columns of ``robustness.csv``.
ROBUSTNESS_TABLE_COLUMNS: tuple[str, ...] = (*ROBUSTNESS_COLUMNS, "balanced_accuracy", "macro_f1")

# Fields that decide the simulated data (a change re-simulates) and the runs (a change
# refuses to resume). Adding strategies, SNRs or seeds extends an existing benchmark.
_DATA_FIELDS = (
    "classes",
    "box",
    "voxel_size",
    "n_pool",
    "n_test",
    "manifest",
    "data_seed",
)
_RUN_FIELDS = (
    "task",
    "model",
    "model_kwargs",
    "initial",
    "budget",
    "rounds",
    "schedule",
    "initial_from",
    "pretrain_epochs",
    "epochs",
    "batch_size",
    "lr",
    "robustness_epochs",
)

#: How the first labelled set of a run is chosen (``initial_from``).
INITIAL_FROM: tuple[str, ...] = ("balanced-random", "cold-start")


def cold_start_of(strategy: str) -> str:
    """The cold start (``SelectConfig.cold_start``) of a strategy under ``initial_from="cold-start"``.

    ``auto`` cold-starts as ``cryoal select`` does by default (``auto``: typicality);
    ``typicality`` and the ``diverse-*`` strategies by typicality; ``coreset`` by k-center
    greedy; every other strategy (the classic baselines, plain gradnorm) by random picks,
    which is what a user of those strategies would do without labels.
    """
    if strategy == "auto":
        return "auto"
    if strategy == "typicality" or strategy.startswith("diverse-"):
        return "typicality"
    if strategy == "coreset":
        return "coreset"
    return "random"


@dataclasses.dataclass(frozen=True)
class NoiseBenchmarkConfig(ConfigViews):
    """Everything that defines a noise-robustness benchmark run.

    Attributes
    ----------
    preset
        Name of the preset this config came from (``custom`` otherwise); recorded only.
    task
        ``classification3d`` (subtomogram classification; the only task benchmarked).
    strategies
        Acquisition strategies (:func:`cryoal.acquisition.available`); include ``random``,
        the baseline of the paired comparison.
    snrs
        Signal-to-noise ratios, var(signal)/var(noise); ``math.inf`` = no noise.
    seeds
        Run seeds (initial labelled set, model init, training, strategy randomness).
    model, model_kwargs
        Architecture (:func:`cryoal.models.available`) and its options.
    box
        Subtomogram edge in voxels.
    voxel_size
        Voxel edge in Å.
    classes
        Bundled structure names (:func:`cryoal.simulate.structures.list_structures`).
    n_pool, n_test
        Simulated subtomograms per class in the pool and in the held-out test set.
    initial
        Size of the initial labelled set (class-balanced random, per seed).
    budget
        Labels acquired per round.
    rounds
        Acquisition rounds; models are evaluated at ``initial + r·budget`` labels for
        ``r = 0 … rounds``.
    schedule
        Explicit label counts ``n_0 < n_1 < …`` at which each run's model is evaluated
        (round ``r`` picks ``n_{r+1} − n_r``); when given it replaces ``initial``,
        ``budget`` and ``rounds`` (see :meth:`label_counts`). Lets a benchmark span
        ~5 to ~100 labels per class with few rounds.
    initial_from
        ``balanced-random``: the first ``n_0`` labels are a class-balanced random set, the
        same for every strategy of a seed (an idealised start that needs the labels it
        is meant to find). ``cold-start``: each strategy picks them from zero labels with
        its own cold start (:func:`cold_start_of`), as ``cryoal select`` does on a new
        dataset.
    pretrain_epochs
        ``> 0``: pretrain one encoder per SNR on that SNR's unlabelled pool
        (:mod:`cryoal.pretrain`, seed ``data_seed``; cached in ``OUT/data``) and give it to
        every run: it initialises every round's model and embeds the pool for
        typicality and the diverse strategies. Strategies named ``NAME@scratch`` run
        without it (:func:`split_arm`). ``0``: no encoder.
    epochs, batch_size, lr
        Training of each round's model (AdamW, cosine schedule, class-balanced batches).
    robustness, robustness_seeds, robustness_epochs
        Whether to compute the cross-SNR matrix, with how many seeds (the first
        ``robustness_seeds`` of ``seeds``) and how many epochs on the full pool.
    manifest
        Data manifest (bundled name or YAML path, :mod:`cryoal.manifests`) whose
        physics the simulation uses: tilt range and axis, defocus, voltage, Cs,
        amplitude contrast, B-factor, shift, noise recipe (see :func:`manifest_physics`).
        Structures, box, voxel size and counts come from this config.
    data_seed
        Seed of the simulated pool (test set: ``data_seed + 1``).
    device
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (does not change the recorded results'
        identity: a benchmark may be resumed on another device).
    keep_models
        Keep every round's checkpoint in the run projects (off: deleted once the block's
        rows are recorded, to bound disk use).
    """

    preset: str = "custom"
    task: str = "classification3d"
    strategies: tuple[str, ...] = ("random", "entropy", "entropy-gradnorm")
    snrs: tuple[float, ...] = (math.inf, 0.1)
    seeds: tuple[int, ...] = (0, 1)
    model: str = "dsrf3d"
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    box: int = 24
    voxel_size: float = 10.0
    classes: tuple[str, ...] = ("4V8R-A", "7PBL", "3O21", "2NWL")
    n_pool: int = 40
    n_test: int = 25
    initial: int = 8
    budget: int = 8
    rounds: int = 3
    schedule: tuple[int, ...] = ()
    initial_from: str = "balanced-random"
    pretrain_epochs: int = 0
    epochs: int = 15
    batch_size: int = 16
    lr: float = 3e-3
    robustness: bool = True
    robustness_seeds: int = 1
    robustness_epochs: int = 15
    manifest: str = "snr-benchmark"
    data_seed: int = 0
    device: str = "auto"
    keep_models: bool = False

    _what: ClassVar[str] = "noise benchmark config"

    def __post_init__(self) -> None:
        object.__setattr__(self, "strategies", tuple(str(s) for s in self.strategies))
        object.__setattr__(self, "snrs", tuple(float(s) for s in self.snrs))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs))
        object.__setattr__(self, "schedule", tuple(int(n) for n in self.schedule))
        problems = []
        if self.schedule and (
            self.schedule[0] < 2 or any(b <= a for a, b in itertools.pairwise(self.schedule))
        ):
            problems.append(
                f"schedule must be increasing label counts starting at >= 2, got {list(self.schedule)}"
            )
        if self.initial_from not in INITIAL_FROM:
            problems.append(
                f"initial_from must be one of {', '.join(INITIAL_FROM)}, got {self.initial_from!r}"
            )
        if self.pretrain_epochs < 0:
            problems.append(f"pretrain_epochs must be >= 0, got {self.pretrain_epochs}")
        scratch = [s for s in self.strategies if split_arm(s)[1]]
        if scratch and self.pretrain_epochs == 0:
            problems.append(
                f"{', '.join(scratch)}: the {SCRATCH_SUFFIX} arms need pretrain_epochs > 0 "
                "(without an encoder every arm already trains from scratch)"
            )
        if self.task not in TASKS:
            problems.append(f"task {self.task!r} is not benchmarked (use {', '.join(TASKS)})")
        if not self.strategies:
            problems.append("strategies is empty")
        if len(set(self.strategies)) != len(self.strategies):
            problems.append(f"strategies repeat: {', '.join(self.strategies)}")
        if not self.snrs or any(not s > 0 for s in self.snrs):
            problems.append(f"snrs must be > 0 (inf = no noise), got {list(self.snrs)}")
        if len(set(self.snrs)) != len(self.snrs):
            problems.append(f"snrs repeat: {list(self.snrs)}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            problems.append(f"seeds must be distinct and at least one, got {list(self.seeds)}")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            problems.append(
                f"classes must be at least two distinct names, got {list(self.classes)}"
            )
        for name in (
            "box",
            "n_pool",
            "n_test",
            "budget",
            "epochs",
            "batch_size",
            "robustness_epochs",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.rounds < 0:
            problems.append(f"rounds must be >= 0, got {self.rounds}")
        if self.initial < 2:
            problems.append(f"initial must be >= 2 (two classes to train on), got {self.initial}")
        if self.initial > self.n_pool * len(self.classes):
            problems.append(f"initial ({self.initial}) exceeds the pool ({self.n_pool} per class)")
        pool = self.n_pool * len(self.classes)
        if not self.schedule:
            need = self.initial + (self.rounds + 1) * self.budget
            if need > pool:
                problems.append(
                    f"initial + (rounds + 1) × budget = {need} labels exceed the pool of {pool} "
                    f"(n_pool {self.n_pool} × {len(self.classes)} classes; the loop also picks "
                    "after the last evaluated round): raise n_pool or lower rounds/budget"
                )
        elif self.schedule[-1] + 1 > pool:
            problems.append(
                f"the schedule's last label count {self.schedule[-1]} (+1: the loop also picks "
                f"after the last evaluated round) exceeds the pool of {pool} (n_pool "
                f"{self.n_pool} × {len(self.classes)} classes): raise n_pool"
            )
        if self.voxel_size <= 0:
            problems.append(f"voxel_size must be > 0 Å, got {self.voxel_size}")
        if not 1 <= self.robustness_seeds:
            problems.append(f"robustness_seeds must be >= 1, got {self.robustness_seeds}")
        if problems:
            raise ConfigError("noise benchmark config: " + "; ".join(problems))

    # ------------------------------------------------------------------ views
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able view (``inf`` SNR as the string ``"inf"``)."""
        return config_to_dict(self)

    def suite(self, device: torch.device) -> Suite:
        """What :func:`cryoal.benchmark.engine.run` runs for this config."""
        return _Subtomograms(self, device)

    @classmethod
    def preset_names(cls, task: str) -> list[str]:
        """Names of the presets (the same for every task of :data:`TASKS`)."""
        return list(PRESETS)

    @classmethod
    def preset_of(cls, task: str, name: str, **overrides: Any) -> NoiseBenchmarkConfig:
        """:func:`preset` ``name`` for ``task`` (one of :data:`TASKS`)."""
        return preset(name, **({"task": task} if task != cls.task else {}), **overrides)

    def _subset(self, fields: Sequence[str]) -> dict[str, Any]:
        d = self.to_dict()
        return {k: d[k] for k in fields}

    def option_notes(self) -> dict[str, str]:
        """``initial``, ``budget`` and ``rounds`` are marked when a schedule replaces them."""
        if not self.schedule:
            return {}
        return dict.fromkeys(("initial", "budget", "rounds"), "replaced by schedule")

    def label_counts(self) -> tuple[int, ...]:
        """Label counts at which each run's model is evaluated, in order.

        ``schedule`` when given, else ``initial + r·budget`` for ``r = 0 … rounds``.
        """
        if self.schedule:
            return self.schedule
        return tuple(self.initial + r * self.budget for r in range(self.rounds + 1))

    def pick_sizes(self) -> tuple[int, ...]:
        """Picks of each evaluated round: ``n_{r+1} − n_r``, then the last round's pick.

        The loop picks after every trained round, the last one included; that pick is
        never evaluated, so a ``schedule`` makes it a single volume (``budget`` for the
        ``initial/budget/rounds`` form, as before schedules existed).
        """
        counts = self.label_counts()
        steps = tuple(b - a for a, b in itertools.pairwise(counts))
        return (*steps, 1 if self.schedule else self.budget)


#: Named presets. Times: expected wall time of the whole benchmark (see PRESET_RUNTIMES).
PRESETS: dict[str, NoiseBenchmarkConfig] = {
    "quick": NoiseBenchmarkConfig(
        preset="quick",
        strategies=("random", "entropy", "entropy-gradnorm"),
        snrs=(math.inf, 0.1),
        seeds=(0, 1),
        model="cb3d",
        model_kwargs={},
        box=16,
        voxel_size=15.0,
        classes=("4V8R-A", "7PBL", "3O21", "2NWL"),
        n_pool=30,
        n_test=25,
        initial=8,
        budget=8,
        rounds=4,
        epochs=30,
        batch_size=8,
        robustness_seeds=1,
        robustness_epochs=30,
    ),
    "standard": NoiseBenchmarkConfig(
        preset="standard",
        strategies=("random", "entropy", "entropy-gradnorm", "expected-gradnorm"),
        snrs=(math.inf, 0.1, 0.05, 0.03),
        seeds=(0, 1, 2),
        model="cb3d",
        model_kwargs={},
        box=24,
        voxel_size=12.0,
        classes=("4V8R-A", "4JSV", "6WG6", "7PBL", "3O21", "6MSM"),
        n_pool=50,
        n_test=40,
        initial=12,
        budget=12,
        rounds=5,
        epochs=20,
        batch_size=16,
        robustness_seeds=1,
        robustness_epochs=20,
    ),
    "low-budget": NoiseBenchmarkConfig(
        preset="low-budget",
        strategies=(
            "random@scratch",
            "random",
            "auto",
            "typicality",
            "diverse-entropy-gradnorm",
            "diverse-expected-gradnorm",
            "entropy-gradnorm",
            "entropy-gradnorm@scratch",
        ),
        snrs=(0.1, 0.05),
        seeds=(0, 1, 2),
        model="cb3d",
        model_kwargs={},
        box=16,
        voxel_size=15.0,
        classes=("4V8R-A", "7PBL", "3O21", "2NWL"),
        n_pool=150,
        n_test=50,
        schedule=(20, 40, 80, 160, 280, 400),
        initial_from="cold-start",
        pretrain_epochs=60,
        epochs=30,
        batch_size=16,
        robustness=False,
    ),
    "paper": NoiseBenchmarkConfig(
        preset="paper",
        strategies=(
            "random",
            "entropy",
            "margin",
            "bald",
            "coreset",
            "badge",
            "expected-gradnorm",
            "entropy-gradnorm",
        ),
        snrs=(math.inf, 0.1, 0.05, 0.03, 0.01),
        seeds=(0, 1, 2, 3, 4),
        model="dsrf3d",
        model_kwargs={},
        box=32,
        voxel_size=10.0,
        classes=("6ZU5", "4V8R-A", "4JSV", "6WG6", "7PBL", "3O21", "6MSM", "2NWL", "7DDO", "3ENL"),
        n_pool=300,
        n_test=100,
        initial=50,
        budget=50,
        rounds=10,
        epochs=30,
        batch_size=32,
        robustness_seeds=3,
        robustness_epochs=30,
    ),
}

#: Expected wall time of each preset and the machine it was measured or estimated on.
PRESET_RUNTIMES: dict[str, str] = {
    "quick": (
        "≈ 2–3 min on an idle 2-core CPU (2.1 min of CPU time, 1 thread); 10.5 min wall "
        "measured on the shared 2-core dev VM at load average ≈ 11 (docs/benchmarks/noise/)"
    ),
    "standard": (
        "≈ 40–60 min on an idle 2-core CPU (estimated: 266k training samples at 24³ × ~7 ms, "
        "scaled from the quick run's ~2 ms per 16³ sample; not run)"
    ),
    "low-budget": (
        "28 min on the quiet 2-core CPU dev VM with one process per SNR (--snr 0.1 and --snr "
        "0.05 into two folders, one torch thread each: 27.8 min per SNR, 3.5 min of it "
        "pretraining); ≈ 55 min CPU time in all (docs/benchmarks/noise/low-budget/)"
    ),
    "paper": (
        "≈ 7 h on one H200 GPU (extrapolated from a measured paper-size probe: ~0.8 ms per "
        "training sample, ~8 s per expected-gradnorm scoring of 3,000 volumes; not run)"
    ),
}


def preset(name: str, **overrides: Any) -> NoiseBenchmarkConfig:
    """The named preset (``quick``, ``standard``, ``paper``) with ``overrides`` applied.

    Raises
    ------
    ConfigError
        Unknown preset (with the close name) or invalid overrides.
    """
    if name not in PRESETS:
        import difflib

        close = difflib.get_close_matches(name, list(PRESETS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown preset {name!r}.{hint} Presets: {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]


# ---------------------------------------------------------------------- data
@dataclasses.dataclass
class _Split:
    """One simulated set: an MRC stack on disk and its ground truth."""

    stack: Path
    labels: list[str]

    @property
    def ids(self) -> list[str]:
        return [f"{self.stack.name}#{i}" for i in range(len(self.labels))]


#: Manifest keys that describe the image formation (passed to the simulator).
PHYSICS_KEYS: tuple[str, ...] = (
    "tilt_range",
    "tilt_axis",
    "defocus_um",
    "voltage_kv",
    "cs_mm",
    "amplitude_contrast",
    "bfactor",
    "shift_max",
    "noise",
)


def manifest_physics(manifest: str | Path) -> dict[str, Any]:
    """The image-formation parameters of a subtomogram manifest (JSON-able values).

    Parameters
    ----------
    manifest
        Bundled manifest name (``snr-benchmark``) or a YAML path.

    Returns
    -------
    dict
        The keys of :data:`PHYSICS_KEYS` the manifest sets: ``tilt_range`` (degrees),
        ``tilt_axis``, ``defocus_um`` (µm, positive = underfocus), ``voltage_kv`` (kV),
        ``cs_mm`` (mm), ``amplitude_contrast``, ``bfactor`` (Å²), ``shift_max`` (voxels),
        ``noise`` (recipe).

    Raises
    ------
    ManifestError
        Unknown or invalid manifest.
    ConfigError
        The manifest does not describe subtomograms.
    """
    from cryoal.manifests import load_manifest

    m = load_manifest(manifest)
    if m.kind != "subtomograms":
        raise ConfigError(
            f"manifest {manifest!r} describes {m.kind!r}, not subtomograms: the noise benchmark "
            "needs a subtomogram recipe such as snr-benchmark"
        )
    out = {k: m.spec[k] for k in PHYSICS_KEYS if m.spec.get(k) is not None}
    if "tilt_range" in out:
        out["tilt_range"] = [float(t) for t in out["tilt_range"]]
    return out


def _simulate_split(
    config: NoiseBenchmarkConfig, snr: float, n_per_class: int, seed: int, device: torch.device
) -> tuple[np.ndarray, list[str]]:
    """Simulate ``n_per_class`` subtomograms per class: ``(N, D, H, W)`` float32 and labels."""
    from cryoal.simulate.subtomograms import simulate_subtomograms

    physics = dict(manifest_physics(config.manifest))
    tilt = physics.pop("tilt_range", None)
    sim = simulate_subtomograms(
        list(config.classes),
        n_per_class,
        box=config.box,
        voxel_size=config.voxel_size,
        snr=snr,
        tilt_range=None if tilt is None else (tilt[0], tilt[1]),
        defocus=physics.pop("defocus_um", None),
        seed=seed,
        device=device,
        progress=False,
        **physics,
    )
    volumes = sim.volumes.detach().cpu().numpy().astype(np.float32, copy=False)
    volumes = volumes.reshape(volumes.shape[0], *volumes.shape[-3:])
    return volumes, [sim.class_names[int(i)] for i in sim.labels.tolist()]


def _prepare_data(
    config: NoiseBenchmarkConfig, data_dir: Path, snr: float, device: torch.device
) -> tuple[_Split, _Split]:
    """Simulate (or reuse) the pool and test set of one SNR under ``data_dir``."""
    from cryoal.io import read_labels, write_labels, write_volume

    where = data_dir / snr_dir_name(snr)
    want = {
        **config._subset(_DATA_FIELDS),
        "physics": manifest_physics(config.manifest),
        "snr": format_snr(snr),
    }
    splits = {
        "pool": (config.n_pool, config.data_seed),
        "test": (config.n_test, config.data_seed + 1),
    }

    def simulate(folder: Path) -> None:
        for name, (n, seed) in splits.items():
            volumes, labels = _simulate_split(config, snr, n, seed, device)
            stack = write_volume(folder / f"{name}.mrcs", volumes, voxel_size=config.voxel_size)
            ids = _Split(Path(stack), labels).ids
            write_labels(folder / f"{name}_labels.csv", pd.DataFrame({"id": ids, "label": labels}))

    simulated_once(where, want, simulate)
    out = []
    for name in splits:
        table = read_labels(where / f"{name}_labels.csv")
        out.append(_Split(where / f"{name}.mrcs", [str(v) for v in table["label"]]))
    return out[0], out[1]


def _load_tensor(split: _Split) -> torch.Tensor:
    """All volumes of a split, normalised per volume: ``(N, 1, D, H, W)`` float32."""
    from cryoal.io import VolumePool
    from cryoal.transforms import normalize

    pool = VolumePool.from_stack(split.stack)
    x = torch.stack([pool[i] for i in range(len(pool))])
    return normalize(x)


# ---------------------------------------------------------------------- one run
def _run_block(
    config: NoiseBenchmarkConfig,
    project_dir: Path,
    pool_split: _Split,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    key: BlockKey,
    device: torch.device,
    encoder: Path | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) the active loop of one (snr, arm, seed) and score each trained round.

    ``encoder`` (the SNR's pretrained encoder, or ``None``) is copied into the run's
    project, where every round finds it (``SelectConfig.pretrain_epochs = 0`` uses a
    project's encoder); ``NAME@scratch`` arms never get it.
    """
    from cryoal.active import Project
    from cryoal.active.loop import SelectConfig
    from cryoal.active.loop import run as loop_run
    from cryoal.io import VolumePool

    _, arm, seed = key
    strategy, scratch = split_arm(arm)
    pool = VolumePool.from_stack(pool_split.stack)
    ids = pool_split.ids
    oracle = benchmark_oracle(ids, pool_split.labels, seed)
    cold = config.initial_from == "cold-start"
    select_cfg = SelectConfig(
        strategy=strategy,
        budget=config.budget,
        seed=seed,
        cold_start=cold_start_of(strategy) if cold else "random",
        arch=config.model,
        arch_kwargs=dict(config.model_kwargs),
        epochs=config.epochs,
        train_batch_size=config.batch_size,
        lr=config.lr,
        device=str(device),
        gallery_size=0,
        progress=False,
    )
    counts, picks = config.label_counts(), config.pick_sizes()
    with Project(project_dir) as project:
        if encoder is not None and not scratch:
            target = project.layout.encoder
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(target) as tmp:
                    shutil.copyfile(encoder, tmp)
        if not project.label_map() and not cold:
            chosen = initial_indices(pool_split.labels, counts[0], seed)
            label_initial(project, pool, oracle, [ids[i] for i in chosen])

        def one_round(done: list[Any], trained: list[Any]) -> None:
            # a project without labels (cold-start) first picks the initial set
            budget = counts[0] if not done and cold else picks[len(trained)]
            loop_run(project, oracle, strategy, 1, budget, pool=pool, config=select_cfg)

        def metrics(model: torch.nn.Module, info: Any) -> dict[str, float]:
            names = info.class_names or []
            return classifier_metrics(model, names, test_x, test_y, config.classes, device)

        rounds = run_rounds(project, len(counts), one_round)
        return block_rows(project, key, rounds, metrics, device)


#: Columns of ``balance.csv``: the class make-up of each evaluated labelled set.
BALANCE_COLUMNS: tuple[str, ...] = (
    "snr",
    "strategy",
    "seed",
    "n_labels",
    "classes_seen",
    "min_share",
    "max_share",
    "class_entropy",
)


def label_balance(labels: Sequence[str], classes: Sequence[str]) -> dict[str, float]:
    """How evenly a labelled set covers the classes.

    Parameters
    ----------
    labels
        The class of every labelled item.
    classes
        Every class of the benchmark (``C`` of them).

    Returns
    -------
    dict
        ``classes_seen`` (classes with ≥ 1 label), ``min_share`` and ``max_share`` (the
        smallest and largest class's fraction of the labels; ideal ``1/C`` both),
        ``class_entropy`` (entropy of the class fractions divided by ``log C``: 1 for a
        balanced set, 0 for a single class).
    """
    per_class = Counter(labels)
    counts = np.array([per_class[c] for c in classes], dtype=np.float64)
    total = counts.sum()
    if total == 0:
        return {"classes_seen": 0, "min_share": 0.0, "max_share": 0.0, "class_entropy": 0.0}
    share = counts / total
    nz = share[share > 0]
    entropy = float(-(nz * np.log(nz)).sum() / math.log(len(classes))) if len(classes) > 1 else 1.0
    return {
        "classes_seen": int((counts > 0).sum()),
        "min_share": float(share.min()),
        "max_share": float(share.max()),
        "class_entropy": entropy,
    }


def _balance_rows(
    config: NoiseBenchmarkConfig, project_dir: Path, snr: float, arm: str, seed: int
) -> list[dict[str, Any]]:
    """The class balance of every evaluated labelled set of one run, from its project."""
    from cryoal.active import Project

    if not (project_dir / "project.sqlite").exists():
        return []
    rows = []
    with Project(project_dir) as project:
        for rnd in trained_rounds(finished_rounds(project))[: len(config.label_counts())]:
            labels = list(project.label_map(as_of_seq=rnd.label_seq).values())
            rows.append(
                {
                    "snr": snr,
                    "strategy": arm,
                    "seed": seed,
                    "n_labels": len(labels),
                    **label_balance(labels, config.classes),
                }
            )
    return rows


def _prepare_encoder(
    config: NoiseBenchmarkConfig,
    data_dir: Path,
    snr: float,
    pool_split: _Split,
    device: torch.device,
) -> Path | None:
    """The SNR's pool-pretrained encoder (trained once, cached beside its data), or None."""
    if config.pretrain_epochs == 0:
        return None
    from cryoal.active import ProjectLayout
    from cryoal.io import VolumePool
    from cryoal.pretrain import PretrainConfig, cached_encoder

    pool = VolumePool.from_stack(pool_split.stack)
    logger.info(
        "pretraining the SNR %s encoder (%d epochs) or reusing it",
        format_snr(snr),
        config.pretrain_epochs,
    )
    return cached_encoder(
        ProjectLayout(data_dir / snr_dir_name(snr)).encoder,  # laid out like a project
        pool,
        config.model,
        (1, config.box, config.box, config.box),
        PretrainConfig(epochs=config.pretrain_epochs, seed=config.data_seed),
        arch_kwargs=config.model_kwargs,
        device=device,
        progress=False,
    )


def _robustness_block(
    config: NoiseBenchmarkConfig,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    tests: dict[float, tuple[torch.Tensor, torch.Tensor]],
    train_snr: float,
    seed: int,
    device: torch.device,
) -> list[dict[str, Any]]:
    """Train on the whole labelled pool at ``train_snr``; evaluate on every SNR's test set."""
    from torch.utils.data import TensorDataset

    from cryoal import models
    from cryoal.train import TrainConfig, fit

    torch.manual_seed(seed)
    model = models.create(
        config.model, len(config.classes), (1, *train_x.shape[-3:]), **config.model_kwargs
    )
    fit(
        model,
        TensorDataset(train_x, train_y),
        config=TrainConfig(
            epochs=config.robustness_epochs,
            batch_size=config.batch_size,
            lr=config.lr,
            balanced=True,
            seed=seed,
            device=str(device),
            progress=False,
        ),
    )
    rows = []
    for test_snr, (x, y) in tests.items():
        m = classifier_metrics(model, list(config.classes), x, y, config.classes, device)
        rows.append({"train_snr": train_snr, "test_snr": test_snr, "seed": seed, **m})
    return rows


# ---------------------------------------------------------------------- the suite
@dataclasses.dataclass
class _SnrData:
    """One SNR's simulated pool (on disk), its test set in memory, its encoder (lazy)."""

    pool: _Split
    test_x: torch.Tensor
    test_y: torch.Tensor
    encoder: Path | None = None
    encoder_ready: bool = False


class _Subtomograms(Suite):
    """Subtomogram classification: project-backed active loops, robustness, balance."""

    config: NoiseBenchmarkConfig

    def identity_fields(self) -> tuple[str, ...]:
        """The data and run fields (robustness options may change: a run extends)."""
        return _DATA_FIELDS + _RUN_FIELDS

    def record(self) -> dict[str, Any]:
        """The manifest's image-formation physics (a change refuses to resume)."""
        return {"physics": manifest_physics(self.config.manifest)}

    def data(self, out: Path, snr: float) -> _SnrData:
        """Simulate (or reuse from ``OUT/data``) the pool and test set of ``snr``."""
        pool, test = _prepare_data(self.config, out / "data", snr, self.device)
        index = {c: i for i, c in enumerate(self.config.classes)}
        y = torch.as_tensor([index[c] for c in test.labels], dtype=torch.long)
        return _SnrData(pool, _load_tensor(test), y)

    def run_block(self, out: Path, key: BlockKey, data: _SnrData) -> list[dict[str, Any]]:
        """Run (or resume) the block's active loop in its project; score each round."""
        snr = key[0]
        if not data.encoder_ready:  # pretrained once per SNR, only where a run needs it
            data.encoder = _prepare_encoder(self.config, out / "data", snr, data.pool, self.device)
            data.encoder_ready = True
        return _run_block(
            self.config,
            block_dir(out, key),
            data.pool,
            data.test_x,
            data.test_y,
            key,
            self.device,
            data.encoder,
        )

    def block_recorded(self, out: Path, key: BlockKey) -> None:
        """Delete the block's checkpoints unless ``keep_models``."""
        if not self.config.keep_models:
            drop_checkpoints(out, key)

    def extras(self) -> list[Extra]:
        """The cross-SNR robustness matrix (when ``robustness``)."""
        config = self.config
        blocks = (
            [(snr, seed) for snr in config.snrs for seed in config.seeds[: config.robustness_seeds]]
            if config.robustness
            else []
        )
        index = {c: i for i, c in enumerate(config.classes)}

        def run(key: tuple[Any, ...], data_of: Callable[[float], Any]) -> list[dict[str, Any]]:
            snr, seed = key
            tests = {s: (data_of(s).test_x, data_of(s).test_y) for s in config.snrs}
            pool = data_of(snr).pool
            train_y = torch.as_tensor([index[c] for c in pool.labels], dtype=torch.long)
            return _robustness_block(
                config, _load_tensor(pool), train_y, tests, snr, seed, self.device
            )

        def keep(table: pd.DataFrame) -> pd.DataFrame:
            wanted = set(blocks)
            rows = [
                (float(a), int(b)) in wanted and float(c) in config.snrs
                for a, b, c in table[["train_snr", "seed", "test_snr"]].itertuples(index=False)
            ]
            return table[np.asarray(rows, dtype=bool)].reset_index(drop=True)

        return [
            Extra(
                name="robustness",
                columns=ROBUSTNESS_TABLE_COLUMNS,
                key_columns=("train_snr", "seed"),
                blocks=blocks,
                run=run,
                keep=keep,
                label=lambda key: f"robustness: train SNR {format_snr(key[0])} seed {key[1]}",
            )
        ]

    def report_parts(self, out: Path, blocks: Sequence[BlockKey]) -> dict[str, Any]:
        """The class balance of every evaluated labelled set; ``random@scratch`` baselines."""
        balance = pd.DataFrame(
            [
                row
                for key in blocks
                for row in _balance_rows(self.config, block_dir(out, key), *key)
            ],
            columns=list(BALANCE_COLUMNS),
        )
        scratch = [a for a in self.config.strategies if split_arm(a) == ("random", True)]
        return {"balance": balance, "extra_baselines": scratch}


#: The engine (:func:`cryoal.benchmark.engine.run`), here as before for every task.
run = engine_run

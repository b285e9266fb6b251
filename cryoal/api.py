"""The notebook API: a handful of functions that cover the whole workflow.

>>> import cryoal as ca
>>> pool = ca.simulate("demo")                          # or ca.open_pool("subtomos/", labels="labels.star")
>>> seed = pool.subset(range(16))                       # a few labelled volumes to start from
>>> trained = ca.train(seed, epochs=10)                 # a classifier (+ its history, metrics)
>>> picks = ca.select(trained, pool, budget=12)         # the volumes worth labelling next
>>> project = ca.Project("my-project")                  # state on disk, labels, rounds
>>> ca.label_widget(project, pool)                      # label the current round in Jupyter

Every function takes explicit seeds and devices, returns plain cryoal objects (a
:class:`~cryoal.io.VolumePool`, a :class:`TrainedModel`, a
:class:`~cryoal.acquisition.Selection`) that render as rich HTML in Jupyter, and raises
the typed errors of :mod:`cryoal.errors`. Volumes are z-scored one by one before they
reach a model (``normalization="zscore"`` in checkpoints), here as in the CLI.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryoal.errors import ConfigError, InvalidLabelsError

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from torch import nn

    from cryoal.acquisition import Selection
    from cryoal.active.widgets import LabelWidget
    from cryoal.io import VolumePool
    from cryoal.simulate import SimulatedCopickProject
    from cryoal.train import History

__all__ = [
    "TrainedModel",
    "label_widget",
    "open_pool",
    "select",
    "simulate",
    "simulate_copick",
    "train",
]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- data
def open_pool(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    labels: str | os.PathLike[str] | pd.DataFrame | None = None,
    pattern: str | Sequence[str] = "*.mrc",
    dataset: str = "volumes",
) -> VolumePool:
    """Open subtomograms as a lazy :class:`~cryoal.io.VolumePool`, optionally with labels.

    Parameters
    ----------
    source
        A folder of MRC files (searched recursively with ``pattern``), an MRC stack
        (``.mrcs``), one MRC file, an HDF5 pool, or a list of MRC files.
    labels
        Labels to join on the pool's ids: a CSV (``id,label``) or RELION STAR file
        (``_rlnImageName``, ``_cryoalLabel``), or a DataFrame with ``id`` and ``label``.
    pattern
        File pattern(s) inside a folder (e.g. ``("*.mrc", "*.rec")``).
    dataset
        Dataset name inside an HDF5 pool.

    Returns
    -------
    VolumePool
        Items load on access as float32 tensors `(1, D, H, W)`; ids are paths relative to
        the folder (or ``stack.mrcs#index``).

    Raises
    ------
    InvalidVolumeError
        Missing path, unreadable or inconsistent volumes.
    InvalidLabelsError
        The labels name ids that are not in the pool, or are malformed.
    """
    from cryoal.io import VolumePool, is_hdf5_file

    if isinstance(source, (list, tuple)):
        pool = VolumePool.from_files([Path(p) for p in source])
    else:
        path = Path(source)  # type: ignore[arg-type]
        if path.is_file() and is_hdf5_file(path):
            pool = VolumePool.from_hdf5(path, dataset=dataset)
        else:
            pool = VolumePool.from_path(path, pattern)
    return pool if labels is None else pool.with_labels(labels)


def _built_here(root: Path, text: str) -> bool:
    manifest = root / "manifest.yaml"
    try:
        return manifest.read_text(encoding="utf-8") == text and (root / "labels.csv").is_file()
    except OSError:
        return False


def simulate(
    source: str | os.PathLike[str] | Sequence[str] = "demo",
    out: str | os.PathLike[str] | None = None,
    *,
    split: str = "pool",
    snr: float | None = None,
    seed: int | None = None,
    device: str = "cpu",
    progress: bool = False,
    **params: Any,
) -> VolumePool:
    """Simulate labelled subtomograms of real structures and open them as a pool.

    Parameters
    ----------
    source
        A bundled manifest name (``"demo"``, ``"snr-benchmark"``; see
        :func:`cryoal.manifests.list_manifests`), a manifest YAML file, or a list of
        bundled structure names (``["6ZU5", "7PBL"]``) simulated with ``params``.
    out
        Folder to write into (``volumes/*.mrc``, ``labels.csv``, ``labels.star``,
        ``metadata.csv``). A manifest already built there is reused, not rebuilt. Default
        for a manifest: the cryoal cache (``$CRYOAL_CACHE``, else ``~/.cache/cryoal``).
        Required for a list of structures.
    split
        ``"pool"`` or ``"test"`` (the held-out test split, when the manifest has one).
    snr
        Which level to open when the manifest lists several SNRs.
    seed
        Overrides the manifest's seed (structures: default 0). Same seed, same volumes.
    device
        Torch device for the simulation (``"cpu"``, ``"cuda"``).
    progress
        Show progress bars.
    **params
        With a list of structures: options of
        :func:`cryoal.simulate.simulate_subtomograms` (``n_per_class``, ``box``,
        ``voxel_size`` in Å, ``snr``, ``tilt_range`` in degrees, ``defocus`` in µm, ...).

    Returns
    -------
    VolumePool
        The simulated volumes with their ground-truth labels attached
        (``pool.labels``, ``pool.class_names``).

    Raises
    ------
    ManifestError
        Unknown manifest name or invalid manifest.
    ConfigError
        Bad ``split``/``snr``, ``out`` missing for a list of structures, bad physics.
    """
    from cryoal.io import VolumePool

    if split not in ("pool", "test"):
        raise ConfigError(f"split must be 'pool' or 'test', got {split!r}")
    if isinstance(source, (list, tuple)):
        root = _simulate_structures(list(source), out, split, seed, device, progress, params)
    else:
        if params:
            raise ConfigError(
                f"simulate({str(source)!r}) builds a manifest; options {', '.join(sorted(params))} "
                "belong in the manifest YAML (or pass a list of structure names)"
            )
        root = _simulate_manifest(str(source), out, split, snr, seed, device, progress)
    return VolumePool.from_directory(root / "volumes").with_labels(root / "labels.csv")


def simulate_copick(
    out: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = False,
    **params: Any,
) -> SimulatedCopickProject:
    """Simulate a small copick project with known particles (``cryoal simulate tomo-copick``).

    Parameters
    ----------
    out
        Project folder. A project built there with the same settings is reused, not
        rebuilt; another one is replaced. Default: the cryoal cache (``$CRYOAL_CACHE``,
        else ``~/.cache/cryoal``), one folder per settings.
    seed
        Same seed, same tomograms and picks.
    device
        Torch device for the simulation.
    progress
        Show a progress bar.
    **params
        Options of :func:`cryoal.simulate.simulate_copick_project` (``n_tomograms``,
        ``shape`` in voxels, ``voxel_size`` in Å, ``n_per_class``, ``snr``, ``relion``,
        ``tomo_type``, ...).

    Returns
    -------
    SimulatedCopickProject
        Paths (``config`` for ``copick.from_file``), runs, objects and the true particles.

    Raises
    ------
    ConfigError
        A bad option or physics parameter.
    """
    import hashlib
    import inspect
    import json

    from cryoal.simulate import load_simulated_copick, simulate_copick_project

    allowed = set(inspect.signature(simulate_copick_project).parameters) - {
        "out",
        "seed",
        "device",
        "progress",
        "overwrite",
    }
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ConfigError(
            f"simulate_copick: unknown option(s) {', '.join(unknown)}; "
            f"choose from {', '.join(sorted(allowed))}"
        )
    key = json.dumps({"seed": seed, **params}, sort_keys=True, default=str)
    if out is None:
        from cryoal.active.demo import cache_dir

        root = cache_dir() / f"copick-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    else:
        root = Path(out)
    stamp = root / ".cryoal-simulate-copick"
    try:
        reuse = stamp.read_text(encoding="utf-8") == key
    except OSError:
        reuse = False
    if reuse:
        return load_simulated_copick(root)
    logger.info("simulating a copick project into %s", root)
    project = simulate_copick_project(
        root, seed=seed, device=device, progress=progress, overwrite=True, **params
    )
    from cryoal._atomic import atomic_write_text

    atomic_write_text(stamp, key)
    return project


def _simulate_manifest(
    source: str,
    out: str | os.PathLike[str] | None,
    split: str,
    snr: float | None,
    seed: int | None,
    device: str,
    progress: bool,
) -> Path:
    from cryoal.manifests import build, format_snr, load_manifest

    m = load_manifest(source)
    if m.kind != "subtomograms":
        raise ConfigError(
            f"manifest {m.name!r} is of kind {m.kind!r}; ca.simulate opens subtomogram pools "
            "(use cryoal.manifests.build for tomograms)"
        )
    if out is None and seed is None:
        from cryoal.active.demo import demo_pool

        root = demo_pool(manifest=source, progress=progress).root
    else:
        if out is None:
            import hashlib

            from cryoal.active.demo import cache_dir

            digest = hashlib.sha256(m.text.encode("utf-8")).hexdigest()[:12]
            root = cache_dir() / f"{m.name}-{digest}-seed{seed}"
        else:
            root = Path(out)
        spec_seed = m.spec["seed"] if seed is None else seed
        record = root / "config.json"
        same_seed = True
        if record.is_file():
            import json

            same_seed = json.loads(record.read_text(encoding="utf-8")).get("seed") == spec_seed
        if not (_built_here(root, m.text) and same_seed):
            logger.info("simulating %s into %s", m.name, root)
            build(m, root, seed=seed, device=device, progress=progress)
    levels = m.spec["snr"]
    if isinstance(levels, list):
        if snr is None:
            raise ConfigError(
                f"manifest {m.name!r} simulates several SNRs ({', '.join(map(format_snr, levels))}); "
                "choose one with snr=..."
            )
        if float(snr) not in [float(v) for v in levels]:
            raise ConfigError(
                f"snr {snr:g} is not one of manifest {m.name!r}'s levels "
                f"({', '.join(map(format_snr, levels))})"
            )
        root = root / f"snr-{format_snr(float(snr))}"
    if split == "test":
        if m.spec.get("test") is None:
            raise ConfigError(f"manifest {m.name!r} has no test split; use split='pool'")
        root = root / "test"
    return root


def _simulate_structures(
    structures: list[str],
    out: str | os.PathLike[str] | None,
    split: str,
    seed: int | None,
    device: str,
    progress: bool,
    params: dict[str, Any],
) -> Path:
    from cryoal.simulate import simulate_subtomograms, write_simulated

    if out is None:
        raise ConfigError("simulate(list of structures, ...) needs out=FOLDER to write the volumes")
    if split != "pool":
        raise ConfigError(
            "split='test' needs a manifest; for a test set simulate again with another seed"
        )
    n_per_class = params.pop("n_per_class", 24)
    sim = simulate_subtomograms(
        structures,
        n_per_class,
        seed=0 if seed is None else seed,
        device=device,
        progress=progress,
        **params,
    )
    root = Path(out)
    write_simulated(root, sim, progress=progress)
    return root


# ---------------------------------------------------------------------- models
@dataclasses.dataclass
class TrainedModel:
    """A classifier with what it needs to be used: class names, voxel size, history.

    Attributes
    ----------
    model
        The network (eval mode); ``model(x)`` gives logits `(B, C)` for z-scored
        volumes `(B, 1, D, H, W)`.
    class_names
        Name of each output index.
    voxel_size
        Voxel size of the training volumes, Å.
    history
        Per-epoch losses and accuracies (:class:`cryoal.train.History`), or ``None`` for
        a loaded checkpoint.
    metrics
        Accuracy, balanced accuracy, macro-F1, per-class recall on the validation split
        (or the training set without one; ``metrics["split"]`` says which).
    checkpoint
        Where the model was saved, if it was.
    labelled_ids
        Ids of the labelled volumes it was given (training and validation split): what
        :func:`select` excludes by default. ``None`` for a loaded checkpoint.
    """

    model: nn.Module
    class_names: list[str]
    voxel_size: float
    history: History | None = None
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    checkpoint: Path | None = None
    labelled_ids: list[str] | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str | None = None) -> TrainedModel:
        """Load a checkpoint written by :meth:`save`, ``cryoal train`` or a project round."""
        from cryoal.models import load_checkpoint

        model, info = load_checkpoint(path, device=device)
        if not info.class_names:
            raise ConfigError(f"{path}: the checkpoint has no class names; retrain with cryoal")
        return cls(
            model,
            list(info.class_names),
            float(info.voxel_size or 0.0),
            None,
            dict(info.metrics),
            Path(path),
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a self-describing checkpoint (atomically); returns ``path``."""
        from cryoal.models import save_checkpoint

        out = save_checkpoint(
            path,
            self.model,  # type: ignore[arg-type]
            class_names=self.class_names,
            voxel_size=self.voxel_size,
            normalization="zscore",
            metrics=self.metrics,
        )
        self.checkpoint = Path(out)
        return self.checkpoint

    def predict(
        self, pool: VolumePool, *, batch_size: int = 32, device: str | None = None
    ) -> pd.DataFrame:
        """Predicted class and class probabilities for every volume of ``pool``.

        Returns
        -------
        pandas.DataFrame
            Columns ``id``, ``predicted``, ``confidence`` and one ``p_<class>`` per class,
            one row per volume in pool order.
        """
        import pandas as pd

        from cryoal.train import predict
        from cryoal.transforms import normalize

        probs = predict(self.model, pool, batch_size=batch_size, device=device, transform=normalize)
        best = probs.argmax(1)
        table = pd.DataFrame(
            {
                "id": list(pool.ids),
                "predicted": [self.class_names[int(j)] for j in best.tolist()],
                "confidence": probs.max(1).values.numpy(),
            }
        )
        for j, name in enumerate(self.class_names):
            table[f"p_{name}"] = probs[:, j].numpy()
        return table

    def __repr__(self) -> str:
        arch = getattr(getattr(self.model, "arch_spec", None), "name", type(self.model).__name__)
        acc = self.metrics.get("accuracy")
        shown = (
            f", {self.metrics.get('split', 'validation')} accuracy {acc:.3f}"
            if acc is not None
            else ""
        )
        return f"TrainedModel({arch}, classes={self.class_names}{shown})"


def train(
    pool: VolumePool,
    *,
    model: str = "dsrf3d",
    epochs: int = 20,
    batch_size: int = 16,
    lr: float = 3e-3,
    val_fraction: float = 0.2,
    balanced: bool = True,
    seed: int = 0,
    device: str = "auto",
    out: str | os.PathLike[str] | None = None,
    progress: bool = False,
    **model_kwargs: Any,
) -> TrainedModel:
    """Train a classifier on the labelled volumes of ``pool``.

    Parameters
    ----------
    pool
        A pool with labels (:func:`open_pool` with ``labels=``, or
        :meth:`VolumePool.with_labels`); unlabelled volumes are ignored.
    model
        Architecture from :func:`cryoal.models.available` (``dsrf3d``, ``rb3d``, ``cb3d``...).
    epochs, batch_size, lr, balanced
        Training options (AdamW, cosine schedule; class-balanced batches by default).
    val_fraction
        Share of each class held out for validation; the best epoch's weights are kept.
        ``0`` trains on everything (metrics are then on the training set).
    seed
        Fixes initialisation, split and batch order.
    device
        ``"auto"`` (GPU when there is one), ``"cpu"``, ``"cuda"``.
    out
        Also save the checkpoint here.
    progress
        Show a progress bar.
    **model_kwargs
        Architecture options (e.g. ``width=16, fc_units=256`` for a small ``dsrf3d``).

    Returns
    -------
    TrainedModel

    Raises
    ------
    InvalidLabelsError
        Fewer than two labelled classes.
    ConfigError
        Unknown model or bad options.
    """
    import torch
    from torch.utils.data import Subset

    from cryoal.models import create, describe
    from cryoal.runtime import resolve_device
    from cryoal.train import TrainConfig, evaluate, fit, stratified_split
    from cryoal.transforms import normalize

    describe(model)  # unknown name: fail before reading any volume
    labelled_idx = pool.labelled_indices()
    classes: list[str] = sorted({lab for lab in pool.labels if lab is not None})
    if len(classes) < 2:
        raise InvalidLabelsError(
            f"training needs labelled volumes of at least two classes; the pool has "
            f"{len(labelled_idx)} label(s) of {len(classes)} class(es) "
            f"({', '.join(classes) or 'none'}); attach labels with open_pool(..., labels=...)"
        )
    labelled = pool.subset(labelled_idx)
    dev = resolve_device(device)
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        balanced=balanced,
        seed=seed,
        device=str(dev),
        progress=progress,
    )
    data = labelled.dataset(transform=normalize, class_names=classes)
    train_idx, val_idx = stratified_split(data.targets, val_fraction, seed=seed)
    train_ds = Subset(data, train_idx.tolist())
    val_ds = Subset(data, val_idx.tolist()) if val_idx.numel() else None
    torch.manual_seed(seed)
    net = create(model, len(classes), (1, *labelled.box), **model_kwargs)
    history = fit(net, train_ds, val_ds, config)
    metrics = evaluate(net, val_ds if val_ds is not None else train_ds, class_names=classes)
    metrics["split"] = "validation" if val_ds is not None else "training"
    result = TrainedModel(
        net, classes, float(labelled.voxel_size), history, metrics, labelled_ids=list(labelled.ids)
    )
    if out is not None:
        result.save(out)
    return result


def _as_model(model: Any, device: str) -> tuple[nn.Module, Any]:
    from torch import nn

    if isinstance(model, TrainedModel):
        return model.model, model
    if isinstance(model, nn.Module):
        return model, None
    if isinstance(model, (str, os.PathLike)):
        loaded = TrainedModel.load(model, device=None if device == "auto" else device)
        return loaded.model, loaded
    raise ConfigError(
        f"model must be a TrainedModel, a torch module or a checkpoint path, not {type(model).__name__}"
    )


def select(
    model: TrainedModel | nn.Module | str | os.PathLike[str],
    pool: VolumePool,
    budget: int = 24,
    *,
    strategy: str = "expected-gradnorm",
    labelled: Sequence[int] | torch.Tensor | None = None,
    seed: int = 0,
    device: str = "auto",
    batch_size: int = 32,
    progress: bool = False,
    **strategy_kwargs: Any,
) -> Selection:
    """Pick the ``budget`` unlabelled volumes of ``pool`` most worth labelling.

    Parameters
    ----------
    model
        A :class:`TrainedModel`, a classifier module, or a checkpoint path.
    pool
        The volumes to choose from.
    budget
        Number of picks.
    strategy
        Acquisition strategy (:func:`cryoal.acquisition.available`): ``expected-gradnorm``
        (default), ``entropy-gradnorm``, ``entropy``, ``margin``, ``bald``, ``coreset``,
        ``badge``, ``random``...
    labelled
        Pool indices never to pick. Default: the volumes a :class:`TrainedModel` was
        given labels for (so a pool with ground truth attached still has candidates),
        else the pool's labelled volumes.
    seed
        Seeds the strategy's random draws (random, coreset start, BADGE, BALD dropout).
    device, batch_size
        Where and in what batches the pool is scored.
    progress
        Show a progress bar.
    **strategy_kwargs
        Strategy options (e.g. ``variant="reference"``, ``top_k=3``).

    Returns
    -------
    Selection
        ``indices`` (pool positions, best first), ``scores``, ``strategy``; shows as a
        ranked table in Jupyter. ``[pool.ids[i] for i in sel.indices]`` gives the ids.

    Raises
    ------
    PoolExhaustedError
        ``budget`` exceeds the unlabelled volumes.
    CheckpointError
        The model was trained on another box or voxel size.
    ConfigError
        Unknown strategy or bad options.
    """
    import torch

    from cryoal import acquisition
    from cryoal.runtime import resolve_device
    from cryoal.transforms import normalize

    dev = resolve_device(device)
    net, info = _as_model(model, str(dev))
    spec = getattr(net, "arch_spec", None)
    if spec is not None and tuple(spec.in_shape[1:]) != tuple(pool.box):
        from cryoal.errors import CheckpointError

        raise CheckpointError(
            f"the model was built for boxes of {'×'.join(map(str, spec.in_shape[1:]))} voxels "
            f"but the pool's volumes are {'×'.join(map(str, pool.box))}; use a model trained "
            "on this pool's box"
        )
    if labelled is not None:
        exclude: Sequence[int] | torch.Tensor = labelled
    elif info is not None and info.labelled_ids is not None:
        position = {vid: i for i, vid in enumerate(pool.ids)}
        exclude = [position[v] for v in info.labelled_ids if v in position]
    else:
        exclude = pool.labelled_indices()
    picker = acquisition.get(
        strategy,
        device=dev,
        batch_size=batch_size,
        transform=normalize,
        progress=progress,
        seed=seed,
        **strategy_kwargs,
    )
    generator = torch.Generator().manual_seed(seed)
    return picker.select(net, pool, budget, labelled=exclude, generator=generator)


# ---------------------------------------------------------------------- labelling
def label_widget(
    project: Any,
    pool: VolumePool | None = None,
    *,
    round: int | None = None,
    classes: Sequence[str] | None = None,
    annotator: str | None = None,
) -> LabelWidget:
    """The Jupyter labelling widget for a round's picks (default: the latest round).

    See :class:`cryoal.active.widgets.LabelWidget`. Each click writes the label to the
    project at once (``source="expert"``), so nothing is lost if the kernel dies.
    """
    from cryoal.active.widgets import LabelWidget

    return LabelWidget(project, pool, round=round, classes=classes, annotator=annotator)

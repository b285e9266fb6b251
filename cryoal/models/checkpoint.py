"""Self-describing model checkpoints.

A checkpoint is a ``torch.save`` of a dict of plain values and tensors only, so it loads
with ``torch.load(weights_only=True)`` (no pickled code runs). It records everything
needed to score a pool from the file alone::

    {"format": "cryoal-checkpoint", "format_version": 1,
     "arch": {"name", "num_classes", "in_shape", "kwargs"},
     "state_dict": {...},
     "meta": {"class_names", "voxel_size", "normalization", "train_config", "metrics",
              "cryoal_version", "created", "extra"}}
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import torch

from cryoal._atomic import atomic_path
from cryoal._version import __version__
from cryoal.errors import CheckpointError
from cryoal.models._base import ArchSpec, Classifier

__all__ = [
    "ENCODER_KIND",
    "CheckpointInfo",
    "check_compatible",
    "load_checkpoint",
    "load_encoder",
    "save_checkpoint",
]

FORMAT = "cryoal-checkpoint"
FORMAT_VERSION = 1
#: sanity bounds on what a checkpoint may claim (far above any real model)
_MAX_CLASSES = 100_000
_MAX_EXTENT = 4096
_MAX_CHANNELS = 64
#: ``extra["kind"]`` of a pretrained encoder's checkpoint (:func:`cryoal.pretrain.save_encoder`)
ENCODER_KIND = "encoder"


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about its model and the data it was trained on.

    Attributes
    ----------
    arch
        Architecture name, number of classes, input shape `(C, *spatial)` and builder options.
    class_names
        Class name of each output index (the label ↔ index map), or ``None``.
    voxel_size
        Voxel size of the training data in Å, or ``None`` when unknown.
    normalization
        How inputs were normalised (``"zscore"``: per volume, zero mean, unit std).
    train_config
        The training configuration as plain values.
    metrics
        Validation/training metrics recorded at save time.
    cryoal_version, created
        Version that wrote the file and UTC time (ISO 8601).
    extra
        Any other metadata passed to :func:`save_checkpoint`.
    path
        File the checkpoint was read from (``None`` before saving).
    """

    arch: ArchSpec
    class_names: list[str] | None = None
    voxel_size: float | None = None
    normalization: str = "zscore"
    train_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    cryoal_version: str = __version__
    created: str = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    path: Path | None = None

    @property
    def box(self) -> tuple[int, ...]:
        """Spatial input shape in voxels, e.g. ``(32, 32, 32)``."""
        return self.arch.in_shape[1:]


def _plain(value: Any) -> Any:
    """Convert ``value`` to types ``torch.load(weights_only=True)`` accepts."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist() if value.numel() <= 4096 else value.detach().cpu()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.device):
        return str(value)
    return repr(value)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: Classifier,
    *,
    class_names: Sequence[str] | None = None,
    voxel_size: float | None = None,
    normalization: str = "zscore",
    train_config: Any = None,
    metrics: Mapping[str, Any] | None = None,
    **extra: Any,
) -> Path:
    """Write ``model`` and its metadata to ``path`` atomically.

    Parameters
    ----------
    path
        Target file (conventionally ``*.pt``); parent folders are created.
    model
        A model built by :func:`cryoal.models.create` (it carries ``arch_spec``).
    class_names
        Name of each class index; its length must equal the number of classes.
    voxel_size
        Voxel size of the training volumes in Å.
    normalization
        Input normalisation the model expects (``"zscore"``).
    train_config
        Training configuration (a :class:`cryoal.train.TrainConfig` or a dict);
        stored as plain values (callables become their ``repr``).
    metrics
        Metrics to record (e.g. validation accuracy).
    **extra
        Further plain metadata (seed, data source, round number, ...).

    Returns
    -------
    Path
        The written path.

    Raises
    ------
    CheckpointError
        The model was not built by :func:`cryoal.models.create`, or ``class_names``
        does not match its number of classes.
    """
    spec = getattr(model, "arch_spec", None)
    if not isinstance(spec, ArchSpec):
        raise CheckpointError(
            "cannot save a model that was not built by cryoal.models.create (no arch_spec); "
            "build it with cryoal.models.create(name, num_classes, in_shape)"
        )
    if class_names is not None and len(class_names) != spec.num_classes:
        raise CheckpointError(
            f"class_names has {len(class_names)} entries but the model has {spec.num_classes} "
            f"classes: {list(class_names)}"
        )
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": {
            "name": spec.name,
            "num_classes": spec.num_classes,
            "in_shape": list(spec.in_shape),
            "kwargs": _plain(spec.kwargs),
        },
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": {
            "class_names": None if class_names is None else [str(c) for c in class_names],
            "voxel_size": None if voxel_size is None else float(voxel_size),
            "normalization": str(normalization),
            "train_config": _plain(train_config) if train_config is not None else {},
            "metrics": _plain(dict(metrics or {})),
            "cryoal_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "extra": _plain(extra),
        },
    }
    target = Path(path)
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, truncated pickle, foreign pickled objects ...
        text = str(exc).strip()
        if "weights_only" in text or not text:
            # torch suggests weights_only=False here: never do that for an untrusted file
            reason = "not plain tensors and values: a damaged or foreign file"
        else:
            reason = text.splitlines()[0].split(". ")[0].rstrip(".")[:200]
        raise CheckpointError(
            f"{path}: not a readable cryoal checkpoint ({type(exc).__name__}: {reason}); "
            "the file is corrupt, truncated or was not written by cryoal.save_checkpoint — "
            "re-train or copy it again"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not a cryoal checkpoint (missing format tag {FORMAT!r}); "
            "save models with cryoal.models.save_checkpoint"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} is newer than this cryoal "
            f"({__version__}) reads (≤ {FORMAT_VERSION}); upgrade cryoal"
        )
    for key in ("arch", "state_dict", "meta"):
        if not isinstance(payload.get(key), dict):
            raise CheckpointError(f"{path}: checkpoint is missing its {key!r} section")
    return payload


def load_checkpoint(
    path: str | os.PathLike[str], *, device: str | torch.device | None = None
) -> tuple[Classifier, CheckpointInfo]:
    """Rebuild a model from a checkpoint written by :func:`save_checkpoint`.

    Parameters
    ----------
    path
        Checkpoint file.
    device
        Device to move the model to (default: CPU).

    Returns
    -------
    model, info
        The model in eval mode on ``device``, and its :class:`CheckpointInfo`.

    Raises
    ------
    CheckpointError
        Missing, corrupt or foreign file; unknown architecture; weights that do not fit
        the recorded architecture.
    """
    file = Path(path)
    payload = _read(file)
    spec = _arch_spec(file, payload["arch"])
    model = _build(file, spec, payload["state_dict"])
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(
            f"{file}: weights do not fit architecture {spec.name!r} with in_shape "
            f"{spec.in_shape}: {' '.join(first[:2])[:300]}"
        ) from exc
    info = _info(file, spec, payload["meta"])
    model.eval()
    if device is not None:
        model.to(torch.device(device))
    return model, info


def load_encoder(path: str | os.PathLike[str]) -> tuple[Classifier, CheckpointInfo]:
    """Load a pretrained encoder's checkpoint (:func:`cryoal.pretrain.save_encoder`).

    An encoder is a whole classifier (its head untrained) whose checkpoint records
    ``extra["kind"] == ENCODER_KIND``; the embedding strategies
    (:mod:`cryoal.acquisition`) read its ``features`` and :mod:`cryoal.pretrain`
    initialises round models from it.

    Returns
    -------
    model, info
        The classifier holding the encoder (eval mode, CPU) and its :class:`CheckpointInfo`.

    Raises
    ------
    CheckpointError
        Missing/corrupt file, or a checkpoint that is not an encoder.
    """
    model, info = load_checkpoint(path)
    if info.extra.get("kind") != ENCODER_KIND:
        raise CheckpointError(
            f"{path}: not a pretrained encoder (a classifier checkpoint); make one with "
            "`cryoal pretrain --volumes DIR --out encoder.pt`"
        )
    return model, info


def check_compatible(
    info: CheckpointInfo,
    box: Sequence[int],
    voxel_size: float | None = None,
    *,
    voxel_size_rtol: float | None = 0.01,
) -> None:
    """Check that a pool's volumes fit a checkpoint's model.

    Parameters
    ----------
    info
        From :func:`load_checkpoint`.
    box
        Spatial shape of the pool's volumes in voxels, `(D, H, W)` (or `(H, W)` for 2D).
    voxel_size
        Pool voxel size in Å; ``None`` skips the check, as does a checkpoint without one.
    voxel_size_rtol
        Allowed relative difference of voxel sizes; ``None`` skips the check.

    Raises
    ------
    CheckpointError
        The box or the voxel size differs from the training data.
    """
    where = info.path if info.path is not None else "checkpoint"
    want = tuple(info.box)
    got = tuple(int(s) for s in box)
    if got != want:
        raise CheckpointError(
            f"{where}: model {info.arch.name!r} was trained on boxes of "
            f"{'×'.join(map(str, want))} voxels but the volumes are {'×'.join(map(str, got))}; "
            "crop/pad or resample them to the training box, or train a new model"
        )
    if voxel_size_rtol is None or voxel_size is None or info.voxel_size is None:
        return
    ref = float(info.voxel_size)
    if not math.isclose(float(voxel_size), ref, rel_tol=voxel_size_rtol):
        raise CheckpointError(
            f"{where}: model was trained at {ref:g} Å/voxel but the volumes are "
            f"{float(voxel_size):g} Å/voxel; resample them to {ref:g} Å or train a new model"
        )


def _arch_spec(file: Path, arch: dict[str, Any]) -> ArchSpec:
    """The checked ``arch`` section: known name, 2 ≤ classes, in_shape of positive ints."""
    from cryoal.models.registry import available

    name = arch.get("name")
    if not isinstance(name, str) or name not in available(kind=None):
        raise CheckpointError(
            f"{file}: unknown model architecture {name!r} (this cryoal knows: "
            f"{', '.join(available(kind=None))}); was it written by a newer or patched cryoal?"
        )
    n = arch.get("num_classes")
    if not _is_int(n) or not 2 <= n <= _MAX_CLASSES:
        raise CheckpointError(
            f"{file}: cannot rebuild architecture {name!r}: num_classes = {n!r} is not a "
            f"whole number from 2 to {_MAX_CLASSES}"
        )
    shape = arch.get("in_shape")
    if (
        not isinstance(shape, (list, tuple))
        or len(shape) not in (3, 4)
        or not all(_is_int(s) and s >= 1 for s in shape)
        or shape[0] > _MAX_CHANNELS
        or max(shape[1:]) > _MAX_EXTENT
    ):
        raise CheckpointError(
            f"{file}: cannot rebuild architecture {name!r}: in_shape = {shape!r} is not "
            f"(C, D, H, W) or (C, H, W) with 1 ≤ C ≤ {_MAX_CHANNELS} channels and 1 to "
            f"{_MAX_EXTENT} voxels per side"
        )
    kwargs = arch.get("kwargs") or {}
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise CheckpointError(
            f"{file}: cannot rebuild architecture {name!r}: kwargs = {kwargs!r} is not a "
            "dict of named options"
        )
    return ArchSpec(name=name, num_classes=int(n), in_shape=tuple(shape), kwargs=dict(kwargs))


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _build(file: Path, spec: ArchSpec, state: dict[str, Any]) -> Classifier:
    """Build ``spec`` once its weights are known to fit it.

    The model is first built on the ``meta`` device (no memory), and every stored tensor
    is checked against it (names, shapes, finite values), so a checkpoint claiming a huge
    architecture fails before anything is allocated: the real model is never larger than
    the weights the file holds.
    """
    from cryoal.models.registry import create

    def rebuild() -> Classifier:
        try:
            return create(spec.name, spec.num_classes, spec.in_shape, **spec.kwargs)
        except Exception as exc:  # the options come from the file: any failure is the file's
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise CheckpointError(
                f"{file}: cannot rebuild architecture {spec.name!r} with in_shape "
                f"{spec.in_shape} and options {spec.kwargs!r}: {type(exc).__name__}: {reason}"
            ) from None

    with torch.device("meta"):
        skeleton = rebuild()
    want = skeleton.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(map(str, missing[:3]))}")
        if unexpected:
            parts.append(f"unexpected {', '.join(map(str, unexpected[:3]))}")
        raise CheckpointError(
            f"{file}: weights do not fit architecture {spec.name!r} with in_shape "
            f"{spec.in_shape}: {'; '.join(parts)}"
        )
    for key, ref in want.items():
        value = state[key]
        if not isinstance(value, torch.Tensor) or value.shape != ref.shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise CheckpointError(
                f"{file}: weights do not fit architecture {spec.name!r} with in_shape "
                f"{spec.in_shape}: {key!r} is {got}, the model needs {tuple(ref.shape)}"
            )
        if ref.is_floating_point() != value.is_floating_point() or value.is_complex():
            raise CheckpointError(
                f"{file}: weight {key!r} has dtype {value.dtype}; the model needs {ref.dtype}"
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(
                f"{file}: weight {key!r} holds NaN or infinite values; the model diverged "
                "when it was trained, re-train it"
            )
    del skeleton
    return rebuild()


def _info(file: Path, spec: ArchSpec, meta: dict[str, Any]) -> CheckpointInfo:
    """The checked ``meta`` section as a :class:`CheckpointInfo`."""
    names = meta.get("class_names")
    if names is not None and (
        not isinstance(names, list)
        or len(names) != spec.num_classes
        or not all(isinstance(c, str) for c in names)
    ):
        raise CheckpointError(
            f"{file}: class_names = {str(names)[:100]} is not a list of {spec.num_classes} "
            "names, one per class of the model"
        )
    vs = meta.get("voxel_size")
    if vs is not None and (
        not isinstance(vs, (int, float)) or isinstance(vs, bool) or not math.isfinite(vs) or vs <= 0
    ):
        raise CheckpointError(
            f"{file}: voxel_size = {vs!r} is not a positive number of Å (or None)"
        )
    sections: dict[str, dict[str, Any]] = {}
    for key in ("train_config", "metrics", "extra"):
        value = meta.get(key) or {}
        if not isinstance(value, dict):
            raise CheckpointError(f"{file}: meta {key!r} is {type(value).__name__}, not a dict")
        sections[key] = dict(value)
    return CheckpointInfo(
        arch=spec,
        class_names=None if names is None else list(names),
        voxel_size=None if vs is None else float(vs),
        normalization=str(meta.get("normalization", "zscore")),
        cryoal_version=str(meta.get("cryoal_version", "unknown")),
        created=str(meta.get("created", "")),
        path=file,
        **sections,
    )

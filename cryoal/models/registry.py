"""Model registry: build any classifier by name with one signature.

``create(name, num_classes, in_shape, **kw)`` returns a :class:`Classifier` with
``features(x) -> (B, F)``, ``head: nn.Linear`` and ``forward == head ∘ features``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from cryoal.errors import ConfigError
from cryoal.models._base import ArchSpec, Classifier
from cryoal.models.cnn2d import CNN2D
from cryoal.models.cnn3d import CB3D, DSRF3D, RB3D
from cryoal.models.monai_nets import MonaiClassifier, monai_builders
from cryoal.models.unet import MonaiUNet

__all__ = ["available", "create", "describe", "register"]


@dataclass(frozen=True)
class _Entry:
    build: Callable[..., Classifier]
    dims: int
    summary: str
    kind: str = "classification"


_REGISTRY: dict[str, _Entry] = {}


def register(
    name: str,
    build: Callable[..., Classifier],
    *,
    dims: int,
    summary: str,
    kind: str = "classification",
) -> None:
    """Add a model builder ``build(num_classes, in_shape, **kw) -> Classifier`` under ``name``.

    ``kind`` is ``"classification"`` (logits `(B, K)`) or ``"segmentation"`` (per-voxel
    logits `(B, K, *spatial)`, see :mod:`cryoal.models.unet`).

    Raises
    ------
    ConfigError
        ``name`` is already registered or ``dims`` is not 2 or 3.
    """
    if name in _REGISTRY:
        raise ConfigError(f"model {name!r} is already registered")
    if dims not in (2, 3):
        raise ConfigError(f"model {name!r}: dims must be 2 or 3, got {dims}")
    if kind not in ("classification", "segmentation"):
        raise ConfigError(f"model {name!r}: kind must be classification or segmentation")
    _REGISTRY[name] = _Entry(build, dims, summary, kind)


def available(dims: int | None = None, kind: str | None = "classification") -> list[str]:
    """Registered model names, sorted; only 2D or 3D models when ``dims`` is given.

    ``kind`` filters by what the model outputs: ``"classification"`` (default),
    ``"segmentation"``, or ``None`` for every model.
    """
    return sorted(
        n
        for n, e in _REGISTRY.items()
        if (dims is None or e.dims == dims) and (kind is None or e.kind == kind)
    )


def describe(name: str) -> str:
    """One-line summary of a registered model."""
    return _entry(name).summary


def _entry(name: str) -> _Entry:
    entry = _REGISTRY.get(name)
    if entry is None:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"unknown model {name!r}.{hint} Available: {', '.join(available(kind=None))}"
        )
    return entry


def create(name: str, num_classes: int, in_shape: Sequence[int], **kw: Any) -> Classifier:
    """Build a registered classifier.

    Parameters
    ----------
    name
        Registry name, see :func:`available` (``"dsrf3d"``, ``"rb3d"``, ``"cb3d"``,
        ``"monai-resnet10"``, ``"cnn2d"``, ...).
    num_classes
        Number of classes (≥ 2).
    in_shape
        `(C, D, H, W)` for 3D models, `(C, H, W)` for 2D models, in voxels/pixels,
        e.g. ``(1, 32, 32, 32)``.
    **kw
        Architecture options (``dropout``, ``width``, ...), recorded in checkpoints.

    Returns
    -------
    Classifier
        Model in train mode on the CPU, float32, with ``model.arch_spec`` set.

    Raises
    ------
    ConfigError
        Unknown name (with a "did you mean" hint), wrong number of dimensions,
        box too small, fewer than 2 classes, or an unknown option.
    """
    entry = _entry(name)
    shape = tuple(int(s) for s in in_shape)
    if len(shape) != entry.dims + 1:
        want = "(C, D, H, W)" if entry.dims == 3 else "(C, H, W)"
        raise ConfigError(
            f"model {name!r} is {entry.dims}D and needs in_shape {want}, got {shape}; "
            f"{entry.dims}D models: {', '.join(available(entry.dims, entry.kind))}"
        )
    if int(num_classes) < 2:
        raise ConfigError(f"model {name!r}: num_classes must be at least 2, got {num_classes}")
    try:
        model = entry.build(int(num_classes), shape, **kw)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: bad option ({exc})") from exc
    model.arch_spec = ArchSpec(
        name=name, num_classes=int(num_classes), in_shape=shape, kwargs=dict(kw)
    )
    return model


register(
    "dsrf3d",
    DSRF3D,
    dims=3,
    summary="DSRF3D-v2 (Che et al. 2018): 6 conv3d + 2×FC1024, ~10 M params at 32³",
)
register("rb3d", RB3D, dims=3, summary="small residual 3D net, global pooling, ~0.2 M params")
register("cb3d", CB3D, dims=3, summary="small plain conv-BN 3D net, ~90 k params")
register("cnn2d", CNN2D, dims=2, summary="small plain conv-BN 2D net for images")
for _variant, (_, _min) in monai_builders.items():
    register(
        f"monai-{_variant}",
        partial(MonaiClassifier, _variant),
        dims=3,
        summary=f"MONAI {_variant} (3D, boxes ≥ {_min}) with a linear head",
    )
    register(
        f"monai-{_variant}-2d",
        partial(MonaiClassifier, _variant),
        dims=2,
        summary=f"MONAI {_variant} (2D, images ≥ {_min}) with a linear head",
    )
register(
    "monai-unet",
    MonaiUNet,
    dims=3,
    summary="MONAI UNet (3D segmentation): per-voxel logits (B, K, D, H, W), see models/unet.py",
    kind="segmentation",
)
register(
    "monai-unet-2d",
    MonaiUNet,
    dims=2,
    summary="MONAI UNet (2D segmentation): per-pixel logits (B, K, H, W)",
    kind="segmentation",
)

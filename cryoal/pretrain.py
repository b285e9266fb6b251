"""Self-supervised pretraining of a classifier's encoder on the unlabelled pool.

A structural biologist starting a new dataset has thousands of subtomograms and no
labels. Their appearance alone says a lot: :func:`pretrain_encoder` trains the
``model.features`` encoder with a SimCLR-style contrastive objective (NT-Xent, Chen et
al. 2020) so that two augmented views of one subtomogram embed close together and views
of different subtomograms apart. The views come from the cryo-ET physics of
:mod:`cryoal.transforms`: a uniform random rotation (orientation is a nuisance), a
missing wedge re-imposed in the lab frame after the rotation (tilt range jittered), extra
Gaussian noise at a random SNR, then per-volume z-scoring. Pools of 2D images
``(1, H, W)`` (``cryoal select --task image2d``) get the 2D views of
:func:`augmentation` instead: a random in-plane quarter turn and mirror, noise and
z-scoring, no wedge.

The pretrained encoder is used twice (see :mod:`cryoal.acquisition.typicality`,
:mod:`cryoal.acquisition.diverse` and the active loop):

(a) as the embedding of the unlabelled pool for the cold start (typicality), core-set,
    BADGE and the diversity step of diverse gradnorm;
(b) as the initialisation of each round's classifier (:func:`init_from_encoder`: every
    weight but the linear head).

An encoder is stored as a regular cryoal checkpoint (:func:`cryoal.models.save_checkpoint`,
written atomically) of the classifier it was trained in, with ``extra["kind"] ==
"encoder"``, the pretraining configuration, the loss curve and a cache key;
:func:`load_encoder` (:func:`cryoal.models.load_encoder`, re-exported: the embedding
strategies load encoders without importing this module) reads one back;
:func:`cached_encoder` keeps one at a path the caller names (a project's is
``Project.layout.encoder``) and trains again only when the pool, the architecture or the
configuration changed.

>>> from cryoal import models, pretrain
>>> model = models.create("cb3d", 2, (1, 32, 32, 32))
>>> result = pretrain.pretrain_encoder(model, pool, pretrain.PretrainConfig(epochs=30))
>>> clf = pretrain.init_from_encoder(models.create("cb3d", 10, (1, 32, 32, 32)), result.state)
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, RandomSampler, Subset
from tqdm.auto import tqdm

from cryoal.errors import CheckpointError, ConfigError, EmptyPoolError
from cryoal.models.checkpoint import ENCODER_KIND, load_encoder
from cryoal.runtime import resolve_device
from cryoal.transforms import (
    Compose,
    Normalize,
    RandomFlip,
    RandomMissingWedge,
    RandomNoise,
    RandomRotate,
    Transform,
)

__all__ = [
    "PretrainConfig",
    "PretrainPlan",
    "PretrainResult",
    "augmentation",
    "cached_encoder",
    "encoder_state",
    "init_from_encoder",
    "load_encoder",
    "nt_xent",
    "plan_pretraining",
    "pool_fingerprint",
    "pretrain_encoder",
    "project_encoder",
    "reporting",
    "save_encoder",
]

log = logging.getLogger(__name__)

#: Version of the pretraining recipe; part of the cache key, bump when the recipe changes.
RECIPE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """How :func:`pretrain_encoder` trains.

    Attributes
    ----------
    epochs
        Passes over the pool (each item gives two views per pass).
    batch_size
        Volumes per step; NT-Xent contrasts each view against the ``2·batch_size − 2``
        views of the other volumes of the batch. The incomplete last batch is dropped
        (BatchNorm); a pool smaller than a batch is used as one batch.
    lr, weight_decay
        AdamW peak learning rate (cosine decay to 0 over all steps) and weight decay.
    temperature
        NT-Xent temperature τ (> 0).
    projection_dim
        Output width of the 2-layer MLP projection head used only during pretraining.
    snr_range
        ``(low, high)`` SNR of the extra Gaussian noise of each view,
        var(input)/var(added noise); drawn log-uniformly per view.
    tilt_range, wedge_jitter
        Nominal tilt range (degrees) of the missing wedge re-imposed after the rotation,
        and the jitter of each end (degrees).
    rotate
        Rotate each view by a uniform random rotation (SO(3)).
    max_items
        Pretrain on at most this many pool items (a seeded random subset); ``None``
        uses the whole pool.
    max_steps
        Stop after this many optimiser steps (the cosine schedule spans
        ``min(epochs × steps per epoch, max_steps)`` steps); ``None`` runs every epoch.
        :func:`plan_pretraining` (``--pretrain-epochs auto``) sets it.
    seed
        Seeds the projection head, batch order, dropout and every augmentation draw.
    """

    epochs: int = 50
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    projection_dim: int = 64
    snr_range: tuple[float, float] = (1.0, 10.0)
    tilt_range: tuple[float, float] = (-60.0, 60.0)
    wedge_jitter: float = 5.0
    rotate: bool = True
    max_items: int | None = None
    max_steps: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "snr_range", tuple(float(s) for s in self.snr_range))
        object.__setattr__(self, "tilt_range", tuple(float(t) for t in self.tilt_range))
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            problems.append(
                f"batch_size must be >= 2 (two volumes to contrast), got {self.batch_size}"
            )
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not self.temperature > 0:
            problems.append(f"temperature must be > 0, got {self.temperature}")
        if self.projection_dim < 1:
            problems.append(f"projection_dim must be >= 1, got {self.projection_dim}")
        if len(self.snr_range) != 2 or not 0 < self.snr_range[0] <= self.snr_range[1]:
            problems.append(
                f"snr_range must be (low, high) with 0 < low <= high, got {self.snr_range}"
            )
        if self.max_items is not None and self.max_items < 2:
            problems.append(f"max_items must be >= 2 or None, got {self.max_items}")
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(f"max_steps must be >= 1 or None, got {self.max_steps}")
        if problems:
            raise ConfigError("PretrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able view (tuples as lists).

        ``max_steps`` appears only when set, so the cache key of an encoder trained
        before it existed (:func:`cached_encoder`) stays the same.
        """
        out = {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }
        if out["max_steps"] is None:
            del out["max_steps"]
        return out


@dataclasses.dataclass(frozen=True)
class PretrainResult:
    """What :func:`pretrain_encoder` produced.

    Attributes
    ----------
    state
        Encoder weights: the model's ``state_dict`` without the ``head.*`` entries (CPU).
    losses
        Mean NT-Xent loss of each epoch (nats).
    seconds
        Wall time of the training.
    n_items
        Pool items the encoder was trained on.
    config
        The configuration used.
    path
        Checkpoint written (``None`` when no ``out`` was given).
    """

    state: dict[str, Tensor]
    losses: list[float]
    seconds: float
    n_items: int
    config: PretrainConfig
    path: Path | None = None


#: ``--pretrain-epochs auto``: pools smaller than this are not pretrained (see
#: :func:`plan_pretraining`).
AUTO_MIN_POOL = 200
#: ``auto`` on a CPU: at most this many passes over the pool. The default-select benchmark
#: (docs/benchmarks.md, 16³ boxes, 1,500 volumes) measured 20 passes (920 steps, about
#: 2 min on 2 cores) as enough for the encoder to help every budget, and 2.7 passes
#: (the earlier fixed budget) as leaving it near chance (NT-Xent 4.15 ≈ ln 63).
AUTO_CPU_PASSES = 20
#: ``auto`` on a CPU: the ceiling on the pretraining cost in model GFLOP (forward + backward
#: of both views of every step), which bounds the time on big boxes. 4800 GFLOP is 20
#: passes over 1,500 volumes of 16³ (about 2 min on 2 cores) and 126 steps of cb3d on 32³
#: boxes at batch 32 (about 9 min on 2 cores; docs/acquisition.md has the measurements).
#: The environment variable ``CRYOAL_PRETRAIN_CPU_GFLOP`` overrides it.
AUTO_CPU_GFLOP = 4800.0
AUTO_CPU_GFLOP_ENV = "CRYOAL_PRETRAIN_CPU_GFLOP"
#: ``auto`` on a GPU: at most this many steps.
AUTO_GPU_STEPS = 1500
#: ``auto`` on a GPU never runs more than this many passes over the pool (the low-budget
#: benchmark's 60 epochs).
AUTO_MAX_EPOCHS = 60
#: ``auto`` skips pretraining when its budget allows fewer steps than this.
AUTO_MIN_STEPS = 15

_report: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar(
    "cryoal_pretrain_report", default=None
)


@contextlib.contextmanager
def reporting(report: Callable[[str], None]) -> Iterator[None]:
    """Send the one-line time estimate of every pretraining run in this block to ``report``.

    The CLI wraps a round in ``with reporting(click.echo):`` so that the estimate a
    round's pretraining measures on its first steps (:func:`pretrain_encoder`) is
    printed, without threading a callback through the active-learning loop.
    """
    token = _report.set(report)
    try:
        yield
    finally:
        _report.reset(token)


@dataclasses.dataclass(frozen=True)
class PretrainPlan:
    """What ``--pretrain-epochs auto`` resolves to for one pool (:func:`plan_pretraining`).

    Attributes
    ----------
    epochs, max_steps
        The concrete :class:`PretrainConfig` values (``0, 0``: no pretraining).
    reason
        One line saying why: the budget and the cost per step, or why it is skipped.
    """

    epochs: int
    max_steps: int
    reason: str

    @property
    def pretrains(self) -> bool:
        """Whether the plan trains an encoder."""
        return self.epochs > 0


def step_gflop(
    arch: str,
    in_shape: Sequence[int],
    *,
    batch_size: int = 32,
    arch_kwargs: Mapping[str, Any] | None = None,
) -> float | None:
    """Model GFLOP of one pretraining step: forward + backward (≈ 3× forward) of ``2·batch_size`` views.

    Counted with :class:`torch.utils.flop_counter.FlopCounterMode` on the meta device
    (no memory, no compute; the same number on every machine). ``None`` when the
    architecture cannot be traced on the meta device.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from cryoal import models

    try:
        with torch.device("meta"):
            model = models.create(
                arch, 2, tuple(int(s) for s in in_shape), **dict(arch_kwargs or {})
            )
            x = torch.empty(1, *(int(s) for s in in_shape))
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                model.features(x)  # type: ignore[operator]
    except Exception as exc:  # any tracing failure means "unknown cost"
        log.info("cannot count the FLOPs of %s on the meta device: %s", arch, exc)
        return None
    return 3.0 * counter.get_total_flops() * 2 * batch_size / 1e9


def _cpu_budget() -> float:
    """:data:`AUTO_CPU_GFLOP`, or the positive number in ``$CRYOAL_PRETRAIN_CPU_GFLOP``."""
    raw = os.environ.get(AUTO_CPU_GFLOP_ENV)
    if raw is None or not raw.strip():
        return AUTO_CPU_GFLOP
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(
            f"{AUTO_CPU_GFLOP_ENV}={raw!r}: must be a positive number of GFLOP "
            f"(default {AUTO_CPU_GFLOP:.0f}); unset it to use the default"
        )
    return value


def plan_pretraining(
    n_items: int,
    arch: str,
    in_shape: Sequence[int],
    *,
    device: str | torch.device | None = "auto",
    arch_kwargs: Mapping[str, Any] | None = None,
    batch_size: int = 32,
) -> PretrainPlan:
    """Resolve ``--pretrain-epochs auto`` to a concrete step budget, or to no pretraining.

    Deterministic (no timing): it depends on the pool size, the architecture and box
    (their FLOP count, :func:`step_gflop`) and the device type only, so a round records
    the same numbers on every run and resumes reproducibly.

    - fewer than :data:`AUTO_MIN_POOL` items: skipped. A contrastive encoder needs
      many distinct volumes to learn more than it memorises (the benchmark that measured
      its gain used 240), and a pool that small is labelled in a few rounds anyway.
    - CPU: :data:`AUTO_CPU_PASSES` passes over the pool, or fewer steps where the cost
      would exceed :data:`AUTO_CPU_GFLOP` (or ``$CRYOAL_PRETRAIN_CPU_GFLOP``): cb3d on
      1,500 volumes of 16³: 920 steps (20 passes, about 2 min on 2 cores); at 32³: 126
      steps (about 9 min). Skipped when the ceiling allows fewer than
      :data:`AUTO_MIN_STEPS` (dsrf3d at 32³: 6 steps; pass ``--arch cb3d``, a GPU, or an
      explicit ``--pretrain-epochs``).
    - GPU: :data:`AUTO_GPU_STEPS` steps, never more than :data:`AUTO_MAX_EPOCHS` passes.

    Parameters
    ----------
    n_items
        Pool size.
    arch, in_shape, arch_kwargs
        The architecture the rounds train, its input ``(C, D, H, W)`` and options.
    device
        Where the rounds run (``"auto"`` resolves as :func:`cryoal.runtime.resolve_device`).
    batch_size
        Volumes per step (:attr:`PretrainConfig.batch_size`).

    Returns
    -------
    PretrainPlan

    Raises
    ------
    ConfigError
        ``$CRYOAL_PRETRAIN_CPU_GFLOP`` is set but not a positive number.
    """
    dev = resolve_device(device)
    if n_items < AUTO_MIN_POOL:
        return PretrainPlan(
            0,
            0,
            f"skipped: the pool has {n_items} volumes, fewer than {AUTO_MIN_POOL} (too few "
            "for contrastive pretraining to pay off; pass --pretrain-epochs N to pretrain "
            "anyway)",
        )
    per_epoch = max(1, n_items // min(batch_size, n_items))
    if dev.type == "cpu":
        cpu_budget = _cpu_budget()
        gflop = step_gflop(arch, in_shape, batch_size=batch_size, arch_kwargs=arch_kwargs)
        if gflop is None:
            steps, cost = AUTO_MIN_STEPS, "cost unknown"
        else:
            steps, cost = int(cpu_budget // gflop), f"{gflop:.0f} GFLOP/step"
        if steps < AUTO_MIN_STEPS:
            return PretrainPlan(
                0,
                0,
                f"skipped: {arch} on {'x'.join(map(str, in_shape[1:]))} boxes costs {cost}, "
                f"so the CPU budget of {cpu_budget:.0f} GFLOP allows only {steps} "
                f"step(s) (< {AUTO_MIN_STEPS}); use {'' if arch == 'cb3d' else '--arch cb3d or '}"
                "a GPU, or pass --pretrain-epochs N to pretrain anyway",
            )
        budget, max_passes = f"CPU budget {cpu_budget:.0f} GFLOP at {cost}", AUTO_CPU_PASSES
    else:
        steps, budget = AUTO_GPU_STEPS, f"{dev.type} budget {AUTO_GPU_STEPS} steps"
        max_passes = AUTO_MAX_EPOCHS
    steps = min(steps, max_passes * per_epoch)
    epochs = math.ceil(steps / per_epoch)
    return PretrainPlan(
        epochs,
        steps,
        f"{steps} steps of {min(batch_size, n_items)} volumes ({steps / per_epoch:.1f} passes "
        f"over {n_items}; {budget})",
    )


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """NT-Xent (normalised temperature-scaled cross-entropy) loss of SimCLR.

    Row ``i`` of ``z1`` and row ``i`` of ``z2`` are two views of one item (a positive
    pair); every other row of either tensor is a negative. With cosine similarities
    ``s_ab = ẑ_a·ẑ_b / τ`` over the ``2B`` views, the loss of view ``a`` with positive
    ``p(a)`` is ``−log(exp(s_{a,p(a)}) / Σ_{b≠a} exp(s_ab))``, averaged over all ``2B`` views.

    Parameters
    ----------
    z1, z2
        ``(B, P)`` projections of the two views, ``B >= 2``.
    temperature
        τ > 0.

    Returns
    -------
    Tensor
        Scalar loss (nats); ``log(2B − 1)`` for uninformative (all-equal) projections.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ConfigError(
            f"nt_xent needs two (B, P) tensors of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), -math.inf)
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


def augmentation(config: PretrainConfig, spatial_dims: int = 3) -> Any:
    """The view-making pipeline for volumes (3D) or images (2D).

    3D, on a batch ``(B, 1, D, H, W)``: uniform random rotation (SO(3)) → missing wedge
    re-imposed in the lab frame (tilt range jittered) → Gaussian noise at a random SNR
    → per-volume z-score.

    2D, on a batch ``(B, 1, H, W)``: random in-plane quarter turn (0, 90, 180 or 270°;
    only 0 or 180° for non-square images) and a random mirror in x → Gaussian noise at
    a random SNR → per-image z-score. :mod:`cryoal.transforms` has no continuous 2D
    rotation, so the in-plane orientation is drawn from the 8 exact symmetries of the
    square (no interpolation). A mirrored projection is the projection of the particle
    seen from the opposite side, so for cryo-EM images the mirror is an orientation
    change, not a change of handedness. There is no missing wedge: a 2D image has no
    tilt-series gap in its Fourier transform (``tilt_range`` and ``wedge_jitter`` are
    unused).

    Parameters
    ----------
    config
        ``rotate`` switches the rotation (3D) or quarter turn and mirror (2D);
        ``snr_range``, ``tilt_range`` and ``wedge_jitter`` set the draws.
    spatial_dims
        3 for volumes, 2 for images (:func:`pretrain_encoder` reads it off the pool).

    Returns
    -------
    cryoal.transforms.Compose
        Callable ``(x, generator)`` on a batch (shape above) returning views of the
        same shape; each volume or image draws its own orientation, tilt range and
        SNR. The same generator state gives the same views.

    Raises
    ------
    ConfigError
        ``spatial_dims`` is neither 2 nor 3.
    """
    steps: list[Any] = []
    if spatial_dims == 3:
        if config.rotate:
            steps.append(RandomRotate(padding="mean"))
        steps.append(RandomMissingWedge(tilt_range=config.tilt_range, jitter=config.wedge_jitter))
        steps.append(RandomNoise(snr_range=config.snr_range))
        steps.append(Normalize())
        return Compose(steps)
    if spatial_dims == 2:
        if config.rotate:
            steps.append(_RandomQuarterTurn())
            steps.append(RandomFlip(axes=(2,), prob=0.5))  # mirror in x
        steps.append(RandomNoise(snr_range=config.snr_range))
        steps.append(Normalize())
        return _ImageCompose(steps)
    raise ConfigError(
        f"pretraining augments volumes (3 spatial dims) or images (2), got {spatial_dims}"
    )


class _RandomQuarterTurn(Transform):
    """Rotate each item by a random multiple of 90° in its (H, W) plane (exact, no resampling).

    Acts on ``(B, C, D, H, W)`` like every :class:`cryoal.transforms.Transform`; with
    ``H != W`` only 0 and 180° are drawn, so the shape is kept.
    """

    name = "quarter-turn"

    def _apply(self, x: Tensor, gen: torch.Generator | None) -> Tensor:
        square = x.shape[-1] == x.shape[-2]
        src = gen.device if gen is not None else torch.device("cpu")
        u = torch.rand(x.shape[0], generator=gen, device=src, dtype=torch.float64).cpu()
        turns = (u * 4).floor().long() if square else (u * 2).floor().long() * 2
        turns = torch.where(self._selected(x.shape[0], gen, torch.device("cpu")), turns, 0)
        out = x.clone()
        for k in (1, 2, 3):
            sel = (turns == k).to(x.device)
            if bool(sel.any()):
                out[sel] = torch.rot90(x[sel], k, dims=(-2, -1))
        return out


class _ImageCompose(Compose):
    """A :class:`cryoal.transforms.Compose` of volume transforms applied to images.

    Images ``(B, C, H, W)`` are seen as volumes of depth 1, ``(B, C, 1, H, W)``, so the
    per-volume noise and z-score are per image and flips/turns act in the image plane.
    """

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Apply every transform to a batch of images ``(B, C, H, W)``; same shape back."""
        if x.ndim != 4:
            raise ConfigError(
                f"2D pretraining views need a batch of images (B, C, H, W), got shape "
                f"{tuple(x.shape)}"
            )
        return super().__call__(x.unsqueeze(2), generator).squeeze(2)


def _features(model: nn.Module) -> tuple[Any, nn.Linear]:
    features = getattr(model, "features", None)
    head = getattr(model, "head", None)
    if not callable(features) or not isinstance(head, nn.Linear):
        raise ConfigError(
            f"pretraining needs a model with features(x) and a linear head (cryoal.models."
            f"create builds them); {type(model).__name__} has none"
        )
    return features, head


def _first_tensor(item: Any) -> Tensor:
    x = item[0] if isinstance(item, (tuple, list)) else item
    if not isinstance(x, Tensor):
        raise ConfigError(
            f"pool items must be a tensor or a tuple starting with one, got {type(x).__name__}"
        )
    return x


def _collate(items: list[Any]) -> Tensor:
    return torch.stack([_first_tensor(it) for it in items])


def _spatial_dims(pool: Any) -> int:
    """3 for a pool of volumes ``(C, D, H, W)``, 2 for one of images ``(C, H, W)`` (item 0)."""
    shape = tuple(_first_tensor(pool[0]).shape)
    if len(shape) not in (3, 4):
        raise ConfigError(
            f"pretraining needs pool items with a channel axis, volumes (C, D, H, W) or images "
            f"(C, H, W); item 0 has shape {shape}"
        )
    return len(shape) - 1


def _duration(seconds: float) -> str:
    """``"45 s"``, ``"3.2 min"`` or ``"1.5 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def encoder_state(model: nn.Module) -> dict[str, Tensor]:
    """The encoder part of a classifier's weights: ``state_dict`` minus ``head.*`` (CPU copies)."""
    return {
        k: v.detach().cpu().clone()
        for k, v in model.state_dict().items()
        if not k.startswith("head.")
    }


def pretrain_encoder(
    model: nn.Module,
    pool: Any,
    config: PretrainConfig | None = None,
    *,
    device: str | torch.device | None = "auto",
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
    num_workers: int = 0,
    meta: Mapping[str, Any] | None = None,
    report: Callable[[str], None] | None = None,
) -> PretrainResult:
    """Train ``model.features`` on the unlabelled pool with the NT-Xent objective (in place).

    Each step draws ``batch_size`` pool volumes ``(B, 1, D, H, W)`` (or images
    ``(B, 1, H, W)``), makes two views of each with :func:`augmentation` (the 3D or 2D
    pipeline, chosen from the shape of the pool's first item), embeds them with
    ``model.features`` → ``(B, F)``,
    projects them with a throw-away MLP ``F → F → projection_dim`` and minimises
    :func:`nt_xent`. The linear head is not touched. Same seed, same weights (on CPU).

    Parameters
    ----------
    model
        A classifier with ``features(x) -> (B, F)`` and a linear ``head`` (any
        :func:`cryoal.models.create` model); trained in place, left in eval mode on
        ``device``.
    pool
        Map-style dataset of raw volumes or images: items are a tensor ``(1, D, H, W)``
        or ``(1, H, W)``, or a tuple starting with one (a :class:`cryoal.io.VolumePool`,
        ``pool.dataset()`` or a :class:`cryoal.io.images.ImagePool`). Labels, if any,
        are ignored.
    config
        :class:`PretrainConfig` (defaults when ``None``).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``...
    out
        Also write the encoder checkpoint here (atomically, :func:`save_encoder`).
    progress
        Show a tqdm bar over the steps.
    num_workers
        DataLoader worker processes reading the pool.
    meta
        Extra plain metadata stored in the checkpoint (e.g. the cache key).
    report
        Called once with a one-line estimate of the whole run's wall time, measured on
        the first two steps (the first warms up, the second is timed); the CLI prints it.
        ``None`` uses the sink set by :func:`reporting`, if any.

    Returns
    -------
    PretrainResult
        The encoder state, per-epoch losses (the last epoch may be cut short by
        ``max_steps``), time and the written path.

    Raises
    ------
    EmptyPoolError
        Fewer than two pool items.
    ConfigError
        The model has no ``features``/``head``, or pool items are neither volumes
        ``(C, D, H, W)`` nor images ``(C, H, W)``.
    """
    cfg = config or PretrainConfig()
    features, head = _features(model)
    n = len(pool)
    if n < 2:
        raise EmptyPoolError(f"pretraining needs at least 2 pool volumes, got {n}")
    spatial_dims = _spatial_dims(pool)
    dev = resolve_device(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    indices = list(range(n))
    if cfg.max_items is not None and cfg.max_items < n:
        indices = sorted(torch.randperm(n, generator=gen)[: cfg.max_items].tolist())
    data = Subset(pool, indices)
    batch_size = min(cfg.batch_size, len(indices))
    loader: DataLoader[Any] = DataLoader(
        data,  # type: ignore[arg-type]
        batch_size=batch_size,
        sampler=RandomSampler(data, generator=gen),  # type: ignore[arg-type]
        drop_last=True,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=dev.type == "cuda",
    )
    steps_per_epoch = len(loader)
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    augment = augmentation(cfg, spatial_dims)
    fork = [dev] if dev.type == "cuda" else []
    losses: list[float] = []
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=fork):
        torch.manual_seed(cfg.seed)
        width = int(head.in_features)
        # BatchNorm in the projector keeps the projections spread over the batch: without
        # it, noisy pools collapse to the constant-output saddle (loss = log(2B − 1))
        projector = nn.Sequential(
            nn.BatchNorm1d(width),
            nn.Linear(width, width),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True),
            nn.Linear(width, cfg.projection_dim),
        )
        model.to(dev)
        projector.to(dev)
        params = [p for p in model.parameters() if p.requires_grad] + list(projector.parameters())
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
        )
        aug_gen = torch.Generator().manual_seed(cfg.seed + 1)
        bar = tqdm(total=total, desc="pretrain", unit="step", disable=not progress)
        step = 0
        timed = min(2, total)  # step 1 warms up (allocations); step 2 is a steady step
        for epoch in range(math.ceil(total / max(steps_per_epoch, 1))):
            model.train()
            projector.train()
            epoch_loss, epoch_steps = 0.0, 0
            for x in loader:
                t_step = time.perf_counter()
                x = x.to(dev, torch.float32, non_blocking=True)
                v1 = augment(x, aug_gen)
                v2 = augment(x, aug_gen)
                h = features(torch.cat([v1, v2]))
                z = projector(h)
                loss = nt_xent(z[: x.shape[0]], z[x.shape[0] :], cfg.temperature)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                epoch_loss += float(loss.detach())
                epoch_steps += 1
                step += 1
                bar.update(1)
                if step == timed:
                    per_step = time.perf_counter() - t_step
                    estimate = time.perf_counter() - t0 + (total - step) * per_step
                    message = (
                        f"pretraining {total} steps of {batch_size} volumes ({len(indices)} "
                        f"items) on {dev}: about {_duration(estimate)} (estimated from the "
                        f"first {step} step{'s' if step > 1 else ''}, {per_step:.2f} s/step)"
                    )
                    log.info(message)
                    sink = report if report is not None else _report.get()
                    if sink is not None:
                        sink(message)
                if step >= total:
                    break
            losses.append(epoch_loss / max(epoch_steps, 1))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            log.info(
                "pretrain epoch %d (step %d/%d) NT-Xent %.4f", epoch + 1, step, total, losses[-1]
            )
            if step >= total:
                break
        bar.close()
    model.eval()
    seconds = time.perf_counter() - t0
    result = PretrainResult(encoder_state(model), losses, seconds, len(indices), cfg)
    if out is not None:
        from cryoal._atomic import sweep_orphans

        sweep_orphans(Path(out).parent, recursive=False)  # a killed run's half checkpoint
        path = save_encoder(out, model, result, **dict(meta or {}))
        result = dataclasses.replace(result, path=path)
    return result


def save_encoder(
    path: str | os.PathLike[str], model: nn.Module, result: PretrainResult, **meta: Any
) -> Path:
    """Write a pretrained encoder as a cryoal checkpoint (atomic).

    The checkpoint is the whole classifier (its head is untrained) with
    ``extra["kind"] = "encoder"``, ``extra["pretrain"]`` (the configuration),
    ``extra["losses"]``, ``extra["n_items"]``, ``extra["seconds"]`` and ``meta``.

    Raises
    ------
    CheckpointError
        The model was not built by :func:`cryoal.models.create`.
    """
    from cryoal.models import save_checkpoint

    return save_checkpoint(
        path,
        model,  # type: ignore[arg-type]
        kind=ENCODER_KIND,
        pretrain=result.config.to_dict(),
        losses=result.losses,
        n_items=result.n_items,
        seconds=round(result.seconds, 3),
        recipe_version=RECIPE_VERSION,
        **meta,
    )


def init_from_encoder(
    model: nn.Module, encoder: Mapping[str, Tensor] | str | os.PathLike[str]
) -> nn.Module:
    """Initialise every weight of ``model`` but its linear head from a pretrained encoder.

    Parameters
    ----------
    model
        Classifier of the same architecture and input shape as the encoder (any number
        of classes); modified in place and returned.
    encoder
        Encoder state (:attr:`PretrainResult.state`, ``head.*`` entries are ignored) or
        the path of an encoder checkpoint.

    Returns
    -------
    nn.Module
        ``model``.

    Raises
    ------
    CheckpointError
        The encoder does not fit the model (other architecture or box).
    """
    if isinstance(encoder, Mapping):
        state = {k: v for k, v in encoder.items() if not k.startswith("head.")}
        where = "encoder state"
    else:
        enc_model, _ = load_encoder(encoder)
        state = encoder_state(enc_model)
        where = os.fspath(encoder)
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or extra or wrong:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", extra),
                ("shape differs", wrong),
            )
            if keys
        )
        raise CheckpointError(
            f"{where}: pretrained encoder does not fit {type(model).__name__} ({detail}); "
            "pretrain with the same --model and box as the classifier"
        )
    model.load_state_dict(state, strict=False)
    return model


def pool_fingerprint(pool: Any, *, sample: int = 64) -> str:
    """A short SHA-1 that changes when the pool changes.

    It hashes the number of items, their ids (when the pool has ``ids``), the box and
    voxel size (when present), and the bytes of up to ``sample`` items spread evenly
    over the pool (first and last included). Cheap: reads at most ``sample`` volumes.

    Returns
    -------
    str
        16 hex digits.
    """
    n = len(pool)
    h = hashlib.sha1()
    h.update(f"n={n}".encode())
    ids = getattr(pool, "ids", None)
    if ids is not None:
        for vid in ids:
            h.update(str(vid).encode() + b"\0")
    for attr in ("box", "voxel_size"):
        value = getattr(pool, attr, None)
        if value is not None:
            h.update(f"{attr}={value!r}".encode())
    if n:
        k = min(sample, n)
        picks = sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})
        for i in picks:
            x = _first_tensor(pool[i]).detach().cpu().contiguous().to(torch.float32)
            h.update(x.numpy().tobytes())
    return h.hexdigest()[:16]


def project_encoder(
    path: str | os.PathLike[str],
    pool: Any,
    arch: str,
    in_shape: Sequence[int],
    *,
    epochs: int = 0,
    max_steps: int | None = None,
    arch_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
    device: str | torch.device | None = "auto",
    progress: bool = True,
    num_workers: int = 0,
) -> Path | None:
    """The encoder an active-learning round uses, if any.

    With ``epochs > 0`` the cached encoder at ``path`` (a project's
    ``Project.layout.encoder``) is trained or reused (:func:`cached_encoder` with
    ``PretrainConfig(epochs=epochs, max_steps=max_steps, seed=seed)``). With
    ``epochs == 0`` an encoder already at ``path`` (e.g. from ``cryoal pretrain
    --project``) is used when it was built for ``arch`` and ``in_shape``; otherwise there
    is none.

    Returns
    -------
    Path or None
        The encoder checkpoint, or ``None`` (rounds then start from random weights).
    """
    if epochs > 0:
        cfg = PretrainConfig(epochs=epochs, max_steps=max_steps, seed=seed)
        return cached_encoder(
            path,
            pool,
            arch,
            in_shape,
            cfg,
            arch_kwargs=arch_kwargs,
            device=device,
            progress=progress,
            num_workers=num_workers,
        )
    path = Path(path)
    if not path.exists():
        return None
    try:
        _, info = load_encoder(path)
    except CheckpointError as exc:
        log.warning("ignoring the project's encoder: %s", exc)
        return None
    same_kwargs = dict(info.arch.kwargs) == json.loads(json.dumps(dict(arch_kwargs or {})))
    if (
        info.arch.name != arch
        or list(info.arch.in_shape) != [int(s) for s in in_shape]
        or not same_kwargs
    ):
        log.warning(
            "ignoring %s: pretrained for %s %s, the rounds train %s %s",
            path,
            info.arch.name,
            list(info.arch.in_shape),
            arch,
            list(in_shape),
        )
        return None
    return path


def cached_encoder(
    path: str | os.PathLike[str],
    pool: Any,
    arch: str,
    in_shape: Sequence[int],
    config: PretrainConfig | None = None,
    *,
    arch_kwargs: Mapping[str, Any] | None = None,
    device: str | torch.device | None = "auto",
    progress: bool = True,
    num_workers: int = 0,
) -> Path:
    """The project's pretrained encoder, trained on first use and reused afterwards.

    The encoder lives at ``path`` (a project's is ``Project.layout.encoder``,
    ``PROJECT/models/encoder.pt``). Its cache key is the SHA-1
    of the pool fingerprint (:func:`pool_fingerprint`), the architecture, its options,
    the input shape, the configuration and the recipe version; a stored encoder with
    another key (the pool or the options changed) is trained again and replaced.

    Parameters
    ----------
    path
        The encoder checkpoint file (its folder is created if needed).
    pool
        The pool to pretrain on (see :func:`pretrain_encoder`).
    arch, in_shape, arch_kwargs
        Architecture (:func:`cryoal.models.available`), ``(C, D, H, W)`` (``(C, H, W)``
        for images) and options.
    config
        Pretraining configuration.
    device, progress, num_workers
        As in :func:`pretrain_encoder`.

    Returns
    -------
    Path
        The encoder checkpoint.
    """
    from cryoal import models

    cfg = config or PretrainConfig()
    shape = [int(s) for s in in_shape]
    key_src = {
        "pool": pool_fingerprint(pool),
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs or {}),
        "in_shape": shape,
        "config": cfg.to_dict(),
        "recipe": RECIPE_VERSION,
    }
    if len(shape) == 3:  # images (C, H, W): the 2D views (3D keys stay as they were)
        key_src["views"] = "2d"
    key = hashlib.sha1(json.dumps(key_src, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = Path(path)
    if path.exists():
        try:
            _, info = load_encoder(path)
            if info.extra.get("cache_key") == key:
                log.info("reusing pretrained encoder %s (key %s)", path, key)
                return path
            log.info("pool or pretraining options changed: pretraining %s again", path)
        except CheckpointError as exc:
            log.warning("unreadable encoder %s (%s): pretraining again", path, exc)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = models.create(arch, 2, shape, **dict(arch_kwargs or {}))
    pretrain_encoder(
        model,
        pool,
        cfg,
        device=device,
        out=path,
        progress=progress,
        num_workers=num_workers,
        meta={"cache_key": key, "pool_fingerprint": key_src["pool"]},
    )
    return path

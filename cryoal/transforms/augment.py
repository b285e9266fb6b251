"""Training augmentation: parameterised callables over the physics kernels.

Every transform is callable on one volume ``(C, D, H, W)`` (what a torch ``Dataset``
hands its ``transform``) or on a batch ``(B, C, D, H, W)`` (one independent draw per
volume, batched, e.g. on the GPU after the DataLoader). Randomness comes from the
``generator`` passed to the call, else from the transform's own generator (``seed=``),
else from torch's global generator (which DataLoader seeds per worker: leave ``seed``
unset when ``num_workers > 0``, or every worker repeats the same draws).

Transforms are registered by name so configs can list them::

    from cryoal import transforms
    pipeline = transforms.from_config(
        ["rotate", {"name": "noise", "snr_range": [0.05, 1.0]}, "normalize"]
    )
    dataset = pool.dataset(transform=pipeline)
"""

from __future__ import annotations

import difflib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch

from cryoal.errors import ConfigError
from cryoal.transforms.geometry import random_rotation, rotate_volume
from cryoal.transforms.intensity import normalize
from cryoal.transforms.noise import add_noise
from cryoal.transforms.wedge import apply_missing_wedge, check_tilt_axis, missing_wedge_mask

__all__ = [
    "Compose",
    "Invert",
    "Normalize",
    "RandomFlip",
    "RandomMissingWedge",
    "RandomNoise",
    "RandomRotate",
    "Transform",
    "available",
    "from_config",
    "get",
]


def _rand(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``n`` uniform [0, 1) float64 draws on ``device`` from a generator on any device."""
    src = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, device=src, dtype=torch.float64).to(device)


def _check_prob(prob: float, who: str) -> float:
    p = float(prob)
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"{who}: prob must be in [0, 1], got {prob!r}")
    return p


class Transform(ABC):
    """Base class: holds parameters and a generator, applies to one volume or a batch.

    Parameters
    ----------
    prob
        Probability that the transform is applied to each volume (default 1).
    seed
        Seed of a private ``torch.Generator`` (CPU) used when a call passes none.
    """

    name: ClassVar[str] = ""

    def __init__(self, *, prob: float = 1.0, seed: int | None = None) -> None:
        self.prob = _check_prob(prob, type(self).__name__)
        self.seed = seed
        self.generator = torch.Generator().manual_seed(int(seed)) if seed is not None else None

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Apply to ``x`` ``(C, D, H, W)`` or ``(B, C, D, H, W)``; returns the same shape."""
        if x.ndim not in (4, 5):
            raise ConfigError(
                f"{type(self).__name__}: expected a volume (C, D, H, W) or a batch "
                f"(B, C, D, H, W), got shape {tuple(x.shape)}"
            )
        gen = generator if generator is not None else self.generator
        batch = x if x.ndim == 5 else x.unsqueeze(0)
        out = self._apply(batch, gen)
        return out if x.ndim == 5 else out[0]

    def _selected(self, b: int, gen: torch.Generator | None, device: torch.device) -> torch.Tensor:
        """Which of ``b`` volumes the transform applies to, ``(b,)`` bool."""
        if self.prob >= 1.0:
            return torch.ones(b, dtype=torch.bool, device=device)
        return _rand(b, gen, device) < self.prob

    @abstractmethod
    def _apply(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """Apply to a batch ``(B, C, D, H, W)``, drawing from ``gen``."""

    def config(self) -> dict[str, Any]:
        """Parameters as a plain dict (with ``name``), accepted by :func:`from_config`."""
        return {"name": self.name, **self._params(), "prob": self.prob, "seed": self.seed}

    def _params(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


def _where(sel: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return torch.where(sel.view(-1, *([1] * (old.ndim - 1))), new, old)


class RandomRotate(Transform):
    """Rotate each volume by a uniform random rotation (SO(3), trilinear, about the centre).

    Parameters
    ----------
    padding
        ``"mean"`` (default: the volume's mean fills the corners), ``"zeros"`` or ``"border"``.
    prob, seed
        See :class:`Transform`.
    """

    name = "rotate"

    def __init__(
        self, padding: str = "mean", *, prob: float = 1.0, seed: int | None = None
    ) -> None:
        super().__init__(prob=prob, seed=seed)
        if padding not in ("mean", "zeros", "border"):
            raise ConfigError(
                f"RandomRotate: padding must be 'mean', 'zeros' or 'border', got {padding!r}"
            )
        self.padding = padding

    def _params(self) -> dict[str, Any]:
        return {"padding": self.padding}

    def _apply(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        sel = self._selected(x.shape[0], gen, x.device)
        rot = random_rotation(x.shape[0], generator=gen, device=x.device, dtype=torch.float64)
        return _where(sel, rotate_volume(x, rot, padding=self.padding), x)


class RandomFlip(Transform):
    """Mirror each volume along each spatial axis with probability ``prob``.

    A mirror changes handedness: use it only when the classes do not depend on chirality
    (macromolecules are chiral, so it is off in the usual pipelines).

    Parameters
    ----------
    axes
        Spatial axes that may flip: 0 = z, 1 = y, 2 = x.
    prob
        Probability of each flip, drawn independently per axis and volume (default 0.5).
    seed
        See :class:`Transform`.
    """

    name = "flip"

    def __init__(
        self, axes: Sequence[int] = (0, 1, 2), *, prob: float = 0.5, seed: int | None = None
    ) -> None:
        super().__init__(prob=prob, seed=seed)
        ax = tuple(int(a) for a in axes)
        if not ax or any(a not in (0, 1, 2) for a in ax) or len(set(ax)) != len(ax):
            raise ConfigError(
                f"RandomFlip: axes must be distinct values of 0 (z), 1 (y), 2 (x), got {axes!r}"
            )
        self.axes = ax

    def _params(self) -> dict[str, Any]:
        return {"axes": list(self.axes)}

    def _apply(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        out = x
        for a in self.axes:
            sel = _rand(x.shape[0], gen, x.device) < self.prob
            out = _where(sel, out.flip(a - 3), out)
        return out


class RandomNoise(Transform):
    """Add Gaussian noise at an SNR drawn per volume from ``snr_range``.

    Parameters
    ----------
    snr_range
        ``(low, high)`` SNR = var(signal) / var(noise), both positive.
    log_uniform
        Draw ``log(snr)`` uniformly (default; SNRs span decades) instead of ``snr``.
    prob, seed
        See :class:`Transform`.
    """

    name = "noise"

    def __init__(
        self,
        snr_range: Sequence[float] = (0.05, 1.0),
        log_uniform: bool = True,
        *,
        prob: float = 1.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(prob=prob, seed=seed)
        try:
            lo, hi = (float(s) for s in snr_range)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"RandomNoise: snr_range must be two numbers (low, high), got {snr_range!r}"
            ) from exc
        if not (0 < lo <= hi < math.inf):
            raise ConfigError(
                f"RandomNoise: snr_range must satisfy 0 < low <= high < inf, got ({lo}, {hi})"
            )
        self.snr_range = (lo, hi)
        self.log_uniform = bool(log_uniform)

    def _params(self) -> dict[str, Any]:
        return {"snr_range": list(self.snr_range), "log_uniform": self.log_uniform}

    def sample_snr(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` SNRs ``(n,)`` float64 on the CPU from the configured range."""
        u = _rand(n, generator, torch.device("cpu"))
        lo, hi = self.snr_range
        if self.log_uniform:
            return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        return lo + u * (hi - lo)

    def _apply(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        sel = self._selected(x.shape[0], gen, torch.device("cpu"))
        snr = torch.where(
            sel,
            self.sample_snr(x.shape[0], gen),
            torch.full((x.shape[0],), math.inf, dtype=torch.float64),
        )
        return add_noise(x, snr.to(x.device), generator=gen)


class RandomMissingWedge(Transform):
    """Remove a missing wedge whose tilt range is jittered per volume.

    Each volume gets the range ``(min + u₁, max + u₂)`` with ``u₁, u₂`` uniform in
    ``[-jitter, jitter]`` degrees, rounded to ``step`` (so masks are cached) and clipped
    to [-90, 90].

    Parameters
    ----------
    tilt_range
        Nominal ``(min, max)`` tilt in degrees.
    jitter
        Half-width of the uniform jitter of each end, degrees (0 = fixed wedge).
    tilt_axis
        ``"y"`` or ``"x"``.
    step
        Rounding of the jittered angles, degrees (> 0).
    prob, seed
        See :class:`Transform`.
    """

    name = "missing-wedge"

    def __init__(
        self,
        tilt_range: Sequence[float] = (-60.0, 60.0),
        jitter: float = 5.0,
        tilt_axis: str = "y",
        step: float = 1.0,
        *,
        prob: float = 1.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(prob=prob, seed=seed)
        try:
            lo, hi = (float(t) for t in tilt_range)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"RandomMissingWedge: tilt_range must be two angles (min, max), got {tilt_range!r}"
            ) from exc
        if not -90.0 <= lo <= hi <= 90.0:
            raise ConfigError(
                f"RandomMissingWedge: tilt_range must satisfy -90 <= min <= max <= 90, got ({lo}, {hi})"
            )
        if not float(jitter) >= 0 or not float(step) > 0:
            raise ConfigError(
                f"RandomMissingWedge: need jitter >= 0 and step > 0 degrees, got jitter={jitter!r}, step={step!r}"
            )
        self.tilt_range = (lo, hi)
        self.jitter = float(jitter)
        self.tilt_axis = check_tilt_axis(tilt_axis)
        self.step = float(step)

    def _params(self) -> dict[str, Any]:
        return {
            "tilt_range": list(self.tilt_range),
            "jitter": self.jitter,
            "tilt_axis": self.tilt_axis,
            "step": self.step,
        }

    def sample_ranges(
        self, n: int, generator: torch.Generator | None = None
    ) -> list[tuple[float, float]]:
        """Draw ``n`` jittered tilt ranges (degrees)."""
        u = _rand(2 * n, generator, torch.device("cpu")).view(n, 2) * 2 - 1
        lo, hi = self.tilt_range
        out = []
        for du, dv in u.tolist():
            a = round((lo + du * self.jitter) / self.step) * self.step
            b = round((hi + dv * self.jitter) / self.step) * self.step
            a, b = max(-90.0, min(a, 90.0)), max(-90.0, min(b, 90.0))
            out.append((min(a, b), max(a, b)))
        return out

    def _apply(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        b = x.shape[0]
        sel = self._selected(b, gen, torch.device("cpu")).tolist()
        ranges = self.sample_ranges(b, gen)
        box = (x.shape[-3], x.shape[-2], x.shape[-1])
        masks = torch.stack(
            [
                missing_wedge_mask(box, r, self.tilt_axis, rfft=True, device=x.device)
                if s
                else torch.ones(box[0], box[1], box[2] // 2 + 1, device=x.device)
                for r, s in zip(ranges, sel, strict=True)
            ]
        )
        return apply_missing_wedge(x, masks.unsqueeze(1))


class Invert(Transform):
    """Invert the contrast, ``x → −x`` (the usual "invert contrast" step of RELION/Warp).

    cryoal's simulated pools, like raw tomograms, show protein dark (underfocus, see
    docs/simulation.md); RELION particles extracted with contrast inversion and aitom's
    simulated subtomograms show it bright. Put ``invert`` first in a pipeline (or read a pool
    with :meth:`cryoal.io.VolumePool.inverted`) so that data from either convention match.
    With ``prob < 1`` it is an augmentation that makes a model indifferent to the contrast.

    Parameters
    ----------
    prob, seed
        See :class:`Transform` (default ``prob=1``: always).
    """

    name = "invert"

    def _apply(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        if self.prob >= 1.0:
            return -x
        sel = self._selected(x.shape[0], gen, torch.device("cpu")).to(x.device)
        return _where(sel, -x, x)


class Normalize(Transform):
    """Per-volume z-score (zero mean, unit std over D, H, W), every channel on its own."""

    name = "normalize"

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = float(eps)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "eps": self.eps}

    def _apply(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        return normalize(x, eps=self.eps)


class Compose:
    """Apply transforms in order, passing the same generator to each.

    Parameters
    ----------
    transforms
        Callables ``f(x, generator=None)`` (any :class:`Transform`, or another Compose).
    """

    def __init__(self, transforms: Iterable[Callable[..., torch.Tensor]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Apply every transform to ``x`` ``(C, D, H, W)`` or ``(B, C, D, H, W)``."""
        for t in self.transforms:
            x = t(x, generator)
        return x

    def config(self) -> list[Any]:
        """The pipeline as a list accepted by :func:`from_config`."""
        return [t.config() if hasattr(t, "config") else repr(t) for t in self.transforms]

    def __len__(self) -> int:
        return len(self.transforms)

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


_REGISTRY: dict[str, type[Transform]] = {
    cls.name: cls
    for cls in (RandomRotate, RandomFlip, RandomNoise, RandomMissingWedge, Invert, Normalize)
}


def available() -> list[str]:
    """Names of the registered transforms, sorted."""
    return sorted(_REGISTRY)


def get(name: str, **kwargs: Any) -> Transform:
    """Build a registered transform by name.

    Parameters
    ----------
    name
        One of :func:`available` (case and ``_``/``-`` insensitive).
    **kwargs
        Constructor arguments of that transform.

    Raises
    ------
    ConfigError
        Unknown name (with a "did you mean" suggestion) or bad arguments.
    """
    key = str(name).strip().lower().replace("_", "-")
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown transform {name!r}{hint}; available: {', '.join(available())}")
    cls = _REGISTRY[key]
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"transform {key!r}: bad arguments {sorted(kwargs)}: {exc}") from exc


def from_config(spec: Sequence[str | Mapping[str, Any]]) -> Compose:
    """Build a pipeline from a config list.

    Parameters
    ----------
    spec
        Items are a transform name (``"rotate"``) or a mapping with ``name`` and that
        transform's arguments (``{"name": "noise", "snr_range": [0.05, 1.0]}``).

    Returns
    -------
    Compose
        The transforms in order.
    """
    if isinstance(spec, (str, Mapping)):
        raise ConfigError(f"transform config must be a list of names or mappings, got {spec!r}")
    out: list[Transform] = []
    for i, item in enumerate(spec):
        if isinstance(item, str):
            out.append(get(item))
        elif isinstance(item, Mapping) and "name" in item:
            kw = {k: v for k, v in item.items() if k != "name"}
            out.append(get(str(item["name"]), **kw))
        else:
            raise ConfigError(
                f"transform config item {i}: expected a name or a mapping with 'name', got {item!r}"
            )
    return Compose(out)

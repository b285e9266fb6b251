"""2D image classification: the task, a picture gallery, and two built-in example sets.

- :func:`load_digits_images`: scikit-learn's bundled handwritten digits (1797 real 8×8
  images, 10 classes; offline) — the built-in example and test set;
- :func:`simulate_projections`: 2D projections of simulated particles (bundled real
  structures, random orientations, Gaussian noise at an SNR) — the cryo-EM-flavoured one;
- :func:`write_image_set`: either set as a folder of images + ``truth.csv`` + a small
  class-balanced ``initial.csv``, the layout ``cryoal select --task image2d`` reads.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from cryoal.errors import ConfigError, MissingDependencyError
from cryoal.tasks.base import ClassificationTask, _no_options

__all__ = [
    "Image2D",
    "image_gallery_figure",
    "load_digits_images",
    "simulate_projections",
    "write_image_set",
]


def load_digits_images() -> tuple[np.ndarray, list[str]]:
    """scikit-learn's bundled handwritten digits (UCI ML digits, 1797 images, offline).

    Returns
    -------
    images : numpy.ndarray
        `(1797, 8, 8)` float32, grey levels 0–16.
    labels : list[str]
        ``"0"`` … ``"9"``.

    Raises
    ------
    MissingDependencyError
        scikit-learn is not installed (``pip install 'cryoal[examples]'``).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise MissingDependencyError(
            "the digits example needs scikit-learn: pip install 'cryoal[examples]'"
        ) from exc
    d = load_digits()
    return np.asarray(d.images, dtype=np.float32), [str(int(t)) for t in d.target]


def simulate_projections(
    structures: Sequence[str] = ("4V8R-A", "7PBL", "3O21"),
    n_per_class: int = 20,
    box: int = 32,
    voxel_size: float = 10.0,
    snr: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, list[str]]:
    """2D projections of simulated particles: a cryo-EM-flavoured image set.

    Each particle is a bundled structure at a uniformly random orientation
    (:func:`cryoal.simulate.simulate_subtomograms` without noise, CTF or wedge), projected
    along z (sum over D), then Gaussian noise with variance ``var(image) / snr`` is added
    per image (SNR as everywhere in cryoal: var(signal)/var(noise); ``inf`` = none).

    Parameters
    ----------
    structures
        Bundled structure names (one class each).
    n_per_class
        Images per class.
    box
        Image side in pixels.
    voxel_size
        Pixel size in Å.
    snr
        Signal-to-noise ratio of each image.
    seed
        Fixes orientations, order and noise.

    Returns
    -------
    images : numpy.ndarray
        `(N, box, box)` float32, shuffled.
    labels : list[str]
        Structure name of each image.
    """
    from cryoal.simulate import simulate_subtomograms

    if not snr > 0:
        raise ConfigError(f"snr must be > 0 (inf = no noise), got {snr}")
    sim = simulate_subtomograms(
        list(structures),
        n_per_class,
        box=box,
        voxel_size=voxel_size,
        snr=math.inf,
        tilt_range=None,
        defocus=None,
        seed=seed,
    )
    proj = sim.volumes.sum(dim=1).double()  # (N, H, W)
    if math.isfinite(snr):
        g = torch.Generator().manual_seed(seed + 1)
        var = proj.flatten(1).var(dim=1)
        noise = torch.randn(proj.shape, generator=g, dtype=torch.float64)
        proj = proj + noise * (var / snr).sqrt()[:, None, None]
    return proj.float().numpy(), [sim.class_names[int(i)] for i in sim.labels]


def write_image_set(
    out: str | os.PathLike[str],
    images: np.ndarray,
    labels: Sequence[str],
    *,
    fmt: str = "png",
    initial_per_class: int = 2,
    seed: int = 0,
) -> dict[str, Path]:
    """Write images as files plus ``truth.csv`` (all labels) and ``initial.csv``.

    Parameters
    ----------
    out
        Target folder: ``out/images/img_NNNNN.<fmt>``, ``out/truth.csv``,
        ``out/initial.csv`` (``initial_per_class`` random images of each class).
    images
        `(N, H, W)` images.
    labels
        Class name of each image.
    fmt
        ``"png"`` (values rescaled to 0–255 over the whole set, uint8), ``"tif"`` or
        ``"mrc"`` (float32, values kept), ``"npy"``.
    initial_per_class
        Labelled images per class in ``initial.csv``.
    seed
        Which images go to ``initial.csv``.

    Returns
    -------
    dict
        ``images`` (folder), ``truth`` and ``initial`` (CSV files).
    """
    from cryoal.io import write_labels
    from cryoal.io.images import write_image

    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[0] != len(labels):
        raise ConfigError(f"need images (N, H, W) and N labels, got {arr.shape}, {len(labels)}")
    if fmt not in ("png", "tif", "mrc", "npy"):
        raise ConfigError(f"unknown image format {fmt!r}: use png, tif, mrc or npy")
    base = Path(out)
    folder = base / "images"
    width = max(5, len(str(len(labels) - 1)))
    ids = [f"img_{i:0{width}d}.{fmt}" for i in range(len(labels))]
    if fmt == "png":
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.rint((arr - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8)
        data: np.ndarray = scaled
    else:
        data = arr
    for name, img in zip(ids, data, strict=True):
        write_image(folder / name, img)
    truth = pd.DataFrame({"id": ids, "label": [str(v) for v in labels]})
    write_labels(base / "truth.csv", truth)
    rng = np.random.default_rng(seed)
    picks: list[int] = []
    for c in sorted(set(truth["label"])):
        members = np.flatnonzero(truth["label"].to_numpy() == c)
        picks += sorted(
            rng.choice(members, size=min(initial_per_class, len(members)), replace=False).tolist()
        )
    write_labels(base / "initial.csv", truth.iloc[sorted(picks)].reset_index(drop=True))
    return {"images": folder, "truth": base / "truth.csv", "initial": base / "initial.csv"}


class Image2D(ClassificationTask):
    """2D image classification (PNG/TIFF/2D MRC/NumPy images, labels CSV/STAR)."""

    name = "image2d"
    summary = "classify 2D images (PNG/TIFF/2D MRC/.npy folders, labels CSV/STAR)"
    spatial_dims = 2
    default_model = "cnn2d"
    default_in_shape = (1, 64, 64)
    pick_view = "the image itself, grey range from its 1st-99th percentiles"

    def open_pool(
        self, path: str | os.PathLike[str], *, pattern: str | None = None, **options: Any
    ) -> Any:
        """:meth:`cryoal.io.images.ImagePool.from_directory` (a folder of images)."""
        from cryoal.io.images import ImagePool

        _no_options(self.name, options)
        return ImagePool.from_directory(path, pattern)

    def write_gallery(
        self,
        path: str | os.PathLike[str],
        items: Sequence[Tensor],
        captions: Sequence[str],
        *,
        title: str | None = None,
        predictions: Sequence[Tensor] | None = None,
    ) -> Path:
        """A grid of the images with their captions."""
        from cryoal.viz import save_figure

        fig = image_gallery_figure([t.reshape(t.shape[-2:]) for t in items], captions, title=title)
        return save_figure(fig, path)

    def _pick_gallery(self) -> Any:
        """The round's gallery: the picked images, captioned by rank, name and prediction."""

        def draw(path: Path, items: list[Tensor], picks: list[Any], title: str) -> Path:
            return self.write_gallery(path, items, [_caption(p) for p in picks], title=title)

        return draw


def _caption(p: Any) -> str:
    """``#rank name`` and, with a model, ``pred CLASS (probability)``."""
    text = f"#{p.rank} {Path(p.id).name}"
    if p.predicted is not None and p.probabilities:
        text += f"\npred {p.predicted} ({p.probabilities.get(p.predicted, 0.0):.2f})"
    return text


def image_gallery_figure(
    images: Sequence[Tensor | np.ndarray],
    captions: Sequence[str],
    *,
    title: str | None = None,
    columns: int = 6,
    overlays: Sequence[np.ndarray | None] | None = None,
    panel_inches: float = 1.4,
) -> Any:
    """A grid of grey `(H, W)` images with captions, optional class overlays.

    Parameters
    ----------
    images
        `(H, W)` images, in pick order.
    captions
        One caption per image.
    title
        Figure title.
    columns
        Images per row.
    overlays
        Optional integer label maps `(H, W)` drawn over each image (0 transparent,
        classes ≥ 1 in tab10 colours at 45 % opacity).
    panel_inches
        Size of one panel.

    Raises
    ------
    ConfigError
        No image, or captions/overlays that do not match the images in number.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    if not images:
        raise ConfigError("a gallery needs at least one image")
    if len(captions) != len(images) or (overlays is not None and len(overlays) != len(images)):
        raise ConfigError(f"{len(images)} images but {len(captions)} captions / overlays")
    cols = max(1, min(columns, len(images)))
    rows = math.ceil(len(images) / cols)
    fig = Figure(figsize=(cols * panel_inches, rows * (panel_inches + 0.3) + (0.4 if title else 0)))
    if title:
        fig.suptitle(title, fontsize=9)
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False)).reshape(-1)
    colors = ListedColormap(
        [(0, 0, 0, 0), *[(*c[:3], 0.45) for c in _tab10()]], name="cryoal-classes"
    )
    for i, ax in enumerate(axes):
        ax.set_axis_off()
        if i >= len(images):
            continue
        img = images[i]
        arr = img.detach().cpu().numpy() if isinstance(img, Tensor) else np.asarray(img)
        lo, hi = np.percentile(arr, [1.0, 99.0])
        ax.imshow(arr, cmap="gray", vmin=float(lo), vmax=float(hi) if hi > lo else float(lo) + 1)
        if overlays is not None and overlays[i] is not None:
            ov = np.asarray(overlays[i])
            ax.imshow(ov, cmap=colors, vmin=0, vmax=10, interpolation="nearest")
        ax.set_title(captions[i], fontsize=6)
    return fig


def _tab10() -> list[tuple[float, ...]]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [tuple(cmap(i)) for i in range(10)]

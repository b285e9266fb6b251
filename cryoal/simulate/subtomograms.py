"""Labelled subtomograms with known truth: rotate, shift, CTF, missing wedge, noise at SNR.

The recipe per subtomogram (batched in torch, one Fourier pass per stage):

1. the class template (a :class:`~cryoal.simulate.structures.Structure` map, centred) is
   padded or cropped to the box;
2. rotated by a uniform random rotation about the box centre (trilinear,
   :func:`cryoal.transforms.rotate_volume`); the rotation is recorded as RELION ZYZ Euler
   angles ``(rot, tilt, psi)`` in degrees (``rotate_volume(template, euler_to_matrix(angles))``
   reproduces it);
3. shifted by a uniform random sub-voxel offset in ``[-shift_max, shift_max]`` voxels
   per axis (Fourier phase ramp);
4. filtered by the CTF (defocus in µm, positive = underfocus) and the missing wedge;
5. noised at the requested SNR = var(signal) / var(noise), with the ``"white"`` or
   ``"two-stage"`` recipe (see :mod:`cryoal.simulate._physics`).

Determinism: one seed fixes everything; each volume's noise comes from its own stream, so
the output does not depend on ``batch_size`` or device.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from cryoal.errors import ConfigError
from cryoal.simulate._physics import check_recipe, form_images
from cryoal.simulate.structures import Structure, _fit_box, load_structure, resample_map
from cryoal.transforms import matrix_to_euler, random_rotation, rotate_volume

__all__ = ["SimulatedSet", "as_structures", "simulate_subtomograms", "subtomogram_ids"]

log = logging.getLogger(__name__)

StructureLike = str | Path | Structure


@dataclass
class SimulatedSet:
    """Simulated subtomograms with their truth.

    Attributes
    ----------
    volumes
        ``(N, D, H, W)`` float32 noisy subtomograms.
    labels
        ``(N,)`` int64 class indices into ``class_names``.
    class_names
        Class names (structure names), index = label.
    metadata
        One row per volume: ``id, label, class_name, rot, tilt, psi`` (RELION ZYZ Euler,
        degrees), ``shift_x, shift_y, shift_z`` (voxels), ``snr, defocus_um, voxel_size``.
    voxel_size
        Voxel edge in Å.
    clean
        ``(N, D, H, W)`` noise-free volumes (after CTF and wedge) when asked for, else None.
    """

    volumes: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    metadata: pd.DataFrame
    voxel_size: float
    clean: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.volumes.shape[0])

    @property
    def ids(self) -> list[str]:
        """Volume ids (the file names :func:`cryoal.simulate.write_simulated` uses)."""
        return [str(i) for i in self.metadata["id"]]


def subtomogram_ids(n: int, prefix: str = "sub") -> list[str]:
    """File-name ids ``sub_00000.mrc ...`` (zero-padded to at least 5 digits)."""
    width = max(5, len(str(max(n - 1, 0))))
    return [f"{prefix}_{i:0{width}d}.mrc" for i in range(n)]


def as_structures(
    structures: Sequence[StructureLike], voxel_size: float, box: int | None
) -> list[Structure]:
    """Load names/paths and resample given maps to ``voxel_size``.

    With ``box`` every template is padded or cropped (centred) to ``(box,) * 3``;
    with ``None`` each keeps its own (even) size.
    """
    if len(structures) == 0:
        raise ConfigError(
            "no structures given; pass bundled names (see cryoal.simulate.list_structures())"
        )
    out: list[Structure] = []
    for s in structures:
        if isinstance(s, Structure):
            dens = resample_map(s.density, s.voxel_size, voxel_size)
            out.append(Structure(s.name, _fit_box(dens, box), float(voxel_size), dict(s.info)))
        else:
            out.append(load_structure(s, voxel_size, box=box))
    names = [s.name for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"duplicate class names {dup}; give each structure a distinct name")
    return out


def _range(
    value: float | Sequence[float] | None, n: int, g: torch.Generator, what: str
) -> torch.Tensor | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return torch.full((n,), float(value), dtype=torch.float64)
    lo, hi = (float(v) for v in value)
    if hi < lo:
        raise ConfigError(f"{what} range must be (low, high) with low <= high, got {tuple(value)}")
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def simulate_subtomograms(
    structures: Sequence[StructureLike],
    n_per_class: int | Sequence[int],
    box: int = 32,
    voxel_size: float = 10.0,
    snr: float = 0.1,
    tilt_range: tuple[float, float] | None = (-60.0, 60.0),
    defocus: float | tuple[float, float] | None = 5.0,
    rotation: str | torch.Tensor = "uniform",
    shift_max: float = 0.0,
    seed: int = 0,
    *,
    tilt_axis: str = "y",
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    bfactor: float = 0.0,
    noise: str = "white",
    shuffle: bool = True,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    return_clean: bool = False,
    id_prefix: str = "sub",
    progress: bool = False,
) -> SimulatedSet:
    """Simulate labelled subtomograms of real structures.

    Parameters
    ----------
    structures
        Bundled names (``"6ZU5"``), map/model paths, or :class:`Structure` objects; one
        class each.
    n_per_class
        Volumes per class (an int, or one count per structure).
    box
        Cubic box edge in voxels.
    voxel_size
        Voxel edge in Å.
    snr
        SNR = var(signal) / var(noise) in the output (``inf``: no noise).
    tilt_range
        Tilt range in degrees of the missing wedge (``None``: no wedge).
    defocus
        Underfocus in µm (positive), or a ``(low, high)`` range sampled uniformly per
        volume; ``None`` for no CTF.
    rotation
        ``"uniform"`` (Haar on SO(3)), ``"none"``, or a tensor ``(N, 3, 3)`` of rotations.
    shift_max
        Maximum translation per axis in voxels (uniform, sub-voxel).
    seed
        Fixes every random draw.
    tilt_axis, voltage_kv, cs_mm, amplitude_contrast, bfactor
        Wedge axis and CTF parameters (kV, mm, fraction, Å^2).
    noise
        ``"white"`` or ``"two-stage"`` (see module docstring).
    shuffle
        Interleave classes in random order (otherwise class-by-class).
    batch_size, device
        Work in batches of this many volumes on this device; results are returned on
        the CPU.
    return_clean
        Also return the noise-free volumes.
    id_prefix
        Prefix of the ids (``sub_00000.mrc``).
    progress
        Show a progress bar.

    Returns
    -------
    SimulatedSet

    Raises
    ------
    ConfigError
        Bad parameter (non-positive box/voxel size/SNR, unknown structure or recipe...).
    """
    if box < 4:
        raise ConfigError(f"box must be at least 4 voxels, got {box}")
    if not voxel_size > 0:
        raise ConfigError(f"voxel_size must be > 0 Å, got {voxel_size}")
    snr_f = float(snr)
    if math.isnan(snr_f) or snr_f <= 0:
        raise ConfigError(f"snr must be positive (inf for no noise), got {snr}")
    if shift_max < 0:
        raise ConfigError(f"shift_max must be >= 0 voxels, got {shift_max}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    check_recipe(noise)
    dev = torch.device(device)
    templates = as_structures(structures, voxel_size, box)
    counts = (
        [int(n_per_class)] * len(templates)
        if isinstance(n_per_class, int)
        else [int(c) for c in n_per_class]
    )
    if len(counts) != len(templates) or min(counts) < 0:
        raise ConfigError(
            f"n_per_class must be a non-negative int or one count per structure ({len(templates)}), got {n_per_class}"
        )
    n = sum(counts)
    if n == 0:
        raise ConfigError("n_per_class is 0: nothing to simulate")

    g = torch.Generator().manual_seed(int(seed))
    labels = torch.repeat_interleave(torch.arange(len(templates)), torch.tensor(counts))
    if shuffle:
        labels = labels[torch.randperm(n, generator=g)]
    if isinstance(rotation, torch.Tensor):
        if rotation.shape != (n, 3, 3):
            raise ConfigError(f"rotation tensor must be ({n}, 3, 3), got {tuple(rotation.shape)}")
        rots = rotation.to(torch.float32).cpu()
    elif rotation == "uniform":
        rots = random_rotation(n, generator=g)
    elif rotation == "none":
        rots = torch.eye(3).expand(n, 3, 3).clone()
    else:
        raise ConfigError(
            f"rotation must be 'uniform', 'none' or an (N, 3, 3) tensor, got {rotation!r}"
        )
    shifts = (torch.rand(n, 3, generator=g, dtype=torch.float64) * 2 - 1) * shift_max
    defoci = _range(defocus, n, g, "defocus")
    seeds = torch.randint(0, 2**62, (n,), generator=g).tolist()

    tmpl = torch.from_numpy(np.stack([t.density for t in templates])).to(dev, torch.float32)
    out = torch.empty((n, box, box, box))
    clean_out = torch.empty((n, box, box, box)) if return_clean else None
    bar = tqdm(total=n, desc="simulate", unit="vol", disable=not progress)
    for start in range(0, n, batch_size):
        sl = slice(start, min(start + batch_size, n))
        x = rotate_volume(tmpl[labels[sl].to(dev)].unsqueeze(1), rots[sl].to(dev)).squeeze(1)
        noisy, clean = form_images(
            x,
            voxel_size=voxel_size,
            snr=snr_f,
            shifts=shifts[sl] if shift_max > 0 else None,
            defocus_um=defoci[sl] if defoci is not None else None,
            tilt_range=tilt_range,
            tilt_axis=tilt_axis,
            voltage_kv=voltage_kv,
            cs_mm=cs_mm,
            amplitude_contrast=amplitude_contrast,
            bfactor=bfactor,
            recipe=noise,
            seeds=seeds[sl],
        )
        out[sl] = noisy.cpu()
        if clean_out is not None:
            clean_out[sl] = clean.cpu()
        bar.update(sl.stop - sl.start)
    bar.close()

    euler = matrix_to_euler(rots.to(torch.float64)).numpy()
    names = [t.name for t in templates]
    meta = pd.DataFrame(
        {
            "id": subtomogram_ids(n, id_prefix),
            "label": [names[i] for i in labels.tolist()],
            "label_index": labels.numpy(),
            "rot": euler[:, 0],
            "tilt": euler[:, 1],
            "psi": euler[:, 2],
            "shift_x": shifts[:, 0].numpy(),
            "shift_y": shifts[:, 1].numpy(),
            "shift_z": shifts[:, 2].numpy(),
            "snr": snr_f,
            "defocus_um": defoci.numpy() if defoci is not None else np.nan,
            "voxel_size": float(voxel_size),
        }
    )
    return SimulatedSet(out, labels.to(torch.int64), names, meta, float(voxel_size), clean_out)

"""Crowded tomogram crops with a voxel label map, for the segmentation task.

A crop (e.g. 128³) is filled with non-overlapping particles of several classes at random
positions and uniform random orientations, optionally crossed by membrane-like sheets
(lipid bilayers: two Gaussian leaflets 4 nm apart), then imaged with the same physics as
the subtomograms (CTF, missing wedge, noise at an SNR measured over the whole crop).

Label map values: ``0`` background, ``1..C`` the particle classes in ``class_names``
order, ``C + 1`` membrane (when there are sheets). A particle's voxels are those where
its rotated template exceeds ``mask_threshold`` x its maximum.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from cryoal.errors import ConfigError
from cryoal.simulate._physics import check_recipe, form_images
from cryoal.simulate.structures import Structure, _fit_box
from cryoal.simulate.subtomograms import StructureLike, as_structures
from cryoal.transforms import matrix_to_euler, random_rotation, rotate_volume

__all__ = ["SimulatedTomogram", "simulate_tomogram"]

log = logging.getLogger(__name__)

_LEAFLET_SEPARATION = 40.0  # Å between the two leaflet centres
_LEAFLET_SIGMA = 8.0  # Å, standard deviation of each leaflet's head-group density
_MEMBRANE_HALF_THICKNESS = 30.0  # Å, half-width of the membrane label and exclusion zone


@dataclass
class SimulatedTomogram:
    """A simulated tomogram crop and its truth.

    Attributes
    ----------
    volume
        ``(D, H, W)`` float32 noisy tomogram.
    labels
        ``(D, H, W)`` int64 label map (0 background, 1..C classes, C+1 membrane).
    class_names
        Names of the label values, index = value: ``["background", *structures]`` plus
        ``"membrane"`` when sheets were requested.
    particles
        One row per particle: ``class_name, label, x, y, z`` (voxel centre),
        ``rot, tilt, psi`` (RELION ZYZ Euler, degrees), ``radius`` (voxels).
    voxel_size
        Voxel edge in Å.
    clean
        ``(D, H, W)`` noise-free tomogram (after CTF and wedge).
    """

    volume: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    particles: pd.DataFrame
    voxel_size: float
    clean: torch.Tensor | None = None


def _radius_vox(s: Structure) -> float:
    return max(1.0, s.radius / s.voxel_size)


def _check_fits(s: Structure, dims: tuple[int, ...], voxel_size: float) -> float:
    """The structure's radius in voxels; ConfigError when it does not fit the crop."""
    r = _radius_vox(s)
    if 2 * r + 2 > min(dims):
        raise ConfigError(
            f"structure {s.name} (radius {r * voxel_size / 10:.1f} nm) does not fit the "
            f"{dims} crop at {voxel_size} Å/voxel; use a larger crop or voxel size"
        )
    return r


def _membrane(
    shape: tuple[int, int, int], normal: np.ndarray, offset: float, voxel_size: float
) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance (Å) of every voxel to a plane, and its bilayer profile (peak 1)."""
    zz, yy, xx = np.indices(shape, dtype=np.float64)
    dist = (xx * normal[0] + yy * normal[1] + zz * normal[2] - offset) * voxel_size
    half = _LEAFLET_SEPARATION / 2
    profile = np.exp(-((dist - half) ** 2) / (2 * _LEAFLET_SIGMA**2)) + np.exp(
        -((dist + half) ** 2) / (2 * _LEAFLET_SIGMA**2)
    )
    return dist, profile


def simulate_tomogram(
    structures: Sequence[StructureLike],
    shape: int | tuple[int, int, int] = 128,
    voxel_size: float = 10.0,
    n_particles: int = 40,
    snr: float = 0.1,
    tilt_range: tuple[float, float] | None = (-60.0, 60.0),
    defocus: float | None = 5.0,
    membranes: int = 0,
    seed: int = 0,
    *,
    gap: float = 1.0,
    mask_threshold: float = 0.1,
    membrane_contrast: float = 0.5,
    tilt_axis: str = "y",
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    noise: str = "white",
    max_tries: int = 200,
    n_per_class: Sequence[int] | None = None,
    device: str | torch.device = "cpu",
) -> SimulatedTomogram:
    """Simulate one crowded tomogram crop with its voxel label map.

    Parameters
    ----------
    structures
        Bundled names, map/model paths or :class:`Structure` objects (one class each).
    shape
        Crop size ``(D, H, W)`` in voxels (an int for a cube).
    voxel_size
        Voxel edge in Å.
    n_particles
        Particles to place (classes drawn uniformly); fewer are placed, with a warning in
        the log, when the crop is too crowded after ``max_tries`` attempts each.
    snr
        SNR = var(signal) / var(noise) over the whole crop (``inf``: no noise).
    tilt_range, defocus
        Missing wedge (degrees) and underfocus (µm, positive); ``None`` to skip.
    membranes
        Number of planar bilayer sheets crossing the crop.
    seed
        Fixes every random draw.
    gap
        Minimum clearance between particle spheres, in voxels.
    mask_threshold
        Fraction of a template's maximum above which its voxels are labelled.
    membrane_contrast
        Peak density of a leaflet relative to the median template maximum.
    tilt_axis, voltage_kv, cs_mm, amplitude_contrast, noise, device
        As in :func:`cryoal.simulate.simulate_subtomograms`.
    max_tries
        Placement attempts per particle.
    n_per_class
        Particles to place per class, in ``structures`` order (replaces ``n_particles``
        and the uniform class draw); the largest classes are placed first, so a crowded
        crop loses small particles rather than large ones.

    Returns
    -------
    SimulatedTomogram

    Raises
    ------
    ConfigError
        Bad parameter, or a structure larger than the crop.
    """
    dims = (int(shape),) * 3 if isinstance(shape, int) else tuple(int(s) for s in shape)
    if len(dims) != 3 or min(dims) < 8:
        raise ConfigError(f"shape must be an int or (D, H, W), each >= 8 voxels, got {shape!r}")
    if n_particles < 0 or membranes < 0:
        raise ConfigError(f"n_particles and membranes must be >= 0, got {n_particles}, {membranes}")
    if n_per_class is not None:
        counts = [int(n) for n in n_per_class]
        if len(counts) != len(structures) or min(counts, default=0) < 0:
            raise ConfigError(
                f"n_per_class must give a count >= 0 for each of the {len(structures)} "
                f"structures, got {list(n_per_class)}"
            )
    snr_f = float(snr)
    if math.isnan(snr_f) or snr_f <= 0:
        raise ConfigError(f"snr must be positive (inf for no noise), got {snr}")
    check_recipe(noise)
    dev = torch.device(device)
    rng = np.random.default_rng(int(seed))
    g = torch.Generator().manual_seed(int(seed))

    # templates in their own (even) boxes, just large enough for the structure
    loaded = as_structures(structures, voxel_size, None)
    templates: list[Structure] = []
    radii: list[float] = []
    for s in loaded:
        r = _check_fits(s, dims, voxel_size)
        edge = 2 * math.ceil(r + 2)
        templates.append(Structure(s.name, _fit_box(s.density, edge), s.voxel_size, s.info))
        radii.append(r)
    n_cls = len(templates)
    names = [t.name for t in templates]

    vol = np.zeros(dims, dtype=np.float32)
    lab = np.zeros(dims, dtype=np.int64)
    peak = float(np.median([t.density.max() for t in templates]))

    planes: list[tuple[np.ndarray, float]] = []
    dists: list[np.ndarray] = []
    for _ in range(membranes):
        normal = rng.normal(size=3)
        normal /= np.linalg.norm(normal)
        centre = np.array(dims[::-1], dtype=np.float64) / 2 + rng.uniform(-0.3, 0.3, 3) * np.array(
            dims[::-1]
        )
        offset = float(normal @ centre)
        dist, profile = _membrane(dims, normal, offset, voxel_size)
        vol += (membrane_contrast * peak * profile).astype(np.float32)
        lab[np.abs(dist) <= _MEMBRANE_HALF_THICKNESS] = n_cls + 1
        planes.append((normal, offset))
        dists.append(dist)

    # rejection sampling of non-overlapping spheres (x, y, z voxel centres)
    placed: list[tuple[int, np.ndarray, float]] = []
    size_xyz = np.array(dims[::-1], dtype=np.float64)
    draws: list[int] | None = None
    if n_per_class is not None:
        largest_first = sorted(range(n_cls), key=lambda k: -radii[k])
        draws = [k for k in largest_first for _ in range(counts[k])]
        n_particles = len(draws)
    for i_draw in range(n_particles):
        c = draws[i_draw] if draws is not None else int(rng.integers(n_cls))
        r = radii[c]
        for _try in range(max_tries):
            p = np.rint(rng.uniform(r, size_xyz - 1 - r))
            if any(np.linalg.norm(p - q) < r + rq + gap for _, q, rq in placed):
                continue
            if any(
                abs(float(nrm @ p) - off) * voxel_size < r * voxel_size + _MEMBRANE_HALF_THICKNESS
                for nrm, off in planes
            ):
                continue
            placed.append((c, p, r))
            break
    if len(placed) < n_particles:
        log.warning("placed %d of %d particles: the crop is too crowded", len(placed), n_particles)

    rots = random_rotation(len(placed), generator=g) if placed else torch.zeros(0, 3, 3)
    euler = matrix_to_euler(rots.to(torch.float64)).numpy() if placed else np.zeros((0, 3))
    rows = []
    for c in range(n_cls):
        idx = [i for i, (ci, _, _) in enumerate(placed) if ci == c]
        if not idx:
            continue
        t = torch.from_numpy(templates[c].density).to(dev)
        batch = t.expand(len(idx), 1, *t.shape).contiguous()
        rotated = rotate_volume(batch, rots[idx].to(dev)).squeeze(1).cpu().numpy()
        e = t.shape[0]
        for j, i in enumerate(idx):
            p = placed[i][1].astype(int)  # x, y, z
            lo = p[::-1] - e // 2  # z, y, x
            src = [slice(max(0, -lo[a]), e - max(0, lo[a] + e - dims[a])) for a in range(3)]
            dst = [slice(max(0, lo[a]), min(dims[a], lo[a] + e)) for a in range(3)]
            piece = rotated[j][tuple(src)]
            vol[tuple(dst)] += piece
            region = lab[tuple(dst)]
            region[piece > mask_threshold * float(rotated[j].max())] = c + 1
            rows.append(
                {
                    "class_name": names[c],
                    "label": c + 1,
                    "x": int(p[0]),
                    "y": int(p[1]),
                    "z": int(p[2]),
                    "rot": float(euler[i, 0]),
                    "tilt": float(euler[i, 1]),
                    "psi": float(euler[i, 2]),
                    "radius": round(placed[i][2], 2),
                }
            )

    seeds = [int(torch.randint(0, 2**62, (1,), generator=g))]
    x = torch.from_numpy(vol).to(dev).unsqueeze(0)
    noisy, clean = form_images(
        x,
        voxel_size=voxel_size,
        snr=snr_f,
        shifts=None,
        defocus_um=torch.tensor([float(defocus)]) if defocus is not None else None,
        tilt_range=tilt_range,
        tilt_axis=tilt_axis,
        voltage_kv=voltage_kv,
        cs_mm=cs_mm,
        amplitude_contrast=amplitude_contrast,
        bfactor=0.0,
        recipe=noise,
        seeds=seeds,
    )
    class_names = ["background", *names] + (["membrane"] if membranes else [])
    cols = ["class_name", "label", "x", "y", "z", "rot", "tilt", "psi", "radius"]
    particles = pd.DataFrame(rows, columns=cols).sort_values(["z", "y", "x"], ignore_index=True)
    return SimulatedTomogram(
        noisy[0].cpu(),
        torch.from_numpy(lab),
        class_names,
        particles,
        float(voxel_size),
        clean[0].cpu(),
    )

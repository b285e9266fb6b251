"""Small real tomograms (MRC and OME-Zarr) and particle tables for the tomogram tests.

Written with mrcfile and zarr directly (not through cryoal), in the layout copick and
the CZ cryoET data portal use: an OME-Zarr group with ``multiscales`` metadata whose
datasets ``0``, ``1``, ... are the scale levels (``scale`` in Å, axes z, y, x).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import zarr

SHAPE = (64, 96, 96)  # (nz, ny, nx)
VOXEL = 10.0  # Å
BOX = 16


def tomogram_data(seed: int = 0, shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """``(nz, ny, nx)`` float32: smooth blobs on noise, distinct per seed."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    vol = rng.standard_normal(shape).astype(np.float32) * 0.1
    for _ in range(6):
        cz, cy, cx = (rng.uniform(8, n - 8) for n in shape)
        vol += np.exp(-((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) / 18.0).astype(np.float32)
    return vol


def write_mrc(path: Path, data: np.ndarray, voxel_size: float = VOXEL) -> Path:
    """An MRC tomogram written with plain mrcfile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(np.asarray(data, dtype=np.float32))
            mrc.voxel_size = voxel_size
    return path


def write_ome_zarr(
    path: Path,
    data: np.ndarray,
    voxel_size: float = VOXEL,
    *,
    levels: int = 2,
    chunks: tuple[int, int, int] = (32, 32, 32),
    unit: str = "angstrom",
) -> Path:
    """An OME-Zarr (NGFF 0.4) multiscale tomogram written with plain zarr (2x binning per level)."""
    group = zarr.open_group(str(path), mode="w")
    datasets = []
    level = np.asarray(data, dtype=np.float32)
    scale = voxel_size if unit == "angstrom" else voxel_size / 10.0
    for i in range(levels):
        group.create_dataset(str(i), data=level, chunks=chunks)
        datasets.append(
            {
                "path": str(i),
                "coordinateTransformations": [{"type": "scale", "scale": [scale * 2**i] * 3}],
            }
        )
        d, h, w = (s // 2 * 2 for s in level.shape)
        level = level[:d, :h, :w].reshape(d // 2, 2, h // 2, 2, w // 2, 2).mean(axis=(1, 3, 5))
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": a, "type": "space", "unit": unit} for a in "zyx"],
            "datasets": datasets,
        }
    ]
    return path


def particles_table(
    tomos: dict[str, tuple[int, int, int]],
    per_tomo: int = 12,
    *,
    voxel_size: float = VOXEL,
    margin: float = 10.0,
    seed: int = 0,
) -> pd.DataFrame:
    """A ParticleList-shaped table: ids ``TOMO:000000``..., x/y/z in Å inside each tomogram,
    at least ``margin`` voxels from every edge (so 16³ boxes do not reach past it)."""
    rng = np.random.default_rng(seed)
    rows = []
    for t, (nz, ny, nx) in tomos.items():
        for i in range(per_tomo):
            x, y, z = (rng.uniform(margin, n - 1 - margin) * voxel_size for n in (nx, ny, nz))
            rows.append({"id": f"{t}:{i:06d}", "tomo": t, "x": x, "y": y, "z": z})
    return pd.DataFrame(rows)


def write_copick_project(
    root: Path,
    *,
    runs: tuple[str, ...] = ("TS_01", "TS_02"),
    types: tuple[str, ...] = ("wbp",),
    picks: pd.DataFrame | None = None,
    user_id: str = "expert",
    session_id: str = "1",
    object_name: str = "ribosome",
) -> Path:
    """A filesystem copick project (config + overlay) written with the copick API: one
    tomogram per run and type at :data:`VOXEL`, and ``picks`` (``tomo, x, y, z`` Å) as
    points of ``object_name``."""
    from copick.models import CopickLocation, CopickPoint, PickableObject
    from copick.ops.add import add_tomogram
    from copick.ops.open import new_config

    config = root / "config.json"
    proj = new_config(
        str(config),
        str(root / "overlay"),
        pickable_objects=[
            PickableObject(name="ribosome", is_particle=True, label=1, radius=60),
            PickableObject(name="proteasome", is_particle=True, label=2, radius=50),
        ],
    )
    for k, run in enumerate(runs):
        for tt in types:
            add_tomogram(
                proj,
                run,
                tt,
                tomogram_data(k),
                voxel_spacing=VOXEL,
                create_pyramid=False,
                chunks=(32, 32, 32),
            )
    if picks is not None:
        for run in runs:
            rows = picks[picks["tomo"] == run]
            if rows.empty:
                continue
            p = proj.get_run(run).new_picks(object_name, session_id, user_id)
            p.points = [
                CopickPoint(location=CopickLocation(x=float(r.x), y=float(r.y), z=float(r.z)))
                for r in rows.itertuples()
            ]
            p.store()
    return config

"""Write simulated sets to disk in the layout every cryoal command reads.

Subtomograms (:func:`write_simulated`)::

    OUT/volumes/sub_00000.mrc ...   float32 MRC, voxel size in the header
    OUT/labels.csv, OUT/labels.star  id,label (ids = file names relative to OUT/volumes)
    OUT/metadata.csv                 rotation (ZYZ Euler, degrees), shift (voxels), SNR, defocus

so ``VolumePool.from_directory(OUT / "volumes").with_labels(OUT / "labels.csv")`` works.

Tomograms (:func:`write_tomogram`)::

    OUT/tomograms/NAME.mrc   OUT/label_maps/NAME.mrc (int16)   OUT/particles/NAME.csv
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryoal.simulate.subtomograms import SimulatedSet
from cryoal.simulate.tomograms import SimulatedTomogram

__all__ = ["write_simulated", "write_tomogram"]


def write_simulated(
    out_dir: str | Path,
    sim: SimulatedSet,
    voxel_size: float | None = None,
    *,
    progress: bool = False,
) -> Path:
    """Write a :class:`SimulatedSet` as MRC files plus labels and metadata tables.

    Parameters
    ----------
    out_dir
        Target folder (created).
    sim
        The simulated set.
    voxel_size
        Voxel size in Å for the MRC headers (default ``sim.voxel_size``).
    progress
        Show a progress bar.

    Returns
    -------
    Path
        ``out_dir``.
    """
    from tqdm.auto import tqdm

    from cryoal.io import write_labels, write_table, write_volume

    out = Path(out_dir)
    vdir = out / "volumes"
    vdir.mkdir(parents=True, exist_ok=True)
    vs = float(sim.voxel_size if voxel_size is None else voxel_size)
    vols = sim.volumes.numpy()
    for i, vid in enumerate(tqdm(sim.ids, desc="write", unit="vol", disable=not progress)):
        write_volume(vdir / vid, np.ascontiguousarray(vols[i]), vs)
    labels = sim.metadata[["id", "label"]]
    write_labels(out / "labels.csv", labels)
    write_labels(out / "labels.star", labels)
    write_table(out / "metadata.csv", sim.metadata)
    return out


def write_tomogram(out_dir: str | Path, tomo: SimulatedTomogram, name: str) -> Path:
    """Write one tomogram, its label map (int16 MRC) and its particle table.

    Parameters
    ----------
    out_dir
        Target folder (created).
    tomo
        The simulated tomogram.
    name
        File stem, e.g. ``"tomo_000"``.

    Returns
    -------
    Path
        Path of the tomogram MRC.
    """
    from cryoal.io import write_table, write_volume

    out = Path(out_dir)
    path = write_volume(out / "tomograms" / f"{name}.mrc", tomo.volume.numpy(), tomo.voxel_size)
    write_volume(
        out / "label_maps" / f"{name}.mrc", tomo.labels.numpy().astype(np.int16), tomo.voxel_size
    )
    write_table(out / "particles" / f"{name}.csv", tomo.particles)
    return path

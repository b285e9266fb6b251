"""write_simulated / write_tomogram: files a VolumePool reads back with matching ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryoal.io import VolumePool, read_labels, read_volume
from cryoal.simulate import SimulatedSet, simulate_tomogram, write_simulated, write_tomogram


def test_written_set_reads_back_as_a_labelled_pool(tmp_path: Path, small_set: SimulatedSet) -> None:
    write_simulated(tmp_path, small_set)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "labels.csv", "labels.star", "metadata.csv", "volumes",
    ]  # fmt: skip
    pool = VolumePool.from_directory(tmp_path / "volumes").with_labels(tmp_path / "labels.csv")
    assert pool.ids == small_set.ids
    assert pool.labels == small_set.metadata["label"].tolist()
    assert pool.voxel_size == 10.0 and pool.box == (24, 24, 24)
    np.testing.assert_array_equal(pool[3][0].numpy(), small_set.volumes[3].numpy())
    star = read_labels(tmp_path / "labels.star")
    assert star["id"].tolist() == small_set.ids
    meta = pd.read_csv(tmp_path / "metadata.csv")
    np.testing.assert_allclose(meta["rot"], small_set.metadata["rot"])


def test_tomogram_files(tmp_path: Path) -> None:
    tomo = simulate_tomogram(["3ENL"], 24, 10.0, n_particles=3, seed=0, membranes=1)
    path = write_tomogram(tmp_path, tomo, "tomo_000")
    vol = read_volume(path)
    assert vol.voxel_size == 10.0 and vol.data.shape == (24, 24, 24)
    labels = read_volume(tmp_path / "label_maps" / "tomo_000.mrc")
    np.testing.assert_array_equal(labels.data.astype(np.int64), tomo.labels.numpy())
    parts = pd.read_csv(tmp_path / "particles" / "tomo_000.csv")
    assert len(parts) == len(tomo.particles)

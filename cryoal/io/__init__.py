"""Subtomogram I/O: MRC and HDF5 volumes, label tables, the lazy VolumePool, and
TomogramPool (boxes cut from MRC / OME-Zarr tomograms at particle coordinates).

Everything here validates what it reads and raises :class:`cryoal.errors.InvalidVolumeError`
or :class:`cryoal.errors.InvalidLabelsError` with the file, row or id at fault. Writes
are atomic.
"""

from __future__ import annotations

from cryoal.io.base import Pool
from cryoal.io.hdf5 import HDF5_EXTENSIONS, Hdf5Volumes, is_hdf5_file, write_hdf5_pool
from cryoal.io.labels import read_labels, read_table, validate_labels, write_labels, write_table
from cryoal.io.mrc import (
    STACK_EXTENSIONS,
    VOLUME_EXTENSIONS,
    MrcHeader,
    Volume,
    is_volume_file,
    read_header,
    read_volume,
    write_volume,
)
from cryoal.io.particle_labels import (
    LabelMatch,
    labels_from_particles,
    match_labels,
    read_class_names,
    read_particle_labels,
)
from cryoal.io.particles import (
    PARTICLE_FORMATS,
    ParticleList,
    make_particle_ids,
    read_copick,
    read_csv_particles,
    read_dynamo,
    read_particles,
    read_relion4,
    read_relion5,
    read_relion_tomograms,
    sniff_particle_format,
    write_copick,
    write_csv_particles,
    write_particles,
    write_relion,
)
from cryoal.io.persist import load_pool
from cryoal.io.pool import PoolDataset, PoolSummary, VolumePool
from cryoal.io.tomograms import Tomogram, TomogramSet, open_tomograms
from cryoal.io.tomopool import TomogramPool, extract_box, open_tomogram_pool

__all__ = [
    "Pool",
    "load_pool",
    "Tomogram",
    "TomogramPool",
    "TomogramSet",
    "extract_box",
    "open_tomogram_pool",
    "open_tomograms",
    "LabelMatch",
    "labels_from_particles",
    "match_labels",
    "read_class_names",
    "read_particle_labels",
    "PARTICLE_FORMATS",
    "ParticleList",
    "make_particle_ids",
    "read_copick",
    "read_csv_particles",
    "read_dynamo",
    "read_particles",
    "read_relion4",
    "read_relion5",
    "read_relion_tomograms",
    "sniff_particle_format",
    "HDF5_EXTENSIONS",
    "STACK_EXTENSIONS",
    "VOLUME_EXTENSIONS",
    "Hdf5Volumes",
    "MrcHeader",
    "PoolDataset",
    "PoolSummary",
    "Volume",
    "VolumePool",
    "is_hdf5_file",
    "is_volume_file",
    "read_header",
    "read_labels",
    "read_table",
    "read_volume",
    "validate_labels",
    "write_hdf5_pool",
    "write_labels",
    "write_table",
    "write_copick",
    "write_csv_particles",
    "write_particles",
    "write_relion",
    "write_volume",
]

"""Simulated cryo-ET data with known truth, from real macromolecular structures.

- :func:`list_structures` / :func:`load_structure`: the bundled library of real PDB
  entries (density maps at 5 and 10 Å voxels) and user maps/models;
- :func:`density_from_atoms`: atoms -> density map (Gaussian or electron scattering
  factors);
- :func:`simulate_subtomograms`: labelled subtomograms (rotation, shift, CTF, missing
  wedge, noise at SNR), batched in torch;
- :func:`simulate_tomogram`: crowded crops with a voxel label map (segmentation);
- :func:`write_simulated` / :func:`write_tomogram`: the on-disk layout;
- :func:`simulate_copick_project`: a small copick project (OME-Zarr tomograms, true
  picks per object, optional RELION 5 STAR files), as ``cryoal simulate tomo-copick``.

See docs/simulation.md for the physics and conventions.
"""

from __future__ import annotations

from cryoal.simulate.copick_project import (
    COPICK_OBJECTS,
    SimulatedCopickProject,
    load_simulated_copick,
    simulate_copick_project,
)
from cryoal.simulate.density import density_from_atoms, resolution_sigma
from cryoal.simulate.structures import (
    DEFAULT_BENCHMARK_SET,
    Atoms,
    Structure,
    list_structures,
    load_structure,
    read_atoms,
    resample_map,
    structure_table,
)
from cryoal.simulate.subtomograms import SimulatedSet, simulate_subtomograms, subtomogram_ids
from cryoal.simulate.tomograms import SimulatedTomogram, simulate_tomogram
from cryoal.simulate.writer import write_simulated, write_tomogram

__all__ = [
    "COPICK_OBJECTS",
    "DEFAULT_BENCHMARK_SET",
    "Atoms",
    "SimulatedCopickProject",
    "SimulatedSet",
    "SimulatedTomogram",
    "Structure",
    "density_from_atoms",
    "list_structures",
    "load_simulated_copick",
    "load_structure",
    "read_atoms",
    "resample_map",
    "resolution_sigma",
    "simulate_copick_project",
    "simulate_subtomograms",
    "simulate_tomogram",
    "structure_table",
    "subtomogram_ids",
    "write_simulated",
    "write_tomogram",
]

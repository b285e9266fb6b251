"""A small simulated copick project: tomograms as OME-Zarr, ground-truth picks, RELION 5 copies.

:func:`simulate_copick_project` places particles of six real structures (the bundled
library) in a few crowded tomograms with :func:`cryoal.simulate.simulate_tomogram` (same
physics as the subtomograms: random orientations, CTF, missing wedge, noise at SNR) and
stores them the way copick stores a project, written with the ``copick`` API::

    OUT/copick_config.json       filesystem config: pickable_objects (name, label, radius Å,
                                 is_particle, pdb_id), overlay_root = OUT/overlay
    OUT/overlay/ExperimentRuns/TS_001/VoxelSpacing10.000/wbp.zarr
                                 OME-Zarr multiscale group "0", "1", "2" (bin 1, 2, 4)
    OUT/overlay/ExperimentRuns/TS_001/Picks/curation_0_ribosome.json
                                 ground-truth picks per object (user_id "curation")
    OUT/overlay/ExperimentRuns/TS_001/Picks/picker_0_particle.json
                                 unlabelled candidates: every particle, shuffled, centres
                                 off by ~0.5 voxel (as a picker would give), object
                                 "particle" (with ``candidates=True``)
    OUT/truth.csv                every particle: id, tomo, label, x, y, z (Å), rot, tilt,
                                 psi (RELION ZYZ, degrees), radius (Å)
    OUT/relion/tomograms.star    RELION 5 tomogram set (size, pixel size, optics, MRC path)
    OUT/relion/particles.star    RELION 5 particles (centred coordinates in Å, angles,
                                 rlnClassNumber and the object name as _cryoalLabel)
    OUT/relion/tomograms/TS_001.mrc   the tomograms as MRC (with ``relion=True``)
    OUT/config.json              run record (arguments, seed, versions)

Coordinates follow copick: Å from the centre of voxel 0, ``x_Å = x_px * voxel_size``,
``x`` along the last numpy axis. RELION 5 centred coordinates are ``x_Å - N_x / 2 *
voxel_size`` (RELION puts a tomogram's centre at half its size). Each pick's transform
holds the rotation ``R`` that turns the structure into the particle as placed (acting on
``x, y, z`` column vectors; RELION angles = :func:`cryoal.transforms.matrix_to_euler` of
``R``, as copick converts them) and a zero translation.

The project is built in a temporary folder beside ``OUT`` and renamed onto it at the end,
so an interrupted build leaves nothing at ``OUT``. The copick config names the overlay by
its absolute path: after moving the folder, edit ``overlay_root`` (or build again).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryoal.errors import ConfigError
from cryoal.io._copick import import_copick
from cryoal.simulate.structures import Structure
from cryoal.simulate.subtomograms import StructureLike, as_structures
from cryoal.simulate.tomograms import _check_fits, simulate_tomogram

__all__ = [
    "COPICK_OBJECTS",
    "SimulatedCopickProject",
    "load_simulated_copick",
    "simulate_copick_project",
]

log = logging.getLogger(__name__)

#: The six classes of the default project: copick object name -> bundled structure.
COPICK_OBJECTS: Mapping[str, str] = {
    "ribosome": "6ZU5",
    "chaperonin": "4V8R-A",
    "mtor": "4JSV",
    "ruvab": "7PBL",
    "glua3-ntd": "3O21",
    "enolase": "3ENL",
}

#: Object and user_id of the unlabelled candidate picks.
CANDIDATES = ("particle", "picker")
#: Standard deviation of the candidates' offset from the true centres, in voxels.
_CANDIDATE_JITTER = 0.5

#: Name of the copick configuration file inside the project folder.
CONFIG_NAME = "copick_config.json"

_COLORS = (
    (230, 25, 75, 255),
    (60, 180, 75, 255),
    (255, 225, 25, 255),
    (0, 130, 200, 255),
    (245, 130, 48, 255),
    (145, 30, 180, 255),
    (70, 240, 240, 255),
    (240, 50, 230, 255),
)


@dataclass(frozen=True)
class SimulatedCopickProject:
    """Where a simulated copick project lives and what it holds.

    Attributes
    ----------
    root
        The project folder.
    config
        ``root / "copick_config.json"``: open it with ``copick.from_file``.
    runs
        Run (tomogram) names, e.g. ``["TS_001", "TS_002"]``.
    objects
        One row per pickable object: ``name, label, radius`` (Å), ``structure``, ``count``.
    particles
        The ground truth, one row per particle: ``id`` (``"TS_001:000000"``), ``tomo``,
        ``label`` (object name), ``x, y, z`` (Å from the centre of voxel 0), ``rot, tilt,
        psi`` (RELION ZYZ Euler, degrees), ``radius`` (Å).
    voxel_size
        Voxel edge in Å.
    shape
        Tomogram shape ``(D, H, W)`` in voxels (``z, y, x``).
    tomo_type, user_id, session_id
        Copick tomogram type and the picks' author and session.
    candidates
        ``(object, user_id)`` of the unlabelled candidate picks (``("particle",
        "picker")``), or ``None``.
    relion
        ``root / "relion"`` when the RELION 5 copies were written, else ``None``.
    """

    root: Path
    config: Path
    runs: list[str]
    objects: pd.DataFrame
    particles: pd.DataFrame
    voxel_size: float
    shape: tuple[int, int, int]
    tomo_type: str
    user_id: str
    session_id: str
    relion: Path | None
    candidates: tuple[str, str] | None = None


def _check_name(kind: str, value: str) -> str:
    import_copick("copick names")
    from copick.util.escape import sanitize_name

    try:
        clean = sanitize_name(value, suppress_warnings=True)
    except ValueError as exc:
        raise ConfigError(f"{kind} {value!r} is not a valid copick name: {exc}") from exc
    if clean != value:
        raise ConfigError(
            f"{kind} {value!r} is not a valid copick name (no spaces, underscores or "
            f'<>:"/\\|?*); try {clean!r}'
        )
    return value


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _prepare_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(
            f"{out} exists and is not empty; choose a new folder, or overwrite it (--overwrite)"
        )


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` onto ``out`` (an old ``out`` is moved aside, then removed)."""
    old: Path | None = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rename(out, old / out.name)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_config(
    path: Path, overlay: Path, name: str, description: str, objects: pd.DataFrame
) -> None:
    """Write the copick filesystem config (what ``copick.ops.open.new_config`` writes)."""
    copick = import_copick("writing copick projects")
    from copick.models import PickableObject

    from cryoal._atomic import atomic_write_text

    pickable = [
        PickableObject(
            name=str(obj_name),
            is_particle=True,
            label=int(label),
            color=_COLORS[i % len(_COLORS)],
            pdb_id=str(pdb_id) or None,
            radius=float(radius),
        ).model_dump()
        for i, (obj_name, label, pdb_id, radius) in enumerate(
            zip(
                objects["name"].tolist(),
                objects["label"].tolist(),
                objects["pdb_id"].tolist(),
                objects["radius"].tolist(),
                strict=True,
            )
        )
    ]
    config = {
        "config_type": "filesystem",
        "name": name,
        "description": description,
        "version": copick.__version__,
        "pickable_objects": pickable,
        "overlay_root": f"local://{overlay}",
        "overlay_fs_args": {"auto_mkdir": True},
    }
    atomic_write_text(path, json.dumps(config, indent=4) + "\n")


def _relion_tables(
    truth: pd.DataFrame,
    runs: Sequence[str],
    labels: Mapping[str, int],
    shape: tuple[int, int, int],
    voxel_size: float,
    *,
    voltage_kv: float,
    cs_mm: float,
    amplitude_contrast: float,
    mrc_dir: str,
) -> tuple[dict[str, pd.DataFrame], dict[str, object]]:
    """RELION 5 ``tomograms.star`` and ``particles.star`` blocks for the truth table."""
    d, h, w = shape
    tomograms = pd.DataFrame(
        {
            "rlnTomoName": list(runs),
            "rlnVoltage": voltage_kv,
            "rlnSphericalAberration": cs_mm,
            "rlnAmplitudeContrast": amplitude_contrast,
            "rlnMicrographOriginalPixelSize": voxel_size,
            "rlnTomoHand": -1,
            "rlnTomoTiltSeriesPixelSize": voxel_size,
            "rlnTomoSizeX": w,
            "rlnTomoSizeY": h,
            "rlnTomoSizeZ": d,
            "rlnTomoTomogramBinning": 1.0,
            "rlnTomoReconstructedTomogram": [f"{mrc_dir}/{r}.mrc" for r in runs],
        }
    )
    centre = np.array([w, h, d], dtype=np.float64) / 2 * voxel_size
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["optics1"],
            "rlnVoltage": [voltage_kv],
            "rlnSphericalAberration": [cs_mm],
            "rlnAmplitudeContrast": [amplitude_contrast],
            "rlnTomoTiltSeriesPixelSize": [voxel_size],
        }
    )
    particles = pd.DataFrame(
        {
            "rlnTomoName": truth["tomo"].to_numpy(),
            "rlnCenteredCoordinateXAngst": truth["x"].to_numpy() - centre[0],
            "rlnCenteredCoordinateYAngst": truth["y"].to_numpy() - centre[1],
            "rlnCenteredCoordinateZAngst": truth["z"].to_numpy() - centre[2],
            "rlnAngleRot": truth["rot"].to_numpy(),
            "rlnAngleTilt": truth["tilt"].to_numpy(),
            "rlnAnglePsi": truth["psi"].to_numpy(),
            "rlnClassNumber": [labels[name] for name in truth["label"]],
            "rlnOpticsGroup": 1,
            "cryoalLabel": truth["label"].to_numpy(),
        }
    )
    general: dict[str, object] = {"rlnTomoSubTomosAre2DStacks": 1}
    return {"global": tomograms}, {"general": general, "optics": optics, "particles": particles}


def simulate_copick_project(
    out: str | Path,
    *,
    n_tomograms: int = 2,
    shape: int | tuple[int, int, int] = (96, 128, 128),
    voxel_size: float = 10.0,
    n_per_class: int | Sequence[int] = 12,
    objects: Mapping[str, StructureLike] | None = None,
    snr: float = 0.1,
    tilt_range: tuple[float, float] | None = (-60.0, 60.0),
    defocus: float | None = 5.0,
    tomo_type: str = "wbp",
    user_id: str = "curation",
    session_id: str = "0",
    pyramid_levels: int = 3,
    relion: bool = False,
    candidates: bool = True,
    seed: int = 0,
    name: str = "cryoal simulated copick project",
    overwrite: bool = False,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> SimulatedCopickProject:
    """Simulate tomograms with known particles and store them as a copick project.

    Parameters
    ----------
    out
        Project folder; must not exist or be empty (unless ``overwrite``).
    n_tomograms
        Runs to simulate, named ``TS_001``, ``TS_002``, ...
    shape
        Tomogram size ``(D, H, W)`` = ``(z, y, x)`` in voxels (an int for a cube).
    voxel_size
        Voxel edge in Å (the copick voxel spacing).
    n_per_class
        Particles per class and tomogram (one int for all, or one per object). Fewer are
        placed, with a warning in the log, when a tomogram is too crowded.
    objects
        Copick object name -> structure (bundled name, map/model path or
        :class:`~cryoal.simulate.Structure`); default :data:`COPICK_OBJECTS` (six bundled
        structures from 37 to 140 Å radius). Names must be valid copick names.
    snr
        SNR = var(signal) / var(noise) over each whole tomogram (``inf``: no noise).
    tilt_range, defocus
        Missing wedge (degrees) and underfocus (µm); ``None`` to skip.
    tomo_type
        Copick tomogram type (``"wbp"``, ``"denoised"``, ...).
    user_id, session_id
        Author and session of the ground-truth picks.
    pyramid_levels
        OME-Zarr scale levels (bin 1, 2, 4, ...).
    relion
        Also write ``relion/`` (RELION 5 tomograms.star, particles.star, MRC tomograms).
    candidates
        Also write unlabelled candidate picks of every particle (object ``"particle"``,
        user ``"picker"``), in random order and ~0.5 voxel off the true centres: the
        input of a classification (``cryoal select --copick ... --object particle``).
    seed
        Fixes every random draw: the same seed gives identical tomograms and picks.
    name
        Project name in the copick config.
    overwrite
        Replace an existing non-empty ``out`` (only once the new project is complete).
    voltage_kv, cs_mm, amplitude_contrast
        Microscope (CTF and the RELION optics).
    device
        Torch device for the simulation.
    progress
        Show a progress bar over the tomograms.

    Returns
    -------
    SimulatedCopickProject

    Raises
    ------
    ConfigError
        A bad parameter, an invalid copick name, a structure larger than the tomogram, or
        ``out`` not empty.
    """
    from tqdm.auto import tqdm

    out_path = Path(out).expanduser().absolute()
    if int(n_tomograms) < 1:
        raise ConfigError(f"n_tomograms must be >= 1, got {n_tomograms}")
    if int(pyramid_levels) < 1:
        raise ConfigError(f"pyramid_levels must be >= 1, got {pyramid_levels}")
    vs = float(voxel_size)
    if not math.isfinite(vs) or vs <= 0:
        raise ConfigError(f"voxel_size must be a positive number of Å, got {voxel_size}")
    mapping = dict(COPICK_OBJECTS if objects is None else objects)
    if not mapping:
        raise ConfigError("objects must name at least one structure")
    names = [_check_name("object name", str(n)) for n in mapping]
    _check_name("tomo_type", tomo_type)
    _check_name("user_id", user_id)
    _check_name("session_id", session_id)
    counts = (
        [int(n_per_class)] * len(names)
        if isinstance(n_per_class, (int, np.integer))
        else [int(n) for n in n_per_class]
    )
    if len(counts) != len(names) or min(counts) < 0:
        raise ConfigError(
            f"n_per_class must be an int >= 0 or one per object ({len(names)}), got {n_per_class}"
        )
    dims = (int(shape),) * 3 if isinstance(shape, int) else tuple(int(s) for s in shape)
    if len(dims) != 3:
        raise ConfigError(f"shape must be an int or (D, H, W), got {shape!r}")
    _prepare_target(out_path, overwrite)

    structures: list[Structure] = as_structures(list(mapping.values()), vs, None)
    for s in structures:
        _check_fits(s, dims, vs)
    objects_table = pd.DataFrame(
        {
            "name": names,
            "label": range(1, len(names) + 1),
            "radius": [round(float(s.radius), 1) for s in structures],
            "structure": [s.name for s in structures],
            "pdb_id": [str(s.info.get("pdb_id") or "") for s in structures],
        }
    )
    labels = dict(zip(names, objects_table["label"], strict=True))
    if candidates and CANDIDATES[0] in names:
        raise ConfigError(f"object name {CANDIDATES[0]!r} is taken by the candidate picks")
    config_objects = objects_table
    if candidates:
        extra = {
            "name": CANDIDATES[0],
            "label": len(names) + 1,
            "radius": float(objects_table["radius"].max()),
            "structure": "",
            "pdb_id": "",
        }
        config_objects = pd.concat([objects_table, pd.DataFrame([extra])], ignore_index=True)
    runs = [f"TS_{i + 1:03d}" for i in range(int(n_tomograms))]
    seeds = np.random.SeedSequence(int(seed)).generate_state(len(runs))

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.tmp-", dir=out_path.parent))
    try:
        copick = import_copick("writing copick projects")

        overlay = tmp / "overlay"
        description = (
            f"{len(runs)} simulated tomograms {dims[2]}x{dims[1]}x{dims[0]} at {vs:g} Å, "
            f"{len(names)} classes, SNR {snr:g}, seed {seed} (cryoal simulate tomo-copick)"
        )
        _write_config(tmp / CONFIG_NAME, overlay, name, description, config_objects)
        root = copick.from_file(str(tmp / CONFIG_NAME))
        truth_parts: list[pd.DataFrame] = []
        volumes: list[np.ndarray] = []
        for run_name, run_seed in zip(
            tqdm(runs, desc="tomograms", unit="tomo", disable=not progress), seeds, strict=True
        ):
            tomo = simulate_tomogram(
                structures,
                dims,
                voxel_size=vs,
                snr=snr,
                tilt_range=tilt_range,
                defocus=defocus,
                seed=int(run_seed),
                n_per_class=counts,
                voltage_kv=voltage_kv,
                cs_mm=cs_mm,
                amplitude_contrast=amplitude_contrast,
                device=device,
            )
            volume = np.ascontiguousarray(tomo.volume.numpy(), dtype=np.float32)
            run = root.new_run(run_name)
            spacing = run.new_voxel_spacing(vs)
            spacing.new_tomogram(tomo_type).from_numpy(volume, levels=int(pyramid_levels))
            table = _truth_rows(tomo.particles, run_name, names, vs)
            for obj in names:
                rows = table[table["label"] == obj]
                picks = run.new_picks(obj, session_id, user_id)
                picks.from_numpy(rows[["x", "y", "z"]].to_numpy(), _transforms(rows))
            if candidates:
                jitter = np.random.default_rng([int(seed), len(truth_parts), 1])
                order = jitter.permutation(len(table))
                xyz = table[["x", "y", "z"]].to_numpy()[order]
                xyz = xyz + jitter.normal(0.0, _CANDIDATE_JITTER * vs, xyz.shape)
                run.new_picks(CANDIDATES[0], "0", CANDIDATES[1]).from_numpy(xyz)
            truth_parts.append(table)
            volumes.append(volume)
        truth = pd.concat(truth_parts, ignore_index=True)
        objects_table["count"] = [int((truth["label"] == n).sum()) for n in names]
        _write_outputs(
            tmp,
            truth,
            runs,
            volumes,
            labels,
            dims,
            vs,
            relion=relion,
            voltage_kv=voltage_kv,
            cs_mm=cs_mm,
            amplitude_contrast=amplitude_contrast,
        )
        # the config must name the overlay where it will live, not the temporary folder
        _write_config(tmp / CONFIG_NAME, out_path / "overlay", name, description, config_objects)
        from cryoal.runtime import write_run_config

        write_run_config(
            tmp / "config.json",
            {
                "command": "simulate tomo-copick",
                "out": str(out_path),
                "n_tomograms": len(runs),
                "shape": list(dims),
                "voxel_size": vs,
                "objects": {n: s.name for n, s in zip(names, structures, strict=True)},
                "n_per_class": counts,
                "snr": snr,
                "tilt_range": tilt_range,
                "defocus_um": defocus,
                "tomo_type": tomo_type,
                "user_id": user_id,
                "session_id": session_id,
                "relion": relion,
                "candidates": candidates,
                "device": str(device),
            },
            seed=int(seed),
        )
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp made it owner-only
        _swap_into_place(tmp, out_path)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    log.debug("wrote copick project %s (%d runs, %d particles)", out_path, len(runs), len(truth))
    return SimulatedCopickProject(
        root=out_path,
        config=out_path / CONFIG_NAME,
        runs=runs,
        objects=objects_table.drop(columns="pdb_id"),
        particles=truth,
        voxel_size=vs,
        shape=(dims[0], dims[1], dims[2]),
        tomo_type=tomo_type,
        user_id=user_id,
        session_id=session_id,
        relion=out_path / "relion" if relion else None,
        candidates=CANDIDATES if candidates else None,
    )


def _truth_rows(
    particles: pd.DataFrame, run_name: str, names: Sequence[str], voxel_size: float
) -> pd.DataFrame:
    """The simulator's particle table (voxels) as truth rows in Å, ids ``RUN:000000``."""
    table = pd.DataFrame(
        {
            "id": [f"{run_name}:{i:06d}" for i in range(len(particles))],
            "tomo": run_name,
            "label": [names[int(v) - 1] for v in particles["label"]],
            "x": particles["x"].to_numpy(np.float64) * voxel_size,
            "y": particles["y"].to_numpy(np.float64) * voxel_size,
            "z": particles["z"].to_numpy(np.float64) * voxel_size,
            "rot": particles["rot"].to_numpy(np.float64),
            "tilt": particles["tilt"].to_numpy(np.float64),
            "psi": particles["psi"].to_numpy(np.float64),
            "radius": particles["radius"].to_numpy(np.float64) * voxel_size,
        }
    )
    return table


def _transforms(rows: pd.DataFrame) -> np.ndarray:
    """``(N, 4, 4)`` copick transforms: the particles' rotations, zero translation."""
    from cryoal.transforms import euler_to_matrix

    angles = torch.from_numpy(np.array(rows[["rot", "tilt", "psi"]], dtype=np.float64))
    out = np.tile(np.eye(4), (len(rows), 1, 1))
    if len(rows):
        out[:, :3, :3] = euler_to_matrix(angles).numpy()
    return out


def _write_outputs(
    tmp: Path,
    truth: pd.DataFrame,
    runs: Sequence[str],
    volumes: Sequence[np.ndarray],
    labels: Mapping[str, int],
    dims: tuple[int, ...],
    voxel_size: float,
    *,
    relion: bool,
    voltage_kv: float,
    cs_mm: float,
    amplitude_contrast: float,
) -> None:
    from cryoal._atomic import atomic_write_text

    atomic_write_text(tmp / "truth.csv", truth.to_csv(index=False, float_format="%.10g"))
    if not relion:
        return
    import starfile

    from cryoal.io import write_volume

    rdir = tmp / "relion"
    for run_name, volume in zip(runs, volumes, strict=True):
        write_volume(rdir / "tomograms" / f"{run_name}.mrc", volume, voxel_size)
    tomograms, particles = _relion_tables(
        truth,
        runs,
        labels,
        (int(dims[0]), int(dims[1]), int(dims[2])),
        voxel_size,
        voltage_kv=voltage_kv,
        cs_mm=cs_mm,
        amplitude_contrast=amplitude_contrast,
        mrc_dir="tomograms",
    )
    starfile.write(tomograms, rdir / "tomograms.star")
    starfile.write(particles, rdir / "particles.star")


def load_simulated_copick(root: str | Path) -> SimulatedCopickProject:
    """Open a project that :func:`simulate_copick_project` wrote (without simulating).

    Raises
    ------
    ConfigError
        ``root`` is not such a project (a file is missing or unreadable).
    """
    base = Path(root).expanduser().absolute()
    try:
        record = json.loads((base / "config.json").read_text(encoding="utf-8"))
        config = json.loads((base / CONFIG_NAME).read_text(encoding="utf-8"))
        dtypes: dict[str, str] = {"id": "str", "tomo": "str", "label": "str"}
        dtypes.update(dict.fromkeys(("x", "y", "z", "rot", "tilt", "psi", "radius"), "float64"))
        truth = pd.read_csv(base / "truth.csv", dtype=dtypes)
        args = record["arguments"]
        structures = dict(args["objects"])
        shape = tuple(int(v) for v in args["shape"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{base} is not a project of 'cryoal simulate tomo-copick': {exc}"
        ) from exc
    with_candidates = bool(args.get("candidates", False))
    listed = [o for o in config["pickable_objects"] if str(o["name"]) in structures]
    names = [str(o["name"]) for o in listed]
    objects = pd.DataFrame(
        {
            "name": names,
            "label": [int(o["label"]) for o in listed],
            "radius": [float(o["radius"]) for o in listed],
            "structure": [structures.get(n, "") for n in names],
            "count": [int((truth["label"] == n).sum()) for n in names],
        }
    )
    relion = base / "relion"
    return SimulatedCopickProject(
        root=base,
        config=base / CONFIG_NAME,
        runs=[f"TS_{i + 1:03d}" for i in range(int(args["n_tomograms"]))],
        objects=objects,
        particles=truth,
        voxel_size=float(args["voxel_size"]),
        shape=(shape[0], shape[1], shape[2]),
        tomo_type=str(args["tomo_type"]),
        user_id=str(args["user_id"]),
        session_id=str(args["session_id"]),
        relion=relion if (relion / "particles.star").is_file() else None,
        candidates=CANDIDATES if with_candidates else None,
    )

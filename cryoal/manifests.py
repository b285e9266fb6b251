"""Dataset manifests: YAML recipes for simulated sets and descriptions of external ones.

A manifest is one YAML mapping. Three kinds exist (``kind:``):

``subtomograms``
    A labelled subtomogram pool simulated from structures::

        name: demo
        kind: subtomograms
        description: ...
        seed: 0                      # default seed (the command line's --seed wins)
        structures: [6ZU5, 4V8R-A]   # bundled names, or {name: X, path: my.mrc|my.cif, chains: [A]}
        box: 32                      # voxels
        voxel_size: 10.0             # Å
        n_per_class: 24              # or one count per structure
        snr: 0.5                     # or a list: one set per level under OUT/snr-<v>/; .inf = no noise
        tilt_range: [-60, 60]        # degrees, null = no wedge
        tilt_axis: y
        defocus_um: 5.0              # µm underfocus (positive), [low, high], or null = no CTF
        voltage_kv: 300
        cs_mm: 2.7
        amplitude_contrast: 0.07
        shift_max: 1.0               # voxels
        noise: two-stage             # or white
        test: {n_per_class: 8}       # optional held-out split written to OUT/test/

``tomograms``
    Crowded crops with voxel label maps (segmentation): ``structures, shape, voxel_size,
    n_tomograms, n_particles, membranes, snr, tilt_range, defocus_um, noise`` and an
    optional ``test: {n_tomograms: N}``.

``external``
    A real data set users download themselves; cryoal never downloads anything. The
    manifest lists the expected layout, and checksums where known, for ``verify``::

        files:
          - path: model_0/reconstruction.mrc   # exact file (optional sha256, size)
          - glob: "model_*/class_mask.mrc"      # pattern with min_count

Paths of user structures are relative to the manifest file. Every error is a
:class:`~cryoal.errors.ManifestError` naming the file and the key at fault.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import importlib.resources
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from cryoal._atomic import atomic_write_text
from cryoal.errors import ManifestError

__all__ = [
    "KINDS",
    "BuildResult",
    "Manifest",
    "VerifyReport",
    "build",
    "list_manifests",
    "load_manifest",
    "parse_manifest",
    "verify",
    "write_checksums",
]

log = logging.getLogger(__name__)

KINDS = ("subtomograms", "tomograms", "external")

_COMMON: dict[str, Any] = {"name": None, "kind": None, "description": "", "seed": 0, "notes": ""}
_PHYSICS: dict[str, Any] = {
    "structures": None,
    "voxel_size": 10.0,
    "snr": 0.1,
    "tilt_range": [-60.0, 60.0],
    "tilt_axis": "y",
    "defocus_um": 5.0,
    "voltage_kv": 300.0,
    "cs_mm": 2.7,
    "amplitude_contrast": 0.07,
    "noise": "two-stage",
}
_DEFAULTS: dict[str, dict[str, Any]] = {
    "subtomograms": {
        **_COMMON,
        **_PHYSICS,
        "box": 32,
        "n_per_class": 24,
        "shift_max": 0.0,
        "bfactor": 0.0,
        "test": None,
    },
    "tomograms": {
        **_COMMON,
        **_PHYSICS,
        "shape": [64, 64, 64],
        "n_tomograms": 1,
        "n_particles": 30,
        "membranes": 0,
        "test": None,
    },
    "external": {
        **_COMMON,
        "url": "",
        "citation": "",
        "license": "",
        "layout": "",
        "files": None,
    },
}
_TEST_KEYS = {"subtomograms": {"n_per_class"}, "tomograms": {"n_tomograms"}}
_FILE_KEYS = {"path", "glob", "sha256", "size", "min_count", "description"}
_STRUCTURE_KEYS = {"name", "path", "chains"}


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: ``spec`` holds every key, defaults filled in."""

    name: str
    kind: str
    spec: dict[str, Any]
    source: str
    text: str

    @property
    def description(self) -> str:
        return str(self.spec.get("description", "")).strip()


# ----------------------------------------------------------------------------- loading


def _bundled_dir() -> Any:
    return importlib.resources.files("cryoal.data_manifests")


def list_manifests() -> list[str]:
    """Names of the bundled manifests (``demo``, ``snr-benchmark``, ...), sorted."""
    return sorted(
        p.name[: -len(".yaml")] for p in _bundled_dir().iterdir() if p.name.endswith(".yaml")
    )


def load_manifest(name_or_path: str | Path) -> Manifest:
    """Load and validate a manifest by bundled name or from a YAML file.

    A bundled name (``demo``, ...) wins over a folder of the same name in the working
    directory. The argument is read as a file when it is an existing file, or when it is
    clearly a path: a ``.yaml``/``.yml`` suffix, a directory separator, a leading ``.``
    or ``~``, or a :class:`~pathlib.Path` object.

    Raises
    ------
    ManifestError
        The name is unknown (with the closest names), the file is missing, a folder,
        unreadable or not YAML, or a key breaks the schema.
    """
    text_name = str(name_or_path)
    path = Path(text_name).expanduser()
    names = list_manifests()
    looks_like_path = (
        isinstance(name_or_path, Path)
        or path.suffix in (".yaml", ".yml")
        or any(sep in text_name for sep in ("/", "\\", os.sep))
        or text_name.startswith((".", "~"))
    )
    if path.is_file() or (looks_like_path and text_name not in names):
        if not path.is_file():
            what = (
                "is a folder, not a manifest file" if path.is_dir() else "manifest file not found"
            )
            raise ManifestError(f"{path}: {what}")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{path}: cannot read manifest: {exc}") from exc
        return parse_manifest(text, source=str(path), base_dir=path.parent)
    if text_name not in names:
        close = difflib.get_close_matches(text_name, names, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        folder = (
            " (a folder of that name exists, but a manifest is a file)" if path.is_dir() else ""
        )
        raise ManifestError(
            f"unknown manifest {text_name!r}: not a bundled name and not a .yaml file{folder}."
            f"{hint} Bundled: {', '.join(names)} (cryoal simulate --list)"
        )
    text = (_bundled_dir() / f"{text_name}.yaml").read_text(encoding="utf-8")
    return parse_manifest(text, source=f"{text_name}.yaml (bundled)", base_dir=None)


def parse_manifest(
    text: str, *, source: str = "<string>", base_dir: Path | None = None
) -> Manifest:
    """Parse and validate manifest YAML text; see the module docstring for the schema.

    ``base_dir`` resolves relative structure paths (default: the working directory).
    """
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ManifestError(
            f"{source}: a manifest must be a YAML mapping of keys, got {type(raw).__name__}"
        )
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ManifestError(f"{source}: key 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    defaults = _DEFAULTS[kind]
    for key in raw:
        if key not in defaults:
            close = difflib.get_close_matches(str(key), list(defaults), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ManifestError(f"{source}: unknown key '{key}' for kind '{kind}'.{hint}")
    spec = copy.deepcopy(defaults)
    spec.update(raw)
    v = _Validator(source, base_dir)
    spec["name"] = v.string(spec, "name", required=True)
    spec["description"] = v.string(spec, "description")
    spec["seed"] = v.integer(spec, "seed", minimum=0)
    if kind == "external":
        spec["files"] = v.files(spec)
    else:
        spec["structures"] = v.structures(spec)
        spec["voxel_size"] = v.number(spec, "voxel_size", positive=True)
        spec["snr"] = v.snr(spec)
        spec["tilt_range"] = v.tilt_range(spec)
        spec["tilt_axis"] = v.choice(spec, "tilt_axis", ("x", "y"))
        spec["defocus_um"] = v.defocus(spec)
        spec["voltage_kv"] = v.number(spec, "voltage_kv", positive=True)
        spec["cs_mm"] = v.number(spec, "cs_mm", minimum=0.0)
        spec["amplitude_contrast"] = v.number(spec, "amplitude_contrast", minimum=0.0, below=1.0)
        spec["noise"] = v.choice(spec, "noise", ("white", "two-stage"))
        spec["test"] = v.test(spec, _TEST_KEYS[kind])
    if kind == "subtomograms":
        spec["box"] = v.integer(spec, "box", minimum=4)
        spec["n_per_class"] = v.counts(spec, "n_per_class", len(spec["structures"]))
        spec["shift_max"] = v.number(spec, "shift_max", minimum=0.0)
        spec["bfactor"] = v.number(spec, "bfactor", minimum=0.0)
    elif kind == "tomograms":
        spec["shape"] = v.shape(spec)
        spec["n_tomograms"] = v.integer(spec, "n_tomograms", minimum=1)
        spec["n_particles"] = v.integer(spec, "n_particles", minimum=0)
        spec["membranes"] = v.integer(spec, "membranes", minimum=0)
    return Manifest(spec["name"], kind, spec, source, text)


class _Validator:
    """Type checks with messages that name the file and the key."""

    def __init__(self, source: str, base_dir: Path | None) -> None:
        self.source = source
        self.base_dir = base_dir

    def fail(self, key: str, what: str) -> ManifestError:
        return ManifestError(f"{self.source}: key '{key}' {what}")

    def string(self, spec: dict[str, Any], key: str, *, required: bool = False) -> str:
        val = spec.get(key)
        if val is None or val == "":
            if required:
                raise self.fail(key, "is required (a short name)")
            return ""
        if not isinstance(val, str):
            raise self.fail(key, f"must be text, got {val!r}")
        return val

    def number(
        self,
        spec: dict[str, Any],
        key: str,
        *,
        positive: bool = False,
        minimum: float | None = None,
        below: float | None = None,
    ) -> float:
        val = spec.get(key)
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val):
            raise self.fail(key, f"must be a finite number, got {val!r}")
        if positive and val <= 0:
            raise self.fail(key, f"must be > 0, got {val}")
        if minimum is not None and val < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {val}")
        if below is not None and val >= below:
            raise self.fail(key, f"must be < {below}, got {val}")
        return float(val)

    def integer(self, spec: dict[str, Any], key: str, *, minimum: int = 0) -> int:
        val = spec.get(key)
        if isinstance(val, bool) or not isinstance(val, int):
            raise self.fail(key, f"must be an integer, got {val!r}")
        if val < minimum:
            raise self.fail(key, f"must be >= {minimum}, got {val}")
        return int(val)

    def choice(self, spec: dict[str, Any], key: str, options: tuple[str, ...]) -> str:
        val = spec.get(key)
        if val not in options:
            raise self.fail(key, f"must be one of {', '.join(options)}, got {val!r}")
        return str(val)

    def counts(self, spec: dict[str, Any], key: str, n_classes: int) -> int | list[int]:
        val = spec.get(key)
        if isinstance(val, list):
            if len(val) != n_classes or not all(
                isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in val
            ):
                raise self.fail(
                    key,
                    f"must be one non-negative integer per structure ({n_classes}), got {val!r}",
                )
            return [int(c) for c in val]
        return self.integer(spec, key, minimum=1)

    def snr(self, spec: dict[str, Any]) -> float | list[float]:
        val = spec.get("snr")
        items = val if isinstance(val, list) else [val]
        out: list[float] = []
        for item in items:
            x = item
            if isinstance(item, str) and item.strip().lower() in ("inf", ".inf", "infinity"):
                x = math.inf
            if isinstance(x, bool) or not isinstance(x, (int, float)) or math.isnan(x) or x <= 0:
                raise self.fail(
                    "snr", f"must be a positive number, .inf, or a list of them; got {item!r}"
                )
            out.append(float(x))
        if not out:
            raise self.fail("snr", "is an empty list; give at least one SNR")
        return out if isinstance(val, list) else out[0]

    def tilt_range(self, spec: dict[str, Any]) -> list[float] | None:
        val = spec.get("tilt_range")
        if val is None:
            return None
        ok = (
            isinstance(val, list)
            and len(val) == 2
            and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in val)
            and -90 <= val[0] <= val[1] <= 90
        )
        if not ok:
            raise self.fail(
                "tilt_range", f"must be [min, max] degrees within [-90, 90] or null, got {val!r}"
            )
        return [float(val[0]), float(val[1])]

    def defocus(self, spec: dict[str, Any]) -> float | list[float] | None:
        val = spec.get("defocus_um")
        if val is None:
            return None
        if isinstance(val, list):
            if (
                len(val) != 2
                or not all(
                    isinstance(a, (int, float)) and not isinstance(a, bool) and a > 0 for a in val
                )
                or val[0] > val[1]
            ):
                raise self.fail(
                    "defocus_um", f"must be µm underfocus > 0 or [low, high], got {val!r}"
                )
            return [float(val[0]), float(val[1])]
        if isinstance(val, bool) or not isinstance(val, (int, float)) or val <= 0:
            raise self.fail(
                "defocus_um",
                f"must be a positive underfocus in µm (aitom's '-5 µm' is 5 here), [low, high] or null; got {val!r}",
            )
        return float(val)

    def shape(self, spec: dict[str, Any]) -> list[int]:
        val = spec.get("shape")
        if isinstance(val, int) and not isinstance(val, bool):
            val = [val] * 3
        if not (
            isinstance(val, list)
            and len(val) == 3
            and all(isinstance(a, int) and not isinstance(a, bool) and a >= 8 for a in val)
        ):
            raise self.fail(
                "shape", f"must be an integer or [D, H, W], each >= 8 voxels, got {val!r}"
            )
        return [int(a) for a in val]

    def test(self, spec: dict[str, Any], keys: set[str]) -> dict[str, Any] | None:
        val = spec.get("test")
        if val is None:
            return None
        if not isinstance(val, dict):
            raise self.fail(
                "test", f"must be a mapping such as {{{sorted(keys)[0]}: 8}} or null, got {val!r}"
            )
        for k in val:
            if k not in keys:
                raise self.fail(
                    f"test.{k}", f"is not a key of a test split; use {', '.join(sorted(keys))}"
                )
        out = {}
        for k in keys:
            if k not in val:
                raise self.fail(f"test.{k}", "is required in the test split")
            out[k] = (
                self.integer(val, k, minimum=1)
                if k != "n_per_class"
                else self.counts(val, k, len(spec["structures"]))
            )
        return out

    def structures(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        from cryoal.simulate.structures import list_structures

        val = spec.get("structures")
        if not isinstance(val, list) or not val:
            raise self.fail(
                "structures", "must be a non-empty list of bundled names or {name, path} entries"
            )
        bundled = {n.upper(): n for n in list_structures()}
        out: list[dict[str, Any]] = []
        for i, item in enumerate(val):
            key = f"structures[{i}]"
            if isinstance(item, str):
                if item.upper() not in bundled:
                    close = difflib.get_close_matches(item.upper(), list(bundled), n=1)
                    hint = f" Did you mean '{bundled[close[0]]}'?" if close else ""
                    raise self.fail(
                        key,
                        f"names unknown structure {item!r}.{hint} Bundled: {', '.join(sorted(bundled.values()))}",
                    )
                out.append({"name": bundled[item.upper()], "path": None, "chains": None})
                continue
            if not isinstance(item, dict) or "name" not in item:
                raise self.fail(
                    key, f"must be a bundled name or a mapping with 'name' and 'path', got {item!r}"
                )
            for k in item:
                if k not in _STRUCTURE_KEYS:
                    raise self.fail(
                        f"{key}.{k}",
                        f"is not a structure key; use {', '.join(sorted(_STRUCTURE_KEYS))}",
                    )
            path = item.get("path")
            if path is None:
                if str(item["name"]).upper() not in bundled:
                    raise self.fail(
                        key, f"structure {item['name']!r} is not bundled and has no 'path'"
                    )
                out.append({"name": str(item["name"]), "path": None, "chains": None})
                continue
            p = Path(str(path))
            if not p.is_absolute() and self.base_dir is not None:
                p = self.base_dir / p
            if not p.is_file():
                raise self.fail(f"{key}.path", f"points to {p}, which does not exist")
            chains = item.get("chains")
            if chains is not None and not (
                isinstance(chains, list) and all(isinstance(c, str) for c in chains)
            ):
                raise self.fail(f"{key}.chains", f"must be a list of chain names, got {chains!r}")
            out.append({"name": str(item["name"]), "path": str(p), "chains": chains})
        names = [s["name"] for s in out]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise self.fail(
                "structures", f"lists {dup} more than once; class names must be distinct"
            )
        return out

    def files(self, spec: dict[str, Any]) -> list[dict[str, Any]]:
        val = spec.get("files")
        if not isinstance(val, list) or not val:
            raise self.fail(
                "files", "must be a non-empty list of {path: ...} or {glob: ..., min_count: N}"
            )
        out = []
        for i, item in enumerate(val):
            key = f"files[{i}]"
            if not isinstance(item, dict) or ("path" in item) == ("glob" in item):
                raise self.fail(
                    key, f"must be a mapping with exactly one of 'path' or 'glob', got {item!r}"
                )
            for k in item:
                if k not in _FILE_KEYS:
                    raise self.fail(
                        f"{key}.{k}", f"is not a file key; use {', '.join(sorted(_FILE_KEYS))}"
                    )
            sha = item.get("sha256")
            if sha is not None and not (
                isinstance(sha, str)
                and len(sha) == 64
                and all(c in "0123456789abcdef" for c in sha.lower())
            ):
                raise self.fail(f"{key}.sha256", f"must be 64 hex digits or null, got {sha!r}")
            entry = {
                "path": item.get("path"),
                "glob": item.get("glob"),
                "sha256": sha.lower() if isinstance(sha, str) else None,
                "size": self.integer(item, "size", minimum=0)
                if item.get("size") is not None
                else None,
                "min_count": self.integer(item, "min_count", minimum=1)
                if item.get("min_count") is not None
                else 1,
                "description": str(item.get("description", "")),
            }
            out.append(entry)
        return out


# ----------------------------------------------------------------------------- building


@dataclass
class BuildResult:
    """What :func:`build` wrote: the output folder and one folder per set."""

    out: Path
    sets: list[Path] = field(default_factory=list)
    n_volumes: int = 0


def _split_seeds(seed: int) -> tuple[int, int]:
    pool, test = np.random.SeedSequence(seed).spawn(2)
    return int(pool.generate_state(1)[0]), int(test.generate_state(1)[0])


def format_snr(snr: float) -> str:
    """Folder-safe SNR label: ``inf``, ``0.1``, ``0.05``."""
    return "inf" if math.isinf(snr) else f"{snr:g}"


def _structure_args(spec: dict[str, Any]) -> list[Any]:
    from cryoal.simulate.structures import load_structure

    out: list[Any] = []
    for s in spec["structures"]:
        if s["path"] is None:
            out.append(s["name"])
        else:
            out.append(
                load_structure(s["path"], spec["voxel_size"], chains=s["chains"], name=s["name"])
            )
    return out


def build(
    manifest: Manifest | str | Path,
    out: str | Path,
    seed: int | None = None,
    *,
    device: str = "cpu",
    progress: bool = False,
    arguments: dict[str, Any] | None = None,
) -> BuildResult:
    """Simulate the data set a manifest describes into ``out``.

    Layout (subtomograms): ``out/volumes/*.mrc``, ``out/labels.csv``, ``out/labels.star``,
    ``out/metadata.csv`` and, with a test split, the same under ``out/test/``; with a list
    of SNRs, one such set per level under ``out/snr-<v>/`` (same particles and
    orientations at every level: only the noise differs). Tomograms:
    ``out/tomograms/``, ``out/label_maps/``, ``out/particles/``, ``out/classes.csv``.
    Always ``out/manifest.yaml`` (the manifest as given) and ``out/config.json``.

    Parameters
    ----------
    manifest
        A :class:`Manifest`, a bundled name or a YAML path.
    out
        Output folder (created).
    seed
        Seed; default the manifest's ``seed``. The same seed gives byte-identical volumes.
    device
        Torch device for the simulation.
    progress
        Show progress bars.
    arguments
        Extra entries for the run record in ``config.json``.

    Raises
    ------
    ManifestError
        The manifest is invalid or of kind ``external`` (use :func:`verify`).
    """
    from cryoal.runtime import write_run_config
    from cryoal.simulate import (
        simulate_subtomograms,
        simulate_tomogram,
        write_simulated,
        write_tomogram,
    )

    m = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    if m.kind == "external":
        raise ManifestError(
            f"{m.source}: '{m.name}' describes an external data set; download it yourself "
            f"({m.spec.get('url') or 'see its description'}) and check it with "
            f"'cryoal simulate {m.name} --verify DIR'"
        )
    spec = m.spec
    used_seed = int(spec["seed"] if seed is None else seed)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    result = BuildResult(root)
    structures = _structure_args(spec)
    pool_seed, test_seed = _split_seeds(used_seed)
    physics = {
        "voxel_size": spec["voxel_size"],
        "tilt_range": tuple(spec["tilt_range"]) if spec["tilt_range"] is not None else None,
        "tilt_axis": spec["tilt_axis"],
        "voltage_kv": spec["voltage_kv"],
        "cs_mm": spec["cs_mm"],
        "amplitude_contrast": spec["amplitude_contrast"],
        "noise": spec["noise"],
        "device": device,
    }
    if m.kind == "subtomograms":
        snrs = spec["snr"] if isinstance(spec["snr"], list) else [spec["snr"]]
        defocus = spec["defocus_um"]
        defocus_arg = tuple(defocus) if isinstance(defocus, list) else defocus
        for snr in snrs:
            where = root / f"snr-{format_snr(snr)}" if isinstance(spec["snr"], list) else root
            splits: list[tuple[Path, Any, int, str]] = [
                (where, spec["n_per_class"], pool_seed, "sub")
            ]
            if spec["test"] is not None:
                splits.append((where / "test", spec["test"]["n_per_class"], test_seed, "test"))
            for target, n, s, prefix in splits:
                sim = simulate_subtomograms(
                    structures,
                    n,
                    box=spec["box"],
                    snr=snr,
                    defocus=defocus_arg,
                    shift_max=spec["shift_max"],
                    seed=s,
                    bfactor=spec["bfactor"],
                    id_prefix=prefix,
                    progress=progress,
                    **physics,
                )
                write_simulated(target, sim, progress=progress)
                result.sets.append(target)
                result.n_volumes += len(sim)
    else:
        defocus = spec["defocus_um"]
        if isinstance(defocus, list):
            defocus = float(np.mean(defocus))
        splits_t = [(root, spec["n_tomograms"], pool_seed)]
        if spec["test"] is not None:
            splits_t.append((root / "test", spec["test"]["n_tomograms"], test_seed))
        snr = spec["snr"][0] if isinstance(spec["snr"], list) else spec["snr"]
        class_names: list[str] = []
        for target, count, s in splits_t:
            seeds = np.random.SeedSequence(s).generate_state(count)
            for i in range(count):
                tomo = simulate_tomogram(
                    structures,
                    tuple(spec["shape"]),
                    n_particles=spec["n_particles"],
                    snr=snr,
                    defocus=defocus,
                    membranes=spec["membranes"],
                    seed=int(seeds[i]),
                    **physics,
                )
                write_tomogram(target, tomo, f"tomo_{i:03d}")
                class_names = tomo.class_names
                result.n_volumes += 1
            table = pd.DataFrame({"label": range(len(class_names)), "name": class_names})
            atomic_write_text(target / "classes.csv", table.to_csv(index=False))
            result.sets.append(target)
    atomic_write_text(root / "manifest.yaml", m.text)
    write_run_config(
        root / "config.json",
        {
            "manifest": m.name,
            "manifest_source": m.source,
            "out": str(root),
            "device": device,
            **(arguments or {}),
        },
        seed=used_seed,
    )
    return result


# ----------------------------------------------------------------------------- verification


@dataclass
class VerifyReport:
    """Outcome of :func:`verify`: ``ok`` when no problem was found."""

    manifest: str
    root: Path
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    unchecked_checksums: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def _sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify(
    manifest: Manifest | str | Path,
    root: str | Path,
    *,
    checksums: bool = True,
    on_file: Callable[[Path], None] | None = None,
) -> VerifyReport:
    """Check a local copy of an external data set against its manifest (nothing is downloaded).

    Every ``path`` entry must exist (with its ``size`` and ``sha256`` when the manifest
    gives them); every ``glob`` must match at least ``min_count`` files.

    Parameters
    ----------
    manifest
        An external manifest (or its name/path).
    root
        The folder holding the downloaded data set.
    checksums
        Compute SHA-256 where the manifest records one (slow on large files).
    on_file
        Called with each checked file (progress reporting).

    Raises
    ------
    ManifestError
        The manifest is not of kind ``external``, or ``root`` is not a folder.
    """
    m = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    if m.kind != "external":
        raise ManifestError(
            f"{m.source}: '{m.name}' is a simulation recipe (kind {m.kind}), not an external "
            f"data set; build it with 'cryoal simulate {m.name} --out DIR'"
        )
    base = Path(root)
    if not base.is_dir():
        raise ManifestError(
            f"{base}: not a folder; pass the folder holding the downloaded '{m.name}' data"
        )
    rep = VerifyReport(m.name, base)
    for entry in m.spec["files"]:
        if entry["path"] is not None:
            p = base / entry["path"]
            rep.checked += 1
            if on_file is not None:
                on_file(p)
            if not p.is_file():
                rep.problems.append(f"missing file {entry['path']}")
                continue
            if entry["size"] is not None and p.stat().st_size != entry["size"]:
                rep.problems.append(
                    f"{entry['path']}: size {p.stat().st_size} bytes, expected {entry['size']}"
                )
            if entry["sha256"] is not None:
                if checksums:
                    got = _sha256(p)
                    if got != entry["sha256"]:
                        rep.problems.append(
                            f"{entry['path']}: sha256 {got} != expected {entry['sha256']}"
                        )
                else:
                    rep.unchecked_checksums += 1
        else:
            matches = sorted(base.glob(entry["glob"]))
            rep.checked += len(matches)
            if len(matches) < entry["min_count"]:
                rep.problems.append(
                    f"pattern {entry['glob']} matches {len(matches)} file(s), expected at least {entry['min_count']}"
                )
    return rep


def write_checksums(manifest: Manifest | str | Path, root: str | Path, out: str | Path) -> Path:
    """Record SHA-256 and size of every file of a verified local copy as a new manifest.

    The result is the same manifest with each ``glob`` expanded to ``path`` entries
    carrying ``sha256`` and ``size``, so another copy can be checked byte for byte.
    """
    m = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    rep = verify(m, root, checksums=False)
    if not rep.ok:
        raise ManifestError(
            f"{root}: the copy does not match '{m.name}': {'; '.join(rep.problems)}"
        )
    base = Path(root)
    files = []
    for entry in m.spec["files"]:
        paths = (
            [base / entry["path"]]
            if entry["path"] is not None
            else sorted(base.glob(entry["glob"]))
        )
        for p in paths:
            rel = p.relative_to(base).as_posix()
            files.append({"path": rel, "sha256": _sha256(p), "size": p.stat().st_size})
    doc = yaml.safe_load(m.text)
    doc["files"] = files
    target = Path(out)
    atomic_write_text(target, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return target

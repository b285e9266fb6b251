"""Patch pools for 3D segmentation: sub-volumes of tomogram crops and their label maps.

A folder of tomogram crops (MRC, `(D, H, W)`) is cut on a regular grid into cubic patches
of ``patch`` voxels (stride ``patch`` by default; the last patch of each axis is aligned
to the far edge so every voxel is covered). Each patch has the id
``<volume id>@<z>,<y>,<x>`` (its corner, voxels). Label maps ("masks") live in a second
folder under the same relative names: integer MRC files of the volume's shape with values
``0 … K-1`` (class index) or ``-1`` for voxels not annotated yet. A patch is *labelled*
when its volume has a mask and none of its voxels is ``-1``.

Class names come from ``classes`` or a ``classes.txt`` file in the masks folder (one name
per line; line ``i`` names value ``i``), else ``"0" … "K-1"`` from the largest mask value.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from cryoal.errors import (
    ConfigError,
    EmptyPoolError,
    InvalidLabelsError,
    InvalidVolumeError,
    PoolManifestError,
)
from cryoal.io._items import ItemIds
from cryoal.io.base import array_checksum, entry_checksum
from cryoal.io.persist import read_pool_manifest, rel_path, verify_checksums, write_pool_manifest
from cryoal.tasks.seg_metrics import IGNORE

__all__ = [
    "PatchPool",
    "SegmentationDataset",
    "annotate_from_truth",
    "grid_starts",
    "read_mask",
    "write_segmentation_example",
]


def grid_starts(size: int, patch: int, stride: int) -> list[int]:
    """Patch corners along one axis: ``0, stride, …`` plus ``size - patch`` if missing.

    Raises
    ------
    ConfigError
        ``size < patch`` or ``stride < 1``.
    """
    if stride < 1:
        raise ConfigError(f"stride must be >= 1 voxel, got {stride}")
    if size < patch:
        raise ConfigError(f"a side of {size} voxels is smaller than the {patch}-voxel patch")
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def read_mask(path: str | os.PathLike[str]) -> tuple[np.ndarray, float]:
    """Read an integer label map (MRC) as `(D, H, W)` int64 and its voxel size (Å).

    Raises
    ------
    InvalidLabelsError
        Unreadable file, not 3D, or non-integer values.
    """
    import mrcfile

    p = Path(path)
    try:
        with mrcfile.open(p, permissive=False, mode="r") as m:
            data = np.asarray(m.data)
            size = float(m.voxel_size.x) or 1.0
    except (ValueError, OSError) as exc:
        raise InvalidLabelsError(f"{p}: not a readable MRC label map ({exc})") from exc
    if data.ndim != 3:
        raise InvalidLabelsError(f"{p}: a label map must be 3D (D, H, W), got shape {data.shape}")
    if data.dtype.kind == "f":
        if not np.isfinite(data).all() or not np.array_equal(data, np.rint(data)):
            raise InvalidLabelsError(
                f"{p}: label map holds non-integer values; store class indices (int8/int16)"
            )
    return data.astype(np.int64), size


@dataclass(frozen=True)
class _Volume:
    id: str
    path: Path | None
    shape: tuple[int, int, int]
    mask_path: Path | None


class PatchPool(ItemIds, Dataset[torch.Tensor]):
    """Cubic patches of tomogram crops, lazily read, with optional voxel label maps.

    A :class:`cryoal.io.base.Pool` of ``(patch, patch, patch)`` items. Build with :meth:`from_directories` or :meth:`from_arrays`.

    Attributes
    ----------
    ids
        ``<volume id>@<z>,<y>,<x>`` per patch.
    root
        Folder of the volumes (ids of volumes are relative to it).
    patch
        Patch edge in voxels; :attr:`box` is ``(patch,)*3``.
    class_names
        Name of each label value (index = value).
    """

    def __init__(
        self,
        *,
        root: Path,
        volumes: list[_Volume],
        patch: int,
        stride: int,
        class_names: list[str],
        voxel_size: float,
        arrays: list[np.ndarray] | None = None,
        masks: list[np.ndarray | None] | None = None,
    ) -> None:
        if patch < 2:
            raise ConfigError(f"patch must be at least 2 voxels, got {patch}")
        if len(class_names) < 2:
            raise ConfigError(f"segmentation needs at least two classes, got {class_names}")
        self.root = root
        self.patch = int(patch)
        self.stride = int(stride)
        self.class_names = list(class_names)
        self._voxel_size = float(voxel_size)
        self._volumes = volumes
        self._arrays: dict[int, np.ndarray] = dict(enumerate(arrays)) if arrays is not None else {}
        self._masks: dict[int, np.ndarray] = {}
        self._checksums: dict[int, str] = {}
        self._where: list[tuple[int, int, int, int]] = []
        for v, vol in enumerate(volumes):
            zs, ys, xs = (grid_starts(n, self.patch, self.stride) for n in vol.shape)
            self._where += [(v, z, y, x) for z in zs for y in ys for x in xs]
        self.ids = [f"{volumes[v].id}@{z},{y},{x}" for v, z, y, x in self._where]
        self._id_index: dict[str, int] | None = None
        if not self.ids:
            raise EmptyPoolError(f"{root}: no patches (no volumes)")
        k = len(self.class_names)
        for v, vol in enumerate(volumes):
            arr = masks[v] if masks is not None else None
            where = str(vol.mask_path or f"mask of {vol.id}")
            if arr is None and vol.mask_path is not None:
                arr, _ = read_mask(vol.mask_path)
            if arr is None:
                continue
            if tuple(arr.shape) != vol.shape:
                raise InvalidLabelsError(
                    f"{where}: label map is {_fmt(arr.shape)} but volume {vol.id} is "
                    f"{_fmt(vol.shape)}; masks must have their volume's shape"
                )
            bad = np.unique(arr[(arr < IGNORE) | (arr >= k)])
            if bad.size:
                raise InvalidLabelsError(
                    f"{where}: label values {bad[:8].tolist()} are outside the class list "
                    f"0..{k - 1} ({', '.join(self.class_names)}; -1 = not annotated); fix the "
                    "mask or the class list"
                )
            self._masks[v] = np.asarray(arr, dtype=np.int64)

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_directories(
        cls,
        volumes: str | os.PathLike[str],
        masks: str | os.PathLike[str] | None = None,
        *,
        patch: int = 16,
        stride: int | None = None,
        pattern: str = "*.mrc",
        classes: Sequence[str] | None = None,
    ) -> PatchPool:
        """Index the crops in ``volumes`` and the label maps in ``masks``.

        Parameters
        ----------
        volumes
            Folder of tomogram crops (searched recursively with ``pattern``).
        masks
            Folder of label maps with the same relative names (a crop without one is
            unlabelled); ``None``: nothing labelled yet.
        patch, stride
            Patch edge and grid step in voxels (stride default = patch).
        pattern
            File pattern of the crops.
        classes
            Class names, index = label value (default: ``masks/classes.txt`` or inferred).

        Raises
        ------
        InvalidVolumeError
            No folder, unreadable crop, a crop that is not 3D.
        InvalidLabelsError
            A mask whose shape differs from its crop, values outside the class list,
            non-integer values, a mask without a crop.
        EmptyPoolError
            No crop matched ``pattern``.
        """
        from cryoal.io import read_header

        root = Path(volumes)
        if not root.is_dir():
            raise InvalidVolumeError(f"{root}: not a folder of tomogram crops")
        files = sorted(p for p in root.rglob(pattern) if p.is_file())
        if not files:
            raise EmptyPoolError(f"{root}: no files match {pattern!r}")
        mroot = Path(masks) if masks is not None else None
        if mroot is not None and not mroot.is_dir():
            raise InvalidLabelsError(f"{mroot}: not a folder of label maps")
        vols: list[_Volume] = []
        voxel_size = None
        for f in files:
            header = read_header(f)
            shape = tuple(int(s) for s in header.item_shape)
            if len(shape) != 3 or header.n_items != 1:
                raise InvalidVolumeError(
                    f"{f}: segmentation needs one 3D crop per file, got shape {shape} "
                    f"({header.n_items} items)"
                )
            voxel_size = voxel_size or float(header.voxel_size)
            rel = f.relative_to(root).as_posix()
            mp = mroot / rel if mroot is not None and (mroot / rel).is_file() else None
            vols.append(_Volume(rel, f, (shape[0], shape[1], shape[2]), mp))
        if mroot is not None:
            known = {v.id for v in vols}
            orphans = sorted(
                p.relative_to(mroot).as_posix()
                for p in mroot.rglob(pattern)
                if p.is_file() and p.relative_to(mroot).as_posix() not in known
            )
            if orphans:
                raise InvalidLabelsError(
                    f"{mroot}: label maps without a crop in {root}: {', '.join(orphans[:5])}; "
                    "masks must have the same relative names as the crops"
                )
        names = _class_names(classes, mroot, [v.mask_path for v in vols if v.mask_path])
        return cls(
            root=root,
            volumes=vols,
            patch=patch,
            stride=stride or patch,
            class_names=names,
            voxel_size=voxel_size or 1.0,
        )

    @classmethod
    def from_arrays(
        cls,
        volumes: Sequence[np.ndarray | torch.Tensor],
        masks: Sequence[np.ndarray | torch.Tensor | None] | None = None,
        *,
        class_names: Sequence[str],
        patch: int = 16,
        stride: int | None = None,
        ids: Sequence[str] | None = None,
        voxel_size: float = 1.0,
    ) -> PatchPool:
        """An in-memory pool over `(D, H, W)` crops and optional `(D, H, W)` label maps."""
        arrays = [_np(v).astype(np.float32) for v in volumes]
        if any(a.ndim != 3 for a in arrays):
            raise InvalidVolumeError("from_arrays needs (D, H, W) volumes")
        names = list(ids) if ids is not None else [f"vol_{i:03d}" for i in range(len(arrays))]
        mask_list = [None if m is None else _np(m).astype(np.int64) for m in (masks or [])]
        mask_list += [None] * (len(arrays) - len(mask_list))
        vols = [
            _Volume(n, None, (a.shape[0], a.shape[1], a.shape[2]), None)
            for n, a in zip(names, arrays, strict=True)
        ]
        return cls(
            root=Path("."),
            volumes=vols,
            patch=patch,
            stride=stride or patch,
            class_names=list(class_names),
            voxel_size=voxel_size,
            arrays=arrays,
            masks=mask_list,
        )

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (
            f"PatchPool({len(self)} patches of {self.patch}³ from {len(self._volumes)} volumes, "
            f"{len(self.labelled_indices())} labelled, classes {self.class_names})"
        )

    @property
    def box(self) -> tuple[int, int, int]:
        """``(patch, patch, patch)``."""
        return (self.patch, self.patch, self.patch)

    @property
    def voxel_size(self) -> float:
        """Voxel edge in Å (of the first crop)."""
        return self._voxel_size

    @property
    def num_classes(self) -> int:
        """Number of label values ``K``."""
        return len(self.class_names)

    @property
    def volume_ids(self) -> list[str]:
        """Ids of the crops, in pool order."""
        return [v.id for v in self._volumes]

    def location(self, index: int) -> tuple[str, tuple[int, int, int]]:
        """``(volume id, (z, y, x) corner in voxels)`` of patch ``index``."""
        v, z, y, x = self._where[index]
        return self._volumes[v].id, (z, y, x)

    def path_of(self, index: int) -> Path:
        """The crop file holding patch ``index`` (in-memory pools: ``root / volume id``)."""
        vol = self._volumes[self._where[index][0]]
        return vol.path if vol.path is not None else self.root / vol.id

    def _describe_items(self) -> str:
        return f"{len(self)} patches under {self.root}"

    def _volume(self, v: int) -> np.ndarray:
        arr = self._arrays.get(v)
        if arr is None:
            from cryoal.io import read_volume

            path = self._volumes[v].path
            if path is None:  # pragma: no cover - in-memory volumes always have arrays
                raise InvalidVolumeError(f"volume {self._volumes[v].id} has no data")
            arr = read_volume(path).data
            self._arrays[v] = arr
        return arr

    def _cut(self, arr: np.ndarray, index: int) -> np.ndarray:
        _, z, y, x = self._where[index]
        p = self.patch
        return arr[z : z + p, y : y + p, x : x + p]

    def read(self, index: int) -> np.ndarray:
        """Patch ``index`` as a new float32 array ``(p, p, p)`` (raw values)."""
        v = self._where[index][0]
        return np.array(self._cut(self._volume(v), index), np.float32)

    def __getitem__(self, index: int) -> torch.Tensor:
        """Raw patch `(1, p, p, p)` float32."""
        return torch.from_numpy(self.read(index))[None]

    def checksum(self, index: int) -> str:
        """Checksum of patch ``index`` (:class:`cryoal.io.base.Pool`): the header checksum
        of its crop's file (:func:`~cryoal.io.base.entry_checksum`; the patches of one
        crop share it), or of the patch's voxels
        (:func:`~cryoal.io.base.array_checksum`) in an in-memory pool.

        Raises
        ------
        InvalidVolumeError
            The crop file cannot be read.
        """
        v = self._where[index][0]
        path = self._volumes[v].path
        if path is None:
            return array_checksum(self.read(index))
        digest = self._checksums.get(v)
        if digest is None:
            digest = self._checksums[v] = entry_checksum(path)
        return digest

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the pool's manifest (:mod:`cryoal.io.persist`, kind ``"patch"``) to
        ``path`` atomically: the crops and label maps (relative to the manifest), patch /
        stride, classes, voxel size and per-patch checksums. Returns ``path``.

        Raises
        ------
        ConfigError
            An in-memory pool (:meth:`from_arrays`): it has no files to point to.
        InvalidVolumeError
            A crop cannot be read (to checksum it).
        """
        if any(v.path is None for v in self._volumes):
            raise ConfigError(
                "an in-memory PatchPool (from_arrays) has no files to save; write the crops "
                "as MRC files and use PatchPool.from_directories"
            )
        extra = {
            "root": rel_path(self.root, path),
            "volumes": [
                {
                    "id": v.id,
                    "shape": list(v.shape),
                    "mask": None if v.mask_path is None else rel_path(v.mask_path, path),
                }
                for v in self._volumes
            ],
            "patch": self.patch,
            "stride": self.stride,
            "class_names": list(self.class_names),
        }
        paths = [v.path for v in self._volumes if v.path is not None]
        return write_pool_manifest(path, "patch", self, paths, extra)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PatchPool:
        """A pool saved by :meth:`save`, checked against its checksums (one header read
        per crop; label maps are read, crops are not).

        Raises
        ------
        PoolManifestError
            Corrupt, truncated, unknown-version or non-``"patch"`` manifest.
        PoolChangedError
            A crop vanished or changed since the save (the message names the patch).
        """
        m = read_pool_manifest(path, "patch")
        specs = m.get("volumes", list)
        if len(specs) != len(m.sources):
            raise PoolManifestError(f"{m.path}: {len(specs)} volumes for {len(m.sources)} files")
        try:
            vols = [
                _Volume(
                    str(d["id"]),
                    src,
                    (int(d["shape"][0]), int(d["shape"][1]), int(d["shape"][2])),
                    None if d["mask"] is None else m.relative(str(d["mask"])),
                )
                for d, src in zip(specs, m.sources, strict=True)
            ]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PoolManifestError(
                f"{m.path}: malformed volume entry in the pool manifest ({exc!r})"
            ) from None
        pool = cls(
            root=m.relative(m.get("root", str)),
            volumes=vols,
            patch=m.get("patch", int),
            stride=m.get("stride", int),
            class_names=m.get("class_names", list),
            voxel_size=m.voxel_size,
        )
        verify_checksums(m, pool)
        return pool

    def mask(self, index: int) -> torch.Tensor | None:
        """Label map `(p, p, p)` int64 of patch ``index`` (-1 = not annotated), or ``None``."""
        m = self._masks.get(self._where[index][0])
        return None if m is None else torch.from_numpy(np.array(self._cut(m, index)))

    def labelled_indices(self) -> list[int]:
        """Patches whose every voxel is annotated."""
        out = []
        for i in range(len(self)):
            m = self.mask(i)
            if m is not None and bool((m != IGNORE).all()):
                out.append(i)
        return out

    def unlabelled_indices(self) -> list[int]:
        """Patches with at least one unannotated voxel (or no mask)."""
        lab = set(self.labelled_indices())
        return [i for i in range(len(self)) if i not in lab]

    def dataset(
        self,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        indices: Sequence[int] | None = None,
    ) -> SegmentationDataset:
        """Dataset of ``(x (1, p, p, p), mask (p, p, p) int64)`` (mask all -1 if none)."""
        return SegmentationDataset(self, transform, indices)


class SegmentationDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """``(transform(patch), label map)`` for some patches of a :class:`PatchPool`."""

    def __init__(
        self,
        pool: PatchPool,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        indices: Sequence[int] | None = None,
    ) -> None:
        self.pool = pool
        self.transform = transform
        self.indices = list(range(len(pool))) if indices is None else [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        j = self.indices[i]
        x = self.pool[j]
        if self.transform is not None:
            x = self.transform(x)
        m = self.pool.mask(j)
        if m is None:
            m = torch.full(self.pool.box, IGNORE, dtype=torch.long)
        return x, m


def _np(a: np.ndarray | torch.Tensor) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _fmt(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


def _class_names(
    classes: Sequence[str] | None, mroot: Path | None, mask_paths: Sequence[Path | None]
) -> list[str]:
    if classes is not None:
        return [str(c) for c in classes]
    if mroot is not None and (mroot / "classes.txt").is_file():
        names = [
            line.strip()
            for line in (mroot / "classes.txt").read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        if len(names) < 2:
            raise InvalidLabelsError(f"{mroot / 'classes.txt'}: needs at least two class names")
        return names
    top = 1
    for p in mask_paths:
        if p is not None:
            top = max(top, int(read_mask(p)[0].max()))
    return [str(i) for i in range(top + 1)]


def write_segmentation_example(
    out: str | os.PathLike[str],
    *,
    n_tomograms: int = 4,
    shape: int = 32,
    structures: Sequence[str] = ("4V8R-A", "7PBL"),
    n_particles: int = 6,
    voxel_size: float = 15.0,
    snr: float = 1.0,
    membranes: int = 1,
    annotated: int = 1,
    seed: int = 0,
) -> dict[str, Path]:
    """Simulate tomogram crops with voxel label maps and lay them out for the CLI.

    Writes ``out/tomograms/tomo_NNN.mrc`` (crops), ``out/truth/`` (every label map, int16
    MRC, plus ``classes.txt``), ``out/masks/`` (the maps of the first ``annotated`` crops
    only: the expert's labels so far, plus ``classes.txt``) and ``out/particles/*.csv``.

    Parameters
    ----------
    out
        Target folder.
    n_tomograms, shape, structures, n_particles, voxel_size, snr, membranes
        As in :func:`cryoal.simulate.simulate_tomogram` (``shape`` voxels per side,
        ``voxel_size`` Å, SNR over the crop).
    annotated
        How many crops get their label map copied to ``masks/``.
    seed
        Crop ``i`` uses ``seed + i``.

    Returns
    -------
    dict
        ``volumes``, ``masks``, ``truth`` folders.
    """
    import logging
    import shutil

    from cryoal._atomic import atomic_write_text
    from cryoal.simulate import simulate_tomogram, write_tomogram

    if not 0 <= annotated <= n_tomograms:
        raise ConfigError(f"annotated must be in [0, {n_tomograms}], got {annotated}")
    base = Path(out)
    names: list[str] = []
    sim_log = logging.getLogger("cryoal.simulate.tomograms")
    level = sim_log.level
    sim_log.setLevel(max(level, logging.ERROR))  # "crop too crowded" is expected here
    try:
        for i in range(n_tomograms):
            tomo = simulate_tomogram(
                list(structures),
                shape=shape,
                voxel_size=voxel_size,
                n_particles=n_particles,
                snr=snr if math.isfinite(snr) else math.inf,
                membranes=membranes,
                seed=seed + i,
            )
            names = tomo.class_names
            write_tomogram(base, tomo, f"tomo_{i:03d}")
    finally:
        sim_log.setLevel(level)
    truth = base / "truth"
    if truth.exists():
        shutil.rmtree(truth)
    (base / "label_maps").rename(truth)
    masks = base / "masks"
    masks.mkdir(parents=True, exist_ok=True)
    for i in range(annotated):
        shutil.copyfile(base / "truth" / f"tomo_{i:03d}.mrc", masks / f"tomo_{i:03d}.mrc")
    for folder in (base / "truth", masks):
        atomic_write_text(folder / "classes.txt", "\n".join(names) + "\n")
    return {"volumes": base / "tomograms", "masks": masks, "truth": base / "truth"}


def annotate_from_truth(
    picks: pd.DataFrame, truth: str | os.PathLike[str], masks: str | os.PathLike[str]
) -> list[Path]:
    """Simulated expert: copy the true labels of picked patches into the masks folder.

    For each row of ``picks`` (columns ``volume, z, y, x, size`` as written by a
    segmentation round) the voxels of the patch are copied from ``truth/<volume>`` into
    ``masks/<volume>``; a mask that does not exist yet is created filled with ``-1`` (not
    annotated). ``classes.txt`` is copied along when missing.

    Returns
    -------
    list[Path]
        The mask files written.

    Raises
    ------
    InvalidLabelsError
        A truth map is missing or unreadable, or ``picks`` lacks a column.
    """
    from cryoal.io import write_volume

    need = {"volume", "z", "y", "x", "size"}
    if not need <= set(picks.columns):
        raise InvalidLabelsError(f"picks table lacks columns {sorted(need - set(picks.columns))}")
    troot, mroot = Path(truth), Path(masks)
    edited: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    for row in picks.itertuples(index=False):
        vid = str(row.volume)
        if vid not in edited:
            t, size = read_mask(troot / vid)
            mpath = mroot / vid
            m = read_mask(mpath)[0] if mpath.is_file() else np.full(t.shape, IGNORE, np.int64)
            edited[vid] = (m, t, size)
        m, t, _ = edited[vid]
        z, y, x, s = int(row.z), int(row.y), int(row.x), int(row.size)  # type: ignore[call-overload,arg-type]
        m[z : z + s, y : y + s, x : x + s] = t[z : z + s, y : y + s, x : x + s]
    written = []
    for vid, (m, _, size) in edited.items():
        written.append(write_volume(mroot / vid, m.astype(np.int16), size))
    if (troot / "classes.txt").is_file() and not (mroot / "classes.txt").is_file():
        from cryoal._atomic import atomic_write_text

        atomic_write_text(mroot / "classes.txt", (troot / "classes.txt").read_text("utf-8"))
    return written

"""2D images for the image-classification pipeline: PNG/TIFF, 2D MRC and NumPy files.

:class:`ImagePool` is the 2D twin of :class:`cryoal.io.VolumePool`: an ordered, lazily
loaded collection of same-size grey images with stable ids (the path relative to the
pool root), ``pool[i] -> (1, H, W)`` float32, labels joined on ids, ``subset``,
``dataset``. Everything downstream (training, acquisition, the project) treats it like a
volume pool whose box is ``(H, W)``.

Formats (by extension, case-insensitive):

- ``.png``, ``.tif``/``.tiff`` (and ``.jpg``/``.jpeg``, read but lossy): one grey frame
  (8/16-bit integer or float); RGB(A) is converted to luminance
  ``0.299 R + 0.587 G + 0.114 B`` (alpha dropped). PNG/JPEG need ``pillow``, TIFF needs
  ``tifffile`` (``pip install 'cryoal[images]'``);
- ``.mrc`` holding one 2D image (``nz == 1``), pixel size from the header (Å);
- ``.npy`` holding one `(H, W)` array (no pickles).

Tables that often sit beside images (``.csv``, ``.star``, ``.json``, ``.yaml``, ``.txt``,
``.md``) and hidden files are skipped; any other file in the folder is an error naming it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from cryoal.errors import (
    ConfigError,
    EmptyPoolError,
    InvalidVolumeError,
    MissingDependencyError,
    PoolManifestError,
)
from cryoal.io._items import LabelledItems
from cryoal.io.base import array_checksum, entry_checksum
from cryoal.io.persist import read_pool_manifest, rel_path, verify_checksums, write_pool_manifest

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImagePool",
    "is_image_file",
    "read_image",
    "write_image",
]

#: extensions :func:`read_image` understands
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".mrc", ".npy")
#: side files skipped silently when a folder is scanned
_SIDE_EXTENSIONS = (".csv", ".star", ".json", ".yaml", ".yml", ".txt", ".md")
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_EXTENSIONS`."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - pillow is installed in the dev env
        raise MissingDependencyError(
            "reading PNG/JPEG images needs pillow: pip install 'cryoal[images]'"
        ) from exc
    return Image


def _tifffile() -> Any:
    try:
        import tifffile
    except ImportError as exc:  # pragma: no cover - tifffile is installed in the dev env
        raise MissingDependencyError(
            "reading TIFF images needs tifffile: pip install 'cryoal[images]'"
        ) from exc
    return tifffile


def _to_grey(arr: np.ndarray, path: Path) -> np.ndarray:
    """`(H, W)` float32 from `(H, W)`, `(H, W, 3|4)` or `(1, H, W)`; else an error."""
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4:
        arr = arr[..., :3].astype(np.float64) @ _LUMA
    if arr.ndim != 2:
        raise InvalidVolumeError(
            f"{path}: image has shape {tuple(arr.shape)}; the image pipeline needs one 2D "
            "grey (or RGB) frame (H, W) per file: split stacks into single images"
        )
    if arr.dtype.kind not in "uif" and arr.dtype != np.bool_:
        raise InvalidVolumeError(f"{path}: unsupported pixel type {arr.dtype}")
    out = np.asarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise InvalidVolumeError(f"{path}: image holds NaN or Inf pixels; fix or remove it")
    return out


def _read_pixels(p: Path) -> tuple[np.ndarray, float]:
    ext = p.suffix.lower()
    if ext in (".png", ".jpg", ".jpeg"):
        image_mod = _pillow()
        from PIL import UnidentifiedImageError

        try:
            with image_mod.open(p) as im:
                if getattr(im, "n_frames", 1) > 1:
                    raise InvalidVolumeError(
                        f"{p}: holds {im.n_frames} frames; the image pipeline needs one 2D "
                        "frame per file"
                    )
                if im.mode == "P":
                    im = im.convert("RGBA")
                if im.mode in ("I;16", "I;16B", "I;16L"):
                    im = im.convert("I")
                return np.asarray(im), 1.0
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise InvalidVolumeError(
                f"{p}: not a readable {ext[1:].upper()} image ({exc}); replace it or remove "
                "it from the folder"
            ) from exc
    if ext in (".tif", ".tiff"):
        tifffile = _tifffile()
        try:
            return np.asarray(tifffile.imread(p)), 1.0
        except (ValueError, OSError, KeyError, IndexError, tifffile.TiffFileError) as exc:
            raise InvalidVolumeError(
                f"{p}: not a readable TIFF image ({exc}); replace it or remove it from the folder"
            ) from exc
    if ext == ".mrc":
        import mrcfile

        try:
            with mrcfile.open(p, permissive=False, mode="r") as m:
                data = np.asarray(m.data)
                size = float(m.voxel_size.x) or 1.0
        except (ValueError, OSError) as exc:
            raise InvalidVolumeError(
                f"{p}: not a readable MRC image ({exc}); replace it or remove it from the folder"
            ) from exc
        return data, size
    if ext == ".npy":
        try:
            return np.load(p, allow_pickle=False), 1.0
        except (ValueError, OSError) as exc:
            raise InvalidVolumeError(
                f"{p}: not a readable NumPy array ({exc}); save it with numpy.save"
            ) from exc
    raise InvalidVolumeError(
        f"{p}: not an image file (supported: {', '.join(IMAGE_EXTENSIONS)}); move it out of "
        "the folder"
    )


def read_image(path: str | os.PathLike[str]) -> tuple[np.ndarray, float]:
    """Read one grey image.

    Parameters
    ----------
    path
        A ``.png``, ``.tif``/``.tiff``, ``.jpg``, ``.mrc`` (2D) or ``.npy`` file.

    Returns
    -------
    image : numpy.ndarray
        `(H, W)` float32, values as stored (no rescaling); RGB converted to luminance.
    pixel_size : float
        Pixel edge in Å (MRC header; 1.0 for the other formats or a zero header value).

    Raises
    ------
    InvalidVolumeError
        Missing file, unknown extension, undecodable content, more than one frame,
        3D data, NaN/Inf pixels.
    MissingDependencyError
        pillow (PNG/JPEG) or tifffile (TIFF) is not installed.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidVolumeError(f"{p}: image file not found")
    data, size = _read_pixels(p)
    return _to_grey(data, p), size


def write_image(
    path: str | os.PathLike[str], image: np.ndarray | torch.Tensor, pixel_size: float = 1.0
) -> Path:
    """Write a `(H, W)` image atomically; the format follows the extension.

    ``.png`` stores uint8 or uint16 arrays as they are (other types raise: scale them
    first); ``.tif``/``.tiff`` any numeric type; ``.mrc`` float32 with ``pixel_size`` (Å);
    ``.npy`` the array as it is.

    Raises
    ------
    InvalidVolumeError
        The array is not 2D, an unsupported extension, or a PNG of a non-integer type.
    """
    from cryoal._atomic import atomic_path

    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    target = Path(path)
    if arr.ndim != 2:
        raise InvalidVolumeError(f"{target}: write_image needs a (H, W) array, got {arr.shape}")
    ext = target.suffix.lower()
    if ext == ".png":
        if arr.dtype not in (np.uint8, np.uint16):
            raise InvalidVolumeError(
                f"{target}: PNG stores uint8/uint16 pixels, got {arr.dtype}; scale and cast "
                "first, or write .tif/.mrc/.npy for float data"
            )
        image_mod = _pillow()
        with atomic_path(target) as tmp:
            image_mod.fromarray(arr).save(tmp, format="PNG")
    elif ext in (".tif", ".tiff"):
        tifffile = _tifffile()
        with atomic_path(target) as tmp:
            tifffile.imwrite(tmp, arr)
    elif ext == ".mrc":
        from cryoal.io.mrc import write_volume

        return write_volume(target, arr.astype(np.float32), pixel_size)
    elif ext == ".npy":
        with atomic_path(target) as tmp, open(tmp, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
    else:
        raise InvalidVolumeError(
            f"{target}: cannot write images as {ext or 'no extension'}; use .png, .tif, .mrc "
            "or .npy"
        )
    return target


def _scan(root: Path, pattern: str | None, recursive: bool) -> list[Path]:
    walker = root.rglob if recursive else root.glob
    files: list[Path] = []
    foreign: list[Path] = []
    for p in sorted(walker(pattern or "*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        ext = p.suffix.lower()
        if ext in IMAGE_EXTENSIONS:
            files.append(p)
        elif pattern is not None:
            files.append(p)  # asked for explicitly: read_image says what is wrong with it
        elif ext not in _SIDE_EXTENSIONS:
            foreign.append(p)
    if foreign:
        shown = ", ".join(str(f.relative_to(root)) for f in foreign[:5])
        raise InvalidVolumeError(
            f"{root}: {len(foreign)} file(s) are not images ({shown}"
            f"{' ...' if len(foreign) > 5 else ''}); supported: {', '.join(IMAGE_EXTENSIONS)}. "
            "Move them out of the folder or pass a --pattern such as '*.png'"
        )
    return files


class ImagePool(LabelledItems, Dataset[torch.Tensor]):
    """An ordered, lazily loaded collection of same-size 2D images with stable ids.

    A :class:`cryoal.io.base.Pool` whose :attr:`box` is ``(H, W)``.

    Build one with :meth:`from_directory`, :meth:`from_files` or :meth:`from_array`.

    Attributes
    ----------
    ids
        One id per image: its path relative to :attr:`root` (POSIX separators), or
        ``img_00000`` ... for in-memory pools.
    root
        The folder ids are relative to.
    labels
        One label per image, ``None`` where unlabelled (all ``None`` until :meth:`with_labels`).
    """

    def __init__(
        self,
        *,
        root: Path,
        ids: list[str],
        files: list[Path] | None,
        array: np.ndarray | None = None,
        labels: list[str | None] | None = None,
        box: tuple[int, int] | None = None,
        pixel_size: float | None = None,
    ) -> None:
        if not ids:
            raise EmptyPoolError(f"{root}: the pool holds no images")
        if len(set(ids)) != len(ids):
            raise InvalidVolumeError(f"{root}: duplicate image ids; ids must be unique")
        self.root = root
        self.ids = ids
        self._files: list[Path] = list(files) if files is not None else []
        self._array = array
        self.labels: list[str | None] = labels if labels is not None else [None] * len(ids)
        self._box = box
        self._pixel_size = pixel_size
        self._id_index: dict[str, int] | None = None

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_directory(
        cls, root: str | os.PathLike[str], pattern: str | None = None, *, recursive: bool = True
    ) -> ImagePool:
        """Index every image under ``root`` (sorted by relative path), reading nothing yet.

        Parameters
        ----------
        root
            Folder of images.
        pattern
            Glob such as ``"*.png"``; default every file with an image extension (other
            files, except tables and hidden files, are an error).
        recursive
            Descend into sub-folders.

        Raises
        ------
        InvalidVolumeError
            ``root`` is not a folder, or it holds files that are not images.
        EmptyPoolError
            No image found.
        """
        r = Path(root)
        if not r.is_dir():
            raise InvalidVolumeError(f"{r}: not a folder of images")
        files = _scan(r, pattern, recursive)
        if not files:
            raise EmptyPoolError(
                f"{r}: no images found (looked for {pattern or ', '.join(IMAGE_EXTENSIONS)})"
            )
        return cls(root=r, ids=[f.relative_to(r).as_posix() for f in files], files=files)

    @classmethod
    def from_files(
        cls, paths: Sequence[str | os.PathLike[str]], root: str | os.PathLike[str] | None = None
    ) -> ImagePool:
        """A pool of the given image files; ids are relative to ``root`` (default: their
        common parent folder)."""
        files = [Path(p) for p in paths]
        if not files:
            raise EmptyPoolError("from_files got no image paths")
        base = (
            Path(root) if root is not None else Path(os.path.commonpath([f.parent for f in files]))
        )
        ids = []
        for f in files:
            try:
                ids.append(f.relative_to(base).as_posix())
            except ValueError:
                ids.append(f.as_posix())
        return cls(root=base, ids=ids, files=files)

    @classmethod
    def from_array(
        cls,
        images: np.ndarray | torch.Tensor,
        *,
        ids: Sequence[str] | None = None,
        labels: Sequence[str | None] | None = None,
        pixel_size: float = 1.0,
        root: str | os.PathLike[str] = ".",
    ) -> ImagePool:
        """An in-memory pool over `(N, H, W)` images (e.g. the bundled digits).

        Raises
        ------
        InvalidVolumeError
            ``images`` is not `(N, H, W)`, or ``ids``/``labels`` have the wrong length.
        """
        arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.ndim != 3:
            raise InvalidVolumeError(f"from_array needs images (N, H, W), got {arr.shape}")
        n = arr.shape[0]
        names = list(ids) if ids is not None else [f"img_{i:05d}" for i in range(n)]
        labs = list(labels) if labels is not None else None
        if len(names) != n or (labs is not None and len(labs) != n):
            raise InvalidVolumeError(f"from_array: {n} images but {len(names)} ids / labels")
        return cls(
            root=Path(root),
            ids=names,
            files=None,
            array=arr,
            labels=None if labs is None else [None if v is None else str(v) for v in labs],
            box=(int(arr.shape[1]), int(arr.shape[2])),
            pixel_size=float(pixel_size),
        )

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        box = "?" if self._box is None else f"{self._box[0]}x{self._box[1]}"
        n_lab = sum(lab is not None for lab in self.labels)
        return f"ImagePool({len(self)} images, {box} px, root={str(self.root)!r}, {n_lab} labelled)"

    def read(self, index: int) -> np.ndarray:
        """Image ``index`` as a `(H, W)` float32 array.

        Raises
        ------
        InvalidVolumeError
            Unreadable file, or its size differs from the pool's (the first image's).
        """
        if self._array is not None:
            item: np.ndarray = self._array[index]
            return item
        box = self.box
        path = self._files[index]
        img, _ = read_image(path)
        shape = (int(img.shape[0]), int(img.shape[1]))
        if shape != box:
            raise InvalidVolumeError(
                f"{path}: image is {shape[0]}x{shape[1]} px but the pool's images are "
                f"{box[0]}x{box[1]} (from {self.ids[0]}); resize or remove it"
            )
        return img

    def __getitem__(self, index: int) -> torch.Tensor:
        """`(1, H, W)` float32 tensor of image ``index``."""
        return torch.from_numpy(np.array(self.read(index), dtype=np.float32)).unsqueeze(0)

    @property
    def box(self) -> tuple[int, int]:
        """``(H, W)`` shared by every image (read from image 0)."""
        if self._box is None:
            img, size = read_image(self._files[0])
            self._box = (int(img.shape[0]), int(img.shape[1]))
            self._pixel_size = size
        return self._box

    @property
    def voxel_size(self) -> float:
        """Pixel edge in Å of image 0 (1.0 where the format stores none)."""
        if self._pixel_size is None:
            _ = self.box
        return float(self._pixel_size or 1.0)

    def path_of(self, index: int) -> Path:
        """The file holding image ``index`` (in-memory pools: ``root / id``)."""
        if self._array is not None:
            return self.root / self.ids[index]
        return self._files[index]

    def checksum(self, index: int) -> str:
        """Checksum of image ``index`` (:class:`cryoal.io.base.Pool`): the header checksum
        of its file (:func:`~cryoal.io.base.entry_checksum`), or of its pixels
        (:func:`~cryoal.io.base.array_checksum`) in an in-memory pool.

        Raises
        ------
        InvalidVolumeError
            The file cannot be read.
        """
        if self._array is not None:
            return array_checksum(self._array[index])
        return entry_checksum(self._files[index])

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the pool's manifest (:mod:`cryoal.io.persist`, kind ``"image"``) to
        ``path`` atomically: image files relative to it, ids, box, pixel size, labels and
        per-image checksums. Returns ``path``.

        Raises
        ------
        ConfigError
            An in-memory pool (:meth:`from_array`): it has no files to point to.
        InvalidVolumeError
            An image file cannot be read (to checksum it).
        """
        if self._array is not None:
            raise ConfigError(
                "an in-memory ImagePool (from_array) has no files to save; write the images "
                "with write_image and build the pool with from_files"
            )
        extra = {"root": rel_path(self.root, path), "labels": list(self.labels)}
        return write_pool_manifest(path, "image", self, self._files, extra)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ImagePool:
        """A pool saved by :meth:`save`, checked against its checksums (no image is read).

        Raises
        ------
        PoolManifestError
            Corrupt, truncated, unknown-version or non-``"image"`` manifest.
        PoolChangedError
            An image vanished or changed since the save (the message names it).
        """
        m = read_pool_manifest(path, "image")
        if len(m.sources) != len(m.ids) or len(m.box) != 2:
            raise PoolManifestError(f"{m.path}: image pool manifest needs one file per image")
        pool = cls(
            root=m.relative(m.get("root", str)),
            ids=m.ids,
            files=m.sources,
            labels=m.labels(),
            box=(m.box[0], m.box[1]),
            pixel_size=m.voxel_size,
        )
        verify_checksums(m, pool)
        return pool

    def check(self) -> ImagePool:
        """Read every image once; raise on the first unreadable or wrong-size one."""
        for i in range(len(self)):
            self.read(i)
        return self

    # ------------------------------------------------------------------ derived pools
    def _describe_items(self) -> str:
        return f"{len(self)} images under {self.root}"

    def _derive(self, rows: np.ndarray, labels: list[str | None]) -> ImagePool:
        picked = rows.tolist()
        return ImagePool(
            root=self.root,
            ids=[self.ids[i] for i in picked],
            files=None if self._array is not None else [self._files[i] for i in picked],
            array=None if self._array is None else self._array[rows],
            labels=labels,
            box=self._box,
            pixel_size=self._pixel_size,
        )

    def dataset(
        self,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> Dataset[tuple[torch.Tensor, int]]:
        """Torch dataset of ``(x (1, H, W), class index)`` (``-1`` unlabelled), as
        :meth:`cryoal.io.VolumePool.dataset`.

        Raises
        ------
        InvalidLabelsError
            A label is not one of ``class_names``.
        """
        from cryoal.io.pool import PoolDataset

        return PoolDataset(self, transform, class_names)  # type: ignore[arg-type]

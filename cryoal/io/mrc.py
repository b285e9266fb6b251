"""MRC volumes: validated, memory-mapped reads and atomic writes, on top of mrcfile.

What a file holds is decided from its header and its extension:

===================  =====================================  ===========================
data in the file     extension                              cryoal sees
===================  =====================================  ===========================
3D (nz > 1)          ``.mrc .map .rec`` (any ``ispg``)      one volume ``(D, H, W)``
3D                   ``.mrcs .st .ali``                     a stack of N 2D images
4D (``ispg`` 401+,   any                                    a stack of N volumes
nz = mz·N)
2D (nz == 1)         any                                    one 2D image
===================  =====================================  ===========================

A ``.mrc`` whose header says "image stack" (``ispg == 0``, as many tomography programs
write for plain volumes) is still read as one volume; stacks are recognised by their
extension or by a volume-stack space group. Each of the extensions may carry ``.gz`` or
``.bz2``; compressed files are decompressed as a stream, never past what their header
implies: a header claiming more than the file can hold (``.gz``: 1032× its size, deflate's
limit; any: :data:`MAX_DECOMPRESSED_BYTES`) fails before anything is inflated, and a
stream that inflates more than 1 MiB past its data block (a decompression bomb) is an
error.

Uncompressed data are read through a read-only :class:`numpy.memmap` placed at the data
offset that mrcfile's header helpers compute, so reading volume ``i`` of a stack touches
only that volume's bytes. Every read is checked: map ID, machine stamp, mode, dimensions,
file size against the header, and finite values.
"""

from __future__ import annotations

import bz2
import gzip
import logging
import math
import os
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import mrcfile
import mrcfile.utils
import numpy as np
import torch
from mrcfile.dtypes import HEADER_DTYPE

from cryoal._atomic import atomic_path
from cryoal._repr import html_view
from cryoal.errors import CryoalWarning, InvalidVolumeError

__all__ = [
    "COMPRESSIONS",
    "MAX_DECOMPRESSED_BYTES",
    "STACK_EXTENSIONS",
    "VOLUME_EXTENSIONS",
    "MrcHeader",
    "Volume",
    "is_volume_file",
    "read_header",
    "read_volume",
    "split_extension",
    "write_volume",
]

logger = logging.getLogger(__name__)

#: extensions cryoal reads as MRC (each optionally followed by a compression suffix)
VOLUME_EXTENSIONS: tuple[str, ...] = (".mrc", ".map", ".rec", ".mrcs", ".st", ".ali")
#: extensions whose 3D data are a stack of 2D images (tilt series, particle stacks)
STACK_EXTENSIONS: tuple[str, ...] = (".mrcs", ".st", ".ali")
#: compression suffixes cryoal decompresses (as a stream, bounded: see the module doc)
COMPRESSIONS: dict[str, str] = {".gz": "gzip", ".bz2": "bzip2"}

_MODE_NAMES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}
_WRITE_DTYPES = {np.dtype(np.int8), np.dtype(np.int16), np.dtype(np.uint16), np.dtype(np.float16)}
_HEADER_BYTES = HEADER_DTYPE.itemsize  # 1024
#: the most a compressed MRC file may decompress to, in bytes (16 GiB); bzip2 has no
#: useful ratio bound, so this cap is what stops a header from claiming any size
MAX_DECOMPRESSED_BYTES = 16 * 2**30
#: deflate (gzip) cannot expand its input more than 1032-fold
_GZIP_MAX_RATIO = 1032
#: decompressed bytes tolerated after the data block (more is a decompression bomb)
_TRAILING_LIMIT = 2**20
_CHUNK = 2**20
#: what a broken compressed stream raises (zlib.error for bad deflate data)
_STREAM_ERRORS = (OSError, EOFError, zlib.error, ValueError)

Kind = Literal["volume", "volume-stack", "image", "image-stack"]


def split_extension(path: str | os.PathLike[str]) -> tuple[str, str | None]:
    """Return the MRC extension of ``path`` and its compression.

    Parameters
    ----------
    path
        A file name such as ``a.mrc``, ``b.mrcs.gz`` or ``c.MAP``.

    Returns
    -------
    tuple[str, str | None]
        The lower-case volume extension (``".mrc"``) and ``"gzip"``, ``"bzip2"`` or None.

    Raises
    ------
    InvalidVolumeError
        The extension is not one cryoal reads.
    """
    name = os.fspath(path).lower()
    compression = None
    for suffix, kind in COMPRESSIONS.items():
        if name.endswith(suffix):
            name, compression = name[: -len(suffix)], kind
            break
    ext = os.path.splitext(name)[1]
    if ext not in VOLUME_EXTENSIONS:
        known = " ".join(VOLUME_EXTENSIONS)
        raise InvalidVolumeError(
            f"{os.fspath(path)}: unknown volume extension {ext or '(none)'!r}; cryoal reads "
            f"{known} (optionally + .gz or .bz2)"
        )
    return ext, compression


def is_volume_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` has an extension that :func:`read_volume` accepts."""
    try:
        split_extension(path)
    except InvalidVolumeError:
        return False
    return True


@dataclass(frozen=True)
class MrcHeader:
    """What an MRC header says about a file, checked against the file size.

    Attributes
    ----------
    path
        The file.
    kind
        ``"volume"``, ``"volume-stack"``, ``"image"`` or ``"image-stack"`` (see module doc).
    mode
        MRC mode (0, 1, 2, 6 or 12).
    dtype
        The stored numpy dtype, with the file's byte order.
    data_shape
        Shape of the whole data block as stored: ``(D, H, W)``, ``(N, D, H, W)``,
        ``(N, H, W)`` or ``(H, W)``.
    voxel_size
        Voxel size along x in Å (1.0 when the header has none, with a warning).
    header_voxel_size
        The header's (x, y, z) voxel size in Å, as stored.
    origin
        The header origin (x, y, z) in Å.
    data_offset
        Byte offset of the data block (1024 + extended header).
    file_size
        Size of the file in bytes (on disk, compressed size for compressed files).
    compression
        ``"gzip"``, ``"bzip2"`` or None.
    """

    path: Path
    kind: Kind
    mode: int
    dtype: np.dtype[Any]
    data_shape: tuple[int, ...]
    voxel_size: float
    header_voxel_size: tuple[float, float, float]
    origin: tuple[float, float, float]
    data_offset: int
    file_size: int
    compression: str | None = field(default=None)

    @property
    def n_items(self) -> int:
        """Number of volumes or images in the file (1 for a single volume or image)."""
        return self.data_shape[0] if self.kind in ("volume-stack", "image-stack") else 1

    @property
    def item_shape(self) -> tuple[int, ...]:
        """Shape of one item: ``(D, H, W)`` for volumes, ``(H, W)`` for images."""
        if self.kind in ("volume-stack", "image-stack"):
            return self.data_shape[1:]
        return self.data_shape

    @property
    def item_nbytes(self) -> int:
        """Bytes of one item as stored."""
        return math.prod(self.item_shape) * self.dtype.itemsize

    @property
    def mode_name(self) -> str:
        """E.g. ``"2 (float32)"``."""
        return f"{self.mode} ({_MODE_NAMES.get(self.mode, '?')})"


@dataclass
class Volume:
    """One subtomogram as read from disk.

    Attributes
    ----------
    data
        float32 array ``(D, H, W)`` in z, y, x order.
    voxel_size
        Voxel size in Å.
    origin
        Header origin (x, y, z) in Å.
    path
        The source file.
    index
        Position inside a stack, or None for a single-volume file.
    """

    data: np.ndarray
    voxel_size: float
    origin: tuple[float, float, float]
    path: Path
    index: int | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """``(D, H, W)``."""
        return tuple(self.data.shape)

    def to_tensor(self) -> torch.Tensor:
        """The data as a float32 tensor ``(1, D, H, W)`` sharing memory with :attr:`data`."""
        return torch.from_numpy(self.data).unsqueeze(0)

    _repr_html_ = html_view("volume")


def read_header(path: str | os.PathLike[str], *, permissive: bool = False) -> MrcHeader:
    """Read and check an MRC header without reading the data.

    Parameters
    ----------
    path
        An MRC file (see :data:`VOLUME_EXTENSIONS`), optionally gzip/bzip2 compressed.
    permissive
        Downgrade a missing map ID and an unknown machine stamp to warnings (like
        mrcfile's ``permissive``); dimension, mode and size errors still raise.

    Returns
    -------
    MrcHeader

    Raises
    ------
    InvalidVolumeError
        Unknown extension, missing file, not an MRC file, unsupported mode, impossible
        dimensions, or a file shorter than its header says (uncompressed files only; a
        truncated compressed file fails when its data are read).

    Warns
    -----
    CryoalWarning
        Zero or negative voxel size (1.0 Å is used), and with ``permissive`` a bad map
        ID or machine stamp.
    """
    p = Path(path)
    ext, compression = split_extension(p)
    if compression is not None:
        file_size = _file_size(p)
        raw = _compressed_header(p, compression)
        return _interpret(_parse_header(raw, p, permissive), p, ext, compression, file_size)
    with _open(p) as fh:
        return _header_from(fh, p, ext, permissive)


def _file_size(p: Path) -> int:
    try:
        return os.stat(p).st_size
    except FileNotFoundError:
        raise InvalidVolumeError(f"{p}: file not found") from None
    except OSError as exc:
        raise InvalidVolumeError(f"{p}: cannot read ({exc.strerror})") from None


def _open(p: Path) -> BinaryIO:
    try:
        return open(p, "rb")
    except FileNotFoundError:
        raise InvalidVolumeError(f"{p}: file not found") from None
    except OSError as exc:
        raise InvalidVolumeError(f"{p}: cannot read ({exc.strerror})") from None


def _header_from(fh: BinaryIO, p: Path, ext: str, permissive: bool) -> MrcHeader:
    file_size = os.fstat(fh.fileno()).st_size
    raw = fh.read(_HEADER_BYTES)
    if len(raw) < _HEADER_BYTES:
        raise InvalidVolumeError(
            f"{p}: truncated: the file has {len(raw)} bytes, less than the 1024-byte "
            "MRC header; re-copy or re-export it"
        )
    return _interpret(_parse_header(raw, p, permissive), p, ext, None, file_size)


_MAP_AT = HEADER_DTYPE.fields["map"][1]
_MACHST_AT = HEADER_DTYPE.fields["machst"][1]
_HEADER_LE = HEADER_DTYPE.newbyteorder("<")
_HEADER_BE = HEADER_DTYPE.newbyteorder(">")


def _parse_header(raw: bytes, path: Path, permissive: bool) -> Any:
    """The 1024 header bytes as a structured scalar in the file's byte order.

    Plain structured access (not mrcfile's recarray) keeps a header read to a few µs.
    """
    if raw[_MAP_AT : _MAP_AT + 3] != b"MAP":
        msg = f"{path}: not an MRC file (no 'MAP ' ID in the header) or the file is corrupt"
        if not permissive:
            raise InvalidVolumeError(msg + "; pass permissive=True to try anyway")
        warnings.warn(msg, CryoalWarning, stacklevel=4)
    machst = raw[_MACHST_AT : _MACHST_AT + 4]
    try:
        byte_order = mrcfile.utils.byte_order_from_machine_stamp(machst)
    except ValueError as exc:
        if not permissive:
            raise InvalidVolumeError(
                f"{path}: {exc}; the header is corrupt (pass permissive=True to assume "
                "little-endian)"
            ) from None
        warnings.warn(f"{path}: {exc}; assuming little-endian", CryoalWarning, stacklevel=4)
        byte_order = "<"
    return np.frombuffer(raw, dtype=_HEADER_LE if byte_order == "<" else _HEADER_BE)[0]


def _open_stream(p: Path, compression: str) -> BinaryIO:
    """A decompressing reader on ``p`` (``"gzip"`` or ``"bzip2"``)."""
    try:
        stream = gzip.open(p, "rb") if compression == "gzip" else bz2.open(p, "rb")
    except FileNotFoundError:
        raise InvalidVolumeError(f"{p}: file not found") from None
    except OSError as exc:
        raise InvalidVolumeError(f"{p}: cannot read ({exc.strerror})") from None
    return stream  # type: ignore[return-value]


def _read_upto(stream: BinaryIO, n: int) -> bytearray:
    """The next ``n`` bytes of ``stream`` (fewer at its end), read in 1 MiB chunks.

    Memory follows what the stream really holds, never a size a header claims.
    """
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(min(_CHUNK, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def _compressed_header(path: Path, compression: str) -> bytes:
    """The first 1024 decompressed bytes of a compressed MRC file."""
    with _open_stream(path, compression) as stream:
        try:
            raw = bytes(_read_upto(stream, _HEADER_BYTES))
        except _STREAM_ERRORS as exc:
            raise InvalidVolumeError(f"{path}: not a readable MRC file ({exc})") from None
    if len(raw) < _HEADER_BYTES:
        raise InvalidVolumeError(
            f"{path}: truncated: the file decompresses to {len(raw)} bytes, less than the "
            "1024-byte MRC header; re-copy or re-export it"
        )
    return raw


def _decompressed_limit(file_size: int, compression: str) -> int:
    """The most bytes a ``file_size``-byte compressed file can hold (see module doc)."""
    if compression == "gzip":
        return min(MAX_DECOMPRESSED_BYTES, file_size * _GZIP_MAX_RATIO)
    return MAX_DECOMPRESSED_BYTES


def _interpret(
    header: Any, path: Path, ext: str, compression: str | None, file_size: int
) -> MrcHeader:
    mode = int(header["mode"])
    try:
        dtype = mrcfile.utils.dtype_from_mode(mode).newbyteorder(header.dtype["mode"].byteorder)
    except ValueError:
        dtype = None
    if dtype is None or mode not in _MODE_NAMES:
        supported = ", ".join(f"{m} ({n})" for m, n in _MODE_NAMES.items())
        raise InvalidVolumeError(
            f"{path}: unsupported MRC mode {mode}; cryoal reads modes {supported}"
        )
    nx, ny, nz = int(header["nx"]), int(header["ny"]), int(header["nz"])
    mx, my, mz = int(header["mx"]), int(header["my"]), int(header["mz"])
    ispg = int(header["ispg"])
    if nx <= 0 or ny <= 0 or nz <= 0:
        raise InvalidVolumeError(
            f"{path}: header has impossible dimensions nx={nx} ny={ny} nz={nz}; the file is corrupt"
        )
    is_volume_stack = bool(mrcfile.utils.spacegroup_is_volume_stack(ispg))
    if is_volume_stack and (mz <= 0 or nz % mz != 0):
        raise InvalidVolumeError(
            f"{path}: volume stack header (ispg={ispg}) has nz={nz} not a multiple of mz={mz}"
        )
    # mrcfile.utils.data_shape_from_header, on the plain structured header
    if is_volume_stack:
        shape: tuple[int, ...] = (nz // mz, mz, ny, nx)
    elif ispg == mrcfile.utils.IMAGE_STACK_SPACEGROUP and nz == 1:
        shape = (ny, nx)
    else:
        shape = (nz, ny, nx)
    kind: Kind
    if len(shape) == 4:
        kind = "volume-stack"
    elif len(shape) == 2 or shape[0] == 1:
        kind, shape = "image", shape[-2:]
    elif ext in STACK_EXTENSIONS:
        kind = "image-stack"
    else:
        kind = "volume"
    nsymbt = int(header["nsymbt"])
    if nsymbt < 0:
        raise InvalidVolumeError(
            f"{path}: header has a negative extended header size nsymbt={nsymbt}; the file "
            "is corrupt"
        )
    data_offset = _HEADER_BYTES + nsymbt
    nbytes = math.prod(shape) * dtype.itemsize
    expected = data_offset + nbytes
    if compression is not None and expected > _decompressed_limit(file_size, compression):
        dims = "x".join(str(s) for s in shape)
        raise InvalidVolumeError(
            f"{path}: the header says {dims} voxels of mode {mode} ({expected} bytes with the "
            f"{data_offset}-byte header) but a {file_size}-byte {compression} file cannot "
            f"hold more than {_decompressed_limit(file_size, compression)} bytes; the header "
            "is corrupt"
        )
    if compression is None and file_size < expected:
        dims = "x".join(str(s) for s in shape)
        raise InvalidVolumeError(
            f"{path}: truncated: the header says {dims} voxels of mode {mode} "
            f"({expected} bytes with the {data_offset}-byte header) but the file has "
            f"{file_size} bytes; re-copy or re-export it"
        )
    if compression is None and file_size > expected:
        logger.debug("%s: %d bytes after the data block ignored", path, file_size - expected)
    cella = header["cella"]
    vx, vy, vz = (
        float(cella[axis]) / n if n != 0 else 0.0
        for axis, n in zip("xyz", (mx, my, mz), strict=True)
    )
    voxel_size = vx
    if not math.isfinite(vx) or vx <= 0:
        warnings.warn(
            f"{path}: voxel size {vx:g} Å in the header is not positive; using 1.0 Å "
            "(set it with write_volume(..., voxel_size=...) or a header editor)",
            CryoalWarning,
            stacklevel=3,
        )
        voxel_size = 1.0
    elif kind in ("volume", "volume-stack") and max(abs(vy - vx), abs(vz - vx)) > 1e-3 * vx:
        logger.warning("%s: anisotropic voxel size (%g, %g, %g) Å; using x", path, vx, vy, vz)
    origin = header["origin"]
    return MrcHeader(
        path=path,
        kind=kind,
        mode=mode,
        dtype=dtype,
        data_shape=shape,
        voxel_size=voxel_size,
        header_voxel_size=(vx, vy, vz),
        origin=(float(origin["x"]), float(origin["y"]), float(origin["z"])),
        data_offset=data_offset,
        file_size=file_size,
        compression=compression,
    )


def _read_item(
    header: MrcHeader,
    index: int | None,
    *,
    permissive: bool = False,
    fh: BinaryIO | None = None,
) -> np.ndarray:
    """Read item ``index`` (None for a single volume/image) as a new float32 array.

    Only the item's bytes are read: from ``fh`` (an open handle on the file, positioned
    anywhere) with one seek + read, else through a read-only memory map. Compressed
    files are decompressed whole, bounded by their header (:func:`_decompress_data`).
    Checks that every value is finite (a warning instead with ``permissive``).
    """
    where = f"{header.path}" if index is None else f"{header.path}#{index}"
    if header.compression is None:
        offset = header.data_offset + (index or 0) * header.item_nbytes
        shape = header.item_shape if index is not None else header.data_shape
        count = math.prod(shape)
        try:
            if fh is not None:
                fh.seek(offset)
                raw = np.fromfile(fh, dtype=header.dtype, count=count)
                if raw.size != count:
                    raise ValueError(f"read {raw.size} of {count} values")
                out = raw.reshape(shape).astype(np.float32, copy=False)
            else:
                mm = np.memmap(
                    header.path, dtype=header.dtype, mode="r", offset=offset, shape=shape
                )
                out = np.array(mm, dtype=np.float32)
                del mm
        except (ValueError, OSError) as exc:  # the file shrank since its header was read
            raise InvalidVolumeError(
                f"{where}: cannot read the data block ({exc}); the file changed or is "
                "truncated, re-copy or re-export it"
            ) from None
        if not out.dtype.isnative:
            out = out.astype(out.dtype.newbyteorder("="))
    else:
        data = _decompress_data(header)
        out = np.array(data if index is None else data[index], dtype=np.float32)
        if not out.dtype.isnative:
            out = out.astype(out.dtype.newbyteorder("="))
    _check_finite(out, where, permissive)
    return out


def _decompress_data(header: MrcHeader) -> np.ndarray:
    """The whole data block of a compressed file, ``header.data_shape``, stored dtype.

    Inflates at most the header's data size plus 1 MiB: fewer bytes is a truncated file,
    more is a decompression bomb (both :class:`InvalidVolumeError`).
    """
    compression = header.compression or "gzip"
    expected = header.data_offset + math.prod(header.data_shape) * header.dtype.itemsize
    with _open_stream(header.path, compression) as stream:
        try:
            buf = _read_upto(stream, expected)
            trailing = len(_read_upto(stream, _TRAILING_LIMIT + 1)) if len(buf) == expected else 0
        except _STREAM_ERRORS as exc:
            raise InvalidVolumeError(
                f"{header.path}: cannot read the compressed data ({exc}); the file is "
                "truncated or corrupt, re-copy or re-export it"
            ) from None
    if len(buf) < expected:
        raise InvalidVolumeError(
            f"{header.path}: cannot read the compressed data (it decompresses to {len(buf)} "
            f"bytes, the header says {expected}); the file is truncated or corrupt, re-copy "
            "or re-export it"
        )
    if trailing > _TRAILING_LIMIT:
        raise InvalidVolumeError(
            f"{header.path}: decompresses to more than {_TRAILING_LIMIT} bytes past the "
            f"{expected} bytes its header says (a decompression bomb or a corrupt header); "
            "re-export it"
        )
    if trailing:
        logger.debug(
            "%s: %d decompressed bytes after the data block ignored", header.path, trailing
        )
    return np.frombuffer(
        buf, dtype=header.dtype, count=math.prod(header.data_shape), offset=header.data_offset
    ).reshape(header.data_shape)


def _load(
    path: str | os.PathLike[str],
    index: int | None,
    validate: Callable[[MrcHeader], int | None],
    *,
    permissive: bool = False,
) -> tuple[MrcHeader, np.ndarray]:
    """Read a header, let ``validate`` check it (and map ``index``), then read the item.

    Uncompressed files are opened once for both. ``validate`` raises on a header it
    does not accept and returns the index to read (None for the whole data block).
    """
    p = Path(path)
    ext, compression = split_extension(p)
    if compression is not None:
        header = read_header(p, permissive=permissive)
        return header, _read_item(header, validate(header), permissive=permissive)
    with _open(p) as fh:
        header = _header_from(fh, p, ext, permissive)
        return header, _read_item(header, validate(header), permissive=permissive, fh=fh)


def _check_finite(data: np.ndarray, where: str, permissive: bool) -> None:
    finite = np.isfinite(data)
    if finite.all():
        return
    bad = int(finite.size - np.count_nonzero(finite))
    first = tuple(int(i) for i in np.argwhere(~finite)[0])
    msg = (
        f"{where}: {bad} NaN/Inf values (first at voxel {first}, z-y-x order); "
        "fix or remove this volume"
    )
    if not permissive:
        raise InvalidVolumeError(msg)
    warnings.warn(msg, CryoalWarning, stacklevel=3)


def read_volume(
    path: str | os.PathLike[str], *, index: int | None = None, permissive: bool = False
) -> Volume:
    """Read one subtomogram.

    Parameters
    ----------
    path
        An MRC file holding one volume, or a volume stack (then ``index`` is required).
    index
        Which volume of a stack (0-based). Must be None or 0 for a single volume.
    permissive
        Downgrade header oddities (map ID, machine stamp) and NaN/Inf values to
        :class:`~cryoal.errors.CryoalWarning`.

    Returns
    -------
    Volume
        ``data`` is a new float32 array ``(D, H, W)``; voxel size in Å; origin (x, y, z) Å.

    Raises
    ------
    InvalidVolumeError
        See :func:`read_header`; also a 2D image or image stack where a volume is
        expected, a stack without ``index``, an index out of range, NaN/Inf values.

    Warns
    -----
    CryoalWarning
        Zero or negative voxel size in the header (1.0 Å is used).
    """

    def validate(header: MrcHeader) -> int | None:
        p = header.path
        if header.kind == "image":
            dims = "x".join(str(s) for s in header.item_shape)
            raise InvalidVolumeError(
                f"{p}: is a 2D image ({dims}), not a volume; cryoal needs 3D subtomograms (D, H, W)"
            )
        if header.kind == "image-stack":
            n, (h, w) = header.n_items, header.item_shape
            raise InvalidVolumeError(
                f"{p}: is a stack of {n} 2D images ({h}x{w}), not a volume; read 2D images "
                "with VolumePool.from_stack"
            )
        if header.kind == "volume-stack":
            n = header.n_items
            if index is None:
                raise InvalidVolumeError(
                    f"{p}: is a stack of {n} volumes; pass index=0..{n - 1} or use "
                    "VolumePool.from_stack"
                )
            if not 0 <= index < n:
                raise InvalidVolumeError(
                    f"{p}: index {index} out of range for a stack of {n} volumes"
                )
            return index
        if index not in (None, 0):
            raise InvalidVolumeError(f"{p}: holds one volume; index {index} is out of range")
        return None

    header, data = _load(path, index, validate, permissive=permissive)
    return Volume(
        data=data,
        voxel_size=header.voxel_size,
        origin=header.origin,
        path=header.path,
        index=index if header.kind == "volume-stack" else None,
    )


def write_volume(
    path: str | os.PathLike[str],
    array: np.ndarray | torch.Tensor,
    voxel_size: float = 1.0,
    *,
    origin: tuple[float, float, float] | None = None,
) -> Path:
    """Write a volume, a stack or an image as MRC, atomically.

    Parameters
    ----------
    path
        Target file; the extension picks the layout and ``.gz``/``.bz2`` the compression.
    array
        ``(D, H, W)`` volume, ``(N, D, H, W)`` volume stack (``ispg`` 401), ``(N, H, W)``
        image stack when the extension is ``.mrcs``/``.st``/``.ali``, or ``(H, W)`` image.
        int8, int16, uint16 and float16 are stored as such (modes 0, 1, 6, 12); anything
        else as float32 (mode 2). Tensors are moved to the CPU.
    voxel_size
        Voxel size in Å (> 0).
    origin
        Header origin (x, y, z) in Å (default 0, 0, 0).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InvalidVolumeError
        Unknown extension, wrong number of dimensions, NaN/Inf values, voxel size ≤ 0.
    """
    target = Path(path)
    ext, compression = split_extension(target)
    data = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    if data.ndim not in (2, 3, 4):
        raise InvalidVolumeError(
            f"{target}: cannot write an array of shape {data.shape}; expected (D, H, W), "
            "(N, D, H, W), (N, H, W) or (H, W)"
        )
    if not np.isfinite(voxel_size) or voxel_size <= 0:
        raise InvalidVolumeError(f"{target}: voxel size must be > 0 Å, got {voxel_size}")
    if data.dtype not in _WRITE_DTYPES:
        if np.iscomplexobj(data):
            raise InvalidVolumeError(f"{target}: complex data cannot be written; take abs or real")
        data = data.astype(np.float32, copy=False)
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        raise InvalidVolumeError(f"{target}: refusing to write {bad} NaN/Inf values")
    data = np.ascontiguousarray(data)
    with (
        atomic_path(target) as tmp,
        mrcfile.new(tmp, overwrite=True, compression=compression) as mrc,
    ):
        mrc.set_data(data)
        # A fixed label instead of mrcfile's creation time: same data -> same bytes.
        mrc.header.label[:] = b""
        mrc.header.label[0] = b"cryoal: written by cryoal.io.write_volume"
        mrc.header.nlabl = 1
        if data.ndim == 3 and ext in STACK_EXTENSIONS:
            mrc.set_image_stack()
        mrc.voxel_size = float(voxel_size)
        ox, oy, oz = origin if origin is not None else (0.0, 0.0, 0.0)
        mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = ox, oy, oz
    return target

"""Structure-aware fuzzing of cryoal's readers: seeds, mutators, targets, outcomes.

One mutation *program* per reader, written once against :class:`Draw` (a source of
choices), drives every engine: hypothesis (``data.draw``) in the default test run,
atheris (libFuzzer's ``FuzzedDataProvider``) and plain :class:`random.Random` in the
long runs (``tests/fuzz/long_run.py``). A program picks a valid seed file generated here
with the real writers (mrcfile, h5py, starfile, cryoal's ``save_checkpoint``) and
mutates it structurally: header fields set to huge/negative/zero values, truncation, bit
flips, corrupt compressed streams, HDF5 layouts with wrong shapes/dtypes/attrs or missing
keys, checkpoint dicts with keys removed, wrong types or wrong tensor shapes.

The property every target checks: the reader either returns or raises a
:class:`cryoal.errors.CryoalError`. Anything else is an *untyped* exception (a bug).
"""

from __future__ import annotations

import bz2
import contextlib
import copy
import gzip
import io
import os
import random
import struct
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cryoal.errors import CryoalError

# --------------------------------------------------------------------------- draws


class Draw(Protocol):
    """A source of choices: hypothesis, atheris or a seeded RNG."""

    def int(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]``."""

    def bytes(self, n: int) -> bytes:
        """Up to ``n`` bytes."""


class RandomDraw:
    """Choices from :class:`random.Random` (the long run without atheris)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def bytes(self, n: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, n))


class HypothesisDraw:
    """Choices drawn through hypothesis' ``st.data()`` (shrinks to minimal programs)."""

    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st

        self._data = data
        self._st = st

    def int(self, lo: int, hi: int) -> int:
        return int(self._data.draw(self._st.integers(lo, hi)))

    def bytes(self, n: int) -> bytes:
        return bytes(self._data.draw(self._st.binary(max_size=n)))


class AtherisDraw:
    """Choices from libFuzzer's input bytes (coverage-guided, via atheris)."""

    def __init__(self, fdp: Any) -> None:
        self._fdp = fdp

    def int(self, lo: int, hi: int) -> int:
        return int(self._fdp.ConsumeIntInRange(lo, hi))

    def bytes(self, n: int) -> bytes:
        return bytes(self._fdp.ConsumeBytes(self._fdp.ConsumeIntInRange(0, n)))


def choice(draw: Draw, items: Sequence[Any]) -> Any:
    """One of ``items``."""
    return items[draw.int(0, len(items) - 1)]


#: int32 values that break size arithmetic: zero, negative, off-by-one, huge
INTERESTING_INT32 = (
    0,
    1,
    -1,
    2,
    3,
    4,
    7,
    8,
    255,
    401,
    1024,
    2**15,
    2**16,
    2**24,
    2**30,
    2**31 - 1,
    -(2**31),
    -1024,
)
INTERESTING_FLOAT32 = (0.0, -1.0, 1.0, float("nan"), float("inf"), -float("inf"), 3.4e38, 1e-38)


def mutate_bytes(draw: Draw, data: bytes, *, max_ops: int = 3) -> bytes:
    """Generic byte mutations: bit flips, byte sets, truncation, insert, delete, extend."""
    buf = bytearray(data)
    for _ in range(draw.int(1, max_ops)):
        op = draw.int(0, 6)
        n = len(buf)
        if op == 0 and n:  # flip one bit
            pos = draw.int(0, n - 1)
            buf[pos] ^= 1 << draw.int(0, 7)
        elif op == 1 and n:  # set a byte to an interesting value
            buf[draw.int(0, n - 1)] = choice(draw, (0, 1, 0x7F, 0x80, 0xFF))
        elif op == 2:  # truncate
            del buf[draw.int(0, n) :]
        elif op == 3:  # insert bytes
            pos = draw.int(0, n)
            buf[pos:pos] = draw.bytes(64)
        elif op == 4 and n:  # delete a run
            pos = draw.int(0, n - 1)
            del buf[pos : pos + draw.int(1, 256)]
        elif op == 5:  # append junk / zeros
            buf += draw.bytes(64) if draw.int(0, 1) else bytes(draw.int(1, 4096))
        elif op == 6 and n >= 4:  # overwrite 4 aligned bytes with an interesting int32
            pos = draw.int(0, (n - 4) // 4) * 4
            buf[pos : pos + 4] = struct.pack("<i", choice(draw, INTERESTING_INT32))
    return bytes(buf)


# --------------------------------------------------------------------------- MRC


@dataclass(frozen=True)
class Seed:
    """A valid file: its name (the extension matters) and bytes (uncompressed)."""

    name: str
    data: bytes
    compression: str | None = None


def _compress(data: bytes, compression: str | None) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if compression == "bzip2":
        return bz2.compress(data, compresslevel=9)
    return data


def _mrc_bytes(
    data: np.ndarray, *, image_stack: bool = False, voxel_size: float = 4.0, extended: int = 0
) -> bytes:
    import mrcfile

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mrc = mrcfile.mrcinterpreter.MrcInterpreter()
        mrc._iostream = buf
        mrc._create_default_attributes()
        if extended:
            mrc.set_extended_header(np.zeros(extended, dtype="V1"))
        mrc.set_data(data)
        if image_stack:
            mrc.set_image_stack()
        mrc.voxel_size = voxel_size
        mrc.flush()
    return buf.getvalue()


_MRC_SEEDS: list[Seed] | None = None


def mrc_seeds() -> list[Seed]:
    """Small valid MRC files: every mode, byte orders, stacks, images, extended header, gz/bz2."""
    global _MRC_SEEDS
    if _MRC_SEEDS is None:
        rng = np.random.default_rng(0)
        vol = rng.standard_normal((6, 6, 6)).astype(np.float32)
        vols = rng.standard_normal((3, 4, 4, 4)).astype(np.float32)
        imgs = rng.standard_normal((3, 6, 6)).astype(np.float32)
        _MRC_SEEDS = [
            Seed("vol.mrc", _mrc_bytes(vol)),
            Seed("mode0.mrc", _mrc_bytes(np.clip(vol * 30, -128, 127).astype(np.int8))),
            Seed("mode1.mrc", _mrc_bytes((vol * 1000).astype(np.int16))),
            Seed("mode6.mrc", _mrc_bytes((np.abs(vol) * 1000).astype(np.uint16))),
            Seed("mode12.mrc", _mrc_bytes(vol.astype(np.float16))),
            Seed("big.map", _mrc_bytes(vol.astype(">f4"))),
            Seed("ext.rec", _mrc_bytes(vol, extended=96)),
            Seed("vstack.mrcs", _mrc_bytes(vols)),
            Seed("images.mrcs", _mrc_bytes(imgs, image_stack=True)),
            Seed("image.mrc", _mrc_bytes(imgs[0])),
            Seed("vol.mrc.gz", _mrc_bytes(vol), "gzip"),
            Seed("vol.mrc.bz2", _mrc_bytes(vol), "bzip2"),
            Seed("vstack.mrcs.gz", _mrc_bytes(vols), "gzip"),
        ]
    return _MRC_SEEDS


def _header_fields() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(name, byte offset) of every int32 and every float32 in the MRC header."""
    from mrcfile.dtypes import HEADER_DTYPE

    ints: list[tuple[str, int]] = []
    floats: list[tuple[str, int]] = []
    for name, (dt, offset, *_) in HEADER_DTYPE.fields.items():
        if dt.names:  # cella / cellb / origin: three float32
            floats += [(f"{name}.{sub}", offset + 4 * k) for k, sub in enumerate(dt.names)]
        elif dt.kind == "i" and dt.itemsize == 4:
            ints.append((name, offset))
        elif dt.kind == "f" and dt.itemsize == 4:
            floats.append((name, offset))
    return ints, floats


_INT_FIELDS, _FLOAT_FIELDS = _header_fields()
#: the size-defining fields, drawn more often
_SIZE_FIELDS = ("nx", "ny", "nz", "mode", "mx", "my", "mz", "ispg", "nsymbt")


def mutate_mrc(draw: Draw) -> tuple[str, bytes]:
    """A mutated MRC file: ``(file name, bytes on disk)``."""
    seed = choice(draw, mrc_seeds())
    data = seed.data
    order = ">" if seed.name.startswith("big") else "<"
    for _ in range(draw.int(1, 3)):
        op = draw.int(0, 4)
        if op <= 1:  # size field: huge / negative / zero / small
            name = choice(draw, _SIZE_FIELDS)
            offset = dict(_INT_FIELDS)[name]
            value = (
                choice(draw, INTERESTING_INT32) if draw.int(0, 3) else draw.int(-(2**31), 2**31 - 1)
            )
            data = data[:offset] + struct.pack(order + "i", value) + data[offset + 4 :]
        elif op == 2:  # any other header field
            if draw.int(0, 1):
                name, offset = choice(draw, _INT_FIELDS)
                packed = struct.pack(order + "i", choice(draw, INTERESTING_INT32))
            else:
                name, offset = choice(draw, _FLOAT_FIELDS)
                packed = struct.pack(order + "f", choice(draw, INTERESTING_FLOAT32))
            data = data[:offset] + packed + data[offset + 4 :]
        elif op == 3:  # map ID / machine stamp
            offset = 208 if draw.int(0, 1) else 212
            data = data[:offset] + draw.bytes(4).ljust(4, b"\0")[:4] + data[offset + 4 :]
        else:
            data = mutate_bytes(draw, data)
    out = _compress(data, seed.compression)
    if seed.compression is not None and draw.int(0, 2) == 0:
        out = mutate_bytes(draw, out)  # corrupt the compressed stream itself
    return seed.name, out


def target_mrc(path: Path) -> None:
    """Everything a user reaches with an MRC file: header, volume, pool, ``cryoal info``."""
    from cryoal.io import VolumePool, read_header, read_volume

    header = read_header(path)
    _info_file(path)
    if header.kind != "image":  # a lone 2D image is no pool (a typed error, tested elsewhere)
        pool = VolumePool.from_path(path)
        pool.check()
        for i in {0, len(pool) - 1}:
            pool.read(i)
    if header.kind == "volume-stack":
        read_volume(path, index=header.n_items - 1)
    elif header.kind == "volume":
        read_volume(path)


def _info_file(path: Path) -> None:
    """``cryoal info FILE`` without the CLI: the code its output comes from."""
    from cryoal.cli import info as info_cmd

    with contextlib.redirect_stdout(io.StringIO()):
        if path.suffix.lower() in (".h5", ".hdf5", ".hdf"):
            from cryoal.io import VolumePool

            info_cmd._pool_info(path, VolumePool.from_hdf5(path), None)
        else:
            info_cmd._file_info(path)


# --------------------------------------------------------------------------- HDF5


def _h5_bytes(build: Callable[[Any], None]) -> bytes:
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as fh:
        build(fh)
    return buf.getvalue()


def _valid_pool(fh: Any) -> None:
    import h5py

    rng = np.random.default_rng(1)
    fh.create_dataset("volumes", data=rng.standard_normal((3, 4, 4, 4)).astype(np.float32))
    string = h5py.string_dtype("utf-8")
    fh.create_dataset("ids", data=["a", "b", "c"], dtype=string)
    fh.create_dataset("labels", data=["x", "", "y"], dtype=string)
    fh.attrs["voxel_size"] = 4.0
    fh.attrs["format"] = "cryoal-pool"
    fh.attrs["format_version"] = 1


_H5_SEED: bytes | None = None


def hdf5_seed() -> bytes:
    """A valid 3-volume pool with ids and labels, as bytes."""
    global _H5_SEED
    if _H5_SEED is None:
        _H5_SEED = _h5_bytes(_valid_pool)
    return _H5_SEED


def _attr_value(draw: Draw) -> Any:
    return choice(
        draw,
        (
            4.0,
            0.0,
            -3.0,
            float("nan"),
            float("inf"),
            "4.0",
            "abc",
            b"\xff\xfe",
            np.array([1.0, 2.0]),
            np.array([], dtype=np.float64),
            np.complex64(1 + 2j),
            True,
            np.int64(2**62),
            np.array([[1, 2]], dtype=np.int8),
        ),
    )


def _strings_value(draw: Draw, n: int) -> Any:
    import h5py

    k = max(0, n + draw.int(-1, 1))
    kind = draw.int(0, 7)
    if kind == 0:
        return np.array([f"s{i}" for i in range(k)], dtype=h5py.string_dtype("utf-8"))
    if kind == 1:
        return np.arange(k, dtype=np.int32)
    if kind == 2:
        return np.array([f"s{i}".encode() for i in range(k)], dtype="S4")
    if kind == 3:
        return np.zeros((k, 2), dtype=np.float32)
    if kind == 4:
        return np.array([b"\xff\xfe"] * k, dtype="S2")
    if kind == 5:
        return np.float64(3.0)  # scalar dataset
    if kind == 6:
        return np.array(["same"] * k, dtype=h5py.string_dtype("utf-8"))
    return np.zeros(k, dtype=[("a", "<i4"), ("b", "<f4")])


def _volumes_value(draw: Draw) -> Any:
    ndim = choice(draw, (3, 4, 4, 4, 0, 1, 2, 5))
    shape = tuple(choice(draw, (0, 1, 2, 3, 4)) for _ in range(ndim))
    dtype = choice(
        draw,
        (np.float32, np.float64, np.float16, np.int8, np.uint16, np.int64, np.bool_, np.complex64),
    )
    arr = np.zeros(shape, dtype=dtype)
    fill = draw.int(0, 3)
    if arr.size and fill == 1 and arr.dtype.kind in "fc":
        arr.flat[draw.int(0, arr.size - 1)] = np.nan
    elif arr.size and fill == 2 and arr.dtype.kind in "fc":
        arr.flat[draw.int(0, arr.size - 1)] = np.inf
    elif arr.size and fill == 3 and arr.dtype.kind == "f":
        arr[...] = np.finfo(arr.dtype).max
    return arr


def mutate_hdf5(draw: Draw) -> tuple[str, bytes]:
    """A mutated HDF5 pool: a file built with a broken layout, or a corrupted valid file."""
    name = choice(draw, ("pool.h5", "pool.hdf5", "pool.hdf"))
    if draw.int(0, 3) == 0:
        return name, mutate_bytes(draw, hdf5_seed(), max_ops=2)

    def build(fh: Any) -> None:
        vols = _volumes_value(draw)
        where = draw.int(0, 5)
        if where == 0:
            fh.create_group("volumes").create_dataset("x", data=np.zeros(3))
        elif where == 1:
            fh.create_dataset("other", data=vols)
        elif where == 2 and vols.ndim >= 1:  # chunked + compressed, like write_hdf5_pool
            chunks = (1, *vols.shape[1:]) if vols.size else None
            fh.create_dataset(
                "volumes",
                data=vols,
                chunks=chunks,
                maxshape=(None, *vols.shape[1:]),
                compression="gzip" if vols.size else None,
            )
        else:
            fh.create_dataset("volumes", data=vols)
        n = vols.shape[0] if vols.ndim else 0
        for key in ("ids", "labels"):
            k = draw.int(0, 3)
            if k == 1:
                fh.create_dataset(key, data=_strings_value(draw, n))
            elif k == 2:
                fh.create_group(key)
        for holder_kind in range(draw.int(0, 3)):
            holder = fh if holder_kind != 1 or "volumes" not in fh else fh["volumes"]
            key = choice(draw, ("voxel_size", "format", "format_version"))
            with contextlib.suppress(TypeError, ValueError):
                holder.attrs[key] = _attr_value(draw)

    return name, _h5_bytes(build)


def target_hdf5(path: Path) -> None:
    """Open the pool, read every volume, and print ``cryoal info`` for it."""
    from cryoal.io import VolumePool

    pool = VolumePool.from_path(path)
    pool.check()
    for i in range(min(len(pool), 4)):
        pool.read(i)
    _info_file(path)


# --------------------------------------------------------------------------- labels

_CSV_SEEDS = (
    "id,label\nvol_0.mrc,ribosome\nvol_1.mrc,proteasome\nstack.mrcs#2,ribosome\n",
    "id,label,score\na,x,0.5\nb,,0.25\nc,y,NaN\n",
    "id\tlabel\na\tx\nb\ty\n",
)
_STAR_SEED = (
    "\ndata_particles\n\nloop_\n_rlnImageName #1\n_cryoalLabel #2\n_cryoalScore #3\n"
    "000001@stack.mrcs\tribosome\t0.5\n000002@stack.mrcs\tproteasome\t0.25\n"
    "vol_3.mrc\tribosome\t1.0\n"
)
_LABEL_TOKENS = (
    ",",
    "\n",
    '"',
    "\t",
    "#",
    "loop_",
    "data_",
    "_rlnImageName",
    "_cryoalLabel",
    "@",
    "000000@",
    "-1@x",
    "99999999999999999999@s.mrcs",
    "\x00",
    "\ufeff",
    "\xff",
    "NaN",
    " ",
    "id",
    "label",
    "\r\n",
    "'",
    ";",
)


def mutate_labels(draw: Draw) -> tuple[str, bytes]:
    """A mutated labels table (CSV, TSV or STAR) with structural and token mutations."""
    kind = draw.int(0, 3)
    if kind == 3:
        name, text = "labels.star", _STAR_SEED
    else:
        text = _CSV_SEEDS[kind]
        name = "labels.tsv" if kind == 2 else "labels.csv"
    for _ in range(draw.int(1, 4)):
        op = draw.int(0, 3)
        pos = draw.int(0, len(text))
        if op == 0:
            text = text[:pos] + choice(draw, _LABEL_TOKENS) + text[pos:]
        elif op == 1:
            text = text[:pos] + text[pos + draw.int(1, 20) :]
        elif op == 2:  # duplicate a line
            lines = text.splitlines(keepends=True)
            if lines:
                i = draw.int(0, len(lines) - 1)
                lines.insert(i, lines[i])
                text = "".join(lines)
        else:
            text = text[:pos]
    data = text.encode("utf-8", "surrogatepass")
    if draw.int(0, 3) == 0:
        data = mutate_bytes(draw, data)
    return name, data


def target_labels(path: Path) -> None:
    """Read the table, the labels, and check them against a pool's ids."""
    from cryoal.io import read_labels, read_table

    read_table(path)
    known = {"vol_0.mrc", "vol_1.mrc", "stack.mrcs#0", "stack.mrcs#1", "stack.mrcs#2", "vol_3.mrc"}
    read_labels(path, known_ids=known | {"a", "b", "c"}, require_labels=False)
    read_labels(path)


# --------------------------------------------------------------------------- checkpoints

CHECKPOINT_BOX = (1, 8, 8, 8)
_CKPT_PAYLOAD: dict[str, Any] | None = None


def checkpoint_payload() -> dict[str, Any]:
    """The dict that ``save_checkpoint`` writes for a real small cb3d model (8³ boxes)."""
    global _CKPT_PAYLOAD
    if _CKPT_PAYLOAD is None:
        import tempfile

        import torch

        from cryoal.models import create, save_checkpoint

        torch.manual_seed(0)
        model = create("cb3d", 2, CHECKPOINT_BOX)
        with tempfile.TemporaryDirectory() as tmp:
            path = save_checkpoint(
                Path(tmp) / "seed.pt", model, class_names=["a", "b"], voxel_size=4.0
            )
            _CKPT_PAYLOAD = torch.load(path, weights_only=True)
    return _CKPT_PAYLOAD


_WRONG_VALUES: tuple[Any, ...] = (
    None,
    0,
    -1,
    2**40,
    1.5,
    float("nan"),
    "x",
    "",
    [],
    [1],
    [0, 0, 0, 0],
    [-1, 8, 8, 8],
    [1, 2**20, 2**20, 2**20],
    {},
    {"a": 1},
    True,
    b"\x00",
)


def _tensor_variant(draw: Draw, t: Any) -> Any:
    import torch

    k = draw.int(0, 5)
    if k == 0:
        return t.reshape(-1)
    if k == 1:
        return torch.zeros((*t.shape, 2))
    if k == 2:
        return t.to(torch.float64)
    if k == 3:
        return t.to(torch.int64) if t.is_floating_point() else t.to(torch.float32)
    if k == 4:
        return torch.full_like(t, float("nan")) if t.is_floating_point() else t
    return torch.zeros(0)


def _mutate_payload(draw: Draw, payload: dict[str, Any]) -> dict[str, Any]:
    p = copy.deepcopy(payload)
    for _ in range(draw.int(1, 3)):
        section = choice(draw, ("top", "arch", "arch", "state_dict", "state_dict", "meta"))
        holder: Any = p if section == "top" else p.get(section)
        if not isinstance(holder, dict) or not holder:
            p[section] = choice(draw, _WRONG_VALUES)
            continue
        key = choice(draw, sorted(holder))
        op = draw.int(0, 3)
        if op == 0:
            del holder[key]
        elif op == 1:
            holder[key] = choice(draw, _WRONG_VALUES)
        elif op == 2 and section == "state_dict":
            holder[key] = _tensor_variant(draw, holder[key])
        elif op == 2 and section == "arch" and key == "kwargs":
            holder[key] = choice(
                draw, ({"width": 2**14}, {"dropout": 2.0}, {"nope": 1}, {"width": -3}, [1, 2])
            )
        else:
            holder[str(choice(draw, ("extra", "name", "format", "0", "")))] = choice(
                draw, _WRONG_VALUES
            )
    return p


def mutate_checkpoint(draw: Draw) -> tuple[str, bytes]:
    """A mutated checkpoint: a re-saved dict with broken structure, or corrupted zip bytes."""
    import torch

    payload = checkpoint_payload()
    buf = io.BytesIO()
    if draw.int(0, 2):
        torch.save(_mutate_payload(draw, payload), buf)
        data = buf.getvalue()
        if draw.int(0, 4) == 0:
            data = mutate_bytes(draw, data, max_ops=1)
    else:
        torch.save(payload, buf)
        data = mutate_bytes(draw, buf.getvalue())
    return "model.pt", data


def target_checkpoint(path: Path) -> None:
    """``load_checkpoint`` and what ``cryoal predict`` does next: check the box, score a batch."""
    import torch

    from cryoal.models import check_compatible, load_checkpoint

    model, info = load_checkpoint(path)
    check_compatible(info, CHECKPOINT_BOX[1:], 4.0)
    with torch.no_grad():
        out = model(torch.zeros((2, *CHECKPOINT_BOX)))
    assert out.shape == (2, info.arch.num_classes), out.shape


def target_predict(path: Path) -> None:
    """``cryoal predict --volumes DIR --model FILE --out pred.csv`` through the CLI.

    Exit 0 (a prediction table) or 2 (one ``Error:`` line) is fine; a traceback (an
    exception escaping the command) is re-raised for the harness to classify.
    """
    from click.testing import CliRunner
    from cryoal.cli.main import cli

    vols = _predict_volumes()
    out = path.with_name("pred.csv")
    try:
        result = CliRunner().invoke(
            cli, ["predict", "--volumes", str(vols), "--model", str(path), "--out", str(out)]
        )
    finally:
        with contextlib.suppress(OSError):
            out.unlink()
    if result.exit_code == 2:
        lines = result.output.strip().splitlines()
        if len(lines) != 1 or not lines[0].startswith("Error: "):
            raise AssertionError(f"cryoal predict: exit 2 without one Error line: {lines!r}")
        raise PrintedError(lines[0])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    if result.exit_code != 0:
        raise AssertionError(f"cryoal predict exited {result.exit_code}: {result.output!r}")


class PrintedError(CryoalError):
    """``cryoal`` printed one ``Error:`` line and exited 2 (a typed error, as intended)."""


_PREDICT_DIR: Path | None = None


def _predict_volumes() -> Path:
    """A folder of two 8³ volumes at 4 Å (the checkpoint seed's box), made once."""
    global _PREDICT_DIR
    if _PREDICT_DIR is None:
        import atexit
        import shutil
        import tempfile

        from cryoal.io import write_volume

        folder = Path(tempfile.mkdtemp(prefix="cryoal-fuzz-vols-"))
        atexit.register(shutil.rmtree, folder, True)
        rng = np.random.default_rng(2)
        for i in range(2):
            vol = rng.standard_normal(CHECKPOINT_BOX[1:]).astype(np.float32)
            write_volume(folder / f"v{i}.mrc", vol, 4.0)
        _PREDICT_DIR = folder
    return _PREDICT_DIR


# --------------------------------------------------------------------------- particles

#: (nz, ny, nx) voxels of the seed tomograms at 10 Å/voxel
_TOMO_SHAPES = {"TS_1": (5, 16, 16), "TS_2": (5, 16, 16)}
_PIXEL = 10.0
_PARTICLE_SEEDS: list[tuple[str, bytes]] | None = None


def _seed_particles() -> Any:
    import pandas as pd

    from cryoal.io import ParticleList

    rng = np.random.default_rng(3)
    n = 4
    tomos = ["TS_1", "TS_1", "TS_2", "TS_2"]
    table = pd.DataFrame(
        {
            "id": [f"{t}:{i:06d}" for i, t in enumerate(tomos)],
            "tomo": tomos,
            "x": rng.uniform(0, 150, n),
            "y": rng.uniform(0, 150, n),
            "z": rng.uniform(0, 40, n),
            "rot": rng.uniform(-180, 180, n),
            "tilt": rng.uniform(5, 175, n),
            "psi": rng.uniform(-180, 180, n),
            "label": ["a", "b", "a", "b"],
            "score": rng.uniform(0, 1, n),
        }
    )
    centres = {t: (80.0, 80.0, 25.0) for t in _TOMO_SHAPES}
    return ParticleList(table, {t: _PIXEL for t in _TOMO_SHAPES}, "csv", centres)


def particle_seeds() -> list[tuple[str, bytes]]:
    """Valid particle lists written by cryoal's writers: RELION 5/4 STAR, CSV, Dynamo .tbl."""
    global _PARTICLE_SEEDS
    if _PARTICLE_SEEDS is None:
        import tempfile

        import dynamotable
        import pandas as pd

        from cryoal.io import write_csv_particles, write_relion

        pl = _seed_particles()
        classes = {"a": 1, "b": 2}
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            write_relion(d / "r5.star", pl, class_numbers=classes)
            write_relion(d / "r4.star", pl, coordinates="relion4", class_numbers=classes)
            write_relion(d / "both.star", pl, coordinates="both", class_numbers=classes)
            write_csv_particles(d / "p.csv", pl)
            px = pl.coordinates("pixel")
            dynamotable.write(
                pd.DataFrame(
                    {
                        "tag": [1, 2, 3, 4],
                        "aligned_value": [1] * 4,
                        "averaged_value": [0] * 4,
                        "dx": [0.5, 0, 0, 0],
                        "dy": [0.0] * 4,
                        "dz": [0, 0, 0, -1.0],
                        "tdrot": [0, 30.0, 0, 10],
                        "tilt": [0, 40.0, 0, 20],
                        "narot": [0, 50.0, 0, 30],
                        "cc": [0.9, 0.8, 0.7, 0.6],
                        "class": [1, 2, 1, 2],
                        "tomo": [1, 1, 2, 2],
                        "x": px[:, 0] + 1,
                        "y": px[:, 1] + 1,
                        "z": px[:, 2] + 1,
                    }
                ),
                str(d / "p.tbl"),
            )
            _PARTICLE_SEEDS = [
                (n, (d / n).read_bytes())
                for n in ("r5.star", "r4.star", "both.star", "p.csv", "p.tbl")
            ]
    return _PARTICLE_SEEDS


_NUMBER_TOKENS = (
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e308",
    "-1e308",
    "1e400",
    "0",
    "-0",
    "-1",
    "",
    "x",
    "1e-320",
    "99999999999999999999",
    "0x10",
    "1,5",
    "None",
)


def _mutate_fields(draw: Draw, text: str) -> str:
    """Replace whitespace/comma-separated fields with odd numbers, names or nothing."""
    lines = text.splitlines(keepends=True)
    if not lines:
        return text
    i = draw.int(0, len(lines) - 1)
    sep = "," if "," in lines[i] else None
    fields = lines[i].rstrip("\r\n").split(sep)
    j = draw.int(0, max(0, len(fields) - 1))
    if fields:
        fields[j] = choice(draw, _NUMBER_TOKENS + _LABEL_TOKENS + ("TS_1", "TS_3", "TS_1:000000"))
    lines[i] = ("," if sep else "\t").join(fields) + "\n"
    return "".join(lines)


def mutate_particles(draw: Draw) -> tuple[str, bytes]:
    """A mutated particle list: field, token and line mutations of a valid one."""
    name, data = choice(draw, particle_seeds())
    text = data.decode()
    for _ in range(draw.int(1, 4)):
        op = draw.int(0, 4)
        if op <= 1:
            text = _mutate_fields(draw, text)
        elif op == 2:
            pos = draw.int(0, len(text))
            text = text[:pos] + choice(draw, _LABEL_TOKENS + _NUMBER_TOKENS) + text[pos:]
        elif op == 3:  # duplicate or drop a line
            lines = text.splitlines(keepends=True)
            if lines:
                k = draw.int(0, len(lines) - 1)
                if draw.int(0, 1):
                    lines.insert(k, lines[k])
                else:
                    del lines[k]
                text = "".join(lines)
        else:
            text = text[: draw.int(0, len(text))]
    raw = text.encode("utf-8", "surrogatepass")
    if draw.int(0, 4) == 0:
        raw = mutate_bytes(draw, raw)
    return name, raw


def _pool_particles() -> Any:
    return _seed_particles()


def target_particles(path: Path) -> None:
    """Read the particle list as ``cryoal select --coords`` does, then match labels to a pool."""
    from cryoal.io import read_particles
    from cryoal.io.particle_labels import read_particle_labels

    options: dict[str, Any] = {"pixel_size": _PIXEL}
    name = path.name
    if name.endswith(".csv"):
        options["units"] = "angstrom"
    if name.endswith(".star"):
        options["tomogram_shapes"] = _TOMO_SHAPES
    pl = read_particles(path, **options)
    pl.coordinates("pixel")
    pool = _pool_particles()
    if name.endswith(".tbl"):
        options["tomo_names"] = {1: "TS_1", 2: "TS_2"}
        options["label_column"] = "class"
    match = read_particle_labels(
        path,
        pool_ids=pool.ids,
        pool_particles=pool,
        strict=False,
        class_names={1: "a", 2: "b"} if name.endswith((".star", ".tbl")) else None,
        **options,
    )
    match.summary()


# --------------------------------------------------------------------------- copick

_COPICK_SEED: dict[str, bytes] | None = None
_ROOT_TOKEN = "@ROOT@"


def copick_seed() -> dict[str, bytes]:
    """A copick project (config + two runs of picks) as ``{relative path: bytes}``.

    The overlay root in the config is ``@ROOT@``, replaced by the folder it is unpacked to.
    """
    global _COPICK_SEED
    if _COPICK_SEED is None:
        import tempfile

        from copick.models import PickableObject

        from cryoal.io._copick import import_copick

        copick = import_copick()
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            root = copick.new_config(
                str(d / "copick_config.json"),
                str(d / "overlay"),
                pickable_objects=[
                    PickableObject(name="a", is_particle=True, label=1, radius=30.0),
                    PickableObject(name="b", is_particle=True, label=2, radius=30.0),
                ],
            )
            pl = _seed_particles()
            for tomo in _TOMO_SHAPES:
                run = root.new_run(tomo)
                sub = pl.table[pl.table["tomo"] == tomo]
                for obj in ("a", "b"):
                    pts = sub[sub["label"] == obj][["x", "y", "z"]].to_numpy(dtype=float)
                    run.new_picks(obj, "expert", "alice").from_numpy(pts)
            files = {
                str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()
            }
            files["copick_config.json"] = files["copick_config.json"].replace(
                str(d).encode(), _ROOT_TOKEN.encode()
            )
        _COPICK_SEED = files
    return _COPICK_SEED


def _pack(files: dict[str, bytes]) -> bytes:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


_JSON_TOKENS = (
    "null",
    "[]",
    "{}",
    '""',
    "1e999",
    "-1",
    "NaN",
    "Infinity",
    '"x"',
    "0",
    "true",
    '{"location": {"x": 1}}',
    "[[[[[[[[[[]]]]]]]]]]",
)


def mutate_copick(draw: Draw) -> tuple[str, bytes]:
    """A copick project (as a tar) with its config or one picks file mutated as JSON text."""
    files = dict(copick_seed())
    key = choice(draw, sorted(files))
    text = files[key].decode()
    for _ in range(draw.int(1, 3)):
        op = draw.int(0, 3)
        if op <= 1:  # replace a JSON value: the text after a ':' up to the next , } or ]
            colons = [i for i, c in enumerate(text) if c == ":"]
            if colons:
                start = choice(draw, colons) + 1
                end = start
                while end < len(text) and text[end] not in ",}]":
                    end += 1
                text = text[:start] + " " + choice(draw, _JSON_TOKENS + _NUMBER_TOKENS) + text[end:]
        elif op == 2:
            pos = draw.int(0, len(text))
            text = (
                text[:pos]
                + choice(draw, _JSON_TOKENS + ("{", "}", "[", "]", ",", ":"))
                + text[pos:]
            )
        else:
            text = text[: draw.int(0, len(text))]
    files[key] = text.encode("utf-8", "surrogatepass")
    if draw.int(0, 5) == 0:
        files[key] = mutate_bytes(draw, files[key])
    if draw.int(0, 7) == 0:  # a file removed
        files.pop(choice(draw, sorted(files)))
    return "copick.tar", _pack(files)


def target_copick(path: Path) -> None:
    """Unpack the project next to ``path``; read picks and match them as labels to a pool."""
    import shutil
    import tarfile

    from cryoal.io import read_particles
    from cryoal.io.particle_labels import read_particle_labels

    folder = path.with_suffix(".d")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    try:
        with tarfile.open(path) as tar:
            tar.extractall(folder, filter="data")
        cfg = folder / "copick_config.json"
        if cfg.is_file():
            cfg.write_bytes(cfg.read_bytes().replace(_ROOT_TOKEN.encode(), str(folder).encode()))
        pl = read_particles(cfg, fmt="copick", pixel_size=_PIXEL)
        pl.coordinates("pixel")
        pool = _pool_particles()
        match = read_particle_labels(
            cfg, pool_ids=pool.ids, pool_particles=pool, strict=False, fmt="copick", user_id="alice"
        )
        match.summary()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Reader:
    """A fuzz target: how to make an input and what to run on it."""

    name: str
    make: Callable[[Draw], tuple[str, bytes]]
    run: Callable[[Path], None]


READERS: dict[str, Reader] = {
    "mrc": Reader("mrc", mutate_mrc, target_mrc),
    "hdf5": Reader("hdf5", mutate_hdf5, target_hdf5),
    "labels": Reader("labels", mutate_labels, target_labels),
    "checkpoint": Reader("checkpoint", mutate_checkpoint, target_checkpoint),
    "predict": Reader("predict", mutate_checkpoint, target_predict),
    "particles": Reader("particles", mutate_particles, target_particles),
    "copick": Reader("copick", mutate_copick, target_copick),
}


# --------------------------------------------------------------------------- running


def warm_up() -> None:
    """Import everything the targets import, so no input's time limit pays for imports."""
    import cryoal.cli.info

    import cryoal.io
    import cryoal.models
    import cryoal.train  # noqa: F401

    checkpoint_payload()
    mrc_seeds()
    hdf5_seed()
    particle_seeds()
    copick_seed()
    _predict_volumes()


class InputTimeout(BaseException):
    """An input ran past the per-input time limit (a hang)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`InputTimeout` when the block runs longer than ``seconds`` (SIGALRM)."""
    import signal

    def on_alarm(signum: int, frame: Any) -> None:
        raise InputTimeout(f"input ran longer than {seconds:g} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Outcome:
    """What one input did: ``"ok"``, ``"typed"`` (a CryoalError), ``"untyped"`` or ``"hang"``."""

    status: str
    error: BaseException | None = None
    seconds: float = 0.0

    @property
    def label(self) -> str:
        """``"ok"``, or the exception's type name (``"zlib.error"``, ``"KeyError"``)."""
        if self.error is None:
            return self.status
        t = type(self.error)
        mod = "" if t.__module__ in ("builtins", "__main__") else t.__module__ + "."
        return mod + t.__qualname__


def run_input(reader: Reader, path: Path, *, limit_s: float = 10.0) -> Outcome:
    """Run ``reader`` on one file; classify what happened (never raises, except Ctrl-C)."""
    t0 = time.perf_counter()
    try:
        with time_limit(limit_s), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader.run(path)
    except InputTimeout as exc:
        return Outcome("hang", exc, time.perf_counter() - t0)
    except CryoalError as exc:
        return Outcome("typed", exc, time.perf_counter() - t0)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        return Outcome("untyped", exc, time.perf_counter() - t0)
    return Outcome("ok", None, time.perf_counter() - t0)


def write_input(folder: Path, name: str, data: bytes) -> Path:
    """Write one fuzzed input as ``folder/name`` (replacing an earlier one)."""
    path = folder / name
    path.write_bytes(data)
    return path


def check_input(reader: Reader, folder: Path, name: str, data: bytes) -> Outcome:
    """The property: the input reads or raises a CryoalError; raise AssertionError otherwise."""
    path = write_input(folder, name, data)
    try:
        outcome = run_input(reader, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    if outcome.status in ("untyped", "hang"):
        raise AssertionError(
            f"{reader.name}: {outcome.status} {outcome.label}: {outcome.error!r} on {name} "
            f"({len(data)} bytes: {data[:64]!r}...)"
        ) from outcome.error
    return outcome

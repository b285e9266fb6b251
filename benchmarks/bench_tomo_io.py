"""Time cutting N boxes from tomograms on the fly against reading them pre-extracted.

Writes one float32 MRC tomogram and the same tomogram as OME-Zarr (32³ chunks), picks N
random particle positions, and writes the N boxes as single-volume MRC files (what a
folder of extracted subtomograms holds). Then, in the same run and on the same
page-cached files, reads every box through a TomogramPool (memory-mapped MRC; zarr
chunks; MRC with trilinear and Fourier sub-voxel shifts) and through a VolumePool over the
pre-extracted files. Each timing is the best of ``--repeats`` passes, wall and CPU time
(``time.process_time``); ratio = pre-extracted time / on-the-fly time.

Example usage:
    python benchmarks/bench_tomo_io.py                       # 2000 boxes of 32³ from 128x512x512
    python benchmarks/bench_tomo_io.py -n 500 --shape 64 256 256 --box 16
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import zarr

from cryoal.io import VolumePool
from cryoal.io.tomograms import open_tomograms
from cryoal.io.tomopool import TomogramPool

VOXEL = 10.0


def _best(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(wall s, CPU s) of the fastest pass."""
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - w, time.process_time() - c))
    return best


def _read_all(pool: object) -> float:
    total = 0.0
    for i in range(len(pool)):  # type: ignore[arg-type]
        total += float(pool.read(i)[0, 0, 0])  # type: ignore[attr-defined]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=2000, help="boxes to read (default 2000)")
    parser.add_argument("--box", type=int, default=32, help="box edge in voxels (default 32)")
    parser.add_argument(
        "--shape", type=int, nargs=3, default=(128, 512, 512), help="tomogram nz ny nx"
    )
    parser.add_argument("--repeats", type=int, default=3, help="passes per timing (best kept)")
    args = parser.parse_args()
    shape = tuple(args.shape)
    work = Path(tempfile.mkdtemp(prefix="cryoal-bench-tomo-"))
    try:
        rng = np.random.default_rng(0)
        data = rng.standard_normal(shape, dtype=np.float32)
        tomos = work / "tomos"
        tomos.mkdir()
        with mrcfile.new(tomos / "TS_01.mrc") as mrc:
            mrc.set_data(data)
            mrc.voxel_size = VOXEL
        ztomos = work / "ztomos"
        group = zarr.open_group(str(ztomos / "TS_01.zarr"), mode="w")
        group.create_dataset("0", data=data, chunks=(32, 32, 32))
        group.attrs["multiscales"] = [
            {
                "version": "0.4",
                "axes": [{"name": a, "type": "space", "unit": "angstrom"} for a in "zyx"],
                "datasets": [
                    {
                        "path": "0",
                        "coordinateTransformations": [{"type": "scale", "scale": [VOXEL] * 3}],
                    }
                ],
            }
        ]
        half = args.box // 2
        xyz = (
            np.stack([rng.uniform(half, n - half - 1, args.n) for n in shape[::-1]], axis=1) * VOXEL
        )
        table = pd.DataFrame(
            {
                "id": [f"TS_01:{i:06d}" for i in range(args.n)],
                "tomo": "TS_01",
                "x": xyz[:, 0],
                "y": xyz[:, 1],
                "z": xyz[:, 2],
            }
        )
        pool = TomogramPool(open_tomograms(tomos), table, args.box)
        zpool = TomogramPool(open_tomograms(ztomos), table, args.box)
        tri = TomogramPool(open_tomograms(tomos), table, args.box, shift="trilinear")
        fourier = TomogramPool(open_tomograms(tomos), table, args.box, shift="fourier")
        sub = work / "subtomos"
        for i in range(args.n):
            path = sub / f"{i // 500:03d}" / f"p{i:06d}.mrc"
            path.parent.mkdir(parents=True, exist_ok=True)
            with mrcfile.new(path) as mrc:
                mrc.set_data(pool.read(i))
                mrc.voxel_size = VOXEL
        files = VolumePool.from_directory(sub)
        if _read_all(files) != _read_all(pool) or _read_all(zpool) != _read_all(pool):
            raise SystemExit("pre-extracted and on-the-fly boxes disagree")
        rows = [
            ("pre-extracted MRC files (VolumePool)", _best(lambda: _read_all(files), args.repeats)),
            ("TomogramPool, MRC memory map", _best(lambda: _read_all(pool), args.repeats)),
            ("TomogramPool, OME-Zarr 32³ chunks", _best(lambda: _read_all(zpool), args.repeats)),
            ("TomogramPool, MRC + trilinear shift", _best(lambda: _read_all(tri), args.repeats)),
            ("TomogramPool, MRC + Fourier shift", _best(lambda: _read_all(fourier), args.repeats)),
        ]
        n = args.n
        base = rows[0][1][0]
        print(
            f"read {n} boxes of {args.box}^3 float32 from a {'x'.join(map(str, shape))} tomogram "
            f"(best of {args.repeats}; page-cached)"
        )
        for name, (wall, cpu) in rows:
            print(
                f"  {name:<38} {wall:7.3f} s wall {cpu:7.3f} s CPU  {n / wall:8.0f} boxes/s"
                f"  ratio {base / wall:.2f}x"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

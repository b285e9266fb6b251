"""Time reading N 32³ subtomograms through VolumePool against a plain mrcfile loop.

Both read the same freshly written (page-cached) files in the same run; each timing is
the best of ``--repeats`` passes. Also times indexing a folder of many (empty) files,
which VolumePool does without opening or stat-ing them, and ``pool.check()``, which reads
every header in a thread pool.

Example usage:
    python benchmarks/bench_io.py                     # 2000 volumes, 100k-file index
    python benchmarks/bench_io.py -n 500 --index-files 0
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

from cryoal.io import VolumePool, write_hdf5_pool


def _best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=2000, help="volumes to read (default 2000)")
    parser.add_argument("--box", type=int, default=32, help="box edge in voxels (default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="passes per timing (best kept)")
    parser.add_argument(
        "--index-files", type=int, default=100_000, help="empty files to index (0: skip)"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cryoal-bench-io-"))
    try:
        rng = np.random.default_rng(0)
        paths = []
        for i in range(args.n):
            path = work / "vols" / f"{i // 500:03d}" / f"v{i:06d}.mrc"
            path.parent.mkdir(parents=True, exist_ok=True)
            with mrcfile.new(path) as mrc:
                mrc.set_data(rng.standard_normal((args.box,) * 3, dtype=np.float32))
                mrc.voxel_size = 4.0
            paths.append(path)

        def plain() -> float:
            total = 0.0
            for p in paths:
                with mrcfile.open(p) as mrc:
                    total += float(np.asarray(mrc.data, dtype=np.float32)[0, 0, 0])
            return total

        pool = VolumePool.from_directory(work / "vols")
        assert len(pool) == args.n

        def through_pool() -> float:
            total = 0.0
            for i in range(len(pool)):
                total += float(pool[i][0, 0, 0, 0])
            return total

        write_hdf5_pool(work / "pool.h5", (pool.read(i) for i in range(len(pool))), voxel_size=4.0)
        h5 = VolumePool.from_hdf5(work / "pool.h5")

        def through_hdf5() -> float:
            total = 0.0
            for i in range(len(h5)):
                total += float(h5[i][0, 0, 0, 0])
            return total

        if plain() != through_pool() or plain() != through_hdf5():
            raise SystemExit("the three readers disagree")
        t_plain = _best(plain, args.repeats)
        t_pool = _best(through_pool, args.repeats)
        t_h5 = _best(through_hdf5, args.repeats)
        t_check = _best(lambda: VolumePool.from_directory(work / "vols").check(), args.repeats)
        n = args.n
        print(f"read {n} volumes of {args.box}^3 float32 (best of {args.repeats})")
        print(f"  mrcfile.open loop     {t_plain:7.3f} s  {n / t_plain:8.0f} vol/s")
        print(
            f"  VolumePool (MRC)      {t_pool:7.3f} s  {n / t_pool:8.0f} vol/s  ratio {t_plain / t_pool:.2f}x"
        )
        print(
            f"  VolumePool (HDF5)     {t_h5:7.3f} s  {n / t_h5:8.0f} vol/s  ratio {t_plain / t_h5:.2f}x"
        )
        print(f"  index + check()       {t_check:7.3f} s  (every header, thread pool)")

        if args.index_files:
            folder = work / "many"
            for d in range(args.index_files // 1000 + 1):
                (folder / f"d{d:04d}").mkdir(parents=True)
            for i in range(args.index_files):
                (folder / f"d{i // 1000:04d}" / f"v{i:07d}.mrc").touch()
            t_index = _best(lambda: VolumePool.from_directory(folder), 1)
            print(f"index {args.index_files} files (no open/stat)  {t_index:7.3f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

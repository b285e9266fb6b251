"""Scale benchmarks: pool index build time and peak memory, scoring throughput vs
DataLoader workers, and sharded scoring with 1 vs 2 torch.distributed (gloo) processes.

Each measurement runs in a fresh child process, so peak RSS (``ru_maxrss``) is that of
the measured step alone (reported as the increase over the process after its imports).

* ``index``: PoolIndex over N synthetic entries — a folder of empty ``.mrc`` files
  (indexing opens no single-volume file) for N ≤ ``--max-dir-files``, a CSV list beyond;
  plus saving it, loading it with and without the stat check of its files
  (``PoolIndex.load(verify=...)``) and registering it in a Project (chunked
  executemany, no checksums).
  For comparison, VolumePool over the same folder (one Python string per id and path).
* ``workers``: the streaming scorer (:func:`cryoal.acquisition.stream_scores`) over a
  pool of real 32³ MRC files with DataLoader workers 0/1/2 — reading only (plain and
  gzip-compressed files), and entropy scoring with a small 3D CNN (cb3d).
* ``procs``: the same scoring sharded over 1 and 2 gloo processes under torchrun
  (``cryoal.acquisition.sharded_score``), 1 thread per process.

Example usage:
    python benchmarks/bench_scale.py                        # everything (a few minutes)
    python benchmarks/bench_scale.py --sizes 10000 100000 --skip-scoring
    python benchmarks/bench_scale.py --part workers --volumes 256
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve()


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ----------------------------------------------------------------------------- children


def child_index(args: argparse.Namespace) -> dict[str, Any]:
    from cryoal.active import Project
    from cryoal.active.pool_index import project_index
    from cryoal.io.index import PoolIndex

    src = Path(args.source)
    base = _rss_mb()
    t0 = time.perf_counter()
    index = PoolIndex.from_directory(src) if src.is_dir() else PoolIndex.from_table(src)
    build_s = time.perf_counter() - t0
    build_rss = _rss_mb() - base
    t0 = time.perf_counter()
    index.save(Path(args.work) / "idx.npz")
    save_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    PoolIndex.load(Path(args.work) / "idx.npz", verify="none")
    load_s, load_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    # the stat check of every indexed file (verify="stat", the default), warm cache
    t0, c0 = time.perf_counter(), time.process_time()
    PoolIndex.load(Path(args.work) / "idx.npz")
    verify_s = time.perf_counter() - t0 - load_s
    verify_cpu_s = time.process_time() - c0 - load_cpu_s
    proj = Path(args.work) / "proj"
    t0 = time.perf_counter()
    with Project(proj) as project:
        project_index(project, src, checksums=False, chunk_size=50_000)
    register_s = time.perf_counter() - t0
    return {
        "n": len(index),
        "source": "folder" if src.is_dir() else "csv",
        "build_s": build_s,
        "build_peak_rss_mb": build_rss,
        "index_mb": index.nbytes / 2**20,
        "save_s": save_s,
        "load_s": load_s,
        "verify_s": verify_s,
        "verify_cpu_s": verify_cpu_s,
        "project_build_and_register_s": register_s,
        "peak_rss_mb": _rss_mb() - base,
        "sqlite_mb": (proj / "project.sqlite").stat().st_size / 2**20,
    }


def child_volumepool(args: argparse.Namespace) -> dict[str, Any]:
    from cryoal.io import VolumePool

    base = _rss_mb()
    t0 = time.perf_counter()
    pool = VolumePool.from_directory(args.source)
    return {
        "n": len(pool),
        "build_s": time.perf_counter() - t0,
        "build_peak_rss_mb": _rss_mb() - base,
    }


def _scoring_setup(volumes: str, pattern: str = "*.mrc") -> tuple[Any, Any, Any]:
    import torch

    from cryoal import acquisition, models
    from cryoal.io.index import PoolIndex
    from cryoal.transforms import normalize

    index = PoolIndex.from_directory(volumes, pattern)
    torch.manual_seed(0)
    model = models.create("cb3d", 5, (1, *index.box))
    return index, model, (acquisition, normalize)


def child_workers(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    index, model, (acquisition, normalize) = _scoring_setup(args.volumes, args.pattern)
    if args.mode == "read":  # the streaming scorer with a trivial per-item function
        from cryoal.acquisition import stream_scores

        def run() -> torch.Tensor:
            return stream_scores(
                lambda x: x.flatten(1).mean(1),
                index,
                torch.arange(len(index)),
                batch_size=32,
                device=torch.device("cpu"),
                num_workers=args.workers,
                progress=False,
            )

        run()  # warm the page cache
        t0 = time.perf_counter()
        n = int(run().numel())
        dt = time.perf_counter() - t0
        return {
            "mode": f"read {args.pattern}",
            "workers": args.workers,
            "n": n,
            "s": dt,
            "vol_per_s": n / dt,
        }
    strategy = acquisition.get(
        "entropy",
        device="cpu",
        batch_size=32,
        transform=normalize,
        progress=False,
        num_workers=args.workers,
    )
    strategy.score(model, index.to_pool().subset(range(64)))  # warm-up
    t0 = time.perf_counter()
    scores = strategy.score(model, index)
    dt = time.perf_counter() - t0
    return {
        "mode": "score entropy cb3d",
        "workers": args.workers,
        "n": int(scores.numel()),
        "s": dt,
        "vol_per_s": len(index) / dt,
    }


def child_procs(args: argparse.Namespace) -> dict[str, Any] | None:
    import torch

    from cryoal import distributed

    torch.set_num_threads(1)
    with distributed.session(device="cpu") as info:
        index, model, (acquisition, normalize) = _scoring_setup(args.volumes)
        strategy = acquisition.get(
            "entropy", device="cpu", batch_size=32, transform=normalize, progress=False
        )
        acquisition.sharded_score(strategy, model, index.to_pool().subset(range(64)))
        if info.distributed:
            torch.distributed.barrier()
        t0 = time.perf_counter()
        scores = acquisition.sharded_score(strategy, model, index)
        dt = time.perf_counter() - t0
        if info.rank != 0:
            return None
        return {
            "processes": info.world_size,
            "n": int(scores.numel()),
            "s": dt,
            "vol_per_s": len(index) / dt,
        }


# ----------------------------------------------------------------------------- driver


def _child(part: str, extra: list[str], *, torchrun: int = 0) -> Any:
    out = Path(tempfile.mkstemp(suffix=".json")[1])
    cmd = [sys.executable]
    if torchrun:
        cmd += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={torchrun}"]
    cmd += [str(HERE), "--child", part, "--result", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one compute thread per process
    subprocess.run(cmd, check=True, env=env)
    result = json.loads(out.read_text())
    out.unlink()
    return result


def _make_tree(root: Path, n: int) -> None:
    for k in range(n):
        folder = root / f"t{k // 5000:04d}"
        if k % 5000 == 0:
            folder.mkdir(parents=True)
        (folder / f"tomo_{k:07d}.mrc").touch()


def _real_volume(path: Path) -> None:
    """Item 0 must be a real MRC file: its header gives the pool's box."""
    import mrcfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.zeros((32, 32, 32), np.float32))
        mrc.voxel_size = 4.0


def _make_list(path: Path, n: int) -> None:
    _real_volume(path.parent / "t0000" / "tomo_0000000.mrc")
    with open(path, "w") as fh:
        fh.write("path,label\n")
        for k in range(n):
            fh.write(f"t{k // 5000:04d}/tomo_{k:07d}.mrc,{'ribo' if k % 7 == 0 else ''}\n")


def _make_volumes(root: Path, n: int, box: int, suffix: str = ".mrc") -> None:
    import mrcfile

    rng = np.random.default_rng(0)
    compression = "gzip" if suffix.endswith(".gz") else None
    for i in range(n):
        path = root / f"{i // 500:03d}" / f"v{i:06d}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        with mrcfile.new(path, compression=compression) as mrc:
            mrc.set_data(rng.standard_normal((box, box, box), dtype=np.float32))
            mrc.voxel_size = 4.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["all", "index", "workers", "procs"], default="all")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument(
        "--max-dir-files", type=int, default=100_000, help="larger sizes use a CSV list"
    )
    parser.add_argument("--volumes", type=int, default=512, help="32³ volumes to score")
    parser.add_argument(
        "--read-volumes", type=int, default=2048, help="32³ volumes to read (plain and .gz)"
    )
    parser.add_argument("--skip-scoring", action="store_true")
    parser.add_argument("--json", type=Path, help="also write every result here")
    # child-process arguments
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="score", help=argparse.SUPPRESS)
    parser.add_argument("--pattern", default="*.mrc", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        fn = {
            "index": child_index,
            "volumepool": child_volumepool,
            "workers": child_workers,
            "procs": child_procs,
        }[args.child]
        # in the children --volumes is the folder of volumes
        if args.child in ("workers", "procs"):
            args.volumes = args.source
        result = fn(args)
        if result is not None:
            Path(args.result).write_text(json.dumps(result))
        return

    import torch

    results: dict[str, Any] = {
        "machine": f"{os.cpu_count()}-core CPU, Python {sys.version.split()[0]}, "
        f"torch {torch.__version__}",
        "load_average_at_start": os.getloadavg(),
    }
    work = Path(tempfile.mkdtemp(prefix="cryoal-bench-scale-"))
    try:
        if args.part in ("all", "index"):
            rows = []
            for n in args.sizes:
                case = work / f"index-{n}"
                case.mkdir()
                if n <= args.max_dir_files:
                    src = case / "tree"
                    _make_tree(src, n)
                    _real_volume(src / "t0000" / "tomo_0000000.mrc")
                else:
                    src = case / "list.csv"
                    _make_list(src, n)
                row = _child("index", ["--source", str(src), "--work", str(case)])
                if src.is_dir():
                    vp = _child("volumepool", ["--source", str(src)])
                    row["volumepool_build_s"] = vp["build_s"]
                    row["volumepool_peak_rss_mb"] = vp["build_peak_rss_mb"]
                print(json.dumps(row), flush=True)
                rows.append(row)
                shutil.rmtree(case)
            results["index"] = rows
        if not args.skip_scoring and args.part in ("all", "workers", "procs"):
            vols = work / "vols"
            _make_volumes(vols, args.volumes, 32)
            if args.part in ("all", "workers"):
                plain, gz = work / "read-plain", work / "read-gz"
                _make_volumes(plain, args.read_volumes, 32)
                _make_volumes(gz, args.read_volumes, 32, ".mrc.gz")
                rows = []
                cases = [
                    ("read", plain, "*.mrc"),
                    ("read", gz, "*.mrc.gz"),
                    ("score", vols, "*.mrc"),
                ]
                for mode, folder, pattern in cases:
                    for w in (0, 1, 2):
                        extra = ["--workers", str(w), "--mode", mode, "--pattern", pattern]
                        row = _child("workers", ["--source", str(folder), *extra])
                        row["load_average"] = os.getloadavg()[0]
                        print(json.dumps(row), flush=True)
                        rows.append(row)
                results["workers"] = rows
            if args.part in ("all", "procs"):
                rows = []
                for p in (1, 2):
                    row = _child("procs", ["--source", str(vols)], torchrun=p)
                    row["load_average"] = os.getloadavg()[0]
                    print(json.dumps(row), flush=True)
                    rows.append(row)
                results["procs"] = rows
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

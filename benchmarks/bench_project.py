"""Active-learning project bookkeeping at pool scale: SQLite state vs rewriting a CSV.

Measures what `cryoal select` adds on top of training and scoring for a large pool:
registering N pool entries, storing one round's N scores (+ probabilities), importing
labels and reading the picks back, and the baseline a script would otherwise do: dump the
same per-round table to CSV with pandas.

    python benchmarks/bench_project.py [-n 100000] [--classes 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cryoal.active.project import PoolEntry, Project


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--labels", type=int, default=1_000)
    args = ap.parse_args()
    n, c = args.n, args.classes
    rng = np.random.default_rng(0)
    ids = [f"tomo{i % 50:02d}/p{i:07d}.mrc" for i in range(n)]
    classes = [f"class{k}" for k in range(c)]
    with tempfile.TemporaryDirectory() as tmp:
        proj = Project(Path(tmp) / "proj")
        t = {}
        t0 = time.perf_counter()
        proj.register_pool(
            [PoolEntry(i, i, (32, 32, 32), f"{k:040x}") for k, i in enumerate(ids)],
            root=Path(tmp) / "vols",
            voxel_size=10.0,
        )
        t["register"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        proj.register_pool(
            [PoolEntry(i, i, (32, 32, 32), f"{k:040x}") for k, i in enumerate(ids)],
            root=Path(tmp) / "vols",
            voxel_size=10.0,
        )
        t["re-register (no change)"] = time.perf_counter() - t0
        lab = {ids[k]: classes[k % c] for k in range(args.labels)}
        t0 = time.perf_counter()
        proj.add_labels(lab)
        t[f"import {args.labels} labels"] = time.perf_counter() - t0
        rnd = proj.start_round(strategy="entropy", budget=24, seed=0, mode="train", config={})
        proj.mark_trained(rnd.n, None, {})
        probs = rng.dirichlet(np.ones(c), size=n)
        scores = rng.random(n)
        rows = [
            (
                ids[k],
                float(scores[k]),
                classes[int(probs[k].argmax())],
                {cl: float(p) for cl, p in zip(classes, probs[k], strict=True)},
            )
            for k in range(args.labels, n)
        ]
        picks = [(ids[k], float(scores[k])) for k in np.argsort(-scores)[:24]]
        t0 = time.perf_counter()
        proj.record_scores(rnd.n, rows, picks)
        t["store round scores"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        proj.picks(rnd.n)
        proj.pick_accuracy(rnd.n)
        t["read picks + accuracy"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        frame = pd.DataFrame(
            {
                "id": [r[0] for r in rows],
                "score": [r[1] for r in rows],
                "predicted": [r[2] for r in rows],
                **{f"p_{cl}": probs[args.labels :, j] for j, cl in enumerate(classes)},
            }
        )
        frame.to_csv(Path(tmp) / "scores.csv", index=False)
        t["baseline: scores to CSV (pandas)"] = time.perf_counter() - t0
        size = (Path(tmp) / "proj" / "project.sqlite").stat().st_size
        proj.close()
    print(f"n = {n:,} pool entries, {c} classes")
    for k, v in t.items():
        print(f"{k:<36} {v:8.3f} s")
    print(f"database size {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()

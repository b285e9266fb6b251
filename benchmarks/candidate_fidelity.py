"""Fidelity of candidate subsets: picks and scores of a subset against scoring the whole pool.

Takes a project after a training round (its model, its encoder and the cached encoder
embedding of the pool, e.g. one made by ``bench_round.py``) and compares, for random
candidate subsets of ``--sizes`` unlabelled volumes (``--draws`` seeds each):

- pointwise scores (``entropy``, ``entropy-gradnorm``): the whole unlabelled pool is
  scored once; a subset's scores are those of its members (tested in
  tests/active/test_candidates.py), its picks the top ``budget`` among them;
- ``typicality`` (the cold start and auto's first regime) is run again on each subset
  (labelled + candidates), with the cached encoder embedding, since its scores depend on
  the other volumes (k-means clusters, k-NN density).

Reported per strategy and size: overlap of the picks with the full picks (fraction of
``budget``), Spearman rank correlation of the subset's scores with the full scores on
the subset's members, the mean percentile of the subset's picks in the full ranking
(0 = the full top pick), and the distinct true classes among the picks (``--truth``).

Example usage::

    python benchmarks/candidate_fidelity.py --project /tmp/bench-round-1k/projects/default \\
        --pool /data/pool1k/volumes --truth /data/pool1k/labels.csv --round 2 \\
        --sizes 100 200 500 --draws 10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Subset


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = pd.Series(a).rank().to_numpy()
    rb = pd.Series(b).rank().to_numpy()
    return float(np.corrcoef(ra, rb)[0, 1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--project", required=True, type=Path)
    ap.add_argument("--pool", required=True, type=Path)
    ap.add_argument("--truth", required=True, type=Path)
    ap.add_argument("--round", type=int, default=2, help="the training round whose model scores")
    ap.add_argument("--budget", type=int, default=24)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 500])
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument(
        "--strategies", nargs="+", default=["entropy", "entropy-gradnorm", "typicality"]
    )
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)

    from cryoal import acquisition, models
    from cryoal.active import Project
    from cryoal.active.candidates import candidate_indices
    from cryoal.active.loop import _Guarded, _normalize_batch, encoder_embedding
    from cryoal.io import VolumePool

    pool = VolumePool.from_path(args.pool)
    proj = Project(args.project)
    rnd = proj.get_round(args.round)
    model, _ = models.load_checkpoint(proj.path / str(rnd.model_path))
    labels = proj.label_map(as_of_seq=rnd.label_seq)
    index = {v: i for i, v in enumerate(pool.ids)}
    labelled = sorted(index[v] for v in labels)
    unl = sorted(set(range(len(pool))) - set(labelled))
    truth_df = pd.read_csv(args.truth)
    truth = dict(zip(truth_df["id"].astype(str), truth_df["label"].astype(str), strict=True))
    guarded = _Guarded(pool, args.round)
    opts: dict[str, Any] = {
        "device": "cpu",
        "batch_size": 32,
        "transform": _normalize_batch,
        "progress": False,
        "seed": rnd.seed,
    }
    encoder = proj.path / "models" / "encoder.pt"
    rows: list[dict[str, Any]] = []
    k = args.budget
    for name in args.strategies:
        t0, c0 = time.perf_counter(), time.process_time()
        if name == "typicality":
            strategy = acquisition.get(name, encoder=encoder, **opts)
            emb = encoder_embedding(proj, guarded, encoder, strategy)

            def run(view: list[int], strategy: Any = strategy, emb: torch.Tensor = emb) -> Any:
                at = {g: j for j, g in enumerate(view)}
                strategy.embeddings = emb[torch.as_tensor(view)]
                sel = strategy.select(
                    model,
                    Subset(guarded, view),
                    k,
                    labelled=[at[i] for i in labelled],
                    generator=torch.Generator().manual_seed(rnd.seed),
                )
                return [view[j] for j in sel.indices.tolist()], sel

            full_picks, full_sel = run(list(range(len(pool))))
            # typicality's own per-volume score: density in the embedding (higher first)
            full_score = dict(zip(unl, _typicality_scores(strategy, emb, unl), strict=True))
        else:
            strategy = acquisition.get(name, **opts)
            scores = strategy.score(model, Subset(guarded, unl)).float().numpy()
            full_score = dict(zip(unl, scores.tolist(), strict=True))
            full_picks = [unl[j] for j in np.argsort(-scores, kind="stable")[:k].tolist()]
        full_seconds = (time.perf_counter() - t0, time.process_time() - c0)
        ranking = sorted(unl, key=lambda i: -full_score[i])
        pct = {i: r / len(unl) for r, i in enumerate(ranking)}
        full_classes = len({truth[pool.ids[i]] for i in full_picks})
        for size in args.sizes:
            for draw in range(args.draws):
                cand = candidate_indices(unl, size, seed=1000 * draw + size)
                if name == "typicality":
                    picks, _ = run(sorted(labelled + cand))
                    sub_scores = _typicality_scores(strategy, emb, cand, among=cand)
                else:
                    sub_scores = [full_score[i] for i in cand]
                    order = np.argsort(-np.asarray(sub_scores), kind="stable")[:k]
                    picks = [cand[j] for j in order.tolist()]
                rows.append(
                    {
                        "strategy": name,
                        "pool": len(pool),
                        "unlabelled": len(unl),
                        "size": size,
                        "draw": draw,
                        "overlap": len(set(picks) & set(full_picks)) / k,
                        "spearman": _spearman(
                            np.asarray(sub_scores), np.asarray([full_score[i] for i in cand])
                        ),
                        "pick_percentile": float(np.mean([pct[i] for i in picks])),
                        "full_pick_percentile": float(np.mean([pct[i] for i in full_picks])),
                        "classes": len({truth[pool.ids[i]] for i in picks}),
                        "full_classes": full_classes,
                        "full_seconds": full_seconds,
                    }
                )
        print(name, f"full: {full_seconds[0]:.1f} s wall / {full_seconds[1]:.1f} s CPU", flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print(
        f"pool {args.pool} ({len(pool)} volumes, {len(unl)} unlabelled), budget {k}, "
        f"round {args.round} model, {args.draws} draws per size"
    )
    print(summary_table(rows))


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table: means over the draws per strategy and subset size."""
    df = pd.DataFrame(rows)
    cols = ["overlap", "spearman", "pick_percentile", "classes"]
    head = ["strategy", "candidates", "of unlabelled", *cols, "full: pick_percentile", "classes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (name, size), g in df.groupby(["strategy", "size"], sort=False):
        cells = [str(name), str(size), f"{size / g['unlabelled'].iloc[0]:.2f}"]
        cells += [f"{g[c].mean():.3f} ± {g[c].std(ddof=0):.3f}" for c in cols]
        cells += [f"{g['full_pick_percentile'].iloc[0]:.3f}", str(g["full_classes"].iloc[0])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _typicality_scores(
    strategy: Any, emb: torch.Tensor, items: list[int], among: list[int] | None = None
) -> list[float]:
    """Typicality of ``items``: inverse mean distance to the k nearest of ``among`` (all: ``items``)."""
    x = emb[torch.as_tensor(items)]
    ref = x if among is None else emb[torch.as_tensor(among)]
    d = torch.cdist(x, ref)
    kk = min(int(strategy.n_neighbors) + 1, ref.shape[0])
    near = d.topk(kk, largest=False).values[:, 1:]
    return (1.0 / (near.mean(1) + 1e-8)).tolist()


if __name__ == "__main__":
    main()

"""Worker run by ``torchrun --nproc-per-node 2 tests/_dist_worker.py TASK[,TASK] DATA OUT`` in
tests/test_distributed.py: real gloo process groups on CPU, one file of results per rank."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.data import Subset, TensorDataset

from cryoal import acquisition, distributed, models
from cryoal.acquisition import select_topk
from cryoal.io import VolumePool
from cryoal.train import TrainConfig, fit
from cryoal.transforms import normalize

STRATEGIES = [
    "entropy",
    "margin",
    "least-confidence",
    "entropy-gradnorm",
    "expected-gradnorm",
    "random",
]
LABELLED = [0, 5, 9, 30]
BUDGET = 7


def tiny_model(num_classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return models.create("cb3d", num_classes, (1, 16, 16, 16))


def auto() -> acquisition.Auto:
    """``auto`` whose thresholds make it choose entropy-gradnorm for LABELLED (4 labels,
    3 classes: 1.3 per class)."""
    return acquisition.Auto(
        cold_threshold=1.0,
        diverse_threshold=1.0,
        device="cpu",
        batch_size=4,
        transform=normalize,
        progress=False,
        seed=3,
    )


def score_task(data: Path, out: Path, rank: int) -> None:
    pool = VolumePool.from_directory(data)
    model = tiny_model()
    unl = [i for i in range(len(pool)) if i not in LABELLED]
    result: dict[str, object] = {}
    for name in STRATEGIES:
        strategy = acquisition.get(
            name, device="cpu", batch_size=4, transform=normalize, progress=False, seed=3
        )
        scores = acquisition.sharded_score(strategy, model, Subset(pool, unl))
        picks = torch.tensor(unl)[select_topk(scores, BUDGET)]
        sel = acquisition.sharded_select(strategy, model, pool, BUDGET, labelled=LABELLED)
        result[name] = {"scores": scores, "picks": picks, "selection": sel}
    # auto choosing a score strategy shards it (and keeps its choice and reason)
    result["auto"] = acquisition.sharded_select(auto(), model, pool, BUDGET, labelled=LABELLED)
    # top-k gather of a hand-made shard with ties and a NaN
    shard = distributed.shard_indices(10)
    values = torch.tensor([1.0, 3.0, 3.0, float("nan"), 2.0, 3.0, 0.5, 2.0, 1.0, 3.0])
    result["ties_full"] = distributed.gather_scores(shard, values[shard])
    result["ties_top4"] = distributed.gather_scores(shard, values[shard], k=4)
    torch.save(result, out / f"score-rank{rank}.pt")


def ddp_task(data: Path, out: Path, rank: int, balanced: bool) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 1, 16, 16, 16, generator=g)
    y = torch.arange(40) % 3
    model = tiny_model()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(
        epochs=2,
        batch_size=4,
        device="cpu",
        progress=False,
        distributed=True,
        balanced=balanced,
        seed=5,
    )
    history = fit(model, TensorDataset(x, y), TensorDataset(x[:8], y[:8]), cfg)
    torch.save(
        {"initial": initial, "final": model.state_dict(), "history": history.to_dict()},
        out / f"ddp-{'balanced' if balanced else 'shuffled'}-rank{rank}.pt",
    )


def main() -> None:
    tasks, data, out = sys.argv[1].split(","), Path(sys.argv[2]), Path(sys.argv[3])
    torch.set_num_threads(1)
    with distributed.session(device="cpu") as info:
        assert info.world_size == 2, info
        for task in tasks:
            if task == "score":
                score_task(data, out, info.rank)
            else:
                ddp_task(data, out, info.rank, balanced=task == "ddp-balanced")


if __name__ == "__main__":
    main()

"""Training and inference throughput of ``dsrf3d`` through cryoal against bare PyTorch.

Both sides train the same architecture from the same initial weights on the same
in-memory `(N, 1, D, H, W)` tensors with the same optimiser (AdamW, cosine schedule,
per-step) and batch size, in the same run:

* **bare**: a hand-written loop over ``randperm`` slices of the tensor;
* **cryoal**: ``cryoal.train.fit`` on a ``TensorDataset`` (DataLoader, per-item collate,
  per-epoch metrics, progress disabled).

Timings alternate bare/cryoal for ``--repeats`` rounds and report the best of each; the
ratio cryoal/bare is the overhead (target ≤ 1.10). Inference compares
``cryoal.train.predict`` with ``torch.inference_mode`` forward passes over tensor slices.

Example usage:
    python benchmarks/bench_train.py                          # CPU, 64 volumes of 32³
    python benchmarks/bench_train.py --device cuda -n 1024 --batch-size 64 --amp
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from cryoal import models
from cryoal.runtime import resolve_device
from cryoal.train import TrainConfig, fit, predict


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    device: torch.device,
    amp: bool,
    seed: int,
) -> float:
    """Seconds for a plain PyTorch training loop (the baseline)."""
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (x.shape[0] // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    _sync(device)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=g)
        for i in range(x.shape[0] // batch_size):
            idx = order[i * batch_size : (i + 1) * batch_size]
            xb, yb = x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = loss_fn(model(xb).float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    _sync(device)
    return time.perf_counter() - start


def cryoal_train(
    model: nn.Module,
    ds: TensorDataset,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    device: torch.device,
    amp: bool,
    seed: int,
) -> float:
    """Seconds for ``cryoal.train.fit`` with the same settings."""
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        device=str(device),
        amp=amp,
        seed=seed,
        progress=False,
    )
    _sync(device)
    start = time.perf_counter()
    fit(model, ds, None, cfg)
    _sync(device)
    return time.perf_counter() - start


def bare_infer(
    model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device, amp: bool
) -> float:
    model.to(device).eval()
    _sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch_size):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                torch.softmax(model(x[i : i + batch_size].to(device)).float(), 1).cpu()
    _sync(device)
    return time.perf_counter() - start


def cryoal_infer(
    model: nn.Module, ds: TensorDataset, batch_size: int, device: torch.device, amp: bool
) -> float:
    _sync(device)
    start = time.perf_counter()
    predict(model, ds, batch_size=batch_size, device=device, amp=amp)
    _sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=64, help="training volumes")
    parser.add_argument("--box", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--infer-batch-size", type=int, default=64)
    parser.add_argument("--model", default="dsrf3d")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: leave)")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast on both sides")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.n, 1, args.box, args.box, args.box, generator=g)
    y = torch.randint(0, 4, (args.n,), generator=g)
    ds = TensorDataset(x, y)
    torch.manual_seed(0)
    init = models.create(args.model, 4, (1, args.box, args.box, args.box))
    kw = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": 3e-3,
        "device": device,
        "amp": args.amp,
        "seed": 0,
    }

    # warm-up (allocator, cuDNN autotune, lazy init) on both paths
    bare_train(copy.deepcopy(init), x, y, **{**kw, "epochs": 1})
    cryoal_train(copy.deepcopy(init), ds, **{**kw, "epochs": 1})
    bare_t, fit_t = [], []
    for _ in range(args.repeats):
        bare_t.append(bare_train(copy.deepcopy(init), x, y, **kw))
        fit_t.append(cryoal_train(copy.deepcopy(init), ds, **kw))
    samples = args.epochs * (args.n // args.batch_size) * args.batch_size
    bare_tp, fit_tp = samples / min(bare_t), samples / min(fit_t)

    model = copy.deepcopy(init).to(device)
    bare_infer(model, x, args.infer_batch_size, device, args.amp)
    ib, ic = [], []
    for _ in range(args.repeats):
        ib.append(bare_infer(model, x, args.infer_batch_size, device, args.amp))
        ic.append(cryoal_infer(model, ds, args.infer_batch_size, device, args.amp))
    inf_bare, inf_cryoal = args.n / min(ib), args.n / min(ic)

    result = {
        "model": args.model,
        "box": args.box,
        "n": args.n,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "device": str(device),
        "amp": args.amp,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "train_bare_per_s": round(bare_tp, 2),
        "train_fit_per_s": round(fit_tp, 2),
        "train_time_ratio_fit_over_bare": round(min(fit_t) / min(bare_t), 3),
        "infer_bare_per_s": round(inf_bare, 2),
        "infer_predict_per_s": round(inf_cryoal, 2),
        "infer_time_ratio_predict_over_bare": round(min(ic) / min(ib), 3),
    }
    print(
        f"{args.model} {args.box}³, {args.n} volumes, batch {args.batch_size}, {device}{' (gpu ' + str(result['gpu']) + ')' if result['gpu'] else ''}, amp={args.amp}, threads={result['threads']}"
    )
    print(f"train  bare loop   {bare_tp:9.1f} subtomograms/s")
    print(
        f"train  cryoal.fit  {fit_tp:9.1f} subtomograms/s   time ratio fit/bare = {result['train_time_ratio_fit_over_bare']:.3f}"
    )
    print(f"infer  bare        {inf_bare:9.1f} subtomograms/s")
    print(
        f"infer  predict     {inf_cryoal:9.1f} subtomograms/s   time ratio predict/bare = {result['infer_time_ratio_predict_over_bare']:.3f}"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

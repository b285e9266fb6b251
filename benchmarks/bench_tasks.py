"""Timing of segmentation acquisition: the per-sample engine vs a naive batch-1 loop.

Usage: python benchmarks/bench_tasks.py [--batch 8] [--samples 8] [--repeat 3]
Prints patches/s for entropy-gradnorm and expected-gradnorm on 16³ patches with the
default monai-unet, and the largest relative difference between the two methods.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from cryoal import models
from cryoal.acquisition import per_sample_grad_norms
from cryoal.acquisition.segmentation import (
    expected_gradnorm_scores,
    mean_voxel_entropy,
    sample_label_maps,
)


def _norm(model: torch.nn.Module, loss: torch.Tensor) -> torch.Tensor:
    grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
    return torch.sqrt(sum(g.pow(2).sum() for g in grads))


def _best(fn, repeat: int) -> tuple[float, torch.Tensor]:  # type: ignore[no-untyped-def]
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out  # type: ignore[return-value]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = models.create("monai-unet", 4, (1, 16, 16, 16)).eval()
    n_params = sum(p.numel() for p in model.parameters())
    x = torch.randn(args.batch, 1, 16, 16, 16)
    b = args.batch
    print(
        f"monai-unet {n_params} parameters, batch {b} patches of 16³, torch threads {torch.get_num_threads()}"
    )

    t_eng, s_eng = _best(lambda: per_sample_grad_norms(model, x, mean_voxel_entropy), args.repeat)
    t_loop, s_loop = _best(
        lambda: torch.stack(
            [_norm(model, mean_voxel_entropy(model(x[i : i + 1]))[0]) for i in range(b)]
        ),
        args.repeat,
    )
    diff = float(((s_eng - s_loop).abs() / s_loop).max())
    print(
        f"entropy-gradnorm   engine {b / t_eng:7.1f} patches/s   loop {b / t_loop:7.1f} patches/s   "
        f"max rel diff {diff:.1e}"
    )

    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)
    maps = sample_label_maps(probs, args.samples, torch.Generator().manual_seed(0))
    t_eng, s_eng = _best(lambda: expected_gradnorm_scores(model, x, label_maps=maps), args.repeat)
    t_loop, s_loop = _best(
        lambda: torch.stack(
            [
                torch.stack(
                    [
                        _norm(model, F.cross_entropy(model(x[i : i + 1]), maps[s, i : i + 1]))
                        for s in range(args.samples)
                    ]
                ).mean()
                for i in range(b)
            ]
        ),
        args.repeat,
    )
    diff = float(((s_eng - s_loop).abs() / s_loop).max())
    print(
        f"expected-gradnorm  engine {b / t_eng:7.1f} patches/s   loop {b / t_loop:7.1f} patches/s   "
        f"max rel diff {diff:.1e}  (S = {args.samples} maps)"
    )


if __name__ == "__main__":
    main()

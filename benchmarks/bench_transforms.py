"""Throughput of the cryoal.transforms physics chain against a per-volume scipy/numpy loop.

The chain is what a subtomogram simulator runs on each clean density: uniform random
rotation (trilinear), full CTF, missing wedge (±60°, tilt axis y), Gaussian noise at an
SNR. Baseline: the same chain one volume at a time with scipy.ndimage.affine_transform
(order 1) and numpy FFTs, the way aitom-style simulators do it.

Usage::

    python benchmarks/bench_transforms.py [--box 32] [--n 256] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.ndimage
import torch

from cryoal import transforms as T


def _cryoal_chain(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    box = tuple(x.shape[-3:])
    rot = T.random_rotation(x.shape[0], generator=g, device=x.device)
    v = T.rotate_volume(x, rot)
    v = T.apply_ctf(v, T.ctf_3d(box, 10.0, 5.0, rfft=True, device=x.device))
    v = T.apply_missing_wedge(v, T.missing_wedge_mask(box, (-60, 60), rfft=True, device=x.device))
    return T.add_noise(v, 0.1, generator=g)


def _baseline_chain(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    box = x.shape[-3:]
    ctf = T.ctf_3d(box, 10.0, 5.0, rfft=True).numpy()
    wedge = T.missing_wedge_mask(box, (-60, 60), rfft=True).numpy()
    centre = np.array([s // 2 for s in box], dtype=np.float64)
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        q = rng.standard_normal(4)
        r = T.quaternion_to_matrix(torch.from_numpy(q)).numpy()
        # (z, y, x) index order: reverse the (x, y, z) matrix
        rzyx = r[::-1, ::-1].T
        v = scipy.ndimage.affine_transform(
            x[i, 0], rzyx, offset=centre - rzyx @ centre, order=1, mode="constant"
        )
        v = np.fft.irfftn(np.fft.rfftn(v) * -ctf, s=box, axes=(0, 1, 2))  # as apply_ctf (dark)
        v = np.fft.irfftn(np.fft.rfftn(v) * wedge, s=box, axes=(0, 1, 2))
        out[i, 0] = v + rng.standard_normal(box) * np.sqrt(v.var() / 0.1)
    return out


def _rate(fn, n: int, repeats: int, sync) -> float:  # type: ignore[no-untyped-def]
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--box", type=int, default=32)
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--baseline-n", type=int, default=64)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    g = torch.Generator(dev).manual_seed(0)
    x = torch.randn(args.n, 1, args.box, args.box, args.box, generator=g, device=dev)
    ours = _rate(lambda: _cryoal_chain(x, g), args.n, args.repeats, sync)
    steps = {
        "rotate": lambda: T.rotate_volume(x, T.random_rotation(args.n, generator=g, device=dev)),
        "ctf": lambda: T.apply_ctf(x, T.ctf_3d(x.shape[-3:], 10.0, 5.0, rfft=True, device=dev)),
        "wedge": lambda: T.apply_missing_wedge(
            x, T.missing_wedge_mask(x.shape[-3:], rfft=True, device=dev)
        ),
        "noise": lambda: T.add_noise(x, 0.1, generator=g),
    }
    print(
        f"device={dev} threads={args.threads} box={args.box}^3 n={args.n} torch={torch.__version__}"
    )
    for name, fn in steps.items():
        print(f"  {name:7s} {_rate(fn, args.n, args.repeats, sync):9.0f} vol/s")
    xb = x[: args.baseline_n].cpu().double().numpy()
    rng = np.random.default_rng(0)
    base = _rate(lambda: _baseline_chain(xb, rng), args.baseline_n, 1, lambda: None)
    print(
        f"chain: cryoal {ours:.0f} vol/s, per-volume scipy/numpy loop {base:.0f} vol/s, ratio {ours / base:.1f}x"
    )


if __name__ == "__main__":
    main()

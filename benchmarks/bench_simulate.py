"""Benchmark: the batched subtomogram simulator vs a naive per-sample loop, same run.

Both produce the same kind of volume (32³ by default, 1 nm voxels, 4 real structures):
uniform random rotation (trilinear), sub-voxel shift, CTF (5 µm underfocus, 300 kV), ±60°
missing wedge and Gaussian noise at SNR 0.1.

- ``batched``  :func:`cryoal.simulate.simulate_subtomograms` (batches of 64, one fused
  Fourier pass per stage, per-volume noise streams), ``noise="white"`` and
  ``noise="two-stage"``;
- ``loop``     one volume at a time with the public transforms, the way a script would
  chain them: ``rotate_volume`` → Fourier shift → ``apply_ctf`` → ``apply_missing_wedge``
  → ``add_noise`` (CTF and wedge computed once, outside the loop).

Reports volumes/s (wall clock, best of ``--repeats``), CPU seconds per volume, the ratio,
and the load average (the dev VM is shared).

Example usage::

    python benchmarks/bench_simulate.py --n 512 --threads 2
    python benchmarks/bench_simulate.py --device cuda --n 4096
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import torch

CLASSES = ["6ZU5", "4V8R-A", "7PBL", "3ENL"]


def naive_loop(n: int, box: int, seed: int, device: torch.device) -> torch.Tensor:
    """One subtomogram at a time through the public transforms."""
    from cryoal.simulate import load_structure
    from cryoal.simulate._physics import phase_ramp
    from cryoal.transforms import (
        add_noise,
        apply_ctf,
        apply_missing_wedge,
        ctf_3d,
        missing_wedge_mask,
        random_rotation,
        rotate_volume,
    )

    g = torch.Generator().manual_seed(seed)
    templates = [
        torch.from_numpy(load_structure(c, 10.0, box=box).density).to(device) for c in CLASSES
    ]
    # filters computed once (a fair loop): the cost left is the per-volume work
    ctf = ctf_3d((box, box, box), 10.0, 5.0, device=device)
    wedge = missing_wedge_mask((box, box, box), device=device)
    out = torch.empty((n, box, box, box))
    for i in range(n):
        label = int(torch.randint(len(CLASSES), (1,), generator=g))
        rot = random_rotation(1, generator=g)[0].to(device)
        x = rotate_volume(templates[label], rot)
        shift = (torch.rand(1, 3, generator=g) * 2 - 1).to(device)
        spec = torch.fft.rfftn(x) * phase_ramp(shift, (box, box, box))[0]
        x = torch.fft.irfftn(spec, s=(box, box, box))
        x = apply_ctf(x, ctf)
        x = apply_missing_wedge(x, wedge)
        out[i] = add_noise(x, 0.1, generator=g).cpu()
    return out


def batched(n: int, box: int, seed: int, device: torch.device, noise: str) -> torch.Tensor:
    from cryoal.simulate import simulate_subtomograms

    per = -(-n // len(CLASSES))
    return simulate_subtomograms(
        CLASSES, per, box=box, voxel_size=10.0, snr=0.1, defocus=5.0, shift_max=1.0,
        seed=seed, noise=noise, device=device,
    ).volumes  # fmt: skip


def _time(fn: Any, repeats: int, sync: bool) -> tuple[float, float]:
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if sync:
            torch.cuda.synchronize()
        best_wall = min(best_wall, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best_wall, best_cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=512, help="volumes per method")
    parser.add_argument("--box", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--loop-n", type=int, default=None, help="volumes for the loop (default --n)"
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = dev.type == "cuda"
    # warm-up (template loading, FFT plans)
    batched(8, args.box, 0, dev, "white")
    naive_loop(4, args.box, 0, dev)
    n_loop = args.loop_n or args.n
    rows = {}
    for name, fn, n in (
        ("batched-white", lambda: batched(args.n, args.box, 1, dev, "white"), args.n),
        ("batched-two-stage", lambda: batched(args.n, args.box, 1, dev, "two-stage"), args.n),
        ("loop", lambda: naive_loop(n_loop, args.box, 1, dev), n_loop),
    ):
        wall, cpu = _time(fn, args.repeats, sync)
        rows[name] = {"vol_per_s": n / wall, "cpu_ms_per_vol": 1000 * cpu / n}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"device {dev}, threads {args.threads}, load avg {load:.1f}, box {args.box}³")  # fmt: skip
    for name, r in rows.items():
        ratio = r["vol_per_s"] / rows["loop"]["vol_per_s"]
        print(
            f"{name:<18} {r['vol_per_s']:9.0f} vol/s  {r['cpu_ms_per_vol']:7.2f} CPU ms/vol  {ratio:5.1f}x loop"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {"rows": rows, "load": load, "args": vars(args), "torch": torch.__version__},
                fh,
                indent=2,
            )


if __name__ == "__main__":
    main()

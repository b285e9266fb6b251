"""Benchmark: exact per-sample gradient-norm scoring vs the released code's batch-1 loop.

One run, same models and data for every method:

- ``loop``            the reference method (Wang et al.'s released code): per sample, a
                      batch-1 forward, ``Σ_y p_y·CE(f(x), y)`` with p not detached,
                      ``torch.autograd.grad`` over all parameters, layerwise-sum norm;
- ``entropy-gradnorm`` cryoal's exact batched per-sample norms (same numbers as ``loop``);
- ``vmap``            the torch.func alternative: ``vmap(grad(functional_call))`` (falls
                      back to a per-sample loop for ``max_pool3d``, which has no batching rule);
- ``expected-gradnorm`` cryoal's exact Σ_y p_y‖∇θ CE(f(x), y)‖ over all classes, and with
                      ``top_k=3``;
- ``batched-fwd-bwd`` a plain batched forward + backward of the summed loss (the cost floor
                      of any gradient method; it gives NO per-sample norms);
- ``last-layer``      the closed-form last-layer approximation (forward only).

Timing: every method runs ``--repeats`` times, interleaved, and its best run counts (robust
to other load on a shared machine). Peak memory is that of one batch.

Models: ``dsrf3d`` at 32³ and ``cnn2d`` at 64², 10 classes, random weights with BatchNorm
running statistics set. Reports samples/s, ratios and peak memory (CUDA: peak allocated;
CPU: peak resident-set growth, polled, in a fresh process per method, one batch).

Example usage::

    python benchmarks/bench_gradnorm.py --device cpu --n 16 --threads 1
    python benchmarks/bench_gradnorm.py --device cuda --n 256 --batch-size 32 --json out.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import sys
import threading
import time
import warnings
from typing import Any

METHODS = [
    "loop",
    "entropy-gradnorm",
    "vmap",
    "expected-gradnorm",
    "expected-gradnorm-top3",
    "batched-fwd-bwd",
    "last-layer",
]
MODELS = {"dsrf3d": (1, 32, 32, 32), "cnn2d": (1, 64, 64)}


def _setup(model_name: str, args: argparse.Namespace) -> tuple[Any, Any, Any]:
    import torch

    from cryoal.models import create

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = create(model_name, args.classes, MODELS[model_name])
    g = torch.Generator().manual_seed(args.seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    model = model.to(device).eval()
    x = torch.randn(args.n, *MODELS[model_name], generator=g).to(device)
    return torch, model, x


def _released_loss(torch: Any, z: Any, classes: int) -> Any:
    p = torch.softmax(z, dim=1)
    total = 0
    for y in range(classes):
        target = torch.full((z.shape[0],), y, device=z.device)
        total = total + p[:, y] * torch.nn.functional.cross_entropy(z, target, reduction="none")
    return total


def _method(name: str, torch: Any, model: Any, x: Any, args: argparse.Namespace) -> Any:
    from cryoal.acquisition import entropy, last_layer_scores, per_sample_class_grad_norms
    from cryoal.acquisition import per_sample_grad_norms as psgn

    params = [p for p in model.parameters() if p.requires_grad]
    bs = args.batch_size

    if name == "loop":
        out = []
        for i in range(x.shape[0]):
            loss = _released_loss(torch, model(x[i : i + 1]), args.classes).sum()
            grads = torch.autograd.grad(loss, params)
            out.append(sum(g.norm() for g in grads))
        return torch.stack(out)
    if name == "entropy-gradnorm":
        return torch.cat(
            [psgn(model, xb, entropy, reduction="layerwise-sum") for xb in x.split(bs)]
        )
    if name == "vmap":  # the torch.func alternative to cryoal's hook engine
        from torch.func import functional_call, grad, vmap

        weights = {k: v.detach() for k, v in model.named_parameters()}
        buffers = dict(model.named_buffers())

        def one(w: Any, xi: Any) -> Any:
            return entropy(functional_call(model, (w, buffers), (xi[None],)))[0]

        per_sample = vmap(grad(one), in_dims=(None, 0))
        res = []
        for xb in x.split(bs):
            g = per_sample(weights, xb)
            res.append(sum(v.flatten(1).norm(dim=1) for v in g.values()))
        return torch.cat(res)
    if name.startswith("expected-gradnorm"):
        k = 3 if name.endswith("top3") else None
        res = []
        for xb in x.split(bs):
            norms, cls, p = per_sample_class_grad_norms(
                model, xb, top_k=k, reduction="layerwise-sum"
            )
            res.append((p.gather(1, cls) * norms).sum(1))
        return torch.cat(res)
    if name == "batched-fwd-bwd":
        for xb in x.split(bs):
            torch.autograd.grad(entropy(model(xb)).sum(), params)
        return None
    if name == "last-layer":
        res = []
        with torch.no_grad():
            for xb in x.split(bs):
                h = model.features(xb)
                res.append(last_layer_scores(h, model.head(h), bias=True, target="entropy"))
        return torch.cat(res)
    raise SystemExit(f"unknown method {name}")


def _peak_memory(model_name: str, name: str, args: argparse.Namespace) -> float:
    """Peak memory (MB) of one batch of ``name``: CUDA peak allocated, or CPU peak-RSS growth."""
    torch, model, x = _setup(model_name, args)
    x = x[: args.batch_size]
    if x.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _method(name, torch, model, x, args)
        torch.cuda.synchronize()
        return float(torch.cuda.max_memory_allocated() - base) / 2**20
    base = _rss_mb()
    peak = [base]
    done = threading.Event()

    def sample() -> None:  # poll the resident set size while the method runs
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.001)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    _method(name, torch, model, x, args)
    done.set()
    t.join()
    return max(peak[0], _rss_mb()) - base


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _child(model_name: str, name: str, args: argparse.Namespace, q: Any) -> None:
    warnings.filterwarnings("ignore", message=".*batching rule.*")
    q.put(_peak_memory(model_name, name, args))


def _time_methods(model_name: str, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Time every method ``--repeats`` times, interleaved, and keep each one's best run.

    Interleaving and the minimum make the ratios robust to other load on a shared machine.
    """
    torch, model, x = _setup(model_name, args)
    cuda = x.device.type == "cuda"
    methods = args.methods.split(",")
    for name in methods:  # warm-up (allocator, cuDNN autotune, lazy init)
        _method(name, torch, model, x[: args.batch_size], args)
    best: dict[str, float] = {}
    scores: dict[str, Any] = {}
    for _ in range(args.repeats):
        for name in methods:
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = _method(name, torch, model, x, args)
            if cuda:
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            best[name] = min(best.get(name, float("inf")), dt)
            scores[name] = None if out is None else out.detach().cpu().tolist()
    return {
        name: {
            "model": model_name,
            "method": name,
            "seconds": best[name],
            "samples_per_s": x.shape[0] / best[name],
            "scores": scores[name],
        }
        for name in methods
    }


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*batching rule.*")
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--n", type=int, default=16, help="samples scored per method")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds (best kept)")
    ap.add_argument("--models", default="dsrf3d,cnn2d")
    ap.add_argument("--methods", default=",".join(METHODS), help="subset to run (loop is required)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write all results here")
    args = ap.parse_args(argv)

    rows = []
    ctx = mp.get_context("spawn")
    for model_name in args.models.split(","):
        timed = _time_methods(model_name, args)
        for name in args.methods.split(","):
            row = timed[name]
            if args.device == "cpu":  # fresh process per method: clean peak-RSS numbers
                q = ctx.Queue()
                p = ctx.Process(target=_child, args=(model_name, name, args, q))
                p.start()
                row["peak_mb"] = q.get()
                p.join()
            else:
                row["peak_mb"] = _peak_memory(model_name, name, args)
            rows.append(row)
            print(
                f"{model_name:7s} {name:24s} {row['samples_per_s']:9.2f} samples/s "
                f"{row['peak_mb']:9.1f} MB peak (one batch)",
                flush=True,
            )

    import torch

    print()
    print(
        f"machine: {platform.platform()}, python {platform.python_version()}, torch {torch.__version__}, "
        f"device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
        + f", threads {args.threads}, n={args.n}, batch {args.batch_size}, {args.classes} classes"
    )
    print("| model | method | samples/s | × loop | peak MB |")
    print("|---|---|---:|---:|---:|")
    summary: dict[str, dict[str, float]] = {}
    for model_name in args.models.split(","):
        by = {r["method"]: r for r in rows if r["model"] == model_name}
        loop = by["loop"]["samples_per_s"]
        ref = torch.tensor(by["loop"]["scores"])
        s: dict[str, float] = {}
        for name, r in by.items():
            print(
                f"| {model_name} | {name} | {r['samples_per_s']:.2f} | "
                f"{r['samples_per_s'] / loop:.2f} | {r['peak_mb']:.0f} |"
            )
            s[f"{name}_vs_loop"] = r["samples_per_s"] / loop
            if name in ("entropy-gradnorm", "vmap"):  # same numbers as the loop
                got = torch.tensor(r["scores"])
                rel = float(((got - ref).abs() / ref.abs().clamp_min(1e-12)).max())
                s[f"{name}_max_rel_diff"] = rel
        for name in ("expected-gradnorm", "expected-gradnorm-top3"):
            if name in by and "entropy-gradnorm" in by:
                s[f"{name}_cost_vs_entropy"] = (
                    by["entropy-gradnorm"]["samples_per_s"] / by[name]["samples_per_s"]
                )
        summary[model_name] = s
    print()
    for model_name, s in summary.items():
        print(f"{model_name}: " + ", ".join(f"{k} {v:.3g}" for k, v in s.items()))
    if args.json:
        from cryoal._atomic import atomic_write_text

        payload = {"args": vars(args), "rows": rows, "summary": summary}
        atomic_write_text(args.json, json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: the low-budget regime — pool pretraining, typicality cold start, diverse gradnorm, auto.

For each SNR it simulates a pool and a held-out test set from bundled structures with the
physics of the ``snr-benchmark`` manifest (random orientation, CTF, ±60° wedge, noise at
the SNR), pretrains one encoder on the unlabelled pool (:mod:`cryoal.pretrain`, seed 0,
shared by every run of that SNR), then runs each arm for every seed along a fixed label
schedule (total labels ``L``), re-training a classifier at every ``L`` and measuring test
accuracy and balanced accuracy. Arms:

- ``random``          random picks, classifier trained from scratch (the baseline);
- ``random+pt``       random picks, classifier initialised from the pretrained encoder
                      (the effect of pretraining alone);
- ``entropy-gradnorm``   random first picks, then plain entropy-gradnorm, from scratch
                      (what cryoal did before);
- ``typicality``      TypiClust picks on the pretrained embedding, encoder init;
- ``diverse-entropy-gradnorm``  typicality first picks, then diverse entropy-gradnorm
                      (k-means in the encoder embedding), encoder init;
- ``auto``            the ``auto`` strategy (typicality below 10 labels per class, then
                      diverse entropy-gradnorm), encoder init.

Training: AdamW, lr 3e-3, cosine, class-balanced batches of 16, a fixed number of steps
per training (``--steps``) whatever the label count (a fixed epoch count gives tiny
label sets almost no steps). Results are appended to ``results.csv`` after every run, so
an interrupted benchmark keeps what it finished (re-running skips finished runs).

Example usage::

    python benchmarks/bench_low_budget.py --snr 0.1 --seeds 0 1 2 --out docs/benchmarks/low-budget
    python benchmarks/bench_low_budget.py --report-only --out docs/benchmarks/low-budget
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import Dataset, TensorDataset

CLASSES = ("4V8R-A", "7PBL", "3O21", "2NWL")
ARMS = ("random", "random+pt", "entropy-gradnorm", "typicality", "diverse-entropy-gradnorm", "auto")


class _Pool(Dataset[torch.Tensor]):
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


def simulate(
    snr: float, n_per_class: int, seed: int, box: int, voxel: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised volumes ``(N, 1, box, box, box)`` and labels ``(N,)`` (index into CLASSES)."""
    from cryoal.benchmark.noise import manifest_physics
    from cryoal.simulate.subtomograms import simulate_subtomograms
    from cryoal.transforms import normalize

    physics = dict(manifest_physics("snr-benchmark"))
    tilt = physics.pop("tilt_range", None)
    sim = simulate_subtomograms(
        list(CLASSES),
        n_per_class,
        box=box,
        voxel_size=voxel,
        snr=snr,
        tilt_range=None if tilt is None else (tilt[0], tilt[1]),
        defocus=physics.pop("defocus_um", None),
        seed=seed,
        **physics,
    )
    names = list(sim.class_names)
    y = torch.as_tensor([CLASSES.index(names[int(i)]) for i in sim.labels.tolist()])
    x = sim.volumes.reshape(-1, 1, box, box, box).float()
    return normalize(x), y


def train(
    x: torch.Tensor,
    y: torch.Tensor,
    idx: list[int],
    seed: int,
    steps: int,
    encoder: dict | None,
    box: int,
) -> Any:
    from cryoal import models
    from cryoal.pretrain import init_from_encoder
    from cryoal.train import TrainConfig, fit

    torch.manual_seed(seed)
    model = models.create("cb3d", len(CLASSES), (1, box, box, box))
    if encoder is not None:
        init_from_encoder(model, encoder)
    n = len(idx)
    bs = min(16, n)
    per_epoch = max(1, n // bs)
    epochs = max(1, math.ceil(steps / per_epoch))
    fit(
        model,
        TensorDataset(x[idx], y[idx]),
        config=TrainConfig(
            epochs=epochs,
            batch_size=max(2, bs),
            lr=3e-3,
            balanced=True,
            seed=seed,
            device="cpu",
            progress=False,
        ),
    )
    return model


def accuracy(model: Any, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    from cryoal.train import classification_metrics, predict

    probs = predict(model, TensorDataset(x), batch_size=64, device="cpu", progress=False)
    m = classification_metrics(y, probs.argmax(1), len(CLASSES))
    return float(m["accuracy"]), float(m["balanced_accuracy"])


def pick(
    arm: str,
    model: Any,
    enc_model: Any,
    pool: _Pool,
    k: int,
    labelled: list[int],
    seed: int,
    first: bool,
) -> tuple[list[int], str]:
    from cryoal import acquisition

    common = {"device": "cpu", "batch_size": 32, "progress": False, "seed": seed}
    gen = torch.Generator().manual_seed(seed * 1000 + len(labelled))
    if arm in ("random", "random+pt") or (arm == "entropy-gradnorm" and first):
        s = acquisition.get("random", **common)
        name = "random"
    elif arm == "entropy-gradnorm":
        s = acquisition.get("entropy-gradnorm", **common)
        name = arm
    elif arm == "typicality" or (arm == "diverse-entropy-gradnorm" and first):
        s = acquisition.get("typicality", encoder=enc_model, **common)
        name = "typicality"
    elif arm == "diverse-entropy-gradnorm":
        s = acquisition.get("diverse-entropy-gradnorm", encoder=enc_model, **common)
        name = arm
    else:
        s = acquisition.get("auto", encoder=enc_model, num_classes=len(CLASSES), **common)
        name = "auto"
    net = model if model is not None else enc_model
    sel = s.select(net, pool, k, labelled=labelled, generator=gen)
    if sel.info:
        name = f"auto:{sel.info['choice']}"
    return [int(i) for i in sel.indices.tolist()], name


def run_arm(
    arm: str, seed: int, snr: float, data: dict[str, Any], args: argparse.Namespace
) -> list[dict[str, Any]]:
    x, y, tx, ty = data["x"], data["y"], data["tx"], data["ty"]
    enc_state, enc_model = data["enc_state"], data["enc_model"]
    use_enc = arm != "random" and arm != "entropy-gradnorm"
    pool = _Pool(x)
    labelled: list[int] = []
    model = None
    rows = []
    for r, target in enumerate(args.schedule):
        t0 = time.perf_counter()
        new, used = pick(
            arm, model, enc_model, pool, target - len(labelled), labelled, seed, first=not labelled
        )
        labelled = labelled + new
        model = train(x, y, labelled, seed, args.steps, enc_state if use_enc else None, args.box)
        acc, bacc = accuracy(model, tx, ty)
        counts = torch.bincount(y[labelled], minlength=len(CLASSES)).tolist()
        rows.append(
            {
                "snr": snr,
                "arm": arm,
                "seed": seed,
                "round": r,
                "n_labels": len(labelled),
                "accuracy": acc,
                "balanced_accuracy": bacc,
                "picked_by": used,
                "class_counts": "/".join(map(str, counts)),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        print(
            f"SNR {snr} {arm} seed {seed} L={len(labelled)} acc={acc:.3f} ({used}, {counts})",
            flush=True,
        )
    return rows


def linear_probe(
    model: Any, x: torch.Tensor, y: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor
) -> float:
    """Test accuracy of a logistic regression on standardised ``features`` (all pool labels)."""
    from sklearn.linear_model import LogisticRegression

    model.eval()
    with torch.no_grad():
        h, th = model.features(x).numpy(), model.features(tx).numpy()
    mu, sd = h.mean(0), h.std(0) + 1e-6
    clf = LogisticRegression(max_iter=3000).fit((h - mu) / sd, y.numpy())
    return float(clf.score((th - mu) / sd, ty.numpy()))


def labels_to_reach(curve: pd.Series, target: float) -> float:
    """Smallest label count whose mean accuracy reaches ``target`` (NaN if never)."""
    hit = curve[curve >= target - 1e-9]
    return float(hit.index.min()) if len(hit) else math.nan


def report(out: Path, machine: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = pd.concat(
        [pd.read_csv(f) for f in sorted(out.glob("results_snr*.csv"))], ignore_index=True
    )
    lines = ["# Low-budget benchmark (issue 12)", "", f"Machine: {machine}.", ""]
    for f in sorted(out.glob("pretrain_snr*.json")):
        lines += [f"Pretraining ({f.name}): `" + f.read_text().replace(chr(10), " ") + "`", ""]
    for f in sorted(out.glob("config_snr*.json")):
        meta = json.loads(f.read_text())
        lines += [f"Config ({f.name}): `" + json.dumps(meta) + "`", ""]
    for snr, sub in table.groupby("snr"):
        seeds = sorted(sub["seed"].unique())
        lines += [f"## SNR {snr:g} ({len(seeds)} seeds: {', '.join(map(str, seeds))})", ""]
        g = sub.groupby(["arm", "n_labels"])["accuracy"]
        mean, std, cnt = g.mean().unstack(0) * 100, g.std().unstack(0) * 100, g.count().unstack(0)
        arms = [a for a in ARMS if a in mean.columns]
        lines.append("| labels (per class) | " + " | ".join(arms) + " |")
        lines.append("|---|" + "---|" * len(arms))
        for n in mean.index:
            cells = [
                f"{mean.loc[n, a]:.1f} ± {0 if math.isnan(std.loc[n, a]) else std.loc[n, a]:.1f} (n={int(cnt.loc[n, a])})"
                if not math.isnan(mean.loc[n, a])
                else "—"
                for a in arms
            ]
            lines.append(f"| {n} ({n / len(CLASSES):g}) | " + " | ".join(cells) + " |")
        lines.append("")
        if "random" in mean.columns:
            final_n = mean["random"].dropna().index.max()
            target = mean.loc[final_n, "random"]
            lines.append(
                f"Labels to reach random's final mean accuracy ({target:.1f} % at {final_n} labels):"
            )
            lines.append("")
            for a in arms:
                need = labels_to_reach(mean[a].dropna(), target)
                saving = (
                    ""
                    if math.isnan(need)
                    else f" ({100 * (1 - need / final_n):.0f} % fewer)"
                    if need < final_n
                    else ""
                )
                lines.append(f"- {a}: {'not reached' if math.isnan(need) else int(need)}{saving}")
            lines.append("")
            diff = mean.sub(mean["random"], axis=0)
            worst = {a: float(diff[a].min()) for a in arms if a != "random"}
            lines.append(
                "Worst gap to random over the schedule (mean accuracy points): "
                + ", ".join(f"{a} {v:+.1f}" for a, v in worst.items())
            )
            lines.append("")
            if "random+pt" in mean.columns:
                diff = mean.sub(mean["random+pt"], axis=0)
                others = [a for a in arms if a not in ("random", "random+pt")]
                lines.append(
                    "Gap to random+pt (same encoder, random picks), min / max over the schedule: "
                    + ", ".join(f"{a} {diff[a].min():+.1f} / {diff[a].max():+.1f}" for a in others)
                )
                lines.append("")
        picks = sub.groupby("arm")["picked_by"].agg(lambda s: ", ".join(sorted(set(s))))
        lines.append("Picked by: " + "; ".join(f"{a}: {picks[a]}" for a in arms))
        lines.append("")
        fig, ax = plt.subplots(figsize=(6, 4))
        for a in arms:
            ax.errorbar(
                mean.index, mean[a], yerr=std[a].fillna(0), label=a, capsize=2, marker="o", ms=3
            )
        ax.set_xlabel("labels")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"SNR {snr:g}, {len(CLASSES)} classes")
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"curves_snr{snr:g}.png"
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        lines += [f"![learning curves SNR {snr:g}]({name})", ""]
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--snr", type=float, nargs="+", default=[0.1])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=list(ARMS))
    ap.add_argument("--schedule", type=int, nargs="+", default=[8, 20, 40, 60, 80, 120])
    ap.add_argument("--n-pool", type=int, default=60, help="pool volumes per class")
    ap.add_argument("--n-test", type=int, default=25, help="test volumes per class")
    ap.add_argument("--box", type=int, default=16)
    ap.add_argument("--voxel", type=float, default=15.0)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--pretrain-epochs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--machine",
        default="2-core CPU dev VM, Python 3.11, torch 2.13.0 CPU (shared, load average ≈ 9–11)",
    )
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        report(args.out, args.machine)
        return
    torch.set_num_threads(args.threads)
    from cryoal import models
    from cryoal.pretrain import PretrainConfig, encoder_state, pretrain_encoder

    cfg = {
        k: (str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
        if k not in ("report_only",)
    }
    cfg.update(python=platform.python_version(), torch=torch.__version__, classes=list(CLASSES))
    for snr in args.snr:
        results = args.out / f"results_snr{snr:g}.csv"
        (args.out / f"config_snr{snr:g}.json").write_text(
            json.dumps(cfg, indent=1) + "\n", encoding="utf-8"
        )
        t0 = time.perf_counter()
        x, y = simulate(snr, args.n_pool, 0, args.box, args.voxel)
        tx, ty = simulate(snr, args.n_test, 1, args.box, args.voxel)
        torch.manual_seed(0)
        enc = models.create("cb3d", 2, (1, args.box, args.box, args.box))
        probe_random = linear_probe(enc, x, y, tx, ty)
        pc = PretrainConfig(epochs=args.pretrain_epochs, batch_size=32, seed=0)
        res = pretrain_encoder(enc, _Pool(x), pc, device="cpu", progress=False)
        probe_pt = linear_probe(enc, x, y, tx, ty)
        info = {
            "snr": snr,
            "pretrain_seconds": round(res.seconds, 1),
            "nt_xent_first": res.losses[0],
            "nt_xent_last": res.losses[-1],
            "probe_random_encoder": probe_random,
            "probe_pretrained": probe_pt,
        }
        (args.out / f"pretrain_snr{snr:g}.json").write_text(
            json.dumps(info, indent=1) + "\n", encoding="utf-8"
        )
        print(f"SNR {snr}: data + pretraining {time.perf_counter() - t0:.0f} s, {info}", flush=True)
        data = {
            "x": x,
            "y": y,
            "tx": tx,
            "ty": ty,
            "enc_state": encoder_state(enc),
            "enc_model": enc,
        }
        for seed in args.seeds:
            for arm in args.arms:
                done = (
                    pd.read_csv(results)
                    if results.exists()
                    else pd.DataFrame(columns=["snr", "arm", "seed"])
                )
                if ((done["snr"] == snr) & (done["arm"] == arm) & (done["seed"] == seed)).any():
                    continue
                rows = run_arm(arm, seed, snr, data, args)
                new = pd.DataFrame(rows)
                merged = new if done.empty else pd.concat([done, new], ignore_index=True)
                tmp = results.with_suffix(".tmp")
                merged.to_csv(tmp, index=False)
                tmp.replace(results)
    report(args.out, args.machine)


if __name__ == "__main__":
    sys.exit(main())

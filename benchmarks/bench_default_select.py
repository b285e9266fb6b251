"""Benchmark: the default ``cryoal select`` against ``--strategy random``, through the real CLI.

For every SNR it simulates (once; reused when the options match) a labelled pool and a
held-out test set from bundled structures with the physics of the ``snr-benchmark``
manifest (uniform orientation, sub-voxel shift, 5 µm CTF, ±60° wedge, two-stage noise at
the SNR); the pool uses seed ``data_seed``, the test set ``data_seed + 1``, as in
``cryoal benchmark noise``. Then, for every seed and arm, it drives the CLI exactly as a
user would, one project per (SNR, arm, seed)::

    cryoal select --volumes pool.mrcs --project P --budget B --seed S [ARM OPTIONS]
    cryoal label import picks-with-true-labels.csv --project P
    ...                                          # next round, up the label schedule
    cryoal predict --volumes test.mrcs --model P/models/round-NNN.pt --out pred.csv

The label schedule is in labels per class (default 5, 10, 20, 40, 70, 100): round 1
cold-starts and picks the first ``5·C``; every later round trains on the labels so far
(the model that is evaluated on the test set, at that label count), then picks up to the
next count; a last ``--budget 1`` round trains on the final set. Arms (``--arm
NAME=OPTIONS``, repeatable; every other option is the CLI default):

- ``default``: ``cryoal select`` with no option (``--strategy auto``, ``--cold-start auto``);
- ``random``:  ``--strategy random --cold-start random`` (random picks from the first
  round: ``--cold-start auto`` would cold-start a random arm by typicality).

``--common OPTIONS`` adds options to every arm (e.g. ``--pretrain-epochs 0``: without the
encoder that the default, ``auto``, pretrains for pools of 200 volumes or more). With ``--share-encoder`` (default) the pretrained encoder a
project caches in ``models/encoder.pt`` is copied to the other arms' projects of the same
(SNR, seed) before their first round: the CLI reuses it only when its cache key (pool
fingerprint, architecture, options, seed) matches, i.e. when it would have trained the
same encoder itself, and trains its own otherwise.

Resumable: each evaluated round is appended atomically to ``OUT/results/snr-<SNR>.csv``
(one file per SNR, so the SNRs can run as parallel processes); a restart skips finished
rounds and continues each project where it stopped (a re-run ``cryoal select`` resumes or
re-shows its round). ``--report`` merges the SNR files into ``OUT/results.csv`` and
writes ``summary.md``, ``curves_snr*.png`` and ``balance.csv`` with
:mod:`cryoal.benchmark.report` (random is the baseline).

Example usage::

    python benchmarks/bench_default_select.py --out docs/benchmarks/default-select --snr 0.1
    python benchmarks/bench_default_select.py --out docs/benchmarks/default-select --snr 0.05
    python benchmarks/bench_default_select.py --out docs/benchmarks/default-select --report
    # smoke test: 2 classes, 2 rounds, 1 seed
    python benchmarks/bench_default_select.py --out /tmp/smoke --snr 0.1 --classes 1BD2 3P3W \\
        --schedule 2 4 --pool-per-class 8 --test-per-class 4 --seeds 0 --common "--epochs 1"
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import resource
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger("bench_default_select")

#: Ten bundled structures outside the ``paper`` preset (the set the noise benchmarks were
#: run and tuned on): its eight unused structures plus 1BD2 and 3P3W, added for this run.
CLASSES: tuple[str, ...] = (
    "7CTH",
    "3KPR",
    "3P3W",
    "1BD2",
    "2XHE",
    "3HSY",
    "19HC",
    "1HVR",
    "1AKE",
    "1UBI",
)
SCHEDULE: tuple[int, ...] = (5, 10, 20, 40, 70, 100)  # labels per class
ARMS: dict[str, str] = {"default": "", "random": "--strategy random --cold-start random"}
#: Extra columns of the results rows (after cryoal.benchmark.report.RESULT_COLUMNS).
EXTRA_COLUMNS: tuple[str, ...] = (
    "cpu_time",
    "train_time",
    "picked_with",
    "encoder",
)
DATA_KEYS: tuple[str, ...] = (
    "classes",
    "box",
    "voxel_size",
    "pool_per_class",
    "test_per_class",
    "data_seed",
    "manifest",
)


# ---------------------------------------------------------------------- the CLI
class CLI:
    """Runs ``cryoal`` commands: in this process through click, or the installed script."""

    def __init__(self, mode: str, threads: int) -> None:
        self.mode = mode
        self.threads = threads
        self.transcript: Path | None = None  # every command and its output are appended here
        self.script = Path(sys.executable).with_name("cryoal")
        if mode == "subprocess" and not self.script.exists():
            found = shutil.which("cryoal")
            if found is None:
                raise SystemExit("no `cryoal` console script next to python or on PATH")
            self.script = Path(found)

    def __call__(self, *args: str) -> tuple[str, float, float]:
        """Run ``cryoal ARGS``; return its output, wall seconds and CPU seconds."""
        argv = [str(a) for a in args]
        log.info("$ cryoal %s", shlex.join(argv))
        wall0, cpu0 = time.perf_counter(), _cpu()
        if self.mode == "subprocess":
            env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
            proc = subprocess.run(
                [str(self.script), *argv], capture_output=True, text=True, env=env, check=False
            )
            out, code = proc.stdout + proc.stderr, proc.returncode
        else:
            from click.testing import CliRunner
            from cryoal.cli.main import cli

            res = CliRunner().invoke(cli, argv)
            out, code = res.output, res.exit_code
            if res.exception is not None and not isinstance(res.exception, SystemExit):
                import traceback

                out += "".join(traceback.format_exception(res.exception))
        wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
        if self.transcript is not None:
            self.transcript.parent.mkdir(parents=True, exist_ok=True)
            with self.transcript.open("a", encoding="utf-8") as fh:
                fh.write(f"$ cryoal {shlex.join(argv)}\n{out}[exit {code}, {wall:.1f} s wall]\n")
        if code != 0:
            raise RuntimeError(f"`cryoal {shlex.join(argv)}` exited {code}:\n{out}")
        return out, wall, cpu


def _cpu() -> float:
    """CPU seconds of this process and its finished children."""
    own = time.process_time()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own + kids.ru_utime + kids.ru_stime


# ---------------------------------------------------------------------- data
def _snr_name(snr: float) -> str:
    from cryoal.benchmark.report import format_snr

    return f"snr-{format_snr(snr)}"


def prepare_data(args: argparse.Namespace, snr: float) -> Path:
    """Simulate (or reuse) ``pool.mrcs`` / ``test.mrcs`` + ``*_labels.csv`` of one SNR."""
    from cryoal._atomic import atomic_write_text
    from cryoal.benchmark.noise import manifest_physics
    from cryoal.io import write_labels, write_volume
    from cryoal.simulate.subtomograms import simulate_subtomograms

    where = Path(args.out) / "data" / _snr_name(snr)
    physics = manifest_physics(args.manifest)
    want = {k: _jsonable(getattr(args, k)) for k in DATA_KEYS}
    want.update(snr=snr, physics=physics)
    meta = where / "meta.json"
    if meta.exists() and json.loads(meta.read_text(encoding="utf-8")) == want:
        log.info("reusing the simulated data in %s", where)
        return where
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    for name, n, seed in (
        ("pool", args.pool_per_class, args.data_seed),
        ("test", args.test_per_class, args.data_seed + 1),
    ):
        kw = dict(physics)
        tilt = kw.pop("tilt_range", None)
        sim = simulate_subtomograms(
            list(args.classes),
            n,
            box=args.box,
            voxel_size=args.voxel_size,
            snr=snr,
            tilt_range=None if tilt is None else (tilt[0], tilt[1]),
            defocus=kw.pop("defocus_um", None),
            seed=seed,
            progress=False,
            **kw,
        )
        vols = sim.volumes.detach().cpu().numpy().astype(np.float32, copy=False)
        vols = vols.reshape(vols.shape[0], *vols.shape[-3:])
        stack = Path(write_volume(where / f"{name}.mrcs", vols, voxel_size=args.voxel_size))
        labels = [sim.class_names[int(i)] for i in sim.labels.tolist()]
        ids = [f"{stack.name}#{i}" for i in range(len(labels))]
        write_labels(where / f"{name}_labels.csv", pd.DataFrame({"id": ids, "label": labels}))
    atomic_write_text(meta, json.dumps(want, indent=2) + "\n")
    log.info("simulated %s", where)
    return where


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def _truth(data: Path, name: str) -> dict[str, str]:
    from cryoal.io import read_labels

    table = read_labels(data / f"{name}_labels.csv")
    return dict(zip(table["id"].astype(str), table["label"].astype(str), strict=True))


# ---------------------------------------------------------------------- results
def _results_path(out: Path, snr: float) -> Path:
    return out / "results" / f"{_snr_name(snr)}.csv"


def _columns() -> list[str]:
    from cryoal.benchmark.noise import BALANCE_COLUMNS
    from cryoal.benchmark.report import RESULT_COLUMNS

    extra_balance = [c for c in BALANCE_COLUMNS if c not in RESULT_COLUMNS]
    return [*RESULT_COLUMNS, *EXTRA_COLUMNS, *extra_balance]


def _read_results(path: Path) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=_columns())
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def _append(path: Path, row: dict[str, Any]) -> None:
    """Append one row: the whole file is rewritten atomically (temp file + rename)."""
    from cryoal._atomic import atomic_write_text

    table = _read_results(path)
    new = pd.DataFrame([row], columns=_columns())
    table = new if table.empty else pd.concat([table, new], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, table.to_csv(index=False))


# ---------------------------------------------------------------------- one run
def _seconds(a: str | None, b: str | None) -> float:
    if a is None or b is None:
        return math.nan
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def _evaluate(
    cli: CLI,
    project_dir: Path,
    rnd: Any,
    data: Path,
    test_truth: dict[str, str],
    classes: Sequence[str],
) -> dict[str, float]:
    """Test metrics of a round's model, through ``cryoal predict``."""
    import torch

    from cryoal.io import read_table
    from cryoal.train import classification_metrics

    pred_path = project_dir.parent / f"{project_dir.name}-eval" / f"round-{rnd.n:03d}.csv"
    pred_path.parent.mkdir(parents=True, exist_ok=True)
    cli(
        "predict",
        "--volumes",
        str(data / "test.mrcs"),
        "--model",
        str(project_dir / str(rnd.model_path)),
        "--out",
        str(pred_path),
        "--no-progress",
    )
    table = read_table(pred_path)
    index = {c: i for i, c in enumerate(classes)}
    y = torch.as_tensor([index[test_truth[str(i)]] for i in table["id"]])
    p = torch.as_tensor([index[str(c)] for c in table["predicted"]])
    m = classification_metrics(y, p, len(classes))
    return {k: float(m[k]) for k in ("accuracy", "balanced_accuracy", "macro_f1")}


def _state(project_dir: Path) -> tuple[int, list[Any]]:
    """Labels in the project and its rounds (0 and [] before the first round)."""
    from cryoal.active import Project

    if not (project_dir / "project.sqlite").exists():
        return 0, []
    with Project(project_dir, readonly=True) as project:
        return len(project.label_map()), project.rounds()


def _round_trained_on(rounds: Sequence[Any], n_labels: int) -> Any:
    done = [
        r for r in rounds if r.mode == "train" and r.n_labels == n_labels and r.reached("picked")
    ]
    return done[-1] if done else None


def run_one(
    cli: CLI,
    args: argparse.Namespace,
    data: Path,
    snr: float,
    arm: str,
    seed: int,
    results: Path,
) -> None:
    """Drive one (snr, arm, seed) project up the label schedule; append evaluated rounds."""
    from cryoal.active import Project
    from cryoal.benchmark.noise import label_balance

    classes = sorted(args.classes)
    counts = [int(s) * len(classes) for s in args.schedule]
    table = _read_results(results)
    mine = table[(table["strategy"] == arm) & (table["seed"] == seed)]
    done = {int(n) for n in mine["n_labels"]}
    if all(n in done for n in counts):
        log.info("%s %s seed %d: finished", _snr_name(snr), arm, seed)
        return
    pool_truth, test_truth = _truth(data, "pool"), _truth(data, "test")
    project_dir = Path(args.out) / "runs" / _snr_name(snr) / f"{arm}-seed{seed}"
    if args.share_encoder and not (project_dir / "project.sqlite").exists():
        _copy_encoder(Path(args.out) / "runs" / _snr_name(snr), project_dir, seed)
    cli.transcript = project_dir.parent / f"{project_dir.name}-cli.log"
    options = shlex.split(args.common) + shlex.split(args.arms[arm])
    base = ["select", "--volumes", str(data / "pool.mrcs"), "--project", str(project_dir)]
    base += ["--seed", str(seed), "--no-progress", *options]
    for i in range(len(counts) + 1):
        n_labels, rounds = _state(project_dir)
        prev = counts[i - 1] if i else 0
        wall = cpu = math.nan
        if i < len(counts) and n_labels >= counts[i]:
            rnd = _round_trained_on(rounds, prev) if i else None  # step done before a restart
        else:
            if n_labels != prev:
                raise RuntimeError(
                    f"{project_dir}: {n_labels} labels, expected {prev} before step {i}"
                )
            budget = counts[i] - n_labels if i < len(counts) else 1
            _, wall, cpu = cli(*base, "--budget", str(budget))
            _, rounds = _state(project_dir)
            rnd = rounds[-1]
            if i < len(counts):
                _import_truth(cli, project_dir, rnd.n, pool_truth)
            if i and rnd.n_labels != prev:
                raise RuntimeError(f"{project_dir}: round {rnd.n} trained on {rnd.n_labels}")
        if not i or prev in done:
            continue
        if rnd is None:
            raise RuntimeError(f"{project_dir}: no finished round trained on {prev} labels")
        metrics = _evaluate(cli, project_dir, rnd, data, test_truth, classes)
        with Project(project_dir, readonly=True) as project:
            labelled = list(project.label_map(as_of_seq=rnd.label_seq).values())
        row = {
            "snr": snr,
            "strategy": arm,
            "seed": seed,
            "round": i - 1,
            "n_labels": rnd.n_labels,
            **metrics,
            "wall_time": _seconds(rnd.started, rnd.picked),
            "cpu_time": cpu,
            "train_time": _seconds(rnd.started, rnd.trained),
            "picked_with": (rnd.metrics.get("selection") or {}).get("choice") or rnd.strategy,
            "encoder": bool(rnd.metrics.get("encoder")),
            **label_balance(labelled, classes),
        }
        _append(results, row)
        done.add(prev)
        log.info(
            "%s %s seed %d: %d labels -> accuracy %.3f (round %.0f s wall, %.0f s CPU)",
            _snr_name(snr),
            arm,
            seed,
            rnd.n_labels,
            metrics["accuracy"],
            row["wall_time"],
            wall if math.isnan(cpu) else cpu,
        )


def _import_truth(cli: CLI, project_dir: Path, n: int, truth: dict[str, str]) -> None:
    """Answer round ``n``'s picks with the ground truth via ``cryoal label import``."""
    from cryoal.io import read_table, write_labels

    picks = read_table(project_dir / "picks" / f"round-{n:03d}.csv")
    ids = [str(i) for i in picks["id"]]
    answers = project_dir.parent / f"{project_dir.name}-labels" / f"round-{n:03d}.csv"
    answers.parent.mkdir(parents=True, exist_ok=True)
    write_labels(answers, pd.DataFrame({"id": ids, "label": [truth[i] for i in ids]}))
    cli("label", "import", str(answers), "--project", str(project_dir))


def _copy_encoder(runs: Path, project_dir: Path, seed: int) -> None:
    """Copy another arm's cached encoder of this seed into a new project (see --share-encoder)."""
    from cryoal._atomic import atomic_path
    from cryoal.active import ProjectLayout

    for other in sorted(runs.glob(f"*-seed{seed}")):
        src = ProjectLayout(other).encoder
        if other != project_dir and src.exists():
            target = ProjectLayout(project_dir).encoder
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                shutil.copyfile(src, tmp)
            log.info("copied the cached encoder of %s into %s", other.name, project_dir)
            return


# ---------------------------------------------------------------------- report
def report(args: argparse.Namespace) -> None:
    """Merge the per-SNR results into ``results.csv`` and write the report beside it."""
    from cryoal._atomic import atomic_write_text
    from cryoal.benchmark.noise import BALANCE_COLUMNS
    from cryoal.benchmark.report import write_report

    out = Path(args.out)
    parts = [_read_results(p) for p in sorted((out / "results").glob("snr-*.csv"))]
    parts = [p for p in parts if not p.empty]
    if not parts:
        raise SystemExit(f"no results under {out / 'results'}")
    results = pd.concat(parts, ignore_index=True)
    results = results.sort_values(
        ["snr", "strategy", "seed", "n_labels"], ascending=[False] + [True] * 3
    )
    atomic_write_text(out / "results.csv", results.to_csv(index=False))
    balance = results[list(BALANCE_COLUMNS)]
    atomic_write_text(out / "balance.csv", balance.to_csv(index=False))
    notes = [*(args.note or []), "", *goal_lines(results, args.counts_expected)]
    paths = write_report(
        results,
        out,
        baseline="random",
        notes=notes,
        balance=balance,
        title="Default `cryoal select` vs `--strategy random` (real CLI rounds)",
    )
    if args.discussion is not None:
        text = paths["summary"].read_text(encoding="utf-8").rstrip("\n")
        extra = Path(args.discussion).read_text(encoding="utf-8").strip("\n")
        atomic_write_text(paths["summary"], f"{text}\n\n{extra}\n")
    log.info("report written to %s", out)


def goal_lines(results: pd.DataFrame, expected: int | None = None) -> list[str]:
    """The issue's goal, checked per SNR: never below random beyond 2 SE; ≥ 25 % fewer labels.

    ``expected`` (evaluated label counts per run) marks SNRs whose runs are incomplete.
    """
    from cryoal.benchmark.report import (
        budget_comparison,
        final_table,
        format_snr,
        labels_to_reach_table,
    )

    gaps = budget_comparison(results, baseline="random")
    reach = labels_to_reach_table(results, baseline="random")
    final = final_table(results)
    out = [
        "## Goal check (default vs random)",
        "",
        "Goal: never worse than random beyond noise (mean paired gap < −2·SE) at any budget, "
        "and ≥ 25 % fewer labels to reach random's final accuracy.",
        "",
        "| SNR | seeds | budgets compared | worse beyond noise at | worst gap | better beyond "
        "noise at | labels to reach random's final | fewer | goal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for snr in sorted(results["snr"].unique(), reverse=True):
        g = gaps[(gaps["snr"] == snr) & (gaps["strategy"] == "default")]
        r = reach[(reach["snr"] == snr) & (reach["strategy"] == "default")]
        base = final[(final["snr"] == snr) & (final["strategy"] == "random")]
        if g.empty or r.empty or base.empty:
            continue
        worse = [str(int(n)) for n in g[g["verdict"] == "worse"]["n_labels"]]
        better = [str(int(n)) for n in g[g["verdict"] == "better"]["n_labels"]]
        w = g.loc[g["mean_diff"].idxmin()]
        n = float(r["n_labels"].iloc[0])
        spent = float(base["n_labels"].iloc[0])
        fewer = math.nan if math.isnan(n) else 100.0 * (1.0 - n / spent)
        ok_gap = not worse
        ok_labels = not math.isnan(fewer) and fewer >= 25.0
        runs = results[results["snr"] == snr].groupby(["strategy", "seed"]).size()
        complete = expected is None or bool((runs >= expected).all())
        verdict = (
            "met"
            if ok_gap and ok_labels
            else (
                "not met ("
                + ", ".join(
                    x
                    for x, bad in (
                        ("worse at a budget", not ok_gap),
                        ("< 25 % fewer", not ok_labels),
                    )
                    if bad
                )
                + ")"
            )
        )
        if int(g["n_seeds"].max()) < 2:
            verdict = "n/a (one seed: no standard error)"
        if not complete:
            verdict += "; runs incomplete"
        out.append(
            f"| {format_snr(float(snr))} | {int(g['n_seeds'].max())} | {len(g)} | "
            f"{', '.join(worse) or 'none'} | {w['mean_diff']:+.3f} ± {w['se']:.3f} at "
            f"{int(w['n_labels'])} | {', '.join(better) or 'none'} | "
            + ("not reached" if math.isnan(n) else f"{n:.0f} of {spent:.0f}")
            + f" | {'n/a' if math.isnan(fewer) else f'{fewer:.0f} %'} | {verdict} |"
        )
    return out


def _write_config(args: argparse.Namespace) -> None:
    import torch

    from cryoal import __version__
    from cryoal._atomic import atomic_write_text

    cfg = {k: _jsonable(v) for k, v in vars(args).items() if k != "arm"}
    cfg["out"] = str(args.out)
    cfg.update(
        cryoal=__version__,
        torch=torch.__version__,
        python=platform.python_version(),
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs",
        time=datetime.now(UTC).isoformat(timespec="seconds"),
        command=shlex.join([sys.executable, *sys.argv]),
    )
    name = "config.json" if not args.snr else f"config-{'-'.join(map(str, args.snr))}.json"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.out) / name, json.dumps(cfg, indent=2) + "\n")


def _arm(text: str) -> tuple[str, str]:
    name, sep, options = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--arm {text!r}: use NAME=OPTIONS")
    return name, options


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--snr", type=float, nargs="+", help="SNRs to run (one process each, say)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--classes", nargs="+", default=list(CLASSES))
    p.add_argument("--schedule", type=int, nargs="+", default=list(SCHEDULE), help="per class")
    p.add_argument("--pool-per-class", type=int, default=150)
    p.add_argument("--test-per-class", type=int, default=30)
    p.add_argument("--box", type=int, default=16, help="voxels")
    p.add_argument("--voxel-size", type=float, default=15.0, help="Å")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--manifest", default="snr-benchmark", help="physics of the simulation")
    p.add_argument(
        "--arm",
        type=_arm,
        action="append",
        help="NAME=OPTIONS for `cryoal select` (repeatable) [default: "
        + "; ".join(f"{k}={v!r}" for k, v in ARMS.items())
        + "]",
    )
    p.add_argument("--common", default="", help="options added to every arm's `cryoal select`")
    p.add_argument(
        "--share-encoder",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="copy a seed's cached encoder into the other arms' new projects",
    )
    p.add_argument("--cli", choices=["inprocess", "subprocess"], default="inprocess")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--report", action="store_true", help="merge results and write the report")
    p.add_argument("--note", action="append", help="line for the report's header (repeatable)")
    p.add_argument("--discussion", type=Path, help="Markdown file appended to summary.md")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    args.arms = dict(args.arm) if args.arm else dict(ARMS)
    args.classes = tuple(args.classes)
    args.counts_expected = len(args.schedule)
    if not args.report and not args.snr:
        p.error("give --snr (to run) or --report")
    if max(args.schedule) * 1.5 > args.pool_per_class:
        log.warning("the pool holds fewer than 1.5x the largest labelled set")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.report:
        report(args)
        return
    import torch

    torch.set_num_threads(args.threads)
    _write_config(args)
    cli = CLI(args.cli, args.threads)
    t0, c0 = time.perf_counter(), _cpu()
    for snr in args.snr:
        data = prepare_data(args, snr)
        for seed in args.seeds:
            for arm in args.arms:
                run_one(cli, args, data, snr, arm, seed, _results_path(Path(args.out), snr))
    log.info(
        "done: %.1f min wall, %.1f min CPU", (time.perf_counter() - t0) / 60, (_cpu() - c0) / 60
    )


if __name__ == "__main__":
    main()

"""Benchmark: the time of each step of a default ``cryoal select`` round, against today's round.

Every arm drives the real CLI on the same pool, one fresh project per arm, for
``--rounds`` rounds; between rounds the picks get their true labels (``cryoal label
import``), as an expert would give them::

    cryoal select --volumes POOL --project OUT/projects/ARM --seed S --no-progress [OPTIONS]
    cryoal label import picks-with-true-labels.csv --project OUT/projects/ARM
    ...

Round 1 is a cold start, later rounds train on the labels so far and score the pool. The
steps of each round (``register``, ``read``, ``pretrain``, ``train``, ``embed``, ``score``,
``pick``, ``predict``, ``record``, ``gallery``, ``write``; wall and CPU seconds, nested
steps excluded) come from the round's ``step_seconds`` metrics, which ``select_round``
records (:mod:`cryoal._steps`); ``startup`` is the rest of the process's time (Python and
torch import, option parsing, pool listing). The process's wall time and CPU time
(user + system, from ``getrusage`` of the child) are measured here.

Arms: ``--arm NAME[@REV]=OPTIONS`` (repeatable). ``@REV`` runs the code of git revision
``REV`` of this repository (``git archive`` into ``OUT/src-REV``, put first on
``PYTHONPATH``), so the current code and an older one are compared in the same run on the
same machine; children run in ``OUT`` so that the checkout cannot shadow them, and the
folder each arm imported is recorded as ``code``. The default arms are
``today@BASELINE=--arch dsrf3d --pretrain-epochs 0`` (the round of the hidden check of issue
19: ``dsrf3d``, no pretraining, 20 epochs, on the step-timer revision, none of the speed
work) and ``default`` (this checkout with no option). Ratios are ``arm / first arm`` per
step and per round. ``--reuse`` keeps the rows of arms already measured in ``OUT``;
``--cap NAME=N`` runs only ``N`` rounds of arm ``NAME`` (a slow baseline on a large pool).

Example usage::

    python benchmarks/bench_round.py --pool /data/pool1k --truth /data/pool1k/labels.csv \\
        --rounds 2 --out /tmp/bench-round-1k
    python benchmarks/bench_round.py --pool /data/pool10k --truth /data/pool10k/labels.csv \\
        --arm default= --arm "dsrf3d=--arch dsrf3d" --out /tmp/bench-round-10k
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

#: main with the step timers and none of the speed-ups (embedding cache, one read of the
#: labels, the lighter gallery, candidate subsets, ...)
BASELINE = "b3b5880eef43"
#: options that give today's round on that revision: its new-project defaults (cb3d,
#: ``--pretrain-epochs auto``) had just landed, the round of the hidden check of issue 19
#: is the one before them
BASELINE_OPTIONS = "--arch dsrf3d --pretrain-epochs 0"
REPO = Path(__file__).resolve().parents[1]
STEPS = (
    "register",
    "read",
    "pretrain",
    "train",
    "embed",
    "score",
    "pick",
    "predict",
    "record",
    "gallery",
    "write",
    "startup",
)


def _source(rev: str, out: Path) -> Path:
    """An importable copy of revision ``rev``'s package (``cryoal``, ``cryoal.cli``, manifests)."""
    sha = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", rev], check=True, capture_output=True, text=True
    ).stdout.strip()
    dest = out / f"src-{sha[:10]}"
    if (dest / "cryoal" / "__init__.py").exists():
        return dest
    tmp = out / f"src-{sha[:10]}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    archive = tmp / "src.tar"
    with open(archive, "wb") as fh:
        subprocess.run(
            ["git", "-C", str(REPO), "archive", sha, "cryoal", "cli", "data_manifests"],
            check=True,
            stdout=fh,
        )
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    archive.unlink()
    (tmp / "cli").rename(tmp / "cryoal" / "cli")
    (tmp / "data_manifests").rename(tmp / "cryoal" / "data_manifests")
    tmp.rename(dest)
    return dest


def _run(cmd: list[str], env: dict[str, str], log: Path, cwd: Path) -> tuple[float, float]:
    """Run ``cmd`` in ``cwd``; return (wall s, CPU s = user + sys of the child).

    ``cwd`` must not be the repository root: ``python -m`` puts the working directory
    first on ``sys.path``, where the checkout's ``cryoal/`` would shadow an arm's
    revision on ``PYTHONPATH``. Raises on failure.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "a") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"command failed (exit {proc.returncode}), see {log}: {shlex.join(cmd)}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _code_path(env: dict[str, str], cwd: Path) -> Path:
    """Folder of the ``cryoal`` package that a child with ``env`` in ``cwd`` imports."""
    probe = "import cryoal, cryoal.cli; print(cryoal.__file__)"
    res = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=cwd, capture_output=True, text=True, check=True
    )
    return Path(res.stdout.strip()).resolve().parent


def _round_metrics(project: Path, n: int) -> dict[str, Any]:
    with sqlite3.connect(project / "project.sqlite") as conn:
        row = conn.execute(
            "SELECT mode, strategy, metrics FROM rounds WHERE n = ?", (n,)
        ).fetchone()
    mode, strategy, metrics = row
    out = json.loads(metrics or "{}")
    out["mode"], out["strategy"] = mode, strategy
    return out


def _picks(project: Path, n: int) -> list[str]:
    table = pd.read_csv(project / "picks" / f"round-{n:03d}.csv")
    return [str(v) for v in table["id"]]


def run_arm(
    name: str,
    rev: str | None,
    options: str,
    args: argparse.Namespace,
    truth: dict[str, str],
    n_rounds: int,
) -> list[dict[str, Any]]:
    """Run ``n_rounds`` rounds of one arm; one row per round."""
    out = Path(args.out)
    project = out / "projects" / name
    shutil.rmtree(project, ignore_errors=True)
    env = dict(os.environ)
    if rev is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(_source(rev, out)), env.get("PYTHONPATH", "")])
    code = _code_path(env, out)
    if rev is not None and not code.is_relative_to(out):
        raise SystemExit(f"arm {name}: revision {rev} is shadowed by {code}")
    log = out / f"{name}.log"
    log.unlink(missing_ok=True)
    rows = []
    base = [sys.executable, "-m", "cryoal.cli"]
    for n in range(1, n_rounds + 1):
        cmd = [
            *base,
            "select",
            "--volumes",
            str(args.pool),
            "--project",
            str(project),
            "--seed",
            str(args.seed),
            "--no-progress",
            *shlex.split(options),
        ]
        wall, cpu = _run(cmd, env, log, out)
        metrics = _round_metrics(project, n)
        steps = {k: tuple(v) for k, v in metrics.get("step_seconds", {}).items()}
        row: dict[str, Any] = {
            "arm": name,
            "rev": rev or "checkout",
            "options": options,
            "code": str(code),
            "round": n,
            "mode": metrics["mode"],
            "strategy": (metrics.get("selection") or {}).get("choice") or metrics["strategy"],
            "n_labels": metrics.get("n_labels", 0),
            "wall": wall,
            "cpu": cpu,
            # 1- and 5-minute load averages at the end of the round (the machine is shared)
            "load": [round(v, 2) for v in os.getloadavg()[:2]],
        }
        for s in STEPS[:-1]:
            w, c = steps.get(s, (0.0, 0.0))
            row[f"{s}_wall"], row[f"{s}_cpu"] = w, c
        row["startup_wall"] = wall - sum(v[0] for v in steps.values())
        row["startup_cpu"] = cpu - sum(v[1] for v in steps.values())
        row["picks"] = _picks(project, n)
        picked = [truth[i] for i in row["picks"]]
        row["classes_picked"] = len(set(picked))
        rows.append(row)
        print(
            f"{name} round {n} ({row['mode']}, {row['strategy']}, {row['n_labels']} labels): "
            f"{wall:.1f} s wall, {cpu:.1f} s CPU; "
            + ", ".join(f"{s} {row[f'{s}_wall']:.1f}" for s in STEPS if row[f"{s}_wall"] >= 0.05),
            flush=True,
        )
        if n < n_rounds:
            labels = out / f"{name}-round-{n:03d}-labels.csv"
            pd.DataFrame({"id": row["picks"], "label": picked}).to_csv(labels, index=False)
            _run([*base, "label", "import", str(labels), "--project", str(project)], env, log, out)
    return rows


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Markdown tables: steps per arm and round (wall / CPU s), and ratios to the first arm."""
    df = pd.DataFrame(rows)
    arms = list(dict.fromkeys(df["arm"]))
    lines = [
        f"pool {args.pool} ({args.n_pool} volumes), seed {args.seed}, {args.rounds} rounds; "
        f"{_cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "",
    ]
    used = [s for s in STEPS if (df[f"{s}_wall"].abs() >= 0.05).any()]
    head = ["arm", "round", "mode / strategy", "labels", *used, "total wall", "total CPU", "load"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in df.iterrows():
        cells = [
            str(r["arm"]),
            str(r["round"]),
            f"{r['mode']} / {r['strategy']}",
            str(r["n_labels"]),
            *[f"{r[f'{s}_wall']:.1f} / {r[f'{s}_cpu']:.1f}" for s in used],
            f"{r['wall']:.1f}",
            f"{r['cpu']:.1f}",
            "/".join(f"{v:.1f}" for v in r.get("load") or []),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Cells: wall / CPU seconds (CPU = user + system of the process, all threads); "
        "load: 1- / 5-minute load average at the end of the round.",
        "",
    ]
    if len(arms) > 1:
        ref = df[df["arm"] == arms[0]].set_index("round")
        lines += [f"Ratios to `{arms[0]}` (wall; CPU in brackets):", ""]
        head = ["arm", "round", *used, "total"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for arm in arms[1:]:
            for _, r in df[df["arm"] == arm].iterrows():
                if r["round"] not in ref.index:
                    continue
                o = ref.loc[r["round"]]

                def ratio(a: float, b: float) -> str:
                    return f"{a / b:.2f}" if b > 0.05 else "–"

                cells = [str(arm), str(r["round"])]
                cells += [
                    f"{ratio(r[f'{s}_wall'], o[f'{s}_wall'])} ({ratio(r[f'{s}_cpu'], o[f'{s}_cpu'])})"
                    for s in used
                ]
                cells.append(f"{ratio(r['wall'], o['wall'])} ({ratio(r['cpu'], o['cpu'])})")
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pool", required=True, type=Path, help="--volumes of cryoal select")
    ap.add_argument("--truth", required=True, type=Path, help="id,label CSV of the whole pool")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--arm",
        action="append",
        help=f"NAME[@REV]=OPTIONS (default: 'today@{BASELINE}={BASELINE_OPTIONS}' and default=)",
    )
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="keep the rows of arms already in OUT/results.json with the same name, revision,\n"
        "options, pool, seed and rounds (add an arm to a finished run without rerunning it)",
    )
    ap.add_argument(
        "--cap",
        action="append",
        default=[],
        metavar="NAME=N",
        help="run only N rounds of arm NAME (e.g. a slow baseline on a large pool)",
    )
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    caps = {k: int(v) for k, _, v in (c.partition("=") for c in args.cap)}
    # children run in OUT (see _run): every path absolute
    args.pool, args.truth, args.out = (
        args.pool.resolve(),
        args.truth.resolve(),
        args.out.resolve(),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    truth_df = pd.read_csv(args.truth)
    truth = dict(zip(truth_df["id"].astype(str), truth_df["label"].astype(str), strict=True))
    args.n_pool = len(truth)
    arms = args.arm or [f"today@{BASELINE}={BASELINE_OPTIONS}", "default="]
    results = args.out / "results.json"
    done: list[dict[str, Any]] = []
    if args.reuse and results.is_file():
        done = json.loads(results.read_text())
    rows: list[dict[str, Any]] = []
    for spec in arms:
        head, _, options = spec.partition("=")
        name, _, rev = head.partition("@")
        kept = [
            r
            for r in done
            if r["arm"] == name
            and r["rev"] == (rev or "checkout")
            and r["options"] == options
            and r.get("pool") == str(args.pool)
            and r.get("seed") == args.seed
        ]
        n_rounds = min(args.rounds, caps.get(name, args.rounds))
        if len(kept) == n_rounds:
            print(f"{name}: {len(kept)} rounds reused from {results}", flush=True)
            rows += kept
            continue
        load = os.getloadavg()
        new = run_arm(name, rev or None, options, args, truth, n_rounds)
        for r in new:
            r.update(pool=str(args.pool), seed=args.seed, load_before=load)
        rows += new
        results.write_text(json.dumps(rows, indent=1) + "\n")
    results.write_text(json.dumps(rows, indent=1) + "\n")  # reused rows too
    text = report(rows, args)
    (args.out / "summary.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

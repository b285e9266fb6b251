"""Crash consistency at random times: SIGKILL real ``cryoal`` commands, resume, compare.

Each command runs in a subprocess (the installed console script) and is killed with
SIGKILL after a delay drawn from a seeded RNG uniformly over its measured uninterrupted
duration, several times in a row on the same state; after every kill the state on disk
must be consistent (``PRAGMA integrity_check``, labels all or nothing, no torn table),
and the run that finally completes must equal an uninterrupted run with the same seed.

A run that finishes before its delay ends its chain (it completed the work); the test
starts fresh states until every kill owed has been delivered, so the kill count does not
depend on how loaded the machine is. The default run kills each command once (4 kills).
The long run (``CRYOAL_CRASH_LONG=1``, 55 kills: select 20, label import 15, pretrain 10,
benchmark 10) is the soak test quoted in docs/reliability.md::

    CRYOAL_CRASH_LONG=1 CRYOAL_CRASH_LOG=crash.jsonl timeout 3600 \
        python -m pytest -q -p no:xdist tests/cli/test_crash.py

Set ``CRYOAL_CRASH_LOG=FILE`` to append one JSON line per test (kills, delays, timings).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import torch
from _crash import KillLog, count_rows, integrity_ok, kill_and_resume, temp_files, timed_run
from _simpool import FAST_ARGS, TINY_BENCHMARK, make_pool

from cryoal.active import Project
from cryoal.benchmark import report
from cryoal.io import read_table
from cryoal.pretrain import load_encoder

#: kills per command in the default run and in the long run (CRYOAL_CRASH_LONG=1)
DEFAULT_KILLS = {"select": 1, "label-import": 1, "pretrain": 1, "benchmark": 1}
LONG_KILLS = {"select": 20, "label-import": 15, "pretrain": 10, "benchmark": 10}
#: kills in a row on one state before a fresh copy (then the final run resumes the chain)
CHAIN = 3

N_IMPORT = 20_000
TINY_BENCH = {**TINY_BENCHMARK, "preset": "tiny-crash"}
BENCH_COLUMNS = [c for c in report.RESULT_COLUMNS if c != "wall_time"]


@dataclass
class Scenario:
    """One command under test: how to run it on a fresh state and what must hold."""

    name: str
    args: Callable[[Path], list[str]]  # arguments for a state folder
    fresh: Callable[[Path], None]  # lay out the initial state in a folder
    check: Callable[[Path], None]  # after each kill
    final: Callable[[Path, Path], None]  # after the resume: (state, reference state)
    reference: Path
    duration: float


# ----------------------------------------------------------------------------- select
def _select_scenario(base: Path) -> Scenario:
    vols = base / "vols"
    truth = make_pool(vols)
    labels = base / "labels.csv"
    truth.iloc[:9].to_csv(labels, index=False)

    def args(state: Path) -> list[str]:
        return [
            "select",
            "--volumes",
            str(vols),
            "--labels",
            str(labels),
            "--budget",
            "5",
            "--project",
            str(state / "proj"),
            *FAST_ARGS,
        ]

    def check(state: Path) -> None:
        db = state / "proj" / "project.sqlite"
        integrity_ok(db)
        assert count_rows(db, "labels") in (0, 9)  # the --labels import: all or nothing
        assert count_rows(db, "picks") in (0, 5)  # picks stored in one transaction
        csv = state / "proj" / "picks" / "round-001.csv"
        if csv.exists():  # never a torn picks file
            assert len(read_table(csv)) == 5

    def final(state: Path, ref: Path) -> None:
        pd.testing.assert_frame_equal(
            read_table(state / "proj" / "picks" / "round-001.csv"),
            read_table(ref / "proj" / "picks" / "round-001.csv"),
        )
        with Project(state / "proj", readonly=True) as p:
            assert p.label_map() == truth.iloc[:9].set_index("id")["label"].to_dict()
            assert [r.status for r in p.rounds()] == ["picked"]
        integrity_ok(state / "proj" / "project.sqlite")

    return _measured("select", base, args, lambda s: None, check, final)


# ----------------------------------------------------------------------------- label import
def _import_scenario(base: Path) -> Scenario:
    from cryoal.active.loop import register_pool
    from cryoal.io import VolumePool

    stack = base / "stack" / "many.mrcs"
    stack.parent.mkdir(parents=True)
    data = np.random.default_rng(0).standard_normal((N_IMPORT, 4, 4, 4)).astype(np.float32)
    with mrcfile.new(stack) as m:
        m.set_data(data)  # 4D: a volume stack (ispg 401)
        m.voxel_size = 10.0
    pool = VolumePool.from_path(stack)
    seed_proj = base / "seed" / "proj"
    with Project(seed_proj) as p:
        register_pool(p, pool)
    table = pd.DataFrame(
        {"id": pool.ids, "label": [("a", "b", "c")[i % 3] for i in range(N_IMPORT)]}
    )
    csv = base / "many.csv"
    table.to_csv(csv, index=False)
    want = dict(zip(table["id"], table["label"], strict=True))

    def fresh(state: Path) -> None:
        shutil.copytree(seed_proj, state / "proj")

    def args(state: Path) -> list[str]:
        return ["label", "import", str(csv), "--project", str(state / "proj")]

    def check(state: Path) -> None:
        db = state / "proj" / "project.sqlite"
        integrity_ok(db)
        assert count_rows(db, "labels") in (0, N_IMPORT)  # never half an import
        assert count_rows(db, "pool") == N_IMPORT

    def final(state: Path, ref: Path) -> None:
        with Project(state / "proj", readonly=True) as p:
            assert p.label_map() == want
            assert p.label_history() == []
        integrity_ok(state / "proj" / "project.sqlite")

    return _measured("label-import", base, args, fresh, check, final)


# ----------------------------------------------------------------------------- pretrain
def _pretrain_scenario(base: Path) -> Scenario:
    vols = base / "vols"
    make_pool(vols, n=24)

    def args(state: Path) -> list[str]:
        return [
            "pretrain",
            "--volumes",
            str(vols),
            "--model",
            "cb3d",
            "--epochs",
            "3",
            "--batch-size",
            "8",
            "--device",
            "cpu",
            "--no-progress",
            "--project",
            str(state / "proj"),
        ]

    def check(state: Path) -> None:
        enc = state / "proj" / "models" / "encoder.pt"
        if enc.exists():  # whole or absent: a half-written checkpoint never has the name
            load_encoder(enc)
        cfg = state / "proj" / "models" / "config.json"
        if cfg.exists():
            json.loads(cfg.read_text())

    def final(state: Path, ref: Path) -> None:
        got, _ = load_encoder(state / "proj" / "models" / "encoder.pt")
        want, _ = load_encoder(ref / "proj" / "models" / "encoder.pt")
        a, b = got.state_dict(), want.state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)  # same seed: the same encoder

    return _measured("pretrain", base, args, lambda s: None, check, final)


# ----------------------------------------------------------------------------- benchmark
def _benchmark_scenario(base: Path) -> Scenario:
    config = base / "tiny.json"
    config.write_text(json.dumps(TINY_BENCH))

    def args(state: Path) -> list[str]:
        return ["benchmark", "noise", "--config", str(config), "--out", str(state / "bench")]

    def check(state: Path) -> None:
        results = state / "bench" / "results.csv"
        if results.exists():  # whole blocks only: no torn row, no half block
            table = pd.read_csv(results)
            assert list(table.columns[: len(report.RESULT_COLUMNS)]) == list(report.RESULT_COLUMNS)
            assert not table[["snr", "strategy", "seed", "round", "n_labels"]].isna().any().any()
            sizes = table.groupby(["snr", "strategy", "seed"]).size()
            assert set(sizes) == {TINY_BENCH["rounds"] + 1}, sizes

    def final(state: Path, ref: Path) -> None:
        pd.testing.assert_frame_equal(
            pd.read_csv(state / "bench" / "results.csv")[BENCH_COLUMNS],
            pd.read_csv(ref / "bench" / "results.csv")[BENCH_COLUMNS],
        )

    return _measured("benchmark", base, args, lambda s: None, check, final)


def _measured(
    name: str,
    base: Path,
    args: Callable[[Path], list[str]],
    fresh: Callable[[Path], None],
    check: Callable[[Path], None],
    final: Callable[[Path, Path], None],
) -> Scenario:
    """Run the command once uninterrupted (the reference) and time it."""
    ref = base / "reference"
    ref.mkdir()
    fresh(ref)
    done, duration = timed_run(args(ref))
    assert done.returncode == 0, done.stderr[-3000:]
    return Scenario(name, args, fresh, check, final, ref, duration)


BUILDERS = {
    "select": _select_scenario,
    "label-import": _import_scenario,
    "pretrain": _pretrain_scenario,
    "benchmark": _benchmark_scenario,
}


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Scenario]:
    """Built lazily, once per module: the reference run of each command."""
    built: dict[str, Scenario] = {}

    class Lazy(dict):  # type: ignore[type-arg]
        def __missing__(self, key: str) -> Scenario:
            built[key] = BUILDERS[key](tmp_path_factory.mktemp(f"crash-{key}"))
            self[key] = built[key]
            return built[key]

    return Lazy()


def _run_kills(scenario: Scenario, kills: int, tmp_path: Path) -> tuple[KillLog, int]:
    """Deliver ``kills`` SIGKILLs in chains of at most :data:`CHAIN` on fresh states.

    Every chain ends with a run to completion, compared with the reference. Returns the
    log and the number of resumes verified (chains).
    """
    rng = random.Random(f"{scenario.name}-{kills}")
    log = KillLog()
    t0 = time.monotonic()
    trials = 0
    # a run may finish before its delay (then its chain stops early): bounded retries
    while log.killed < kills and trials < 3 * kills + 3:
        state = tmp_path / f"trial{trials}"
        state.mkdir()
        scenario.fresh(state)
        done = kill_and_resume(
            scenario.args(state),
            kills=min(CHAIN, kills - log.killed),
            duration=scenario.duration,
            rng=rng,
            check=lambda state=state: scenario.check(state),
            log=log,
        )
        trials += 1
        assert done.returncode == 0, done.stderr[-3000:]
        scenario.final(state, scenario.reference)
        # the resumed run cleaned up after the killed ones: no orphan temporary file
        assert temp_files(state) == [], temp_files(state)
        shutil.rmtree(state)
    if os.environ.get("CRYOAL_CRASH_LOG"):
        with open(os.environ["CRYOAL_CRASH_LOG"], "a", encoding="utf-8") as fh:
            record = {
                "command": scenario.name,
                "attempted": kills,
                "killed": log.killed,
                "finished_before_kill": log.finished_early,
                "checks": log.checks,
                "resumes_verified": trials,
                "integrity_checks_ok": log.checks,
                "uninterrupted_s": round(scenario.duration, 2),
                "delays_s": [round(d, 2) for d in log.delays],
                "wall_s": round(time.monotonic() - t0, 1),
            }
            fh.write(json.dumps(record) + "\n")
    return log, trials


@pytest.mark.parametrize("command", list(BUILDERS))
def test_random_kills_resume_to_the_uninterrupted_result(
    scenarios: dict[str, Scenario], command: str, tmp_path: Path
) -> None:
    kills = (LONG_KILLS if _long_run() else DEFAULT_KILLS)[command]
    log, resumes = _run_kills(scenarios[command], kills, tmp_path)
    assert log.killed == kills, log  # every kill owed was delivered
    assert log.checks == log.killed + log.finished_early
    assert resumes >= math.ceil(kills / CHAIN)


def _long_run() -> bool:
    """``CRYOAL_CRASH_LONG=1``: the soak test's kill counts instead of the default's."""
    return os.environ.get("CRYOAL_CRASH_LONG", "") not in ("", "0")

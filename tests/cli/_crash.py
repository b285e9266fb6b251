"""Random-time SIGKILL harness for the crash-consistency tests (not a test module).

:func:`kill_and_resume` runs a real ``cryoal`` command in a subprocess, sends it SIGKILL
after a delay drawn from a seeded RNG uniformly over ``(0, duration)`` (the measured
uninterrupted wall time), checks the on-disk state with a caller's function after every
kill, repeats, and finally lets the command run to completion. The tests then compare the
result with an uninterrupted run.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: a temporary file of cryoal._atomic (``.NAME.pPID.XXXXXXXX.tmp...``) or an older one
TEMP_GLOB = "**/.*.tmp*"


def cryoal_argv() -> list[str]:
    """The installed ``cryoal`` console script beside this Python, else ``python -m cryoal.cli``."""
    beside = Path(sys.executable).with_name("cryoal")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "cryoal.cli"]


def cryoal_env() -> dict[str, str]:
    """The test environment for a subprocess: one torch thread, no kill hook."""
    env = {k: v for k, v in os.environ.items() if k != "CRYOAL_TEST_KILL_AT"}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    return env


def run_cryoal(args: Sequence[str], *, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run ``cryoal ARGS`` to completion (the uninterrupted or the resuming run)."""
    return subprocess.run(
        [*cryoal_argv(), *args],
        capture_output=True,
        text=True,
        env=cryoal_env(),
        timeout=timeout,
        check=False,
    )


def timed_run(args: Sequence[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    """:func:`run_cryoal` and its wall time in seconds."""
    t0 = time.monotonic()
    done = run_cryoal(args)
    return done, time.monotonic() - t0


@dataclass
class KillLog:
    """What :func:`kill_and_resume` did: delays tried, kills delivered, runs that finished."""

    delays: list[float] = field(default_factory=list)
    killed: int = 0
    finished_early: int = 0
    checks: int = 0


def kill_and_resume(
    args: Sequence[str],
    *,
    kills: int,
    duration: float,
    rng: random.Random,
    check: Callable[[], None],
    log: KillLog | None = None,
) -> subprocess.CompletedProcess[str]:
    """SIGKILL ``cryoal ARGS`` up to ``kills`` times at random delays, then run it to the end.

    The kills land in a row on the same state (each run resumes what the previous one
    left). A run that finishes before its delay has completed the work, so the chain
    stops there: later kills would only hit a run with nothing left to do. The caller
    counts :attr:`KillLog.killed` and starts a fresh state for the kills still owed.

    Parameters
    ----------
    args
        The command's arguments (after ``cryoal``).
    kills
        Most kills to deliver on this state.
    duration
        Uninterrupted wall time (s); delays are uniform on ``(0.02, 0.85) * duration``.
    rng
        Seeded RNG of the delays.
    check
        Called after every run that was killed or finished: asserts the state on disk is
        consistent.
    log
        Filled with the delays, kills delivered and runs that ended before their kill.

    Returns
    -------
    subprocess.CompletedProcess
        The final, uninterrupted run.
    """
    log = log if log is not None else KillLog()
    for _ in range(kills):
        delay = rng.uniform(0.02 * duration, 0.85 * duration)
        log.delays.append(delay)
        proc = subprocess.Popen(
            [*cryoal_argv(), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=cryoal_env(),
        )
        try:
            # stderr drained while waiting: a chatty run never blocks on a full pipe
            _, raw = proc.communicate(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.kill()  # SIGKILL
            _, raw = proc.communicate()
        err = (raw or b"").decode(errors="replace")
        check()
        log.checks += 1
        if proc.returncode == -signal.SIGKILL:
            log.killed += 1
            continue
        # it finished before its delay: a complete run must have succeeded
        assert proc.returncode == 0, err[-3000:]
        log.finished_early += 1
        break
    return run_cryoal(args)


def integrity_ok(db: Path) -> None:
    """``PRAGMA integrity_check`` of a project database is ``ok`` (a missing one is fine)."""
    if not db.exists():
        return
    conn = sqlite3.connect(db, timeout=60)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
        fk = conn.execute("PRAGMA foreign_key_check").fetchall()
    finally:
        conn.close()
    assert rows == [("ok",)], rows
    assert fk == [], fk


def count_rows(db: Path, table: str) -> int:
    """Rows of ``table`` in a project database (0 when it or the table does not exist yet)."""
    if not db.exists():
        return 0
    conn = sqlite3.connect(db, timeout=60)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError as exc:  # schema not created yet
        assert "no such table" in str(exc)
        return 0
    finally:
        conn.close()


_TEMP = re.compile(r"^\..+\.tmp")


def temp_files(folder: Path) -> list[Path]:
    """Hidden temporary files of atomic writes under ``folder``."""
    return [p for p in folder.glob(TEMP_GLOB) if _TEMP.match(p.name)]

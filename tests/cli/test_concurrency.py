"""Two writers on one project: serialised by the project lock, told who holds it, never corrupt.

Real ``cryoal`` processes: a long ``select`` holds the lock while a second ``select`` or a
``label import`` asks for it; two imports queue behind each other; a holder killed by
SIGKILL leaves a lock that the next command takes at once.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from _crash import count_rows, cryoal_argv, cryoal_env, integrity_ok, run_cryoal
from _simpool import FAST_ARGS, make_pool

from cryoal.active import Project

#: the line a refused writer prints (the holder's pid, command and start time)
LOCKED = re.compile(
    r"^Error: project (?P<proj>\S+) is locked by pid (?P<pid>\d+) \((?P<cmd>[^,]+), since "
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\); waited (?P<waited>[\d.]+) s\. Wait for it to "
    r"finish, or stop it and re-run \(the project resumes where it stopped\)$"
)


@pytest.fixture(scope="module")
def pool_master(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("lockpool") / "vols"
    return root, make_pool(root, n=18)


def _select_args(vols: Path, proj: Path, *extra: str) -> list[str]:
    args = ["select", "--volumes", str(vols), "--budget", "4", "--project", str(proj)]
    return [*args, *FAST_ARGS, *extra]


def _start_holding(args: list[str], proj: Path) -> subprocess.Popen[bytes]:
    """Start ``cryoal ARGS`` and return once it holds the project lock."""
    proc = subprocess.Popen(
        [*cryoal_argv(), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=cryoal_env(),
    )
    lock = proj / "project.lock"
    deadline = time.monotonic() + 600  # generous: a loaded machine imports torch slowly
    while not (lock.exists() and f"pid {proc.pid} " in lock.read_text()):
        assert proc.poll() is None, "the lock holder exited early"
        assert time.monotonic() < deadline, "the lock holder never took the lock"
        time.sleep(0.05)
    return proc


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _opened(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open (``/proc/PID/fd``): it asks for the lock."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.path.realpath(fd) == str(path.resolve()) for fd in fds.iterdir())
    except OSError:  # it exited, or an fd closed while we looked
        return False


def _labels(truth: pd.DataFrame, rows: slice, path: Path) -> Path:
    truth.iloc[rows].to_csv(path, index=False)
    return path


def test_second_select_and_an_import_are_refused_while_select_runs_then_resume(
    pool_master: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    vols, truth = pool_master
    proj = tmp_path / "proj"
    labels = _labels(truth, slice(0, 6), tmp_path / "labels.csv")
    # a long round (many epochs) so that it still holds the lock when the others ask
    long_round = _select_args(vols, proj, "--labels", str(labels), "--epochs", "400")
    holder = _start_holding(long_round, proj)
    deadline = time.monotonic() + 600  # its --labels import comes first, then training
    while count_rows(proj / "project.sqlite", "labels") < 6:
        assert holder.poll() is None, "the lock holder exited early"
        assert time.monotonic() < deadline, "the lock holder never imported its labels"
        time.sleep(0.05)
    # frozen while it holds the lock: however fast the machine, it cannot finish first
    os.kill(holder.pid, signal.SIGSTOP)
    try:
        second = run_cryoal(_select_args(vols, proj, "--lock-timeout", "1"))
        assert second.returncode == 2, second.stderr[-3000:]
        m = LOCKED.match(second.stderr.strip())
        assert m is not None, second.stderr
        assert (m["proj"], int(m["pid"]), m["cmd"], m["waited"]) == (
            str(proj),
            holder.pid,
            "cryoal select",
            "1",
        )
        more = _labels(truth, slice(6, 12), tmp_path / "more.csv")
        imp = run_cryoal(
            ["label", "import", str(more), "--project", str(proj), "--lock-timeout", "1"]
        )
        assert imp.returncode == 2, imp.stderr[-3000:]
        m = LOCKED.match(imp.stderr.strip())
        assert m is not None and int(m["pid"]) == holder.pid, imp.stderr
        assert holder.poll() is None  # the holder was not disturbed
    finally:
        _kill(holder)  # SIGKILL: the kernel drops its flock; the file still names it
    assert f"pid {holder.pid} (cryoal select, since" in (proj / "project.lock").read_text()
    # the stale lock is no obstacle: the import runs at once ...
    t0 = time.monotonic()
    imp = run_cryoal(["label", "import", str(more), "--project", str(proj), "--lock-timeout", "0"])
    assert imp.returncode == 0, imp.stderr[-3000:]
    assert time.monotonic() - t0 < 300
    integrity_ok(proj / "project.sqlite")
    with Project(proj, readonly=True) as p:
        assert len(p.label_map()) == 12  # the killed round's 6 labels and the 6 imported
        rounds = p.rounds()
        assert len(rounds) <= 1 and all(r.status != "picked" for r in rounds)
    # ... and the killed round is discarded on request (its options are not repeated)
    done = run_cryoal(_select_args(vols, proj, "--restart", "--lock-timeout", "0"))
    assert done.returncode == 0, done.stderr[-3000:]
    integrity_ok(proj / "project.sqlite")
    with Project(proj, readonly=True) as p:
        assert [r.status for r in p.rounds()] == ["picked"]
        assert p.rounds()[0].n_labels == 12


def test_two_imports_queue_and_both_land(
    pool_master: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    vols, truth = pool_master
    proj = tmp_path / "proj"
    assert run_cryoal(_select_args(vols, proj)).returncode == 0
    first = _labels(truth, slice(0, 9), tmp_path / "a.csv")
    second = _labels(truth, slice(5, 18), tmp_path / "b.csv")  # overlaps: same labels
    with Project(proj) as holder, holder.lock():  # both imports start while it is locked
        procs = [
            subprocess.Popen(
                [
                    *cryoal_argv(),
                    "label",
                    "import",
                    str(f),
                    "--project",
                    str(proj),
                    "--lock-timeout",
                    "600",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=cryoal_env(),
            )
            for f in (first, second)
        ]
        deadline = time.monotonic() + 600  # generous: a loaded machine imports torch slowly
        while not all(_opened(p.pid, proj / "project.lock") for p in procs):
            assert all(p.poll() is None for p in procs), "an import ended before the lock"
            assert time.monotonic() < deadline, "the imports never asked for the lock"
            time.sleep(0.05)
        time.sleep(0.5)  # both inside their wait loop
        assert all(p.poll() is None for p in procs)  # waiting, not failing
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    added = sorted(int(re.search(r": (\d+) added", o[0])[1]) for o in outs)  # type: ignore[index]
    assert sum(added) == 18  # every id landed once, whichever import ran first
    integrity_ok(proj / "project.sqlite")
    with Project(proj, readonly=True) as p:
        assert p.label_map() == truth.set_index("id")["label"].to_dict()
        assert p.label_history() == []
    shutil.rmtree(proj)

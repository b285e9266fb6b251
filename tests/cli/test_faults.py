"""Environment faults: disk full, read-only project, volumes changed or broken between rounds.

Each fault must give one clear line on stderr and exit code 2, never a traceback, and
lose nothing: the project database passes ``PRAGMA integrity_check`` and what earlier
rounds wrote is still there.

Disk full uses a real tmpfs (``mount -t tmpfs -o size=4m``) where this process may mount
(root on the CI machine); elsewhere the command runs under ``RLIMIT_FSIZE`` (writes past
the limit fail with EFBIG) instead; ``CRYOAL_TEST_NO_MOUNT=1`` forces that fallback.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shlex
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
from _crash import cryoal_argv, cryoal_env, integrity_ok, run_cryoal
from _simpool import FAST_ARGS, make_pool

from cryoal.active import Project
from cryoal.io import read_table, read_volume, write_table, write_volume


@pytest.fixture(scope="module")
def pool_master(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("faultpool") / "vols"
    return root, make_pool(root, n=18)


@pytest.fixture
def pool(pool_master: tuple[Path, pd.DataFrame], tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    src, truth = pool_master
    shutil.copytree(src, tmp_path / "vols")
    return tmp_path / "vols", truth.copy()


def _select(vols: Path, proj: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cryoal(
        ["select", "--volumes", str(vols), "--budget", "4", "--project", str(proj), *FAST_ARGS]
        + list(extra)
    )


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single error line of a failed command (exit 2, no traceback)."""
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error: ")]
    assert len(errors) == 1, lines
    return errors[0]


def _label_picks(proj: Path, n: int, truth: pd.DataFrame, out: Path) -> Path:
    table = read_table(proj / "picks" / f"round-{n:03d}.csv")
    table["label"] = table["id"].map(truth.set_index("id")["label"])
    write_table(out, table)
    return out


# ----------------------------------------------------------------------------- disk full
@contextlib.contextmanager
def _small_disk(folder: Path, size: str = "4m") -> Iterator[bool]:
    """Mount a tmpfs of ``size`` on ``folder``; yields False when mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    mount = None if os.environ.get("CRYOAL_TEST_NO_MOUNT") else shutil.which("mount")
    ok = (
        mount is not None
        and subprocess.run(
            [mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def _fill(folder: Path, leave_kib: int) -> Path:
    """Fill the file system of ``folder`` up to ``leave_kib`` KiB of free space."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    filler = folder / "filler.bin"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, free - leave_kib * 1024))
    return filler


def _limited(args: list[str], limit: int) -> subprocess.CompletedProcess[str]:
    """Run ``cryoal ARGS`` with RLIMIT_FSIZE ``limit`` bytes (EFBIG past it, no SIGXFSZ)."""

    def setup() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [*cryoal_argv(), *args],
        capture_output=True,
        text=True,
        env=cryoal_env(),
        preexec_fn=setup,
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize("leave_kib", [40, 250])
def test_disk_full_during_a_round_loses_nothing(
    pool: tuple[Path, pd.DataFrame], tmp_path: Path, leave_kib: int
) -> None:
    """40 KiB left: the label import's transaction fails; 250 KiB: the model checkpoint."""
    vols, truth = pool
    disk = tmp_path / "disk"
    with _small_disk(disk) as mounted:
        proj = disk / "proj"
        assert _select(vols, proj).returncode == 0
        labels = _label_picks(proj, 1, truth, tmp_path / "labels.csv")
        reference = tmp_path / "reference"
        shutil.copytree(proj, reference)
        before = (proj / "picks" / "round-001.csv").read_bytes()
        args = ["--labels", str(labels)]
        if mounted:
            filler = _fill(disk, leave_kib)
            failed = _select(vols, proj, *args)
        else:  # no tmpfs here: a file-size limit under the model checkpoint's size
            failed = _limited(
                [
                    "select",
                    "--volumes",
                    str(vols),
                    "--budget",
                    "4",
                    "--project",
                    str(proj),
                    *FAST_ARGS,
                    *args,
                ],
                limit=200_000,
            )
        line = _one_line(failed)
        assert line.startswith("Error: cannot write "), line
        assert (
            "no space left on device" in line
            or "database or disk is full" in line
            or "file too large" in line
        ), line
        # nothing lost: round 1 intact, the database consistent, no temporary file left
        assert (proj / "picks" / "round-001.csv").read_bytes() == before
        integrity_ok(proj / "project.sqlite")
        with Project(proj, readonly=True) as p:
            assert p.rounds()[0].status == "picked"
            assert len(p.label_map()) in (0, 4)  # the import landed whole or not at all
        assert not list(proj.glob("**/.*.tmp*"))
        # space again: the same command resumes and gives the uninterrupted round 2
        if mounted:
            filler.unlink()
        resumed = _select(vols, proj, *args)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        ref = _select(vols, reference, *args)
        assert ref.returncode == 0, ref.stderr[-3000:]
        pd.testing.assert_frame_equal(
            read_table(proj / "picks" / "round-002.csv"),
            read_table(reference / "picks" / "round-002.csv"),
        )


# ----------------------------------------------------------------------------- read-only
def test_label_import_into_read_only_project(
    pool: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    vols, truth = pool
    proj = tmp_path / "proj"
    assert _select(vols, proj).returncode == 0
    labels = _label_picks(proj, 1, truth, tmp_path / "labels.csv")
    argv = [*cryoal_argv(), "label", "import", str(labels), "--project", str(proj)]
    if os.geteuid() == 0:  # root ignores permissions unless it drops the capability
        if shutil.which("capsh") is None:
            pytest.skip("running as root without capsh")
        argv = ["capsh", "--drop=cap_dac_override,cap_fowner", "--", "-c", shlex.join(argv)]
    os.chmod(proj, 0o555)
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, env=cryoal_env(), timeout=300, check=False
        )
    finally:
        os.chmod(proj, 0o755)
    assert _one_line(done) == (
        f"Error: project directory {proj} is not writable (Permission denied); choose another "
        "--project or fix the permissions (chmod u+w)"
    )
    with Project(proj, readonly=True) as p:
        assert p.label_map() == {}


# ----------------------------------------------------------------------------- changed volumes
def test_volume_modified_between_rounds_is_named(
    pool: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    vols, _ = pool
    proj = tmp_path / "proj"
    assert _select(vols, proj).returncode == 0
    victim = vols / "tomo1" / "p005.mrc"
    vol = read_volume(victim)
    write_volume(victim, np.asarray(vol.data)[:, :, ::-1] * 2.0, voxel_size=10.0)
    line = _one_line(_select(vols, proj, "--new-round"))
    assert line == (
        "Error: 1 volume(s) changed on disk since they were registered (first: "
        "tomo1/p005.mrc); restore them, or start a new --project"
    )
    integrity_ok(proj / "project.sqlite")


def test_symlink_loop_in_volumes_folder(pool: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    vols, _ = pool
    (vols / "tomo0" / "a.mrc").symlink_to("b.mrc")
    (vols / "tomo0" / "b.mrc").symlink_to("a.mrc")
    line = _one_line(_select(vols, tmp_path / "proj"))
    assert line.startswith(f"Error: {vols / 'tomo0'}/"), line
    assert line.endswith(
        ".mrc: symbolic link loop (the link points back to itself through other links); "
        "remove or fix the link, or point --volumes at another folder"
    ), line


def _write_raw(path: Path, data: np.ndarray) -> None:
    """An MRC file as another program might write it (no NaN check)."""
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(data.astype(np.float32))
        m.voxel_size = 10.0


@pytest.mark.filterwarnings("ignore:Data array contains NaN values:RuntimeWarning")
@pytest.mark.parametrize("kind", ["nan", "constant"])
def test_nan_or_constant_volume_is_named(
    pool: tuple[Path, pd.DataFrame], tmp_path: Path, kind: str
) -> None:
    vols, _ = pool
    data = np.random.default_rng(0).standard_normal((16, 16, 16))
    if kind == "nan":
        data[2, 3, 4] = np.nan
    else:
        data[:] = 3.0
    _write_raw(vols / "tomo0" / "bad.mrc", data)
    proj = tmp_path / "proj"
    line = _one_line(_select(vols, proj))
    if kind == "nan":
        assert line.startswith(
            f"Error: volume tomo0/bad.mrc, read during round 1: {vols / 'tomo0' / 'bad.mrc'}: "
            "1 NaN/Inf values (first at voxel (2, 3, 4), z-y-x order)"
        ), line
    else:
        assert line.startswith(
            f"Error: volume tomo0/bad.mrc ({vols / 'tomo0' / 'bad.mrc'}) is constant (every "
            "voxel 3): it holds no signal"
        ), line
    assert line.endswith(
        "Nothing was lost; remove it from the folder and start a new --project (the volumes "
        "registered in a project cannot change)"
    ), line
    integrity_ok(proj / "project.sqlite")
    with Project(proj, readonly=True) as p:  # the round stopped before its picks
        assert p.pool_size() == 19
        assert [r.status for r in p.rounds()] in ([], ["started"], ["trained"])
    assert not list(proj.glob("**/.*.tmp*"))

"""Project: schema, pool registration, labels with history, rounds, lock."""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from cryoal.active.project import SCHEMA_VERSION, PoolEntry, Project, ProjectLayout
from cryoal.errors import (
    EmptyPoolError,
    InvalidLabelsError,
    ProjectError,
    ProjectLockedError,
    StorageError,
)

BOX = (16, 16, 16)


def _entries(n: int = 6) -> list[PoolEntry]:
    return [PoolEntry(f"t/p{i:02d}.mrc", f"t/p{i:02d}.mrc", BOX, f"c{i}") for i in range(n)]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    proj = Project(tmp_path / "proj")
    proj.register_pool(_entries(), root=tmp_path / "vols", voxel_size=10.0)
    return proj


def test_new_project_layout_schema_and_wal(tmp_path: Path) -> None:
    proj = Project(tmp_path / "p")
    assert proj.schema_version == SCHEMA_VERSION
    for sub in ("models", "picks", "gallery", "config"):
        assert (tmp_path / "p" / sub).is_dir()
    mode = proj._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    proj.close()
    # reopening is idempotent
    again = Project(tmp_path / "p", create=False)
    assert again.schema_version == SCHEMA_VERSION
    assert again.get_meta("created") is not None


def test_the_layout_names_the_files_a_project_has(tmp_path: Path) -> None:
    """One place names every file; these are the names projects on disk already use."""
    root = tmp_path / "p"
    proj = Project(root)
    lay = proj.layout
    assert lay == ProjectLayout(root)
    assert lay.database == proj.db_path == root / "project.sqlite" and lay.database.is_file()
    with proj.lock():
        assert lay.lock == root / "project.lock" and lay.lock.is_file()
    assert lay.pool_index == root / "pool-index.npz"
    assert lay.pool_particles == root / "pool-particles.csv"
    assert lay.encoder == root / "models" / "encoder.pt" == root / ProjectLayout.ENCODER
    assert lay.encoder_embedding == root / "models" / "encoder-embedding.pt"
    assert proj.model_path(3) == lay.model(3) == root / "models" / "round-003.pt"
    assert (
        proj.picks_path(12, ".star") == lay.picks(12, ".star") == root / "picks" / "round-012.star"
    )
    assert proj.gallery_path(1) == lay.gallery(1) == root / "gallery" / "round-001.png"
    assert proj.config_path(1) == lay.config(1) == root / "config" / "round-001.json"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(ProjectLayout.FOLDERS)
    proj.close()


def test_missing_project_without_create(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match=r"no cryoal project at .*missing project.sqlite"):
        Project(tmp_path / "nothing", create=False)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Project(tmp_path / "p").close()
    conn = sqlite3.connect(tmp_path / "p" / "project.sqlite")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(ProjectError, match="newer than this cryoal"):
        Project(tmp_path / "p")


def test_unversioned_database_is_migrated(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    sqlite3.connect(tmp_path / "p" / "project.sqlite").close()  # empty, user_version 0
    proj = Project(tmp_path / "p")
    assert proj.schema_version == SCHEMA_VERSION
    assert proj.rounds() == []


def test_garbage_database(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "project.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(ProjectError, match="is not a readable cryoal project database"):
        Project(tmp_path / "p")


def _unprivileged(code: str) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` without the capabilities that let root ignore permissions."""
    argv = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        if shutil.which("capsh") is None:
            pytest.skip("running as root without capsh: cannot drop CAP_DAC_OVERRIDE")
        argv = ["capsh", "--drop=cap_dac_override,cap_fowner", "--", "-c", shlex.join(argv)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


def test_read_only_directory(tmp_path: Path) -> None:
    Project(tmp_path / "p").close()
    os.chmod(tmp_path / "p", 0o555)
    try:
        code = textwrap.dedent(
            f"""
            from cryoal.active.project import Project
            from cryoal.errors import ProjectError
            try:
                Project({str(tmp_path / "p")!r})
            except ProjectError as exc:
                print("ERR", exc)
            print("ROUNDS", Project({str(tmp_path / "p")!r}, readonly=True).rounds())
            """
        )
        out = _unprivileged(code)
        assert out.returncode == 0, out.stderr
        assert (
            f"ERR project directory {tmp_path / 'p'} is not writable (Permission denied)"
            in out.stdout
        )
        assert "ROUNDS []" in out.stdout
    finally:
        os.chmod(tmp_path / "p", 0o755)


def test_register_pool_idempotent_and_checks(project: Project, tmp_path: Path) -> None:
    assert project.register_pool(_entries(), root=tmp_path / "vols", voxel_size=10.0) == 0
    assert project.register_pool(_entries(8), root=tmp_path / "vols", voxel_size=10.0) == 2
    assert project.pool_ids()[-1] == "t/p07.mrc"
    with pytest.raises(
        ProjectError, match=r"2 volume\(s\) registered .* missing .*first: t/p06.mrc"
    ):
        project.register_pool(_entries(6), root=tmp_path / "vols", voxel_size=10.0)
    changed = _entries(8)
    changed[3] = PoolEntry("t/p03.mrc", "t/p03.mrc", BOX, "other")
    with pytest.raises(ProjectError, match=r"changed on disk .*first: t/p03.mrc"):
        project.register_pool(changed, root=tmp_path / "vols", voxel_size=10.0)
    with pytest.raises(ProjectError, match="was created for the volumes in"):
        project.register_pool(_entries(8), root=tmp_path / "other", voxel_size=10.0)
    with pytest.raises(EmptyPoolError, match="holds no volumes"):
        project.register_pool([], root=tmp_path / "vols", voxel_size=10.0)


def test_labels_added_unchanged_and_conflicts(project: Project) -> None:
    rep = project.add_labels({"t/p00.mrc": "ribosome", "t/p01.mrc": "proteasome"})
    assert rep.added == ["t/p00.mrc", "t/p01.mrc"]
    assert rep.new_classes == ["proteasome", "ribosome"]
    assert project.class_names == ["proteasome", "ribosome"]
    rep = project.add_labels({"t/p00.mrc": "ribosome"})
    assert rep.unchanged == ["t/p00.mrc"] and rep.added == []
    with pytest.raises(InvalidLabelsError) as err:
        project.add_labels({"t/p00.mrc": "proteasome", "t/p02.mrc": "ribosome"}, where="b.csv")
    assert str(err.value) == (
        "b.csv: 1 label(s) conflict with labels already in the project, e.g. id t/p00.mrc: "
        "stored 'ribosome', new 'proteasome'; nothing was imported. Pass --overwrite to "
        "replace them (the old labels are kept in history)"
    )
    assert "t/p02.mrc" not in project.label_map()  # all or nothing
    rep = project.add_labels({"t/p00.mrc": "proteasome"}, overwrite=True, source="expert")
    assert rep.overwritten == ["t/p00.mrc"]
    assert project.label_map()["t/p00.mrc"] == "proteasome"
    hist = project.label_history("t/p00.mrc")
    assert [(h["label"], h["source"]) for h in hist] == [("ribosome", "import")]


def test_label_map_as_of_sequence(project: Project) -> None:
    project.add_labels({"t/p00.mrc": "a", "t/p01.mrc": "b"})
    rnd = project.start_round(strategy="random", budget=1, seed=0, mode="train", config={})
    project.add_labels({"t/p00.mrc": "b"}, overwrite=True)
    project.add_labels({"t/p02.mrc": "a"})
    assert project.label_map(as_of_seq=rnd.label_seq) == {"t/p00.mrc": "a", "t/p01.mrc": "b"}
    assert project.label_map() == {"t/p00.mrc": "b", "t/p01.mrc": "b", "t/p02.mrc": "a"}


def test_unknown_ids_and_empty_labels(project: Project) -> None:
    with pytest.raises(InvalidLabelsError) as err:
        project.add_labels({"x.mrc": "a", "t/p00.mrc": "a"}, where="l.csv")
    assert str(err.value) == (
        "l.csv: 1 id(s) are not in the project's pool, e.g. 'x.mrc' (pool ids look like "
        "'t/p00.mrc'); ids are paths relative to the volumes folder"
    ) or "1 id(s) are not in the project's pool, e.g. 'x.mrc'" in str(err.value)
    with pytest.raises(InvalidLabelsError, match=r"row 1 \(id t/p00.mrc\) has an empty label"):
        project.add_labels([("t/p00.mrc", " ")])
    with pytest.raises(InvalidLabelsError, match="appears twice with different labels"):
        project.add_labels([("t/p00.mrc", "a"), ("t/p00.mrc", "b")])


def test_class_typo_suggests_nearest(project: Project) -> None:
    project.add_labels({"t/p00.mrc": "ribosome", "t/p01.mrc": "proteasome"})
    with pytest.raises(InvalidLabelsError) as err:
        project.add_labels({"t/p02.mrc": "ribosom"}, where="new.csv")
    assert str(err.value) == (
        "new.csv: label 'ribosom' (id t/p02.mrc) is not a known class; did you mean "
        "'ribosome'? Known classes: proteasome, ribosome. Fix the file, or pass "
        "--allow-new-classes if it really is a new class"
    )
    with pytest.raises(InvalidLabelsError, match="did you mean 'proteasome'"):
        project.add_labels({"t/p02.mrc": "Proteasome"})
    # a clearly different name is a new class; a typo is accepted when forced
    assert project.add_labels({"t/p02.mrc": "tric"}).new_classes == ["tric"]
    project.add_labels({"t/p03.mrc": "ribosom"}, allow_new_classes=True)
    assert project.class_names == ["proteasome", "ribosom", "ribosome", "tric"]


def test_round_steps_scores_picks_and_accuracy(project: Project) -> None:
    project.add_labels({"t/p00.mrc": "a", "t/p01.mrc": "b"})
    rnd = project.start_round(strategy="entropy", budget=2, seed=3, mode="train", config={"x": 1})
    assert (rnd.n, rnd.status, rnd.n_labels) == (1, "started", 2)
    with pytest.raises(ProjectError, match=r"round 1 of .* is unfinished \(started\)"):
        project.start_round(strategy="entropy", budget=2, seed=3, mode="train", config={})
    with pytest.raises(ProjectError, match="cannot become 'scored'"):
        project.record_scores(1, [], [])
    project.mark_trained(1, "models/round-001.pt", {"train_accuracy": 1.0})
    scores = [
        ("t/p02.mrc", 0.9, "a", {"a": 0.6, "b": 0.4}),
        ("t/p03.mrc", 0.5, "b", {"a": 0.3, "b": 0.7}),
        ("t/p04.mrc", 0.1, "a", {"a": 0.9, "b": 0.1}),
    ]
    project.record_scores(1, scores, [("t/p02.mrc", 0.9), ("t/p03.mrc", 0.5)])
    picks = project.picks(1)
    assert [(p.rank, p.id, p.predicted) for p in picks] == [
        (1, "t/p02.mrc", "a"),
        (2, "t/p03.mrc", "b"),
    ]
    assert picks[1].probabilities == {"a": 0.3, "b": 0.7}
    project.mark_picked(1)
    assert project.get_round(1).reached("scored")
    project.add_labels({"t/p02.mrc": "a", "t/p03.mrc": "a"}, source="expert")
    assert project.pick_accuracy(1) == (1, 2)
    # as of the round's start its picks had no labels; a withdrawal counts from its seq on
    assert project.pick_accuracy(1, as_of_seq=rnd.label_seq) == (0, 0)
    seq_now = rnd.label_seq + 2
    project.retract_labels(["t/p02.mrc"])
    assert project.pick_accuracy(1) == (0, 1)
    assert project.pick_accuracy(1, as_of_seq=seq_now) == (1, 2)
    project.add_labels({"t/p02.mrc": "a"}, source="expert")
    assert project.label_counts() == {"a": 3, "b": 1}
    assert project.start_round(strategy="entropy", budget=2, seed=3, mode="train", config={}).n == 2
    project.discard_round(2)
    assert project.latest_round().n == 1  # type: ignore[union-attr]
    with pytest.raises(ProjectError, match="only an unfinished round can be discarded"):
        project.discard_round(1)


def test_second_writer_waits_then_fails(project: Project, tmp_path: Path) -> None:
    flag = tmp_path / "locked"
    holder = textwrap.dedent(
        f"""
        import sys, pathlib
        from cryoal.active.project import Project
        p = Project({str(project.path)!r})
        with p.lock():
            pathlib.Path({str(flag)!r}).write_text("x")
            sys.stdin.read()  # hold the lock until the test closes our stdin (or kills us)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300  # generous: a loaded machine imports torch slowly
        while not flag.exists():
            assert proc.poll() is None, "lock holder died"
            assert time.monotonic() < deadline, "lock holder did not start"
            time.sleep(0.05)
        t0 = time.monotonic()
        with pytest.raises(ProjectLockedError) as err, project.lock(timeout=0.5):
            pass
        assert time.monotonic() - t0 >= 0.5
        assert str(err.value).startswith(f"project {project.path} is locked by pid {proc.pid} (")
        assert "; waited 0.5 s. Wait for it to finish" in str(err.value)
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdin is not None
        proc.stdin.close()
    # the kernel released the killed holder's lock
    with project.lock(timeout=5):
        project.add_labels({"t/p00.mrc": "a"})
    assert project.label_map() == {"t/p00.mrc": "a"}


def test_lock_is_reentrant(project: Project) -> None:
    with project.lock(timeout=1), project.lock(timeout=1):
        pass
    with project.lock(timeout=1):
        pass


def test_add_labels_checks_and_writes_in_one_transaction(project: Project) -> None:
    """A writer that slips in between another's conflict check and its write is seen.

    Regression: ``add_labels`` read the current labels before ``BEGIN IMMEDIATE``; a
    label committed meanwhile by another connection made its INSERT fail with a raw
    ``sqlite3.IntegrityError``. Now the check runs inside the write transaction.
    """
    other = sqlite3.connect(project.db_path, timeout=30, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the other writer holds the database's write lock
    outcome: dict[str, BaseException | None] = {}

    began = threading.Event()

    def import_a() -> None:
        with Project(project.path) as p:
            # the statement trace fires as BEGIN IMMEDIATE starts (then it waits for `other`)
            p._conn.set_trace_callback(lambda sql: sql.startswith("BEGIN") and began.set())
            try:
                p.add_labels({"t/p00.mrc": "a"})
                outcome["err"] = None
            except BaseException as exc:
                outcome["err"] = exc

    worker = threading.Thread(target=import_a)
    worker.start()
    assert began.wait(300), "the worker never began its write transaction"
    # the worker now waits for the write lock (a loaded machine cannot reorder this)
    other.execute(
        "INSERT INTO labels(id, label, source, time, seq) VALUES ('t/p00.mrc', 'b', 'import', "
        "'2026-01-01T00:00:00', 1)"
    )
    other.execute("COMMIT")
    other.close()
    worker.join(120)
    err = outcome["err"]
    assert isinstance(err, InvalidLabelsError), repr(err)
    assert "1 label(s) conflict with labels already in the project, e.g. id t/p00.mrc: " in str(err)
    assert project.label_map() == {"t/p00.mrc": "b"}


def test_database_full_rolls_back_with_one_typed_error(project: Project, tmp_path: Path) -> None:
    """SQLite's "database or disk is full" becomes a StorageError naming the database."""
    project.add_labels({"t/p00.mrc": "a"})
    pages = int(project._conn.execute("PRAGMA page_count").fetchone()[0])
    project._conn.execute(f"PRAGMA max_page_count = {pages}")  # a real SQLITE_FULL, no disk needed
    big = {f"t/p0{i}.mrc": "x" * 5000 for i in range(1, 6)}
    with pytest.raises(StorageError) as err:
        project.add_labels(big, allow_new_classes=True)
    assert str(err.value).startswith(
        f"cannot write {project.db_path}: database or disk is full; free space on that disk"
    )
    assert project.label_map() == {"t/p00.mrc": "a"}  # rolled back whole
    assert not project._conn.in_transaction
    assert project._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

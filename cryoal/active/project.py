"""An active-learning project: a directory holding the state of every round.

Layout of a project directory (:class:`ProjectLayout` names every file; other modules
ask it, ``Project.layout``, instead of spelling paths)::

    project.sqlite        pool entries, labels (+ history), rounds, scores, picks
    project.lock          advisory writer lock (one writer at a time)
    pool-index.npz        compact pool index (PoolIndex projects)
    pool-particles.csv    the particle table of a tomogram pool
    models/round-NNN.pt   the model each round scored with
    models/encoder.pt     pool-pretrained encoder (cached, keyed by the pool)
    models/encoder-embedding.pt  the encoder's pool embedding (cached)
    picks/round-NNN.csv   ranked picks for the expert (also .star)
    gallery/round-NNN.png picture sheet of the picks
    config/round-NNN.json run record of the command that made the round

The SQLite database runs in WAL mode, so readers (``cryoal status``) never block the
writer. Writers take :meth:`Project.lock`, an ``flock`` on ``project.lock`` that the
kernel releases when the process dies, so a killed run never leaves the project locked.
Labels are never silently overwritten: replacing a label needs ``overwrite=True`` and the
old value moves to ``label_history``.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import fcntl
import itertools
import json
import logging
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Literal

from cryoal._atomic import sweep_orphans
from cryoal._repr import html_view
from cryoal._version import __version__
from cryoal.errors import (
    ConfigError,
    InvalidLabelsError,
    ProjectError,
    ProjectLockedError,
    StorageError,
)

__all__ = [
    "LABEL_SOURCES",
    "ROUND_STATUSES",
    "SCHEMA_VERSION",
    "ImportReport",
    "LabelRecord",
    "PickRecord",
    "PoolEntry",
    "Project",
    "ProjectLayout",
    "RoundRecord",
]

logger = logging.getLogger(__name__)

#: Current version of the database schema (``PRAGMA user_version``).
SCHEMA_VERSION = 1
#: Where a label came from.
LABEL_SOURCES = ("expert", "import", "oracle")
#: The steps of a round, in order.
ROUND_STATUSES = ("started", "trained", "scored", "picked")

LabelSource = Literal["expert", "import", "oracle"]

_MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: the initial schema.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE pool (
        idx INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        path TEXT NOT NULL,
        box TEXT NOT NULL,
        checksum TEXT NOT NULL
    );
    CREATE TABLE labels (
        id TEXT PRIMARY KEY REFERENCES pool(id),
        label TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('expert', 'import', 'oracle')),
        annotator TEXT,
        time TEXT NOT NULL,
        round INTEGER,
        seq INTEGER NOT NULL
    );
    CREATE TABLE label_history (
        hid INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        label TEXT NOT NULL,
        source TEXT NOT NULL,
        annotator TEXT,
        time TEXT NOT NULL,
        round INTEGER,
        seq INTEGER NOT NULL,
        replaced_time TEXT NOT NULL,
        replaced_seq INTEGER NOT NULL
    );
    CREATE TABLE rounds (
        n INTEGER PRIMARY KEY,
        strategy TEXT NOT NULL,
        budget INTEGER NOT NULL,
        seed INTEGER NOT NULL,
        mode TEXT NOT NULL,
        model_path TEXT,
        label_seq INTEGER NOT NULL,
        n_labels INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('started', 'trained', 'scored', 'picked')),
        started TEXT NOT NULL,
        trained TEXT,
        scored TEXT,
        picked TEXT,
        config TEXT NOT NULL,
        metrics TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE scores (
        round INTEGER NOT NULL REFERENCES rounds(n),
        id TEXT NOT NULL,
        score REAL,
        predicted TEXT,
        probabilities TEXT,
        PRIMARY KEY (round, id)
    );
    CREATE TABLE picks (
        round INTEGER NOT NULL REFERENCES rounds(n),
        rank INTEGER NOT NULL,
        id TEXT NOT NULL,
        score REAL,
        PRIMARY KEY (round, rank)
    );
    """,
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _command_name() -> str:
    """What this process is, for the lock file: ``cryoal label import``, ``pytest``..."""
    argv = list(sys.argv) or ["python"]
    prog = Path(argv[0]).name
    if prog == "cryoal" or argv[0].replace(os.sep, "/").endswith("cryoal/cli/__main__.py"):
        words: list[str] = []
        for arg in argv[1:]:
            if arg.startswith("-") or len(words) == 2:
                break
            words.append(arg)
        if words[:1] not in (["label"], ["benchmark"]):
            words = words[:1]
        return " ".join(["cryoal", *words])
    if prog == "__main__.py":  # python -m package
        return Path(argv[0]).parent.name
    return prog if prog and prog != "-c" else "python"


def _describe_holder(text: str) -> str:
    """The lock file's ``pid N (command, since T)`` line, saying when that pid is gone."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    if not line:
        return "another process"
    parts = line.split()
    if len(parts) >= 2 and parts[0] == "pid" and parts[1].isdigit():
        try:
            os.kill(int(parts[1]), 0)
        except ProcessLookupError:
            return f"{line}, which has exited; a process it started still holds the lock"
        except PermissionError:
            pass
    return line


@dataclass(frozen=True)
class PoolEntry:
    """One registered volume: stable id, path relative to the pool root, box, header checksum."""

    id: str
    path: str
    box: tuple[int, int, int]
    checksum: str


@dataclass(frozen=True)
class LabelRecord:
    """The current label of one volume."""

    id: str
    label: str
    source: str
    annotator: str | None
    time: str
    round: int | None


@dataclass(frozen=True)
class RoundRecord:
    """One round of active learning and how far it got."""

    n: int
    strategy: str
    budget: int
    seed: int
    mode: str
    model_path: str | None
    label_seq: int
    n_labels: int
    status: str
    started: str
    trained: str | None
    scored: str | None
    picked: str | None
    config: dict[str, Any]
    metrics: dict[str, Any]

    def reached(self, status: str) -> bool:
        """Whether this round has finished the step ``status`` (or a later one)."""
        return ROUND_STATUSES.index(self.status) >= ROUND_STATUSES.index(status)


@dataclass(frozen=True)
class PickRecord:
    """One ranked pick of a round, joined with its prediction."""

    round: int
    rank: int
    id: str
    score: float | None
    predicted: str | None
    probabilities: dict[str, float] | None


@dataclass
class ImportReport:
    """What :meth:`Project.add_labels` did."""

    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    overwritten: list[str] = field(default_factory=list)
    new_classes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ProjectLayout:
    """Where every file of a project lives: the one place that names them.

    The relative names are class attributes (``ProjectLayout.ENCODER`` is
    ``models/encoder.pt``); an instance for a project directory gives absolute paths.

    Parameters
    ----------
    root
        The project directory.
    """

    root: Path

    DATABASE: ClassVar[Path] = Path("project.sqlite")
    LOCK: ClassVar[Path] = Path("project.lock")
    POOL_INDEX: ClassVar[Path] = Path("pool-index.npz")
    POOL_PARTICLES: ClassVar[Path] = Path("pool-particles.csv")
    ENCODER: ClassVar[Path] = Path("models") / "encoder.pt"
    ENCODER_EMBEDDING: ClassVar[Path] = Path("models") / "encoder-embedding.pt"
    #: folders made with the project
    FOLDERS: ClassVar[tuple[str, ...]] = ("models", "picks", "gallery", "config")

    @property
    def database(self) -> Path:
        """The SQLite database."""
        return self.root / self.DATABASE

    @property
    def lock(self) -> Path:
        """The advisory writer-lock file."""
        return self.root / self.LOCK

    @property
    def pool_index(self) -> Path:
        """The saved compact pool index (:func:`cryoal.active.pool_index.project_index`)."""
        return self.root / self.POOL_INDEX

    @property
    def pool_particles(self) -> Path:
        """The particle table of a tomogram pool."""
        return self.root / self.POOL_PARTICLES

    @property
    def encoder(self) -> Path:
        """The pool-pretrained encoder checkpoint (:func:`cryoal.pretrain.cached_encoder`)."""
        return self.root / self.ENCODER

    @property
    def encoder_embedding(self) -> Path:
        """The cached pool embedding of the encoder."""
        return self.root / self.ENCODER_EMBEDDING

    def model(self, n: int) -> Path:
        """Round ``n``'s model checkpoint."""
        return self.root / "models" / f"round-{n:03d}.pt"

    def picks(self, n: int, suffix: str = ".csv") -> Path:
        """Round ``n``'s picks (``.csv`` or ``.star``)."""
        return self.root / "picks" / f"round-{n:03d}{suffix}"

    def gallery(self, n: int) -> Path:
        """Round ``n``'s gallery PNG."""
        return self.root / "gallery" / f"round-{n:03d}.png"

    def config(self, n: int) -> Path:
        """Round ``n``'s run record (JSON)."""
        return self.root / "config" / f"round-{n:03d}.json"


class Project:
    """A directory holding the SQLite state of an active-learning run.

    Parameters
    ----------
    path
        The project directory. Created (with ``models/``, ``picks/``, ``gallery/``,
        ``config/``) when ``create`` is true and it does not exist.
    create
        Create the directory and database if missing. When false, a missing project
        raises :class:`~cryoal.errors.ProjectError`.
    readonly
        Open the database read-only (``cryoal status``, ``label export``); no migration
        and no directory creation happen.

    Raises
    ------
    ProjectError
        The directory is missing (``create=False``), not writable, or holds a database
        that is not a cryoal project or was written by a newer cryoal.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, create: bool = True, readonly: bool = False
    ) -> None:
        self.path = Path(path)
        self.layout = ProjectLayout(self.path)
        self.readonly = readonly
        self._lock_fh: Any = None
        self._lock_depth = 0
        db = self.db_path
        if not db.exists():
            if readonly or not create:
                raise ProjectError(
                    f"no cryoal project at {self.path} (missing {db.name}); "
                    "run `cryoal select --project DIR ...` to create one"
                )
            self._make_dirs()
        elif not readonly:
            self._check_writable(self.path)
        try:
            if readonly:
                self._conn = self._connect_readonly(db)
            else:
                self._conn = sqlite3.connect(db, timeout=30.0, isolation_level=None)
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.row_factory = sqlite3.Row
            version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise ProjectError(
                f"{db} is not a readable cryoal project database ({exc}); "
                "restore it from a backup or start a new project"
            ) from exc
        if version > SCHEMA_VERSION:
            self._conn.close()
            raise ProjectError(
                f"{db} has schema version {version}, newer than this cryoal ({__version__}, "
                f"schema {SCHEMA_VERSION}); upgrade cryoal to open it"
            )
        if version < SCHEMA_VERSION:
            if readonly:
                self._conn.close()
                raise ProjectError(
                    f"{db} has schema version {version} and needs a migration to "
                    f"{SCHEMA_VERSION}; open it once with a writing command (e.g. cryoal select)"
                )
            self._migrate(version)

    @staticmethod
    def _connect_readonly(db: Path) -> sqlite3.Connection:
        uri = db.resolve().as_uri()
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30.0, isolation_level=None)
        try:
            conn.execute("PRAGMA user_version").fetchone()
        except sqlite3.OperationalError:
            # a WAL database in a directory we cannot write (no -shm file to create):
            # nobody without write access can change it under us, so read it as immutable
            conn.close()
            conn = sqlite3.connect(
                f"{uri}?mode=ro&immutable=1", uri=True, timeout=30.0, isolation_level=None
            )
        return conn

    # ------------------------------------------------------------------ basics
    @property
    def db_path(self) -> Path:
        """Path of the SQLite database."""
        return self.layout.database

    @property
    def schema_version(self) -> int:
        """The schema version of the open database."""
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def model_path(self, n: int) -> Path:
        """Where round ``n`` stores its model checkpoint."""
        return self.layout.model(n)

    def picks_path(self, n: int, suffix: str = ".csv") -> Path:
        """Where round ``n`` writes its picks (``.csv`` or ``.star``)."""
        return self.layout.picks(n, suffix)

    def gallery_path(self, n: int) -> Path:
        """Where round ``n`` writes its gallery PNG."""
        return self.layout.gallery(n)

    def config_path(self, n: int) -> Path:
        """Where round ``n`` writes its run record (``config.json``)."""
        return self.layout.config(n)

    def close(self) -> None:
        """Close the database connection (and release the lock if held)."""
        if self._lock_fh is not None:
            self._release_lock()
        self._conn.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Project({str(self.path)!r})"

    _repr_html_ = html_view("project")

    def _make_dirs(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._check_writable(self.path)
            for sub in ProjectLayout.FOLDERS:
                (self.path / sub).mkdir(exist_ok=True)
        except OSError as exc:
            raise ProjectError(
                f"cannot create project directory {self.path} ({exc.strerror}); "
                "choose another --project or fix the permissions"
            ) from exc

    @staticmethod
    def _check_writable(path: Path) -> None:
        # a real probe: honours ACLs, read-only mounts and dropped capabilities
        try:
            fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=path)
        except OSError as exc:
            raise ProjectError(
                f"project directory {path} is not writable ({exc.strerror}); "
                "choose another --project or fix the permissions (chmod u+w)"
            ) from exc
        os.close(fd)
        os.unlink(probe)

    def _migrate(self, version: int) -> None:
        with self._transaction():
            for target in range(version, SCHEMA_VERSION):
                # a new database is created through the same steps: not worth a line
                log = logger.debug if version == 0 else logger.info
                log("migrating %s to schema %d", self.db_path, target + 1)
                for statement in _MIGRATIONS[target].split(";"):
                    if statement.strip():
                        self._conn.execute(statement)
                self._conn.execute(f"PRAGMA user_version = {target + 1}")
            if version == 0:
                self._set_meta("created", _now())
                self._set_meta("cryoal_version", __version__)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One SQLite write transaction: all of the block's statements or none.

        A storage failure (disk full, read-only file, I/O error) rolls back and becomes
        a :class:`~cryoal.errors.StorageError` / :class:`ProjectError` naming the database.
        """
        if self.readonly:
            raise ProjectError(f"project {self.path} was opened read-only")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._rollback()
                raise
            self._conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self._rollback()
            raise self._db_error(exc) from exc

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    def _db_error(self, exc: sqlite3.OperationalError) -> Exception:
        """The typed error for a failed write to the project database (or ``exc``)."""
        text = str(exc).lower()
        db = self.db_path
        if "disk is full" in text or "disk i/o error" in text:
            return StorageError(
                f"cannot write {db}: {exc}; free space on that disk and re-run (the last "
                "change was rolled back, nothing else was lost)"
            )
        if "readonly" in text or "read-only" in text:
            return ProjectError(
                f"cannot write {db}: the database or its folder is read-only ({exc}); fix the "
                "permissions, or use `cryoal status` to read the project"
            )
        if "locked" in text or "busy" in text:
            return ProjectLockedError(
                f"project database {db} stayed locked by another process ({exc}); wait for it "
                "to finish and re-run"
            )
        return exc

    # ------------------------------------------------------------------ lock
    @contextlib.contextmanager
    def lock(self, timeout: float = 30.0, *, poll: float = 0.1) -> Iterator[None]:
        """Hold the project's writer lock for the duration of the block.

        A second process asking for the lock waits up to ``timeout`` seconds. The lock is
        an ``flock`` on ``project.lock``: the kernel drops it when the holder dies, so a
        killed run never leaves a stale lock. Re-entrant within one :class:`Project`.

        Raises
        ------
        ProjectLockedError
            Another process still holds the lock after ``timeout`` seconds.
        """
        if self.readonly:
            raise ProjectError(f"project {self.path} was opened read-only and cannot be locked")
        if self._lock_depth == 0:
            self._acquire_lock(timeout, poll)
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0:
                self._release_lock()

    def _acquire_lock(self, timeout: float, poll: float) -> None:
        lock_file = self.layout.lock
        try:
            fh = open(lock_file, "a+", encoding="utf-8")
        except PermissionError as exc:
            raise ProjectError(
                f"cannot write {lock_file}: permission denied; fix the permissions of {self.path}"
            ) from exc
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    fh.close()
                    raise
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    holder = _describe_holder(fh.read())
                    fh.close()
                    raise ProjectLockedError(
                        f"project {self.path} is locked by {holder}; waited {timeout:g} s. "
                        "Wait for it to finish, or stop it and re-run (the project resumes "
                        "where it stopped)"
                    ) from None
                time.sleep(poll)
        # whoever held the lock before us is gone: what it was writing is an orphan
        with contextlib.suppress(OSError):
            sweep_orphans(self.path)
        fh.seek(0)
        fh.truncate()
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        fh.write(f"pid {os.getpid()} ({_command_name()}, since {stamp})\n")
        fh.flush()
        self._lock_fh = fh

    def _release_lock(self) -> None:
        fh = self._lock_fh
        self._lock_fh = None
        self._lock_depth = 0
        with contextlib.suppress(OSError):
            fh.seek(0)
            fh.truncate()
            fh.flush()
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()

    # ------------------------------------------------------------------ meta
    def _set_meta(self, key: str, value: Any) -> None:
        self._conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def get_meta(self, key: str, default: Any = None) -> Any:
        """A JSON value stored under ``key`` in the project's ``meta`` table."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable ``value`` under ``key``."""
        with self._transaction():
            self._set_meta(key, value)

    @property
    def class_names(self) -> list[str]:
        """The classes known to the project, in the order models index them (sorted)."""
        return list(self.get_meta("class_names", []))

    # ------------------------------------------------------------------ pool
    def register_pool(
        self,
        entries: Sequence[PoolEntry],
        *,
        root: str | os.PathLike[str],
        voxel_size: float,
    ) -> int:
        """Register the volumes of the pool; idempotent.

        The first call records the pool root, box and voxel size (Å). Later calls may add
        new volumes; volumes already registered must keep their header checksum, and
        volumes registered before must still be present.

        Parameters
        ----------
        entries
            Every volume of the pool, in pool order.
        root
            The pool's root directory (recorded; a project serves one pool).
        voxel_size
            Voxel size in Å.

        Returns
        -------
        int
            How many volumes were newly registered.

        Raises
        ------
        ProjectError
            The project belongs to a different pool root, a registered volume is missing
            from ``entries``, or a volume's header changed since it was registered.
        EmptyPoolError
            ``entries`` is empty.
        """
        from cryoal.errors import EmptyPoolError

        if not entries:
            raise EmptyPoolError(f"the pool at {root} holds no volumes; nothing to register")
        root_str = str(Path(root).resolve())
        known_root = self.get_meta("pool_root")
        if known_root is not None and known_root != root_str:
            raise ProjectError(
                f"project {self.path} was created for the volumes in {known_root}, not {root_str}; "
                "pass --project with a new directory for this pool"
            )
        boxes = {e.box for e in entries}
        if len(boxes) > 1:
            raise ProjectError(f"pool {root_str} mixes box sizes {sorted(boxes)}; use one box size")
        box = next(iter(boxes))
        known_box = self.get_meta("box")
        if known_box is not None and tuple(known_box) != box:
            raise ProjectError(
                f"pool {root_str} now has box {box} but project {self.path} was built on box "
                f"{tuple(known_box)}; use a new --project"
            )
        existing = {
            row["id"]: (row["path"], row["checksum"])
            for row in self._conn.execute("SELECT id, path, checksum FROM pool")
        }
        given = {e.id for e in entries}
        missing = [i for i in existing if i not in given]
        if missing:
            raise ProjectError(
                f"{len(missing)} volume(s) registered in project {self.path} are missing from "
                f"{root_str} (first: {missing[0]}); restore them, or start a new --project"
            )
        changed = [e.id for e in entries if e.id in existing and existing[e.id][1] != e.checksum]
        if changed:
            raise ProjectError(
                f"{len(changed)} volume(s) changed on disk since they were registered "
                f"(first: {changed[0]}); restore them, or start a new --project"
            )
        new = [e for e in entries if e.id not in existing]
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO pool(id, path, box, checksum) VALUES (?, ?, ?, ?)",
                [(e.id, e.path, json.dumps(list(e.box)), e.checksum) for e in new],
            )
            if known_root is None:
                self._set_meta("pool_root", root_str)
                self._set_meta("box", list(box))
                self._set_meta("voxel_size", float(voxel_size))
        return len(new)

    def register_pool_rows(
        self,
        rows: Iterable[tuple[str, str, str, str]],
        *,
        root: str | os.PathLike[str],
        box: Sequence[int],
        voxel_size: float,
        chunk_size: int = 50_000,
    ) -> int:
        """Bulk-register pool entries streamed as rows, in bounded memory (large pools).

        Rows are inserted ``chunk_size`` at a time with ``executemany`` inside one
        transaction; ids already registered are skipped. Unlike :meth:`register_pool` it
        does not re-check registered entries (that needs them all in memory); the
        round loop's :meth:`register_pool` still does.

        Parameters
        ----------
        rows
            ``(id, path relative to root, box as JSON "[D, H, W]", checksum)`` per volume,
            in pool order (see :func:`cryoal.active.pool_index.project_index`).
        root, box, voxel_size
            As recorded by :meth:`register_pool` (Å for ``voxel_size``).
        chunk_size
            Rows per ``executemany`` call.

        Returns
        -------
        int
            How many volumes were newly registered.

        Raises
        ------
        ProjectError
            The project belongs to a different pool root or box size.
        """
        root_str = str(Path(root).resolve())
        known_root = self.get_meta("pool_root")
        if known_root is not None and known_root != root_str:
            raise ProjectError(
                f"project {self.path} was created for the volumes in {known_root}, not {root_str}; "
                "pass --project with a new directory for this pool"
            )
        known_box = self.get_meta("box")
        if known_box is not None and tuple(known_box) != tuple(box):
            raise ProjectError(
                f"pool {root_str} now has box {tuple(box)} but project {self.path} was built on "
                f"box {tuple(known_box)}; use a new --project"
            )
        sql = "INSERT OR IGNORE INTO pool(id, path, box, checksum) VALUES (?, ?, ?, ?)"
        added = 0
        with self._transaction() as conn:
            it = iter(rows)
            while chunk := list(itertools.islice(it, max(1, chunk_size))):
                before = conn.total_changes
                conn.executemany(sql, chunk)
                added += conn.total_changes - before
            if known_root is None:
                self._set_meta("pool_root", root_str)
                self._set_meta("box", [int(s) for s in box])
                self._set_meta("voxel_size", float(voxel_size))
        return added

    def pool_size(self) -> int:
        """Number of registered volumes."""
        return int(self._conn.execute("SELECT COUNT(*) FROM pool").fetchone()[0])

    def pool_ids(self) -> list[str]:
        """Registered volume ids, in registration order."""
        return [row["id"] for row in self._conn.execute("SELECT id FROM pool ORDER BY idx")]

    def pool_entries(self) -> list[PoolEntry]:
        """Registered volumes, in registration order."""
        return [
            PoolEntry(row["id"], row["path"], tuple(json.loads(row["box"])), row["checksum"])  # type: ignore[arg-type]
            for row in self._conn.execute("SELECT * FROM pool ORDER BY idx")
        ]

    # ------------------------------------------------------------------ labels
    def _max_seq(self) -> int:
        row = self._conn.execute(
            "SELECT MAX(s) FROM (SELECT MAX(seq) AS s FROM labels "
            "UNION ALL SELECT MAX(seq) FROM label_history "
            "UNION ALL SELECT MAX(replaced_seq) FROM label_history)"
        ).fetchone()
        return int(row[0] or 0)

    def add_labels(
        self,
        labels: Mapping[str, str] | Sequence[tuple[str, str]],
        *,
        source: LabelSource = "import",
        annotator: str | None = None,
        round: int | None = None,
        overwrite: bool = False,
        allow_new_classes: bool = False,
        where: str = "labels",
    ) -> ImportReport:
        """Add labels, all or nothing.

        Parameters
        ----------
        labels
            ``{id: label}`` or ``(id, label)`` pairs; ids must be registered pool ids.
        source
            ``"expert"``, ``"import"`` or ``"oracle"``.
        annotator, round
            Recorded with each label (``round`` defaults to the latest round).
        overwrite
            Replace labels that differ from the stored ones; the old label moves to the
            history table. Without it, any conflict raises and nothing is written.
        allow_new_classes
            Accept a class name that looks like a typo of a known class.
        where
            Name of the input shown in error messages (a file name).

        Raises
        ------
        InvalidLabelsError
            Unknown ids, empty labels, duplicate ids with different labels, conflicts
            without ``overwrite``, or a class name close to a known one (a likely typo).
        """
        if source not in LABEL_SOURCES:
            raise ConfigError(f"label source {source!r} is not one of {', '.join(LABEL_SOURCES)}")
        pairs = list(labels.items()) if isinstance(labels, Mapping) else list(labels)
        wanted: dict[str, str] = {}
        for row, (vid, lab) in enumerate(pairs, start=1):
            vid, lab = str(vid), str(lab).strip()
            if not lab or lab.lower() == "nan":
                raise InvalidLabelsError(f"{where}: row {row} (id {vid}) has an empty label")
            if vid in wanted and wanted[vid] != lab:
                raise InvalidLabelsError(
                    f"{where}: id {vid} appears twice with different labels "
                    f"({wanted[vid]!r}, {lab!r}); keep one"
                )
            wanted[vid] = lab
        # read, check and write in one IMMEDIATE transaction: a second writer (even one
        # that skipped Project.lock) cannot slip a label in between the check and the write
        stamp = _now()
        with self._transaction() as conn:
            known_ids = set(self.pool_ids())
            unknown = [v for v in wanted if v not in known_ids]
            if unknown:
                example = next(iter(known_ids), None)
                hint = f" (pool ids look like {example!r})" if example is not None else ""
                raise InvalidLabelsError(
                    f"{where}: {len(unknown)} id(s) are not in the project's pool, e.g. "
                    f"{', '.join(map(repr, unknown[:3]))}{hint}; ids are paths relative to the "
                    "volumes folder"
                )
            known_classes = self.class_names
            new_classes = sorted({lab for lab in wanted.values()} - set(known_classes))
            if new_classes and known_classes and not allow_new_classes:
                for name in new_classes:
                    close = _close_class(name, known_classes)
                    if close is not None:
                        first = next(v for v, lab in wanted.items() if lab == name)
                        raise InvalidLabelsError(
                            f"{where}: label {name!r} (id {first}) is not a known class; did you "
                            f"mean {close!r}? Known classes: {', '.join(known_classes)}. "
                            "Fix the file, or pass --allow-new-classes if it really is a new class"
                        )
            current = {r.id: r for r in self.labels()}
            report = ImportReport()
            conflicts = []
            for vid, lab in wanted.items():
                old = current.get(vid)
                if old is None:
                    report.added.append(vid)
                elif old.label == lab:
                    report.unchanged.append(vid)
                else:
                    conflicts.append((vid, old.label, lab))
                    report.overwritten.append(vid)
            if conflicts and not overwrite:
                vid, old_lab, new_lab = conflicts[0]
                raise InvalidLabelsError(
                    f"{where}: {len(conflicts)} label(s) conflict with labels already in the "
                    f"project, e.g. id {vid}: stored {old_lab!r}, new {new_lab!r}; nothing was "
                    "imported. Pass --overwrite to replace them (the old labels are kept in history)"
                )
            if round is None:
                latest = self.latest_round()
                round = latest.n if latest is not None else None
            seq = self._max_seq()
            for vid in report.overwritten:
                seq += 1
                conn.execute(
                    "INSERT INTO label_history(id, label, source, annotator, time, round, seq, "
                    "replaced_time, replaced_seq) SELECT id, label, source, annotator, time, "
                    "round, seq, ?, ? FROM labels WHERE id = ?",
                    (stamp, seq, vid),
                )
                conn.execute(
                    "UPDATE labels SET label = ?, source = ?, annotator = ?, time = ?, "
                    "round = ?, seq = ? WHERE id = ?",
                    (wanted[vid], source, annotator, stamp, round, seq, vid),
                )
            for vid in report.added:
                seq += 1
                conn.execute(
                    "INSERT INTO labels(id, label, source, annotator, time, round, seq) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (vid, wanted[vid], source, annotator, stamp, round, seq),
                )
            if new_classes:
                self._set_meta("class_names", sorted(set(known_classes) | set(new_classes)))
        report.new_classes = new_classes
        return report

    def labels(self) -> list[LabelRecord]:
        """Current labels, in pool order."""
        rows = self._conn.execute(
            "SELECT l.* FROM labels l JOIN pool p ON p.id = l.id ORDER BY p.idx"
        )
        return [
            LabelRecord(r["id"], r["label"], r["source"], r["annotator"], r["time"], r["round"])
            for r in rows
        ]

    def label_map(self, *, as_of_seq: int | None = None) -> dict[str, str]:
        """``{id: label}`` now, or as it stood when the label sequence was ``as_of_seq``."""
        if as_of_seq is None:
            return {r.id: r.label for r in self.labels()}
        rows = self._conn.execute(
            "SELECT id, label, seq, gone FROM (SELECT id, label, seq, NULL AS gone FROM labels "
            "WHERE seq <= ? UNION ALL SELECT id, label, seq, replaced_seq FROM label_history "
            "WHERE seq <= ?) ORDER BY seq",
            (as_of_seq, as_of_seq),
        )
        out: dict[str, str] = {}
        for r in rows:
            if r["gone"] is not None and r["gone"] <= as_of_seq:
                out.pop(r["id"], None)  # replaced (a later row sets it) or withdrawn by then
            else:
                out[r["id"]] = r["label"]
        order = {vid: i for i, vid in enumerate(self.pool_ids())}
        return dict(sorted(out.items(), key=lambda kv: order[kv[0]]))

    def retract_labels(self, ids: Sequence[str]) -> list[str]:
        """Withdraw the current labels of ``ids`` (an expert's undo); nothing is deleted.

        Each withdrawn label moves to the history table with the time and sequence number
        of its withdrawal, so :meth:`label_map` with an earlier ``as_of_seq`` still shows
        it and a round started before the withdrawal trains on it. Ids without a label
        are skipped.

        Returns
        -------
        list[str]
            The ids whose label was withdrawn, in the order given.
        """
        current = {r.id for r in self.labels()}
        todo = list(dict.fromkeys(str(v) for v in ids if str(v) in current))
        stamp = _now()
        with self._transaction() as conn:
            seq = self._max_seq()
            for vid in todo:
                seq += 1
                conn.execute(
                    "INSERT INTO label_history(id, label, source, annotator, time, round, seq, "
                    "replaced_time, replaced_seq) SELECT id, label, source, annotator, time, "
                    "round, seq, ?, ? FROM labels WHERE id = ?",
                    (stamp, seq, vid),
                )
                conn.execute("DELETE FROM labels WHERE id = ?", (vid,))
        return todo

    def label_history(self, vid: str | None = None) -> list[dict[str, Any]]:
        """Replaced labels (oldest first), optionally for one id."""
        sql = "SELECT * FROM label_history"
        args: tuple[Any, ...] = ()
        if vid is not None:
            sql += " WHERE id = ?"
            args = (vid,)
        return [dict(r) for r in self._conn.execute(sql + " ORDER BY hid", args)]

    def label_counts(self) -> dict[str, int]:
        """Number of labelled volumes per class (every known class, zero included)."""
        counts = dict.fromkeys(self.class_names, 0)
        for r in self._conn.execute("SELECT label, COUNT(*) AS c FROM labels GROUP BY label"):
            counts[r["label"]] = int(r["c"])
        return counts

    # ------------------------------------------------------------------ rounds
    def _round(self, row: sqlite3.Row) -> RoundRecord:
        return RoundRecord(
            n=row["n"],
            strategy=row["strategy"],
            budget=row["budget"],
            seed=row["seed"],
            mode=row["mode"],
            model_path=row["model_path"],
            label_seq=row["label_seq"],
            n_labels=row["n_labels"],
            status=row["status"],
            started=row["started"],
            trained=row["trained"],
            scored=row["scored"],
            picked=row["picked"],
            config=json.loads(row["config"]),
            metrics=json.loads(row["metrics"]),
        )

    def rounds(self) -> list[RoundRecord]:
        """Every round, oldest first."""
        return [self._round(r) for r in self._conn.execute("SELECT * FROM rounds ORDER BY n")]

    def get_round(self, n: int) -> RoundRecord:
        """Round ``n``; raises :class:`ProjectError` when it does not exist."""
        row = self._conn.execute("SELECT * FROM rounds WHERE n = ?", (n,)).fetchone()
        if row is None:
            raise ProjectError(f"project {self.path} has no round {n}")
        return self._round(row)

    def latest_round(self) -> RoundRecord | None:
        """The most recent round, or ``None`` for a new project."""
        row = self._conn.execute("SELECT * FROM rounds ORDER BY n DESC LIMIT 1").fetchone()
        return None if row is None else self._round(row)

    def start_round(
        self,
        *,
        strategy: str,
        budget: int,
        seed: int,
        mode: str,
        config: Mapping[str, Any],
        n_labels: int | None = None,
    ) -> RoundRecord:
        """Open a new round with the labels present now as its training set.

        ``n_labels`` overrides the count of the labels table (segmentation rounds, whose
        labels are voxel label maps on disk, record their annotated patches instead).

        Raises
        ------
        ProjectError
            The latest round has not reached ``picked`` (resume or discard it first).
        """
        latest = self.latest_round()
        if latest is not None and latest.status != "picked":
            raise ProjectError(
                f"round {latest.n} of {self.path} is unfinished ({latest.status}); "
                "resume it with the same options, or discard it"
            )
        n = 1 if latest is None else latest.n + 1
        with self._transaction() as conn:
            if n_labels is None:
                n_labels = int(conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0])
            conn.execute(
                "INSERT INTO rounds(n, strategy, budget, seed, mode, label_seq, n_labels, "
                "status, started, config) VALUES (?, ?, ?, ?, ?, ?, ?, 'started', ?, ?)",
                (
                    n,
                    strategy,
                    int(budget),
                    int(seed),
                    mode,
                    self._max_seq(),
                    n_labels,
                    _now(),
                    json.dumps(dict(config), default=str),
                ),
            )
        return self.get_round(n)

    def mark_trained(self, n: int, model_path: str | None, metrics: Mapping[str, Any]) -> None:
        """Record that round ``n`` has its model (path relative to the project)."""
        self._advance(n, "started", "trained")
        with self._transaction() as conn:
            conn.execute(
                "UPDATE rounds SET status = 'trained', trained = ?, model_path = ?, metrics = ? "
                "WHERE n = ?",
                (_now(), model_path, json.dumps(dict(metrics)), n),
            )

    def record_scores(
        self,
        n: int,
        scores: Sequence[tuple[str, float | None, str | None, dict[str, float] | None]],
        picks: Sequence[tuple[str, float | None]],
    ) -> None:
        """Store the scores of the unlabelled pool and the ranked picks; ``scored``.

        Parameters
        ----------
        scores
            ``(id, score, predicted label, {class: probability})`` per scored volume.
        picks
            ``(id, score)`` in rank order (rank 1 first).
        """
        self._advance(n, "trained", "scored")
        with self._transaction() as conn:
            conn.execute("DELETE FROM scores WHERE round = ?", (n,))
            conn.execute("DELETE FROM picks WHERE round = ?", (n,))
            conn.executemany(
                "INSERT INTO scores(round, id, score, predicted, probabilities) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (n, vid, s, pred, None if probs is None else json.dumps(probs))
                    for vid, s, pred, probs in scores
                ],
            )
            conn.executemany(
                "INSERT INTO picks(round, rank, id, score) VALUES (?, ?, ?, ?)",
                [(n, rank, vid, s) for rank, (vid, s) in enumerate(picks, start=1)],
            )
            conn.execute("UPDATE rounds SET status = 'scored', scored = ? WHERE n = ?", (_now(), n))

    def mark_picked(self, n: int) -> None:
        """Record that round ``n`` wrote its picks, gallery and config."""
        self._advance(n, "scored", "picked")
        with self._transaction() as conn:
            conn.execute("UPDATE rounds SET status = 'picked', picked = ? WHERE n = ?", (_now(), n))

    def update_metrics(self, n: int, metrics: Mapping[str, Any]) -> None:
        """Merge ``metrics`` into round ``n``'s metrics (e.g. a test accuracy)."""
        merged = {**self.get_round(n).metrics, **dict(metrics)}
        with self._transaction() as conn:
            conn.execute("UPDATE rounds SET metrics = ? WHERE n = ?", (json.dumps(merged), n))

    def discard_round(self, n: int) -> None:
        """Delete an unfinished round ``n`` and its scores (labels are never touched)."""
        rnd = self.get_round(n)
        if rnd.status == "picked":
            raise ProjectError(f"round {n} is finished; only an unfinished round can be discarded")
        with self._transaction() as conn:
            conn.execute("DELETE FROM scores WHERE round = ?", (n,))
            conn.execute("DELETE FROM picks WHERE round = ?", (n,))
            conn.execute("DELETE FROM rounds WHERE n = ?", (n,))

    def _advance(self, n: int, expected: str, new: str) -> None:
        rnd = self.get_round(n)
        if rnd.status != expected:
            raise ProjectError(
                f"round {n} is {rnd.status!r}; it cannot become {new!r} (expected {expected!r})"
            )

    # ------------------------------------------------------------------ scores/picks
    def picks(self, n: int) -> list[PickRecord]:
        """Round ``n``'s picks in rank order, with predicted label and probabilities."""
        rows = self._conn.execute(
            "SELECT k.rank, k.id, k.score, s.predicted, s.probabilities FROM picks k "
            "LEFT JOIN scores s ON s.round = k.round AND s.id = k.id "
            "WHERE k.round = ? ORDER BY k.rank",
            (n,),
        )
        return [
            PickRecord(
                n,
                r["rank"],
                r["id"],
                r["score"],
                r["predicted"],
                None if r["probabilities"] is None else json.loads(r["probabilities"]),
            )
            for r in rows
        ]

    def scores(self, n: int) -> list[dict[str, Any]]:
        """Every score row of round ``n`` (id, score, predicted, probabilities)."""
        rows = self._conn.execute(
            "SELECT id, score, predicted, probabilities FROM scores WHERE round = ?", (n,)
        )
        return [
            {
                "id": r["id"],
                "score": r["score"],
                "predicted": r["predicted"],
                "probabilities": None
                if r["probabilities"] is None
                else json.loads(r["probabilities"]),
            }
            for r in rows
        ]

    def pick_accuracy(self, n: int, *, as_of_seq: int | None = None) -> tuple[int, int]:
        """How many of round ``n``'s labelled picks the round's model predicted right.

        Parameters
        ----------
        n
            The round.
        as_of_seq
            Judge against the labels as they stood at this label sequence number (see
            :meth:`label_map`); ``None``: the labels now.

        Returns
        -------
        tuple[int, int]
            ``(correct, labelled)``: picks of round ``n`` that have a label (now, or as of
            ``as_of_seq``) and carry a prediction, and how many of those predictions equal
            the label.
        """
        picks = "FROM picks k JOIN scores s ON s.round = k.round AND s.id = k.id"
        where = "WHERE k.round = ? AND s.predicted IS NOT NULL"
        if as_of_seq is None:  # one query over the current labels (cryoal status, every round)
            row = self._conn.execute(
                f"SELECT COUNT(*) AS n, SUM(s.predicted = l.label) AS ok {picks} "
                f"JOIN labels l ON l.id = k.id {where}",
                (n,),
            ).fetchone()
            return int(row["ok"] or 0), int(row["n"] or 0)
        labels = self.label_map(as_of_seq=as_of_seq)
        judged = [
            labels[r["id"]] == r["predicted"]
            for r in self._conn.execute(f"SELECT s.id, s.predicted {picks} {where}", (n,))
            if r["id"] in labels
        ]
        return sum(judged), len(judged)


def _close_class(name: str, known: Sequence[str]) -> str | None:
    lowered = {k.lower(): k for k in known}
    if name.lower() in lowered:
        return lowered[name.lower()]
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.75)
    return lowered[close[0]] if close else None

"""Atomic file writes: write to a temporary file beside the target, fsync, rename.

A reader never sees a half-written file, and a crash leaves either the old file or the
new one, plus at worst a hidden temporary file ``.NAME.pPID.XXXXXXXX.tmpSUFFIX`` beside
it. The writer's process id in that name lets :func:`sweep_orphans` remove the
temporaries of dead writers (a run killed by SIGKILL or the out-of-memory killer) without
touching those of a writer still at work; resumable commands sweep their folders when
they start (the project under its lock, a benchmark's output folder).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from cryoal.errors import StorageError

__all__ = ["atomic_path", "atomic_write", "atomic_write_text", "sweep_orphans"]

logger = logging.getLogger(__name__)

#: ``.NAME.pPID.XXXXXXXX.tmp...``: a temporary file of :func:`atomic_path` and its writer
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.p(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``.

    Use it for writers that want a file name (mrcfile, h5py, torch.save, matplotlib).
    ``suffix`` keeps an extension that the writer needs to pick a format (default: the
    target's own suffixes).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sfx = "".join(target.suffixes) if suffix is None else suffix
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.p{os.getpid()}.", suffix=f".tmp{sfx}", dir=target.parent
    )
    os.close(fd)
    # mkstemp makes the file owner-only (0600); give it the permissions a plain open()
    # would (0666 less the umask), so colleagues can read picks and models in a lab folder.
    os.chmod(tmp_name, 0o666 & ~_umask())
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        size = tmp.stat().st_size if tmp.exists() else 0
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        reason = storage_failure(exc, target.parent, size)
        if reason is not None:
            raise StorageError(
                f"cannot write {target}: {reason}; free space (or raise the limit) and re-run "
                "(the file was not changed)"
            ) from exc
        raise


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str], mode: str = "w", **open_kwargs: Any
) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; rename it onto ``path`` when the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as fh:
        yield fh


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


#: errno values that mean "the storage refused the write", not "the program is wrong"
STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (file-size limit)",
    errno.EROFS: "read-only file system",
}
#: below this much free space a writer's failure is taken for a full disk
_LOW_SPACE = 1 << 20


def storage_failure(
    exc: BaseException, folder: str | os.PathLike[str], size: int = 0
) -> str | None:
    """Why ``exc`` (raised while writing into ``folder``) is a storage failure, or None.

    An :class:`OSError` with a storage errno says so itself. Writers in C++ (torch.save,
    h5py) raise :class:`RuntimeError` without an errno; for those the folder's free space
    (under 1 MiB left) or this process's file-size limit (reached by ``size`` bytes)
    decides.
    """
    for err in (exc, exc.__cause__, exc.__context__):
        if isinstance(err, OSError) and err.errno in STORAGE_ERRNOS:
            return STORAGE_ERRNOS[err.errno]
    if not isinstance(exc, (OSError, RuntimeError)):
        return None
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    if st.f_bavail * st.f_frsize < _LOW_SPACE:
        return STORAGE_ERRNOS[errno.ENOSPC]
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    except (ImportError, OSError, ValueError):
        return None
    if soft != resource.RLIM_INFINITY and size >= soft:
        return STORAGE_ERRNOS[errno.EFBIG]
    return None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def sweep_orphans(folder: str | os.PathLike[str], *, recursive: bool = True) -> list[Path]:
    """Remove the temporary files that killed writers left in ``folder``.

    A temporary file of :func:`atomic_path` names its writer's process id; it is an
    orphan when that process no longer exists (the write was interrupted by SIGKILL, a
    power cut, the OOM killer). Temporaries of live processes are kept, so a sweep is
    safe while another process writes in the same folder. Files that only look like
    temporaries (no ``pPID`` field) are left alone.

    Parameters
    ----------
    folder
        Folder to clean; a missing folder is fine (nothing to do).
    recursive
        Also clean sub-folders (hidden ones and links to folders are not entered).

    Returns
    -------
    list[Path]
        The files removed.
    """
    removed: list[Path] = []
    pending = [Path(folder)]
    while pending:
        current = pending.pop()
        try:
            entries = list(os.scandir(current))
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            match = _TEMP_NAME.match(entry.name)
            if match is not None:
                if entry.is_file(follow_symlinks=False) and not _alive(int(match["pid"])):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                        removed.append(Path(entry.path))
            elif (
                recursive and not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False)
            ):
                pending.append(Path(entry.path))
    if removed:
        logger.info(
            "removed %d temporary file(s) of interrupted writes in %s", len(removed), folder
        )
    return removed

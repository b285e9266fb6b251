"""Atomic file writes: write to a temporary file beside the target, fsync, rename.

A reader never sees a half-written file, and a crash leaves either the old file or the
new one, plus at worst a ``.tmp`` file that the next write replaces.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_path", "atomic_write", "atomic_write_text"]


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
        prefix=f".{target.name}.", suffix=f".tmp{sfx}", dir=target.parent
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
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
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

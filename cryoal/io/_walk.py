"""Fast directory walk for volume files, shared by :mod:`cryoal.io.pool` and :mod:`cryoal.io.index`."""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import re
from collections.abc import Iterator, Sequence

from cryoal.errors import InvalidVolumeError
from cryoal.io.mrc import is_volume_file

__all__ = ["walk_volume_files"]

logger = logging.getLogger(__name__)


def _link_problem(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop (the link points back to itself through other links)"
    return f"cannot follow the link ({exc.strerror or exc})"


def walk_volume_files(root: str, patterns: Sequence[str], recursive: bool) -> Iterator[str]:
    """Relative posix paths of volume files under ``root`` matching any pattern.

    Streamed and unsorted, with no ``stat`` per file (``os.scandir``). Hidden entries
    (``.name``) are skipped; links to folders are followed, but never in a loop; files
    whose name matches a pattern but not a volume extension are skipped (debug log).

    Raises
    ------
    InvalidVolumeError
        An entry is a symbolic link that cannot be followed (a loop of file links, a
        target without permission); the message names it.

    Parameters
    ----------
    root
        Folder to walk.
    patterns
        ``fnmatch`` patterns of file names (``"*.mrc"``).
    recursive
        Descend into sub-folders.
    """
    regex = re.compile("|".join(fnmatch.translate(p) for p in patterns))
    pending = [("", root)]
    linked = {os.path.realpath(root)}
    while pending:
        prefix, folder = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError as exc:  # a link loop (ELOOP) or an unreadable link target
                    raise InvalidVolumeError(
                        f"{entry.path}: {_link_problem(exc)}; remove or fix the link, or point "
                        "--volumes at another folder"
                    ) from exc
                if is_dir:
                    if recursive:
                        if entry.is_symlink():  # follow links to folders, but never in a loop
                            real = os.path.realpath(entry.path)
                            if real in linked:
                                continue
                            linked.add(real)
                        pending.append((prefix + name + "/", entry.path))
                elif regex.match(name):
                    if is_volume_file(name):
                        yield prefix + name
                    else:
                        logger.debug("skipping %s: not a volume extension", entry.path)

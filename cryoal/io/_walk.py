"""Fast directory walk for volume files, shared by :mod:`cryoal.io.pool` and :mod:`cryoal.io.index`."""

from __future__ import annotations

import fnmatch
import logging
import os
import re
from collections.abc import Iterator, Sequence

from cryoal.io.mrc import is_volume_file

__all__ = ["walk_volume_files"]

logger = logging.getLogger(__name__)


def walk_volume_files(root: str, patterns: Sequence[str], recursive: bool) -> Iterator[str]:
    """Relative posix paths of volume files under ``root`` matching any pattern.

    Streamed and unsorted, with no ``stat`` per file (``os.scandir``). Hidden entries
    (``.name``) are skipped; links to folders are followed, but never in a loop; files
    whose name matches a pattern but not a volume extension are skipped (debug log).

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
                if entry.is_dir():
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

"""A project's compact pool index: built once from a folder or list, then loaded.

:class:`cryoal.io.index.PoolIndex` builds, saves and loads the index and streams its
rows; the project owns what it registers: :func:`project_index` saves the index at
``project.layout.pool_index`` and bulk-inserts the rows into the project's ``pool``
table (:meth:`cryoal.active.Project.register_pool_rows`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from cryoal.active.project import Project
from cryoal.errors import ProjectError
from cryoal.io.index import PoolIndex

__all__ = ["project_index"]

log = logging.getLogger(__name__)


def project_index(
    project: Project,
    source: str | os.PathLike[str],
    *,
    pattern: str | Sequence[str] = "*.mrc",
    chunk_size: int = 50_000,
    checksums: bool = True,
    rebuild: bool = False,
) -> PoolIndex:
    """The project's pool index: built once from ``source``, then loaded from the project.

    The first call indexes ``source`` (a folder, or a ``.csv``/``.star`` list), saves the
    index as ``pool-index.npz`` in the project directory, and registers every entry in
    the project's ``pool`` table with chunked bulk inserts (``executemany``,
    ``chunk_size`` rows at a time, one transaction). Later calls with the same source
    load the saved index instead of walking the folder again.

    Parameters
    ----------
    project
        An open, writable project.
    source
        Folder of MRC files, or a CSV/STAR list (see
        :meth:`cryoal.io.index.PoolIndex.from_table`).
    pattern
        File pattern(s) for a folder.
    chunk_size
        Rows per ``executemany`` batch.
    checksums
        Record each file's header checksum (:func:`cryoal.io.base.entry_checksum`, one
        1 KiB read per file); without it the ``checksum`` column holds ``""`` and changed
        files are not detected.
    rebuild
        Index ``source`` again even when a saved index exists (new files are added to the
        pool table; :func:`cryoal.active.loop.register_pool` checks registered ones).

    Returns
    -------
    PoolIndex
        In pool order, with ``registered_in`` set to the project directory;
        ``project.pool_ids()`` lists the same ids.

    Raises
    ------
    ProjectError
        The project was built on another pool, or registered entries are missing.
    """
    src = Path(source).resolve()
    saved = project.layout.pool_index
    recorded = project.get_meta("pool_index_source")
    if not rebuild and saved.exists() and recorded == str(src):
        index = PoolIndex.load(saved)
        log.info("loaded the pool index of %d items from %s", len(index), saved)
        index.registered_in = project.path.resolve()
        return index
    if recorded is not None and recorded != str(src):
        raise ProjectError(
            f"project {project.path} indexes the pool {recorded}, not {src}; "
            "pass --project with a new directory for this pool"
        )
    index = PoolIndex.from_directory(src, pattern) if src.is_dir() else PoolIndex.from_table(src)
    box = index.box
    box_json = json.dumps([int(s) for s in box])
    rows = ((vid, rel, box_json, digest) for vid, rel, digest in index.rows(checksums=checksums))
    project.register_pool_rows(
        rows, root=index.root, box=box, voxel_size=index.voxel_size, chunk_size=chunk_size
    )
    index.save(saved)
    project.set_meta("pool_index_source", str(src))
    index.registered_in = project.path.resolve()
    return index

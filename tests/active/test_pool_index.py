"""cryoal.active.pool_index: a project's pool index, built once and registered in chunks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryoal.active import Project
from cryoal.active.loop import pool_entries, register_pool
from cryoal.active.pool_index import project_index
from cryoal.errors import PoolChangedError, ProjectError
from cryoal.io import VolumePool, write_volume
from cryoal.io.index import entry_checksum


@pytest.fixture
def real_dir(tmp_path: Path) -> Path:
    """Six 16³ volumes under ``a/`` and a stack of three, ``s.mrcs``."""
    root = tmp_path / "real"
    rng = np.random.default_rng(1)
    for i in range(6):
        write_volume(
            root / "a" / f"v{i}.mrc", rng.standard_normal((16, 16, 16)).astype(np.float32), 4.0
        )
    write_volume(root / "s.mrcs", rng.standard_normal((3, 16, 16, 16)).astype(np.float32), 4.0)
    return root


def test_project_index_built_once_and_registered_in_chunks(real_dir: Path, tmp_path: Path) -> None:
    vols = tmp_path / "vols"
    shutil.copytree(real_dir, vols)
    with Project(tmp_path / "proj") as project:
        index = project_index(project, vols, pattern=["*.mrc", "*.mrcs"], chunk_size=4)
        assert project.pool_ids() == list(index.ids)
        assert project.pool_size() == 9
        assert (tmp_path / "proj" / "pool-index.npz").exists()
        # the checksums are the round loop's: registering the same pool adds nothing
        entries = pool_entries(index.to_pool())
        assert [e.checksum for e in project.pool_entries()] == [e.checksum for e in entries]
        assert project.pool_entries()[0].checksum == entry_checksum(vols / "a" / "v0.mrc")
        assert register_pool(project, VolumePool.from_directory(vols, ["*.mrc", "*.mrcs"])) == 0
        # built once: a second call loads the saved index, without walking the folder
        shutil.copy(vols / "a" / "v5.mrc", vols / "a" / "v9.mrc")  # not indexed
        again = project_index(project, vols, pattern=["*.mrc", "*.mrcs"])
        assert again.ids == index.ids and again.registered_in == project.path.resolve()
        # the load checks the indexed files: a vanished one fails, naming it
        (vols / "a" / "v5.mrc").unlink()
        with pytest.raises(PoolChangedError, match=r"a/v5\.mrc \(vanished or moved\)"):
            project_index(project, vols, pattern=["*.mrc", "*.mrcs"])
        with pytest.raises(ProjectError, match="indexes the pool .* not .*other"):
            project_index(project, tmp_path / "other")


def test_project_index_from_a_csv_list_without_checksums(real_dir: Path, tmp_path: Path) -> None:
    pd.DataFrame({"path": [f"a/v{i}.mrc" for i in range(6)]}).to_csv(
        real_dir / "list.csv", index=False
    )
    with Project(tmp_path / "proj") as project:
        index = project_index(project, real_dir / "list.csv", checksums=False, chunk_size=2)
        assert project.pool_ids() == [f"a/v{i}.mrc" for i in range(6)]
        assert {e.checksum for e in project.pool_entries()} == {""}
        assert len(index) == 6

"""``cryoal select --index`` / a listed pool: the compact pool index is built once per project."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from cryoal.cli.main import cli

from cryoal.active import Project
from cryoal.io import write_volume
from cryoal.models import create, save_checkpoint


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(2)
    vols = tmp_path / "vols"
    for i in range(12):
        write_volume(
            vols / f"t{i % 2}" / f"p{i:02d}.mrc",
            rng.standard_normal((16,) * 3).astype(np.float32),
            4.0,
        )
    torch.manual_seed(0)
    ckpt = save_checkpoint(
        tmp_path / "m.pt",
        create("cb3d", 2, (1, 16, 16, 16)),
        class_names=["a", "b"],
        voxel_size=4.0,
    )
    return vols, ckpt


def _select(vols: Path, ckpt: Path, project: Path, *extra: str) -> str:
    args = ["select", "--volumes", str(vols), "--model", str(ckpt), "--strategy", "entropy"]
    args += ["--budget", "3", "--project", str(project), "--device", "cpu", "--no-progress"]
    result = CliRunner().invoke(cli, [*args, *extra])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_index_is_built_once_and_rebuilt_on_request(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    vols, ckpt = setup
    proj = tmp_path / "proj"
    out = _select(vols, ckpt, proj, "--index")
    assert "pool 12 volumes" in out
    assert (proj / "pool-index.npz").exists()
    noise = np.random.default_rng(99).standard_normal((16, 16, 16)).astype(np.float32)
    write_volume(vols / "t0" / "p99.mrc", noise, 4.0)  # (a constant volume is refused)
    out = _select(vols, ckpt, proj, "--index", "--new-round")
    assert "pool 12 volumes" in out  # the saved index: the folder was not walked again
    out = _select(vols, ckpt, proj, "--reindex", "--new-round")
    assert "pool 13 volumes" in out
    with Project(proj, readonly=True) as p:
        assert len(p.pool_ids()) == 13
        assert "t0/p99.mrc" in p.pool_ids()


def test_select_from_a_csv_list(setup: tuple[Path, Path], tmp_path: Path) -> None:
    vols, ckpt = setup
    listing = vols / "list.csv"
    ids = [f"t{i % 2}/p{i:02d}.mrc" for i in range(0, 12, 2)]
    pd.DataFrame({"path": ids}).to_csv(listing, index=False)
    proj = tmp_path / "proj"
    out = _select(listing, ckpt, proj, "--out", str(tmp_path / "picks.csv"))
    assert "pool 6 volumes" in out
    picks = pd.read_csv(tmp_path / "picks.csv")
    assert set(picks["id"]) <= set(ids) and len(picks) == 3
    assert picks["path"].map(lambda p: Path(p).exists()).all()
    with Project(proj, readonly=True) as p:
        assert p.pool_ids() == ids

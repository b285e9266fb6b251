"""``cryoal select`` pretrains by default (``--pretrain-epochs auto``): once per project, cached.

The CPU budget is shrunk through ``$CRYOAL_PRETRAIN_CPU_GFLOP`` so that a 200-volume pool
of 16³ boxes pretrains in 15 steps (cb3d: 4.76 GFLOP per step at batch 32).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from _simpool import cryoal_subprocess, make_pool
from click.testing import CliRunner, Result
from cryoal.cli.main import cli

from cryoal.active import Project, ProjectLayout
from cryoal.io import read_table, write_table
from cryoal.pretrain import load_encoder

#: the fast options of tests/cli/_simpool.py without --arch: the default architecture
BASE = ["--epochs", "2", "--device", "cpu", "--no-progress"]
BUDGET = {"CRYOAL_PRETRAIN_CPU_GFLOP": "72"}  # 72 // 4.76 = 15 steps of cb3d at 16³
ESTIMATE = re.compile(
    r"pretraining (\d+) steps of 32 volumes \(200 items\) on cpu: about [\d.]+ (s|min) "
    r"\(estimated from the first 2 steps, [\d.]+ s/step\)"
)


@pytest.fixture(scope="module")
def pool200_master(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("pool200") / "vols"
    return root, make_pool(root, n=200)


@pytest.fixture
def pool200(pool200_master: tuple[Path, pd.DataFrame], tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    src, truth = pool200_master
    shutil.copytree(src, tmp_path / "vols")
    return tmp_path / "vols", truth.copy()


def select(*args: object) -> Result:
    return CliRunner().invoke(cli, ["select", *(str(a) for a in args), *BASE])


def _sha(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_default_select_pretrains_once_and_round_2_reuses_the_cache(
    pool200: tuple[Path, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(*next(iter(BUDGET.items())))
    vols, truth = pool200
    proj = tmp_path / "proj"
    r1 = select("--volumes", vols, "--budget", 12, "--project", proj)
    assert r1.exit_code == 0, r1.output
    assert (
        "pretraining (auto): 15 steps of 32 volumes (2.5 passes over 200; CPU budget 72 GFLOP "
        "at 5 GFLOP/step)" in r1.output
    )
    m = ESTIMATE.search(r1.output)
    assert m is not None and m.group(1) == "15", r1.output
    assert r1.output.index("pretraining (auto)") < m.start()  # plan, then the estimate
    assert "pretrained encoder: models/encoder.pt" in r1.output
    enc = proj / ProjectLayout.ENCODER
    model, info = load_encoder(enc)
    assert info.arch.name == "cb3d" and list(info.arch.in_shape) == [1, 16, 16, 16]
    assert info.extra["pretrain"]["max_steps"] == 15 and info.extra["pretrain"]["epochs"] == 3
    assert len(info.extra["losses"]) == 3  # 6 + 6 + 3 steps
    with Project(proj) as p:
        rnd = p.get_round(1)
        sel = rnd.config["select_config"]
        assert (sel["arch"], sel["pretrain_epochs"], sel["pretrain_steps"]) == ("cb3d", 3, 15)
        assert rnd.config["resume_key"]["pretrain_steps"] == 15
    before = (_sha(enc), enc.stat().st_mtime_ns)

    table = read_table(proj / "picks" / "round-001.csv")
    table["label"] = table["id"].map(truth.set_index("id")["label"])
    write_table(tmp_path / "lab.csv", table)
    imp = CliRunner().invoke(
        cli, ["label", "import", str(tmp_path / "lab.csv"), "--project", str(proj)]
    )
    assert imp.exit_code == 0, imp.output
    r2 = select("--volumes", vols, "--budget", 6, "--project", proj)
    assert r2.exit_code == 0, r2.output
    assert "pretraining: 15 steps, as in round 1 of this project (encoder cached)" in r2.output
    assert ESTIMATE.search(r2.output) is None  # not trained again
    assert (_sha(enc), enc.stat().st_mtime_ns) == before
    with Project(proj) as p:
        rnd2 = p.get_round(2)
        assert rnd2.mode == "train" and rnd2.metrics["encoder"] == "models/encoder.pt"
        assert rnd2.config["select_config"]["pretrain_steps"] == 15


def test_tiny_pool_skips_pretraining_and_says_why(tmp_path: Path) -> None:
    vols = tmp_path / "vols"
    make_pool(vols, n=30)
    res = select("--volumes", vols, "--budget", 6, "--project", tmp_path / "proj")
    assert res.exit_code == 0, res.output
    assert (
        "pretraining (auto): skipped: the pool has 30 volumes, fewer than 200 (too few for "
        "contrastive pretraining to pay off; pass --pretrain-epochs N to pretrain anyway)"
    ) in res.output
    assert ESTIMATE.search(res.output) is None and "pretrained encoder" not in res.output
    assert not (tmp_path / "proj" / ProjectLayout.ENCODER).exists()
    with Project(tmp_path / "proj") as p:
        assert p.get_round(1).config["select_config"]["pretrain_epochs"] == 0
        assert "pretrain_epochs" not in p.get_round(1).config["resume_key"]


def test_explicit_pretrain_epochs_0_and_n(
    pool200: tuple[Path, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(*next(iter(BUDGET.items())))
    vols, _ = pool200
    off = select(
        "--volumes", vols, "--budget", 6, "--project", tmp_path / "p0", "--pretrain-epochs", 0
    )
    assert off.exit_code == 0, off.output
    assert "pretraining" not in off.output and "pretrained encoder" not in off.output
    assert not (tmp_path / "p0" / ProjectLayout.ENCODER).exists()

    one = select(
        "--volumes", vols, "--budget", 6, "--project", tmp_path / "p1", "--pretrain-epochs", 1
    )
    assert one.exit_code == 0, one.output
    assert "pretraining (auto)" not in one.output
    m = ESTIMATE.search(one.output)
    assert m is not None and m.group(1) == "6"  # one epoch: 200 // 32 steps
    _, info = load_encoder(tmp_path / "p1" / ProjectLayout.ENCODER)
    assert info.extra["pretrain"]["epochs"] == 1 and "max_steps" not in info.extra["pretrain"]

    bad = select("--volumes", vols, "--project", tmp_path / "p2", "--pretrain-epochs", "soon")
    assert bad.exit_code == 2 and "'soon' is neither 'auto' nor an integer" in bad.output
    neg = select("--volumes", vols, "--project", tmp_path / "p2", "--pretrain-epochs", "-3")
    assert neg.exit_code == 2 and "-3 is negative" in neg.output


def test_segmentation_maps_auto_to_no_pretraining() -> None:
    # the refusal is for explicit N only (tests/tasks/test_cli_pipelines.py); the
    # default auto reaches the masks check instead of the pretraining error
    res = CliRunner().invoke(cli, ["select", "--task", "segmentation", "--volumes", "nowhere"])
    assert res.exit_code == 2 and "pretrain" not in res.output


def test_interrupted_default_round_resumes_with_the_same_picks(
    pool200: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    vols, _ = pool200
    args = ["select", "--volumes", str(vols), "--budget", "8", *BASE]
    done = cryoal_subprocess([*args, "--project", str(tmp_path / "whole")], env=BUDGET)
    assert done.returncode == 0, done.stderr
    killed = cryoal_subprocess(
        [*args, "--project", str(tmp_path / "cut")],
        env={**BUDGET, "CRYOAL_TEST_KILL_AT": "training"},
    )
    assert killed.returncode != 0
    assert (tmp_path / "cut" / ProjectLayout.ENCODER).exists()  # pretrained before the kill
    again = cryoal_subprocess([*args, "--project", str(tmp_path / "cut")], env=BUDGET)
    assert again.returncode == 0, again.stderr
    assert "resumed round 1 from step 'started'" in again.stdout
    assert "pretraining: 15 steps, as in round 1" in again.stdout
    assert ESTIMATE.search(again.stdout) is None  # the cached encoder is reused
    a = read_table(tmp_path / "whole" / "picks" / "round-001.csv")
    b = read_table(tmp_path / "cut" / "picks" / "round-001.csv")
    assert list(a["id"]) == list(b["id"]) and len(a) == 8


def test_project_started_with_the_old_defaults_resumes_unchanged(
    pool200: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    """A round begun before auto (rb3d here, no pretraining) resumes; no encoder appears."""
    vols, _ = pool200
    proj = tmp_path / "old"
    old = ["select", "--volumes", str(vols), "--budget", "8", "--project", str(proj), *BASE]
    killed = cryoal_subprocess(
        [*old, "--arch", "rb3d", "--pretrain-epochs", "0"],
        env={**BUDGET, "CRYOAL_TEST_KILL_AT": "training"},
    )
    assert killed.returncode != 0
    res = cryoal_subprocess(old, env=BUDGET)  # today's defaults: no --arch, auto
    assert res.returncode == 0, res.stderr
    assert "resumed round 1 from step 'started'" in res.stdout
    assert "pretraining: off, as in round 1 of this project; pass --pretrain-epochs N" in res.stdout
    assert "untrained rb3d" in res.stdout
    assert not (proj / ProjectLayout.ENCODER).exists()
    again = cryoal_subprocess(old, env=BUDGET)  # complete, no new label: shown again
    assert again.returncode == 0, again.stderr
    assert "round 1 is complete and no label was added since" in again.stdout

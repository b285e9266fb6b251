"""``cryoal label import|export|status``: conflicts, history, typos, unknown ids."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from _simpool import make_pool
from click.testing import CliRunner
from cryoal.cli.main import cli

from cryoal.active import Project
from cryoal.active.loop import register_pool
from cryoal.io import VolumePool, read_table


@pytest.fixture(scope="module")
def pool_master(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("labelpool") / "vols"
    return root, make_pool(root, n=12)


@pytest.fixture
def project(pool_master: tuple[Path, pd.DataFrame], tmp_path: Path) -> Path:
    vols, _ = pool_master
    with Project(tmp_path / "proj") as proj:
        register_pool(proj, VolumePool.from_directory(vols))
    return tmp_path / "proj"


def run(*args: object) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_import_export_status_and_history(project: Path, tmp_path: Path) -> None:
    f1 = write(
        tmp_path / "a.csv",
        "id,label\ntomo0/p000.mrc,ribosome\ntomo1/p001.mrc,proteasome\ntomo0/p002.mrc,\n",
    )
    res = run("label", "import", f1, "--project", project, "--annotator", "ana")
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == [
        f"{f1}: 2 added, 0 unchanged, 0 replaced, 1 rows without a label skipped",
        "new classes: proteasome, ribosome",
        "labels now: 2 (proteasome 1, ribosome 1)",
    ]
    # a conflicting label is refused, nothing imported
    f2 = write(tmp_path / "b.csv", "id,label\ntomo0/p000.mrc,proteasome\ntomo0/p004.mrc,ribosome\n")
    res = run("label", "import", f2, "--project", project)
    assert res.exit_code == 2
    assert res.output.strip() == (
        f"Error: {f2}: 1 label(s) conflict with labels already in the project, e.g. id "
        "tomo0/p000.mrc: stored 'ribosome', new 'proteasome'; nothing was imported. Pass "
        "--overwrite to replace them (the old labels are kept in history)"
    )
    res = run("label", "import", f2, "--project", project, "--overwrite", "--annotator", "bob")
    assert res.exit_code == 0, res.output
    assert f"{f2}: 1 added, 0 unchanged, 1 replaced" in res.output

    out = tmp_path / "export.csv"
    res = run("label", "export", "--project", project, "--out", out, "--history")
    assert res.exit_code == 0 and "wrote 4 labels" in res.output
    table = read_table(out)
    current = table[table["replaced"].isna()]
    assert dict(zip(current["id"], current["label"], strict=True)) == {
        "tomo0/p000.mrc": "proteasome",
        "tomo1/p001.mrc": "proteasome",
        "tomo0/p004.mrc": "ribosome",
    }
    old = table[table["replaced"].notna()]
    assert old[["id", "label", "annotator"]].values.tolist() == [
        ["tomo0/p000.mrc", "ribosome", "ana"]
    ]

    star = tmp_path / "export.star"
    assert run("label", "export", "--project", project, "--out", star).exit_code == 0
    # pool order (ids sorted by path)
    assert read_table(star)["id"].tolist() == ["tomo0/p000.mrc", "tomo0/p004.mrc", "tomo1/p001.mrc"]

    res = run("label", "status", "--project", project)
    assert res.exit_code == 0
    assert res.output.splitlines() == [
        "labelled: 3 of 12 volumes",
        "  class       labels",
        "  proteasome  2",
        "  ribosome    1",
        "by source: expert 3",
    ]


def test_class_typo_suggests_nearest(project: Path, tmp_path: Path) -> None:
    run(
        "label",
        "import",
        write(tmp_path / "a.csv", "id,label\ntomo0/p000.mrc,ribosome\ntomo1/p001.mrc,proteasome\n"),
        "--project",
        project,
    )
    typo = write(
        tmp_path / "t.csv", "id,label\ntomo0/p002.mrc,ribosome\ntomo1/p003.mrc,proteasom\n"
    )
    res = run("label", "import", typo, "--project", project)
    assert res.exit_code == 2
    assert res.output.strip() == (
        f"Error: {typo}: label 'proteasom' (id tomo1/p003.mrc) is not a known class; did you "
        "mean 'proteasome'? Known classes: proteasome, ribosome. Fix the file, or pass "
        "--allow-new-classes if it really is a new class"
    )
    with Project(project, readonly=True) as p:
        assert len(p.label_map()) == 2
    res = run("label", "import", typo, "--project", project, "--allow-new-classes")
    assert res.exit_code == 0 and "new classes: proteasom" in res.output


def test_unknown_ids_rejected(project: Path, tmp_path: Path) -> None:
    bad = write(tmp_path / "u.csv", "id,label\ntomo0/p000.mrc,a\nelsewhere/x.mrc,b\n")
    res = run("label", "import", bad, "--project", project)
    assert res.exit_code == 2
    msg = res.output.strip()
    assert msg.startswith(f"Error: {bad}: 1 of 2 rows ") and "line 3 'elsewhere/x.mrc'" in msg
    with Project(project, readonly=True) as p:
        assert p.label_map() == {}


def test_import_star_file(
    project: Path, tmp_path: Path, pool_master: tuple[Path, pd.DataFrame]
) -> None:
    from cryoal.io import write_table

    _, truth = pool_master
    star = tmp_path / "l.star"
    write_table(star, truth.iloc[:5])
    res = run("label", "import", star, "--project", project, "--source", "import")
    assert res.exit_code == 0, res.output
    with Project(project, readonly=True) as p:
        assert p.label_map() == dict(zip(truth["id"][:5], truth["label"][:5], strict=True))
        assert {r.source for r in p.labels()} == {"import"}


def test_missing_project_and_no_pool(tmp_path: Path) -> None:
    f = write(tmp_path / "a.csv", "id,label\nx.mrc,a\n")
    res = run("label", "import", f, "--project", tmp_path / "nothing")
    assert res.exit_code == 2
    assert res.output.strip() == (
        f"Error: no cryoal project at {tmp_path / 'nothing'} (missing project.sqlite); run "
        "`cryoal select --project DIR ...` to create one"
    )
    Project(tmp_path / "bare").close()
    res = run("label", "import", f, "--project", tmp_path / "bare")
    assert res.exit_code == 2
    assert res.output.strip() == (
        f"Error: project {tmp_path / 'bare'} has no pool yet; run `cryoal select --volumes DIR "
        f"--project {tmp_path / 'bare'}` first (or pass --labels to it)"
    )
    res = run("status", "--project", tmp_path / "bare")
    assert res.exit_code == 0 and "rounds: none yet (run `cryoal select`)" in res.output
    shutil.rmtree(tmp_path / "bare")

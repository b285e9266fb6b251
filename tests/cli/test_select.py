"""``cryoal select`` and ``cryoal status``: the rounds, their outputs, resume, bad input."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from _simpool import FAST_ARGS, cryoal_subprocess, make_pool
from click.testing import CliRunner, Result
from cryoal.cli.main import cli

from cryoal import models
from cryoal.active import Project
from cryoal.active.project import _command_name
from cryoal.io import read_table, write_table


@pytest.fixture(scope="module")
def pool_master(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("selectpool") / "vols"
    return root, make_pool(root)


@pytest.fixture
def pool(pool_master: tuple[Path, pd.DataFrame], tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    src, truth = pool_master
    shutil.copytree(src, tmp_path / "vols")
    return tmp_path / "vols", truth.copy()


def invoke(*args: object) -> object:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    return result


def select_caught(*args: object) -> Result:
    """``cryoal select ARGS`` with the fast options; errors become exit codes (bad input)."""
    return CliRunner().invoke(cli, ["select", *(str(a) for a in args), *FAST_ARGS])


def fill_labels(picks_csv: Path, truth: pd.DataFrame, out: Path) -> Path:
    """What the expert does: fill the picks file's label column."""
    table = read_table(picks_csv)
    table["label"] = table["id"].map(truth.set_index("id")["label"])
    write_table(out, table)
    return out


def test_two_rounds_with_label_import(pool: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    vols, truth = pool
    proj = tmp_path / "proj"
    r1 = invoke(
        "select",
        "--volumes",
        vols,
        "--budget",
        6,
        "--project",
        proj,
        "--out",
        tmp_path / "first.csv",
        *FAST_ARGS,
    )
    assert r1.exit_code == 0, r1.output
    assert (
        "round 1: cold start (auto on an untrained cb3d); strategy auto; pool 30 "
        "volumes, 30 unlabelled; picked 6" in r1.output
    )
    assert "auto chose typicality: no labels yet" in r1.output  # the default strategy is auto
    assert f"picks:   {proj / 'picks' / 'round-001.csv'}  (+ round-001.star)" in r1.output
    assert f"gallery: {proj / 'gallery' / 'round-001.png'}" in r1.output
    assert f"cryoal label import LABELS.csv --project {proj}" in r1.output
    first = read_table(tmp_path / "first.csv")
    assert len(first) == 6
    assert read_table(proj / "picks" / "round-001.csv")["id"].tolist() == first["id"].tolist()
    assert read_table(proj / "picks" / "round-001.star")["id"].tolist() == first["id"].tolist()
    for name in ("config/round-001.json", "models/round-001.pt"):
        assert (proj / name).is_file()

    labelled = fill_labels(tmp_path / "first.csv", truth, tmp_path / "first-labelled.csv")
    imp = invoke("label", "import", labelled, "--project", proj, "--annotator", "ana")
    assert imp.exit_code == 0, imp.output
    assert (
        f"{labelled}: 6 added, 0 unchanged, 0 replaced, 0 rows without a label skipped"
        in imp.output
    )

    r2 = invoke("select", "--volumes", vols, "--budget", 6, "--project", proj, *FAST_ARGS)
    assert r2.exit_code == 0, r2.output
    assert (
        "round 2: trained on 6 labels; strategy auto; pool 30 volumes, "
        "24 unlabelled; picked 6" in r2.output
    )
    assert "auto chose typicality: 6 labels over 3 classes (2.0 per class)" in r2.output
    second = read_table(proj / "picks" / "round-002.csv")
    assert not set(second["id"]) & set(first["id"])
    classes = sorted(set(truth.set_index("id").loc[first["id"], "label"]))
    assert [c for c in second.columns if c.startswith("p_")] == [f"p_{c}" for c in classes]
    assert (second["strategy"] == "auto").all() and (second["round"] == 2).all()
    assert (second["strategy_choice"] == "typicality").all()

    st = invoke("status", "--project", proj)
    assert st.exit_code == 0, st.output
    lines = st.output.splitlines()
    assert "labelled: 6 of 30 volumes" in lines
    assert any(line.split()[:6] == ["1", "cold", "auto", "6", "0", "picked"] for line in lines)
    assert any(line.split()[:6] == ["2", "train", "auto", "6", "6", "picked"] for line in lines)
    with Project(proj, readonly=True) as p:
        assert {r.annotator for r in p.labels()} == {"ana"}
        assert p.label_map() == truth.set_index("id").loc[first["id"], "label"].to_dict()

    again = invoke("select", "--volumes", vols, "--budget", 6, "--project", proj, *FAST_ARGS)
    assert again.exit_code == 0
    assert "round 2 is complete and no label was added since; showing its picks" in again.output


def test_labels_option_and_score_only(pool: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    vols, truth = pool
    write_table(tmp_path / "seed.csv", truth.iloc[:9])
    res = invoke(
        "select",
        "--volumes",
        vols,
        "--labels",
        tmp_path / "seed.csv",
        "--budget",
        4,
        "--strategy",
        "entropy",
        "--project",
        tmp_path / "p",
        *FAST_ARGS,
    )
    assert res.exit_code == 0, res.output
    assert "labels from" in res.output and "9 added, 0 already known, 0 replaced" in res.output
    assert "round 1: trained on 9 labels; strategy entropy" in res.output
    ckpt = tmp_path / "p" / "models" / "round-001.pt"
    res = invoke(
        "select",
        "--volumes",
        vols,
        "--model",
        ckpt,
        "--budget",
        3,
        "--strategy",
        "margin",
        "--project",
        tmp_path / "q",
        *FAST_ARGS,
    )
    assert res.exit_code == 0, res.output
    assert f"round 1: scored with {ckpt}; strategy margin" in res.output


def test_help_and_strategy_list() -> None:
    res = invoke("select", "--help")
    assert (
        res.exit_code == 0
        and "Example usage:" in res.output
        and "cryoal select --demo" in res.output
    )
    res = invoke("select", "--list-strategies")
    assert "expected-gradnorm" in res.output.split() and "coreset" in res.output.split()
    line = next(x for x in res.output.splitlines() if x.startswith("expected-gradnorm "))
    assert "Σ_y p(y|x)·‖∇θ CE(f(x), y)‖" in line and "= entropy-gradnorm" in line


# --------------------------------------------------------------------------- bad input
def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    res = select_caught("--volumes", tmp_path / "empty", "--project", tmp_path / "p")
    assert res.exit_code == 2
    assert res.output.strip() == (
        f"Error: {tmp_path / 'empty'}: no files matching *.mrc under this folder; check the "
        "path or the pattern (e.g. '*.mrc*' also finds .mrc.gz)"
    )


def test_labels_for_unknown_ids(pool: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    vols, _ = pool
    (tmp_path / "l.csv").write_text("id,label\ntomo0/p000.mrc,ball\nnope/p999.mrc,rod\n")
    res = select_caught(
        "--volumes", vols, "--labels", tmp_path / "l.csv", "--project", tmp_path / "p"
    )
    assert res.exit_code == 2
    msg = res.output.strip()
    assert msg.startswith(f"Error: {tmp_path / 'l.csv'}: 1 of 2 rows ")
    assert "id not in the pool: line 3 'nope/p999.mrc'" in msg
    assert len(res.output.strip().splitlines()) == 1


def test_budget_larger_than_unlabelled_pool(
    pool: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    vols, truth = pool
    write_table(tmp_path / "seed.csv", truth.iloc[:6])
    res = select_caught(
        "--volumes",
        vols,
        "--labels",
        tmp_path / "seed.csv",
        "--budget",
        "25",
        "--project",
        tmp_path / "p",
    )
    assert res.exit_code == 2
    assert res.output.splitlines()[-1] == (
        "Error: budget 25 exceeds the 24 unlabelled volumes left in the pool of 30 "
        "(6 labelled); lower --budget or add volumes"
    )


def test_model_box_mismatch(pool: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    vols, _ = pool
    model = models.create("cb3d", 3, (1, 24, 24, 24), channels=(4,))
    models.save_checkpoint(tmp_path / "m.pt", model, class_names=["a", "b", "c"], voxel_size=10.0)
    res = select_caught(
        "--volumes", vols, "--model", tmp_path / "m.pt", "--project", tmp_path / "p"
    )
    assert res.exit_code == 2
    assert res.output.strip() == (
        f"Error: {tmp_path / 'm.pt'}: model 'cb3d' was trained on boxes of 24×24×24 voxels "
        "but the volumes are 16×16×16; crop/pad or resample them to the training box, or "
        "train a new model"
    )


def test_unknown_strategy_suggests(pool: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    vols, _ = pool
    res = select_caught(
        "--volumes", vols, "--strategy", "expected-gradnrom", "--project", tmp_path / "p"
    )
    assert res.exit_code == 2
    assert "expected-gradnorm" in res.output and len(res.output.strip().splitlines()) == 1


def test_read_only_project_directory(pool: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    vols, _ = pool
    proj = tmp_path / "ro"
    proj.mkdir()
    os.chmod(proj, 0o555)
    try:
        argv = [
            sys.executable,
            "-m",
            "cryoal.cli",
            "select",
            "--volumes",
            str(vols),
            "--project",
            str(proj),
            *FAST_ARGS,
        ]
        if os.geteuid() == 0:  # root ignores permissions unless it drops the capability
            if shutil.which("capsh") is None:
                pytest.skip("running as root without capsh")
            argv = ["capsh", "--drop=cap_dac_override,cap_fowner", "--", "-c", shlex.join(argv)]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    finally:
        os.chmod(proj, 0o755)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == (
        f"Error: cannot create project directory {proj} (Permission denied); choose another "
        "--project or fix the permissions"
    ) or out.stderr.strip() == (
        f"Error: project directory {proj} is not writable (Permission denied); choose another "
        "--project or fix the permissions (chmod u+w)"
    )


def test_volume_vanishes_between_runs(pool: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    vols, _ = pool
    args = [
        "select",
        "--volumes",
        str(vols),
        "--budget",
        "4",
        "--project",
        str(tmp_path / "p"),
        *FAST_ARGS,
    ]
    killed = cryoal_subprocess(args, env={"CRYOAL_TEST_KILL_AT": "trained"})
    assert killed.returncode == -signal.SIGKILL
    os.remove(vols / "tomo1" / "p007.mrc")
    res = cryoal_subprocess(args)
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"Error: 1 volume(s) registered in project {tmp_path / 'p'} are missing from "
        f"{vols} (first: tomo1/p007.mrc); restore them, or start a new --project"
    )


def test_second_writer_is_refused(pool: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    vols, _ = pool
    proj = Project(tmp_path / "p")
    with proj.lock():
        res = select_caught("--volumes", vols, "--project", tmp_path / "p", "--lock-timeout", "0.3")
    assert res.exit_code == 2
    assert res.output.startswith(
        f"Error: project {tmp_path / 'p'} is locked by pid {os.getpid()} "
        f"({_command_name()}, since "  # 'pytest', or 'python' in an xdist worker
    )


# --------------------------------------------------------------------------- resume
@pytest.fixture(scope="module")
def round2_setup(pool_master: tuple[Path, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory):
    """A project after round 1 (cold start), its picks labelled in a file, and the
    reference picks of an uninterrupted round 2 run in a subprocess."""
    vols, truth = pool_master
    base = tmp_path_factory.mktemp("resume")
    proj = base / "proj"
    r1 = cryoal_subprocess(
        ["select", "--volumes", str(vols), "--budget", "6", "--project", str(proj), *FAST_ARGS]
    )
    assert r1.returncode == 0, r1.stderr
    labels = fill_labels(proj / "picks" / "round-001.csv", truth, base / "labels.csv")
    ref = base / "ref"
    shutil.copytree(proj, ref)
    args = round2_args(vols, ref, labels)
    done = cryoal_subprocess(args)
    assert done.returncode == 0, done.stderr
    return vols, proj, labels, read_table(ref / "picks" / "round-002.csv")


def round2_args(vols: Path, proj: Path, labels: Path) -> list[str]:
    return [
        "select",
        "--volumes",
        str(vols),
        "--labels",
        str(labels),
        "--budget",
        "5",
        "--project",
        str(proj),
        *FAST_ARGS,
    ]


KILL_FAST = ["training", "scoring", "picks"]
KILL_SLOW = ["registered", "started", "trained", "scored", "picked"]


@pytest.mark.parametrize(
    "point", [*KILL_FAST, *[pytest.param(p, marks=pytest.mark.slow) for p in KILL_SLOW]]
)
def test_killed_select_resumes_to_same_picks(round2_setup, tmp_path: Path, point: str) -> None:
    vols, proj0, labels, reference = round2_setup
    proj = tmp_path / "proj"
    shutil.copytree(proj0, proj)
    args = round2_args(vols, proj, labels)
    killed = cryoal_subprocess(args, env={"CRYOAL_TEST_KILL_AT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with Project(proj, readonly=True) as p:
        if point == "registered":  # killed before the labels were imported
            assert p.label_map() == {} and p.latest_round().n == 1  # type: ignore[union-attr]
        else:  # labels imported before the kill are kept
            assert len(p.label_map()) == 6 and p.latest_round().n == 2  # type: ignore[union-attr]
    resumed = cryoal_subprocess(args)
    assert resumed.returncode == 0, resumed.stderr
    if point not in ("registered", "picked"):
        assert "resumed round 2 from step" in resumed.stdout
    got = read_table(proj / "picks" / "round-002.csv")
    pd.testing.assert_frame_equal(got, reference)
    assert not list(proj.glob("**/.*.tmp*"))  # no half-written file left behind
    with Project(proj, readonly=True) as p:
        assert p.label_map() == read_table(labels).set_index("id")["label"].to_dict()
        assert [r.status for r in p.rounds()] == ["picked", "picked"]


def test_demo_with_a_demo_folder_in_the_cwd(demo_cwd: Path) -> None:
    res = invoke(
        "select", "--demo", "--rounds", "1", "--budget", "4", "--project", "proj",
        "--device", "cpu", "--no-progress",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "demo pool: 12 simulated subtomograms of 2 classes (6ZU5, 7PBL)" in res.output


def test_demo_runs_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = tmp_path / "tiny.yaml"
    manifest.write_text(
        "name: tiny-demo\nkind: subtomograms\ndescription: tiny\nseed: 0\n"
        "structures: [6ZU5, 7PBL]\nbox: 16\nvoxel_size: 20.0\nn_per_class: 6\nsnr: 1.0\n"
        "tilt_range: [-60, 60]\ndefocus_um: 5.0\nnoise: white\ntest: {n_per_class: 2}\n"
    )
    monkeypatch.setenv("CRYOAL_CACHE", str(tmp_path / "cache"))
    res = invoke(
        "select",
        "--demo",
        "--demo-manifest",
        manifest,
        "--rounds",
        "2",
        "--budget",
        "4",
        "--project",
        tmp_path / "demo",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--no-progress",
    )
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert any(
        line.startswith("demo pool: 12 simulated subtomograms of 2 classes (6ZU5, 7PBL)")
        for line in lines
    )
    assert any(line.startswith("round 1: cold  auto ") for line in lines)
    assert any(
        line.startswith("round 2: train auto ") and "labels   4  test accuracy" in line
        for line in lines
    )
    with Project(tmp_path / "demo", readonly=True) as p:
        assert len(p.label_map()) == 8 and {r.source for r in p.labels()} == {"oracle"}
        assert 0.0 <= p.get_round(2).metrics["test_accuracy"] <= 1.0


def test_invert_scores_a_bright_pool_like_the_dark_one(
    pool: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    """--invert reads -x: a contrast-inverted copy scored with --invert gives the picks of
    the original pool (same model, same strategy)."""
    from cryoal.io import read_volume, write_volume

    vols, _ = pool
    bright = tmp_path / "bright"
    for f in sorted(vols.rglob("*.mrc")):
        v = read_volume(f)
        (bright / f.parent.relative_to(vols)).mkdir(parents=True, exist_ok=True)
        write_volume(bright / f.relative_to(vols), -v.data, voxel_size=v.voxel_size)
    model = models.create("cb3d", 3, (1, 16, 16, 16), channels=(4,))
    ckpt = models.save_checkpoint(
        tmp_path / "m.pt", model, class_names=["a", "b", "c"], voxel_size=10.0
    )
    common = ["--model", ckpt, "--strategy", "entropy", "--budget", "5"]
    runs = {}
    for name, folder, flags in (
        ("dark", vols, []),
        ("bright-inverted", bright, ["--invert"]),
        ("bright", bright, []),
    ):
        out = tmp_path / f"{name}.csv"
        res = select_caught(
            "--volumes", folder, "--project", tmp_path / name, "--out", out, *common, *flags
        )
        assert res.exit_code == 0, res.output
        runs[name] = read_table(out)
    cols = ["id", "rank", "score"]
    pd.testing.assert_frame_equal(runs["bright-inverted"][cols], runs["dark"][cols])
    assert not runs["bright"]["score"].equals(runs["dark"]["score"])


def test_every_task_has_one_select_pipeline_and_options_round_trip() -> None:
    from cryoal.cli.select import _PIPELINES, SelectOptions, pipeline_of

    from cryoal import tasks

    assert set(_PIPELINES) == set(tasks.available())
    assert pipeline_of("Image2D").task is tasks.get("image2d")
    opts = SelectOptions.from_click({"budget": 5, "box": 32, "copick": None})
    assert opts.budget == 5 and opts.tomo.box == 32 and opts.tomo.copick is None
    kw = opts.as_kw()
    assert kw["box"] == 32 and kw["budget"] == 5 and "pool_options" not in kw
    assert "list_strategies" not in opts.arguments()

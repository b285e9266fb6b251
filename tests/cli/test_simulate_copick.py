"""``cryoal simulate tomo-copick``: builds a copick project, one-line errors, not a manifest."""

from __future__ import annotations

import os
from pathlib import Path

import copick
import pytest
from click.testing import CliRunner
from cryoal.cli.main import cli
from cryoal.cli.simulate import BUILDERS

from cryoal.manifests import list_manifests

SMALL = ["--shape", "48", "64", "64", "--per-class", "1", "--tomograms", "1", "--no-progress"]


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_builds_a_copick_project(tmp_path: Path) -> None:
    out = tmp_path / "proj"
    code, stdout, stderr = _run(
        "simulate", "tomo-copick", "--out", str(out), *SMALL, "--relion", "--device", "cpu"
    )
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0] == (
        f"wrote copick project {out}: 1 tomograms 64x64x48 at 10 Å, 6 particles (ribosome 1, "
        "chaperonin 1, mtor 1, ruvab 1, glua3-ntd 1, enolase 1)"
    )
    assert lines[1] == f"config: {out / 'copick_config.json'}"
    # the hint leaves --project to select's default (./cryoal-project), as label
    # import/export/status do, rather than putting cryoal's state inside the copick folder
    assert lines[2] == (
        f"next: cryoal select --copick {out / 'copick_config.json'} --object particle "
        "--user-id picker --box 32 --budget 12"
    )
    root = copick.from_file(str(out / "copick_config.json"))
    assert [r.name for r in root.runs] == ["TS_001"]
    picks = root.get_run("TS_001").get_picks(object_name="ribosome", user_id="curation")
    assert len(picks) == 1 and len(picks[0].points) == 1
    assert (out / "relion" / "particles.star").exists()
    assert (out / "relion" / "tomograms" / "TS_001.mrc").exists()


def test_bad_arguments_exit_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    code, _, err = _run("simulate", "tomo-copick", "--out", str(tmp_path / "full"), *SMALL)
    assert code == 2
    assert err.strip().splitlines() == [
        f"Error: {tmp_path / 'full'} exists and is not empty; choose a new folder, or "
        "overwrite it (--overwrite)"
    ]
    code, _, err = _run(
        "simulate", "tomo-copick", "--out", str(tmp_path / "o"), "--shape", "8", "8", "8"
    )
    assert code == 2 and err.strip().splitlines() == [
        "Error: structure 6ZU5 (radius 14.0 nm) does not fit the (8, 8, 8) crop at 10.0 Å/voxel; "
        "use a larger crop or voxel size"
    ]
    code, _, err = _run("simulate", "tomo-copick", "--out", str(tmp_path / "o"), "--user-id", "a_b")
    assert code == 2 and err.strip().splitlines()[-1] == (
        "Error: user_id 'a_b' is not a valid copick name (no spaces, underscores or "
        "<>:\"/\\|?*); try 'a-b'"
    )
    code, _, err = _run("simulate", "tomo-copick", "--per-class", "-1")
    assert code == 2 and "'--per-class': -1 is not in the range x>=0" in err
    assert not (tmp_path / "o").exists()


def test_builder_names_are_not_manifests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not set(BUILDERS) & set(list_manifests())
    code, out, _ = _run("simulate", "--list")
    assert code == 0 and any(
        line.split()[:2] == ["tomo-copick", "builder"] for line in out.splitlines()
    )
    # a folder named like the builder in the working directory does not shadow it
    monkeypatch.chdir(tmp_path)
    os.mkdir("tomo-copick")
    code, out, err = _run("simulate", "tomo-copick", "--out", "p", *SMALL)
    assert code == 0, err
    assert (tmp_path / "p" / "copick_config.json").exists()
    code, out, _ = _run("simulate", "tomo-copick", "--help")
    assert code == 0 and "simulate tomo-copick [OPTIONS]" in out.splitlines()[0]
    assert "Example usage:" in out
    code, out, _ = _run("simulate", "--help")
    assert code == 0 and "cryoal simulate tomo-copick --out" in out

"""``cryoal simulate``: list, build, determinism, verify, one-line errors; CliRunner + script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryoal.cli.main import cli

from cryoal.io import VolumePool, read_labels

TINY = """\
name: tiny
kind: subtomograms
seed: 1
structures: [7PBL, 3ENL]
box: 16
n_per_class: 2
snr: 0.5
test: {n_per_class: 1}
"""


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def _manifest(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def test_list_shows_bundled_manifests() -> None:
    code, out, _ = _run("simulate", "--list")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert {"demo", "snr-benchmark", "segmentation-demo", "shrec2021"} <= set(names)
    assert any(line.startswith("demo") and "subtomograms" in line for line in out.splitlines())


def test_build_layout_and_config(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, stdout, _ = _run(
        "simulate", str(_manifest(tmp_path)), "--out", str(out), "--device", "cpu"
    )
    assert code == 0, stdout
    assert "wrote 6 volume(s) of 'tiny'" in stdout
    pool = VolumePool.from_directory(out / "volumes").with_labels(out / "labels.csv")
    assert pool.ids == ["sub_00000.mrc", "sub_00001.mrc", "sub_00002.mrc", "sub_00003.mrc"]
    assert read_labels(out / "labels.star")["id"].tolist() == pool.ids
    assert (out / "test" / "labels.csv").exists()
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 1 and config["arguments"]["manifest"] == "tiny"
    assert (out / "manifest.yaml").read_text() == TINY


def test_seed_option_decides_the_volumes(tmp_path: Path) -> None:
    m = str(_manifest(tmp_path))
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        assert _run("simulate", m, "--out", str(tmp_path / name), "--seed", seed)[0] == 0
    data = {n: (tmp_path / n / "volumes" / "sub_00001.mrc").read_bytes()[1024:] for n in "abc"}
    assert data["a"] == data["b"] and data["a"] != data["c"]


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    code, _, err = _run("simulate", "dmeo", "--out", str(tmp_path))
    assert code == 2
    assert err.strip().splitlines() == [
        "Error: unknown manifest 'dmeo': not a bundled name and not a .yaml file. Did you mean "
        "'demo'? Bundled: czii-cryoet-10440, demo, segmentation-demo, shrec2020, shrec2021, "
        "snr-benchmark (cryoal simulate --list)"
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.replace("snr: 0.5", "snr: zero"))
    code, _, err = _run("simulate", str(bad), "--out", str(tmp_path / "o"))
    assert code == 2 and "bad.yaml: key 'snr' must be a positive number" in err
    code, _, err = _run("simulate", str(_manifest(tmp_path)))
    assert code == 2 and "give --out DIR" in err


def test_bundled_demo_wins_over_a_demo_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()
    code, out, err = _run("simulate", "demo", "--out", "built")
    assert code == 0, err
    assert "wrote 128 volume(s) of 'demo' to built" in out
    assert len(VolumePool.from_directory(tmp_path / "built" / "volumes")) == 96
    code, _, err = _run("simulate", "./demo", "--out", "x")
    assert (
        code == 2
        and err.strip().splitlines()[-1] == "Error: demo: is a folder, not a manifest file"
    )


def test_verify_external_layout(tmp_path: Path) -> None:
    data = tmp_path / "shrec"
    for i in range(10):
        (data / f"model_{i}").mkdir(parents=True)
        for name in ("reconstruction.mrc", "class_mask.mrc", "particle_locations.txt"):
            (data / f"model_{i}" / name).write_bytes(b"x")
    code, out, _ = _run("simulate", "shrec2021", "--verify", str(data))
    assert code == 0 and out.splitlines()[-1].startswith(
        f"OK {data} matches 'shrec2021': 30 file(s)"
    )
    pinned = tmp_path / "pinned.yaml"
    code, out, _ = _run(
        "simulate", "shrec2021", "--verify", str(data), "--write-checksums", str(pinned)
    )
    assert code == 0 and pinned.exists()
    (data / "model_3" / "class_mask.mrc").write_bytes(b"y")
    code, out, err = _run("simulate", str(pinned), "--verify", str(data))
    assert code == 2 and "FAIL model_3/class_mask.mrc: sha256" in out
    assert "does not match manifest 'shrec2021' (1 problem(s) above)" in err


def _cryoal_script() -> str:
    found = shutil.which("cryoal")
    if found:
        return found
    return str(Path(sys.executable).with_name("cryoal"))


def test_installed_script_lists_and_builds(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [_cryoal_script(), "simulate", str(_manifest(tmp_path)), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "o" / "volumes").glob("*.mrc"))) == 4

"""Manifests: schema validation with file + key in every error, build layouts, verify."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cryoal.errors import ManifestError
from cryoal.io import VolumePool, read_volume
from cryoal.manifests import (
    build,
    list_manifests,
    load_manifest,
    parse_manifest,
    verify,
    write_checksums,
)

TINY = """\
name: tiny
kind: subtomograms
seed: 3
structures: [7PBL, 3ENL]
box: 16
voxel_size: 10.0
n_per_class: 3
snr: 0.5
shift_max: 1.0
test: {n_per_class: 2}
"""


def _unlabelled(path: Path) -> bytes:
    """File bytes without the MRC header's text labels (bytes 224-1023: creation time)."""
    raw = path.read_bytes()
    return raw[:224] + raw[1024:]


def _write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_bundled_manifest_validates() -> None:
    names = list_manifests()
    assert {"demo", "snr-benchmark", "segmentation-demo", "shrec2020", "shrec2021"} <= set(names)
    for name in names:
        m = load_manifest(name)
        assert m.name == name and m.description


def test_snr_benchmark_is_the_classic_setup() -> None:
    spec = load_manifest("snr-benchmark").spec
    assert spec["box"] == 32 and spec["voxel_size"] == 10.0
    assert spec["snr"] == [math.inf, 0.1, 0.05, 0.03, 0.01]
    assert spec["tilt_range"] == [-60.0, 60.0] and spec["defocus_um"] == 5.0
    assert spec["voltage_kv"] == 300.0 and len(spec["structures"]) == 10


def test_demo_is_small() -> None:
    spec = load_manifest("demo").spec
    n = spec["n_per_class"] * len(spec["structures"])
    assert n <= 128 and spec["box"] <= 32 and spec["test"] is not None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            {"snrr": 0.1},
            r"m\.yaml: unknown key 'snrr' for kind 'subtomograms'\. Did you mean 'snr'\?",
        ),
        ({"snr": -1}, r"m\.yaml: key 'snr' must be a positive number"),
        ({"box": "big"}, r"m\.yaml: key 'box' must be an integer, got 'big'"),
        (
            {"structures": ["7PBL", "6ZU6"]},
            r"m\.yaml: key 'structures\[1\]' names unknown structure '6ZU6'\. Did you mean '6ZU5'\?",
        ),
        (
            {"structures": [{"name": "mine", "path": "nope.mrc"}]},
            r"m\.yaml: key 'structures\[0\]\.path' points to .*nope\.mrc, which does not exist",
        ),
        ({"defocus_um": -5}, r"m\.yaml: key 'defocus_um' must be a positive underfocus in µm"),
        ({"tilt_range": [60, -60]}, r"m\.yaml: key 'tilt_range' must be \[min, max\]"),
        (
            {"test": {"n_per_clas": 2}},
            r"m\.yaml: key 'test\.n_per_clas' is not a key of a test split",
        ),
        (
            {"kind": "movies"},
            r"m\.yaml: key 'kind' must be one of subtomograms, tomograms, external",
        ),
        ({"noise": "pink"}, r"m\.yaml: key 'noise' must be one of white, two-stage"),
    ],
)
def test_schema_errors_name_file_and_key(tmp_path: Path, edit: dict, message: str) -> None:
    doc = yaml.safe_load(TINY)
    doc.update(edit)
    with pytest.raises(ManifestError, match=message):
        load_manifest(_write(tmp_path, yaml.safe_dump(doc)))


def test_unknown_manifest_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="unknown manifest 'dmeo'.*Did you mean 'demo'"):
        load_manifest("dmeo")
    with pytest.raises(ManifestError, match=r"bad\.yaml: not valid YAML"):
        load_manifest(_write(tmp_path, "name: [unclosed\n", "bad.yaml"))
    with pytest.raises(ManifestError, match="a manifest must be a YAML mapping"):
        parse_manifest("- 1\n- 2\n")


def test_bundled_name_wins_over_a_folder_of_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()  # e.g. the output of a previous `cryoal simulate demo --out demo`
    m = load_manifest("demo")
    assert m.name == "demo" and m.source == "demo.yaml (bundled)"
    assert load_manifest(Path("demo")).source == "demo.yaml (bundled)"
    # clearly a path: read as a file, and a folder is not one
    with pytest.raises(ManifestError, match=r"^demo: is a folder, not a manifest file$"):
        load_manifest("./demo")
    with pytest.raises(ManifestError, match=r"demo\.yaml: manifest file not found"):
        load_manifest("demo.yaml")
    with pytest.raises(ManifestError, match=r"a folder of that name exists.*Did you mean 'demo'"):
        (tmp_path / "dem").mkdir()
        load_manifest("dem")
    # an existing FILE of that name is what the user means
    (tmp_path / "snr-benchmark").write_text(TINY)
    assert load_manifest("snr-benchmark").name == "tiny"


def test_build_writes_pool_layout_and_is_deterministic(tmp_path: Path) -> None:
    m = load_manifest(_write(tmp_path, TINY))
    res = build(m, tmp_path / "a")
    build(m, tmp_path / "b")
    build(m, tmp_path / "c", seed=4)
    a = tmp_path / "a"
    assert res.n_volumes == 10 and res.sets == [a, a / "test"]
    for name in (
        "volumes",
        "labels.csv",
        "labels.star",
        "metadata.csv",
        "manifest.yaml",
        "config.json",
    ):
        assert (a / name).exists(), name
    assert (a / "manifest.yaml").read_text() == TINY
    pool = VolumePool.from_directory(a / "volumes").with_labels(a / "labels.csv")
    assert len(pool) == 6 and sorted(set(pool.labels)) == ["3ENL", "7PBL"]
    assert read_volume(a / "volumes" / "sub_00000.mrc").voxel_size == 10.0
    assert len(list((a / "test" / "volumes").glob("test_*.mrc"))) == 4
    # same seed: byte-identical files, except mrcfile's time-stamped header label
    for f in sorted((a / "volumes").iterdir()):
        assert _unlabelled(f) == _unlabelled(tmp_path / "b" / "volumes" / f.name)
    assert _unlabelled(a / "volumes" / "sub_00000.mrc") != _unlabelled(
        tmp_path / "c" / "volumes" / "sub_00000.mrc"
    )
    # the test split differs from the pool
    assert _unlabelled(a / "volumes" / "sub_00000.mrc") != _unlabelled(
        a / "test" / "volumes" / "test_00000.mrc"
    )


def test_snr_list_writes_one_paired_set_per_level(tmp_path: Path) -> None:
    doc = yaml.safe_load(TINY) | {"snr": [".inf", 0.1], "test": None}
    res = build(parse_manifest(yaml.safe_dump(doc)), tmp_path)
    assert res.sets == [tmp_path / "snr-inf", tmp_path / "snr-0.1"]
    m_inf = pd.read_csv(tmp_path / "snr-inf" / "metadata.csv")
    m_low = pd.read_csv(tmp_path / "snr-0.1" / "metadata.csv")
    assert m_inf["label"].tolist() == m_low["label"].tolist()
    assert m_inf["rot"].tolist() == m_low["rot"].tolist()


def test_tomogram_manifest_builds(tmp_path: Path) -> None:
    text = (
        "name: seg\nkind: tomograms\nstructures: [3ENL, 1AKE]\nshape: 24\nn_tomograms: 2\n"
        "n_particles: 4\nmembranes: 1\nsnr: 1.0\ntest: {n_tomograms: 1}\n"
    )
    res = build(parse_manifest(text), tmp_path)
    assert res.n_volumes == 3
    assert sorted(p.name for p in (tmp_path / "tomograms").iterdir()) == [
        "tomo_000.mrc",
        "tomo_001.mrc",
    ]
    assert (tmp_path / "label_maps" / "tomo_001.mrc").exists()
    assert (tmp_path / "test" / "tomograms" / "tomo_000.mrc").exists()
    classes = pd.read_csv(tmp_path / "classes.csv")
    assert classes["name"].tolist() == ["background", "3ENL", "1AKE", "membrane"]


def test_external_manifest_verify(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "model_0").mkdir(parents=True)
    (data / "model_0" / "a.mrc").write_bytes(b"abc")
    (data / "readme.txt").write_text("hello")
    sha = hashlib.sha256(b"hello").hexdigest()
    text = (
        "name: ext\nkind: external\nurl: https://example.org\nfiles:\n"
        f"  - path: readme.txt\n    sha256: {sha}\n    size: 5\n"
        "  - glob: 'model_*/*.mrc'\n    min_count: 1\n"
    )
    m = parse_manifest(text)
    rep = verify(m, data)
    assert rep.ok and rep.checked == 2
    (data / "readme.txt").write_text("hellO")
    rep = verify(m, data)
    assert not rep.ok and "readme.txt: sha256" in rep.problems[0]
    (data / "model_0" / "a.mrc").unlink()
    assert (
        "pattern model_*/*.mrc matches 0 file(s), expected at least 1" in verify(m, data).problems
    )
    with pytest.raises(ManifestError, match="describes an external data set"):
        build(m, tmp_path / "out")
    with pytest.raises(ManifestError, match="is a simulation recipe"):
        verify("demo", data)


def test_write_checksums_records_every_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "model_1").mkdir(parents=True)
    (data / "model_1" / "x.mrc").write_bytes(b"123")
    m = parse_manifest("name: ext\nkind: external\nfiles:\n  - glob: 'model_*/*.mrc'\n")
    out = write_checksums(m, data, tmp_path / "local.yaml")
    pinned = load_manifest(out)
    assert pinned.spec["files"][0]["path"] == "model_1/x.mrc"
    assert pinned.spec["files"][0]["sha256"] == hashlib.sha256(b"123").hexdigest()
    assert verify(pinned, data).ok
    (data / "model_1" / "x.mrc").write_bytes(b"124")
    assert not verify(pinned, data).ok

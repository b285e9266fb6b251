"""The cached demo pool (built from a tiny manifest so the test stays fast)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryoal.active.demo import cache_dir, demo_pool
from cryoal.io import VolumePool, read_labels

TINY = """\
name: tiny-demo
kind: subtomograms
description: a tiny demo pool for tests
seed: 0
structures: [6ZU5, 7PBL]
box: 16
voxel_size: 20.0
n_per_class: 3
snr: 1.0
tilt_range: [-60, 60]
defocus_um: 5.0
noise: white
test:
  n_per_class: 2
"""


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("manifest") / "tiny.yaml"
    path.write_text(TINY)
    return path


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CRYOAL_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CRYOAL_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "cryoal"


def test_demo_pool_built_once(
    tiny_manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRYOAL_CACHE", str(tmp_path / "cache"))
    demo = demo_pool(manifest=str(tiny_manifest))
    assert demo.root.parent == tmp_path / "cache" and demo.root.name.startswith("tiny-demo-")
    pool = VolumePool.from_path(demo.volumes)
    truth = read_labels(demo.labels, known_ids=set(pool.ids))
    assert len(pool) == 6 and sorted(set(truth["label"])) == ["6ZU5", "7PBL"]
    assert pool.box == (16, 16, 16)
    assert demo.test_volumes is not None and len(VolumePool.from_path(demo.test_volumes)) == 4
    stamp = demo.labels.stat().st_mtime_ns
    again = demo_pool(manifest=str(tiny_manifest))
    assert again == demo and demo.labels.stat().st_mtime_ns == stamp  # cached, not rebuilt
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [demo.root.name]  # no temp dirs
    # another manifest text is another cache entry
    other = tiny_manifest.with_name("other.yaml")
    other.write_text(TINY.replace("seed: 0", "seed: 1"))
    assert demo_pool(manifest=str(other)).root != demo.root

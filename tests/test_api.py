"""The notebook API: ``import cryoal as ca``."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import cryoal as ca
from cryoal import acquisition
from cryoal.errors import (
    CheckpointError,
    ConfigError,
    InvalidLabelsError,
    ManifestError,
    PoolExhaustedError,
)
from cryoal.io import VolumePool, read_volume, write_volume
from cryoal.transforms import normalize

TINY_MANIFEST = """
name: tiny
kind: subtomograms
seed: 3
structures: [7PBL, 3ENL]
box: 16
voxel_size: 20.0
n_per_class: 4
snr: {snr}
tilt_range: [-60, 60]
defocus_um: 5.0
test:
  n_per_class: 2
"""


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> VolumePool:
    """Two structures, 8 volumes each, 16³ at 20 Å."""
    out = tmp_path_factory.mktemp("api") / "sim"
    return ca.simulate(["7PBL", "3ENL"], out, n_per_class=8, box=16, voxel_size=20.0, snr=2.0)


@pytest.fixture(scope="module")
def trained(sim: VolumePool) -> ca.TrainedModel:
    return ca.train(
        sim.subset(range(8)), epochs=2, batch_size=4, val_fraction=0, width=4, fc_units=16
    )


# ---------------------------------------------------------------------- import
def test_import_is_light_and_names_resolve() -> None:
    code = (
        "import sys, cryoal; "
        "print(sorted(m for m in ('torch', 'matplotlib', 'pandas', 'cryoal.api') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    for name in ca.__all__:
        assert getattr(ca, name) is not None
    assert {"open_pool", "simulate", "train", "select", "Project"} <= set(dir(ca))
    with pytest.raises(AttributeError, match="module 'cryoal' has no attribute 'nope'"):
        _ = ca.nope  # type: ignore[attr-defined]


def test_simulate_and_train_are_callable_modules() -> None:
    from cryoal.api import simulate, train
    from cryoal.train import fit

    assert callable(ca.simulate) and callable(ca.train)
    assert inspect.signature(ca.train) == inspect.signature(train)
    assert inspect.signature(ca.simulate) == inspect.signature(simulate)
    assert ca.train.fit is fit  # still the module
    assert ca.simulate.list_structures()[:1]


# ---------------------------------------------------------------------- data
def test_simulate_structures_writes_a_labelled_pool(sim: VolumePool, tmp_path: Path) -> None:
    assert len(sim) == 16 and sim.box == (16, 16, 16) and sim.voxel_size == pytest.approx(20.0)
    assert sim.class_names == ["3ENL", "7PBL"]
    assert sorted(pd.Series(sim.labels).value_counts().tolist()) == [8, 8]
    root = Path(sim.root).parent
    assert {p.name for p in root.iterdir()} >= {"volumes", "labels.csv", "labels.star"}
    again = ca.simulate(
        ["7PBL", "3ENL"], tmp_path / "again", n_per_class=8, box=16, voxel_size=20.0, snr=2.0
    )
    np.testing.assert_array_equal(again[3].numpy(), sim[3].numpy())  # same seed, same data


def test_simulate_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"needs out=FOLDER"):
        ca.simulate(["7PBL", "3ENL"])
    with pytest.raises(ConfigError, match=r"options box belong in the manifest YAML"):
        ca.simulate("demo", tmp_path, box=16)
    with pytest.raises(ConfigError, match=r"^split must be 'pool' or 'test', got 'train'$"):
        ca.simulate("demo", tmp_path, split="train")
    with pytest.raises(ManifestError, match="unknown manifest 'demoo'.*Did you mean 'demo'"):
        ca.simulate("demoo", tmp_path)


def test_simulate_demo_with_a_demo_folder_in_the_cwd(demo_cwd: Path) -> None:
    pool = ca.simulate("demo")  # the bundled manifest (its cache), not ./demo/
    assert len(pool) == 12 and sorted(set(pool.labels)) == ["6ZU5", "7PBL"]


def test_simulate_manifest_is_built_once_with_test_split(tmp_path: Path) -> None:
    manifest = tmp_path / "tiny.yaml"
    manifest.write_text(TINY_MANIFEST.format(snr=1.0), encoding="utf-8")
    out = tmp_path / "built"
    pool = ca.simulate(manifest, out)
    assert len(pool) == 8 and pool.box == (16, 16, 16)
    stamp = (out / "volumes" / pool.ids[0]).stat().st_mtime_ns
    test = ca.simulate(manifest, out, split="test")
    assert len(test) == 4 and set(test.labels) == {"7PBL", "3ENL"}
    assert (out / "volumes" / pool.ids[0]).stat().st_mtime_ns == stamp  # reused, not rebuilt
    other = ca.simulate(manifest, out, seed=4)  # another seed rebuilds
    assert not np.array_equal(other[0].numpy(), read_volume(out / "volumes" / pool.ids[0]).data)


def test_simulate_manifest_with_snr_levels(tmp_path: Path) -> None:
    manifest = tmp_path / "levels.yaml"
    manifest.write_text(TINY_MANIFEST.format(snr="[.inf, 0.5]"), encoding="utf-8")
    with pytest.raises(
        ConfigError, match=r"simulates several SNRs \(inf, 0\.5\); choose one with snr="
    ):
        ca.simulate(manifest, tmp_path / "lv")
    with pytest.raises(ConfigError, match=r"snr 0\.2 is not one of manifest 'tiny''s levels"):
        ca.simulate(manifest, tmp_path / "lv", snr=0.2)
    noisy = ca.simulate(manifest, tmp_path / "lv", snr=0.5, split="test")
    assert Path(noisy.root) == tmp_path / "lv" / "snr-0.5" / "test" / "volumes"


def test_open_pool_folder_files_and_labels(sim: VolumePool, tmp_path: Path) -> None:
    root = Path(sim.root)
    labels = root.parent / "labels.star"
    pool = ca.open_pool(root, labels=labels)
    assert pool.ids == sim.ids and pool.labels == sim.labels
    some = ca.open_pool([root / sim.ids[0], root / sim.ids[1]])
    assert len(some) == 2 and some.labels == [None, None]
    frame = pd.DataFrame({"id": [sim.ids[2]], "label": ["x"]})
    assert ca.open_pool(root, labels=frame).labels.count("x") == 1
    with pytest.raises(InvalidLabelsError):
        ca.open_pool(root, labels=pd.DataFrame({"id": ["missing.mrc"], "label": ["x"]}))


def test_open_pool_hdf5(tmp_path: Path) -> None:
    from cryoal.io import write_hdf5_pool

    vols = np.random.default_rng(0).normal(size=(3, 8, 8, 8)).astype(np.float32)
    assert write_hdf5_pool(tmp_path / "p.h5", vols, voxel_size=5.0) == 3
    pool = ca.open_pool(tmp_path / "p.h5")
    assert len(pool) == 3
    np.testing.assert_allclose(pool[1].numpy()[0], vols[1])


# ---------------------------------------------------------------------- train / select
def test_train_returns_a_usable_model(
    sim: VolumePool, trained: ca.TrainedModel, tmp_path: Path
) -> None:
    assert trained.class_names == sorted(set(sim.labels[:8]))
    assert trained.voxel_size == pytest.approx(20.0)
    assert trained.history is not None and trained.history.epochs_run == 2
    assert trained.metrics["split"] == "training" and 0 <= trained.metrics["accuracy"] <= 1
    table = trained.predict(sim)
    assert list(table.columns) == ["id", "predicted", "confidence", "p_3ENL", "p_7PBL"]
    np.testing.assert_allclose(table[["p_3ENL", "p_7PBL"]].sum(axis=1), 1.0, rtol=1e-5)
    path = trained.save(tmp_path / "m.pt")
    loaded = ca.TrainedModel.load(path)
    assert loaded.class_names == trained.class_names and loaded.checkpoint == path
    pd.testing.assert_frame_equal(loaded.predict(sim), table)
    assert repr(trained).startswith(
        "TrainedModel(dsrf3d, classes=['3ENL', '7PBL'], training accuracy"
    )


def test_train_needs_two_classes(sim: VolumePool) -> None:
    one = sim.with_labels(pd.DataFrame({"id": sim.ids[:3], "label": ["a", "a", "a"]}))
    with pytest.raises(InvalidLabelsError, match=r"has 3 label\(s\) of 1 class\(es\) \(a\)"):
        ca.train(one, epochs=1)


def test_select_equals_the_strategy_on_normalised_volumes(
    sim: VolumePool, trained: ca.TrainedModel
) -> None:
    labelled = list(range(8))
    pool = sim.with_labels(pd.DataFrame({"id": sim.ids[:8], "label": sim.labels[:8]}))
    sel = ca.select(trained, pool, budget=4, strategy="entropy", device="cpu")
    assert sel.strategy == "entropy" and len(sel) == 4
    assert not set(sel.indices.tolist()) & set(labelled)
    # naive twin: score every volume, z-scored one by one, and take the top 4 unlabelled
    with torch.no_grad():
        trained.model.eval()
        x = torch.stack([normalize(pool[i]) for i in range(len(pool))])
        p = torch.softmax(trained.model(x), dim=1)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(1)
    entropy[labelled] = -float("inf")
    expected = torch.argsort(entropy, descending=True, stable=True)[:4]
    assert sel.indices.tolist() == expected.tolist()
    torch.testing.assert_close(sel.scores.float(), entropy[expected].float(), rtol=1e-4, atol=1e-5)


def test_select_defaults_seed_and_checkpoint(
    sim: VolumePool, trained: ca.TrainedModel, tmp_path: Path
) -> None:
    pool = sim.with_labels(pd.DataFrame({"id": sim.ids[:8], "label": sim.labels[:8]}))
    a = ca.select(trained, pool, budget=3, device="cpu")  # expected-gradnorm
    assert a.strategy == "expected-gradnorm" and min(a.indices.tolist()) >= 8
    b = ca.select(trained.save(tmp_path / "m.pt"), pool, budget=3, device="cpu")
    assert b.indices.tolist() == a.indices.tolist()
    r1 = ca.select(trained, pool, budget=3, strategy="random", seed=5, device="cpu")
    r2 = ca.select(trained.model, pool, budget=3, strategy="random", seed=5, device="cpu")
    assert r1.indices.tolist() == r2.indices.tolist()
    direct = acquisition.get("random", device="cpu", seed=5).select(
        trained.model, pool, 3, labelled=list(range(8)), generator=torch.Generator().manual_seed(5)
    )
    assert direct.indices.tolist() == r1.indices.tolist()
    assert "<b>Selection</b> · expected-gradnorm · 3 picks" in a._repr_html_()


def test_select_excludes_what_the_model_was_given_labels_for(
    sim: VolumePool, trained: ca.TrainedModel
) -> None:
    # ``sim`` carries ground truth for every volume; the model only saw the first 8
    assert trained.labelled_ids == sim.ids[:8]
    sel = ca.select(trained, sim, budget=8, strategy="entropy", device="cpu")
    assert sorted(sel.indices.tolist()) == list(range(8, 16))
    with pytest.raises(PoolExhaustedError):
        ca.select(trained.model, sim, budget=1, strategy="entropy", device="cpu")


def test_select_errors(sim: VolumePool, trained: ca.TrainedModel, tmp_path: Path) -> None:
    for i in range(2):
        write_volume(tmp_path / "big" / f"b{i}.mrc", np.zeros((24, 24, 24), np.float32), 20.0)
    with pytest.raises(
        CheckpointError,
        match=r"built for boxes of 16×16×16 voxels but the pool's volumes are 24×24×24",
    ):
        ca.select(trained, ca.open_pool(tmp_path / "big"), budget=1, device="cpu")
    with pytest.raises(
        ConfigError,
        match="model must be a TrainedModel, a torch module or a checkpoint path, not int",
    ):
        ca.select(3, sim, budget=1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown acquisition strategy 'entropi'"):
        ca.select(trained, sim, budget=1, strategy="entropi", device="cpu")


def test_simulate_copick_builds_then_reuses(tmp_path: Path) -> None:
    import copick

    small = {"shape": (32, 40, 40), "n_per_class": 2, "objects": {"ruvab": "7PBL"}}
    project = ca.simulate_copick(tmp_path / "p", seed=2, **small)
    assert project.runs == ["TS_001", "TS_002"] and len(project.particles) == 4
    root = copick.from_file(str(project.config))
    assert [o.name for o in root.pickable_objects] == ["ruvab", "particle"]
    stamp = (project.root / "truth.csv").stat().st_mtime_ns
    again = ca.simulate_copick(tmp_path / "p", seed=2, **small)
    assert (project.root / "truth.csv").stat().st_mtime_ns == stamp  # reused, not rebuilt
    pd.testing.assert_frame_equal(again.particles, project.particles)
    pd.testing.assert_frame_equal(again.objects, project.objects)
    assert (again.runs, again.shape, again.voxel_size) == (project.runs, project.shape, 10.0)
    other = ca.simulate_copick(tmp_path / "p", seed=3, **small)  # other settings: rebuilt
    assert not other.particles[["x", "y", "z"]].equals(project.particles[["x", "y", "z"]])
    with pytest.raises(ConfigError, match="unknown option"):
        ca.simulate_copick(tmp_path / "q", n_per_klass=3)

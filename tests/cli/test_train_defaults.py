"""`cryoal train` with nothing but its defaults learns a small, well-separated simulated set.

Regression test of issue #18 item 6: the defaults (model, epochs, batch size, learning
rate, validation split, kept epoch) must suffice for a few dozen labelled subtomograms of
three structures; the held-out volumes are never seen in training or validation.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryoal.cli.main import cli

from cryoal import tasks
from cryoal.active.defaults import DEFAULT_ARCH
from cryoal.io import VolumePool
from cryoal.models import load_checkpoint
from cryoal.simulate import simulate_subtomograms, write_simulated
from cryoal.train import evaluate
from cryoal.transforms import normalize

STRUCTURES = ["6ZU5", "4V8R-A", "3ENL"]


def _simulate(out: Path, n_per_class: int, seed: int) -> Path:
    sim = simulate_subtomograms(
        STRUCTURES,
        n_per_class,
        box=16,
        voxel_size=15.0,
        snr=0.5,
        shift_max=1.0,
        noise="two-stage",
        seed=seed,
    )
    return write_simulated(out, sim)


@pytest.fixture(scope="module")
def easy3(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("easy3")
    return _simulate(root / "train", 16, seed=0), _simulate(root / "test", 10, seed=1)


def test_defaults_learn_a_well_separated_set(easy3: tuple[Path, Path], tmp_path: Path) -> None:
    train, test = easy3
    out = tmp_path / "model.pt"
    cpu = time.process_time()
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "--volumes",
            str(train / "volumes"),
            "--labels",
            str(train / "labels.csv"),
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
    )
    cpu = time.process_time() - cpu
    assert result.exit_code == 0, result.output
    assert "48 labelled volumes, box 16x16x16, 3 classes" in result.output

    model, info = load_checkpoint(out)
    assert info.arch.name == tasks.get("classification3d").default_model == DEFAULT_ARCH
    pool = VolumePool.from_path(test / "volumes").with_labels(test / "labels.csv")
    held_out = pool.dataset(transform=normalize, class_names=info.class_names)
    metrics = evaluate(model, held_out)
    assert metrics["n"] == 30
    # chance is 1/3; the defaults separate these structures almost perfectly
    assert metrics["accuracy"] >= 0.8, metrics["confusion_matrix"]
    assert min(r for r in metrics["per_class_recall"] if r is not None) >= 0.6
    assert cpu < 60, f"default training took {cpu:.0f} CPU s"

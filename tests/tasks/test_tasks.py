"""The task registry and the classification tasks; the built-in 2D example sets."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cryoal import acquisition, tasks
from cryoal.errors import ConfigError, InvalidLabelsError
from cryoal.io import VolumePool, write_volume
from cryoal.io.images import ImagePool
from cryoal.tasks.image2d import load_digits_images, simulate_projections, write_image_set


def test_registry() -> None:
    assert tasks.available() == ["classification3d", "image2d", "segmentation"]
    assert tasks.get("Image2D").name == "image2d"
    with pytest.raises(
        ConfigError, match=r"unknown task 'segmentaton'\. Did you mean 'segmentation'\?"
    ):
        tasks.get("segmentaton")
    defaults = {t: tasks.get(t).default_model for t in tasks.available()}
    assert defaults == {
        "classification3d": "cb3d",
        "image2d": "cnn2d",
        "segmentation": "monai-unet",
    }
    for name in tasks.available():
        task = tasks.get(name)
        assert (
            task.pick_view and task.summary and len(task.default_in_shape) == task.spatial_dims + 1
        )
    assert tasks.get("image2d").strategies() == acquisition.available()


def test_classification_loss_and_metrics(generator: torch.Generator) -> None:
    task = tasks.get("classification3d")
    logits = torch.randn(5, 3, generator=generator)
    y = torch.tensor([0, 2, 1, 1, 0])
    torch.testing.assert_close(
        task.per_sample_loss(logits, y), F.cross_entropy(logits, y, reduction="none")
    )
    probs = torch.softmax(logits, 1)
    m = task.metrics(probs, torch.tensor([0, 2, 1, -1, 0]), ["a", "b", "c"])
    pred = probs.argmax(1)
    keep = [0, 1, 2, 4]
    assert m["accuracy"] == pytest.approx(
        float((pred[keep] == torch.tensor([0, 2, 1, 0])).double().mean())
    )
    assert m["class_names"] == ["a", "b", "c"]
    with pytest.raises(ConfigError, match=r"logits must be \(B, K\)"):
        task.per_sample_loss(torch.zeros(2, 3, 4), y[:2])


def test_classification3d_wraps_the_volume_pool(tmp_path: Path) -> None:
    for i in range(3):
        write_volume(tmp_path / "v" / f"p{i}.mrc", np.full((8, 8, 8), i, np.float32), 10.0)
    task = tasks.get("classification3d")
    pool = task.open_pool(tmp_path / "v")
    assert isinstance(pool, VolumePool) and task.in_shape(pool) == (1, 8, 8, 8)
    with pytest.raises(ConfigError, match="does not take masks"):
        task.open_pool(tmp_path / "v", masks=tmp_path)
    out = task.write_gallery(tmp_path / "g.png", [pool[0], pool[1]], ["#1", "#2"], title="t")
    assert out.stat().st_size > 1000


def test_image2d_dataset_and_gallery(tmp_path: Path) -> None:
    task = tasks.get("image2d")
    pool = ImagePool.from_array(
        np.random.default_rng(0).normal(size=(4, 8, 8)), labels=["x", None, "y", "x"]
    )
    ds = task.dataset(pool, [0, 2])
    x, y = ds[1]
    assert x.shape == (1, 8, 8) and y == 1 and abs(float(x.mean())) < 1e-5
    with pytest.raises(
        InvalidLabelsError, match=r"1 requested items have no label \(e.g. img_00001\)"
    ):
        task.dataset(pool, [0, 1])
    assert task.write_gallery(tmp_path / "g.png", [pool[0]], ["#1"]).stat().st_size > 500


def test_digits_are_the_real_uci_set() -> None:
    images, labels = load_digits_images()
    assert images.shape == (1797, 8, 8) and images.dtype == np.float32
    assert images.min() == 0 and images.max() == 16
    assert sorted(set(labels)) == [str(d) for d in range(10)]


def test_projections_have_the_requested_snr() -> None:
    clean, labels = simulate_projections(
        ("4V8R-A", "7PBL"), 6, box=16, voxel_size=15.0, snr=math.inf
    )
    noisy, labels2 = simulate_projections(("4V8R-A", "7PBL"), 6, box=16, voxel_size=15.0, snr=0.5)
    assert (
        clean.shape == (12, 16, 16)
        and labels == labels2
        and sorted(set(labels)) == ["4V8R-A", "7PBL"]
    )
    noise = (noisy - clean).astype(np.float64)
    snr = clean.reshape(12, -1).var(1) / noise.reshape(12, -1).var(1)
    assert np.median(snr) == pytest.approx(0.5, rel=0.25)


def test_write_image_set_layout(tmp_path: Path) -> None:
    images, labels = load_digits_images()
    files = write_image_set(tmp_path, images[:30], labels[:30], initial_per_class=1)
    pool = ImagePool.from_directory(files["images"]).with_labels(files["truth"])
    assert len(pool) == 30 and pool.box == (8, 8)
    np.testing.assert_array_equal(pool[3][0].numpy(), np.rint(images[3] * 255 / 16))
    init = pool.with_labels(files["initial"])
    assert sum(v is not None for v in init.labels) == len(set(labels[:30]))


def test_installed_script_lists_task_strategies() -> None:
    out = subprocess.run(
        ["cryoal", "select", "--task", "segmentation", "--list-strategies"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["entropy", "entropy-gradnorm", "expected-gradnorm", "random"]

"""Segmentation pipeline: patch pools, bad inputs, training through cryoal.train.fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cryoal import models
from cryoal.errors import InvalidLabelsError
from cryoal.io import write_volume
from cryoal.tasks import get
from cryoal.tasks.seg_data import PatchPool, grid_starts, read_mask
from cryoal.train import TrainConfig, evaluate, fit, predict


def test_grid_covers_every_voxel() -> None:
    assert grid_starts(32, 16, 16) == [0, 16]
    assert grid_starts(40, 16, 16) == [0, 16, 24]
    assert grid_starts(16, 16, 8) == [0]


def test_patch_pool_layout(seg_example: dict[str, Path]) -> None:
    pool = PatchPool.from_directories(seg_example["volumes"], seg_example["masks"], patch=16)
    assert pool.class_names == ["background", "4V8R-A", "7PBL", "membrane"]
    assert len(pool) == 3 * 8 and pool.box == (16, 16, 16)
    assert pool.ids[9] == "tomo_001.mrc@0,0,16"
    assert pool.location(9) == ("tomo_001.mrc", (0, 0, 16))
    assert pool.index_of("tomo_001.mrc@0,0,16") == 9
    with pytest.raises(InvalidLabelsError, match=r"'nope@0,0,0' is not in the pool \(24 patches"):
        pool.index_of("nope@0,0,0")
    assert pool.labelled_indices() == list(range(8))
    truth, _ = read_mask(seg_example["truth"] / "tomo_000.mrc")
    from cryoal.io import read_volume

    vol = read_volume(seg_example["volumes"] / "tomo_000.mrc").data
    np.testing.assert_array_equal(pool[5][0].numpy(), vol[16:32, 0:16, 16:32])
    np.testing.assert_array_equal(pool.mask(5).numpy(), truth[16:32, 0:16, 16:32])
    assert pool.mask(9) is None
    x, y = get("segmentation").dataset(pool)[9]
    assert x.shape == (1, 16, 16, 16) and abs(float(x.mean())) < 1e-5
    assert bool((y == -1).all())


def _tree(
    tmp_path: Path, mask: np.ndarray, vol_shape: tuple[int, ...] = (16, 16, 16)
) -> tuple[Path, Path]:
    vols, masks = tmp_path / "vols", tmp_path / "masks"
    write_volume(vols / "a.mrc", np.zeros(vol_shape, np.float32), 10.0)
    write_volume(masks / "a.mrc", mask, 10.0)
    return vols, masks


def test_mask_shape_must_match_volume(tmp_path: Path) -> None:
    vols, masks = _tree(tmp_path, np.zeros((16, 16, 8), np.int16))
    with pytest.raises(
        InvalidLabelsError, match=r"masks/a.mrc: label map is 16x16x8 but volume a.mrc is 16x16x16"
    ):
        PatchPool.from_directories(vols, masks, patch=8)


def test_mask_values_must_be_in_the_class_list(tmp_path: Path) -> None:
    mask = np.zeros((16, 16, 16), np.int16)
    mask[0, 0, :3] = [3, 7, -2]
    vols, masks = _tree(tmp_path, mask)
    with pytest.raises(
        InvalidLabelsError,
        match=r"label values \[-2, 3, 7\] are outside the class list 0..2 \(bg, a, b; -1 = not annotated\)",
    ):
        PatchPool.from_directories(vols, masks, patch=8, classes=["bg", "a", "b"])


def test_mask_must_hold_integers_and_have_a_crop(tmp_path: Path) -> None:
    vols, masks = _tree(tmp_path, np.full((16, 16, 16), 0.5, np.float32))
    with pytest.raises(InvalidLabelsError, match="non-integer values"):
        PatchPool.from_directories(vols, masks, patch=8)
    write_volume(masks / "a.mrc", np.zeros((16, 16, 16), np.int16), 10.0)
    write_volume(masks / "b.mrc", np.zeros((16, 16, 16), np.int16), 10.0)
    with pytest.raises(InvalidLabelsError, match=r"label maps without a crop in .*vols: b.mrc"):
        PatchPool.from_directories(vols, masks, patch=8)


def test_partial_masks_label_only_fully_annotated_patches(tmp_path: Path) -> None:
    mask = np.full((16, 16, 16), -1, np.int16)
    mask[:8, :8, :8] = 1
    vols, masks = _tree(tmp_path, mask)
    pool = PatchPool.from_directories(vols, masks, patch=8)
    assert pool.class_names == ["0", "1"]
    assert pool.labelled_indices() == [0] and len(pool.unlabelled_indices()) == 7


def test_fit_and_evaluate_train_a_unet_on_voxel_targets(seg_example: dict[str, Path]) -> None:
    pool = PatchPool.from_directories(seg_example["volumes"], seg_example["truth"], patch=16)
    task = get("segmentation")
    train = task.dataset(pool, pool.labelled_indices()[:16])
    torch.manual_seed(0)
    model = models.create("monai-unet", pool.num_classes, task.in_shape(pool), channels=(8, 16))
    hist = fit(model, train, config=TrainConfig(epochs=6, batch_size=4, progress=False, lr=1e-2))
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert 0 <= hist.train_accuracy[-1] <= 1
    ev = evaluate(model, train)
    assert ev["n"] == 16 * 16**3 and 0 <= ev["accuracy"] <= 1
    probs = predict(model, train, batch_size=8)
    assert probs.shape == (16, pool.num_classes, 16, 16, 16)
    m = task.metrics(probs, torch.stack([train[i][1] for i in range(16)]), pool.class_names)
    assert m["voxel_accuracy"] == pytest.approx(ev["accuracy"], abs=1e-6)
    assert set(m["dice"]) == set(pool.class_names)
    # background dominates: a trained model gets it mostly right
    assert m["dice"]["background"] > 0.8


def test_unet_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = models.create("monai-unet", 3, (1, 8, 8, 8), channels=(4, 8), features=4).eval()
    assert "monai-unet" in models.available(kind="segmentation")
    assert "monai-unet" not in models.available() and "monai-unet" in models.available(kind=None)
    path = models.save_checkpoint(tmp_path / "u.pt", model, class_names=["bg", "a", "b"])
    loaded, info = models.load_checkpoint(path)
    x = torch.randn(2, 1, 8, 8, 8)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(loaded(x), out, rtol=0, atol=0)
        feats = model.features(x)
        assert feats.shape == (2, 4, 8, 8, 8) and out.shape == (2, 3, 8, 8, 8)
        torch.testing.assert_close(out, model.head(feats.movedim(1, -1)).movedim(-1, 1))
    assert info.class_names == ["bg", "a", "b"] and info.box == (8, 8, 8)

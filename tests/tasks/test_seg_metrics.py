"""Dice and the mean voxel loss on hand-made masks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cryoal.errors import ConfigError
from cryoal.tasks.seg_metrics import dice_scores, segmentation_metrics, voxel_cross_entropy


def test_dice_on_hand_made_masks() -> None:
    # 1D "volume" of 8 voxels, 3 classes
    target = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
    pred = torch.tensor([0, 0, 1, 1, 1, 0, 2, 2])
    dice = dice_scores(pred, target, 3)
    # class 0: |P∩T| = 2, |P| = 3, |T| = 3 -> 4/6; class 1: 2, 3, 3 -> 4/6; class 2: 2, 2, 2 -> 1
    torch.testing.assert_close(dice, torch.tensor([4 / 6, 4 / 6, 1.0], dtype=torch.float64))


def test_dice_absent_class_is_nan_and_ignored_in_mean() -> None:
    target = torch.zeros(2, 4, 4, 4, dtype=torch.long)
    target[0, :2] = 1  # 32 voxels of class 1
    pred = target.clone()
    pred[0, 0, 0, 0] = 0  # one voxel missed
    m = segmentation_metrics(pred, target, 3, ["bg", "ribosome", "membrane"])
    assert math.isnan(m["dice"]["membrane"])
    assert m["dice"]["ribosome"] == pytest.approx(2 * 31 / (31 + 32))
    bg_true = 128 - 32
    assert m["dice"]["bg"] == pytest.approx(2 * bg_true / (bg_true + 1 + bg_true))
    assert m["mean_dice"] == pytest.approx((m["dice"]["bg"] + m["dice"]["ribosome"]) / 2)
    assert m["mean_dice_foreground"] == pytest.approx(m["dice"]["ribosome"])
    assert m["voxel_accuracy"] == pytest.approx(127 / 128)
    assert m["n_voxels"] == 128


def test_dice_skips_unannotated_voxels() -> None:
    target = torch.tensor([1, 1, -1, -1])
    pred = torch.tensor([1, 1, 0, 0])
    torch.testing.assert_close(
        dice_scores(pred, target, 2),
        torch.tensor([math.nan, 1.0], dtype=torch.float64),
        equal_nan=True,
    )


def test_dice_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="differ"):
        dice_scores(torch.zeros(3), torch.zeros(4), 2)
    with pytest.raises(ConfigError, match=r"target holds values outside \[0, 2\)"):
        dice_scores(torch.zeros(3, dtype=torch.long), torch.tensor([0, 1, 2]), 2)


def test_voxel_cross_entropy_is_mean_over_annotated_voxels(generator: torch.Generator) -> None:
    logits = torch.randn(3, 4, 2, 3, 5, generator=generator)
    target = torch.randint(0, 4, (3, 2, 3, 5), generator=generator)
    target[1, 0] = -1
    got = voxel_cross_entropy(logits, target)
    for i in range(3):
        keep = target[i] >= 0
        z = logits[i].movedim(0, -1)[keep]
        want = F.cross_entropy(z, target[i][keep])
        torch.testing.assert_close(got[i], want)
    with pytest.raises(ConfigError, match="needs logits"):
        voxel_cross_entropy(logits, target[:, 0])

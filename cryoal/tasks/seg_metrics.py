"""Segmentation losses and metrics: mean voxel cross-entropy, Dice per class and mean.

Label maps hold class indices ``0 … K-1``; ``-1`` (:data:`IGNORE`) marks voxels nobody
annotated, which losses and metrics skip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from cryoal.errors import ConfigError

__all__ = ["IGNORE", "dice_scores", "segmentation_metrics", "voxel_cross_entropy"]

#: label value of unannotated voxels
IGNORE = -1


def voxel_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Per-sample cross-entropy averaged over the annotated voxels.

    Parameters
    ----------
    logits
        `(B, K, *spatial)` per-voxel logits.
    target
        `(B, *spatial)` int64 class indices, :data:`IGNORE` (-1) where unannotated.

    Returns
    -------
    Tensor
        `(B,)` losses ``ℓ_i = (1/V_i) Σ_v CE(z_iv, y_iv)`` over the ``V_i`` annotated voxels
        of sample ``i`` (0 for a sample with none).
    """
    if logits.dim() < 3 or target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ConfigError(
            f"voxel_cross_entropy needs logits (B, K, *spatial) and target (B, *spatial); got "
            f"{tuple(logits.shape)} and {tuple(target.shape)}"
        )
    ce = F.cross_entropy(logits, target.long(), reduction="none", ignore_index=IGNORE)
    valid = (target != IGNORE).flatten(1).sum(1).clamp_min(1)
    return ce.flatten(1).sum(1) / valid.to(ce.dtype)


def dice_scores(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Dice coefficient of each class over all given voxels.

    ``Dice_c = 2 |P_c ∩ T_c| / (|P_c| + |T_c|)`` with ``P_c``/``T_c`` the predicted/true
    voxels of class ``c``; voxels whose target is :data:`IGNORE` are left out.

    Parameters
    ----------
    pred, target
        Integer label maps of one shape (any number of dims; a batch is pooled).
    num_classes
        ``K``; predictions and targets must lie in ``[0, K)`` (targets may be -1).

    Returns
    -------
    Tensor
        `(K,)` float64 Dice values; NaN for a class absent from both maps.

    Raises
    ------
    ConfigError
        Shapes differ, or values fall outside ``[0, K)``.
    """
    if pred.shape != target.shape:
        raise ConfigError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    keep = target != IGNORE
    p, t = pred[keep].long(), target[keep].long()
    for name, v in (("pred", p), ("target", t)):
        if v.numel() and (int(v.min()) < 0 or int(v.max()) >= num_classes):
            raise ConfigError(f"{name} holds values outside [0, {num_classes})")
    tp = torch.bincount(t[p == t], minlength=num_classes).double()
    size = (
        torch.bincount(p, minlength=num_classes) + torch.bincount(t, minlength=num_classes)
    ).double()
    dice = torch.full((num_classes,), math.nan, dtype=torch.float64)
    present = size > 0
    dice[present] = 2 * tp[present] / size[present]
    return dice


def segmentation_metrics(
    pred: Tensor, target: Tensor, num_classes: int, class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Dice per class, mean Dice, foreground mean Dice and voxel accuracy.

    Parameters
    ----------
    pred, target
        Integer label maps `(N, *spatial)` (target -1 = unannotated, skipped).
    num_classes
        ``K`` (class 0 is the background).
    class_names
        Names for the per-class entries (default ``"0" … "K-1"``).

    Returns
    -------
    dict
        ``dice`` ({name: value, NaN if the class is absent from both}), ``mean_dice``
        (mean over present classes), ``mean_dice_foreground`` (classes ≥ 1),
        ``voxel_accuracy``, ``n_voxels``.
    """
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    if len(names) != num_classes:
        raise ConfigError(f"{len(names)} class names for {num_classes} classes")
    dice = dice_scores(pred, target, num_classes)
    keep = target != IGNORE
    n = int(keep.sum())
    acc = float((pred[keep] == target[keep]).double().mean()) if n else math.nan
    present = dice[~torch.isnan(dice)]
    fg = dice[1:][~torch.isnan(dice[1:])]
    return {
        "dice": {name: float(d) for name, d in zip(names, dice.tolist(), strict=True)},
        "mean_dice": float(present.mean()) if present.numel() else math.nan,
        "mean_dice_foreground": float(fg.mean()) if fg.numel() else math.nan,
        "voxel_accuracy": acc,
        "n_voxels": n,
    }

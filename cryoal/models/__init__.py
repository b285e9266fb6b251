"""Classifiers for subtomograms (3D) and images (2D), one registry, self-describing checkpoints.

>>> from cryoal import models
>>> model = models.create("dsrf3d", num_classes=3, in_shape=(1, 32, 32, 32))
>>> model.features(x).shape, model(x).shape        # (B, 1024), (B, 3) logits
"""

from cryoal.models._base import ArchSpec, Classifier
from cryoal.models.checkpoint import (
    CheckpointInfo,
    check_compatible,
    load_checkpoint,
    load_encoder,
    save_checkpoint,
)
from cryoal.models.cnn2d import CNN2D
from cryoal.models.cnn3d import CB3D, DSRF3D, RB3D
from cryoal.models.monai_nets import MonaiClassifier
from cryoal.models.registry import available, create, describe, register

__all__ = [
    "CB3D",
    "CNN2D",
    "DSRF3D",
    "RB3D",
    "ArchSpec",
    "CheckpointInfo",
    "Classifier",
    "MonaiClassifier",
    "available",
    "check_compatible",
    "create",
    "describe",
    "load_checkpoint",
    "load_encoder",
    "register",
    "save_checkpoint",
]

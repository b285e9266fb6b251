"""Cryo-ET physics and augmentation on torch tensors.

Pure kernels (SNR noise, missing wedge, CTF, rotations, normalisation) batched over
``(B, C, D, H, W)`` on any device; see :mod:`cryoal.transforms.functional` and
docs/simulation.md for the physics and conventions. Augmentation classes
(:class:`RandomRotate`, :class:`RandomNoise`, ...) wrap them for training pipelines and
register by name (:func:`get`, :func:`available`, :func:`from_config`).
"""

from __future__ import annotations

# The layer's public names are those of its two halves, listed once in each module's
# __all__: the augmentation classes and registry, then the pure kernels.
from cryoal.transforms import augment as _augment
from cryoal.transforms import functional as _functional
from cryoal.transforms.augment import *  # noqa: F403
from cryoal.transforms.functional import *  # noqa: F403

__all__ = [*_augment.__all__, *_functional.__all__]

"""Cryo-ET physics and augmentation on torch tensors.

Pure kernels (SNR noise, missing wedge, CTF, rotations, normalisation) batched over
``(B, C, D, H, W)`` on any device; see :mod:`cryoal.transforms.functional` and
docs/simulation.md for the physics and conventions. Augmentation classes
(:class:`RandomRotate`, :class:`RandomNoise`, ...) wrap them for training pipelines and
register by name (:func:`get`, :func:`available`, :func:`from_config`).
"""

from __future__ import annotations

from cryoal.transforms.augment import (
    Compose,
    Normalize,
    RandomFlip,
    RandomMissingWedge,
    RandomNoise,
    RandomRotate,
    Transform,
    available,
    from_config,
    get,
)
from cryoal.transforms.functional import (
    add_noise,
    apply_ctf,
    apply_missing_wedge,
    ctf_1d,
    ctf_3d,
    ctf_zero_frequencies,
    electron_wavelength,
    euler_to_matrix,
    matrix_to_euler,
    measure_snr,
    missing_wedge_mask,
    normalize,
    quaternion_to_matrix,
    random_quaternion,
    random_rotation,
    rotate_volume,
    tilt_angle_grid,
)

__all__ = [
    "Compose",
    "Normalize",
    "RandomFlip",
    "RandomMissingWedge",
    "RandomNoise",
    "RandomRotate",
    "Transform",
    "available",
    "from_config",
    "get",
    "add_noise",
    "apply_ctf",
    "apply_missing_wedge",
    "ctf_1d",
    "ctf_3d",
    "ctf_zero_frequencies",
    "electron_wavelength",
    "euler_to_matrix",
    "matrix_to_euler",
    "measure_snr",
    "missing_wedge_mask",
    "normalize",
    "quaternion_to_matrix",
    "random_quaternion",
    "random_rotation",
    "rotate_volume",
    "tilt_angle_grid",
]

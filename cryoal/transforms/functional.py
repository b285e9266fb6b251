"""Pure tensor kernels of :mod:`cryoal.transforms` (the MONAI-style ``functional`` layer).

Every function takes volumes ``(B, C, D, H, W)`` or ``(D, H, W)`` (any leading dims),
follows the input's device, and takes an explicit ``torch.Generator`` for randomness.
The kernels live in :mod:`~cryoal.transforms.noise`, :mod:`~cryoal.transforms.wedge`,
:mod:`~cryoal.transforms.ctf`, :mod:`~cryoal.transforms.geometry` and
:mod:`~cryoal.transforms.intensity`; this module gathers them.
"""

from __future__ import annotations

from cryoal.transforms.ctf import (
    apply_ctf,
    ctf_1d,
    ctf_3d,
    ctf_zero_frequencies,
    electron_wavelength,
)
from cryoal.transforms.geometry import (
    euler_to_matrix,
    matrix_to_euler,
    quaternion_to_matrix,
    random_quaternion,
    random_rotation,
    rotate_volume,
)
from cryoal.transforms.intensity import normalize
from cryoal.transforms.noise import add_noise, measure_snr
from cryoal.transforms.wedge import apply_missing_wedge, missing_wedge_mask, tilt_angle_grid

__all__ = [
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

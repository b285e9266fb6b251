"""Electron-scattering density maps from atomic models (vectorised splatting).

A map is sampled on a grid of cubic voxels (edge ``voxel_size`` Å) in z-y-x order. Two
atom models are offered:

``"gaussian"``
    Each atom is a normalised 3D Gaussian of weight Z (its atomic number) and standard
    deviation ``sigma = resolution / (pi * sqrt(2))`` Å (UCSF Chimera's ``molmap``
    convention, sigma ~= 0.225 x resolution). The map sums to sum(Z).

``"scattering"``
    Each atom is the real-space transform of its five-Gaussian elastic electron
    scattering factor (Peng et al. 1996, Acta Cryst A52:257; International Tables for
    Crystallography Vol. C, Table 4.3.2.2)::

        rho(r) = sum_i a_i (4 pi / b_i')^(3/2) exp(-4 pi^2 r^2 / b_i'),
        b_i'   = b_i + B + 8 pi^2 sigma^2,

    i.e. the atomic potential blurred by a B-factor ``B`` (Å^2) and by the same
    resolution Gaussian as above. The map (per voxel, integrated) sums to sum_atoms f(0),
    in Å (the scattering amplitude at zero angle).

Each voxel receives the exact integral of every atom's Gaussians over the voxel (products
of 1D ``erf`` differences, so the total mass is right even when sigma is below a
voxel), evaluated inside a cube of +-4 sigma around each atom and accumulated with one
``numpy.bincount``: no Python loop over atoms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import special

from cryoal.errors import ConfigError

__all__ = [
    "ELEMENTS",
    "atomic_numbers",
    "atomic_weights",
    "density_from_atoms",
    "resolution_sigma",
]

#: element symbol -> (Z, standard atomic weight in Da, Peng a_1..a_5 (Å), Peng b_1..b_5 (Å^2))
ELEMENTS: dict[str, tuple[int, float, tuple[float, ...], tuple[float, ...]]] = {
    "H": (
        1,
        1.0079,
        (0.0349, 0.1201, 0.197, 0.0573, 0.1195),
        (0.5347, 3.5867, 12.3471, 18.9525, 38.6269),
    ),
    "He": (
        2,
        4.0026,
        (0.0317, 0.0838, 0.1526, 0.1334, 0.0164),
        (0.2507, 1.4751, 4.4938, 12.6646, 31.1653),
    ),
    "Li": (
        3,
        6.9410,
        (0.075, 0.2249, 0.5548, 1.4954, 0.9354),
        (0.3864, 2.9383, 15.3829, 53.5545, 138.734),
    ),
    "Be": (
        4,
        9.0122,
        (0.078, 0.221, 0.674, 1.3867, 0.6925),
        (0.3131, 2.2381, 10.1517, 30.9061, 78.3273),
    ),
    "B": (
        5,
        10.8110,
        (0.0909, 0.2551, 0.7738, 1.2136, 0.4606),
        (0.2995, 2.1155, 8.3816, 24.1292, 63.1314),
    ),
    "C": (
        6,
        12.0107,
        (0.0893, 0.2563, 0.757, 1.0487, 0.3575),
        (0.2465, 1.71, 6.4094, 18.6113, 50.2523),
    ),
    "N": (
        7,
        14.0067,
        (0.1022, 0.3219, 0.7982, 0.8197, 0.1715),
        (0.2451, 1.7481, 6.1925, 17.3894, 48.1431),
    ),
    "O": (
        8,
        15.9994,
        (0.0974, 0.2921, 0.691, 0.699, 0.2039),
        (0.2067, 1.3815, 4.6943, 12.7105, 32.4726),
    ),
    "F": (
        9,
        18.9984,
        (0.1083, 0.3175, 0.6487, 0.5846, 0.1421),
        (0.2057, 1.3439, 4.2788, 11.3932, 28.7881),
    ),
    "Ne": (
        10,
        20.1797,
        (0.1269, 0.3535, 0.5582, 0.4674, 0.146),
        (0.22, 1.3779, 4.0203, 9.4934, 23.1278),
    ),
    "Na": (
        11,
        22.9898,
        (0.2142, 0.6853, 0.7692, 1.6589, 1.4482),
        (0.3334, 2.3446, 10.083, 48.3037, 138.27),
    ),
    "Mg": (
        12,
        24.3050,
        (0.2314, 0.6866, 0.9677, 2.1882, 1.1339),
        (0.3278, 2.272, 10.9241, 39.2898, 101.975),
    ),
    "Al": (
        13,
        26.9815,
        (0.239, 0.6573, 1.2011, 2.5586, 1.2312),
        (0.3138, 2.1063, 10.4163, 34.4552, 98.5344),
    ),
    "Si": (
        14,
        28.0855,
        (0.2519, 0.6372, 1.3795, 2.5082, 1.05),
        (0.3075, 2.0174, 9.6746, 29.3744, 80.4732),
    ),
    "P": (
        15,
        30.9738,
        (0.2548, 0.6106, 1.4541, 2.3204, 0.8477),
        (0.2908, 1.874, 8.5176, 24.3434, 63.2996),
    ),
    "S": (
        16,
        32.0650,
        (0.2497, 0.5628, 1.3899, 2.1865, 0.7715),
        (0.2681, 1.6711, 7.0267, 19.5377, 50.3888),
    ),
    "Cl": (
        17,
        35.4530,
        (0.2443, 0.5397, 1.3919, 2.0197, 0.6621),
        (0.2468, 1.5242, 6.1537, 16.6687, 42.3086),
    ),
    "Ar": (
        18,
        39.9480,
        (0.2385, 0.5017, 1.3428, 1.8899, 0.6079),
        (0.2289, 1.3694, 5.2561, 14.0928, 35.5361),
    ),
    "K": (
        19,
        39.0983,
        (0.4115, 1.4031, 2.2784, 2.6742, 2.2162),
        (0.3703, 3.3874, 13.1029, 68.9592, 194.433),
    ),
    "Ca": (
        20,
        40.0780,
        (0.4054, 1.388, 2.1602, 3.7532, 2.2063),
        (0.3499, 3.0991, 11.9608, 53.9353, 142.389),
    ),
    "Sc": (
        21,
        44.9559,
        (0.3787, 1.2181, 2.0594, 3.2618, 2.387),
        (0.3133, 2.5856, 9.5813, 41.7688, 116.728),
    ),
    "Ti": (
        22,
        47.8670,
        (0.3825, 1.2598, 2.0008, 3.0617, 2.0694),
        (0.304, 2.4863, 9.2783, 39.0751, 109.458),
    ),
    "V": (
        23,
        50.9415,
        (0.3876, 1.275, 1.9109, 2.8314, 1.8979),
        (0.2967, 2.378, 8.7981, 35.9528, 101.72),
    ),
    "Cr": (
        24,
        51.9961,
        (0.4046, 1.3696, 1.8941, 2.08, 1.2196),
        (0.2986, 2.3958, 9.1406, 37.4701, 113.712),
    ),
    "Mn": (
        25,
        54.9380,
        (0.3796, 1.2094, 1.7815, 2.542, 1.5937),
        (0.2699, 2.0455, 7.4726, 31.0604, 91.5622),
    ),
    "Fe": (
        26,
        55.8450,
        (0.3946, 1.2725, 1.7031, 2.314, 1.4795),
        (0.2717, 2.0443, 7.6007, 29.9714, 86.2265),
    ),
    "Co": (
        27,
        58.9332,
        (0.4118, 1.3161, 1.6493, 2.193, 1.283),
        (0.2742, 2.0372, 7.7205, 29.968, 84.9383),
    ),
    "Ni": (
        28,
        58.6934,
        (0.386, 1.1765, 1.5451, 2.073, 1.3814),
        (0.2478, 1.766, 6.3107, 25.2204, 74.3146),
    ),
    "Cu": (
        29,
        63.5460,
        (0.4314, 1.3208, 1.5236, 1.4671, 0.8562),
        (0.2694, 1.9223, 7.3474, 28.9892, 90.6246),
    ),
    "Zn": (
        30,
        65.3800,
        (0.4288, 1.2646, 1.4472, 1.8294, 1.0934),
        (0.2593, 1.7998, 6.75, 25.586, 73.5284),
    ),
    "Ga": (
        31,
        69.7230,
        (0.4818, 1.4032, 1.6561, 2.4605, 1.1054),
        (0.2825, 1.9785, 8.7546, 32.5238, 98.5523),
    ),
    "Ge": (
        32,
        72.6400,
        (0.4655, 1.3014, 1.6088, 2.6998, 1.3003),
        (0.2647, 1.7926, 7.6071, 26.5541, 77.5238),
    ),
    "As": (
        33,
        74.9216,
        (0.4517, 1.2229, 1.5852, 2.7958, 1.2638),
        (0.2493, 1.6436, 6.8154, 22.3681, 62.039),
    ),
    "Se": (
        34,
        78.9600,
        (0.4477, 1.1678, 1.5843, 2.8087, 1.1956),
        (0.2405, 1.5442, 6.3231, 19.461, 52.0233),
    ),
    "Br": (
        35,
        79.9040,
        (0.4798, 1.1948, 1.8695, 2.6953, 0.8203),
        (0.2504, 1.5963, 6.9653, 19.8492, 50.3233),
    ),
    "Kr": (
        36,
        83.7980,
        (0.4546, 1.0993, 1.7696, 2.7068, 0.8672),
        (0.2309, 1.4279, 5.9449, 16.6752, 42.2243),
    ),
    "Rb": (
        37,
        85.4678,
        (1.016, 2.8528, 3.5466, -7.7804, 12.1148),
        (0.4853, 5.0925, 25.7851, 130.452, 138.678),
    ),
    "Sr": (
        38,
        87.6200,
        (0.6703, 1.4926, 3.3368, 4.46, 3.1501),
        (0.319, 2.2287, 10.3504, 52.3291, 151.222),
    ),
    "Y": (
        39,
        88.9059,
        (0.6894, 1.5474, 3.245, 4.2126, 2.9764),
        (0.3189, 2.2904, 10.0062, 44.0771, 125.012),
    ),
    "Zr": (
        40,
        91.2240,
        (0.6719, 1.4684, 3.1668, 3.9557, 2.892),
        (0.3036, 2.1249, 8.9236, 36.8458, 108.205),
    ),
    "Nb": (
        41,
        92.9064,
        (0.6123, 1.2677, 3.0348, 3.3841, 2.3683),
        (0.2709, 1.7683, 7.2489, 27.9465, 98.5624),
    ),
    "Mo": (
        42,
        95.9500,
        (0.6773, 1.4798, 3.1788, 3.0824, 1.8384),
        (0.292, 2.0606, 8.1129, 30.5336, 100.066),
    ),
    "Tc": (
        43,
        98.0000,
        (0.7082, 1.6392, 3.1993, 3.4327, 1.8711),
        (0.2976, 2.2106, 8.5246, 33.1456, 96.6377),
    ),
    "Ru": (
        44,
        101.0700,
        (0.6735, 1.4934, 3.0966, 2.7254, 1.5597),
        (0.2773, 1.9716, 7.3249, 26.6891, 90.5581),
    ),
    "Rh": (
        45,
        102.9055,
        (0.6413, 1.369, 2.9854, 2.6952, 1.5433),
        (0.258, 1.7721, 6.3854, 23.2549, 85.1517),
    ),
    "Pd": (
        46,
        106.4200,
        (0.5904, 1.1775, 2.6519, 2.2875, 0.8689),
        (0.2324, 1.5019, 5.1591, 15.5428, 46.8213),
    ),
    "Ag": (
        47,
        107.8682,
        (0.6377, 1.379, 2.8294, 2.3631, 1.4553),
        (0.2466, 1.6974, 5.7656, 20.0943, 76.7372),
    ),
    "Cd": (
        48,
        112.4110,
        (0.6364, 1.4247, 2.7802, 2.5973, 1.7886),
        (0.2407, 1.6823, 5.6588, 20.7219, 69.1109),
    ),
    "In": (
        49,
        114.8180,
        (0.6768, 1.6589, 2.774, 3.1835, 2.1326),
        (0.2522, 1.8545, 6.2936, 25.1457, 84.5448),
    ),
    "Sn": (
        50,
        118.7100,
        (0.7224, 1.961, 2.7161, 3.5603, 1.8972),
        (0.2651, 2.0604, 7.3011, 27.5493, 81.3349),
    ),
    "Sb": (
        51,
        121.7600,
        (0.7106, 1.9247, 2.6149, 3.8322, 1.8899),
        (0.2562, 1.9646, 6.8852, 24.7648, 68.9168),
    ),
    "Te": (
        52,
        127.6000,
        (0.6947, 1.869, 2.5356, 4.0013, 1.8955),
        (0.2459, 1.8542, 6.4411, 22.173, 59.2206),
    ),
    "I": (
        53,
        126.9045,
        (0.7047, 1.9484, 2.594, 4.1526, 1.5057),
        (0.2455, 1.8638, 6.7639, 21.8007, 56.4395),
    ),
    "Xe": (
        54,
        131.2930,
        (0.6737, 1.7908, 2.4129, 4.21, 1.7058),
        (0.2305, 1.689, 5.8218, 18.3928, 47.2496),
    ),
    "W": (
        74,
        183.8400,
        (0.9853, 2.1167, 3.357, 3.7981, 2.2798),
        (0.2569, 1.6745, 7.0098, 26.9234, 81.391),
    ),
    "Os": (
        76,
        190.2300,
        (0.9813, 2.0322, 3.3665, 3.6235, 1.9741),
        (0.2487, 1.5973, 6.4737, 23.2817, 70.9254),
    ),
    "Ir": (
        77,
        192.2170,
        (1.0194, 2.0645, 3.4425, 3.4914, 1.6976),
        (0.2554, 1.6475, 6.5966, 23.2269, 70.0272),
    ),
    "Pt": (
        78,
        195.0840,
        (0.9148, 1.8096, 3.2134, 3.2953, 1.5754),
        (0.2263, 1.3813, 5.3243, 17.5987, 60.0171),
    ),
    "Au": (
        79,
        196.9670,
        (0.9674, 1.8916, 3.3993, 3.0524, 1.2607),
        (0.2358, 1.4712, 5.6758, 18.7119, 61.5286),
    ),
    "Hg": (
        80,
        200.5900,
        (1.0033, 1.9469, 3.4396, 3.1548, 1.418),
        (0.2413, 1.5298, 5.8009, 19.452, 60.5753),
    ),
    "Pb": (
        82,
        207.2000,
        (1.0891, 2.1867, 3.616, 3.8031, 1.8994),
        (0.2552, 1.7174, 6.5131, 23.917, 74.7039),
    ),
    "U": (
        92,
        238.0290,
        (1.3382, 3.2043, 5.4558, 5.4839, 3.6342),
        (0.2838, 2.2452, 10.2519, 41.7251, 124.902),
    ),
}

_BY_Z = {v[0]: k for k, v in ELEMENTS.items()}

_CHUNK = 16384  # atoms per vectorised block (bounds memory: chunk x (2r+1)^3 floats)


def resolution_sigma(resolution: float) -> float:
    """Gaussian standard deviation (Å) used for a map at ``resolution`` (Å).

    ``sigma = resolution / (pi * sqrt(2))``, the convention of Chimera's ``molmap``.
    """
    return float(resolution) / (math.pi * math.sqrt(2.0))


def _symbols(elements: Sequence[str] | Sequence[int] | np.ndarray) -> list[str]:
    arr = np.asarray(elements)
    out: list[str] = []
    if arr.dtype.kind in "iu":
        for i, z in enumerate(arr.tolist()):
            if z not in _BY_Z:
                raise ConfigError(
                    f"atom {i}: atomic number {z} has no scattering factor in "
                    f"cryoal.simulate.density.ELEMENTS; drop the atom or map it to a known element"
                )
            out.append(_BY_Z[z])
        return out
    for i, e in enumerate(arr.tolist()):
        sym = str(e).strip()
        sym = sym[:1].upper() + sym[1:].lower()
        if sym not in ELEMENTS:
            raise ConfigError(
                f"atom {i}: unknown element {e!r}; use a chemical symbol such as C, N, O, S "
                "(see cryoal.simulate.density.ELEMENTS)"
            )
        out.append(sym)
    return out


def atomic_numbers(elements: Sequence[str] | Sequence[int] | np.ndarray) -> np.ndarray:
    """Atomic numbers ``(N,)`` int64 of element symbols (or pass-through of numbers)."""
    return np.array([ELEMENTS[s][0] for s in _symbols(elements)], dtype=np.int64)


def atomic_weights(elements: Sequence[str] | Sequence[int] | np.ndarray) -> np.ndarray:
    """Standard atomic weights ``(N,)`` float64 in Da."""
    return np.array([ELEMENTS[s][1] for s in _symbols(elements)], dtype=np.float64)


def _as_box(box: int | Sequence[int]) -> tuple[int, int, int]:
    if isinstance(box, (int, np.integer)):
        shape = (int(box),) * 3
    else:
        shape = tuple(int(b) for b in box)  # type: ignore[assignment]
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(
            f"box must be a positive int or three positive ints (D, H, W), got {box!r}"
        )
    return shape  # type: ignore[return-value]


def density_from_atoms(
    coords: np.ndarray,
    elements: Sequence[str] | Sequence[int] | np.ndarray,
    voxel_size: float,
    box: int | Sequence[int],
    resolution: float | None = None,
    method: str = "gaussian",
    *,
    bfactor: float = 0.0,
    center: Sequence[float] | None = None,
) -> np.ndarray:
    """Splat atoms onto a voxel grid as a low-passed density map.

    Parameters
    ----------
    coords
        Atom positions ``(N, 3)`` in Å, columns x, y, z (PDB order).
    elements
        ``(N,)`` element symbols (``"C"``, ``"FE"``...) or atomic numbers.
    voxel_size
        Voxel edge in Å.
    box
        Grid shape: an int for a cube, or ``(D, H, W)`` = (z, y, x) sizes in voxels.
    resolution
        Resolution of the low-pass in Å (Gaussian blur with ``resolution_sigma``). Default
        ``2 * voxel_size`` (Nyquist).
    method
        ``"gaussian"`` (weight Z per atom) or ``"scattering"`` (Peng five-Gaussian
        electron scattering factors); see the module docstring.
    bfactor
        Extra isotropic B-factor in Å^2 (``"scattering"`` only; for ``"gaussian"`` it adds
        ``B / (8 pi^2)`` to the variance).
    center
        Point (x, y, z) in Å placed at the grid centre voxel ``(D//2, H//2, W//2)``.
        Default: the weighted centre of the atoms (so the molecule is centred).

    Returns
    -------
    numpy.ndarray
        ``(D, H, W)`` float32 map; each voxel holds the density integrated over the voxel,
        so ``map.sum()`` equals the sum of atom weights for atoms well inside the box.

    Raises
    ------
    ConfigError
        Bad shapes, non-positive voxel size or resolution, unknown method or element.
    """
    xyz = np.asarray(coords, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ConfigError(f"coords must have shape (N, 3) in Å (x, y, z), got {xyz.shape}")
    if not np.isfinite(xyz).all():
        raise ConfigError("coords contain NaN or Inf; clean the atomic model first")
    symbols = _symbols(elements)
    if len(symbols) != xyz.shape[0]:
        raise ConfigError(
            f"{xyz.shape[0]} coordinates but {len(symbols)} elements; pass one element per atom"
        )
    if not voxel_size > 0:
        raise ConfigError(f"voxel_size must be > 0 Å, got {voxel_size}")
    res = 2.0 * float(voxel_size) if resolution is None else float(resolution)
    if not res > 0:
        raise ConfigError(f"resolution must be > 0 Å, got {resolution}")
    if method not in ("gaussian", "scattering"):
        raise ConfigError(f"unknown density method {method!r}; use 'gaussian' or 'scattering'")
    if bfactor < 0:
        raise ConfigError(f"bfactor must be >= 0 Å^2, got {bfactor}")
    shape = _as_box(box)
    out = np.zeros(int(np.prod(shape)), dtype=np.float64)
    if xyz.shape[0] == 0:
        return out.reshape(shape).astype(np.float32)

    uniq = sorted(set(symbols))
    sym_index = np.array([uniq.index(s) for s in symbols], dtype=np.int64)
    sigma2_res = resolution_sigma(res) ** 2
    if method == "gaussian":
        # one term per atom: weight Z, variance sigma_res^2 + B / 8pi^2
        amp = np.array([[float(ELEMENTS[s][0])] for s in uniq])
        var = np.full_like(amp, sigma2_res + bfactor / (8 * math.pi**2))
    else:
        a = np.array([ELEMENTS[s][2] for s in uniq])
        b = np.array([ELEMENTS[s][3] for s in uniq]) + bfactor + 8 * math.pi**2 * sigma2_res
        amp = a
        var = b / (8 * math.pi**2)  # exp(-4 pi^2 r^2 / b) = exp(-r^2 / (2 var))
    weights_all = atomic_numbers(symbols).astype(np.float64) if method == "gaussian" else None
    if center is None:
        w = weights_all if weights_all is not None else amp.sum(axis=1)[sym_index]
        ctr = (xyz * w[:, None]).sum(axis=0) / w.sum()
    else:
        ctr = np.asarray(center, dtype=np.float64).reshape(3)

    # grid coordinates in voxels, z-y-x order, origin at the centre voxel
    pos = (xyz - ctr)[:, ::-1] / voxel_size + np.array([s // 2 for s in shape], dtype=np.float64)
    radius = int(math.ceil(4.0 * math.sqrt(float(var.max())) / voxel_size))
    offs = np.arange(-radius, radius + 1)
    k = offs.size
    strides = np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)

    for start in range(0, xyz.shape[0], _CHUNK):
        p = pos[start : start + _CHUNK]
        si = sym_index[start : start + _CHUNK]
        base = np.rint(p).astype(np.int64)  # (n, 3)
        idx = base[:, :, None] + offs[None, None, :]  # (n, 3, k)
        d = idx - p[:, :, None]  # voxel units
        vals = np.zeros((p.shape[0], k, k, k), dtype=np.float64)
        for t in range(amp.shape[1]):
            scale = 1.0 / (np.sqrt(2.0 * var[si, t]) / voxel_size)  # (n,), per voxel unit
            # exact integral of the normalised 1D Gaussian over each voxel [d - 1/2, d + 1/2]
            e = 0.5 * (
                special.erf((d + 0.5) * scale[:, None, None])
                - special.erf((d - 0.5) * scale[:, None, None])
            )  # (n, 3, k)
            vals += amp[si, t][:, None, None, None] * (
                e[:, 0, :, None, None] * e[:, 1, None, :, None] * e[:, 2, None, None, :]
            )
        inside = (idx >= 0) & (idx < np.array(shape)[None, :, None])  # (n, 3, k)
        ok = inside[:, 0, :, None, None] & inside[:, 1, None, :, None] & inside[:, 2, None, None, :]
        lin = (
            idx[:, 0, :, None, None] * strides[0]
            + idx[:, 1, None, :, None] * strides[1]
            + idx[:, 2, None, None, :] * strides[2]
        )
        out += np.bincount(lin[ok], weights=vals[ok], minlength=out.size)
    return out.reshape(shape).astype(np.float32)

"""Contrast transfer function of the electron microscope, in 3D.

Conventions (see docs/simulation.md, "Physics"):

- ``CTF(k) = [sqrt(1 - A²)·sin χ(k) + A·cos χ(k)] · exp(-B k² / 4)``, so ``CTF(0) = +A``:
  the sign of RELION (``CTF::getCTF``, ``-sin(K1 Δf' k² + K2 k⁴ - K3)`` with
  ``Δf' = -Δf``), teamtomo torch-ctf and torch-fourier-filter (``-sin(χ' - arctan(A/√(1-A²)))``
  with their ``χ' = -χ``); tests check the values against torch-ctf.
- The image a microscope records of a density ``ρ`` (protein > 0) under underfocus has the
  protein **dark**: ``image(k) = -CTF(k) · ρ(k)`` (:func:`apply_ctf`'s default
  ``contrast="dark"``, what the simulator does). ``contrast="bright"`` multiplies by
  ``CTF`` itself: protein bright, as RELION's CTF-modulated references and contrast-inverted
  particles.
- ``χ(k) = π λ Δf k² - (π/2) Cs λ³ k⁴``
- ``k`` is the spatial frequency in cycles/Å, ``λ`` the relativistic electron wavelength
  in Å, ``Δf`` the defocus in Å with **positive = underfocus** (RELION/CTFFIND), ``Cs`` the
  spherical aberration in Å, ``A`` the amplitude contrast fraction, ``B`` the B-factor
  in Å². Simulators that write underfocus as a negative number (e.g. aitom's "−5 µm")
  mean ``defocus_um=5`` here; a negative ``defocus_um`` is overfocus.
- In 3D the CTF is applied as a function of the radial frequency ``|k|`` (the usual
  subtomogram-simulation approximation: one defocus for the whole volume, no per-tilt
  CTF or defocus gradient).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from cryoal.errors import ConfigError
from cryoal.transforms._fourier import check_shape, fourier_filter, frequency_grid

__all__ = ["apply_ctf", "ctf_1d", "ctf_3d", "ctf_zero_frequencies", "electron_wavelength"]

# CODATA 2018
_H = 6.62607015e-34  # Planck constant, J s
_M0 = 9.1093837015e-31  # electron rest mass, kg
_E = 1.602176634e-19  # elementary charge, C
_C = 299792458.0  # speed of light, m/s


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength.

    ``λ = h / sqrt(2 m₀ e V (1 + e V / (2 m₀ c²)))``.

    Parameters
    ----------
    voltage_kv
        Acceleration voltage in kV (> 0).

    Returns
    -------
    float
        Wavelength in Å (0.0197 Å at 300 kV, 0.0251 Å at 200 kV).
    """
    v = float(voltage_kv)
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(f"electron_wavelength: voltage_kv must be positive, got {voltage_kv!r}")
    volts = v * 1e3
    p = math.sqrt(2 * _M0 * _E * volts * (1 + _E * volts / (2 * _M0 * _C**2)))
    return _H / p * 1e10


def _check_params(
    voltage_kv: float, cs_mm: float, amplitude_contrast: float, bfactor: float
) -> None:
    if not math.isfinite(float(voltage_kv)) or float(voltage_kv) <= 0:
        raise ConfigError(f"ctf: voltage_kv must be positive, got {voltage_kv!r}")
    if not math.isfinite(float(cs_mm)) or float(cs_mm) < 0:
        raise ConfigError(f"ctf: cs_mm must be >= 0 mm, got {cs_mm!r}")
    if not 0.0 <= float(amplitude_contrast) < 1.0:
        raise ConfigError(
            f"ctf: amplitude_contrast must be in [0, 1), got {amplitude_contrast!r} "
            "(a fraction, e.g. 0.07, not a percentage)"
        )
    if not math.isfinite(float(bfactor)) or float(bfactor) < 0:
        raise ConfigError(f"ctf: bfactor must be >= 0 Å², got {bfactor!r}")


def ctf_1d(
    k: torch.Tensor,
    defocus_um: float | torch.Tensor,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    bfactor: float = 0.0,
) -> torch.Tensor:
    """Evaluate the CTF at spatial frequencies.

    Parameters
    ----------
    k
        Spatial frequencies ``(...)`` in cycles/Å (the modulus; sign is irrelevant).
    defocus_um
        Defocus in µm, positive = underfocus; a scalar or a tensor broadcastable with ``k``.
    voltage_kv, cs_mm, amplitude_contrast, bfactor
        Acceleration voltage (kV), spherical aberration (mm), amplitude contrast fraction,
        B-factor (Å²) of the envelope ``exp(-B k² / 4)``.

    Returns
    -------
    torch.Tensor
        CTF values ``sqrt(1 - A²)·sin χ + A·cos χ`` (times the envelope), broadcast shape of
        ``k`` and ``defocus_um``, dtype of ``k``; ``+A`` at ``k = 0`` (RELION's sign).
    """
    _check_params(voltage_kv, cs_mm, amplitude_contrast, bfactor)
    lam = electron_wavelength(voltage_kv)
    k2 = k.to(torch.float64) ** 2
    df = torch.as_tensor(defocus_um, dtype=torch.float64, device=k.device) * 1e4
    cs = float(cs_mm) * 1e7
    chi = math.pi * lam * df * k2 - 0.5 * math.pi * cs * lam**3 * k2**2
    a = float(amplitude_contrast)
    ctf = math.sqrt(1.0 - a * a) * torch.sin(chi) + a * torch.cos(chi)
    if bfactor:
        ctf = ctf * torch.exp(-float(bfactor) * k2 / 4.0)
    return ctf.to(k.dtype if k.is_floating_point() else torch.float32)


def ctf_zero_frequencies(
    n_zeros: int,
    defocus_um: float,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
) -> list[float]:
    """Analytic frequencies of the first CTF zeros (Thon rings).

    Zeros sit where ``χ(k) = nπ - arctan(A / sqrt(1 - A²))``, n = 1, 2, ...; solving the
    quadratic in ``u = k²``: ``(π/2) Cs λ³ u² - π λ Δf u + χ_n = 0`` (smaller root).

    Parameters
    ----------
    n_zeros
        How many zeros to return.
    defocus_um
        Underfocus in µm (> 0).
    voltage_kv, cs_mm, amplitude_contrast
        As in :func:`ctf_1d`.

    Returns
    -------
    list[float]
        Frequencies in cycles/Å, increasing. Fewer than ``n_zeros`` when the spherical
        aberration term turns χ back before reaching them.
    """
    _check_params(voltage_kv, cs_mm, amplitude_contrast, 0.0)
    if float(defocus_um) <= 0:
        raise ConfigError(
            f"ctf_zero_frequencies: defocus_um must be > 0 (underfocus), got {defocus_um}"
        )
    lam = electron_wavelength(voltage_kv)
    df = float(defocus_um) * 1e4
    cs = float(cs_mm) * 1e7
    a = float(amplitude_contrast)
    phi = math.atan(a / math.sqrt(1 - a * a))
    out = []
    for n in range(1, int(n_zeros) + 1):
        chi_n = n * math.pi - phi
        qa, qb = 0.5 * math.pi * cs * lam**3, -math.pi * lam * df
        disc = qb * qb - 4 * qa * chi_n
        if disc < 0:
            break
        # smaller root, in the form without cancellation when Cs is small
        u = 2 * chi_n / (-qb + math.sqrt(disc))
        out.append(math.sqrt(u))
    return out


@lru_cache(maxsize=64)
def _radius_cpu(shape: tuple[int, int, int]) -> torch.Tensor:
    kz, ky, kx = frequency_grid(shape)
    return torch.sqrt(kz**2 + ky**2 + kx**2)


@lru_cache(maxsize=32)
def _ctf_cpu(
    shape: tuple[int, int, int],
    voxel_size: float,
    defocus_um: float,
    voltage_kv: float,
    cs_mm: float,
    amplitude_contrast: float,
    bfactor: float,
) -> torch.Tensor:
    k = _radius_cpu(shape) / voxel_size
    return ctf_1d(k, defocus_um, voltage_kv, cs_mm, amplitude_contrast, bfactor).to(torch.float32)


def ctf_3d(
    shape: tuple[int, int, int] | torch.Size,
    voxel_size: float,
    defocus_um: float | torch.Tensor,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    bfactor: float = 0.0,
    *,
    rfft: bool = False,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Radially symmetric 3D CTF on a Fourier grid.

    Parameters
    ----------
    shape
        Box ``(D, H, W)`` in voxels.
    voxel_size
        Voxel size in Å (> 0); frequency of voxel ``i`` along an axis of ``N`` is
        ``fftfreq(N)[i] / voxel_size`` cycles/Å.
    defocus_um
        Defocus in µm, **positive = underfocus**. A float, or a tensor ``(B,)`` of one
        defocus per volume (then the result is ``(B, 1, D, H, W')``).
    voltage_kv, cs_mm, amplitude_contrast, bfactor
        Acceleration voltage (kV), spherical aberration (mm), amplitude contrast
        fraction in [0, 1), B-factor (Å², envelope ``exp(-B k² / 4)``).
    rfft
        Half-spectrum layout ``(D, H, W // 2 + 1)`` of :func:`torch.fft.rfftn`.
    device
        Device of the result (default: the defocus tensor's device, else CPU).

    Returns
    -------
    torch.Tensor
        float32 CTF ``(D, H, W')`` (``W' = W`` or ``W // 2 + 1``) in the unshifted FFT
        layout; ``CTF(0) = +A`` (RELION's sign).

    Raises
    ------
    ConfigError
        Bad shape or physical parameter.
    """
    box = check_shape(tuple(shape), "ctf_3d")
    vs = float(voxel_size)
    if not math.isfinite(vs) or vs <= 0:
        raise ConfigError(f"ctf_3d: voxel_size must be positive Å, got {voxel_size!r}")
    _check_params(voltage_kv, cs_mm, amplitude_contrast, bfactor)
    w = box[2] // 2 + 1 if rfft else box[2]
    if isinstance(defocus_um, torch.Tensor) and defocus_um.ndim > 0:
        if defocus_um.ndim != 1:
            raise ConfigError(
                f"ctf_3d: defocus_um must be a float or a 1-D tensor (B,), got shape {tuple(defocus_um.shape)}"
            )
        dev = torch.device(device) if device is not None else defocus_um.device
        k = (_radius_cpu(box)[..., :w] / vs).to(dev)
        df = defocus_um.to(device=dev, dtype=torch.float64).view(-1, 1, 1, 1, 1)
        out = ctf_1d(k, df, voltage_kv, cs_mm, amplitude_contrast, bfactor)
        return out.to(torch.float32)
    df_f = float(defocus_um)
    if not math.isfinite(df_f):
        raise ConfigError(f"ctf_3d: defocus_um must be finite, got {defocus_um!r}")
    ctf = _ctf_cpu(
        box, vs, df_f, float(voltage_kv), float(cs_mm), float(amplitude_contrast), float(bfactor)
    )
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return ctf[..., :w].to(device=dev, copy=True)


def apply_ctf(
    x: torch.Tensor, ctf: torch.Tensor, mode: str = "full", *, contrast: str = "dark"
) -> torch.Tensor:
    """Filter real volumes with a CTF.

    Parameters
    ----------
    x
        Real volumes ``(..., D, H, W)``.
    ctf
        CTF from :func:`ctf_3d` (RELION's sign, ``CTF(0) = +A``), full ``(D, H, W)`` or half
        ``(D, H, W // 2 + 1)`` layout, optionally with leading dims broadcastable to
        ``x``'s. Moved to ``x``'s device.
    mode
        ``"full"``: image formation, the spectrum times the CTF (with the sign of
        ``contrast``); ``"phaseflip"``: multiply by ``sign(CTF)`` (the usual correction:
        flips the phases of the negative lobes, leaves amplitudes and the contrast alone).
    contrast
        With ``mode="full"``: ``"dark"`` (default) multiplies by ``-CTF``, the image a
        microscope records (protein dark under underfocus, as in raw tomograms and in
        cryoal's simulated pools); ``"bright"`` multiplies by ``CTF`` (protein bright:
        RELION's CTF-modulated references, or particles after contrast inversion).

    Returns
    -------
    torch.Tensor
        Real filtered volumes, same shape, dtype and device as ``x``.

    Raises
    ------
    ConfigError
        Unknown mode or contrast, or the CTF does not match the volume box.
    """
    if contrast not in ("dark", "bright"):
        raise ConfigError(f"apply_ctf: contrast must be 'dark' or 'bright', got {contrast!r}")
    if mode == "full":
        filt = -ctf if contrast == "dark" else ctf
    elif mode == "phaseflip":
        filt = torch.where(ctf < 0, -torch.ones_like(ctf), torch.ones_like(ctf))
    else:
        raise ConfigError(f"apply_ctf: mode must be 'full' or 'phaseflip', got {mode!r}")
    return fourier_filter(x, filt, "apply_ctf")

"""Measure the contrast and the output SNR of cryoal's simulator and of aitom's recipe.

For each nominal SNR, subtomograms of the demo's four structures (32³, 1 nm voxels,
5 µm underfocus, ±60° wedge, no shift) are simulated

- by cryoal (:func:`cryoal.simulate.simulate_subtomograms`, ``noise="white"`` and
  ``"two-stage"``), and
- by a torch transcription of aitom's ``do_reconstruction``
  (xulabs/aitom ``aitom/simulation/reconstruction/reconstruction__simple_convolution.py``,
  with ``tom_bandpass`` from ``reconstruction__util.py``, ``sphere_mask`` from
  ``aitom/model/util.py`` and ``create`` from ``aitom/image/optics/ctf.py``; its demo
  parameters ``missing_wedge_angle=30, pix_size=1 nm, Dz=-5 µm, voltage=300, Cs=2,
  sigma=0.4``):

  1. ``signal_variance = var(F⁻¹[M·C·F v]) / mean|M·C|²``, ``M`` = wedge × Fourier sphere,
     ``C`` = aitom's CTF (no amplitude contrast, envelope ``exp(-(k / 0.4 k_Ny)²)``);
  2. ``v ← BP(v)``: low-pass at ``floor(N / 4)`` Fourier voxels (half Nyquist at 1 nm),
     Gaussian edge σ = 2 voxels;
  3. ``y = C·(v + n₁) + BP₁(n₂)``, ``var n₁ = var n₂ = 0.5 / SNR · signal_variance``,
     ``BP₁`` a low-pass at radius 1 voxel with σ = 0.2 N (the "MTF" noise);
  4. ``y ← M · BP(y)``.

and the output is split into signal (the same chain without noise) and noise. Reported:
measured ``var(signal) / var(noise)`` in the final volume, the ratio to the nominal SNR,
and the correlation of the output with the rotated density (its sign is the contrast).

Example usage::

    python benchmarks/measure_contrast_snr.py --n 8
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from cryoal.simulate import load_structure, simulate_subtomograms
from cryoal.transforms import euler_to_matrix, missing_wedge_mask, rotate_volume

STRUCTURES = ["6ZU5", "4V8R-A", "7PBL", "3ENL"]
BOX, VOXEL = 32, 10.0


def _centred_radius(n: int) -> torch.Tensor:
    """Fourier radius in voxels on the unshifted FFT grid ``(n, n, n)``."""
    f = torch.fft.fftfreq(n, dtype=torch.float64) * n
    return torch.sqrt(f.view(-1, 1, 1) ** 2 + f.view(1, -1, 1) ** 2 + f.view(1, 1, -1) ** 2)


def _aitom_sphere(r: torch.Tensor, radius: float, smooth: float | None) -> torch.Tensor:
    """aitom ``sphere_mask`` in Fourier space: 1 inside, ``exp(-((d - r)/s)²)`` outside."""
    m = (r <= radius).double()
    if smooth is not None:
        tail = torch.exp(-(((r - radius) / smooth) ** 2))
        tail = torch.where(tail < math.exp(-3), torch.zeros_like(tail), tail)
        m = torch.where(r >= radius, tail, m)
    return m


def _aitom_ctf(r_vox: torch.Tensor, n: int, pix_nm: float) -> torch.Tensor:
    """aitom ``ctf.create(Dz=-5, pix_size=1, voltage=300, Cs=2, sigma=0.4)`` (no amplitude)."""
    cs, volt, pix, dz = 2.0e-3, 300e3, pix_nm * 1e-9, -5.0e-6
    lam = math.sqrt(150.4 / (volt * (1.0 + volt / 1022000.0))) * 1e-10
    ny = 1.0 / (2.0 * pix)
    k = r_vox * ny / (n / 2.0)  # 1/m, as aitom's grid
    ctf = torch.sin((math.pi / 2.0) * (cs * lam**3 * k**4 - 2.0 * dz * lam * k**2))
    return ctf * torch.exp(-((k / (0.4 * ny)) ** 2))


def _filter(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    return torch.fft.ifftn(torch.fft.fftn(x, dim=(-3, -2, -1)) * h, dim=(-3, -2, -1)).real


def aitom_recipe(
    v: torch.Tensor, snr: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """aitom's ``do_reconstruction`` on ``v (B, N, N, N)``; returns ``(signal, noise)``."""
    n = v.shape[-1]
    r = _centred_radius(n)
    wedge = missing_wedge_mask((n, n, n), (-60.0, 60.0)).double()
    mask = wedge * (r <= n / 2.0).double()
    ctf = _aitom_ctf(r, n, VOXEL / 10.0)
    v = v.double()
    sv = _filter(v, ctf * mask).var(dim=(-3, -2, -1), unbiased=False)
    sv = sv / (ctf * mask).pow(2).mean()  # corrfac = E var(e) / var(M C e)
    bp = _aitom_sphere(r, math.floor((n / 8.0) / (1.0 / (2.0 * VOXEL / 10.0))), 2.0)
    bp_mtf = _aitom_sphere(r, 1.0, 0.2 * n)
    sigma = torch.sqrt(0.5 / snr * sv).view(-1, 1, 1, 1)
    n1 = torch.randn(v.shape, generator=generator, dtype=torch.float64) * sigma
    n2 = torch.randn(v.shape, generator=generator, dtype=torch.float64) * sigma
    signal = _filter(v, bp * ctf * bp * mask)
    noise = _filter(n1, ctf * bp * mask) + _filter(n2, bp_mtf * bp * mask)
    return signal, noise


def _corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))


def _snr(signal: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    dims = (-3, -2, -1)
    return signal.var(dim=dims, unbiased=False) / noise.var(dim=dims, unbiased=False)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=8, help="volumes per structure")
    p.add_argument("--snrs", type=float, nargs="+", default=[1.0, 0.5, 0.1, 0.05, 0.01])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    t0, c0 = time.perf_counter(), time.process_time()
    names = STRUCTURES
    base = simulate_subtomograms(
        names, args.n, box=BOX, voxel_size=VOXEL, snr=math.inf, tilt_range=None,
        defocus=None, shift_max=0.0, seed=args.seed, shuffle=False,
    )  # fmt: skip
    angles = torch.tensor(base.metadata[["rot", "tilt", "psi"]].to_numpy())
    density = torch.cat(
        [
            rotate_volume(
                torch.from_numpy(load_structure(nm, VOXEL, box=BOX).density).expand(
                    args.n, 1, BOX, BOX, BOX
                ),
                euler_to_matrix(angles[i * args.n : (i + 1) * args.n]).float(),
            ).squeeze(1)
            for i, nm in enumerate(names)
        ]
    )
    print(
        "| nominal SNR | simulator | measured SNR (mean) | measured / nominal | corr(volume, density) |"
    )
    print("|---|---|---|---|---|")
    for snr in args.snrs:
        for recipe in ("white", "two-stage"):
            s = simulate_subtomograms(
                names, args.n, box=BOX, voxel_size=VOXEL, snr=snr, defocus=5.0,
                shift_max=0.0, seed=args.seed, shuffle=False, noise=recipe, return_clean=True,
            )  # fmt: skip
            assert s.clean is not None
            m = _snr(s.clean, s.volumes - s.clean).mean().item()
            c = _corr(s.volumes, density).mean().item()
            print(f"| {snr:g} | cryoal `{recipe}` | {m:.3g} | {m / snr:.2f} | {c:+.2f} |")
        g = torch.Generator().manual_seed(args.seed)
        sig, noi = aitom_recipe(density, snr, g)
        m = _snr(sig, noi).mean().item()
        c = _corr(sig + noi, density).mean().item()
        print(f"| {snr:g} | aitom recipe (torch) | {m:.3g} | {m / snr:.2f} | {c:+.2f} |")
    print(
        f"\n{len(names) * args.n} volumes per row; {time.perf_counter() - t0:.1f} s wall, "
        f"{time.process_time() - c0:.1f} s CPU"
    )


if __name__ == "__main__":
    main()

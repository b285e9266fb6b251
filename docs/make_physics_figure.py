"""Draw docs/figures/physics.png: missing wedge, CTF and their effect on a volume.

Usage::

    python docs/make_physics_figure.py [--out docs/figures/physics.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from matplotlib.figure import Figure

from cryoal import transforms as T
from cryoal._atomic import atomic_path

BOX = 64
VOXEL = 10.0  # Å
DEFOCUS = 5.0  # µm, underfocus


def _object() -> torch.Tensor:
    """A smooth test object: a ring of Gaussian blobs plus a rod, ``(D, H, W)``."""
    z, y, x = torch.meshgrid(
        *(torch.arange(BOX, dtype=torch.float64) - BOX // 2,) * 3, indexing="ij"
    )
    vol = torch.zeros(BOX, BOX, BOX, dtype=torch.float64)
    for k in range(8):
        a = torch.tensor(2 * torch.pi * k / 8)
        cx, cz = 14 * torch.cos(a), 14 * torch.sin(a)
        vol += torch.exp(-((x - cx) ** 2 + y**2 + (z - cz) ** 2) / (2 * 2.5**2))
    vol += 0.7 * torch.exp(-(x**2 + z**2) / (2 * 2.0**2)) * (y.abs() < 12)
    return vol.float()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "figures" / "physics.png")
    args = p.parse_args(argv)

    box = (BOX, BOX, BOX)
    mask = T.missing_wedge_mask(box, (-60, 60))
    ctf = T.ctf_3d(box, VOXEL, DEFOCUS)
    vol = _object()
    wedged = T.apply_missing_wedge(vol, mask)
    imaged = T.add_noise(
        T.apply_missing_wedge(T.apply_ctf(vol, ctf), mask),
        0.1,
        generator=torch.Generator().manual_seed(0),
    )

    fig = Figure(figsize=(11, 7))
    axes = fig.subplots(2, 3)
    shift = lambda a: torch.fft.fftshift(a).numpy()  # noqa: E731
    ext = [-0.5 / VOXEL, 0.5 / VOXEL, -0.5 / VOXEL, 0.5 / VOXEL]
    axes[0, 0].imshow(shift(mask[:, 0, :]), cmap="gray", origin="lower", extent=ext)
    axes[0, 0].set(title="missing wedge ±60°, tilt axis y", xlabel="kx (1/Å)", ylabel="kz (1/Å)")
    axes[0, 1].imshow(
        shift(ctf[:, 0, :]), cmap="RdBu_r", origin="lower", extent=ext, vmin=-1, vmax=1
    )
    axes[0, 1].set(
        title=f"CTF, {DEFOCUS:g} µm underfocus, 300 kV", xlabel="kx (1/Å)", ylabel="kz (1/Å)"
    )
    k = torch.linspace(0, 0.5 / VOXEL, 500, dtype=torch.float64)
    axes[0, 2].plot(k.numpy(), T.ctf_1d(k, DEFOCUS).numpy(), lw=1)
    for z in T.ctf_zero_frequencies(12, DEFOCUS):
        if z < k[-1]:
            axes[0, 2].axvline(z, color="k", lw=0.5, ls=":")
    axes[0, 2].set(title="CTF profile; dotted: analytic zeros", xlabel="k (1/Å)", ylabel="CTF")
    for ax, v, title in zip(
        axes[1],
        (vol, wedged, imaged),
        ("object (x–z slice)", "after the missing wedge", "CTF + wedge + noise, SNR 0.1"),
        strict=True,
    ):
        ax.imshow(v[:, BOX // 2, :].numpy(), cmap="gray", origin="lower")
        ax.set(title=title, xlabel="x (voxel)", ylabel="z (voxel)")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, dpi=90, format="png")


if __name__ == "__main__":
    main()

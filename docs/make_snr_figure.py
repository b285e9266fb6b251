"""Draw docs/img/snr_levels.png: one real structure simulated at each SNR (central slices).

The TRiC/CCT chaperonin (4V8R, one complex) at 1 nm voxels in a 40³ box, same
orientation at every level, full physics (5 µm underfocus CTF, ±60° wedge about y,
two-stage noise). Top row: the x-y central slice; bottom row: the x-z slice (the missing
wedge elongates the particle along z).

Usage::

    python docs/make_snr_figure.py [--out docs/img/snr_levels.png] [--structure 4V8R-A]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from matplotlib.figure import Figure

from cryoal._atomic import atomic_path
from cryoal.simulate import simulate_subtomograms

SNRS = (math.inf, 1.0, 0.1, 0.05, 0.03, 0.01)
BOX = 40


def render(structure: str, out: Path) -> Path:
    rot = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # side view
    fig = Figure(figsize=(2.0 * len(SNRS), 4.3), dpi=90)
    axes = fig.subplots(2, len(SNRS))
    for j, snr in enumerate(SNRS):
        sim = simulate_subtomograms(
            [structure], 1, box=BOX, voxel_size=10.0, snr=snr, rotation=rot.unsqueeze(0),
            defocus=5.0, tilt_range=(-60.0, 60.0), noise="two-stage", seed=0,
        )  # fmt: skip
        vol = -sim.volumes[0]  # protein white
        for i, img in enumerate((vol[BOX // 2], vol[:, BOX // 2, :])):
            ax = axes[i, j]
            ax.imshow(img.numpy(), cmap="gray", origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, j].set_title("SNR ∞" if math.isinf(snr) else f"SNR {snr:g}")
    axes[0, 0].set_ylabel("x-y slice")
    axes[1, 0].set_ylabel("x-z slice")
    fig.suptitle(f"{structure} at 1 nm voxels, CTF 5 µm, ±60° wedge", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "img" / "snr_levels.png"
    )
    parser.add_argument("--structure", default="4V8R-A")
    args = parser.parse_args()
    print(render(args.structure, args.out))


if __name__ == "__main__":
    main()

"""Session-wide test settings and fixtures shared by every test module."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from cryoal.io._copick import import_copick

if TYPE_CHECKING:
    from cryoal.simulate import SimulatedCopickProject

# Two test workers share two cores: one intra-op thread each avoids oversubscription.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")
# Test modules import copick; the first import must not install copick's INFO-level
# root handler, which would print every library's INFO record into captured CLI output.
import_copick()


@pytest.fixture
def generator() -> torch.Generator:
    """A seeded CPU generator, fresh for each test."""
    return torch.Generator().manual_seed(1234)


_TINY_DEMO = (
    "name: demo\nkind: subtomograms\ndescription: tiny stand-in\nseed: 0\n"
    "structures: [6ZU5, 7PBL]\nbox: 16\nvoxel_size: 20.0\nn_per_class: 6\nsnr: 1.0\n"
    "tilt_range: [-60, 60]\ndefocus_um: 5.0\nnoise: white\ntest: {n_per_class: 2}\n"
)


@pytest.fixture
def demo_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding a folder named ``demo``, and a demo cache prefilled.

    The cache (``$CRYOAL_CACHE``) holds a tiny 12-volume pool of 2 classes (6ZU5, 7PBL)
    under the key of the *bundled* ``demo`` manifest, so ``--demo`` and
    ``ca.simulate("demo")`` find it only if they resolve ``demo`` to the bundled manifest.
    """
    from cryoal.manifests import build, load_manifest, parse_manifest

    bundled = load_manifest("demo")  # before the chdir
    digest = hashlib.sha256(bundled.text.encode("utf-8")).hexdigest()[:12]
    cache = tmp_path / "cache"
    build(parse_manifest(_TINY_DEMO), cache / f"demo-{digest}")
    work = tmp_path / "work"
    (work / "demo").mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setenv("CRYOAL_CACHE", str(cache))
    return work


@pytest.fixture(scope="session")
def sim_copick(tmp_path_factory: pytest.TempPathFactory) -> SimulatedCopickProject:
    """A small simulated copick project, built once per session (treat it as read-only).

    2 runs (TS_001, TS_002) of 64 x 96 x 96 voxels (z, y, x) at 10 Å, the six
    :data:`cryoal.simulate.COPICK_OBJECTS` x 5 particles each per run, SNR 0.5, tomogram
    type "wbp", true picks by user "curation" session "0", with the RELION 5 copies
    (``project.relion``). Copy ``project.root`` before writing into it.
    """
    from cryoal.simulate import simulate_copick_project

    return simulate_copick_project(
        tmp_path_factory.mktemp("copick") / "sim-copick",
        shape=(64, 96, 96),
        n_per_class=5,
        snr=0.5,
        relion=True,
        seed=0,
    )


# segmentation fixtures (tests/tasks and tests/acquisition/test_segmentation_strategies.py)
@pytest.fixture(scope="session")
def seg_example(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three simulated 32³ crops (2 structures + membrane), the first one annotated."""
    from cryoal.tasks.seg_data import write_segmentation_example

    out = tmp_path_factory.mktemp("seg-example")
    return write_segmentation_example(
        out, n_tomograms=3, shape=32, n_particles=5, snr=2.0, annotated=1, seed=3
    )


@pytest.fixture
def unet() -> torch.nn.Module:
    """A small 3D UNet with non-trivial BatchNorm running statistics, in eval mode."""
    torch.manual_seed(0)
    from cryoal import models

    model = models.create("monai-unet", 3, (1, 8, 8, 8), channels=(4, 8), features=6)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 1, 8, 8, 8))
    return model.eval()

"""Session-wide test settings and fixtures shared by every test module."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

# Two test workers share two cores: one intra-op thread each avoids oversubscription.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")


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

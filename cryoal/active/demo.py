"""The demo pool behind ``cryoal select --demo``: simulated once, then cached.

The pool is built from the bundled manifest ``data_manifests/demo.yaml`` (four real
structures, 24 subtomograms each at 32³ and 10 Å/voxel, SNR 0.5, ±60° wedge, CTF, plus a
held-out test split) into ``$CRYOAL_CACHE/demo-<hash>/`` (default cache
``~/.cache/cryoal``). The hash covers the manifest text, so editing the manifest builds a
new pool. Building writes to a temporary folder renamed into place at the end, so an
interrupted build never leaves a half-built cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryoal.errors import ProjectError

__all__ = ["DemoData", "cache_dir", "demo_pool"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoData:
    """Where the cached demo pool lives."""

    root: Path
    volumes: Path
    labels: Path
    test_volumes: Path | None
    test_labels: Path | None


def cache_dir() -> Path:
    """The cryoal cache folder: ``$CRYOAL_CACHE``, else ``~/.cache/cryoal``."""
    env = os.environ.get("CRYOAL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "cryoal"


def demo_pool(
    *, cache: str | os.PathLike[str] | None = None, manifest: str = "demo", progress: bool = False
) -> DemoData:
    """Return the demo pool, building it first if it is not cached yet.

    Parameters
    ----------
    cache
        Cache folder (default :func:`cache_dir`).
    manifest
        Bundled manifest name or YAML path to build.
    progress
        Show progress bars while building.

    Raises
    ------
    ProjectError
        The cache folder cannot be written.
    ManifestError
        The manifest is invalid.
    """
    from cryoal.manifests import build, load_manifest

    m = load_manifest(manifest)
    digest = hashlib.sha256(m.text.encode("utf-8")).hexdigest()[:12]
    base = Path(cache) if cache is not None else cache_dir()
    root = base / f"{m.name}-{digest}"
    if not (root / "labels.csv").is_file():
        try:
            base.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{m.name}-", dir=base))
        except OSError as exc:
            raise ProjectError(
                f"cannot write the cryoal cache {base} ({exc.strerror}); set CRYOAL_CACHE to a "
                "writable folder"
            ) from exc
        try:
            logger.info("building the %s pool into %s (once)", m.name, root)
            build(m, tmp, progress=progress)
            try:
                os.replace(tmp, root)
            except OSError:
                if not (root / "labels.csv").is_file():  # not a concurrent build that won
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    test = root / "test"
    has_test = (test / "labels.csv").is_file()
    return DemoData(
        root=root,
        volumes=root / "volumes",
        labels=root / "labels.csv",
        test_volumes=test / "volumes" if has_test else None,
        test_labels=test / "labels.csv" if has_test else None,
    )

"""Execute every notebook in notebooks/ top to bottom (nbclient, kernel = this Python).

Each notebook must finish within its time limit on a CPU; the stored notebooks carry no
outputs (they are stripped in git). Executed copies are written to the test output folder
(``$CRYOAL_TEST_OUTPUT`` or pytest's base temp) for inspection.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
#: Wall-time budget of one notebook, seconds (the issue: ≤ 2 min on CPU).
TIME_LIMIT = 120.0


@pytest.fixture(scope="session")
def kernel_name() -> str:
    """A kernel that runs *this* interpreter (installed for the user if missing)."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().get_all_specs()
    for name, spec in specs.items():
        argv = spec["spec"]["argv"]
        if argv and Path(argv[0]).resolve() == Path(sys.executable).resolve():
            return str(name)
    import subprocess

    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--user", "--name", "cryoal-test"],
        check=True,
        capture_output=True,
    )
    return "cryoal-test"


@pytest.fixture(scope="session")
def notebook_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Output folder; the kernels share one demo-pool cache (built once per session)."""
    out = Path(
        os.environ.get("CRYOAL_TEST_OUTPUT") or tmp_path_factory.getbasetemp() / "test-output"
    )
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_notebooks_are_stored_without_outputs() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_your_data.ipynb",
        "03_noise_benchmark.ipynb",
        "04_segmentation.ipynb",
        "05_your_data_tomograms.ipynb",
    ]
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        nbformat.validate(book)
        for cell in book.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (
                    f"{path.name}: cell {cell.get('id')} has outputs; strip them before committing"
                )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(
    path: Path,
    kernel_name: str,
    notebook_env: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = tmp_path_factory.getbasetemp() / "cryoal-cache"
    monkeypatch.setenv("CRYOAL_CACHE", str(cache))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    book = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        book,
        kernel_name=kernel_name,
        timeout=int(TIME_LIMIT * 2),
        resources={"metadata": {"path": str(tmp_path)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    finally:
        nbformat.write(book, notebook_env / f"executed-{path.name}")
    elapsed = time.perf_counter() - start
    # the demo pool is simulated once per session: notebook 01 pays for it
    assert elapsed < TIME_LIMIT, f"{path.name} took {elapsed:.0f} s (limit {TIME_LIMIT:.0f} s)"
    errors = [
        o
        for c in book.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
        or (o.output_type == "stream" and o.name == "stderr" and "Traceback" in o.text)
    ]
    assert not errors, errors
    images = [
        o
        for c in book.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    ]
    assert images, f"{path.name} drew no figure"

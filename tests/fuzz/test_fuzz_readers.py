"""Every fuzzed input to every reader either reads or raises a cryoal.errors type.

The mutation programs live in ``_fuzzlib`` (one per reader, shared with the long run);
hypothesis draws their choices, so a failure shrinks to a minimal program and the
assertion message shows the input's first bytes. Minimal failing inputs found this way
are kept as regression tests in ``test_fuzz_regressions.py``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import _fuzzlib as fz
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

FUZZ = settings.get_profile("cryoal-fuzz")
#: CRYOAL_FUZZ_EXAMPLES scales every reader's count (300 = the defaults below)
SCALE = int(os.environ.get("CRYOAL_FUZZ_EXAMPLES", "300")) / 300


def examples(n: int) -> settings:
    """The fuzz profile with ``n`` examples at the default scale (slow targets get fewer)."""
    return settings(FUZZ, max_examples=max(1, round(n * SCALE)))


@pytest.fixture(scope="module")
def folder():
    fz.warm_up()
    with tempfile.TemporaryDirectory(prefix="cryoal-fuzz-") as tmp:
        yield Path(tmp)


def _check(reader: str, folder: Path, data) -> None:
    r = fz.READERS[reader]
    name, raw = r.make(fz.HypothesisDraw(data))
    fz.check_input(r, folder, name, raw)


@examples(300)
@given(data=st.data())
def test_mrc_reader_raises_only_typed_errors(folder: Path, data) -> None:
    _check("mrc", folder, data)


@examples(300)
@given(data=st.data())
def test_hdf5_pool_raises_only_typed_errors(folder: Path, data) -> None:
    _check("hdf5", folder, data)


@examples(300)
@given(data=st.data())
def test_label_tables_raise_only_typed_errors(folder: Path, data) -> None:
    _check("labels", folder, data)


@examples(100)
@given(data=st.data())
def test_checkpoints_raise_only_typed_errors(folder: Path, data) -> None:
    _check("checkpoint", folder, data)


@examples(25)
@given(data=st.data())
def test_cryoal_predict_exits_0_or_2_on_fuzzed_checkpoints(folder: Path, data) -> None:
    _check("predict", folder, data)


@examples(150)
@given(data=st.data())
def test_particle_lists_raise_only_typed_errors(folder: Path, data) -> None:
    _check("particles", folder, data)


@examples(80)
@given(data=st.data())
def test_copick_projects_raise_only_typed_errors(folder: Path, data) -> None:
    _check("copick", folder, data)


@pytest.mark.parametrize("reader", sorted(fz.READERS))
def test_seeds_read_cleanly(reader: str, folder: Path) -> None:
    """The unmutated seeds are valid: the harness starts from files that read."""
    r = fz.READERS[reader]
    if reader == "mrc":
        seeds = [(s.name, fz._compress(s.data, s.compression)) for s in fz.mrc_seeds()]
    elif reader == "hdf5":
        seeds = [("pool.h5", fz.hdf5_seed())]
    elif reader == "labels":
        seeds = [("a.csv", fz._CSV_SEEDS[0].encode()), ("a.star", fz._STAR_SEED.encode())]
    elif reader == "particles":
        seeds = fz.particle_seeds()
    elif reader == "copick":
        seeds = [("copick.tar", fz._pack(fz.copick_seed()))]
    else:
        import io

        import torch

        buf = io.BytesIO()
        torch.save(fz.checkpoint_payload(), buf)
        seeds = [("model.pt", buf.getvalue())]
    for name, raw in seeds:
        outcome = fz.check_input(r, folder, name, raw)
        assert outcome.status == "ok", (name, outcome.error)

"""Oracle answers and gallery panels/files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cryoal.active.gallery import contrast_limits, pick_panels, write_gallery
from cryoal.active.oracle import Oracle
from cryoal.errors import ConfigError, InvalidLabelsError

TRUTH = {f"v{i:03d}": ("a", "b", "c")[i % 3] for i in range(3000)}


def test_noise_free_oracle_is_truth() -> None:
    oracle = Oracle(TRUTH)
    ids = ["v005", "v001"]
    assert oracle.label(ids) == {"v005": "c", "v001": "b"}
    assert list(oracle.label(ids)) == ids


def test_noisy_oracle_rate_and_order_independence() -> None:
    oracle = Oracle(TRUTH, noise=0.2, seed=7)
    answers = oracle.label(list(TRUTH))
    wrong = sum(answers[k] != TRUTH[k] for k in TRUTH)
    # binomial(3000, 0.2): mean 600, sd ~22
    assert 600 - 90 < wrong < 600 + 90
    assert all(answers[k] in {"a", "b", "c"} for k in TRUTH)
    reversed_answers = Oracle(TRUTH, noise=0.2, seed=7).label(list(reversed(TRUTH)))
    assert reversed_answers == answers
    other_seed = Oracle(TRUTH, noise=0.2, seed=8).label(list(TRUTH))
    assert other_seed != answers


def test_oracle_errors() -> None:
    with pytest.raises(ConfigError, match=r"label-noise rate must be in \[0, 1\), got 1.5"):
        Oracle(TRUTH, noise=1.5)
    with pytest.raises(InvalidLabelsError) as err:
        Oracle(TRUTH).label(["v001", "nope"])
    assert str(err.value) == (
        "the oracle has no ground-truth label for 1 id(s), e.g. 'nope'; give it labels for "
        "every volume of the pool"
    )


def test_pick_panels_match_numpy_slicing() -> None:
    vol = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8)
    z, y, x, proj = pick_panels(vol)
    np.testing.assert_array_equal(z, vol[2])
    np.testing.assert_array_equal(y, vol[:, 3, :])
    np.testing.assert_array_equal(x, vol[:, :, 4])
    np.testing.assert_allclose(proj, vol.sum(0))
    assert [p.shape for p in (z, y, x, proj)] == [(6, 8), (4, 8), (4, 6), (6, 8)]


def test_contrast_limits() -> None:
    img = np.linspace(0, 100, 1001)
    assert contrast_limits(img) == pytest.approx((1.0, 99.0))
    assert contrast_limits(np.full((4, 4), 3.0)) == (2.5, 3.5)


def test_write_gallery_png(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    vols = [rng.normal(size=(16, 16, 16)).astype(np.float32) for _ in range(5)]
    out = tmp_path / "g" / "round-001.png"
    write_gallery(out, vols, [f"#{i + 1} v{i}" for i in range(5)], title="round 1", columns=3)
    with Image.open(out) as img:
        assert img.format == "PNG"
        w, h = img.size
    assert w == 3 * 4 * 110 and h > 200  # 3 picks x 4 panels x 1.1 in x 100 dpi
    assert [p.name for p in out.parent.iterdir()] == ["round-001.png"]  # no temp left
    with pytest.raises(ConfigError, match="5 volumes but 4 captions"):
        write_gallery(out, vols, ["x"] * 4)

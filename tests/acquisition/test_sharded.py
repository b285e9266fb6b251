"""cryoal.acquisition.sharded in one process: the public API equals the plain calls.

The two-rank gloo runs (tests/test_distributed.py) check that the sharded picks equal
these; here every strategy family, auto in each regime, and the refusals are checked in
the world of one process, where the functions must be exactly the plain calls.
"""

from __future__ import annotations

import pytest
import torch
from acq_helpers import TensorPool, TinyConv3d

from cryoal import acquisition
from cryoal.acquisition import Auto, auto_choice, shardable, sharded_score, sharded_select
from cryoal.errors import ConfigError

LABELLED = [0, 3, 5, 8]  # 4 labels over the 4 classes of TinyConv3d: 1 per class


def _auto(**kw: float) -> Auto:
    return Auto(batch_size=4, progress=False, seed=2, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["entropy", "expected-gradnorm", "random"])
def test_score_strategies_are_sharded_and_equal_the_plain_calls(
    name: str, tiny3d: TinyConv3d, pool3d: TensorPool
) -> None:
    s = acquisition.get(name, batch_size=4, progress=False, seed=2)
    assert shardable(s, tiny3d, len(LABELLED))
    torch.testing.assert_close(sharded_score(s, tiny3d, pool3d), s.score(tiny3d, pool3d))
    want = s.select(
        tiny3d, pool3d, 3, labelled=LABELLED, generator=torch.Generator().manual_seed(9)
    )
    got = sharded_select(s, tiny3d, pool3d, 3, labelled=LABELLED, seed=9)
    assert got.indices.tolist() == want.indices.tolist() and got.strategy == name
    torch.testing.assert_close(got.scores, want.scores)


def test_auto_is_shardable_exactly_when_it_chooses_a_score_strategy(
    tiny3d: TinyConv3d, pool3d: TensorPool
) -> None:
    plain = _auto(cold_threshold=0.5, diverse_threshold=0.5)  # 1 per class: plain gradnorm
    chosen = auto_choice(plain, tiny3d, len(LABELLED))
    assert chosen is not None
    inner, info = chosen
    assert inner.name == "entropy-gradnorm" and isinstance(inner, acquisition.ScoreStrategy)
    assert (inner.batch_size, inner.seed, inner.progress) == (4, 2, False)  # auto's options
    assert info == {
        "choice": "entropy-gradnorm",
        "reason": plain.decide(tiny3d, 4)[1],
        "labels": 4,
        "labels_per_class": 1.0,
    }
    assert shardable(plain, tiny3d, 4)
    expected = _auto(cold_threshold=0.5, diverse_threshold=0.5, scheme="expected")  # type: ignore[arg-type]
    assert auto_choice(expected, tiny3d, 4)[0].name == "expected-gradnorm"  # type: ignore[index]
    # cold start (typicality) and the diverse regime select a batch jointly
    assert not shardable(_auto(), tiny3d, 4)
    assert not shardable(_auto(cold_threshold=0.5), tiny3d, 4)
    assert not shardable(acquisition.get("coreset"), tiny3d, 4)
    assert auto_choice(acquisition.get("entropy"), tiny3d, 4) is None


def test_joint_strategies_run_whole_and_sharded_score_refuses_them(
    tiny3d: TinyConv3d, pool3d: TensorPool
) -> None:
    coreset = acquisition.get("coreset", batch_size=4, progress=False)
    want = coreset.select(tiny3d, pool3d, 3, labelled=LABELLED)
    got = sharded_select(coreset, tiny3d, pool3d, 3, labelled=LABELLED)
    assert got.indices.tolist() == want.indices.tolist()
    with pytest.raises(
        ConfigError, match="'coreset' selects a batch jointly and cannot be sharded"
    ):
        sharded_score(coreset, tiny3d, pool3d)
    with pytest.raises(ConfigError, match="'auto' selects a batch jointly"):
        sharded_score(_auto(), tiny3d, pool3d)

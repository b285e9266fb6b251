"""auto: the regime table on hand-made regimes, the recorded choice, template behaviour."""

from __future__ import annotations

import pytest
import torch
from acq_helpers import TensorPool
from test_strategies import StrategyTemplate
from torch import nn

from cryoal import acquisition
from cryoal.acquisition import choose
from cryoal.errors import ConfigError

OPTS = {"progress": False, "batch_size": 4}


class TestAuto(StrategyTemplate):
    name = "auto"


@pytest.mark.parametrize(
    "n_labelled,num_classes,kw,expect",
    [
        (0, 10, {}, "typicality"),  # nothing labelled: cold start
        (0, None, {}, "typicality"),  # classes unknown yet
        (50, 10, {}, "typicality"),  # 5 per class < 10
        (99, 10, {}, "typicality"),  # 9.9 per class
        (100, 10, {}, "diverse-entropy-gradnorm"),  # 10 per class
        (350, 10, {}, "diverse-entropy-gradnorm"),  # the calibration run's 35 per class
        (500, 10, {}, "entropy-gradnorm"),  # 50 per class, nothing else known
        (500, 10, {"val_accuracy": 0.9, "ece": 0.05}, "entropy-gradnorm"),
        (500, 10, {"val_accuracy": 0.5}, "diverse-entropy-gradnorm"),  # unreliable model
        (500, 10, {"ece": 0.3}, "diverse-entropy-gradnorm"),  # poorly calibrated
        (500, 10, {"scheme": "expected"}, "expected-gradnorm"),
        (200, 10, {"scheme": "expected"}, "diverse-expected-gradnorm"),
        (30, 10, {"cold_threshold": 2.0}, "diverse-entropy-gradnorm"),
        (300, 10, {"diverse_threshold": 20.0}, "entropy-gradnorm"),
    ],
)
def test_choose_regimes(n_labelled: int, num_classes: int | None, kw: dict, expect: str) -> None:
    name, reason = choose(n_labelled, num_classes, **kw)
    assert name == expect
    assert name in acquisition.available() and reason


def test_choose_reasons_name_the_numbers() -> None:
    assert (
        choose(0, 4)[1] == "no labels yet: cold start with the most typical volume of each cluster"
    )
    assert choose(20, 4)[1].startswith("20 labels over 4 classes (5.0 per class) < 10 per class")
    assert "ECE 0.30 > 0.15" in choose(500, 4, ece=0.3)[1]
    assert "held-out accuracy 0.50 < 0.6" in choose(500, 4, val_accuracy=0.5)[1]
    with pytest.raises(
        ConfigError, match="unknown gradnorm scheme 'bald': use entropy or expected"
    ):
        choose(1, 2, scheme="bald")
    with pytest.raises(
        ConfigError, match="thresholds must satisfy 0 <= cold_threshold <= diverse_threshold"
    ):
        acquisition.get("auto", cold_threshold=60.0)


@pytest.mark.parametrize(
    "labelled,expect", [([], "typicality"), (list(range(8)), "diverse-entropy-gradnorm")]
)
def test_select_delegates_and_records(
    labelled: list[int], expect: str, tiny3d: nn.Module, pool3d: TensorPool
) -> None:
    # tiny3d has 4 classes: 8 labels = 2 per class; thresholds lowered to reach diverse
    auto = acquisition.get("auto", cold_threshold=1.0, diverse_threshold=3.0, **OPTS)
    sel = auto.select(
        tiny3d, pool3d, 3, labelled=labelled, generator=torch.Generator().manual_seed(2)
    )
    balance = {"balance": True} if expect.startswith("diverse-") else {}  # auto balances
    inner = acquisition.get(expect, **balance, **OPTS).select(
        tiny3d, pool3d, 3, labelled=labelled, generator=torch.Generator().manual_seed(2)
    )
    assert sel.strategy == "auto"
    assert sel.indices.tolist() == inner.indices.tolist()
    torch.testing.assert_close(sel.scores, inner.scores)
    assert sel.info["choice"] == expect and sel.info["labels"] == len(labelled)
    assert sel.info["labels_per_class"] == (None if not labelled else len(labelled) / 4)
    assert (
        sel.info["reason"] == choose(len(labelled), 4, cold_threshold=1.0, diverse_threshold=3.0)[1]
    )


@pytest.mark.parametrize(
    "labelled,expect",
    [(0, "typicality"), (8, "diverse-entropy-gradnorm"), (16, "entropy-gradnorm")],
)
def test_choice_builds_the_chosen_strategy_with_autos_options(
    labelled: int, expect: str, tiny3d: nn.Module
) -> None:
    emb = torch.randn(12, 5)
    pred = torch.arange(12) % 4
    auto = acquisition.get(
        "auto",
        cold_threshold=1.0,
        diverse_threshold=3.0,
        embeddings=emb,
        factor=2.0,
        predicted=pred,
        seed=7,
        **OPTS,
    )
    inner, info = auto.choice(tiny3d, labelled)  # type: ignore[attr-defined]
    assert inner.name == expect
    assert (inner.batch_size, inner.seed, inner.progress) == (4, 7, False)
    assert info == {
        "choice": expect,
        "reason": choose(labelled, 4, cold_threshold=1.0, diverse_threshold=3.0)[1],
        "labels": labelled,
        "labels_per_class": None if not labelled else labelled / 4,
    }
    if expect == "entropy-gradnorm":  # scores items: no embedding options
        assert not hasattr(inner, "embeddings")
    else:
        assert inner.embeddings is emb  # type: ignore[attr-defined]
    if expect.startswith("diverse-"):
        assert (inner.factor, inner.balance) == (2.0, True)  # type: ignore[attr-defined]
        assert inner.predicted is pred  # type: ignore[attr-defined]


def test_num_classes_override(tiny3d: nn.Module, pool3d: TensorPool) -> None:
    # 8 labels over a model of 4 classes = 2 per class; the expert says 2 classes: 4 per class
    auto = acquisition.get(
        "auto", num_classes=2, cold_threshold=3.0, diverse_threshold=100.0, **OPTS
    )
    sel = auto.select(tiny3d, pool3d, 2, labelled=range(8))
    assert sel.info["choice"] == "diverse-entropy-gradnorm" and sel.info["labels_per_class"] == 4.0
    assert acquisition.Selection(torch.zeros(0), torch.zeros(0), "x").info == {}


@pytest.mark.parametrize("balance", [True, False])
def test_diverse_regime_balance_is_passed_on(balance: bool, tiny3d: nn.Module) -> None:
    g = torch.Generator().manual_seed(3)
    pool = TensorPool(torch.randn(40, 1, 8, 8, 8, generator=g))
    pred = torch.arange(40) % 4  # given predictions: four equal classes
    auto = acquisition.get(
        "auto", cold_threshold=0.0, balance=balance, predicted=pred, **OPTS
    )  # 4 labels over 4 classes: the diverse regime
    sel = auto.select(tiny3d, pool, 8, labelled=[0, 1, 2, 3])
    inner = acquisition.get(
        "diverse-entropy-gradnorm", balance=balance, predicted=pred, **OPTS
    ).select(tiny3d, pool, 8, labelled=[0, 1, 2, 3], generator=torch.Generator().manual_seed(0))
    assert sel.info["choice"] == "diverse-entropy-gradnorm"
    assert sel.indices.tolist() == inner.indices.tolist()
    if balance:
        assert torch.bincount(pred[sel.indices], minlength=4).tolist() == [2, 2, 2, 2]

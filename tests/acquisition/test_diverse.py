"""diverse-entropy-gradnorm / diverse-expected-gradnorm: template behaviour and the algorithm."""

from __future__ import annotations

import pytest
import torch
from acq_helpers import TensorPool
from test_strategies import StrategyTemplate
from torch import nn

from cryoal import acquisition
from cryoal.acquisition import kcenter_greedy, select_topk
from cryoal.acquisition.diverse import class_quotas, diverse_topm
from cryoal.errors import ConfigError

OPTS = {"progress": False, "batch_size": 4}


class TestDiverseEntropyGradNorm(StrategyTemplate):
    name = "diverse-entropy-gradnorm"


class TestDiverseExpectedGradNorm(StrategyTemplate):
    name = "diverse-expected-gradnorm"


class TestDiverseBalanced(StrategyTemplate):
    name = "diverse-entropy-gradnorm"
    kwargs = {"balance": True}


class TestDiverseKCenter(StrategyTemplate):
    name = "diverse-entropy-gradnorm"
    kwargs = {"diversity": "kcenter"}


@pytest.mark.parametrize(
    "name,plain",
    [
        ("diverse-entropy-gradnorm", "entropy-gradnorm"),
        ("diverse-expected-gradnorm", "expected-gradnorm"),
    ],
)
def test_factor_one_is_the_plain_ranking(
    name: str, plain: str, tiny3d: nn.Module, pool3d: TensorPool
) -> None:
    scores = acquisition.get(plain, **OPTS).score(tiny3d, pool3d)
    sel = acquisition.get(name, factor=1.0, **OPTS).select(tiny3d, pool3d, 4, labelled=[2, 5])
    assert sel.indices.tolist() == select_topk(scores, 4, exclude=[2, 5]).tolist()
    torch.testing.assert_close(sel.scores, scores[sel.indices])


def test_diverse_topm_one_best_per_cluster_by_score() -> None:
    emb = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0], [5.1, 5.0]])
    scores = torch.tensor([0.2, 0.9, 0.5, 0.7, 0.8])
    pos = diverse_topm(scores, emb, 2, torch.Generator().manual_seed(0))
    assert pos.tolist() == [1, 4]  # best of the first group (0.9), then of the second (0.8)


def test_duplicates_are_not_picked_twice(tiny3d: nn.Module, pool3d: TensorPool) -> None:
    plain = acquisition.get("entropy-gradnorm", **OPTS)
    top = int(plain.score(tiny3d, pool3d).argmax())
    x = torch.cat(
        [pool3d.x, pool3d.x[top : top + 1].repeat(5, 1, 1, 1, 1)]
    )  # 6 copies of the top item
    pool = TensorPool(x)
    copies = {top, *range(13, 18)}
    redundant = plain.select(tiny3d, pool, 4)
    assert len(copies & set(redundant.indices.tolist())) == 4  # plain top-4: all copies
    for diversity in ("kmeans", "kcenter"):
        sel = acquisition.get("diverse-entropy-gradnorm", diversity=diversity, **OPTS).select(
            tiny3d, pool, 4, generator=torch.Generator().manual_seed(0)
        )
        n_copies = len(copies & set(sel.indices.tolist()))
        # k-means: the copies form one cluster holding the best score, so exactly one;
        # k-center never takes a copy once one is a centre (distance 0)
        assert n_copies == 1 if diversity == "kmeans" else n_copies <= 1, diversity


def test_kcenter_matches_greedy_on_candidates(tiny3d: nn.Module, pool3d: TensorPool) -> None:
    labelled = [0, 1]
    s = acquisition.get("diverse-entropy-gradnorm", diversity="kcenter", factor=2.0, **OPTS)
    sel = s.select(tiny3d, pool3d, 3, labelled=labelled)
    scores = acquisition.get("entropy-gradnorm", **OPTS).score(tiny3d, pool3d)
    cand = select_topk(scores, 6, exclude=labelled)
    with torch.no_grad():
        tiny3d.eval()
        emb = torch.nn.functional.normalize(tiny3d.features(pool3d.x), dim=1)
    picks, _ = kcenter_greedy(emb, 3, torch.tensor(labelled), cand)
    assert sel.indices.tolist() == picks.tolist()
    torch.testing.assert_close(sel.scores, scores[sel.indices])


def test_bad_options() -> None:
    with pytest.raises(ConfigError, match="factor must be a number >= 1, got 0.5"):
        acquisition.get("diverse-entropy-gradnorm", factor=0.5)
    with pytest.raises(ConfigError, match="unknown diversity 'dpp': use one of kmeans, kcenter"):
        acquisition.get("diverse-expected-gradnorm", diversity="dpp")
    with pytest.raises(ConfigError, match="unknown reduction"):
        acquisition.get("diverse-entropy-gradnorm", reduction="max")


def _naive_quotas(counts: list[int], budget: int, order: list[int]) -> list[int]:
    """One pick at a time, round-robin over the classes in ``order`` that still have items."""
    quota = [0] * len(counts)
    while budget:
        for c in order:
            if budget and quota[c] < counts[c]:
                quota[c] += 1
                budget -= 1
    return quota


@pytest.mark.parametrize(
    "counts,budget,order",
    [
        ([10, 10, 10], 7, [0, 1, 2]),
        ([1, 50, 3, 0], 20, [2, 0, 1, 3]),
        ([5, 5], 10, [1, 0]),
        ([0, 4, 9, 2, 2], 13, [4, 3, 2, 1, 0]),
        ([3, 3, 3], 0, [0, 1, 2]),
    ],
)
def test_class_quotas_match_round_robin(counts: list[int], budget: int, order: list[int]) -> None:
    q = class_quotas(torch.tensor(counts), budget, torch.tensor(order))
    assert q.tolist() == _naive_quotas(counts, budget, order)
    assert int(q.sum()) == budget


def test_class_quotas_reject_a_budget_beyond_the_items() -> None:
    with pytest.raises(ConfigError, match="budget 5 outside 0..4 available items"):
        class_quotas(torch.tensor([1, 3]), 5)


def test_balance_shares_picks_over_predicted_classes(tiny3d: nn.Module) -> None:
    g = torch.Generator().manual_seed(3)
    pool = TensorPool(torch.randn(40, 1, 8, 8, 8, generator=g))
    with torch.no_grad():
        pred = tiny3d(pool.x).argmax(1)
    present = sorted(set(pred.tolist()))
    assert len(present) >= 2, "fixture: the model must predict several classes"
    budget = 2 * len(present)
    counts = torch.bincount(pred)
    sel = acquisition.get("diverse-entropy-gradnorm", balance=True, **OPTS).select(
        tiny3d, pool, budget, generator=torch.Generator().manual_seed(0)
    )
    got = torch.bincount(pred[sel.indices], minlength=counts.numel())
    want = class_quotas(counts[present], budget)
    assert sorted(got[present].tolist()) == sorted(want.tolist())
    assert len(set(sel.indices.tolist())) == budget
    scores = acquisition.get("entropy-gradnorm", **OPTS).score(tiny3d, pool)
    torch.testing.assert_close(sel.scores, scores[sel.indices])
    assert torch.all(sel.scores[:-1] >= sel.scores[1:])  # by score, largest first
    # given predictions are used instead of the forward pass: all in one class -> plain diverse
    one = torch.zeros(40, dtype=torch.long)
    a = acquisition.get("diverse-entropy-gradnorm", balance=True, predicted=one, **OPTS)
    b = acquisition.get("diverse-entropy-gradnorm", **OPTS)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert (
        a.select(tiny3d, pool, 5, generator=gen()).indices.tolist()
        == b.select(tiny3d, pool, 5, generator=gen()).indices.tolist()
    )


def test_balance_options_are_checked(tiny3d: nn.Module, pool3d: TensorPool) -> None:
    with pytest.raises(ConfigError, match="balance=True needs diversity='kmeans'"):
        acquisition.get("diverse-entropy-gradnorm", balance=True, diversity="kcenter")
    s = acquisition.get("diverse-entropy-gradnorm", balance=True, predicted=torch.zeros(3), **OPTS)
    with pytest.raises(ConfigError, match="predicted has 3 entries for a pool of 13"):
        s.select(tiny3d, pool3d, 2)

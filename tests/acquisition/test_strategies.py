"""Template tests every acquisition strategy passes, plus each strategy's own maths."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F
from acq_helpers import TensorPool, TinyConv3d, entropy_loss, naive_class_norms, naive_norms
from torch import Tensor, nn

from cryoal import acquisition
from cryoal.acquisition import Selection, Strategy, get, select_topk
from cryoal.errors import ConfigError, EmptyPoolError, PoolExhaustedError


class StrategyTemplate:
    """Behaviour every registered strategy shares; subclasses set ``name`` and ``kwargs``."""

    name: ClassVar[str]
    task: ClassVar[str] = "classification3d"
    kwargs: ClassVar[dict[str, Any]] = {}

    def make(self, **extra: Any) -> Strategy:
        options = {"progress": False, "batch_size": 4, **self.kwargs, **extra}
        return get(self.name, task=self.task, **options)

    def fresh_model(self) -> nn.Module:
        """A new model of the kind the task's strategies score, in train mode."""
        return TinyConv3d().train()

    def test_registered(self) -> None:
        assert self.name in acquisition.available(task=self.task)
        assert self.task in acquisition.tasks_of(self.name)
        assert self.make().name == self.name

    def test_selection_shape_and_finite(self, tiny3d: nn.Module, pool3d: TensorPool) -> None:
        sel = self.make().select(tiny3d, pool3d, 5, generator=torch.Generator().manual_seed(0))
        assert isinstance(sel, Selection) and sel.strategy == self.name
        assert sel.indices.dtype == torch.long and sel.indices.shape == (5,)
        assert sel.scores.shape == (5,) and torch.isfinite(sel.scores).all()
        assert len(set(sel.indices.tolist())) == 5
        assert all(0 <= i < len(pool3d) for i in sel.indices.tolist())

    def test_deterministic_under_seed(self, tiny3d: nn.Module, pool3d: TensorPool) -> None:
        a = self.make().select(tiny3d, pool3d, 4, generator=torch.Generator().manual_seed(5))
        b = self.make().select(tiny3d, pool3d, 4, generator=torch.Generator().manual_seed(5))
        assert a.indices.tolist() == b.indices.tolist()
        torch.testing.assert_close(a.scores, b.scores)

    def test_labelled_never_picked(self, tiny3d: nn.Module, pool3d: TensorPool) -> None:
        labelled = [0, 2, 3, 5, 8, 9, 11]
        sel = self.make().select(tiny3d, pool3d, 6, labelled=labelled)
        assert sorted(sel.indices.tolist()) == [1, 4, 6, 7, 10, 12]
        by_id = self.make().select(tiny3d, pool3d, 6, labelled=[pool3d.ids[i] for i in labelled])
        assert sorted(by_id.indices.tolist()) == [1, 4, 6, 7, 10, 12]

    def test_budget_errors(self, tiny3d: nn.Module, pool3d: TensorPool) -> None:
        s = self.make()
        with pytest.raises(ConfigError, match="budget must be a positive integer, got 0"):
            s.select(tiny3d, pool3d, 0)
        with pytest.raises(
            PoolExhaustedError,
            match="budget 4 exceeds the 3 unlabelled volumes left in the pool of 13",
        ):
            s.select(tiny3d, pool3d, 4, labelled=range(10))
        with pytest.raises(EmptyPoolError, match="the pool holds no volumes"):
            s.select(tiny3d, TensorPool(torch.zeros(0, 1, 8, 8, 8)), 1)
        with pytest.raises(ConfigError, match="labelled id 'nope.mrc' is not in the pool"):
            s.select(tiny3d, pool3d, 1, labelled=["nope.mrc"])

    def test_model_mode_restored(self, pool3d: TensorPool) -> None:
        torch.manual_seed(0)
        model = self.fresh_model()
        self.make().select(model, pool3d, 2)
        assert all(m.training for m in model.modules())

    @pytest.mark.cuda
    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
    def test_cuda_matches_cpu(self, pool3d: TensorPool) -> None:
        torch.manual_seed(0)
        model = self.fresh_model().eval()
        tf32 = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            gen = torch.Generator().manual_seed(1)
            cpu = self.make(device="cpu").select(model, pool3d, 4, generator=gen)
            gen = torch.Generator().manual_seed(1)
            gpu = self.make(device="cuda").select(model, pool3d, 4, generator=gen)
            if self.name != "random":  # random never runs the model
                assert next(model.parameters()).device.type == "cuda"
            assert len(gpu) == 4 and torch.isfinite(gpu.scores).all()
            if self.name != "bald":  # dropout masks come from a different RNG on CUDA
                assert gpu.indices.tolist() == cpu.indices.tolist()
                torch.testing.assert_close(gpu.scores, cpu.scores, rtol=1e-3, atol=1e-5)
            if self.name not in ("bald", "coreset", "badge"):
                amp = self.make(device="cuda", amp=True).select(model, pool3d, 4, generator=gen)
                assert torch.isfinite(amp.scores).all()
        finally:
            torch.backends.cudnn.allow_tf32 = tf32
            model.cpu()


class ScoreTemplate(StrategyTemplate):
    """Extra checks for score-based strategies."""

    def test_select_is_topk_of_score(self, tiny3d: nn.Module, pool3d: TensorPool) -> None:
        s = self.make()
        scores = s.score(tiny3d, pool3d)
        assert scores.shape == (len(pool3d),) and torch.isfinite(scores).all()
        sel = s.select(tiny3d, pool3d, 5, labelled=[1, 2])
        assert sel.indices.tolist() == select_topk(scores, 5, exclude=[1, 2]).tolist()
        torch.testing.assert_close(sel.scores, scores[sel.indices])

    def test_chunked_equals_whole(self, tiny3d: nn.Module, pool3d: TensorPool) -> None:
        one = self.make(batch_size=1).score(tiny3d, pool3d)
        whole = self.make(batch_size=len(pool3d)).score(tiny3d, pool3d)
        torch.testing.assert_close(one, whole, rtol=1e-4, atol=1e-6)


class TestRandom(ScoreTemplate):
    name = "random"


class TestEntropy(ScoreTemplate):
    name = "entropy"

    def test_values(self, tiny3d: nn.Module, pool3d: TensorPool) -> None:
        p = torch.softmax(tiny3d(pool3d.x), 1)
        expect = -(p * p.log()).sum(1)
        torch.testing.assert_close(
            self.make().score(tiny3d, pool3d), expect.detach(), rtol=1e-5, atol=1e-6
        )


class TestMargin(ScoreTemplate):
    name = "margin"

    def test_values(self) -> None:
        p = torch.tensor([[0.5, 0.3, 0.2], [0.4, 0.4, 0.2], [1.0, 0.0, 0.0]])
        torch.testing.assert_close(acquisition.margin_scores(p), torch.tensor([0.8, 1.0, 0.0]))


class TestLeastConfidence(ScoreTemplate):
    name = "least-confidence"

    def test_values(self, tiny3d: nn.Module, pool3d: TensorPool) -> None:
        p = torch.softmax(tiny3d(pool3d.x), 1)
        expect = 1 - p.max(1).values
        torch.testing.assert_close(
            self.make().score(tiny3d, pool3d), expect.detach(), rtol=1e-5, atol=1e-6
        )


class TestBALD(ScoreTemplate):
    name = "bald"
    kwargs: ClassVar[dict[str, Any]] = {"n_samples": 4}

    def test_chunked_equals_whole(self, tiny3d: nn.Module, pool3d: TensorPool) -> None:
        # dropout masks depend on the batch layout, so only the statistics must agree
        one = self.make(batch_size=1, n_samples=64).score(tiny3d, pool3d)
        whole = self.make(batch_size=len(pool3d), n_samples=64).score(tiny3d, pool3d)
        assert (one >= 0).all() and (whole >= 0).all()
        assert abs(float(one.mean() - whole.mean())) < 0.25 * float(whole.mean()) + 1e-3

    def test_select_is_topk_of_score(self, tiny3d: nn.Module, pool3d: TensorPool) -> None:
        # masks follow the scored items: compare on the whole pool with the same seed
        s = self.make(seed=3)
        scores = s.score(tiny3d, pool3d)
        sel = s.select(tiny3d, pool3d, 5)
        assert sel.indices.tolist() == select_topk(scores, 5).tolist()

    def test_hand_checked_mutual_information(self) -> None:
        # two passes: certain-but-disagreeing → MI = log 2; agreeing → 0
        mc = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]])
        torch.testing.assert_close(acquisition.bald_scores(mc), torch.tensor([0.6931472, 0.0]))

    def test_without_dropout_is_zero_and_no_dropout_model_errors(self, pool3d: TensorPool) -> None:
        model = TinyConv3d(dropout=0.0).eval()
        assert torch.all(self.make().score(model, pool3d).abs() < 1e-6)
        plain = nn.Sequential(nn.Flatten(1), nn.Linear(512, 3))
        with pytest.raises(ConfigError, match="bald needs dropout layers"):
            self.make().score(plain, pool3d)

    def test_only_dropout_in_train_mode(self, pool3d: TensorPool) -> None:
        torch.manual_seed(0)
        model = TinyConv3d(dropout=0.5)
        seen: dict[str, bool] = {}
        for name, m in model.named_modules():
            m.register_forward_hook(
                lambda mod, i, o, name=name: seen.__setitem__(name, mod.training)
            )
        self.make().score(model, TensorPool(pool3d.x[:2]))
        assert seen["body.7"] is True  # dropout
        assert seen["body.1"] is False  # batchnorm uses running stats


class TestCoreset(StrategyTemplate):
    name = "coreset"

    def test_hand_checked_kcenter(self) -> None:
        emb = torch.tensor([[0.0], [1.0], [10.0], [4.0], [9.0]])
        picks, scores = acquisition.kcenter_greedy(
            emb, 2, torch.tensor([0]), torch.tensor([1, 2, 3, 4])
        )
        assert picks.tolist() == [2, 3]  # 10 is farthest from 0; then 4 (4 from 0, 6 from 10)
        torch.testing.assert_close(scores, torch.tensor([10.0, 4.0]))

    def test_no_labelled_starts_farthest_from_mean_and_ties(self) -> None:
        emb = torch.tensor([[0.0, 0.0], [2.0, 0.0], [-2.0, 0.0], [0.0, 1.0]])
        picks, _ = acquisition.kcenter_greedy(
            emb, 2, torch.zeros(0, dtype=torch.long), torch.arange(4)
        )
        # mean (0, .25): 1 and 2 tie at the largest distance -> lower index 1; then 2 (dist 4)
        assert picks.tolist() == [1, 2]

    @staticmethod
    def naive_kcenter(emb: torch.Tensor, k: int, centres: list[int], cand: list[int]) -> list[int]:
        """Textbook greedy k-center in plain Python: farthest-first from the centres."""
        pts = emb.double().tolist()

        def d(a: list[float], b: list[float]) -> float:
            return sum((u - v) ** 2 for u, v in zip(a, b, strict=True)) ** 0.5

        cs = [pts[c] for c in centres]
        left = list(cand)
        picks: list[int] = []
        if not cs:  # first centre: the candidate farthest from the candidates' mean
            mean = [sum(pts[c][j] for c in cand) / len(cand) for j in range(len(pts[0]))]
            first = max(left, key=lambda i: (d(pts[i], mean), -i))
            picks.append(first)
            left.remove(first)
            cs.append(pts[first])
        while len(picks) < k:
            best = max(left, key=lambda i: (min(d(pts[i], c) for c in cs), -i))
            picks.append(best)
            left.remove(best)
            cs.append(pts[best])
        return picks

    @pytest.mark.parametrize("seed", range(6))
    @pytest.mark.parametrize("n_lab", [0, 1, 3])
    def test_matches_naive_greedy_kcenter(self, seed: int, n_lab: int) -> None:
        g = torch.Generator().manual_seed(seed)
        emb = torch.randn(40, 3, generator=g)
        perm = torch.randperm(40, generator=g)
        lab, cand = perm[:n_lab], perm[n_lab:].sort().values
        picks, scores = acquisition.kcenter_greedy(emb, 12, lab, cand)
        assert picks.tolist() == self.naive_kcenter(emb, 12, lab.tolist(), cand.tolist())
        # every score after a cold start's first pick is the distance to the earlier centres
        start = 1 if n_lab == 0 else 0
        for j in range(start, 12):
            prev = torch.cat([lab, picks[:j]])
            want = (emb[prev] - emb[picks[j]]).double().norm(dim=1).min()
            torch.testing.assert_close(scores[j].double(), want)

    def test_cold_start_has_no_phantom_centre(self) -> None:
        # mean -4.25: first -2 (2.25 away), then -6 (4 from -2); third -4 (2 from both
        # centres). Keeping the mean as a centre would make -4 look covered (0.25) and pick -5.
        emb = torch.tensor([[-6.0], [-5.0], [-4.0], [-2.0]])
        picks, scores = acquisition.kcenter_greedy(
            emb, 3, torch.zeros(0, dtype=torch.long), torch.arange(4)
        )
        assert picks.tolist() == [3, 0, 2]
        torch.testing.assert_close(scores, torch.tensor([2.25, 4.0, 2.0]))


class TestBADGE(StrategyTemplate):
    name = "badge"

    def test_factored_distances_and_first_pick(self) -> None:
        u = torch.tensor([[0.5, -0.5], [0.1, -0.1], [-0.5, 0.5], [0.1, -0.1]])
        h = torch.tensor([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        g = torch.stack([torch.outer(a, b).flatten() for a, b in zip(u, h, strict=True)])
        gen = torch.Generator().manual_seed(0)
        picks, scores = acquisition.kmeanspp_factored(u, h, 2, torch.arange(4), gen)
        assert picks[0] == 0  # largest gradient embedding norm
        torch.testing.assert_close(scores[0], g[0].pow(2).sum())
        d2 = (g - g[picks[0]]).pow(2).sum(1)
        torch.testing.assert_close(scores[1], d2[picks[1]])

    def test_duplicates_never_picked_while_distinct_remain(self) -> None:
        u = torch.tensor([[0.9, -0.9], [0.9, -0.9], [0.9, -0.9], [-0.2, 0.2]])
        h = torch.ones(4, 3)
        for seed in range(5):
            picks, _ = acquisition.kmeanspp_factored(
                u, h, 2, torch.arange(4), torch.Generator().manual_seed(seed)
            )
            assert picks.tolist() == [0, 3]  # D² of the duplicates of item 0 is zero
        picks, scores = acquisition.kmeanspp_factored(u, h, 3, torch.arange(4), torch.Generator())
        assert picks.tolist() == [0, 3, 1] and scores[2] == 0  # then lowest remaining index


class TestEntropyGradNorm(ScoreTemplate):
    name = "entropy-gradnorm"

    def test_equals_naive_loop(self, tiny3d: nn.Module, pool3d: TensorPool) -> None:
        for reduction in ("l2", "layerwise-sum"):
            scores = self.make(reduction=reduction).score(tiny3d, pool3d)
            torch.testing.assert_close(
                scores, naive_norms(tiny3d, pool3d.x, entropy_loss, reduction), rtol=1e-4, atol=1e-7
            )


class TestExpectedGradNorm(ScoreTemplate):
    name = "expected-gradnorm"

    @pytest.mark.parametrize("reduction", ["l2", "layerwise-sum"])
    def test_paper_equals_explicit_sum_over_classes(self, reduction: str) -> None:
        torch.manual_seed(1)
        model = TinyConv3d(num_classes=3).double().eval()
        pool = TensorPool(torch.randn(5, 1, 8, 8, 8, dtype=torch.float64))
        scores = self.make(reduction=reduction).score(model, pool)
        p = torch.softmax(model(pool.x), 1).detach()
        expect = (p * naive_class_norms(model, pool.x, reduction)).sum(1)
        torch.testing.assert_close(scores, expect.float(), rtol=1e-5, atol=0)
        top1 = self.make(reduction=reduction, top_k=1).score(model, pool)
        best = p.argmax(1, keepdim=True)
        expect1 = (p.gather(1, best) * naive_class_norms(model, pool.x, reduction).gather(1, best))[
            :, 0
        ]
        torch.testing.assert_close(top1, expect1.float(), rtol=1e-5, atol=0)

    @pytest.mark.parametrize("reduction", ["l2", "layerwise-sum"])
    def test_reference_variant_equals_entropy_gradnorm(self, reduction: str) -> None:
        """∇θ Σ_y p_y·CE(f(x), y) with p not detached = ∇θ H(p): the two scores agree."""
        torch.manual_seed(2)
        model = TinyConv3d(num_classes=4).double().eval()
        pool = TensorPool(torch.randn(6, 1, 8, 8, 8, dtype=torch.float64))
        ref = self.make(variant="reference", reduction=reduction).score(model, pool)
        ent = get("entropy-gradnorm", progress=False, reduction=reduction).score(model, pool)
        torch.testing.assert_close(ref, ent, rtol=1e-6, atol=0)
        z = model(pool.x)
        torch.testing.assert_close(acquisition.expected_ce(z), acquisition.entropy(z))

        # ...and the released code's per-sample loop gives the same numbers
        def released(zz: Tensor) -> Tensor:
            p = torch.softmax(zz, 1)
            return sum(
                p[:, y] * F.cross_entropy(zz, torch.full((zz.shape[0],), y), reduction="none")
                for y in range(4)
            )

        naive = naive_norms(model, pool.x, released, reduction)  # type: ignore[arg-type]
        torch.testing.assert_close(ref, naive.float(), rtol=1e-5, atol=0)

    def test_expected_loss_with_p_detached_has_zero_gradient(self) -> None:
        """The third reading, ∇θ Σ_y sg[p_y]·CE(f(x), y) (the "expected empirical loss"
        with p detached), is identically zero: −Σ_y p_y ∇log p_y = −∇Σ_y p_y = −∇1. Naive
        autograd, one sample at a time; the default (Σ_y p_y‖∇CE_y‖) is not zero."""
        torch.manual_seed(3)
        model = TinyConv3d(num_classes=4).double().eval()
        x = torch.randn(4, 1, 8, 8, 8, dtype=torch.float64)
        params = [q for q in model.parameters() if q.requires_grad]
        for i in range(x.shape[0]):
            z = model(x[i : i + 1])
            p = torch.softmax(z, 1).detach()
            loss = (p * -torch.log_softmax(z, 1)).sum()
            grads = torch.autograd.grad(loss, params)
            norm = torch.sqrt(sum((g**2).sum() for g in grads))
            assert float(norm) < 1e-12 * max(1.0, float(loss.detach()))
        paper = self.make().score(model, TensorPool(x))
        assert bool((paper > 1e-3).all())

    def test_paper_differs_from_reference(self, tiny3d: nn.Module, pool3d: TensorPool) -> None:
        paper = self.make().score(tiny3d, pool3d)
        ref = self.make(variant="reference").score(tiny3d, pool3d)
        assert not torch.allclose(paper, ref)

    def test_bad_options(self) -> None:
        with pytest.raises(ConfigError, match="unknown expected-gradnorm variant 'released'"):
            self.make(variant="released")
        with pytest.raises(ConfigError, match="top_k must be a positive integer or None, got 0"):
            self.make(top_k=0)
        with pytest.raises(ConfigError, match="unknown reduction 'max'"):
            self.make(reduction="max")


class TestLastLayerGradNorm(ScoreTemplate):
    name = "last-layer-gradnorm"

    @pytest.mark.parametrize("target", ["expected", "entropy"])
    def test_closed_form_equals_autograd(
        self, tiny3d: nn.Module, pool3d: TensorPool, target: str
    ) -> None:
        scores = self.make(target=target).score(tiny3d, pool3d)
        head = [tiny3d.head.weight, tiny3d.head.bias]
        if target == "entropy":
            expect = naive_norms(tiny3d, pool3d.x, entropy_loss, params=head)
        else:
            p = torch.softmax(tiny3d(pool3d.x), 1).detach()
            cols = []
            for y in range(p.shape[1]):

                def ce(z: Tensor, y: int = y) -> Tensor:
                    return F.cross_entropy(z, torch.full((z.shape[0],), y), reduction="none")

                cols.append(naive_norms(tiny3d, pool3d.x, ce, params=head))
            expect = (p * torch.stack(cols, 1)).sum(1)
        torch.testing.assert_close(scores, expect, rtol=1e-4, atol=1e-7)

    def test_needs_features_and_head(self, pool3d: TensorPool) -> None:
        plain = nn.Sequential(nn.Flatten(1), nn.Linear(512, 3))
        with pytest.raises(ConfigError, match="last-layer-gradnorm needs a model with features"):
            self.make().score(plain, pool3d)


def test_select_topk_ties_and_nan() -> None:
    scores = torch.tensor([0.5, 0.9, 0.5, float("nan"), 0.9, 0.1])
    assert select_topk(scores, 4).tolist() == [1, 4, 0, 2]
    assert select_topk(scores, 3, exclude=[1]).tolist() == [4, 0, 2]
    assert select_topk(scores, 6).tolist()[-1] == 3
    with pytest.raises(PoolExhaustedError, match="budget 6 exceeds the 5 unlabelled"):
        select_topk(scores, 6, exclude=[0])


def test_registry_names_and_errors() -> None:
    assert acquisition.available() == sorted(
        [
            "random",
            "entropy",
            "margin",
            "least-confidence",
            "bald",
            "coreset",
            "badge",
            "expected-gradnorm",
            "entropy-gradnorm",
            "last-layer-gradnorm",
            "typicality",
            "diverse-entropy-gradnorm",
            "diverse-expected-gradnorm",
            "auto",
        ]
    )
    with pytest.raises(
        ConfigError,
        match="unknown acquisition strategy 'expected-gradnrom'; did you mean expected-gradnorm",
    ):
        get("expected-gradnrom")
    with pytest.raises(ConfigError, match="bad options for strategy 'entropy'"):
        get("entropy", bogus=1)
    assert get("Least_Confidence").name == "least-confidence"
    assert acquisition.available(task="image2d") == acquisition.available()
    assert acquisition.available(task="segmentation") == [
        "entropy",
        "entropy-gradnorm",
        "expected-gradnorm",
        "random",
    ]
    # one name, one class per task: the segmentation entropy scores voxel maps
    assert type(get("entropy", task="segmentation")) is not type(get("entropy"))
    assert type(get("random", task="segmentation")) is type(get("random"))
    assert acquisition.tasks_of("bald") == ["classification3d", "image2d"]
    with pytest.raises(ConfigError, match="strategy 'bald' is not available for segmentation"):
        get("bald", task="segmentation")
    with pytest.raises(ConfigError, match="no acquisition strategy is registered for task 'x'"):
        acquisition.available(task="x")
    with pytest.raises(ConfigError, match="already registered for task 'segmentation'"):
        acquisition.register("entropy", tasks=("segmentation",))(type("Other", (Strategy,), {}))


def test_volume_pool_with_normalize(tmp_path: Any) -> None:
    from cryoal.io import VolumePool, write_volume
    from cryoal.transforms import normalize

    g = torch.Generator().manual_seed(0)
    for i in range(6):
        write_volume(
            tmp_path / f"v{i}.mrc", (torch.randn(8, 8, 8, generator=g) * 5 + i).numpy(), 10.0
        )
    pool = VolumePool.from_directory(tmp_path)
    torch.manual_seed(0)
    model = TinyConv3d().eval()
    s = get("expected-gradnorm", progress=False, batch_size=4, transform=normalize)
    sel = s.select(model, pool, 2, labelled=[pool.ids[0]])
    x = torch.stack([normalize(pool[i]) for i in range(len(pool))])
    scores = s.score(model, TensorPool(x))
    assert sel.indices.tolist() == select_topk(scores, 2, exclude=[0]).tolist()

"""The training loop, metrics and prediction on real models and synthetic volumes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, f1_score, recall_score
from torch.utils.data import Dataset, Subset, TensorDataset

from cryoal import models
from cryoal.errors import CheckpointError, ConfigError, EmptyPoolError
from cryoal.train import (
    TrainConfig,
    classification_metrics,
    evaluate,
    fit,
    predict,
    stratified_split,
)

BOX = 16


def two_shapes(n: int, seed: int, noise: float = 0.5) -> TensorDataset:
    """Spheres (class 0) and rods along z (class 1) in Gaussian noise, z-scored, `(1, 16, 16, 16)`."""
    g = torch.Generator().manual_seed(seed)
    c = torch.arange(BOX) - BOX / 2 + 0.5
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    sphere = ((z**2 + y**2 + x**2) < 25).float()
    rod = ((y**2 + x**2) < 4).float() * (z.abs() < 7).float()
    labels = torch.arange(n) % 2
    vols = torch.stack([sphere if k == 0 else rod for k in labels.tolist()])
    vols = vols + noise * torch.randn(vols.shape, generator=g)
    vols = (vols - vols.mean(dim=(1, 2, 3), keepdim=True)) / vols.std(dim=(1, 2, 3), keepdim=True)
    return TensorDataset(vols[:, None], labels)


@pytest.fixture(scope="module")
def train_ds() -> TensorDataset:
    return two_shapes(64, seed=0)


@pytest.fixture(scope="module")
def val_ds() -> TensorDataset:
    return two_shapes(32, seed=1)


def fresh(name: str = "cb3d", seed: int = 0, **kw: Any) -> models.Classifier:
    torch.manual_seed(seed)
    return models.create(name, 2, (1, BOX, BOX, BOX), **kw)


def quick(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = {"epochs": 2, "batch_size": 16, "device": "cpu", "progress": False}
    base.update(kw)
    return TrainConfig(**base)


def test_learns_a_separable_set_in_seconds(train_ds: TensorDataset, val_ds: TensorDataset) -> None:
    model = fresh()
    history = fit(model, train_ds, val_ds, quick(epochs=6))
    metrics = evaluate(model, val_ds)
    assert metrics["accuracy"] >= 0.95
    assert metrics["balanced_accuracy"] >= 0.95
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.epochs_run == 6 and len(history.val_loss) == 6
    assert not model.training
    assert history.samples_seen == 6 * 64 and history.samples_per_second > 0


def test_same_seed_same_weights_other_seed_other_weights(train_ds: TensorDataset) -> None:
    cfg = quick(
        epochs=2,
        augment=lambda x, generator: (
            torch.flip(x, dims=[-1]) if torch.rand(1, generator=generator) < 0.5 else x
        ),
    )
    a, b, c = fresh(), fresh(), fresh()
    fit(a, train_ds, None, cfg)
    fit(b, train_ds, None, cfg)
    fit(c, train_ds, None, quick(epochs=2, seed=1, augment=cfg.augment))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_fit_leaves_the_global_rng_alone(train_ds: TensorDataset) -> None:
    model = fresh()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    fit(model, train_ds, None, quick(epochs=1))
    assert torch.equal(torch.rand(3), expected)


def test_best_epoch_weights_are_restored(train_ds: TensorDataset, val_ds: TensorDataset) -> None:
    model = fresh()
    history = fit(model, train_ds, val_ds, quick(epochs=4, lr=1e-2))
    best = int(np.argmin(history.val_loss))
    assert history.best_epoch == best
    assert evaluate(model, val_ds)["loss"] == pytest.approx(history.val_loss[best], rel=1e-6)


def test_early_stopping(train_ds: TensorDataset) -> None:
    shuffled = TensorDataset(
        train_ds.tensors[0][:32],
        torch.randint(0, 2, (32,), generator=torch.Generator().manual_seed(3)),
    )
    history = fit(fresh(), train_ds, shuffled, quick(epochs=30, patience=2, lr=1e-2))
    assert history.stopped_early
    assert history.epochs_run == history.best_epoch + 1 + 2 < 30


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("constant", [1e-3] * 4),
        ("step", [1e-3, 1e-3, 1e-4, 1e-4]),
        ("cosine", [1e-3 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in (0, 1, 2, 3)]),
    ],
)
def test_schedules(train_ds: TensorDataset, schedule: str, expected: list[float]) -> None:
    history = fit(fresh(), train_ds, None, quick(epochs=4, lr=1e-3, schedule=schedule, step_size=2))
    assert history.lr == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
def test_optimizers_and_amp_train(train_ds: TensorDataset, optimizer: str) -> None:
    history = fit(
        fresh(), train_ds, None, quick(epochs=1, optimizer=optimizer, amp=True, grad_clip=1.0)
    )
    assert all(math.isfinite(v) for v in history.train_loss)


class Recording(Dataset[tuple[torch.Tensor, int]]):
    """A dataset that records which items were read."""

    def __init__(self, base: TensorDataset, labels: torch.Tensor) -> None:
        self.base, self.targets, self.reads = base, labels, []

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        self.reads.append(i)
        return self.base[i % len(self.base)][0], int(self.targets[i])


def test_balanced_sampling_evens_out_classes(train_ds: TensorDataset) -> None:
    labels = torch.tensor([0] * 45 + [1] * 5)
    plain, balanced = Recording(train_ds, labels), Recording(train_ds, labels)
    fit(fresh(), plain, None, quick(epochs=4, batch_size=10))
    fit(fresh(), balanced, None, quick(epochs=4, batch_size=10, balanced=True))
    minority = lambda reads: float(np.mean([labels[i] == 1 for i in reads]))  # noqa: E731
    assert minority(plain.reads) == pytest.approx(0.1)
    assert 0.35 < minority(balanced.reads) < 0.65


def test_drop_last_and_small_sets(train_ds: TensorDataset) -> None:
    h = fit(fresh(), Subset(train_ds, range(17)), None, quick(epochs=2, batch_size=8))
    assert h.samples_seen == 2 * 16  # the leftover item is dropped
    h = fit(
        fresh(), Subset(train_ds, range(17)), None, quick(epochs=2, batch_size=8, drop_last=False)
    )
    assert h.samples_seen == 2 * 17
    h = fit(fresh(), Subset(train_ds, range(5)), None, quick(epochs=2, batch_size=16))
    assert h.samples_seen == 2 * 5  # smaller than one batch: one batch per epoch


def test_bad_training_sets_are_refused(train_ds: TensorDataset) -> None:
    with pytest.raises(EmptyPoolError, match="training needs at least 2 labelled items, got 1"):
        fit(fresh(), Subset(train_ds, [0]), None, quick())
    x = train_ds.tensors[0][:4]
    with pytest.raises(
        ConfigError,
        match=r"training set holds 2 unlabelled items \(label -1, first at index 1\); train on the labelled subset only",
    ):
        fit(fresh(), TensorDataset(x, torch.tensor([0, -1, 1, -1])), None, quick())
    with pytest.raises(
        ConfigError,
        match=r"training labels must be class indices in \[0, 2\); found \[2, 5\]; does the model have the right num_classes\?",
    ):
        fit(fresh(), TensorDataset(x, torch.tensor([0, 2, 5, 1])), None, quick())
    with pytest.raises(ConfigError, match=r"dataset items have different shapes"):
        ragged = [(torch.zeros(1, 16, 16, 16), 0), (torch.zeros(1, 8, 8, 8), 1)]
        fit(fresh(), ragged, None, quick(batch_size=2))  # type: ignore[arg-type]


def test_config_validation() -> None:
    with pytest.raises(
        ConfigError, match=r"TrainConfig: batch_size must be ≥ 2 \(BatchNorm\), got 1"
    ):
        TrainConfig(batch_size=1)
    with pytest.raises(
        ConfigError, match=r"TrainConfig: optimizer must be adamw, adam or sgd, got 'lamb'"
    ):
        TrainConfig(optimizer="lamb")  # type: ignore[arg-type]
    cfg = TrainConfig(augment=lambda x, generator: x, init=Path("/m.pt"))
    plain = cfg.to_dict()
    assert plain["lr"] == 3e-3 and plain["optimizer"] == "adamw" and plain["schedule"] == "cosine"
    assert plain["init"] == "/m.pt" and plain["augment"].startswith("<function")
    assert plain["drop_last"] is True


def test_warm_start(train_ds: TensorDataset, tmp_path: Path) -> None:
    source = fresh(seed=1)
    fit(source, train_ds, None, quick(epochs=1))
    path = models.save_checkpoint(tmp_path / "a.pt", source)
    frozen = quick(epochs=1, lr=1e-12, optimizer="sgd", momentum=0.0, weight_decay=0.0)
    for init in (path, source.state_dict()):
        target = fresh(seed=2)
        fit(target, train_ds, None, TrainConfig(**{**frozen.__dict__, "init": init}))
        for k, v in source.state_dict().items():
            if "weight" in k and "bn" not in k and v.dim() > 1:
                torch.testing.assert_close(target.state_dict()[k], v, rtol=0, atol=1e-9)
    with pytest.raises(CheckpointError, match=r"warm-start weights do not fit this model"):
        fit(fresh(width=8, name="rb3d"), train_ds, None, quick(init=path))


def test_predict_matches_a_manual_forward(train_ds: TensorDataset) -> None:
    model = fresh("rb3d")
    model.train()
    x = train_ds.tensors[0][:10]
    probs = predict(model, Subset(train_ds, range(10)), batch_size=3)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        expected = torch.softmax(model(x), dim=1)
    torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)
    bare = predict(model, list(x.unbind(0)), batch_size=10)  # items that are bare tensors
    torch.testing.assert_close(bare, expected, rtol=1e-5, atol=1e-6)
    assert probs.shape == (10, 2) and probs.device.type == "cpu"
    torch.testing.assert_close(probs.sum(1), torch.ones(10))
    scaled = predict(model, list((2 * x).unbind(0)), transform=lambda v: v / 2, batch_size=4)
    torch.testing.assert_close(scaled, expected, rtol=1e-5, atol=1e-6)
    assert predict(model, [], batch_size=4).shape == (0, 2)


def test_evaluate_skips_unlabelled_and_matches_sklearn(train_ds: TensorDataset) -> None:
    model = fresh().eval()
    x = train_ds.tensors[0][:12]
    y = torch.tensor([0, 1, -1, 1, 0, 0, -1, 1, 1, 0, 1, 0])
    metrics = evaluate(model, TensorDataset(x, y), batch_size=5, class_names=["sphere", "rod"])
    keep = y >= 0
    with torch.no_grad():
        logits = model(x[keep])
    pred = logits.argmax(1).numpy()
    assert metrics["n"] == 10
    assert metrics["loss"] == pytest.approx(
        float(torch.nn.functional.cross_entropy(logits, y[keep])), rel=1e-5
    )
    assert metrics["accuracy"] == pytest.approx(float((pred == y[keep].numpy()).mean()))
    assert metrics["class_names"] == ["sphere", "rod"]
    with pytest.raises(ConfigError, match="evaluation set has no labelled item"):
        evaluate(model, TensorDataset(x[:2], torch.tensor([-1, -1])))


def test_classification_metrics_by_hand() -> None:
    # true: 0 0 0 1 1 2 ; pred: 0 1 0 1 2 2
    m = classification_metrics([0, 0, 0, 1, 1, 2], [0, 1, 0, 1, 2, 2], 4)
    assert m["confusion_matrix"] == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class_recall"][:3] == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert m["per_class_recall"][3] is None  # class 3 absent
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # F1: class0 p=1 r=2/3 -> 0.8; class1 p=1/2 r=1/2 -> 0.5; class2 p=1/2 r=1 -> 2/3
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true:UserWarning")
def test_classification_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 5, 200)
    p = np.where(rng.random(200) < 0.6, t, rng.integers(0, 5, 200))
    t[t == 4] = 3  # class 4 only ever predicted
    m = classification_metrics(t, p, 5)
    assert m["accuracy"] == pytest.approx(float((t == p).mean()))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(t, p))
    assert m["macro_f1"] == pytest.approx(f1_score(t, p, average="macro", zero_division=0))
    assert m["confusion_matrix"] == confusion_matrix(t, p, labels=range(5)).tolist()
    recalls = recall_score(t, p, labels=range(4), average=None, zero_division=0)
    assert m["per_class_recall"][:4] == pytest.approx(list(recalls))
    assert m["per_class_recall"][4] is None


def test_classification_metrics_errors() -> None:
    with pytest.raises(ConfigError, match=r"y_true has 2 items but y_pred has 3"):
        classification_metrics([0, 1], [0, 1, 1], 2)
    with pytest.raises(ConfigError, match=r"y_pred holds class indices outside \[0, 2\)"):
        classification_metrics([0, 1], [0, 2], 2)


def test_stratified_split() -> None:
    targets = torch.tensor([0] * 10 + [1] * 5 + [2] * 2 + [3])
    train_idx, val_idx = stratified_split(targets, 0.2, seed=4)
    assert sorted(torch.cat([train_idx, val_idx]).tolist()) == list(range(18))
    assert torch.bincount(targets[val_idx], minlength=4).tolist() == [2, 1, 1, 0]
    again = stratified_split(targets, 0.2, seed=4)
    assert torch.equal(again[1], val_idx)
    assert not torch.equal(stratified_split(targets, 0.2, seed=5)[1], val_idx)
    assert stratified_split(targets, 0.0)[1].numel() == 0
    with pytest.raises(ConfigError, match=r"validation fraction must be in \[0, 1\), got 1\.0"):
        stratified_split(targets, 1.0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", [False, True])
def test_fit_and_predict_on_cuda(train_ds: TensorDataset, val_ds: TensorDataset, amp: bool) -> None:
    model = fresh()
    history = fit(model, train_ds, val_ds, quick(epochs=6, device="cuda", amp=amp))
    assert next(model.parameters()).device.type == "cuda"
    assert all(math.isfinite(v) for v in history.train_loss)
    probs = predict(model, val_ds, batch_size=8, amp=amp)
    assert probs.device.type == "cpu" and probs.dtype == torch.float32
    assert evaluate(model, val_ds, amp=amp)["accuracy"] >= 0.9

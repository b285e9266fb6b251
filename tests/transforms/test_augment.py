"""Tests of cryoal.transforms.augment: augmentation classes, Compose and the registry."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from cryoal import transforms as T
from cryoal.errors import ConfigError
from cryoal.transforms import (
    Compose,
    Normalize,
    RandomFlip,
    RandomMissingWedge,
    RandomNoise,
    RandomRotate,
    apply_missing_wedge,
    measure_snr,
    missing_wedge_mask,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


ALL = [
    RandomRotate(),
    RandomFlip(),
    RandomNoise((0.1, 1.0)),
    RandomMissingWedge(),
    Normalize(),
]


@pytest.mark.parametrize("transform", ALL, ids=lambda t: t.name)
def test_single_and_batched_shapes_and_determinism(
    transform: T.Transform, blobs32: torch.Tensor
) -> None:
    x = blobs32.float()
    one = transform(x[0], _gen(1))
    assert one.shape == x[0].shape and one.dtype == x.dtype
    batch = transform(x, _gen(1))
    assert batch.shape == x.shape
    assert torch.equal(transform(x, _gen(1)), batch)
    assert torch.isfinite(batch).all()


def test_seeded_instances_repeat_and_call_generator_wins(blobs32: torch.Tensor) -> None:
    a = RandomRotate(seed=3)(blobs32[0])
    b = RandomRotate(seed=3)(blobs32[0])
    assert torch.equal(a, b)
    t = RandomRotate(seed=3)
    assert torch.equal(t(blobs32[0], _gen(9)), RandomRotate()(blobs32[0], _gen(9)))


def test_rotate_draws_one_rotation_per_volume(blobs32: torch.Tensor) -> None:
    same = blobs32[:1].expand(4, -1, -1, -1, -1).float()
    out = RandomRotate(padding="zeros")(same, _gen(2))
    assert not torch.allclose(out[0], out[1])
    torch.testing.assert_close(
        out.sum(dim=(-3, -2, -1)), same.sum(dim=(-3, -2, -1)), rtol=2e-2, atol=0
    )
    assert torch.equal(RandomRotate(prob=0.0)(same, _gen(2)), same)


def test_flip_outputs_are_mirrors_with_expected_frequency() -> None:
    x = torch.randn(400, 1, 4, 4, 4, generator=_gen(0))
    out = RandomFlip(prob=0.5)(x, _gen(1))
    flips = []
    for i in range(400):
        matches = [
            dims
            for dims in [(), (-3,), (-2,), (-1,), (-3, -2), (-3, -1), (-2, -1), (-3, -2, -1)]
            if torch.equal(out[i], x[i].flip(dims) if dims else x[i])
        ]
        assert len(matches) == 1
        flips.append(matches[0])
    for axis in (-3, -2, -1):
        frac = sum(axis in f for f in flips) / 400
        assert frac == pytest.approx(0.5, abs=0.08)
    assert torch.equal(RandomFlip(axes=(2,), prob=1.0)(x[0]), x[0].flip(-1))


def test_noise_snr_in_range_per_volume(blobs32: torch.Tensor) -> None:
    t = RandomNoise((0.05, 0.5))
    out = t(blobs32, _gen(4))
    measured = measure_snr(blobs32, out)[:, 0]
    expected = t.sample_snr(4, _gen(4))
    assert torch.all((measured / expected - 1).abs() < 0.05)
    assert torch.all((expected >= 0.05) & (expected <= 0.5))
    logs = RandomNoise((0.01, 1.0)).sample_snr(20000, _gen(5)).log()
    assert logs.mean().item() == pytest.approx(math.log(0.1), abs=0.05)
    linear = RandomNoise((0.01, 1.0), log_uniform=False).sample_snr(20000, _gen(5))
    assert linear.mean().item() == pytest.approx(0.505, abs=0.01)


def test_noise_prob_zero_is_identity(blobs32: torch.Tensor) -> None:
    assert torch.equal(RandomNoise(prob=0.0)(blobs32, _gen(0)), blobs32)


def test_missing_wedge_jitter_draws_and_applies(noise32: torch.Tensor) -> None:
    t = RandomMissingWedge((-60, 60), jitter=8.0, step=0.5)
    out = t(noise32, _gen(6))
    ranges = t.sample_ranges(8, _gen(6))
    assert len(set(ranges)) > 1
    for i, (a, b) in enumerate(ranges):
        assert -68 <= a <= -52 and 52 <= b <= 68
        assert (2 * a) == round(2 * a) and (2 * b) == round(2 * b)
        expected = apply_missing_wedge(
            noise32[i], missing_wedge_mask((32, 32, 32), (a, b), rfft=True)
        )
        torch.testing.assert_close(out[i], expected)


def test_missing_wedge_without_jitter_is_fixed_wedge(noise32: torch.Tensor) -> None:
    out = RandomMissingWedge((-45, 50), jitter=0.0)(noise32, _gen(0))
    torch.testing.assert_close(
        out,
        apply_missing_wedge(noise32, missing_wedge_mask((32, 32, 32), (-45, 50))),
        atol=1e-5,
        rtol=1e-5,
    )


def test_compose_in_a_dataset_and_dataloader(blobs32: torch.Tensor) -> None:
    class Volumes(Dataset[tuple[torch.Tensor, int]]):
        def __init__(self, data: torch.Tensor, transform: Compose) -> None:
            self.data, self.transform = data, transform

        def __len__(self) -> int:
            return len(self.data)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return self.transform(self.data[i]), i % 2

    pipeline = T.from_config(
        ["rotate", {"name": "noise", "snr_range": [0.5, 1.0]}, "missing_wedge", "normalize"]
    )
    assert len(pipeline) == 4
    torch.manual_seed(0)
    xb, yb = next(iter(DataLoader(Volumes(blobs32.float(), pipeline), batch_size=4)))
    assert xb.shape == (4, 1, 32, 32, 32) and yb.tolist() == [0, 1, 0, 1]
    torch.testing.assert_close(xb.mean(dim=(-3, -2, -1)), torch.zeros(4, 1), atol=1e-5, rtol=0)


def test_config_round_trip(blobs32: torch.Tensor) -> None:
    pipeline = Compose(
        [
            RandomRotate(padding="zeros"),
            RandomNoise((0.2, 0.3), prob=0.5),
            RandomMissingWedge(jitter=2.0),
            Normalize(),
        ]
    )
    rebuilt = T.from_config(pipeline.config())
    assert rebuilt.config() == pipeline.config()
    assert torch.equal(rebuilt(blobs32, _gen(3)), pipeline(blobs32, _gen(3)))


def test_registry_names_and_did_you_mean() -> None:
    assert T.available() == ["flip", "invert", "missing-wedge", "noise", "normalize", "rotate"]
    assert isinstance(T.get("Missing_Wedge", jitter=1.0), RandomMissingWedge)
    with pytest.raises(
        ConfigError,
        match=r"^unknown transform 'rotat' \(did you mean 'rotate'\?\); available: flip, invert, missing-wedge, noise, normalize, rotate$",
    ):
        T.get("rotat")
    with pytest.raises(ConfigError, match=r"^transform 'noise': bad arguments \['snr'\]"):
        T.get("noise", snr=0.1)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: RandomNoise((0.0, 1.0)),
            r"RandomNoise: snr_range must satisfy 0 < low <= high < inf, got \(0.0, 1.0\)",
        ),
        (
            lambda: RandomFlip(axes=(3,)),
            r"RandomFlip: axes must be distinct values of 0 \(z\), 1 \(y\), 2 \(x\), got \(3,\)",
        ),
        (lambda: RandomRotate(prob=2.0), r"RandomRotate: prob must be in \[0, 1\], got 2.0"),
        (lambda: RandomMissingWedge(tilt_axis="z"), r"tilt_axis must be 'y' or 'x', got 'z'"),
        (
            lambda: T.from_config([{"snr_range": [1, 2]}]),
            r"transform config item 0: expected a name or a mapping with 'name'",
        ),
        (
            lambda: T.from_config("rotate"),
            r"transform config must be a list of names or mappings, got 'rotate'",
        ),
        (
            lambda: RandomRotate()(torch.zeros(8, 8, 8)),
            r"RandomRotate: expected a volume \(C, D, H, W\) or a batch \(B, C, D, H, W\), got shape \(8, 8, 8\)",
        ),
    ],
)
def test_augment_rejects_bad_input(build: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()  # type: ignore[operator]


def test_pipeline_drives_cryoal_train_reproducibly() -> None:
    from cryoal import models, train

    x = torch.randn(4, 1, 16, 16, 16, generator=_gen(0))
    ds = torch.utils.data.TensorDataset(x, torch.tensor([0, 1, 0, 1]))
    pipeline = T.from_config(
        ["rotate", "missing-wedge", {"name": "noise", "snr_range": [0.5, 1.0]}, "normalize"]
    )
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        model = models.create("dsrf3d", 2, (1, 16, 16, 16))
        cfg = train.TrainConfig(epochs=1, batch_size=4, augment=pipeline, device="cpu", seed=3)
        losses.append(train.fit(model, ds, config=cfg).train_loss)
    assert losses[0] == losses[1]
    assert math.isfinite(losses[0][0])


def test_invert_negates_and_commutes_with_normalize(blobs32: torch.Tensor) -> None:
    x = blobs32
    inv = T.get("invert")
    assert isinstance(inv, T.Invert) and inv.config()["name"] == "invert"
    assert torch.equal(inv(x), -x) and torch.equal(inv(x[0]), -x[0])
    torch.testing.assert_close(Normalize()(inv(x)), -Normalize()(x))
    pipeline = T.from_config(["invert", "normalize"])
    torch.testing.assert_close(pipeline(x), -Normalize()(x))


def test_invert_with_probability_flips_a_seeded_subset() -> None:
    x = torch.arange(1.0, 9.0).view(8, 1, 1, 1, 1).expand(8, 1, 2, 2, 2).contiguous()
    inv = T.Invert(prob=0.5)
    out = inv(x, _gen(4))
    flipped = out[:, 0, 0, 0, 0] < 0
    assert 0 < int(flipped.sum()) < 8
    torch.testing.assert_close(out.abs(), x)
    assert torch.equal(inv(x, _gen(4)), out)  # same generator, same draws

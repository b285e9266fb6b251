"""Tests of cryoal.transforms.geometry: SO(3) sampling, RELION Euler angles, rotate_volume."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
import torch

from cryoal.errors import ConfigError
from cryoal.transforms import (
    euler_to_matrix,
    matrix_to_euler,
    quaternion_to_matrix,
    random_rotation,
    rotate_volume,
)


def _relion_matrix(rot: float, tilt: float, psi: float) -> torch.Tensor:
    """RELION's Euler_angles2matrix, transcribed from src/euler.cpp."""
    a, b, g = (math.radians(v) for v in (rot, tilt, psi))
    ca, sa, cb, sb, cg, sg = (
        math.cos(a),
        math.sin(a),
        math.cos(b),
        math.sin(b),
        math.cos(g),
        math.sin(g),
    )
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return torch.tensor(
        [
            [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
            [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
            [sc, ss, cb],
        ],
        dtype=torch.float64,
    )


def _rz(deg: float) -> torch.Tensor:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm()))


def test_random_rotations_are_proper_and_seeded() -> None:
    r = random_rotation(500, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert r.shape == (500, 3, 3)
    torch.testing.assert_close(
        r @ r.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(500, 3, 3)
    )
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(500, dtype=torch.float64))
    again = random_rotation(500, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(r, again)
    other = random_rotation(500, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert not torch.equal(r, other)


def test_random_rotations_are_haar_uniform() -> None:
    n = 20000
    r = random_rotation(n, generator=torch.Generator().manual_seed(42), dtype=torch.float64)
    # E[R] = 0 and E[R_ij²] = 1/3 under the Haar measure
    assert r.mean(0).abs().max() < 0.02
    assert (r.pow(2).mean(0) - 1 / 3).abs().max() < 0.01
    # rotation angle ω has density (1 - cos ω) / π: P(ω < 90°) = (π/2 - 1) / π
    omega = torch.arccos(((r.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1))
    frac = (omega < math.pi / 2).double().mean().item()
    assert frac == pytest.approx((math.pi / 2 - 1) / math.pi, abs=0.01)


def test_quaternion_to_matrix_known_values() -> None:
    half = math.radians(30) / 2
    q = torch.tensor([[math.cos(half), 0, 0, math.sin(half)], [1.0, 0, 0, 0], [0.0, 1.0, 0, 0]])
    m = quaternion_to_matrix(q)
    torch.testing.assert_close(m[0], _rz(30))
    torch.testing.assert_close(m[1], torch.eye(3))
    torch.testing.assert_close(m[2], torch.diag(torch.tensor([1.0, -1.0, -1.0])))


def test_euler_to_matrix_is_relion() -> None:
    angles = torch.tensor(
        [[10.0, 20.0, 30.0], [-170.0, 95.0, 45.0], [0.0, 0.0, 90.0], [33.0, 180.0, -12.0]],
        dtype=torch.float64,
    )
    got = euler_to_matrix(angles)
    for row, m in zip(angles.tolist(), got, strict=True):
        torch.testing.assert_close(m, _relion_matrix(*row))
    # A = (Rz(rot) Ry(tilt) Rz(psi))ᵀ: a pure rot is Rz(rot)ᵀ
    torch.testing.assert_close(euler_to_matrix(torch.tensor([40.0, 0.0, 0.0])), _rz(40).T)


def test_matrix_to_euler_round_trip_and_gimbal_lock() -> None:
    g = torch.Generator().manual_seed(3)
    rot = torch.rand(200, generator=g, dtype=torch.float64) * 360 - 180
    tilt = torch.rand(200, generator=g, dtype=torch.float64) * 178 + 1
    psi = torch.rand(200, generator=g, dtype=torch.float64) * 360 - 180
    angles = torch.stack([rot, tilt, psi], -1)
    torch.testing.assert_close(matrix_to_euler(euler_to_matrix(angles)), angles)
    r = random_rotation(200, generator=g, dtype=torch.float64)
    torch.testing.assert_close(euler_to_matrix(matrix_to_euler(r)), r)
    locked = torch.tensor([[25.0, 0.0, 10.0], [25.0, 180.0, 10.0]], dtype=torch.float64)
    back = matrix_to_euler(euler_to_matrix(locked))
    assert back[:, 0].tolist() == [0.0, 0.0]
    assert back[:, 1].tolist() == pytest.approx([0.0, 180.0])
    torch.testing.assert_close(euler_to_matrix(back), euler_to_matrix(locked))


def _naive_rotate(v: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """out(p) = in(Rᵀ(p - c) + c) voxel by voxel, for rotations mapping the grid onto itself."""
    d, h, w = v.shape
    c = torch.tensor([w // 2, h // 2, d // 2], dtype=torch.float64)
    out = torch.zeros_like(v)
    rt = r.double().T
    for i, j, k in itertools.product(range(d), range(h), range(w)):
        src = rt @ (torch.tensor([k, j, i], dtype=torch.float64) - c) + c
        x, y, z = (round(float(s)) for s in src)
        if 0 <= x < w and 0 <= y < h and 0 <= z < d:
            out[i, j, k] = v[z, y, x]
    return out


@pytest.mark.parametrize(
    "rotation",
    [
        _rz(90),
        euler_to_matrix(torch.tensor([0.0, 90.0, 0.0])),
        euler_to_matrix(torch.tensor([90.0, 90.0, -90.0])),
        _rz(180),
    ],
)
def test_grid_rotations_match_naive_permutation(rotation: torch.Tensor) -> None:
    v = torch.randn(9, 9, 9, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(
        rotate_volume(v, rotation), _naive_rotate(v, rotation), atol=1e-5, rtol=0
    )


def test_rotation_about_centre_of_non_cubic_even_box() -> None:
    v = torch.zeros(10, 12, 14)
    v[5, 6, 10] = 1.0  # z = 5, y = 6, x = 10; centre (x, y, z) = (7, 6, 5)
    out = rotate_volume(v, _rz(90))  # active: +x goes to +y
    assert (out > 0.99).nonzero().tolist() == [[5, 9, 7]]
    torch.testing.assert_close(
        rotate_volume(v, _rz(180)), _naive_rotate(v, _rz(180)), atol=1e-5, rtol=0
    )


def test_rotate_then_inverse_recovers_smooth_object(blobs32: torch.Tensor) -> None:
    r = random_rotation(4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    there = rotate_volume(blobs32, r)
    back = rotate_volume(there, r.transpose(1, 2))
    for i in range(4):
        assert _corr(back[i], blobs32[i]) > 0.95
        assert _corr(there[i], blobs32[i]) < 0.95  # it did move


def test_rotation_preserves_mass(blobs32: torch.Tensor) -> None:
    r = random_rotation(4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    mass = blobs32.sum(dim=(-3, -2, -1))
    rotated = rotate_volume(blobs32, r).sum(dim=(-3, -2, -1))
    torch.testing.assert_close(rotated, mass, rtol=1e-3, atol=0)


def test_batched_equals_one_by_one(blobs32: torch.Tensor) -> None:
    x = blobs32.float()
    r = random_rotation(4, generator=torch.Generator().manual_seed(8))
    batch = rotate_volume(x, r)
    for i in range(4):
        torch.testing.assert_close(batch[i], rotate_volume(x[i], r[i]))
        torch.testing.assert_close(batch[i, 0], rotate_volume(x[i, 0], r[i]))
    shared = rotate_volume(x, r[0])
    torch.testing.assert_close(shared[2], rotate_volume(x[2], r[0]))


def test_padding_modes() -> None:
    v = torch.full((1, 1, 16, 16, 16), 3.0)
    v[..., 6:10, 6:10, 6:10] = 5.0
    r = _rz(45)
    zeros = rotate_volume(v, r)
    mean = rotate_volume(v, r, padding="mean")
    border = rotate_volume(v, r, padding="border")
    assert zeros[0, 0, 8, 0, 0].item() == 0.0
    assert mean[0, 0, 8, 0, 0].item() == pytest.approx(v.mean().item())
    assert border[0, 0, 8, 0, 0].item() == pytest.approx(3.0)
    torch.testing.assert_close(mean[0, 0, 8, 8, 8], border[0, 0, 8, 8, 8])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: rotate_volume(torch.zeros(3, 1, 8, 8, 8), torch.eye(3).expand(2, 3, 3)),
            r"2 rotations for a batch of 3 volumes",
        ),
        (
            lambda: rotate_volume(torch.zeros(8, 8, 8), torch.eye(4)),
            r"rotations must be \(3, 3\) or \(B, 3, 3\), got \(4, 4\)",
        ),
        (
            lambda: rotate_volume(torch.zeros(8, 8, 8), torch.eye(3), padding="wrap"),
            r"padding must be one of \('zeros', 'mean', 'border'\), got 'wrap'",
        ),
        (
            lambda: euler_to_matrix(torch.zeros(2)),
            r"euler_to_matrix: expected shape \(..., 3\), got \(2,\)",
        ),
    ],
)
def test_geometry_rejects_bad_input(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call()

"""pick_fbeta: the CZII challenge's F-beta, against a naive double loop and hand cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cryoal.errors import ConfigError
from cryoal.simulate import SimulatedCopickProject
from cryoal.tasks.particle_metrics import CZII_RADII, CZII_WEIGHTS, pick_fbeta

RADII = {"a": 100.0, "b": 60.0}


def _points(rows: list[tuple[str, str, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["tomo", "label", "x", "y", "z"])


def _naive(
    truth: pd.DataFrame,
    pred: pd.DataFrame,
    radii: dict[str, float],
    weights: dict[str, float],
    beta: float,
    factor: float,
) -> tuple[dict[str, tuple[int, int, int, float]], float]:
    """The challenge's rules, one pair at a time."""
    per: dict[str, tuple[int, int, int, float]] = {}
    tomos = set(truth["tomo"])
    for c, r in radii.items():
        tp = fp = fn = 0
        for tomo in tomos:
            t = [row for row in truth.itertuples() if row.tomo == tomo and row.label == c]
            p = [row for row in pred.itertuples() if row.tomo == tomo and row.label == c]
            if not t:
                fp += len(p)
                continue
            hit = set()
            for q in p:
                for i, s in enumerate(t):
                    d = math.sqrt((q.x - s.x) ** 2 + (q.y - s.y) ** 2 + (q.z - s.z) ** 2)
                    if d <= r * factor:
                        hit.add(i)
            tp += len(hit)
            fp += len(p) - len(hit)
            fn += len(t) - len(hit)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f = (1 + beta**2) * prec * rec / (beta**2 * prec + rec) if prec + rec else 0.0
        per[c] = (tp, fp, fn, f)
    score = sum(per[c][3] * weights[c] for c in radii) / sum(weights[c] for c in radii)
    return per, score


@pytest.mark.parametrize("seed", range(6))
def test_matches_a_naive_double_loop(seed: int) -> None:
    rng = np.random.default_rng(seed)

    def cloud(n: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "tomo": rng.choice(["t1", "t2", "t3"], n),
                "label": rng.choice(["a", "b"], n),
                "x": rng.uniform(0, 600, n),
                "y": rng.uniform(0, 600, n),
                "z": rng.uniform(0, 300, n),
            }
        )

    truth = cloud(int(rng.integers(0, 40)))
    pred = cloud(int(rng.integers(0, 60)))
    # some predictions near true particles, some duplicated
    near = truth.sample(frac=0.6, random_state=seed).copy()
    near[["x", "y", "z"]] += rng.normal(0, 25, (len(near), 3))
    pred = pd.concat([pred, near, near.head(3)], ignore_index=True)
    weights = {"a": 1.0, "b": 2.0}
    factor = float(rng.choice([0.5, 1.0]))
    got = pick_fbeta(truth, pred, RADII, weights=weights, radius_factor=factor)
    per, score = _naive(truth, pred, RADII, weights, 4.0, factor)
    for row in got.per_class.itertuples():
        assert (row.tp, row.fp, row.fn) == per[row.label][:3]
        assert row.fbeta == pytest.approx(per[row.label][3])
    assert got.score == pytest.approx(score)


def test_hand_cases() -> None:
    truth = _points([("t", "a", 0, 0, 0), ("t", "a", 500, 0, 0), ("t", "b", 0, 300, 0)])
    # radius 100 x 0.5 = 50 Å: exactly at 50 is a hit, 50.001 is not
    pred = _points(
        [
            ("t", "a", 0, 0, 0),  # exact hit
            ("t", "a", 0, 0, 40),  # duplicate on the same particle: FP
            ("t", "a", 550.001, 0, 0),  # just outside: FP, and particle 2 is missed
            ("t", "b", 0, 330, 0),  # within 30 of b: hit
            ("u", "a", 500, 0, 0),  # another tomogram without truth: ignored
            ("t", "b", 500, 0, 0),  # wrong class at an 'a' particle: FP of b
        ]
    )
    s = pick_fbeta(truth, pred, RADII)
    a = s.per_class.set_index("label").loc["a"]
    assert (a.n_true, a.n_pred, a.tp, a.fp, a.fn) == (2, 3, 1, 2, 1)
    assert a.precision == pytest.approx(1 / 3) and a.recall == pytest.approx(1 / 2)
    f_a = 17 * (1 / 3) * (1 / 2) / (16 * (1 / 3) + 1 / 2)
    assert a.fbeta == pytest.approx(f_a)
    b = s.per_class.set_index("label").loc["b"]
    assert (b.tp, b.fp, b.fn) == (1, 1, 0)
    f_b = 17 * 0.5 * 1 / (16 * 0.5 + 1)
    assert b.fbeta == pytest.approx(f_b)
    assert s.score == pytest.approx((f_a + f_b) / 2)
    at_edge = pick_fbeta(truth, _points([("t", "a", 550, 0, 0)]), RADII)
    assert at_edge.per_class.loc[0, "tp"] == 1  # distance == reach is a hit
    # scoring tomogram u too turns its prediction into a false positive
    both = pick_fbeta(truth, pred, RADII, tomograms=["t", "u"])
    assert both.per_class.loc[0, "fp"] == 3


def test_perfect_empty_and_absent_classes() -> None:
    truth = _points([("t", "a", 0, 0, 0), ("t", "a", 300, 0, 0)])
    perfect = pick_fbeta(truth, truth, {"a": 100.0})
    assert perfect.score == 1.0 and perfect.per_class.loc[0, "precision"] == 1.0
    none = pick_fbeta(truth, truth.iloc[:0], {"a": 100.0})
    assert none.score == 0.0 and none.per_class.loc[0, "fn"] == 2
    # a class absent from the truth scores 0 and keeps its weight (as in the challenge)
    half = pick_fbeta(truth, truth, {"a": 100.0, "b": 50.0}, weights={"a": 1, "b": 3})
    assert half.score == pytest.approx(0.25)
    # beta = 1 is the F1 score: precision 1/2, recall 1 -> 2/3
    dup = pd.concat([truth, truth], ignore_index=True)
    assert pick_fbeta(truth, dup, {"a": 100.0}, beta=1.0).score == pytest.approx(2 / 3)


def test_challenge_weights_and_radii() -> None:
    assert CZII_RADII["ribosome"] == 150.0 and CZII_WEIGHTS["beta-amylase"] == 0.0
    truth = _points([("TS_5_4", "ribosome", 1000, 1000, 500), ("TS_5_4", "beta-amylase", 0, 0, 0)])
    pred = _points([("TS_5_4", "ribosome", 1070, 1000, 500)])  # within 75 Å
    s = pick_fbeta(truth, pred, CZII_RADII, weights=CZII_WEIGHTS)
    # ribosome F = 1 with weight 1 out of a total weight of 7
    assert s.score == pytest.approx(1 / 7)


def test_particle_list_input(sim_copick: SimulatedCopickProject) -> None:
    from cryoal.io.particles import ParticleList

    truth = ParticleList(sim_copick.particles, {r: 10.0 for r in sim_copick.runs}, "csv")
    radii = dict(zip(sim_copick.objects["name"], sim_copick.objects["radius"], strict=True))
    s = pick_fbeta(truth, truth, radii)
    assert s.score == 1.0 and list(s.per_class["label"]) == list(radii)
    moved = sim_copick.particles.copy()
    moved["x"] += 0.5 * moved["radius"] + 1.0  # just out of reach of every particle
    assert pick_fbeta(truth, moved, radii).score == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"radii": {"a": 100.0}}, "pred: no radius for class\\(es\\) b"),
        ({"radii": {"a": 1.0, "b": -1.0}}, "radius of class 'b' must be a positive"),
        ({"beta": 0.0}, "beta must be a positive"),
        ({"radius_factor": float("nan")}, "radius_factor must be a positive"),
        ({"weights": {"a": 0, "b": 0}}, "weights must not all be zero"),
        ({"label": "class"}, "truth: missing column\\(s\\) class"),
    ],
)
def test_bad_input_raises_config_error(kwargs: dict[str, object], message: str) -> None:
    truth = _points([("t", "a", 0, 0, 0)])
    pred = _points([("t", "b", 0, 0, 0)])
    args: dict[str, object] = {"radii": RADII, **kwargs}
    with pytest.raises(ConfigError, match=message):
        pick_fbeta(truth, pred, **args)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="row 1 has a non-finite coordinate"):
        pick_fbeta(_points([("t", "a", np.nan, 0, 0)]), pred, RADII)

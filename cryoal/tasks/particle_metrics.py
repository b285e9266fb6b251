"""Per-class F-beta of particle picks, as scored in the CZII cryo-ET object-identification challenge.

The Kaggle competition "CZII - CryoET Object Identification" (CZ Imaging Institute, 2024-25;
metric notebook ``kaggle.com/code/metric/czi-cryoet-84969``, the ``score`` function) scores
predicted particle centres against ground truth as follows, and :func:`pick_fbeta`
computes exactly this:

- a predicted point of class ``c`` hits a true point of class ``c`` in the same tomogram
  when their distance is at most ``radius_factor x radius[c]`` (``distance_multiplier``
  = 0.5 in the challenge; distances in Å, ``scipy.spatial.KDTree.query_ball_tree``, so
  the boundary counts as a hit);
- per tomogram and class, ``TP`` = the number of *distinct true points* hit by at least
  one prediction, ``FP = n_pred - TP``, ``FN = n_true - TP``: several predictions on one
  particle count once as TP and the rest as FP. This is not a one-to-one assignment: a
  prediction within reach of two true points counts for both (the challenge notes it as
  a rare, accepted inexactness; it cannot happen when true particles of a class are
  more than ``2 x radius_factor x radius`` apart, as non-overlapping particles are), and
  ``FP`` can then go negative;
- ``TP``, ``FP``, ``FN`` are summed over tomograms per class; ``precision = TP / (TP +
  FP)``, ``recall = TP / (TP + FN)`` (0 when the denominator is 0), ``F_beta = (1 + β²)
  P R / (β² P + R)`` (0 when ``P + R = 0``), with ``β = 4`` (recall weighs 16 x more);
- the score is the weighted mean ``Σ_c w_c F_c / Σ_c w_c`` over every class with a
  radius (a class absent from the truth scores 0 but keeps its weight). The challenge
  weights: apo-ferritin 1, beta-amylase 0, beta-galactosidase 2, ribosome 1,
  thyroglobulin 2, virus-like-particle 1 (:data:`CZII_WEIGHTS`; radii :data:`CZII_RADII`);
- predictions in tomograms without any true particle are ignored (the challenge scores
  only the experiments of the solution); pass ``tomograms`` to score others too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cryoal.errors import ConfigError

__all__ = [
    "CZII_BETA",
    "CZII_RADIUS_FACTOR",
    "CZII_RADII",
    "CZII_WEIGHTS",
    "PickScores",
    "pick_fbeta",
]

#: β of the challenge's F-beta.
CZII_BETA = 4.0
#: Fraction of the particle radius within which a prediction is a hit.
CZII_RADIUS_FACTOR = 0.5
#: Particle radii of the challenge's six classes, Å.
CZII_RADII: Mapping[str, float] = {
    "apo-ferritin": 60.0,
    "beta-amylase": 65.0,
    "beta-galactosidase": 90.0,
    "ribosome": 150.0,
    "thyroglobulin": 130.0,
    "virus-like-particle": 135.0,
}
#: Class weights of the challenge's aggregate score.
CZII_WEIGHTS: Mapping[str, float] = {
    "apo-ferritin": 1.0,
    "beta-amylase": 0.0,
    "beta-galactosidase": 2.0,
    "ribosome": 1.0,
    "thyroglobulin": 2.0,
    "virus-like-particle": 1.0,
}

_COLUMNS = (
    "label",
    "radius",
    "weight",
    "n_true",
    "n_pred",
    "tp",
    "fp",
    "fn",
    "precision",
    "recall",
    "fbeta",
)


@dataclass(frozen=True)
class PickScores:
    """Scores of picks against ground truth (see the module docstring).

    Attributes
    ----------
    per_class
        One row per class: ``label``, ``radius`` (Å, before ``radius_factor``),
        ``weight``, ``n_true``, ``n_pred``, ``tp``, ``fp``, ``fn``, ``precision``,
        ``recall``, ``fbeta``.
    score
        Weighted mean F-beta over the classes.
    beta, radius_factor
        The parameters used.
    """

    per_class: pd.DataFrame
    score: float
    beta: float
    radius_factor: float

    def __repr__(self) -> str:
        return (
            f"PickScores(score={self.score:.4f}, beta={self.beta:g}, {len(self.per_class)} classes)"
        )


def _table(points: Any, name: str, label: str) -> pd.DataFrame:
    table = getattr(points, "table", points)
    if not isinstance(table, pd.DataFrame):
        raise ConfigError(f"{name}: expected a ParticleList or a DataFrame, got {type(points)}")
    missing = [c for c in ("tomo", "x", "y", "z", label) if c not in table.columns]
    if missing:
        raise ConfigError(
            f"{name}: missing column(s) {', '.join(missing)} (have {', '.join(map(str, table.columns))})"
        )
    out = pd.DataFrame(
        {
            "tomo": table["tomo"].astype(str).to_numpy(),
            "label": table[label].astype(str).to_numpy(),
        }
    )
    xyz = table[["x", "y", "z"]].to_numpy(dtype=np.float64)
    if not np.isfinite(xyz).all():
        bad = int(np.flatnonzero(~np.isfinite(xyz).all(axis=1))[0])
        raise ConfigError(f"{name}: row {bad + 1} has a non-finite coordinate")
    out[["x", "y", "z"]] = xyz
    return out


def _match(truth_xyz: np.ndarray, pred_xyz: np.ndarray, reach: float) -> tuple[int, int, int]:
    """TP, FP, FN of one tomogram and class (the challenge's ``compute_metrics``)."""
    n_true, n_pred = len(truth_xyz), len(pred_xyz)
    if n_true == 0:
        return 0, n_pred, 0
    if n_pred == 0:
        return 0, 0, n_true
    from scipy.spatial import KDTree

    hits = KDTree(pred_xyz).query_ball_tree(KDTree(truth_xyz), r=reach)
    tp = len({j for found in hits for j in found})
    return tp, n_pred - tp, n_true - tp


def pick_fbeta(
    truth: Any,
    pred: Any,
    radii: Mapping[str, float],
    *,
    weights: Mapping[str, float] | None = None,
    beta: float = CZII_BETA,
    radius_factor: float = CZII_RADIUS_FACTOR,
    tomograms: Sequence[str] | None = None,
    label: str = "label",
) -> PickScores:
    """Per-class precision, recall and F-beta of picks, and their weighted mean.

    The rules of the CZII cryo-ET object-identification challenge (module docstring):
    a prediction hits a true particle of its class within ``radius_factor x radius``;
    TP counts distinct true particles hit; sums over tomograms; β = 4.

    Parameters
    ----------
    truth, pred
        :class:`~cryoal.io.particles.ParticleList` objects or DataFrames with ``tomo``,
        ``x``, ``y``, ``z`` (Å, any common origin) and the class column ``label``.
    radii
        Particle radius in Å for every class (e.g. the copick ``pickable_objects``
        radii, or :data:`CZII_RADII`); the classes scored, in this order.
    weights
        Class weights of the mean (default 1 each); a class without a weight gets 1.
    beta
        F-beta's β (> 0).
    radius_factor
        Fraction of the radius that counts as a hit (> 0).
    tomograms
        Tomograms to score (default: those in ``truth``); predictions elsewhere are
        ignored.
    label
        Name of the class column in both tables.

    Returns
    -------
    PickScores

    Raises
    ------
    ConfigError
        A missing column, a non-finite coordinate, a class in ``truth`` or ``pred``
        without a radius, a non-positive radius, β or factor, or all weights zero.
    """
    if not (math.isfinite(beta) and beta > 0):
        raise ConfigError(f"beta must be a positive number, got {beta}")
    if not (math.isfinite(radius_factor) and radius_factor > 0):
        raise ConfigError(f"radius_factor must be a positive number, got {radius_factor}")
    if not radii:
        raise ConfigError("radii: give a radius in Å for at least one class")
    for name, r in radii.items():
        if not (math.isfinite(float(r)) and float(r) > 0):
            raise ConfigError(f"radius of class {name!r} must be a positive number of Å, got {r}")
    t = _table(truth, "truth", label)
    p = _table(pred, "pred", label)
    for name, table in (("truth", t), ("pred", p)):
        unknown = sorted(set(table["label"]) - set(radii))
        if unknown:
            raise ConfigError(
                f"{name}: no radius for class(es) {', '.join(unknown)}; "
                f"radii are given for {', '.join(radii)}"
            )
    w = {c: float((weights or {}).get(c, 1.0)) for c in radii}
    total = sum(w.values())
    if not total > 0:
        raise ConfigError(f"weights must not all be zero, got {w}")
    keep = set(t["tomo"]) if tomograms is None else {str(v) for v in tomograms}
    t = t[t["tomo"].isin(keep)]
    p = p[p["tomo"].isin(keep)]

    rows = []
    b2 = beta**2
    for c, radius in radii.items():
        tc, pc = t[t["label"] == c], p[p["label"] == c]
        tp = fp = fn = 0
        for tomo in sorted(set(tc["tomo"]) | set(pc["tomo"])):
            a = tc.loc[tc["tomo"] == tomo, ["x", "y", "z"]].to_numpy()
            b = pc.loc[pc["tomo"] == tomo, ["x", "y", "z"]].to_numpy()
            dtp, dfp, dfn = _match(a, b, float(radius) * radius_factor)
            tp, fp, fn = tp + dtp, fp + dfp, fn + dfn
        precision = tp / (tp + fp) if tp + fp > 0 else 0.0
        recall = tp / (tp + fn) if tp + fn > 0 else 0.0
        denom = b2 * precision + recall
        fbeta = (1 + b2) * precision * recall / denom if precision + recall > 0 else 0.0
        rows.append(
            (c, float(radius), w[c], len(tc), len(pc), tp, fp, fn, precision, recall, fbeta)
        )
    per_class = pd.DataFrame(rows, columns=list(_COLUMNS))
    score = float((per_class["fbeta"] * per_class["weight"]).sum() / total)
    return PickScores(per_class, score, float(beta), float(radius_factor))

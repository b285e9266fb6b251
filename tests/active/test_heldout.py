"""Held-out accuracy from labelled picks, and how ``auto`` uses it in a round."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from round_options import TINY_ROUND

from cryoal.active import Project
from cryoal.active.heldout import MIN_HELDOUT, HeldoutAccuracy, heldout_accuracy
from cryoal.active.loop import SelectConfig, register_pool, select_round
from cryoal.active.project import PoolEntry
from cryoal.io import VolumePool

BOX = (16, 16, 16)


def _project(tmp_path: Path, n: int = 60) -> Project:
    proj = Project(tmp_path / "proj")
    entries = [PoolEntry(f"v{i:02d}.mrc", f"v{i:02d}.mrc", BOX, f"c{i}") for i in range(n)]
    proj.register_pool(entries, root=tmp_path / "vols", voxel_size=10.0)
    return proj


def _round(proj: Project, mode: str, picks: dict[str, str | None]) -> int:
    """A finished round whose model predicted ``picks`` ({id: predicted or None})."""
    rnd = proj.start_round(strategy="auto", budget=len(picks), seed=0, mode=mode, config={})
    proj.mark_trained(rnd.n, f"models/round-{rnd.n:03d}.pt", {})
    probs = {vid: None if p is None else {p: 1.0} for vid, p in picks.items()}
    proj.record_scores(
        rnd.n,
        [(vid, 0.0, p, probs[vid]) for vid, p in picks.items()],
        [(vid, 0.0) for vid in picks],
    )
    proj.mark_picked(rnd.n)
    return rnd.n


def _next(proj: Project) -> object:
    return proj.start_round(strategy="auto", budget=1, seed=0, mode="train", config={})


def test_accuracy_is_the_share_of_labelled_picks_predicted_right(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    predicted = {f"v{i:02d}.mrc": "a" if i % 3 else "b" for i in range(30)}
    truth = {vid: "a" if i % 2 else "b" for i, vid in enumerate(predicted)}
    n = _round(proj, "train", predicted)
    proj.add_labels(truth, source="expert")
    got = heldout_accuracy(proj, _next(proj))  # type: ignore[arg-type]
    naive = sum(truth[v] == p for v, p in predicted.items())
    assert got == HeldoutAccuracy(round=n, correct=naive, labelled=30)
    assert got.accuracy == pytest.approx(naive / 30)
    assert got.as_dict() == {"round": n, "correct": naive, "labelled": 30, "accuracy": naive / 30}


def test_only_picks_labelled_when_the_round_started_count(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    predicted = {f"v{i:02d}.mrc": "a" for i in range(30)}
    _round(proj, "train", predicted)
    ids = list(predicted)
    proj.add_labels({v: "a" for v in ids[:25]}, source="expert")
    before = _next(proj)
    # labels imported, or changed, after the round started do not change its estimate
    proj.add_labels({v: "b" for v in ids[25:]}, source="expert")
    proj.add_labels({v: "b" for v in ids[:5]}, source="expert", overwrite=True)
    got = heldout_accuracy(proj, before)  # type: ignore[arg-type]
    assert (got.correct, got.labelled) == (25, 25)  # type: ignore[union-attr]


def test_no_estimate_without_predictions_or_with_too_few_labels(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    # a cold start's picks carry no prediction
    _round(proj, "cold", {f"v{i:02d}.mrc": None for i in range(30)})
    proj.add_labels({f"v{i:02d}.mrc": "a" for i in range(30)}, source="expert")
    assert heldout_accuracy(proj, _next(proj)) is None  # type: ignore[arg-type]
    proj.discard_round(2)
    few = {f"v{i:02d}.mrc": "a" for i in range(30, 30 + MIN_HELDOUT)}
    _round(proj, "train", few)
    proj.add_labels(dict(list(few.items())[:-1]), source="expert")
    assert heldout_accuracy(proj, _next(proj)) is None  # type: ignore[arg-type]
    proj.discard_round(3)
    proj.add_labels(dict(list(few.items())[-1:]), source="expert")
    got = heldout_accuracy(proj, _next(proj))  # type: ignore[arg-type]
    assert (got.round, got.labelled) == (2, MIN_HELDOUT)  # type: ignore[union-attr]


def test_only_the_latest_predicting_round_is_used(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    old = {f"v{i:02d}.mrc": "a" for i in range(25)}
    new = {f"v{i:02d}.mrc": "b" for i in range(25, 50)}
    _round(proj, "train", old)
    proj.add_labels({v: "a" for v in old}, source="expert")
    n = _round(proj, "train", new)
    proj.add_labels({v: "a" for v in new}, source="expert")
    got = heldout_accuracy(proj, _next(proj))  # type: ignore[arg-type]
    assert got == HeldoutAccuracy(round=n, correct=0, labelled=25)


@pytest.mark.parametrize(
    ("expert", "choice", "accuracy"),
    [("agrees", "entropy-gradnorm", 1.0), ("disagrees", "diverse-entropy-gradnorm", 0.0)],
)
def test_auto_keeps_picks_diverse_while_the_models_picks_come_back_wrong(
    big_sim_pool: tuple[Path, pd.DataFrame],
    tmp_path: Path,
    expert: str,
    choice: str,
    accuracy: float,
) -> None:
    root, truth = big_sim_pool
    pool = VolumePool.from_directory(root)
    first = truth.groupby("label").head(50)  # 50 labels per class: plain gradnorm by count
    cfg = SelectConfig(**TINY_ROUND, epochs=1, gallery_size=0, budget=MIN_HELDOUT)
    with Project(tmp_path / "proj") as proj:
        register_pool(proj, pool)
        proj.add_labels(list(zip(first["id"], first["label"], strict=True)), source="oracle")
        one = select_round(proj, pool, cfg)
        assert "heldout" not in one.round.metrics  # no earlier model: decided by the count
        assert one.round.metrics["selection"]["choice"] == "entropy-gradnorm"
        classes = sorted(truth["label"].unique())
        answer = {
            p.id: p.predicted
            if expert == "agrees"
            else next(c for c in classes if c != p.predicted)
            for p in one.picks
        }
        proj.add_labels(answer, source="expert")
        two = select_round(proj, pool, cfg)
        want = {"round": 1, "correct": int(accuracy * MIN_HELDOUT), "labelled": MIN_HELDOUT}
        assert two.round.metrics["heldout"] == {**want, "accuracy": accuracy}
        selection = two.round.metrics["selection"]
        assert selection["choice"] == choice
        if choice.startswith("diverse-"):
            assert "held-out accuracy 0.00 < 0.6" in selection["reason"]
        recorded = json.loads(two.files["config"].read_text())["arguments"]
        assert recorded["heldout"]["accuracy"] == accuracy

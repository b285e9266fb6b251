"""The round step machine and the simulated loop, on a real pool of MRC files."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from round_options import TINY_ROUND

from cryoal import models
from cryoal.active import Oracle, Project
from cryoal.active.loop import (
    KILL_POINTS,
    SelectConfig,
    _Guarded,
    _score,
    kill_point,
    run,
    select_round,
)
from cryoal.errors import (
    CheckpointError,
    ConfigError,
    InvalidVolumeError,
    PoolExhaustedError,
    ProjectError,
)
from cryoal.io import VolumePool, read_table

#: fast options for tests: a tiny CNN, few epochs, no progress bars
FAST = {
    **TINY_ROUND,
    "epochs": 3,
    "gallery_size": 6,
}


def _cfg(**kw: object) -> SelectConfig:
    # these tests pin the coreset cold start and expected-gradnorm (the defaults are auto;
    # tests/active/test_loop_auto.py covers them)
    base = {"strategy": "expected-gradnorm", "cold_start": "coreset"}
    return SelectConfig(**{**FAST, **base, "budget": 6, **kw})  # type: ignore[arg-type]


def _truth(df: pd.DataFrame) -> dict[str, str]:
    return dict(zip(df["id"], df["label"], strict=True))


@pytest.fixture
def loop_pool(sim_pool: tuple[Path, pd.DataFrame]) -> tuple[VolumePool, pd.DataFrame]:
    """The private copy of the simulated pool opened as a VolumePool, with its truth table."""
    root, truth = sim_pool
    return VolumePool.from_directory(root), truth


def test_cold_start_then_train_round(
    loop_pool: tuple[VolumePool, pd.DataFrame], tmp_path: Path
) -> None:
    pool, truth = loop_pool
    proj = Project(tmp_path / "proj")
    res = select_round(proj, pool, _cfg())
    assert (res.round.n, res.round.mode, res.round.strategy, res.round.status) == (
        1,
        "cold",
        "coreset",
        "picked",
    )
    assert len(res.picks) == 6 and len({p.id for p in res.picks}) == 6
    assert all(p.predicted is None for p in res.picks)
    # cold-start picks equal k-center greedy on the untrained model's embedding
    model, _ = models.load_checkpoint(tmp_path / "proj" / "models" / "round-001.pt")
    with torch.no_grad():
        from cryoal.transforms import normalize

        emb = torch.cat([model.features(normalize(pool[i][None])) for i in range(len(pool))])
    from cryoal.acquisition.diversity import kcenter_greedy

    want, _ = kcenter_greedy(emb, 6, torch.zeros(0, dtype=torch.long), torch.arange(len(pool)))
    assert [p.id for p in res.picks] == [pool.ids[i] for i in want.tolist()]

    table = read_table(res.files["csv"])
    assert list(table.columns) == [
        "id",
        "path",
        "rank",
        "score",
        "predicted",
        "strategy",
        "round",
        "label",
    ]
    assert table["rank"].tolist() == [1, 2, 3, 4, 5, 6]
    assert Path(table["path"][0]).is_file()
    assert res.files["star"].is_file() and res.files["gallery"].is_file()
    assert res.files["config"].is_file()

    proj.add_labels({p.id: _truth(truth)[p.id] for p in res.picks}, source="expert")
    res2 = select_round(proj, pool, _cfg())
    assert (res2.round.n, res2.round.mode, res2.round.strategy) == (2, "train", "expected-gradnorm")
    assert res2.round.n_labels == 6
    labelled = set(proj.label_map())
    assert not labelled & {p.id for p in res2.picks}
    scores = proj.scores(2)
    assert len(scores) == len(pool) - 6  # every unlabelled volume scored
    top = sorted(scores, key=lambda r: -r["score"])[:6]
    assert [r["id"] for r in top] == [p.id for p in res2.picks]
    for p in res2.picks:
        assert p.probabilities is not None
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert p.predicted == max(p.probabilities, key=p.probabilities.__getitem__)
    table2 = read_table(res2.files["csv"])
    classes = proj.class_names
    # every step of the train round is timed; a cold round has no predict step
    steps = res2.round.metrics["step_seconds"]
    for name in ("register", "read", "train", "score", "predict", "record", "gallery", "write"):
        wall, cpu = steps[name]
        assert wall >= 0 and cpu >= 0, name
    assert "predict" not in res.round.metrics["step_seconds"]
    assert "embed" in res.round.metrics["step_seconds"]  # coreset embeds the pool
    assert [f"p_{c}" for c in classes] == [c for c in table2.columns if c.startswith("p_")]


def test_rerun_without_new_labels_reuses_round(
    loop_pool: tuple[VolumePool, pd.DataFrame], tmp_path: Path
) -> None:
    pool, _ = loop_pool
    proj = Project(tmp_path / "proj")
    first = select_round(proj, pool, _cfg(cold_start="random"))
    again = select_round(proj, pool, _cfg(cold_start="random"), out=tmp_path / "o.star")
    assert again.reused and again.round.n == 1
    assert [p.id for p in again.picks] == [p.id for p in first.picks]
    assert read_table(tmp_path / "o.star")["id"].tolist() == [p.id for p in first.picks]
    forced = select_round(proj, pool, _cfg(cold_start="random"), new_round=True)
    assert forced.round.n == 2 and not forced.reused


def test_resume_each_step_gives_same_picks(
    loop_pool: tuple[VolumePool, pd.DataFrame], tmp_path: Path
) -> None:
    """Stopping after each recorded step and resuming reproduces the uninterrupted picks."""
    pool, truth = loop_pool
    seed_labels = {i: truth.set_index("id")["label"][i] for i in pool.ids[:9]}

    def fresh(name: str) -> Project:
        p = Project(tmp_path / name)
        from cryoal.active.loop import register_pool

        register_pool(p, pool)
        p.add_labels(seed_labels)
        return p

    ref = select_round(fresh("ref"), pool, _cfg())
    ref_ids = [p.id for p in ref.picks]
    for status in ("started", "trained", "scored"):
        proj = fresh(f"stop-{status}")
        res = select_round(proj, pool, _cfg())
        # roll the round back to `status`, as a run killed right after that step leaves it
        with proj._transaction() as conn:
            conn.execute("UPDATE rounds SET status = ? WHERE n = 1", (status,))
            if status == "started":
                conn.execute("DELETE FROM scores")
                conn.execute("DELETE FROM picks")
        resumed = select_round(proj, pool, _cfg())
        assert resumed.resumed_from == status
        assert [p.id for p in resumed.picks] == ref_ids == [p.id for p in res.picks]
        assert resumed.round.status == "picked"


def test_unfinished_round_with_other_options(
    loop_pool: tuple[VolumePool, pd.DataFrame], tmp_path: Path
) -> None:
    pool, _ = loop_pool
    proj = Project(tmp_path / "proj")
    select_round(proj, pool, _cfg(cold_start="random"))
    with proj._transaction() as conn:
        conn.execute("UPDATE rounds SET status = 'trained' WHERE n = 1")
    with pytest.raises(ConfigError) as err:
        select_round(proj, pool, _cfg(cold_start="random", budget=5))
    assert str(err.value) == (
        f"round 1 of {tmp_path / 'proj'} is unfinished (trained) and was started with "
        "budget=6; re-run with the same options to resume it, or pass --restart to discard it"
    )
    res = select_round(proj, pool, _cfg(cold_start="random", budget=5), restart=True)
    assert res.round.n == 1 and len(res.picks) == 5


def test_budget_larger_than_unlabelled(
    loop_pool: tuple[VolumePool, pd.DataFrame], tmp_path: Path
) -> None:
    pool, _ = loop_pool
    proj = Project(tmp_path / "proj")
    with pytest.raises(PoolExhaustedError) as err:
        select_round(proj, pool, _cfg(budget=len(pool) + 1))
    assert str(err.value) == (
        f"budget {len(pool) + 1} exceeds the {len(pool)} unlabelled volumes left in the pool "
        f"of {len(pool)} (0 labelled); lower --budget or add volumes"
    )
    assert proj.rounds() == []  # nothing recorded


def test_score_only_checks_box(loop_pool: tuple[VolumePool, pd.DataFrame], tmp_path: Path) -> None:
    pool, _ = loop_pool
    wrong = models.create("cb3d", 3, (1, 24, 24, 24), channels=(4,))
    models.save_checkpoint(tmp_path / "m24.pt", wrong, class_names=["a", "b", "c"], voxel_size=10.0)
    proj = Project(tmp_path / "proj")
    with pytest.raises(CheckpointError) as err:
        select_round(proj, pool, _cfg(model=str(tmp_path / "m24.pt")))
    assert str(err.value) == (
        f"{tmp_path / 'm24.pt'}: model 'cb3d' was trained on boxes of 24×24×24 voxels but the "
        "volumes are 16×16×16; crop/pad or resample them to the training box, or train a new model"
    )
    good = models.create("cb3d", 3, (1, 16, 16, 16), channels=(4,))
    models.save_checkpoint(tmp_path / "m16.pt", good, class_names=["a", "b", "c"], voxel_size=10.0)
    proj.discard_round(1)
    res = select_round(proj, pool, _cfg(model=str(tmp_path / "m16.pt"), strategy="entropy"))
    assert res.round.mode == "score" and len(res.picks) == 6
    assert (tmp_path / "proj" / "models" / "round-001.pt").read_bytes() == (
        tmp_path / "m16.pt"
    ).read_bytes()
    assert {p.predicted for p in res.picks} <= {"a", "b", "c"}


def test_volume_vanishing_mid_run(sim_pool: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    root, _ = sim_pool
    pool = VolumePool.from_directory(root)
    proj = Project(tmp_path / "proj")
    select_round(proj, pool, _cfg())
    with proj._transaction() as conn:  # as if killed after training
        conn.execute("UPDATE rounds SET status = 'trained' WHERE n = 1")
    victim = pool.ids[5]
    os.remove(root / victim)
    with pytest.raises(InvalidVolumeError) as err:
        _score(proj, _Guarded(pool, 1), proj.get_round(1), _cfg())
    msg = str(err.value)
    assert msg.startswith(
        f"volume {victim} ({root / victim}) vanished or became unreadable during round 1:"
    )
    assert msg.endswith(
        "Restore it and re-run the same command; the round resumes from its last finished step"
    )
    assert proj.get_round(1).status == "trained"  # nothing half-written
    # the next run notices the missing file before doing any work
    with pytest.raises(
        ProjectError, match=rf"registered in project .* are missing .*first: {victim}"
    ):
        select_round(proj, VolumePool.from_directory(root), _cfg())


def test_single_class_labels_cannot_train(
    loop_pool: tuple[VolumePool, pd.DataFrame], tmp_path: Path
) -> None:
    pool, _ = loop_pool
    proj = Project(tmp_path / "proj")
    from cryoal.active.loop import register_pool

    register_pool(proj, pool)
    proj.add_labels({pool.ids[0]: "ball", pool.ids[1]: "ball"})
    with pytest.raises(
        ConfigError,
        match=r"training needs labels of at least two classes; the project has 2 label\(s\) of 1 class\(es\) \(ball\)",
    ):
        select_round(proj, pool, _cfg())


def test_simulated_loop_with_oracle_and_resume(
    loop_pool: tuple[VolumePool, pd.DataFrame], tmp_path: Path
) -> None:
    pool, truth = loop_pool
    oracle = Oracle(_truth(truth))
    test = pool.with_labels(truth).dataset(class_names=sorted(set(truth["label"])))
    classes = sorted(set(truth["label"]))
    cfg = _cfg(cold_start="random")
    proj = Project(tmp_path / "proj")
    hist = run(
        proj, oracle, "entropy", 2, 6, pool=pool, config=cfg, test_set=test, test_classes=classes
    )
    assert [(h["round"], h["mode"], h["n_labels"]) for h in hist] == [
        (1, "cold", 0),
        (2, "train", 6),
    ]
    assert 0.0 <= hist[1]["test_accuracy"] <= 1.0
    assert proj.get_round(2).metrics["test_accuracy"] == hist[1]["test_accuracy"]
    labels = proj.labels()
    assert len(labels) == 12 and {r.source for r in labels} == {"oracle"}
    assert all(r.label == oracle.truth[r.id] for r in labels)
    assert [r.round for r in labels].count(2) == 6
    # one more round continues the project
    more = run(proj, oracle, "entropy", 1, 6, pool=pool, config=cfg)
    assert [h["round"] for h in more] == [3] and more[0]["n_labels"] == 12
    with pytest.raises(ConfigError, match="rounds must be >= 1, got 0"):
        run(proj, oracle, "entropy", 0, 6, pool=pool, config=cfg)


def test_noisy_oracle_labels_recorded(
    loop_pool: tuple[VolumePool, pd.DataFrame], tmp_path: Path
) -> None:
    pool, truth = loop_pool
    oracle = Oracle(_truth(truth), noise=0.5, seed=1)
    proj = Project(tmp_path / "proj")
    run(proj, oracle, "entropy", 1, 12, pool=pool, config=_cfg(cold_start="random"))
    got = proj.label_map()
    assert got == oracle.label(list(got))
    assert any(got[k] != oracle.truth[k] for k in got)


def test_select_config_validation() -> None:
    with pytest.raises(ConfigError, match="budget must be a positive integer, got 0"):
        SelectConfig(budget=0)
    with pytest.raises(
        ConfigError,
        match="cold_start must be 'auto', 'typicality', 'coreset' or 'random', got 'kmeans'",
    ):
        SelectConfig(cold_start="kmeans")
    key = dataclasses.replace(SelectConfig(), model="x.pt").resume_key()
    assert Path(key["model"]).is_absolute()


def test_warm_start_uses_previous_round_model(
    loop_pool: tuple[VolumePool, pd.DataFrame], tmp_path: Path
) -> None:
    pool, truth = loop_pool
    oracle = Oracle(_truth(truth))
    proj = Project(tmp_path / "proj")
    cfg = _cfg(cold_start="random", warm_start=True, budget=9)
    run(proj, oracle, "entropy", 3, 9, pool=pool, config=cfg)
    r2, r3 = proj.get_round(2), proj.get_round(3)
    assert r2.metrics["warm_start"] is None  # no earlier trained round
    if r3.metrics["classes"] == r2.metrics["classes"]:
        assert r3.metrics["warm_start"] == str(tmp_path / "proj" / "models" / "round-002.pt")
    else:  # a class appeared: the head changes shape, so round 3 trains from scratch
        assert r3.metrics["warm_start"] is None


def test_train_batch_size_shrinks_for_few_labels() -> None:
    from cryoal.active.loop import train_batch_size

    assert [train_batch_size(16, n) for n in (2, 6, 12, 24, 48, 64, 1000)] == [
        4,
        4,
        4,
        6,
        12,
        16,
        16,
    ]
    assert train_batch_size(2, 100) == 2


def test_kill_point_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    # unset or another point: a no-op
    monkeypatch.delenv("CRYOAL_TEST_KILL_AT", raising=False)
    for name in KILL_POINTS:
        kill_point(name)
    monkeypatch.setenv("CRYOAL_TEST_KILL_AT", "picked")
    kill_point("scored")
    # a typo in a caller would make the hook unreachable: refused
    with pytest.raises(ConfigError, match="unknown kill point 'scord'"):
        kill_point("scord")
    # the named point: the process dies by SIGKILL, before the next statement
    code = "from cryoal.active.loop import kill_point; kill_point('scored'); print('alive')"
    env = {**os.environ, "CRYOAL_TEST_KILL_AT": "scored"}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL
    assert "alive" not in proc.stdout
    assert "CRYOAL_TEST_KILL_AT=scored" in proc.stderr

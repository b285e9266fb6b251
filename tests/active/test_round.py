"""The one round engine (cryoal/active/round.py) with a task's own steps on a real project."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cryoal import tasks
from cryoal.active.project import PickRecord, PoolEntry, Project, RoundRecord
from cryoal.active.round import run_round
from cryoal.errors import ConfigError

IDS = [f"v{i}.mrc" for i in range(6)]


class CountingSteps:
    """A minimal task round: picks the first ``budget`` unlabelled ids, records each call."""

    def __init__(self, budget: int = 2, fail_at: str | None = None) -> None:
        self.budget = budget
        self.fail_at = fail_at
        self.calls: list[str] = []
        self.marks: list[bool] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail_at:
            raise RuntimeError(f"stopped at {name}")

    def prepare(self, project: Project, pool: Any) -> None:
        self._call("prepare")
        entries = [PoolEntry(v, v, (4, 4, 4), "0" * 40) for v in IDS]
        project.register_pool(entries, root=project.path, voxel_size=1.0)

    def resume_key(self) -> dict[str, Any]:
        self.calls.append("resume_key")
        return {"budget": self.budget}

    def unchanged(self, project: Project, rnd: RoundRecord) -> bool:
        self.calls.append("unchanged")
        return True

    def start(
        self, project: Project, pool: Any, arguments: Mapping[str, Any] | None
    ) -> RoundRecord:
        self._call("start")
        return project.start_round(
            strategy="first",
            budget=self.budget,
            seed=0,
            mode="cold",
            config={"resume_key": {"budget": self.budget}},
        )

    def train(self, project: Project, pool: Any, rnd: RoundRecord) -> None:
        self._call("train")
        project.mark_trained(rnd.n, None, {"n": 0})

    def score(self, project: Project, pool: Any, rnd: RoundRecord) -> None:
        self._call("score")
        rows = [(v, float(-i), None, None) for i, v in enumerate(IDS)]
        project.record_scores(
            rnd.n, rows, [(v, float(-i)) for i, v in enumerate(IDS[: rnd.budget])]
        )

    def write(
        self,
        project: Project,
        pool: Any,
        rnd: RoundRecord,
        arguments: Mapping[str, Any] | None,
        *,
        out: str | Path | None,
        mark: bool,
    ) -> dict[str, Path]:
        self._call("write")
        self.marks.append(mark)
        return {"csv": project.picks_path(rnd.n, ".csv")}

    def table(
        self, project: Project, pool: Any, rnd: RoundRecord, picks: Sequence[PickRecord]
    ) -> pd.DataFrame:
        self.calls.append("table")
        return pd.DataFrame({"id": [p.id for p in picks], "rank": [p.rank for p in picks]})


def test_fresh_round_runs_every_step_once_and_records_times(tmp_path: Path) -> None:
    steps = CountingSteps()
    with Project(tmp_path / "p") as project:
        res = run_round(project, None, steps)
        assert steps.calls == ["prepare", "resume_key", "start", "train", "score", "write", "table"]
        assert res.round.status == "picked" and res.resumed_from is None and not res.reused
        assert [p.id for p in res.picks] == ["v0.mrc", "v1.mrc"]
        assert res.table["id"].tolist() == ["v0.mrc", "v1.mrc"]
        seconds = res.round.metrics["step_seconds"]
        assert {"register", "train", "score", "write"} <= set(seconds)
        assert all(len(v) == 2 and v[0] >= 0 and v[1] >= 0 for v in seconds.values())


def test_finished_round_is_shown_again_while_unchanged(tmp_path: Path) -> None:
    with Project(tmp_path / "p") as project:
        run_round(project, None, CountingSteps())
        again = CountingSteps()
        res = run_round(project, None, again)
        assert res.reused and res.round.n == 1
        assert again.calls == ["prepare", "resume_key", "unchanged", "write", "table"]
        assert again.marks == [False]  # files already there are kept
        nxt = run_round(project, None, CountingSteps(), new_round=True)
        assert nxt.round.n == 2 and not nxt.reused
        assert [p.id for p in nxt.picks] == ["v0.mrc", "v1.mrc"]


def test_interrupted_round_resumes_from_its_last_step(tmp_path: Path) -> None:
    with Project(tmp_path / "p") as project:
        with pytest.raises(RuntimeError, match="stopped at score"):
            run_round(project, None, CountingSteps(fail_at="score"))
        assert project.get_round(1).status == "trained"
        resumed = CountingSteps()
        res = run_round(project, None, resumed)
        assert res.resumed_from == "trained" and res.round.status == "picked"
        assert resumed.calls == ["prepare", "resume_key", "score", "write", "table"]
        with pytest.raises(RuntimeError, match="stopped at write"):
            run_round(project, None, CountingSteps(fail_at="write"), new_round=True)
        assert project.get_round(2).status == "scored"
        other = CountingSteps(budget=3)
        with pytest.raises(ConfigError, match=r"round 2 .* is unfinished \(scored\).*budget=2"):
            run_round(project, None, other)
        res = run_round(project, None, CountingSteps(budget=3), restart=True)
        assert res.round.n == 2 and len(res.picks) == 3


def test_every_task_gives_the_engine_its_steps() -> None:
    for name in tasks.available():
        task = tasks.get(name)
        steps = task.round_steps(task.select_config(budget=3))
        for hook in ("prepare", "resume_key", "unchanged", "start", "train", "score", "write"):
            assert callable(getattr(steps, hook)), (name, hook)
        assert steps.resume_key()["budget"] == 3
    seg = tasks.get("segmentation").select_config()
    assert seg.arch == "monai-unet"
    assert tasks.get("image2d").select_config().arch == "cnn2d"
    with pytest.raises(ConfigError, match="bad round options for task segmentation"):
        tasks.get("segmentation").select_config(cold_start="random")

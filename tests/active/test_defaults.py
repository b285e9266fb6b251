"""cryoal.active.defaults: what ``auto`` pretraining and no ``--arch`` mean for a project."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cryoal.active import Project
from cryoal.active.defaults import DEFAULT_ARCH, recorded_arch, resolve_pretraining
from cryoal.active.select_config import SelectConfig
from cryoal.errors import ConfigError


@dataclasses.dataclass
class Sized:
    """Pool stand-in: resolve_pretraining reads only ``len`` and ``box``."""

    n: int
    box: tuple[int, ...]

    def __len__(self) -> int:
        return self.n


def test_new_project_gets_the_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRYOAL_PRETRAIN_CPU_GFLOP", raising=False)
    cfg = SelectConfig(arch=DEFAULT_ARCH, device="cpu", pretrain_epochs="auto")
    with Project(tmp_path / "p") as project:
        assert recorded_arch(project) is None
        out, msg = resolve_pretraining(project, Sized(1000, (32, 32, 32)), cfg)
    assert (out.pretrain_epochs, out.pretrain_steps) == (5, 126)
    assert out.resume_key()["pretrain_steps"] == 126 and out.resume_key()["pretrain_epochs"] == 5
    assert msg is not None and msg.startswith("pretraining (auto): 126 steps of 32 volumes")
    with Project(tmp_path / "q") as project:
        img, msg2 = resolve_pretraining(project, Sized(1000, (28, 28)), cfg)
    assert (img.pretrain_epochs, img.pretrain_steps) == (0, 0)
    assert msg2 is not None and "off for 2D images" in msg2
    explicit = dataclasses.replace(cfg, pretrain_epochs=4)
    with Project(tmp_path / "r") as project:
        assert resolve_pretraining(project, Sized(1000, (32,) * 3), explicit) == (explicit, None)


def test_a_project_keeps_what_its_latest_round_recorded(tmp_path: Path) -> None:
    cfg = SelectConfig(arch=DEFAULT_ARCH, device="cpu", pretrain_epochs="auto")
    with Project(tmp_path / "p") as project:
        old = {"select_config": {"arch": "dsrf3d", "pretrain_epochs": 0}}  # before auto
        project.start_round(strategy="auto", budget=4, seed=0, mode="cold", config=old)
        assert recorded_arch(project) == "dsrf3d"
        out, msg = resolve_pretraining(project, Sized(1000, (32, 32, 32)), cfg)
        assert (out.pretrain_epochs, out.pretrain_steps) == (0, 0)
        assert (
            "pretrain_epochs" not in out.resume_key() and "pretrain_steps" not in out.resume_key()
        )
        assert msg == (
            "pretraining: off, as in round 1 of this project; pass --pretrain-epochs N to start"
        )
    with Project(tmp_path / "q") as project:
        rec = {"select_config": {"arch": "cb3d", "pretrain_epochs": 3, "pretrain_steps": 15}}
        project.start_round(strategy="auto", budget=4, seed=0, mode="cold", config=rec)
        out, msg = resolve_pretraining(project, Sized(10, (16, 16, 16)), cfg)
        assert (out.pretrain_epochs, out.pretrain_steps) == (3, 15)
        assert msg == "pretraining: 15 steps, as in round 1 of this project (encoder cached)"
    with Project(tmp_path / "s") as project:  # a round recorded without an arch: the old default
        project.start_round(strategy="auto", budget=4, seed=0, mode="cold", config={})
        assert recorded_arch(project) == "dsrf3d"


def test_select_config_checks_pretrain_epochs() -> None:
    for bad in ("soon", -1, True, 1.5):
        with pytest.raises(ConfigError, match="pretrain_epochs must be 'auto' or an integer >= 0"):
            SelectConfig(pretrain_epochs=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="pretrain_steps must be >= 0"):
        SelectConfig(pretrain_steps=-1)
    assert "pretrain_steps" not in SelectConfig(pretrain_epochs=2).resume_key()

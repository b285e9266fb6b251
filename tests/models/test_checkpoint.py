"""Checkpoints: metadata round trip, weights-only loading, atomic writes, clear errors."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from cryoal import models
from cryoal._version import __version__
from cryoal.errors import CheckpointError


@pytest.fixture
def saved(tmp_path: Path, seeded: None) -> tuple[Path, models.Classifier]:
    model = models.create("cb3d", 3, (1, 16, 16, 16), dropout=0.2).eval()
    path = models.save_checkpoint(
        tmp_path / "run" / "model.pt",
        model,
        class_names=["ribosome", "proteasome", "empty"],
        voxel_size=13.48,
        train_config={
            "epochs": 5,
            "lr": 3e-3,
            "device": torch.device("cpu"),
            "init": Path("/x.pt"),
        },
        metrics={"accuracy": 0.875, "confusion_matrix": [[1, 0], [0, 1]]},
        seed=7,
        round=2,
    )
    return path, model


def test_metadata_round_trip(saved: tuple[Path, models.Classifier]) -> None:
    path, model = saved
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["model.pt"]
    loaded, info = models.load_checkpoint(path)
    assert info.arch == models.ArchSpec("cb3d", 3, (1, 16, 16, 16), {"dropout": 0.2})
    assert info.class_names == ["ribosome", "proteasome", "empty"]
    assert info.voxel_size == 13.48 and info.box == (16, 16, 16)
    assert info.normalization == "zscore"
    assert info.train_config == {"epochs": 5, "lr": 3e-3, "device": "cpu", "init": "/x.pt"}
    assert info.metrics == {"accuracy": 0.875, "confusion_matrix": [[1, 0], [0, 1]]}
    assert info.extra == {"seed": 7, "round": 2}
    assert info.cryoal_version == __version__ and info.created.endswith("+00:00")
    assert info.path == path
    json.dumps(info.train_config)  # plain values only
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, rtol=0, atol=0)


def test_file_loads_with_weights_only(saved: tuple[Path, models.Classifier]) -> None:
    payload = torch.load(saved[0], weights_only=True)
    assert payload["format"] == "cryoal-checkpoint" and payload["format_version"] == 1
    assert payload["arch"]["name"] == "cb3d"


def test_load_to_device_and_eval_mode(saved: tuple[Path, models.Classifier]) -> None:
    model, _ = models.load_checkpoint(saved[0], device="cpu")
    assert not model.training
    assert next(model.parameters()).device.type == "cpu"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"checkpoint not found: .*nope\.pt"):
        models.load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file(saved: tuple[Path, models.Classifier]) -> None:
    path = saved[0]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        CheckpointError,
        match=r"model\.pt: not a readable cryoal checkpoint \(.*\); the file is corrupt, truncated "
        r"or was not written by cryoal\.save_checkpoint — re-train or copy it again",
    ):
        models.load_checkpoint(path)


def test_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(os.urandom(300))
    with pytest.raises(CheckpointError, match=r"junk\.pt: not a readable cryoal checkpoint"):
        models.load_checkpoint(path)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.pt"
    torch.save(
        {"format": "cryoal-checkpoint", "obj": _Evil()},
        path,
        pickle_protocol=pickle.HIGHEST_PROTOCOL,
    )
    with pytest.raises(CheckpointError, match=r"evil\.pt: not a readable cryoal checkpoint"):
        models.load_checkpoint(path)
    assert "pwned" not in capsys.readouterr().out


def test_foreign_torch_file(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(
        CheckpointError,
        match=r"plain\.pt: not a cryoal checkpoint \(missing format tag 'cryoal-checkpoint'\)",
    ):
        models.load_checkpoint(path)


def _rewrite(path: Path, edit: object) -> None:
    payload = torch.load(path, weights_only=True)
    edit(payload)  # type: ignore[operator]
    torch.save(payload, path)


def test_unknown_architecture(saved: tuple[Path, models.Classifier]) -> None:
    path = saved[0]
    _rewrite(path, lambda p: p["arch"].update(name="transformer9000"))
    with pytest.raises(
        CheckpointError,
        match=r"model\.pt: unknown model architecture 'transformer9000' \(this cryoal knows: cb3d, .*\); "
        r"was it written by a newer or patched cryoal\?",
    ):
        models.load_checkpoint(path)


def test_newer_format_version(saved: tuple[Path, models.Classifier]) -> None:
    path = saved[0]
    _rewrite(path, lambda p: p.update(format_version=99))
    with pytest.raises(
        CheckpointError,
        match=r"format version 99 is newer than this cryoal .* reads \(≤ 1\); upgrade cryoal",
    ):
        models.load_checkpoint(path)


def test_weights_that_do_not_fit(saved: tuple[Path, models.Classifier]) -> None:
    path = saved[0]
    _rewrite(path, lambda p: p["arch"].update(num_classes=5))
    with pytest.raises(
        CheckpointError,
        match=r"weights do not fit architecture 'cb3d' with in_shape \(1, 16, 16, 16\)",
    ):
        models.load_checkpoint(path)


def test_check_compatible(saved: tuple[Path, models.Classifier]) -> None:
    _, info = models.load_checkpoint(saved[0])
    models.check_compatible(info, (16, 16, 16), 13.48)
    models.check_compatible(info, (16, 16, 16), 13.5)  # within 1 %
    models.check_compatible(info, (16, 16, 16), None)
    models.check_compatible(info, (16, 16, 16), 20.0, voxel_size_rtol=None)
    with pytest.raises(
        CheckpointError,
        match=r"model\.pt: model 'cb3d' was trained on boxes of 16×16×16 voxels but the volumes "
        r"are 32×32×32; crop/pad or resample them to the training box, or train a new model",
    ):
        models.check_compatible(info, (32, 32, 32), 13.48)
    with pytest.raises(
        CheckpointError,
        match=r"model was trained at 13\.48 Å/voxel but the volumes are 10 Å/voxel; resample them to 13\.48 Å",
    ):
        models.check_compatible(info, (16, 16, 16), 10.0)


def test_save_refuses_foreign_models_and_wrong_class_names(tmp_path: Path) -> None:
    with pytest.raises(
        CheckpointError, match=r"not built by cryoal\.models\.create \(no arch_spec\)"
    ):
        models.save_checkpoint(tmp_path / "m.pt", models.CB3D(2, (1, 16, 16, 16)))  # type: ignore[arg-type]
    model = models.create("cb3d", 2, (1, 16, 16, 16))
    with pytest.raises(
        CheckpointError, match=r"class_names has 3 entries but the model has 2 classes"
    ):
        models.save_checkpoint(tmp_path / "m.pt", model, class_names=["a", "b", "c"])
    assert not list(tmp_path.iterdir())


def test_overwrite_is_atomic(saved: tuple[Path, models.Classifier]) -> None:
    path, model = saved
    models.save_checkpoint(path, model, class_names=["x", "y", "z"])
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.pt"]
    assert models.load_checkpoint(path)[1].class_names == ["x", "y", "z"]

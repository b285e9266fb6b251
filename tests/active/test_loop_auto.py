"""The loop with the defaults of issue 12: auto strategy, typicality cold start, pretrained encoder."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from cryoal.active import Oracle, Project
from cryoal.active.loop import SelectConfig, select_round
from cryoal.io import VolumePool, read_table
from cryoal.pretrain import ENCODER_FILE, load_encoder

FAST = {
    "arch": "cb3d",
    "arch_kwargs": {"channels": (4, 8)},
    "epochs": 2,
    "train_batch_size": 8,
    "batch_size": 16,
    "device": "cpu",
    "progress": False,
    "gallery_size": 0,
    "budget": 6,
}


def test_auto_defaults_with_pretrained_encoder(
    sim_pool: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    root, truth = sim_pool
    pool = VolumePool.from_directory(root)
    cfg = SelectConfig(**FAST, pretrain_epochs=1)  # type: ignore[arg-type]
    assert (cfg.strategy, cfg.cold_start) == ("auto", "auto")
    with Project(tmp_path / "proj") as proj:
        first = select_round(proj, pool, cfg)
        rnd = first.round
        assert (rnd.mode, rnd.strategy) == ("cold", "auto")
        assert rnd.metrics["encoder"] == str(ENCODER_FILE)
        assert rnd.metrics["selection"]["choice"] == "typicality"
        # the cold model is the encoder (all but the head)
        enc, _ = load_encoder(proj.path / ENCODER_FILE)
        from cryoal import models

        cold, _ = models.load_checkpoint(proj.path / "models" / "round-001.pt")
        torch.testing.assert_close(cold.body[0][0].weight, enc.body[0][0].weight)
        table = read_table(first.files["csv"])
        assert (table["strategy"] == "auto").all() and (
            table["strategy_choice"] == "typicality"
        ).all()
        assert table["strategy_reason"].str.startswith("no labels yet").all()
        recorded = json.loads(first.files["config"].read_text())["arguments"]
        assert recorded["selection"]["choice"] == "typicality" and recorded["encoder"] == str(
            ENCODER_FILE
        )
        oracle = Oracle(dict(zip(truth["id"], truth["label"], strict=True)))
        proj.add_labels(oracle.label([p.id for p in first.picks]), source="oracle", where="test")
        stamp = (proj.path / ENCODER_FILE).stat().st_mtime_ns
        second = select_round(proj, pool, cfg)
        assert second.round.mode == "train" and second.round.metrics["selection"]["labels"] == 6
        assert (proj.path / ENCODER_FILE).stat().st_mtime_ns == stamp  # cached, not retrained
        assert not {p.id for p in second.picks} & {p.id for p in first.picks}
        # the encoder's pool embedding was cached by round 1 and read back by round 2
        cache = proj.path / "models" / "encoder-embedding.pt"
        assert cache.is_file() and "embed" not in second.round.metrics["step_seconds"]
        assert "embed" in rnd.metrics["step_seconds"]
        stored = torch.load(cache, weights_only=True)["embedding"]
        from cryoal.acquisition._cluster import embed_pool
        from cryoal.acquisition.typicality import Typicality
        from cryoal.active.loop import _normalize_batch

        ref = Typicality(progress=False, device="cpu", batch_size=16, transform=_normalize_batch)
        want = embed_pool(enc, pool, torch.arange(len(pool)), strategy=ref, name="t")
        torch.testing.assert_close(stored, want)

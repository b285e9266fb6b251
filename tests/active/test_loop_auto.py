"""The loop with the defaults of issue 12: auto strategy, typicality cold start, pretrained encoder."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch
from round_options import TINY_ROUND

from cryoal.active import Oracle, Project, ProjectLayout
from cryoal.active.loop import SelectConfig, register_pool, select_round
from cryoal.io import VolumePool, read_table
from cryoal.pretrain import load_encoder

FAST = {
    **TINY_ROUND,
    "epochs": 2,
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
        assert rnd.metrics["encoder"] == str(ProjectLayout.ENCODER)
        assert rnd.metrics["selection"]["choice"] == "typicality"
        # the cold model is the encoder (all but the head)
        enc, _ = load_encoder(proj.path / ProjectLayout.ENCODER)
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
            ProjectLayout.ENCODER
        )
        oracle = Oracle(dict(zip(truth["id"], truth["label"], strict=True)))
        proj.add_labels(oracle.label([p.id for p in first.picks]), source="oracle", where="test")
        stamp = (proj.path / ProjectLayout.ENCODER).stat().st_mtime_ns
        second = select_round(proj, pool, cfg)
        assert second.round.mode == "train" and second.round.metrics["selection"]["labels"] == 6
        assert (
            proj.path / ProjectLayout.ENCODER
        ).stat().st_mtime_ns == stamp  # cached, not retrained
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


def test_auto_diverse_round_balances_over_the_rounds_predictions(
    sim_pool: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    from cryoal.acquisition.diverse import class_quotas

    root, truth = sim_pool
    pool = VolumePool.from_directory(root)
    labelled = truth.iloc[:30]  # 10 per class over 3 classes: auto's diverse regime
    cfg = SelectConfig(**{**FAST, "budget": 3}, pretrain_epochs=0)  # type: ignore[arg-type]
    with Project(tmp_path / "proj") as proj:
        register_pool(proj, pool)
        proj.add_labels(list(zip(labelled["id"], labelled["label"], strict=True)), source="oracle")
        res = select_round(proj, pool, cfg)
        assert res.round.metrics["selection"]["choice"] == "diverse-entropy-gradnorm"
        scores = proj.scores(res.round.n)
        pred = {r["id"]: r["predicted"] for r in scores}
        assert len(pred) == 6 and all(pred.values())  # the round predicted every unlabelled item
        picked = pd.Series([pred[p.id] for p in res.picks]).value_counts()
        available = pd.Series(list(pred.values())).value_counts()
        want = class_quotas(torch.tensor(available.to_numpy()), 3)
        # the picks follow the quotas of the round's own predictions (order-free comparison)
        assert sorted(picked.reindex(available.index, fill_value=0).tolist()) == sorted(
            want.tolist()
        )
        assert [p.predicted for p in res.picks] == [pred[p.id] for p in res.picks]
        names = sorted(truth["label"].unique())  # class index -> name (sorted label names)
        quotas = res.round.metrics["selection"]["quotas"]
        assert {names[int(k)]: v for k, v in quotas.items()} == {
            c: int(picked.get(c, 0)) for c in available.index
        }

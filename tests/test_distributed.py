"""cryoal.distributed: sharding, merging, and real 2-process gloo runs (torchrun on CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from cryoal import acquisition, distributed
from cryoal.acquisition import select_topk
from cryoal.errors import ConfigError
from cryoal.io import VolumePool, write_volume
from cryoal.transforms import normalize

sys.path.insert(0, str(Path(__file__).parent))
import _dist_worker as worker

WORKER = Path(__file__).parent / "_dist_worker.py"


# ----------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize("mode", ["contiguous", "strided"])
@pytest.mark.parametrize(("n", "world"), [(0, 2), (1, 3), (10, 3), (37, 2), (37, 4), (5, 8)])
def test_shards_are_disjoint_cover_and_balanced(n: int, world: int, mode: str) -> None:
    shards = [distributed.shard_indices(n, r, world, mode=mode) for r in range(world)]  # type: ignore[arg-type]
    allidx = torch.cat(shards)
    assert sorted(allidx.tolist()) == list(range(n))
    sizes = [s.numel() for s in shards]
    assert max(sizes) - min(sizes) <= 1
    again = [distributed.shard_indices(n, r, world, mode=mode) for r in range(world)]  # type: ignore[arg-type]
    assert all(torch.equal(a, b) for a, b in zip(shards, again, strict=True))


def test_contiguous_and_strided_layouts() -> None:
    assert distributed.shard_indices(10, 0, 3).tolist() == [0, 1, 2, 3]
    assert distributed.shard_indices(10, 1, 3).tolist() == [4, 5, 6]
    assert distributed.shard_indices(10, 2, 3).tolist() == [7, 8, 9]
    assert distributed.shard_indices(10, 1, 3, mode="strided").tolist() == [1, 4, 7]
    given = torch.tensor([9, 4, 7, 1, 3])
    assert distributed.shard_indices(given, 0, 2).tolist() == [9, 4, 7]
    assert distributed.shard_indices(given, 1, 2).tolist() == [1, 3]


def test_shard_errors() -> None:
    with pytest.raises(ConfigError, match="rank 2 is outside a world of 2 processes"):
        distributed.shard_indices(10, 2, 2)
    with pytest.raises(ConfigError, match="shard mode must be"):
        distributed.shard_indices(10, 0, 2, mode="blocks")  # type: ignore[arg-type]


def test_rank_scores_matches_select_topk_with_ties_and_nan() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (200,), generator=g).float()
    scores[::17] = float("nan")
    perm = torch.randperm(200, generator=g)  # shards arrive in any order
    idx, sc = distributed.rank_scores(perm, scores[perm])
    assert idx.tolist() == select_topk(scores, 200).tolist()
    top, _ = distributed.rank_scores(perm, scores[perm], k=25)
    assert top.tolist() == select_topk(scores, 25).tolist()
    assert torch.equal(sc[: 200 - 12], scores[idx][: 200 - 12])


def test_sharded_sampler_splits_one_shared_sequence() -> None:
    from torch.utils.data import WeightedRandomSampler

    def base() -> WeightedRandomSampler:
        g = torch.Generator().manual_seed(7)
        return WeightedRandomSampler([1.0, 2.0, 3.0, 4.0, 5.0], 11, generator=g)

    full = list(base())
    shares = [list(distributed.ShardedSampler(base(), r, 3)) for r in range(3)]
    assert [len(s) for s in shares] == [4, 4, 4]  # padded to equal steps
    padded = full + full[:1]
    assert [padded[r::3] for r in range(3)] == shares


def test_single_process_fallbacks() -> None:
    info = distributed.current()
    assert (info.rank, info.world_size, info.backend) == (0, 1, "none")
    idx, sc = distributed.gather_scores(
        torch.tensor([3, 1, 2]), torch.tensor([0.5, 0.9, 0.9], dtype=torch.float64)
    )
    assert idx.tolist() == [1, 2, 3]
    assert sc.tolist() == [0.9, 0.9, 0.5]
    assert distributed.shard_indices(5).tolist() == [0, 1, 2, 3, 4]
    assert distributed.run_everywhere(max, 3, 7) == 7


def test_sharded_score_refuses_batch_strategies(tmp_path: Path) -> None:
    ds = TensorDataset(torch.randn(6, 1, 16, 16, 16))
    with pytest.raises(ConfigError, match="'coreset' selects a batch jointly"):
        acquisition.sharded_score(acquisition.get("coreset"), worker.tiny_model(), ds)
    assert not hasattr(distributed, "sharded_select")  # strategies live in acquisition


def test_init_without_torchrun_is_single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    assert not distributed.in_torchrun()
    with distributed.session(device="cpu") as info:
        assert not info.distributed


# ----------------------------------------------------------------------------- real gloo runs


def torchrun(task: str, data: Path, out: Path, nproc: int = 2) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc-per-node={nproc}", str(WORKER), task, str(data), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def volumes_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("distpool")
    rng = np.random.default_rng(0)
    for i in range(37):  # odd size: uneven shards
        vol = rng.standard_normal((16, 16, 16)).astype(np.float32) * (1 + i % 4)
        write_volume(root / f"v{i:03d}.mrc", vol, 4.0)
    return root


@pytest.fixture(scope="module")
def gloo_run(volumes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One torchrun launch (2 gloo ranks) doing every task; each rank saves its results."""
    out = tmp_path_factory.mktemp("gloo")
    torchrun("score,ddp-shuffled,ddp-balanced", volumes_dir, out)
    return out


@pytest.fixture(scope="module")
def score_results(gloo_run: Path) -> list[dict]:
    return [torch.load(gloo_run / f"score-rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.mark.slow
@pytest.mark.parametrize("name", worker.STRATEGIES)
def test_two_gloo_ranks_pick_what_one_process_picks(
    name: str, volumes_dir: Path, score_results: list[dict]
) -> None:
    pool = VolumePool.from_directory(volumes_dir)
    model = worker.tiny_model()
    strategy = acquisition.get(
        name, device="cpu", batch_size=4, transform=normalize, progress=False, seed=3
    )
    single = strategy.select(model, pool, worker.BUDGET, labelled=worker.LABELLED)
    unl = [i for i in range(len(pool)) if i not in worker.LABELLED]
    single_scores = strategy.score(model, Subset(pool, unl))
    for rank in range(2):
        got = score_results[rank][name]
        # sharded select == single-process select (indices and scores, best first)
        assert got["selection"].indices.tolist() == single.indices.tolist()
        torch.testing.assert_close(got["selection"].scores, single.scores, rtol=1e-5, atol=1e-6)
        assert got["selection"].strategy == name
        # the full merged vector, in pool order, equals one process's (batch numerics aside)
        torch.testing.assert_close(got["scores"], single_scores, rtol=1e-5, atol=1e-6)
        assert got["picks"].tolist() == unl_topk(single_scores, unl)
    assert torch.equal(score_results[0][name]["scores"], score_results[1][name]["scores"])


@pytest.mark.slow
def test_two_gloo_ranks_shard_auto_and_pick_what_one_process_picks(
    volumes_dir: Path, score_results: list[dict]
) -> None:
    pool = VolumePool.from_directory(volumes_dir)
    single = worker.auto().select(
        worker.tiny_model(), pool, worker.BUDGET, labelled=worker.LABELLED
    )
    assert single.info["choice"] == "entropy-gradnorm"
    for rank in range(2):
        got = score_results[rank]["auto"]
        assert got.indices.tolist() == single.indices.tolist()
        torch.testing.assert_close(got.scores, single.scores, rtol=1e-5, atol=1e-6)
        assert got.strategy == "auto" and got.info == single.info


def unl_topk(scores: torch.Tensor, unl: list[int]) -> list[int]:
    return [unl[j] for j in select_topk(scores, worker.BUDGET).tolist()]


@pytest.mark.slow
def test_gather_merges_ties_by_index_and_nan_last(score_results: list[dict]) -> None:
    for rank in range(2):
        idx, sc = score_results[rank]["ties_full"]
        assert idx.tolist() == [1, 2, 5, 9, 4, 7, 0, 8, 6, 3]
        assert sc[:9].tolist() == [3.0, 3.0, 3.0, 3.0, 2.0, 2.0, 1.0, 1.0, 0.5]
        assert torch.isnan(sc[9])
        top, top_sc = score_results[rank]["ties_top4"]
        assert top.tolist() == [1, 2, 5, 9]
        assert top_sc.tolist() == [3.0] * 4


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["shuffled", "balanced"])
def test_ddp_training_gives_the_same_model_on_both_ranks(kind: str, gloo_run: Path) -> None:
    r0, r1 = (torch.load(gloo_run / f"ddp-{kind}-rank{r}.pt") for r in range(2))
    assert r0["final"].keys() == r1["final"].keys()
    for key, value in r0["final"].items():
        assert torch.equal(value, r1["final"][key]), key  # weights and BatchNorm statistics
    moved = [
        k
        for k, v in r0["final"].items()
        if v.is_floating_point() and not torch.equal(v, r0["initial"][k])
    ]
    assert len(moved) > len(r0["final"]) // 2  # it trained
    h0, h1 = r0["history"], r1["history"]
    # each rank drew ceil(40 / 2) = 20 items per epoch; history sums both ranks
    assert h0["samples_seen"] == h1["samples_seen"] == 2 * 2 * 20
    assert h0["train_loss"] == h1["train_loss"]
    assert h0["val_loss"] == h1["val_loss"]
    assert h0["best_epoch"] == h1["best_epoch"]


# ----------------------------------------------------------------------------- cryoal select under torchrun


def _select_args(volumes: Path, project: Path, out: Path, extra: list[str]) -> list[str]:
    return [
        "select",
        "--volumes",
        str(volumes),
        "--project",
        str(project),
        "--out",
        str(out),
        "--budget",
        "6",
        "--device",
        "cpu",
        "--seed",
        "4",
        "--batch-size",
        "4",
        "--no-progress",
        *extra,
    ]


def _cryoal_torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc-per-node={nproc}", "-m", "cryoal.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_select_under_torchrun_writes_the_single_process_picks(
    volumes_dir: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner
    from cryoal.cli.main import cli

    from cryoal.models import save_checkpoint

    ckpt = save_checkpoint(
        tmp_path / "model.pt", worker.tiny_model(), class_names=["a", "b", "c"], voxel_size=4.0
    )
    extra = ["--model", str(ckpt), "--strategy", "expected-gradnorm"]
    single = CliRunner().invoke(
        cli, _select_args(volumes_dir, tmp_path / "p1", tmp_path / "one.csv", extra)
    )
    assert single.exit_code == 0, single.output
    proc = _cryoal_torchrun(_select_args(volumes_dir, tmp_path / "p2", tmp_path / "two.csv", extra))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("round 1: scored with") == 1  # rank 0 alone reports
    one = pd.read_csv(tmp_path / "one.csv")
    two = pd.read_csv(tmp_path / "two.csv")
    assert two["id"].tolist() == one["id"].tolist()
    assert two["rank"].tolist() == list(range(1, 7))
    np.testing.assert_allclose(two["score"], one["score"], rtol=1e-5)
    assert not (tmp_path / "p2" / "picks" / "round-002.csv").exists()


@pytest.mark.slow
def test_select_training_round_under_torchrun_uses_ddp(volumes_dir: Path, tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"id": [f"v{i:03d}.mrc" for i in range(12)], "label": ["x", "y", "z"] * 4}).to_csv(
        labels, index=False
    )
    extra = ["--labels", str(labels), "--arch", "cb3d", "--epochs", "2", "--strategy", "entropy"]
    proc = _cryoal_torchrun(_select_args(volumes_dir, tmp_path / "p", tmp_path / "p.csv", extra))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "round 1: trained on 12 labels" in proc.stdout
    picks = pd.read_csv(tmp_path / "p.csv")
    assert len(picks) == 6
    assert not set(picks["id"]) & {f"v{i:03d}.mrc" for i in range(12)}
    from cryoal.models import load_checkpoint

    _, info = load_checkpoint(tmp_path / "p" / "models" / "round-001.pt")
    assert info.train_config["distributed"] is True


def test_distributed_flag_outside_torchrun_is_one_clear_line(
    volumes_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner
    from cryoal.cli.main import cli

    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    result = CliRunner().invoke(
        cli, _select_args(volumes_dir, tmp_path / "p", tmp_path / "o.csv", ["--distributed"])
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "Error: --distributed needs torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, "
        "MASTER_PORT): launch with `torchrun --nproc-per-node N -m cryoal.cli select ...`"
    )

"""Bookkeeping shared by the noise benchmarks (subtomograms and the secondary tasks).

Both :mod:`cryoal.benchmark.noise` and :mod:`cryoal.benchmark.tasks` run blocks keyed
``(snr, strategy, seed)``, keep finished blocks in ``results.csv`` to resume, simulate
each SNR's data once into ``OUT/data/snr-*`` (:func:`simulated_once`), run each block's
rounds in its own project ``OUT/runs/snr-*/ARM/seed-N`` (:func:`block_dir`) until the
rounds it evaluates are trained and answered (:func:`run_rounds`), with an
:class:`~cryoal.active.Oracle` answering class labels (:func:`benchmark_oracle`,
:func:`label_initial`), score each trained round's checkpoint on the test set
(:func:`classifier_metrics`, :func:`block_rows`), draw the same class-balanced initial labelled
sets, and read their configs from plain dicts. These helpers are that shared part; this
module imports neither engine.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import pandas as pd
import torch

from cryoal._atomic import atomic_write_text
from cryoal.benchmark.report import format_snr
from cryoal.errors import ConfigError

if TYPE_CHECKING:
    from cryoal.active.oracle import Oracle
    from cryoal.active.project import Project, RoundRecord

__all__ = [
    "ConfigViews",
    "BlockKey",
    "all_blocks",
    "append_rows",
    "benchmark_oracle",
    "block_dir",
    "block_rows",
    "check_option_names",
    "config_to_dict",
    "done_blocks",
    "drop_checkpoints",
    "finished_rounds",
    "initial_indices",
    "keep_blocks",
    "label_initial",
    "run_rounds",
    "simulated_once",
    "snr_dir_name",
    "snrs_from_dict",
    "classifier_metrics",
    "trained_rounds",
]

logger = logging.getLogger(__name__)

#: One active-learning run of a benchmark: (SNR, strategy name, seed).
BlockKey = tuple[float, str, int]


class ConfigViews:
    """``from_dict`` / ``replace`` / ``describe`` of a frozen benchmark-config dataclass.

    Subclasses set ``_what`` (the prefix of their error messages) and define
    ``to_dict``.
    """

    _what: ClassVar[str] = "benchmark config"

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every subclass overrides
        raise TypeError(f"{type(self).__name__} must define to_dict")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Inverse of ``to_dict``; unknown keys raise :class:`ConfigError`."""
        check_option_names(cls, data, cls._what)
        return cls(**snrs_from_dict(data))

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied (validated again)."""
        check_option_names(self, changes, self._what)
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def option_notes(self) -> dict[str, str]:
        """Remarks shown beside options in :meth:`describe` (none by default)."""
        return {}

    def describe(self) -> str:
        """Multi-line human-readable listing of every option (printed by the CLI)."""
        notes = self.option_notes()
        return "\n".join(
            f"{k:>18}: {v}" + (f"  ({notes[k]})" if k in notes else "")
            for k, v in self.to_dict().items()
        )


def check_option_names(config_type: Any, names: Iterable[str], what: str) -> None:
    """Raise if ``names`` holds keys that are not fields of the config dataclass.

    Parameters
    ----------
    config_type
        A dataclass type or instance (``NoiseBenchmarkConfig``, ``TaskBenchmarkConfig``).
    names
        Option names given by the user (dict keys, ``replace`` keywords).
    what
        Prefix of the message (``"noise benchmark config"``).

    Raises
    ------
    ConfigError
        ``"<what>: unknown option(s) a, b"`` with the unknown names sorted.
    """
    fields = {f.name for f in dataclasses.fields(config_type)}
    unknown = sorted(set(names) - fields)
    if unknown:
        raise ConfigError(f"{what}: unknown option(s) {', '.join(unknown)}")


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain JSON-able view of a benchmark config (``inf`` SNR as the string ``"inf"``).

    ``snrs`` become floats or ``"inf"``; the tuples ``strategies``, ``seeds``,
    ``classes`` and ``schedule`` (where the config has one) become lists; everything else is :func:`dataclasses.asdict`.
    """
    out = dataclasses.asdict(config)
    out["snrs"] = [format_snr(s) if math.isinf(s) else s for s in config.snrs]
    for key in ("strategies", "seeds", "classes", "schedule"):
        if key in out:
            out[key] = list(out[key])
    return out


def snrs_from_dict(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with ``snrs`` (``"inf"`` or numbers) as a tuple of floats."""
    kw = dict(data)
    if "snrs" in kw:
        kw["snrs"] = tuple(float(s) for s in kw["snrs"])
    return kw


def _keys(results: pd.DataFrame) -> list[BlockKey]:
    return [
        (float(a), str(b), int(c))
        for a, b, c in results[["snr", "strategy", "seed"]].itertuples(index=False)
    ]


def done_blocks(results: pd.DataFrame) -> set[BlockKey]:
    """The ``(snr, strategy, seed)`` blocks that have rows in a results table."""
    return set(_keys(results))


def keep_blocks(results: pd.DataFrame, wanted: Collection[BlockKey]) -> pd.DataFrame:
    """Rows of ``results`` whose ``(snr, strategy, seed)`` is in ``wanted``, reindexed.

    Rows of blocks a config no longer asks for (a dropped strategy, say) stay on disk
    but leave the returned table.
    """
    keep = [key in wanted for key in _keys(results)]
    return results[pd.Series(keep, index=results.index, dtype=bool)].reset_index(drop=True)


def all_blocks(
    snrs: Sequence[float], strategies: Sequence[str], seeds: Sequence[int]
) -> list[BlockKey]:
    """Every block of a config in run order: SNR, then strategy, then seed."""
    return [(snr, s, seed) for snr in snrs for s in strategies for seed in seeds]


def append_rows(
    table: pd.DataFrame, rows: list[dict[str, Any]], columns: Sequence[str]
) -> pd.DataFrame:
    """``table`` with ``rows`` appended (a new frame; ``columns`` order, reindexed).

    An empty ``table`` is replaced by the rows alone, so column dtypes come from the
    values (not from an empty frame's ``object`` columns).
    """
    new = pd.DataFrame(rows, columns=list(columns))
    return new if table.empty else pd.concat([table, new], ignore_index=True)


def initial_indices(labels: Sequence[str], n: int, seed: int) -> list[int]:
    """Class-balanced random initial labelled set, the same for every strategy of a seed.

    Classes (sorted by name) take turns; each draws its next item from its own seeded
    random order, so every class holds ``n // C`` or ``n // C + 1`` items.

    Parameters
    ----------
    labels
        Ground-truth label of every pool item, length N.
    n
        Size of the set (≤ N).
    seed
        Seed of the draw.

    Returns
    -------
    list of int
        ``n`` distinct pool indices, sorted.
    """
    if n > len(labels):
        raise ConfigError(f"initial labelled set of {n} exceeds the pool of {len(labels)}")
    g = torch.Generator().manual_seed(int(seed))
    by_class: dict[str, list[int]] = {}
    for i, lbl in enumerate(labels):
        by_class.setdefault(lbl, []).append(i)
    queues = {
        c: [members[j] for j in torch.randperm(len(members), generator=g).tolist()]
        for c, members in sorted(by_class.items())
    }
    chosen: list[int] = []
    while len(chosen) < n:
        for c in sorted(queues):
            if queues[c] and len(chosen) < n:
                chosen.append(queues[c].pop(0))
    return sorted(chosen)


# ---------------------------------------------------------------------- data and projects
def snr_dir_name(snr: float) -> str:
    """Folder name of an SNR's data and runs: ``snr-inf``, ``snr-0.1``."""
    return f"snr-{format_snr(snr)}"


def simulated_once(where: Path, want: Mapping[str, Any], simulate: Callable[[Path], None]) -> None:
    """Fill the data folder ``where`` with ``simulate(where)`` unless it already holds them.

    ``where/meta.json`` records ``want`` (the options that decide the data) once
    ``simulate`` has finished: a folder whose record equals ``want`` is reused as it is
    (its files keep their checksums, so the block projects that registered them resume);
    any other folder is deleted and simulated again.
    """
    meta = where / "meta.json"
    if meta.exists() and json.loads(meta.read_text(encoding="utf-8")) == dict(want):
        logger.info("reusing simulated data in %s", where)
        return
    if where.exists():
        logger.info("simulated data in %s were made with other options: simulating again", where)
        shutil.rmtree(where)
    where.mkdir(parents=True)
    simulate(where)
    atomic_write_text(meta, json.dumps(dict(want), indent=2) + "\n")


def block_dir(out: Path, key: BlockKey) -> Path:
    """The project folder of one block: ``OUT/runs/snr-*/ARM/seed-N``."""
    snr, arm, seed = key
    return out / "runs" / snr_dir_name(snr) / arm / f"seed-{seed}"


def drop_checkpoints(out: Path, key: BlockKey) -> None:
    """Delete a recorded block's round checkpoints (``models/``) to bound disk use."""
    shutil.rmtree(block_dir(out, key) / "models", ignore_errors=True)


def benchmark_oracle(ids: Sequence[str], labels: Sequence[str], seed: int) -> Oracle:
    """The ground truth as an expert that never errs (annotator ``benchmark-oracle``)."""
    from cryoal.active.oracle import Oracle

    return Oracle(dict(zip(ids, labels, strict=True)), seed=seed, annotator="benchmark-oracle")


def label_initial(project: Project, pool: Any, oracle: Oracle, ids: Sequence[str]) -> None:
    """Register ``pool`` in ``project`` and let ``oracle`` label ``ids`` (the initial set)."""
    from cryoal.active.loop import register_pool

    with project.lock():
        register_pool(project, pool)
        project.add_labels(
            oracle.label(list(ids)),
            source="oracle",
            annotator=oracle.annotator,
            where="initial set",
        )


def finished_rounds(project: Project, labelled: Collection[str] | None = None) -> list[RoundRecord]:
    """Rounds that are picked and whose picks are labelled, in order.

    ``labelled`` holds the ids labelled now (default: the project's labels; segmentation:
    the fully annotated patches of the block's masks).
    """
    have = project.label_map() if labelled is None else labelled
    done = []
    for rnd in project.rounds():
        if rnd.status != "picked":
            break
        if not all(p.id in have for p in project.picks(rnd.n)):
            break
        done.append(rnd)
    return done


def trained_rounds(rounds: Sequence[RoundRecord]) -> list[RoundRecord]:
    """The rounds whose model was trained (a cold start's untrained model is not evaluated)."""
    return [r for r in rounds if r.mode != "cold"]


def run_rounds(
    project: Project,
    n: int,
    one_round: Callable[[list[RoundRecord], list[RoundRecord]], None],
    labelled: Callable[[], Collection[str]] | None = None,
) -> list[RoundRecord]:
    """Run (or resume) a block's rounds until ``n`` of them are trained and answered.

    Parameters
    ----------
    project
        The block's open project.
    n
        Trained rounds the block evaluates.
    one_round
        ``one_round(finished, trained)`` runs (or resumes) the next round through the
        task's round engine and has its picks answered; it gets what
        :func:`finished_rounds` and :func:`trained_rounds` return now. A round killed at
        any step is resumed by the round engine; a picked round whose picks are not yet
        answered is shown again by it (same picks) and answered then.
    labelled
        The ids labelled now, as :func:`finished_rounds` takes them (``None``: the
        project's labels).

    Returns
    -------
    list of RoundRecord
        The first ``n`` trained rounds, in order.
    """
    while True:
        done = finished_rounds(project, None if labelled is None else labelled())
        trained = trained_rounds(done)
        if len(trained) >= n:
            return trained[:n]
        one_round(done, trained)


def classifier_metrics(
    model: torch.nn.Module,
    class_names: Sequence[str],
    x: torch.Tensor,
    y: torch.Tensor,
    classes: Sequence[str],
    device: torch.device,
    batch_size: int = 64,
) -> dict[str, float]:
    """Test metrics of a classifier whose outputs are ``class_names`` (some of ``classes``).

    Parameters
    ----------
    model
        A round's model, logits `(B, len(class_names))`.
    class_names
        The class of each model output (the labels the round trained on).
    x, y
        Normalised test items `(N, 1, *spatial)` and their index into ``classes`` `(N,)`.
    classes
        Every class of the benchmark (a class the model never saw counts as an error).

    Returns
    -------
    dict
        ``accuracy``, ``balanced_accuracy``, ``macro_f1`` over ``classes``.
    """
    from torch.utils.data import TensorDataset

    from cryoal.train import classification_metrics, predict

    probs = predict(model, TensorDataset(x), batch_size=batch_size, device=device)
    to_global = torch.as_tensor([list(classes).index(c) for c in class_names], dtype=torch.long)
    pred = to_global[probs.argmax(1).cpu()]
    m = classification_metrics(y, pred, len(classes))
    return {k: float(m[k]) for k in ("accuracy", "balanced_accuracy", "macro_f1")}


def _seconds(start: str, end: str | None) -> float:
    if end is None:
        return math.nan
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def block_rows(
    project: Project,
    key: BlockKey,
    rounds: Sequence[RoundRecord],
    metrics: Callable[[Any, Any], dict[str, float]],
    device: torch.device,
) -> list[dict[str, Any]]:
    """Rows of :data:`~cryoal.benchmark.report.RESULT_COLUMNS` of a block's trained rounds.

    Round ``r`` of the block is ``rounds[r]``; ``metrics(model, info)`` scores its saved
    checkpoint (:func:`cryoal.models.load_checkpoint`) on the test set; ``n_labels`` is
    what the round trained on; ``wall_time`` its seconds from start to picks.
    """
    from cryoal import models

    snr, arm, seed = key
    rows = []
    for r, rnd in enumerate(rounds):
        model, info = models.load_checkpoint(project.path / str(rnd.model_path), device=device)
        rows.append(
            {
                "snr": snr,
                "strategy": arm,
                "seed": seed,
                "round": r,
                "n_labels": rnd.n_labels,
                **metrics(model, info),
                "wall_time": _seconds(rnd.started, rnd.picked),
            }
        )
    return rows

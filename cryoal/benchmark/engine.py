"""The benchmark engine: one resumable run of strategies × SNR × seeds for every task.

:func:`run` is the only run/resume path of :mod:`cryoal.benchmark`. It owns the output
folder (``config.json``, ``results.csv``, the extra tables, ``summary.md`` and the
figures), the resume rules, the block order, the progress bar and the returned table.
What a task adds comes from a :class:`Suite` that the config builds
(``config.suite(device)``): the data of one SNR, one ``(snr, strategy, seed)`` block
(its rows of :data:`~cryoal.benchmark.report.RESULT_COLUMNS`), optional extra blocks
(the subtomogram benchmark's cross-SNR robustness matrix) and what the report adds. The
strategies and the model are checked against the task registry
(:func:`cryoal.tasks.get`: ``Task.strategies()`` and ``Task.model_kind``).

Arrows: :mod:`cryoal.benchmark.noise` (subtomograms) and :mod:`cryoal.benchmark.tasks`
(image2d, segmentation) import this module; it imports neither.

Resume: finished blocks in ``results.csv`` (and in each extra table) are kept when
``config.json`` records the same :meth:`Suite.identity` (options that change what a row
means; strategies, SNRs, seeds, device and the preset name may change: a run then
extends the benchmark); the rows of a re-run equal an uninterrupted run's up to
``wall_time``.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cryoal._atomic import atomic_write_text, sweep_orphans
from cryoal.benchmark._blocks import BlockKey, all_blocks, append_rows, done_blocks, keep_blocks
from cryoal.benchmark.report import METRICS, RESULT_COLUMNS, write_report
from cryoal.errors import ConfigError

__all__ = ["SCRATCH_SUFFIX", "BlockHook", "Extra", "Suite", "run", "split_arm"]

logger = logging.getLogger(__name__)

#: ``on_block(kind, key, rows)``: called after every finished block (``kind`` ``"run"``
#: or an :class:`Extra`'s name).
BlockHook = Callable[[str, tuple[Any, ...], list[dict[str, Any]]], None]

#: Suffix of a strategy name that runs it without the pool-pretrained encoder.
SCRATCH_SUFFIX = "@scratch"


def split_arm(name: str) -> tuple[str, bool]:
    """``"random@scratch"`` → ``("random", True)``; ``"auto"`` → ``("auto", False)``.

    A benchmark *arm* is a strategy name, optionally with :data:`SCRATCH_SUFFIX`: the
    same strategy, but every round's model starts from random weights and the strategy
    gets no pretrained embedding (the arm measures what the encoder adds).
    """
    if name.endswith(SCRATCH_SUFFIX):
        return name[: -len(SCRATCH_SUFFIX)], True
    return name, False


@dataclasses.dataclass
class Extra:
    """A second kind of block a suite runs after the active-learning runs.

    Attributes
    ----------
    name
        ``robustness``: the table is ``OUT/<name>.csv``, ``table.attrs[name]`` and the
        ``kind`` of :data:`BlockHook` calls.
    columns
        Columns of the table.
    key_columns
        Columns whose values (floats, then ints) make a block's key.
    blocks
        Every key the config asks for, in run order.
    run
        ``run(key, data_of) -> rows``; ``data_of(snr)`` is the engine's per-SNR data.
    keep
        Rows of the table (old and new) that belong to this config.
    label
        ``label(key)``: the progress bar's text while the block runs.
    """

    name: str
    columns: tuple[str, ...]
    key_columns: tuple[str, ...]
    blocks: list[tuple[Any, ...]]
    run: Callable[[tuple[Any, ...], Callable[[float], Any]], list[dict[str, Any]]]
    keep: Callable[[pd.DataFrame], pd.DataFrame]
    label: Callable[[tuple[Any, ...]], str]

    def keys(self, table: pd.DataFrame) -> set[tuple[Any, ...]]:
        """The keys of the blocks that have rows in ``table``."""
        cols = table[list(self.key_columns)].drop_duplicates()
        return {(float(a), int(b)) for a, b in cols.itertuples(index=False)}


class Suite(abc.ABC):
    """What one task adds to :func:`run`; the default methods are the in-memory case.

    Parameters
    ----------
    config
        The benchmark config (``strategies``, ``snrs``, ``seeds``, ``task``, ``model``,
        ``preset``, ``device``, ``to_dict``, ``replace``).
    device
        The resolved torch device.
    """

    #: Words for what the blocks are (``summary.md``, the log).
    runs_word = "active-learning runs"

    def __init__(self, config: Any, device: Any) -> None:
        self.config = config
        self.device = device

    # ------------------------------------------------------------------ identity
    def arm_strategy(self, arm: str) -> str:
        """The registered strategy an arm runs (``NAME@scratch`` → ``NAME``)."""
        return split_arm(arm)[0]

    def identity_fields(self) -> tuple[str, ...]:
        """Config fields that change what a row means (a change refuses to resume)."""
        free = {"preset", "strategies", "snrs", "seeds", "device", "keep_models"}
        return tuple(f.name for f in dataclasses.fields(self.config) if f.name not in free)

    def record(self) -> dict[str, Any]:
        """Extra entries of ``config.json``'s ``arguments`` that must match to resume."""
        return {}

    def describe(self) -> str:
        """One sentence on the task for ``summary.md`` (empty: none)."""
        return ""

    # ------------------------------------------------------------------ blocks
    @abc.abstractmethod
    def data(self, out: Path, snr: float) -> Any:
        """The pool and test set of one SNR (made once per SNR and run)."""

    @abc.abstractmethod
    def run_block(self, out: Path, key: BlockKey, data: Any) -> list[dict[str, Any]]:
        """Rows of :data:`RESULT_COLUMNS` of one ``(snr, arm, seed)`` block, by round."""

    def block_recorded(self, out: Path, key: BlockKey) -> None:
        """Called once a block's rows are safe in ``results.csv`` (default: nothing)."""
        return None

    def extras(self) -> list[Extra]:
        """Blocks run after the runs (default: none)."""
        return []

    def report_parts(self, out: Path, blocks: Sequence[BlockKey]) -> dict[str, Any]:
        """``balance``, ``extra_baselines`` for :func:`write_report` (default: none)."""
        return {}


# ---------------------------------------------------------------------- tables on disk
def _read_csv(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=list(columns))
    table = pd.read_csv(path)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ConfigError(
            f"{path} lacks column(s) {', '.join(missing)}: it was not written by this "
            "benchmark; move it away or run with --no-resume"
        )
    return table[list(columns)]


def _append_csv(
    path: Path, table: pd.DataFrame, rows: list[dict[str, Any]], columns: Sequence[str]
) -> pd.DataFrame:
    merged = append_rows(table, rows, columns)
    atomic_write_text(path, merged.to_csv(index=False))
    return merged


def _check_resumable(out: Path, suite: Suite) -> None:
    """Refuse to mix results of configurations that differ in what the rows mean."""
    path = out / "config.json"
    if not path.exists():
        return
    try:
        arguments = json.loads(path.read_text(encoding="utf-8"))["arguments"]
        recorded = dict(arguments["benchmark"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path} is not a benchmark config; use another --out or --no-resume"
        ) from exc
    config = suite.config
    mine = config.to_dict()
    # as config.json holds them (tuples become lists)
    want = json.loads(json.dumps({k: mine[k] for k in suite.identity_fields()}))
    # options added after a benchmark was recorded take their default there
    default = json.loads(json.dumps(type(config)(task=config.task).to_dict()))
    diff = sorted(k for k in want if recorded.get(k, default.get(k)) != want[k])
    for name, value in json.loads(json.dumps(suite.record())).items():
        old = arguments.get(name, value)
        if old != value:
            diff.append(name)
            recorded[name], want[name] = old, value
    if diff:
        shown = ", ".join(f"{k} {recorded.get(k)!r} → {want[k]!r}" for k in diff)
        raise ConfigError(
            f"{out} holds results of a benchmark with other options ({shown}); re-run with "
            "the same options to resume, pass --no-resume to start over, or choose another --out"
        )


def _sort_results(table: pd.DataFrame, config: Any) -> pd.DataFrame:
    """Rows in the config's (snr, strategy, seed) order, then round; dtypes fixed."""
    if not table.empty:
        order = table.assign(
            _a=table["snr"].map({s: i for i, s in enumerate(config.snrs)}),
            _b=table["strategy"].map({s: i for i, s in enumerate(config.strategies)}),
            _c=table["seed"].map({s: i for i, s in enumerate(config.seeds)}),
        ).sort_values(["_a", "_b", "_c", "round"], kind="stable")
        table = order.drop(columns=["_a", "_b", "_c"]).reset_index(drop=True)
    for col in ("seed", "round", "n_labels"):
        table[col] = table[col].astype(int)
    for col in ("snr", *METRICS, "wall_time"):
        table[col] = table[col].astype(float)
    table["strategy"] = table["strategy"].astype("str")  # as read back from results.csv
    return table


# ---------------------------------------------------------------------- the benchmark
def run(
    config: Any,
    out: str | Path | None = None,
    resume: bool = True,
    *,
    on_block: BlockHook | None = None,
    notes: Sequence[str] = (),
    arguments: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Run a noise benchmark (any task) and return its tidy results table.

    Parameters
    ----------
    config
        :class:`cryoal.benchmark.noise.NoiseBenchmarkConfig` (subtomograms) or
        :class:`cryoal.benchmark.tasks.TaskBenchmarkConfig` (image2d, segmentation); see
        :func:`cryoal.benchmark.presets.preset`.
    out
        Output folder: ``results.csv``, the extra tables (``robustness.csv``),
        ``summary.md``, ``curves_snr*.png``, ``config.json``, and what the task keeps
        (subtomograms: ``data/``, ``runs/``, ``balance.csv``, ``robustness.png``).
        ``None`` works in a temporary folder and keeps nothing but the returned table.
    resume
        Keep finished blocks of an earlier run in ``out`` with the same options and run
        only what is missing; ``False`` deletes earlier results and runs (not the data).
        Rows of blocks the config no longer asks for (a dropped strategy, say) stay in
        ``results.csv`` but not in the returned table or the report.
    on_block
        Called after each finished block as ``on_block(kind, key, rows)`` with ``kind``
        ``"run"`` (key ``(snr, strategy, seed)``) or ``"robustness"`` (key
        ``(train_snr, seed)``): progress reporting in notebooks.
    notes
        Lines added under the title of ``summary.md`` (machine, command).
    arguments
        Command-line arguments recorded in ``config.json``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`cryoal.benchmark.report.RESULT_COLUMNS`, one row per (snr,
        strategy, seed, round), in config order; ``attrs["robustness"]`` holds the
        robustness table (empty where the task has none), ``attrs["balance"]`` the class
        balance of the labelled sets where the task records it.

    Raises
    ------
    ConfigError
        ``out`` holds results of a benchmark with different options (with ``resume``),
        unknown strategy/model names, unusable device, unknown task.
    """
    from cryoal import models, tasks
    from cryoal.runtime import resolve_device

    device = resolve_device(config.device)
    suite: Suite = config.suite(device)
    task = tasks.get(config.task)
    unknown = [s for s in config.strategies if suite.arm_strategy(s) not in task.strategies()]
    if unknown:
        raise ConfigError(
            f"unknown strategy(ies) {', '.join(unknown)}; available: {', '.join(task.strategies())}"
        )
    kind = task.model_kind
    if config.model not in models.available(kind=kind):
        raise ConfigError(
            f"unknown model {config.model!r}; available {kind} models: "
            f"{', '.join(models.available(kind=kind))}"
        )
    if out is None:
        with tempfile.TemporaryDirectory(prefix="cryoal-noise-") as tmp:
            return _run_in(suite, Path(tmp), False, on_block, notes, arguments, write=False)
    return _run_in(suite, Path(out), resume, on_block, notes, arguments, write=True)


def _run_in(
    suite: Suite,
    out: Path,
    resume: bool,
    on_block: BlockHook | None,
    notes: Sequence[str],
    arguments: dict[str, Any] | None,
    *,
    write: bool,
) -> pd.DataFrame:
    from tqdm.auto import tqdm

    from cryoal.benchmark.report import ROBUSTNESS_COLUMNS, format_snr
    from cryoal.runtime import write_run_config

    config = suite.config
    extras = suite.extras()
    out.mkdir(parents=True, exist_ok=True)
    sweep_orphans(out)  # temporaries of a killed earlier run (its projects are locked apart)
    results_path = out / "results.csv"
    if resume:
        _check_resumable(out, suite)
    else:
        for stale in (results_path, *(out / f"{e.name}.csv" for e in extras)):
            stale.unlink(missing_ok=True)
        shutil.rmtree(out / "runs", ignore_errors=True)
    if write:
        write_run_config(
            out / "config.json",
            {
                "benchmark": config.to_dict(),
                **suite.record(),
                "device_resolved": str(suite.device),
                **(arguments or {}),
            },
            seed=config.seeds[0],
        )
    results = _read_csv(results_path, RESULT_COLUMNS)
    extra_tables = {e.name: _read_csv(out / f"{e.name}.csv", e.columns) for e in extras}
    blocks = all_blocks(config.snrs, config.strategies, config.seeds)
    done = done_blocks(results)
    todo = [b for b in blocks if b not in done]
    extra_todo = {
        e.name: [b for b in e.blocks if b not in e.keys(extra_tables[e.name])] for e in extras
    }
    logger.info(
        "%s benchmark: %d of %d runs%s to do, device %s",
        config.task,
        len(todo),
        len(blocks),
        "".join(
            f" and {len(extra_todo[e.name])} of {len(e.blocks)} {e.name} blocks" for e in extras
        ),
        suite.device,
    )
    cache: dict[float, Any] = {}

    def data_of(snr: float) -> Any:
        if snr not in cache:
            cache[snr] = suite.data(out, snr)
        return cache[snr]

    n_extra = sum(len(v) for v in extra_todo.values())
    t0 = time.perf_counter()
    bar = tqdm(
        total=len(todo) + n_extra,
        desc=f"{config.task} benchmark",
        unit="run",
        disable=not todo and not n_extra,
    )
    try:
        for key in todo:
            snr, arm, seed = key
            bar.set_postfix_str(f"SNR {format_snr(snr)} {arm} seed {seed}")
            rows = suite.run_block(out, key, data_of(snr))
            results = _append_csv(results_path, results, rows, RESULT_COLUMNS)
            suite.block_recorded(out, key)  # only once the rows are safe on disk
            bar.update(1)
            if on_block is not None:
                on_block("run", key, rows)
        for extra in extras:
            for ekey in extra_todo[extra.name]:
                bar.set_postfix_str(extra.label(ekey))
                rows = extra.run(ekey, data_of)
                extra_tables[extra.name] = _append_csv(
                    out / f"{extra.name}.csv", extra_tables[extra.name], rows, extra.columns
                )
                bar.update(1)
                if on_block is not None:
                    on_block(extra.name, ekey, rows)
    finally:
        bar.close()
    table = _sort_results(keep_blocks(results, set(blocks)), config)
    kept = {e.name: e.keep(extra_tables[e.name]) for e in extras}
    elapsed = time.perf_counter() - t0
    logger.info("%s benchmark finished in %.1f s", config.task, elapsed)
    parts = suite.report_parts(out, blocks)
    balance = parts.get("balance")
    if write:
        if balance is not None:
            atomic_write_text(out / "balance.csv", balance.to_csv(index=False))
        robust = kept.get("robustness")
        ran = "".join(
            f" and {len(extra_todo[e.name])} of {len(e.blocks)} {e.name} trainings" for e in extras
        )
        write_report(
            table,
            out,
            balance=balance,
            robustness=robust[list(ROBUSTNESS_COLUMNS)]
            if robust is not None and len(robust)
            else None,
            extra_baselines=parts.get("extra_baselines", ()),
            notes=[
                *notes,
                *([suite.describe()] if suite.describe() else []),
                f"Preset: {config.preset}; device: {suite.device}; this invocation ran "
                f"{len(todo)} of {len(blocks)} {suite.runs_word}{ran} in {elapsed:.0f} s "
                "(the others were already in the results tables).",
            ],
        )
    table.attrs["robustness"] = kept.get(
        "robustness", pd.DataFrame(columns=[*ROBUSTNESS_COLUMNS, "balanced_accuracy", "macro_f1"])
    )
    if balance is not None:
        table.attrs["balance"] = balance
    return table

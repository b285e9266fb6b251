"""Bookkeeping shared by the noise benchmarks (subtomograms and the secondary tasks).

Both :mod:`cryoal.benchmark.noise` and :mod:`cryoal.benchmark.tasks` run blocks keyed
``(snr, strategy, seed)``, keep finished blocks in ``results.csv`` to resume, draw the
same class-balanced initial labelled sets, and read their configs from plain dicts.
These helpers are that shared part; this module imports neither engine.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Iterable, Sequence
from typing import Any, ClassVar, Self

import pandas as pd
import torch

from cryoal.benchmark.report import format_snr
from cryoal.errors import ConfigError

__all__ = [
    "ConfigViews",
    "BlockKey",
    "all_blocks",
    "append_rows",
    "check_option_names",
    "config_to_dict",
    "done_blocks",
    "initial_indices",
    "keep_blocks",
    "snrs_from_dict",
]

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

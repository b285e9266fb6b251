"""Benchmark configs by task: which config benchmarks a task, its presets, configs from files.

Every task of the registry (:func:`cryoal.tasks.available`) is benchmarked by one config
class: :class:`~cryoal.benchmark.noise.NoiseBenchmarkConfig` (subtomogram
classification) or :class:`~cryoal.benchmark.tasks.TaskBenchmarkConfig` (image2d,
segmentation); each lists its tasks in ``TASKS``, names its presets (``preset_names``, ``preset_of``)
and builds its engine suite (``suite``). The CLI and
notebooks resolve a task and preset name here instead of choosing between the two.

>>> from cryoal.benchmark import presets
>>> presets.preset("quick", task="segmentation").preset
'segmentation-quick'
"""

from __future__ import annotations

from typing import Any

from cryoal.benchmark import noise
from cryoal.benchmark import tasks as task_bench
from cryoal.errors import ConfigError

__all__ = [
    "DEFAULT_TASK",
    "BenchmarkConfig",
    "benchmarked_tasks",
    "config_type",
    "expected_time",
    "from_dict",
    "preset",
    "preset_names",
]

#: A config the engine runs.
BenchmarkConfig = noise.NoiseBenchmarkConfig | task_bench.TaskBenchmarkConfig

#: The task a config without ``task`` benchmarks (subtomogram classification).
DEFAULT_TASK: str = noise.NoiseBenchmarkConfig.task

_TYPES: tuple[tuple[type[Any], tuple[str, ...]], ...] = (
    (noise.NoiseBenchmarkConfig, noise.TASKS),
    (task_bench.TaskBenchmarkConfig, task_bench.TASKS),
)


def benchmarked_tasks() -> list[str]:
    """Every task some config benchmarks, sorted."""
    return sorted(t for _, names in _TYPES for t in names)


def config_type(task: str) -> type[Any]:
    """The config class that benchmarks ``task``.

    Raises
    ------
    ConfigError
        No config benchmarks the task.
    """
    for kind, names in _TYPES:
        if task in names:
            return kind
    raise ConfigError(
        f"task {task!r} has no benchmark (benchmarked: {', '.join(benchmarked_tasks())})"
    )


def preset_names(task: str | None = None) -> list[str]:
    """Preset names of ``task`` (every task's when ``None``), in listing order."""
    wanted = [task] if task is not None else benchmarked_tasks()
    names: list[str] = []
    for t in wanted:
        names += [n for n in config_type(t).preset_names(t) if n not in names]
    return names


def preset(name: str = "quick", task: str | None = None, **overrides: Any) -> BenchmarkConfig:
    """The ``name`` preset of ``task`` (default :data:`DEFAULT_TASK`) with ``overrides``.

    Raises
    ------
    ConfigError
        Unknown task or preset, invalid overrides.
    """
    task = task or DEFAULT_TASK
    config: BenchmarkConfig = config_type(task).preset_of(task, name, **overrides)
    return config


def from_dict(data: dict[str, Any]) -> BenchmarkConfig:
    """A config from its ``to_dict`` form (a ``config.json`` entry, a JSON/YAML file).

    The class comes from ``data["task"]`` (default :data:`DEFAULT_TASK`).

    Raises
    ------
    ConfigError
        Unknown task or option names, invalid values.
    """
    cls = config_type(str(data.get("task", DEFAULT_TASK)))
    config: BenchmarkConfig = cls.from_dict(data)
    return config


def expected_time(config: BenchmarkConfig) -> str:
    """The measured or estimated wall time of a named preset (``n/a (custom)`` otherwise)."""
    return noise.PRESET_RUNTIMES.get(config.preset, "n/a (custom)")

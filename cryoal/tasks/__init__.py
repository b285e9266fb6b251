"""Tasks: the pipelines that share cryoal's engine (models, training, acquisition).

>>> from cryoal import tasks
>>> tasks.available()
['classification3d', 'image2d', 'segmentation']
>>> task = tasks.get("image2d")
>>> pool = task.open_pool("digits/images")                 # doctest: +SKIP
>>> model = models.create(task.default_model, 10, task.in_shape(pool))   # doctest: +SKIP

A task defines only its data (pool + dataset), default model, per-sample loss, metrics,
applicable strategies and gallery view (:class:`Task`); see docs/pipelines.md.
"""

from __future__ import annotations

import difflib

from cryoal.errors import ConfigError
from cryoal.tasks.base import ClassificationTask, Task
from cryoal.tasks.classification3d import Classification3D
from cryoal.tasks.image2d import Image2D
from cryoal.tasks.segmentation import Segmentation

__all__ = [
    "Classification3D",
    "ClassificationTask",
    "Image2D",
    "Segmentation",
    "Task",
    "available",
    "get",
]

_TASKS: dict[str, Task] = {t.name: t for t in (Classification3D(), Image2D(), Segmentation())}


def available() -> list[str]:
    """Registered task names, sorted."""
    return sorted(_TASKS)


def get(name: str) -> Task:
    """The task registered as ``name`` (case-insensitive; ``_`` = ``-``).

    Raises
    ------
    ConfigError
        Unknown name, with the closest names.
    """
    key = name.strip().lower().replace("_", "-")
    task = _TASKS.get(key)
    if task is None:
        close = difflib.get_close_matches(key, list(_TASKS), n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown task {name!r}.{hint} Tasks: {', '.join(available())}")
    return task

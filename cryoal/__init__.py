"""cryoal — classify cryo-ET subtomograms with as few expert labels as possible.

The notebook API (``import cryoal as ca``) is loaded on first use, so ``import cryoal``
and ``cryoal --version`` stay fast:

- :func:`open_pool`, :func:`simulate`: subtomograms as a lazy :class:`~cryoal.io.VolumePool`
- :func:`train`: a classifier on the labelled volumes (:class:`TrainedModel`)
- :func:`select`: the volumes most worth labelling (:class:`~cryoal.acquisition.Selection`)
- :class:`Project`: an active-learning project on disk; :func:`label_widget` labels its
  picks in Jupyter
- :mod:`cryoal.viz`: slices, projections, galleries, learning curves
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cryoal._version import __version__
from cryoal.errors import CryoalError

if TYPE_CHECKING:
    from cryoal import viz
    from cryoal.active.project import Project
    from cryoal.api import TrainedModel, label_widget, open_pool, select, simulate, train

#: public name -> module that defines it (imported on first access)
_LAZY: dict[str, str] = {
    "open_pool": "cryoal.api",
    "simulate": "cryoal.api",
    "train": "cryoal.api",
    "select": "cryoal.api",
    "label_widget": "cryoal.api",
    "TrainedModel": "cryoal.api",
    "Project": "cryoal.active.project",
    "viz": "cryoal.viz",
}

__all__ = [
    "CryoalError",
    "Project",
    "TrainedModel",
    "__version__",
    "label_widget",
    "open_pool",
    "select",
    "simulate",
    "train",
    "viz",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'cryoal' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name == f"cryoal.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

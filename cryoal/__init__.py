"""cryoal — classify cryo-ET subtomograms with as few expert labels as possible.

The notebook API (``import cryoal as ca``) is loaded on first use, so ``import cryoal``
and ``cryoal --version`` stay fast:

- :func:`open_pool`, :func:`simulate`: subtomograms as a lazy :class:`~cryoal.io.VolumePool`
- :func:`simulate_copick`: a small simulated copick project (tomograms + true picks)
- :func:`train`: a classifier on the labelled volumes (:class:`TrainedModel`)
- :func:`select`: the volumes most worth labelling (:class:`~cryoal.acquisition.Selection`)
- :class:`Project`: an active-learning project on disk; :func:`label_widget` labels its
  picks in Jupyter
- :mod:`cryoal.viz`: slices, projections, galleries, learning curves
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from typing import TYPE_CHECKING, Any

from cryoal._repr import set_html_provider
from cryoal._version import __version__
from cryoal.errors import CryoalError

# Rich views of volumes, pools, selections and projects come from cryoal.viz, imported on
# the first display; the data layers only declare their kind (cryoal._repr).
set_html_provider("cryoal.viz._html")

if TYPE_CHECKING:
    from cryoal import viz
    from cryoal.active.project import Project
    from cryoal.api import TrainedModel, label_widget, open_pool, select, simulate_copick

#: public name -> module that defines it (imported on first access)
_LAZY: dict[str, str] = {
    "open_pool": "cryoal.api",
    "select": "cryoal.api",
    "label_widget": "cryoal.api",
    "simulate_copick": "cryoal.api",
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
    "simulate_copick",
    "train",
    "viz",
]


#: ``cryoal.simulate`` and ``cryoal.train`` are subpackages *and* the notebook API's
#: ``ca.simulate(...)`` / ``ca.train(...)``: the module objects are made callable (calling
#: one runs :func:`cryoal.api.simulate` / :func:`cryoal.api.train`), whatever the order
#: in which they are imported, and ``from cryoal.train import fit`` keeps working.
_CALLABLE_MODULES = ("simulate", "train")


class _CallableModule(types.ModuleType):
    """A submodule that can also be called as the API function of the same name."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from cryoal import api

        return getattr(api, self.__name__.rsplit(".", 1)[1])(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        from cryoal import api

        return inspect.signature(getattr(api, self.__name__.rsplit(".", 1)[1]))


class _Package(types.ModuleType):
    """The ``cryoal`` package module; makes the callable submodules callable on import."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _CALLABLE_MODULES and type(value) is types.ModuleType:
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


def __getattr__(name: str) -> Any:
    if name in _CALLABLE_MODULES:
        module = importlib.import_module(f"cryoal.{name}")
        if type(module) is types.ModuleType:
            module.__class__ = _CallableModule
        return module
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'cryoal' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name == f"cryoal.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_CALLABLE_MODULES))


sys.modules[__name__].__class__ = _Package

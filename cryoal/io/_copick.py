"""Import ``copick`` without letting it reconfigure the caller's logging.

``import copick`` runs ``logging.basicConfig(force=True)`` with a rich handler at INFO
level (copick.util.log.get_logger), which replaces the root handlers of whatever
program imports it: under ``cryoal`` every INFO record of every library would then
reach the terminal. copick's submodules that load later (``copick.from_file`` imports
``copick.ops.open`` and ``copick.impl.filesystem``; ``copick.util.formats``,
``copick.ops.add`` ...) call ``get_logger`` again when they are imported.
:func:`import_copick` imports copick once, puts the root logger back as it was, and
replaces ``copick.util.log.get_logger`` by a plain ``logging.getLogger`` so that no
later copick import reconfigures logging either.
"""

from __future__ import annotations

import logging
import sys
from types import ModuleType

from cryoal.errors import MissingDependencyError

__all__ = ["import_copick"]


def import_copick(purpose: str = "copick projects") -> ModuleType:
    """Return the ``copick`` module, imported with the root logger left untouched.

    Parameters
    ----------
    purpose
        What needs copick, for the error message (``"reading copick projects"``).

    Raises
    ------
    MissingDependencyError
        ``copick`` is not installed.
    """
    module = sys.modules.get("copick")
    if module is not None:
        return module
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import copick
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the copick package; pip install copick"
        ) from exc
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
    _quiet_get_logger()
    loaded: ModuleType = copick
    return loaded


def _plain_get_logger(name: str, debug: bool = False) -> logging.Logger:
    """copick's ``get_logger`` without its ``basicConfig(force=True)``."""
    return logging.getLogger(name)


def _quiet_get_logger() -> None:
    """Point copick's ``get_logger`` (the module's and every imported copy) at a plain one."""
    import importlib

    try:
        log = importlib.import_module("copick.util.log")
    except ImportError:  # another copick layout: nothing to patch
        return
    original = getattr(log, "get_logger", None)
    if original is None or original is _plain_get_logger:
        return
    for name, module in list(sys.modules.items()):
        if (name == "copick" or name.startswith("copick.")) and getattr(
            module, "get_logger", None
        ) is original:
            module.get_logger = _plain_get_logger  # type: ignore[attr-defined]

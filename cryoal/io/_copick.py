"""Import ``copick`` without letting it reconfigure the caller's logging.

``import copick`` runs ``logging.basicConfig(force=True)`` with a rich handler at INFO
level (copick.util.log.get_logger), which replaces the root handlers of whatever
program imports it: under ``cryoal`` every INFO record of every library would then
reach the terminal. :func:`import_copick` imports it once and puts the root logger back
as it was.
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
    return copick

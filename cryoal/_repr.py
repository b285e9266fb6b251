"""Rich-display hooks: the data layers declare a view, :mod:`cryoal.viz` supplies it.

A class in a lower layer (``Volume`` and ``VolumePool`` in :mod:`cryoal.io`,
``Selection`` in :mod:`cryoal.acquisition`, ``Project`` in :mod:`cryoal.active`) says
what kind of thing it is, with one line and without importing :mod:`cryoal.viz`::

    _repr_html_ = html_view("volume")

:mod:`cryoal.viz._html` registers one renderer per kind with :func:`register_html`
when it is imported. The package (``cryoal/__init__.py``, which may know every layer)
names that module as the provider with :func:`set_html_provider`, so the first rich
display imports it; nothing is imported before then, and ``import cryoal.io`` stays
free of plotting code. With no renderer for a kind, ``_repr_html_`` returns ``None``
and Jupyter shows the plain ``repr``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["html_view", "register_html", "renderer", "set_html_provider"]

logger = logging.getLogger(__name__)

_RENDERERS: dict[str, Callable[[Any], str]] = {}
_PROVIDERS: list[str] = []


def register_html(kind: str, render: Callable[[Any], str]) -> None:
    """Make ``render(obj) -> html`` the rich view of every object declaring ``kind``."""
    _RENDERERS[kind] = render


def set_html_provider(module: str) -> None:
    """Name a module that registers renderers when imported (imported on first display)."""
    if module not in _PROVIDERS:
        _PROVIDERS.append(module)


def renderer(kind: str) -> Callable[[Any], str] | None:
    """The registered renderer of ``kind``, importing the providers once if needed.

    A provider that fails to import is logged (debug) and skipped: a rich view is never
    worth an exception in a notebook cell.
    """
    if kind not in _RENDERERS:
        while _PROVIDERS:
            module = _PROVIDERS.pop(0)
            try:
                importlib.import_module(module)
            except ImportError as exc:  # e.g. a broken matplotlib install
                logger.debug("rich views from %s unavailable: %s", module, exc)
    return _RENDERERS.get(kind)


def html_view(kind: str) -> Callable[[Any], str | None]:
    """A ``_repr_html_`` method rendering with the renderer registered for ``kind``."""

    def _repr_html_(self: Any) -> str | None:
        render = renderer(kind)
        return None if render is None else render(self)

    _repr_html_.__doc__ = f"Rich HTML view for Jupyter (the {kind!r} view of cryoal.viz)."
    return _repr_html_

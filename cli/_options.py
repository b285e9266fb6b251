"""Typed command options: a frozen dataclass per command instead of ``**kw``.

A command declared with ``cls=OptionsCommand, options=SomeOptions`` gets its parsed
click parameters as one ``SomeOptions`` object (its callback takes that object only).
:func:`from_params` is the one place that maps click's values to the typed fields: one
field per click parameter, same names; a field whose type is itself an options dataclass
(e.g. :class:`cryoal.cli._tomo.TomogramOptions`) takes its fields from the same
parameters, so option groups shared by several commands stay one type.
tests/cli/test_options.py checks every command against its dataclass.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import click

T = TypeVar("T")


def _nested(cls: type) -> dict[str, type]:
    """The fields of dataclass ``cls`` that are options dataclasses themselves."""
    hints = typing.get_type_hints(cls)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(cls)
        if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name])
    }


def param_names(cls: type) -> set[str]:
    """The click parameter names an options dataclass takes (nested groups flattened)."""
    nested = _nested(cls)
    names: set[str] = set()
    for f in dataclasses.fields(cls):
        names |= param_names(nested[f.name]) if f.name in nested else {f.name}
    return names


def from_params(cls: type[T], params: Mapping[str, Any]) -> T:
    """Build options dataclass ``cls`` from click's parsed parameters.

    Parameters absent from ``params`` keep the field's default (for callers that build
    options by hand); a parameter that no field takes is a programming error.

    Raises
    ------
    TypeError
        ``params`` names a parameter ``cls`` has no field for.
    """
    unknown = set(params) - param_names(cls)
    if unknown:
        raise TypeError(f"{cls.__name__} has no field for {', '.join(sorted(unknown))}")
    return _build(cls, params)


def _build(cls: type[T], params: Mapping[str, Any]) -> T:
    nested = _nested(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in nested:
            values[f.name] = _build(nested[f.name], params)
        elif f.name in params:
            values[f.name] = params[f.name]
    return cls(**values)


def flat(options: Any) -> dict[str, Any]:
    """An options object as ``{click parameter name: value}`` (nested groups flattened)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out.update(flat(value))
        else:
            out[f.name] = value
    return out


class OptionsCommand(click.Command):
    """A click command whose callback takes one typed options object.

    ``@click.command(name, cls=OptionsCommand, options=XOptions)``: the callback is
    called as ``callback(XOptions)``, built by :func:`from_params` from the command's
    parameters.
    """

    def __init__(self, *args: Any, options: type, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not dataclasses.is_dataclass(options):
            raise TypeError(f"{options!r} is not a dataclass")
        #: the options dataclass the callback takes
        self.options: type = options

    def invoke(self, ctx: click.Context) -> Any:
        if self.callback is None:  # pragma: no cover - every command has one
            return None
        return ctx.invoke(self.callback, from_params(self.options, ctx.params))

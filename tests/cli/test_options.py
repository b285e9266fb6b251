"""The thin typed CLI (issue #17): no command takes ``**kwargs``; each command with an
options dataclass has one field per click parameter; ``--task`` choices are the task
registry's."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import click
import pytest
from cryoal.cli._options import OptionsCommand, flat, from_params, param_names
from cryoal.cli._tomo import TomogramOptions
from cryoal.cli.main import COMMANDS, cli

from cryoal import tasks

#: the commands that take one typed options object (issue #17 item 5)
TYPED = {
    "info": "InfoOptions",
    "pack": "PackOptions",
    "predict": "PredictOptions",
    "train": "TrainOptions",
    "select": "SelectOptions",
    "benchmark noise": "NoiseOptions",
    "label import": "ImportOptions",
}


def _commands() -> dict[str, click.Command]:
    """Every command of ``cryoal`` by its full name, subcommands of groups included."""
    ctx = click.Context(cli)
    found: dict[str, click.Command] = {}

    def walk(prefix: str, group: click.Group) -> None:
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            assert cmd is not None, name
            full = f"{prefix} {name}".strip()
            found[full] = cmd
            if isinstance(cmd, click.Group):
                walk(full, cmd)

    walk("", cli)
    return found


def test_every_command_is_found() -> None:
    commands = _commands()
    assert set(COMMANDS) <= set(commands)
    assert set(TYPED) <= set(commands)


@pytest.mark.parametrize("name", sorted(_commands()))
def test_no_command_takes_var_keyword_arguments(name: str) -> None:
    cmd = _commands()[name]
    assert cmd.callback is not None
    kinds = {p.kind for p in inspect.signature(cmd.callback).parameters.values()}
    assert inspect.Parameter.VAR_KEYWORD not in kinds, f"cryoal {name} takes **kwargs"
    assert inspect.Parameter.VAR_POSITIONAL not in kinds, f"cryoal {name} takes *args"


@pytest.mark.parametrize("name", sorted(TYPED))
def test_options_dataclass_fields_match_the_click_parameters(name: str) -> None:
    cmd = _commands()[name]
    assert isinstance(cmd, OptionsCommand), f"cryoal {name} is not an OptionsCommand"
    assert cmd.options.__name__ == TYPED[name]
    assert dataclasses.fields(cmd.options)  # a dataclass with fields
    assert cmd.options.__dataclass_params__.frozen  # type: ignore[attr-defined]
    params = {p.name for p in cmd.params}
    assert param_names(cmd.options) == params
    # the callback takes exactly the options object, annotated with its type
    (only,) = inspect.signature(cmd.callback).parameters.values()  # type: ignore[arg-type]
    assert only.annotation in (cmd.options, cmd.options.__name__)


def _defaults(cls: type) -> dict[str, object]:
    """The fields of options dataclass ``cls`` that have a default, nested ones flattened."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING:
            continue
        if dataclasses.is_dataclass(f.default):
            out.update(flat(f.default))
        else:
            out[f.name] = f.default
    return out


@pytest.mark.parametrize("name", sorted(TYPED))
def test_dataclass_defaults_equal_the_click_defaults(name: str) -> None:
    """A field's default is its click parameter's (the help text shows click's; an
    options object built by hand means the same command line)."""
    cmd = _commands()[name]
    ctx = cmd.make_context(name, [], resilient_parsing=True)
    defaults = _defaults(cmd.options)  # type: ignore[attr-defined]
    for key, value in defaults.items():
        expected = ctx.params[key]
        if isinstance(expected, tuple):
            assert tuple(value) == expected, (name, key)  # type: ignore[call-overload]
        else:
            assert value == expected, (name, key, value, expected)


def test_from_params_refuses_an_unknown_parameter() -> None:
    from cryoal.cli.pack import PackOptions

    with pytest.raises(TypeError, match="PackOptions has no field for nope"):
        from_params(PackOptions, {"source": Path("a"), "out": Path("b.h5"), "nope": 1})


def test_pack_options_come_from_the_command_line(tmp_path: Path) -> None:
    cmd = _commands()["pack"]
    ctx = cmd.make_context(
        "pack",
        [str(tmp_path), "--out", "p.h5", "--pattern", "*.mrc", "--pattern", "*.mrcs"],
    )
    opts = from_params(cmd.options, ctx.params)  # type: ignore[type-var]
    assert opts.source == tmp_path and opts.out == Path("p.h5")
    assert opts.pattern == ("*.mrc", "*.mrcs") and opts.workers == 2 and not opts.overwrite
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.workers = 3  # type: ignore[misc]


def test_tomogram_options_nest_into_the_command_options() -> None:
    cmd = _commands()["predict"]
    ctx = cmd.make_context(
        "predict",
        ["--model", "m.pt", "--out", "o.csv", "--copick", "c.json", "--object", "ribo"],
    )
    opts = from_params(cmd.options, ctx.params)  # type: ignore[type-var]
    assert opts.tomo == TomogramOptions(copick=Path("c.json"), object_name="ribo")
    assert opts.volumes is None and flat(opts)["object_name"] == "ribo"


def test_info_path_is_the_source_of_its_coordinate_options() -> None:
    from cryoal.cli._tomo import CoordinateOptions

    coords = CoordinateOptions(coords=Path("p.star"), box=24)
    assert TomogramOptions.of(Path("tomos"), coords) == TomogramOptions(
        tomograms=Path("tomos"), coords=Path("p.star"), box=24
    )
    assert TomogramOptions.of(Path("Config.JSON"), coords).copick == Path("Config.JSON")


@pytest.mark.parametrize("name", ["select", "benchmark noise"])
def test_task_choices_are_the_task_registry(name: str) -> None:
    (task,) = [p for p in _commands()[name].params if p.name == "task"]
    assert isinstance(task.type, click.Choice)
    assert list(task.type.choices) == tasks.available()

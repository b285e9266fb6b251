"""The ``cryoal`` click group.

Commands live one per module in this package and are imported lazily, so
``cryoal --help`` stays fast and a command's heavy imports (torch, matplotlib) are paid
only when it runs. Any :class:`cryoal.errors.CryoalError` becomes one line on stderr and
exit code 2; ``cryoal --debug ...`` shows the traceback instead.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from cryoal._version import __version__
from cryoal.errors import CryoalError

#: command name -> "module:attribute" inside this package
COMMANDS: dict[str, str] = {
    "info": "info:info",
    "train": "train:train",
    "predict": "predict:predict",
    "select": "select:select",
    "label": "label:label",
    "status": "status:status",
    "benchmark": "benchmark:benchmark",
    "simulate": "simulate:simulate",
    "pack": "pack:pack",
    "pretrain": "pretrain:pretrain",
    "evaluate": "evaluate:evaluate",
}


#: command name -> its one-line help as ``cryoal --help`` lists it, so that listing the
#: commands imports none of them (importing them all took 7 s; tests/cli/test_errors.py
#: checks each line against the command's own docstring)
SUMMARIES: dict[str, str] = {
    "benchmark": "Benchmarks of the acquisition strategies.",
    "evaluate": "Score predictions against ground truth.",
    "info": "Describe a volume file, stack, HDF5 pool or folder.",
    "label": "Import, export and count labels.",
    "pack": "Convert a folder or list of MRC volumes to one chunked HDF5 pool.",
    "predict": "Predict classes of volumes with a trained checkpoint.",
    "pretrain": "Pretrain an encoder on the unlabelled pool (contrastive, no labels).",
    "select": "Pick the subtomograms worth labelling next (one active-learning round).",
    "simulate": "Simulate a labelled data set from a manifest (or verify an external one).",
    "status": "Show a project's rounds, labels per class and accuracy history.",
    "train": "Train a subtomogram classifier on labelled volumes.",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use (not to list them)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            summary = SUMMARIES.get(name)
            if summary is None:  # a command without a stored line: ask it
                command = self.get_command(ctx, name)
                summary = "" if command is None else command.get_short_help_str(limit=300)
            rows.append((name, summary))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        module = importlib.import_module(f"{__package__}.{module_name}")
        command: click.Command = getattr(module, attr)
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if args and name not in COMMANDS and not name.startswith("-"):
            import difflib

            close = difflib.get_close_matches(name, list(COMMANDS), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            ctx.fail(f"No such command '{name}'.{hint}")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CryoalError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cryoal")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: int) -> None:
    """cryoal: pick the subtomograms worth labelling, by gradient-norm active learning.

    \b
    Example usage:
      cryoal select --demo                      # the whole loop on built-in demo data
      cryoal info subtomos/                     # what is in a folder of MRC files
      cryoal select --volumes subtomos/ --budget 24 --project myproject/
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def main() -> None:  # pragma: no cover - thin wrapper for python -m
    cli(prog_name="cryoal")

"""Options and helpers shared by the command modules (no logic of their own)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


class RegistryChoice(click.Choice):  # type: ignore[type-arg]
    """A choice whose values come from a registry, read when needed (not at import, so
    ``cryoal --help`` imports no registry, and a name registered later is a choice)."""

    def __init__(self, values: Callable[[], Sequence[str]]) -> None:
        super().__init__([])
        self._values = values

    @property  # type: ignore[override]
    def choices(self) -> Sequence[str]:
        return list(self._values())

    @choices.setter
    def choices(self, value: Sequence[str]) -> None:  # click's __init__ assigns it
        pass


def task_names() -> list[str]:
    """The registered tasks (:func:`cryoal.tasks.available`): ``--task``'s choices."""
    from cryoal import tasks

    return tasks.available()


def task_choice() -> RegistryChoice:
    """The ``--task`` parameter type: a registered task name."""
    return RegistryChoice(task_names)


seed_option = click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Random seed; a run is reproducible from it.",
)
device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="Torch device: cpu, cuda, cuda:N, or auto (CUDA when available).",
)

pattern_option = click.option(
    "--pattern", default="*.mrc", show_default=True, help="File pattern inside a --volumes folder."
)
lr_option = click.option(
    "--lr",
    default=3e-3,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Peak learning rate (AdamW, cosine decay).",
)
progress_option = click.option("--progress/--no-progress", default=True, show_default=True)
invert_option = click.option(
    "--invert/--no-invert",
    default=None,
    help="Read the volumes contrast-inverted (-x): for pools whose protein is bright (RELION "
    "'invert contrast', aitom) next to dark ones (raw tomograms, cryoal simulate). "
    "[default: no; predict: as the checkpoint was trained]",
)


def volumes_option(*, required: bool = True) -> Callable[[F], F]:
    """The ``--volumes`` option (a folder of MRC files, a stack or an HDF5 pool) as a Path."""
    return click.option(
        "--volumes",
        "volumes",
        required=required,
        type=click.Path(path_type=Path),
        help="Folder of MRC files, a stack (.mrcs) or an HDF5 pool.",
    )


def example_epilog(text: str) -> str:
    """Format an 'Example usage' block as a click epilog (kept verbatim)."""
    lines = "\n".join(f"  {line}" for line in text.strip().splitlines())
    return f"\b\nExample usage:\n{lines}"


def inverted(pool: Any, invert: bool | None) -> Any:
    """``pool`` read contrast-inverted when ``invert`` (the ``--invert`` option).

    Raises
    ------
    ConfigError
        The pool type cannot invert its items.
    """
    if not invert:
        return pool
    method = getattr(pool, "inverted", None)
    if method is None:
        from cryoal.errors import ConfigError

        raise ConfigError(
            f"--invert is not supported for {type(pool).__name__} pools yet; invert the "
            "volumes with the 'invert' transform or a VolumePool instead"
        )
    return method(True)

"""Options and helpers shared by the command modules (no logic of their own)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

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


def example_epilog(text: str) -> str:
    """Format an 'Example usage' block as a click epilog (kept verbatim)."""
    lines = "\n".join(f"  {line}" for line in text.strip().splitlines())
    return f"\b\nExample usage:\n{lines}"

"""Run-time helpers shared by every command: devices, seeds and run records."""

from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from cryoal._atomic import atomic_write_text
from cryoal._version import __version__
from cryoal.errors import ConfigError

__all__ = ["resolve_device", "run_record", "write_run_config"]


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Return a usable torch device.

    Parameters
    ----------
    device
        ``None`` or ``"auto"`` picks CUDA when available, else CPU. Anything else is
        passed to :class:`torch.device` and checked.

    Raises
    ------
    ConfigError
        The device string is malformed, or CUDA was asked for and is not available.
    """
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} requested but CUDA is not available; use --device cpu"
        )
    return dev


def run_record(arguments: dict[str, Any], *, seed: int | None = None) -> dict[str, Any]:
    """Describe a run: arguments, seed, versions, time, host and command line."""
    import numpy

    return {
        "cryoal_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command_line": sys.argv,
        "arguments": {k: _jsonable(v) for k, v in arguments.items()},
        "seed": seed,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": numpy.__version__,
        },
        "host": {"platform": platform.platform(), "cuda": torch.cuda.is_available()},
    }


def write_run_config(
    path: str | Path, arguments: dict[str, Any], *, seed: int | None = None
) -> dict[str, Any]:
    """Write :func:`run_record` as JSON to ``path`` (atomically) and return it."""
    record = run_record(arguments, seed=seed)
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return record


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value)

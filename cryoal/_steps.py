"""Step timers: wall and CPU seconds per named step of a round, exclusive of nested steps.

Library code marks its steps with ``with step("embed"): ...``; nothing is recorded
unless a caller collects them with :func:`recording`::

    with recording() as times:
        select_round(...)
    times  # {"read": StepTime(wall=..., cpu=..., calls=...), "train": ..., ...}

A step's time excludes the steps nested in it (reading volumes inside ``embed`` counts
as ``read``), so the times of one recording add up to the recorded span. CPU time is the
process's (:func:`time.process_time`, every thread, DataLoader workers not included).
Recordings nest per thread/context (:mod:`contextvars`); the overhead of an unrecorded
step is one context-variable lookup.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import time
from collections.abc import Iterator

__all__ = ["StepTime", "recording", "step"]


@dataclasses.dataclass
class StepTime:
    """Accumulated time of one step name.

    Attributes
    ----------
    wall, cpu
        Seconds of wall-clock and process CPU time, nested steps excluded.
    calls
        How many times the step ran.
    """

    wall: float = 0.0
    cpu: float = 0.0
    calls: int = 0


class _Recorder:
    def __init__(self) -> None:
        self.times: dict[str, StepTime] = {}
        self.stack: list[list[float]] = []  # per open step: [child wall, child cpu]


_current: contextvars.ContextVar[_Recorder | None] = contextvars.ContextVar(
    "cryoal_steps", default=None
)


@contextlib.contextmanager
def recording() -> Iterator[dict[str, StepTime]]:
    """Collect the steps run inside the block into the yielded ``{name: StepTime}``."""
    rec = _Recorder()
    token = _current.set(rec)
    try:
        yield rec.times
    finally:
        _current.reset(token)


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Time the block as step ``name`` when a :func:`recording` is active."""
    rec = _current.get()
    if rec is None:
        yield
        return
    rec.stack.append([0.0, 0.0])
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        child_wall, child_cpu = rec.stack.pop()
        entry = rec.times.setdefault(name, StepTime())
        entry.wall += wall - child_wall
        entry.cpu += cpu - child_cpu
        entry.calls += 1
        if rec.stack:
            rec.stack[-1][0] += wall
            rec.stack[-1][1] += cpu

"""Step timers: exclusive wall/CPU accounting, no-op without a recording."""

from __future__ import annotations

import time

import pytest

from cryoal._steps import recording, step


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_nested_steps_are_exclusive_and_add_up() -> None:
    with recording() as times:
        t0 = time.perf_counter()
        with step("outer"):
            time.sleep(0.05)
            with step("inner"):
                time.sleep(0.1)
            with step("inner"):
                _spin(0.05)
        span = time.perf_counter() - t0
    assert set(times) == {"outer", "inner"}
    assert times["inner"].calls == 2 and times["outer"].calls == 1
    assert times["inner"].wall >= 0.15 - 1e-3
    assert times["outer"].wall >= 0.05 - 1e-3
    # exclusive times partition the recorded span
    assert times["outer"].wall + times["inner"].wall == pytest.approx(span, abs=5e-3)
    assert times["inner"].cpu >= 0.05 - 1e-3  # the spin is CPU time of this process
    assert times["outer"].cpu < times["inner"].cpu  # sleeping costs (almost) no CPU


def test_steps_without_recording_do_nothing() -> None:
    with step("alone"):
        pass
    with recording() as times:
        pass
    assert times == {}


def test_step_time_counted_when_block_raises() -> None:
    with recording() as times:
        with pytest.raises(ValueError), step("failing"):
            raise ValueError("boom")
    assert times["failing"].calls == 1

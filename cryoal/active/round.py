"""The one round engine: a resumable step machine that every task feeds through its hooks.

A round moves through four recorded steps, each idempotent::

    started ──► trained ──► scored ──► picked
    (labelled   (model saved  (scores + picks  (picks CSV/STAR, gallery,
     set frozen) to models/)   in the DB)        config.json written)

:func:`run_round` decides which round a run works on (:func:`pending_round`: resume an
unfinished one, show a finished one again, or start the next), runs the steps the round
still lacks, times them and marks the round picked. What a step *does* comes from the
task, as a :class:`RoundSteps` object: classification (subtomograms and images,
:class:`cryoal.active.loop.ClassificationRound`, the labels in the project database) and
segmentation (:class:`cryoal.tasks.segmentation.SegmentationRound`, the label maps on
disk) differ only there. Get the steps of a task with :meth:`cryoal.tasks.Task.round_steps`
and run a round with :meth:`cryoal.tasks.Task.select_round`.

Test hook: when the environment variable ``CRYOAL_TEST_KILL_AT`` names a step point
(see :data:`KILL_POINTS` and :func:`kill_point`), the process sends itself SIGKILL
there. The resume tests use it to stop a real ``cryoal select`` at chosen points.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from cryoal._steps import recording, step
from cryoal.active.project import PickRecord, Project, RoundRecord
from cryoal.errors import ConfigError

__all__ = [
    "KILL_POINTS",
    "RoundResult",
    "RoundSteps",
    "kill_point",
    "pending_round",
    "run_round",
]

logger = logging.getLogger(__name__)

#: Where ``CRYOAL_TEST_KILL_AT`` can stop a run (test hook).
KILL_POINTS = (
    "registered",  # pool registered, no round yet
    "started",  # round row written
    "training",  # model trained in memory, checkpoint not yet saved
    "trained",  # checkpoint saved and recorded
    "scoring",  # scores computed in memory, not yet stored
    "scored",  # scores and picks stored
    "picks",  # picks CSV written, STAR/gallery/config not yet
    "picked",  # round complete
)


def kill_point(name: str) -> None:
    """Crash-test hook: SIGKILL this process when ``CRYOAL_TEST_KILL_AT`` equals ``name``.

    Every task's round steps call this at each point where a crash must leave a state
    that a rerun with the same options can continue from. Normally it does nothing.
    When the environment variable ``CRYOAL_TEST_KILL_AT`` is set to ``name``, the
    process logs a warning and sends itself ``SIGKILL`` (no cleanup, no ``finally``
    blocks, no atexit handlers), exactly like ``kill -9`` or the out-of-memory killer.
    The crash-resume tests start a real ``cryoal select`` in a subprocess with
    ``CRYOAL_TEST_KILL_AT=scored`` (say), then run it again without the variable and
    check the picks equal those of an uninterrupted run.

    Parameters
    ----------
    name
        The step point reached, one of :data:`KILL_POINTS`.

    Raises
    ------
    ConfigError
        ``name`` is not in :data:`KILL_POINTS` (a caller typo would otherwise make the
        hook silently unreachable).
    """
    if name not in KILL_POINTS:
        raise ConfigError(f"unknown kill point {name!r}; expected one of {', '.join(KILL_POINTS)}")
    if os.environ.get("CRYOAL_TEST_KILL_AT") == name:
        logger.warning("CRYOAL_TEST_KILL_AT=%s: killing this process (test hook)", name)
        os.kill(os.getpid(), signal.SIGKILL)


class RoundSteps(Protocol):
    """What a task supplies to :func:`run_round` (one object per run, holding its options).

    Each method works on an open project whose writer lock the caller holds; the
    engine calls them in this order and only those a round still lacks.
    """

    def prepare(self, project: Project, pool: Any) -> None:
        """Check the project fits the task and pool, register the pool, resolve options."""

    def resume_key(self) -> dict[str, Any]:
        """The options that define a round's picks (after :meth:`prepare`)."""

    def unchanged(self, project: Project, rnd: RoundRecord) -> bool:
        """Whether the finished round ``rnd``'s inputs (labels, masks) are unchanged."""

    def start(
        self, project: Project, pool: Any, arguments: Mapping[str, Any] | None
    ) -> RoundRecord:
        """Freeze the labelled set and record a new round (status ``started``)."""

    def train(self, project: Project, pool: Any, rnd: RoundRecord) -> None:
        """Train (or copy, or seed) the round's model and mark the round ``trained``."""

    def score(self, project: Project, pool: Any, rnd: RoundRecord) -> None:
        """Score the unlabelled pool, record scores and picks: status ``scored``."""

    def write(
        self,
        project: Project,
        pool: Any,
        rnd: RoundRecord,
        arguments: Mapping[str, Any] | None,
        *,
        out: str | os.PathLike[str] | None,
        mark: bool,
    ) -> dict[str, Path]:
        """Write the picks table (CSV/STAR, and ``out``), gallery and run config.

        ``mark`` is false when a finished round is shown again: files already there are
        kept. Returns the files by kind (``csv``, ``star``, ``gallery``, ``config``, ...).
        """

    def table(
        self, project: Project, pool: Any, rnd: RoundRecord, picks: Sequence[PickRecord]
    ) -> pd.DataFrame:
        """The picks of ``rnd`` as the table written to CSV/STAR (the task's columns)."""


@dataclasses.dataclass(frozen=True)
class RoundResult:
    """What one round of any task produced (:func:`run_round`).

    Attributes
    ----------
    round
        The round as recorded now (number, mode, strategy, labels before it, metrics).
    picks
        Its picks, best first.
    table
        The picks table as written to CSV/STAR (the task's columns).
    files
        Files by kind (``csv``, ``star``, ``gallery``, ``config``, ``out``, ...).
    resumed_from
        The step an unfinished round resumed from (``None`` for a fresh round).
    reused
        True when a finished round was shown again (its inputs unchanged).
    """

    round: RoundRecord
    picks: list[PickRecord]
    table: pd.DataFrame
    files: dict[str, Path]
    resumed_from: str | None
    reused: bool


def pending_round(
    project: Project,
    resume_key: dict[str, Any],
    *,
    new_round: bool,
    restart: bool,
    unchanged: Callable[[RoundRecord], bool],
) -> tuple[RoundRecord | None, bool]:
    """Decide which round a ``select`` run works on; shared by every task's round.

    Returns ``(round, reused)``: an unfinished latest round to resume (``reused`` False),
    the finished latest round to show again (``reused`` True: same options, not
    ``new_round``, and ``unchanged(round)`` says its inputs did not change since), or
    ``(None, False)`` to start a new round.

    Raises
    ------
    ConfigError
        The latest round is unfinished and was started with other options (and not
        ``restart``, which discards it instead).
    """
    latest = project.latest_round()
    if latest is None:
        return None, False
    if latest.status != "picked":
        if restart:
            logger.warning("discarding unfinished round %d (%s)", latest.n, latest.status)
            project.discard_round(latest.n)
            return None, False
        recorded = latest.config.get("resume_key", {})
        diff = sorted(
            k for k in set(resume_key) | set(recorded) if resume_key.get(k) != recorded.get(k)
        )
        if diff:
            shown = ", ".join(f"{k}={recorded.get(k)!r}" for k in diff)
            raise ConfigError(
                f"round {latest.n} of {project.path} is unfinished ({latest.status}) and was "
                f"started with {shown}; re-run with the same options to resume it, or pass "
                "--restart to discard it"
            )
        return latest, False
    if not new_round and latest.config.get("resume_key") == resume_key and unchanged(latest):
        return latest, True
    return None, False


def run_round(
    project: Project,
    pool: Any,
    steps: RoundSteps,
    *,
    arguments: Mapping[str, Any] | None = None,
    out: str | os.PathLike[str] | None = None,
    new_round: bool = False,
    restart: bool = False,
) -> RoundResult:
    """Run, resume or show again one round of any task.

    Parameters
    ----------
    project
        An open project; the caller should hold :meth:`Project.lock`.
    pool
        The task's pool (``ids``, ``box``, ``voxel_size``, ``pool[i]``).
    steps
        The task's round steps with this run's options (:class:`RoundSteps`).
    arguments
        Recorded in the round's ``config.json`` (the command-line arguments).
    out
        Also write the picks table here (``.csv`` or ``.star``).
    new_round
        Start a new round even when the inputs did not change since the last one.
    restart
        Discard an unfinished round instead of resuming it.

    Returns
    -------
    RoundResult
        The round as recorded now, its picks and their table, the files written, the
        step it resumed from and whether it was shown again.

    Notes
    -----
    The wall and CPU seconds of each step this run did (``register``, ``train``,
    ``score``, ``write`` and what the task's steps time inside them, e.g. ``read``,
    ``pretrain``, ``embed``, ``pick``, ``predict``, ``record``, ``gallery``; nested steps
    excluded, see :mod:`cryoal._steps`) are stored in the round's metrics as
    ``step_seconds = {name: [wall, cpu]}`` (not when a finished round is shown again).
    """
    with recording() as times:
        with step("register"):
            steps.prepare(project, pool)
        rnd, reused = pending_round(
            project,
            steps.resume_key(),
            new_round=new_round,
            restart=restart,
            unchanged=lambda r: steps.unchanged(project, r),
        )
        resumed_from = None if rnd is None or reused else rnd.status
        if rnd is None:
            rnd = steps.start(project, pool, arguments)
            kill_point("started")
        elif resumed_from is not None:
            logger.info("resuming round %d from step %r", rnd.n, rnd.status)
        if rnd.status == "started":
            with step("train"):
                steps.train(project, pool, rnd)
            rnd = project.get_round(rnd.n)
        if rnd.status == "trained":
            with step("score"):
                steps.score(project, pool, rnd)
            rnd = project.get_round(rnd.n)
        with step("write"):
            files = steps.write(project, pool, rnd, arguments, out=out, mark=not reused)
        if rnd.status == "scored":
            project.mark_picked(rnd.n)
            kill_point("picked")
    if not reused:
        seconds = {k: [round(v.wall, 4), round(v.cpu, 4)] for k, v in times.items()}
        project.update_metrics(rnd.n, {"step_seconds": seconds})
    rnd = project.get_round(rnd.n)
    picks = project.picks(rnd.n)
    table = steps.table(project, pool, rnd, picks)
    return RoundResult(rnd, picks, table, files, resumed_from, reused)

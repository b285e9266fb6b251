"""Label a round's picks in Jupyter: one click per volume, written to the project at once.

Two layers:

- :class:`LabelSession` — the logic, no GUI: which pick is shown, labelling, "unsure",
  undo, skip/back, progress. Every label goes to the :class:`~cryoal.active.Project`
  the moment it is given (``source="expert"``), so a dead kernel loses nothing. Tests
  and scripts drive it directly.
- :class:`LabelWidget` — the ipywidgets view of a session: the pick's three central
  slices and z projection, its rank, score and prediction, one button per class plus
  ``unsure`` and ``junk``, undo/back/skip, and "12/24 labelled".

Conventions:

``junk``
    A real label (class ``"junk"``): the model learns to recognise junk particles.
``unsure``
    Not a label (nothing to train on): the id is recorded in the project's ``meta``
    table under ``"unsure"`` (``{id: {"round": n, "time": ...}}``), so the doubt is kept
    and ``cryoal label status``-style tools can list it. Marking a labelled pick unsure
    withdraws its label (kept in the history).
undo
    Reverts the last action of this session: a replaced label is restored
    (:meth:`Project.add_labels` with ``overwrite=True``), a first label is withdrawn
    (:meth:`Project.retract_labels`). Either way the undone label stays in the project's
    label history: no label is ever lost.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cryoal.active.project import PickRecord, Project
from cryoal.errors import ConfigError, CryoalError, MissingDependencyError, ProjectError

__all__ = ["JUNK", "UNSURE", "LabelSession", "LabelWidget", "PickView"]

logger = logging.getLogger(__name__)

#: The label given to junk (a class of its own).
JUNK = "junk"
#: The button that records doubt instead of a label.
UNSURE = "unsure"
#: Project meta key holding the ids marked unsure.
UNSURE_KEY = "unsure"


@dataclass(frozen=True)
class PickView:
    """What the widget shows about the current pick."""

    position: int
    total: int
    rank: int
    id: str
    score: float | None
    predicted: str | None
    confidence: float | None
    label: str | None
    unsure: bool


@dataclass(frozen=True)
class _Action:
    id: str
    before_label: str | None
    before_unsure: bool
    position: int


class LabelSession:
    """Label the picks of one round of a project, one volume at a time.

    Parameters
    ----------
    project
        An open, writable :class:`~cryoal.active.Project`.
    pool
        The pool the project was built on, to read volumes from (default: the files
        registered in the project, read with :func:`cryoal.io.read_volume`).
    round
        Round whose picks to label (default: the latest round that has picks).
    classes
        Class buttons (default: the project's classes). Needed for a first round of a
        project without labels.
    annotator
        Recorded with every label.

    Raises
    ------
    ProjectError
        The project is read-only or has no round with picks.
    ConfigError
        No classes known and none given.
    """

    def __init__(
        self,
        project: Project,
        pool: Any = None,
        *,
        round: int | None = None,
        classes: Sequence[str] | None = None,
        annotator: str | None = None,
    ) -> None:
        if project.readonly:
            raise ProjectError(
                f"project {project.path} is open read-only; open it for writing to label"
            )
        self.project = project
        self.pool = pool
        self.annotator = annotator
        if round is None:
            done = [r for r in project.rounds() if r.reached("scored")]
            if not done:
                raise ProjectError(
                    f"project {project.path} has no round with picks yet; run a round first "
                    "(cryoal select --project DIR ..., or cryoal.active.loop.select_round)"
                )
            round = done[-1].n
        self.round = project.get_round(round).n
        self.picks: list[PickRecord] = project.picks(self.round)
        if not self.picks:
            raise ProjectError(f"round {self.round} of {project.path} has no picks to label")
        names = list(classes) if classes is not None else project.class_names
        names = [c for c in names if c not in (JUNK, UNSURE)]
        if not names:
            raise ConfigError(
                f"project {project.path} knows no classes yet; pass classes=[...] "
                "(the names of the structures you expect)"
            )
        self.classes = names
        self.position = 0
        self._undo: list[_Action] = []
        self._entries: dict[str, Any] | None = None
        first = self.first_unlabelled()
        self.position = first if first is not None else 0

    # ------------------------------------------------------------------ state
    @property
    def buttons(self) -> list[str]:
        """Button labels in order: the classes, then ``junk`` and ``unsure``."""
        return [*self.classes, JUNK, UNSURE]

    def _labels(self) -> dict[str, str]:
        return self.project.label_map()

    def _unsure(self) -> dict[str, Any]:
        return dict(self.project.get_meta(UNSURE_KEY, {}))

    def label_of(self, vid: str) -> str | None:
        """The id's current label in the project, or ``None``."""
        return self._labels().get(vid)

    def is_unsure(self, vid: str) -> bool:
        """Whether the id is marked unsure."""
        return vid in self._unsure()

    def counts(self) -> tuple[int, int, int]:
        """``(labelled, unsure, total)`` over this round's picks."""
        labels, unsure = self._labels(), self._unsure()
        ids = [p.id for p in self.picks]
        return sum(i in labels for i in ids), sum(i in unsure for i in ids), len(ids)

    def progress_text(self) -> str:
        """``"12/24 labelled"`` (plus ``", 2 unsure"`` when any)."""
        done, unsure, total = self.counts()
        return f"{done}/{total} labelled" + (f", {unsure} unsure" if unsure else "")

    @property
    def finished(self) -> bool:
        """Every pick has a label or is marked unsure."""
        done, unsure, total = self.counts()
        return done + unsure == total

    def first_unlabelled(self) -> int | None:
        """Position of the first pick with neither label nor unsure mark."""
        labels, unsure = self._labels(), self._unsure()
        for i, p in enumerate(self.picks):
            if p.id not in labels and p.id not in unsure:
                return i
        return None

    def current(self) -> PickView:
        """The pick at :attr:`position`."""
        p = self.picks[self.position]
        conf = None
        if p.predicted is not None and p.probabilities:
            conf = p.probabilities.get(p.predicted)
        return PickView(
            position=self.position,
            total=len(self.picks),
            rank=p.rank,
            id=p.id,
            score=p.score,
            predicted=p.predicted,
            confidence=conf,
            label=self.label_of(p.id),
            unsure=self.is_unsure(p.id),
        )

    def volume(self, position: int | None = None) -> Any:
        """The volume of a pick as a `(D, H, W)` float32 array."""
        from cryoal.viz import as_volume_array

        vid = self.picks[self.position if position is None else position].id
        if self.pool is not None:
            return as_volume_array(self.pool[self.pool.index_of(vid)])
        from cryoal.io import read_volume

        if self._entries is None:
            self._entries = {e.id: e for e in self.project.pool_entries()}
        root = self.project.get_meta("pool_root")
        entry = self._entries[vid]
        index = int(vid.rsplit("#", 1)[1]) if "#" in vid else None
        return read_volume(Path(root) / entry.path, index=index).data

    # ------------------------------------------------------------------ navigation
    def goto(self, position: int) -> PickView:
        """Show the pick at ``position`` (0-based)."""
        if not 0 <= position < len(self.picks):
            raise ConfigError(f"position {position} is outside 0..{len(self.picks) - 1}")
        self.position = position
        return self.current()

    def next(self) -> PickView:
        """Skip to the next pick (stays on the last one)."""
        self.position = min(self.position + 1, len(self.picks) - 1)
        return self.current()

    def back(self) -> PickView:
        """Go back one pick (stays on the first one)."""
        self.position = max(self.position - 1, 0)
        return self.current()

    # ------------------------------------------------------------------ labelling
    def label(self, name: str) -> PickView:
        """Give the current pick label ``name`` (a class, ``junk`` or ``unsure``), then
        move to the next pick. Written to the project before returning."""
        if name not in self.buttons:
            raise ConfigError(f"{name!r} is not one of the buttons: {', '.join(self.buttons)}")
        p = self.picks[self.position]
        before = self.label_of(p.id)
        was_unsure = self.is_unsure(p.id)
        if name == UNSURE:
            if before is not None:
                self.project.retract_labels([p.id])
            self._set_unsure(p.id, True)
        elif before != name:
            self.project.add_labels(
                {p.id: name},
                source="expert",
                annotator=self.annotator,
                round=self.round,
                overwrite=before is not None,
                allow_new_classes=True,
                where="label widget",
            )
            if was_unsure:
                self._set_unsure(p.id, False)
        elif was_unsure:
            self._set_unsure(p.id, False)
        self._undo.append(_Action(p.id, before, was_unsure, self.position))
        logger.info("round %d: %s -> %s", self.round, p.id, name)
        return self.next()

    def can_undo(self) -> bool:
        """Whether this session has an action to undo."""
        return bool(self._undo)

    def undo(self) -> PickView:
        """Revert the last label (or unsure mark) of this session and show that pick.

        Raises
        ------
        ConfigError
            Nothing to undo.
        """
        if not self._undo:
            raise ConfigError("nothing to undo in this labelling session")
        action = self._undo.pop()
        now = self.label_of(action.id)
        if action.before_label is None:
            if now is not None:
                self.project.retract_labels([action.id])
        elif now != action.before_label:
            self.project.add_labels(
                {action.id: action.before_label},
                source="expert",
                annotator=self.annotator,
                round=self.round,
                overwrite=now is not None,
                allow_new_classes=True,
                where="label widget (undo)",
            )
        if self.is_unsure(action.id) != action.before_unsure:
            self._set_unsure(action.id, action.before_unsure)
        self.position = action.position
        return self.current()

    def _set_unsure(self, vid: str, flag: bool) -> None:
        marks = self._unsure()
        if flag:
            marks[vid] = {
                "round": self.round,
                "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
        else:
            marks.pop(vid, None)
        self.project.set_meta(UNSURE_KEY, marks)


def _require_ipywidgets() -> Any:
    try:
        import ipywidgets
    except ImportError as exc:
        raise MissingDependencyError(
            "the labelling widget needs ipywidgets; install the notebook extra: "
            "pip install 'cryoal[notebook]'"
        ) from exc
    return ipywidgets


def pick_png(
    volume: Any, *, percentiles: tuple[float, float] = (1.0, 99.0), dpi: int = 80
) -> bytes:
    """PNG bytes of a pick's three central slices and z projection (one row of panels)."""
    from cryoal.viz import plot_volume

    fig = plot_volume(volume, title=None, percentiles=percentiles, panel_inches=1.6, dpi=dpi)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class LabelWidget:
    """Jupyter view of a :class:`LabelSession` (display it as a cell's value).

    Parameters
    ----------
    project, pool, round, classes, annotator
        See :class:`LabelSession`.

    Attributes
    ----------
    session
        The logic; ``widget.session.label("ribosome")`` does what a click does.
    view
        The ipywidgets ``VBox`` (for :func:`ipywidgets.embed.embed_minimal_html`).
    buttons
        ``{name: Button}`` for the classes, ``junk`` and ``unsure``; ``back``, ``skip``
        and ``undo`` are in :attr:`nav`.

    Raises
    ------
    MissingDependencyError
        ipywidgets is not installed.
    """

    def __init__(
        self,
        project: Project,
        pool: Any = None,
        *,
        round: int | None = None,
        classes: Sequence[str] | None = None,
        annotator: str | None = None,
    ) -> None:
        w = _require_ipywidgets()
        self.session = LabelSession(
            project, pool, round=round, classes=classes, annotator=annotator
        )
        self.image = w.Image(format="png", layout=w.Layout(width="520px"))
        self.caption = w.HTML()
        self.progress = w.IntProgress(min=0, max=len(self.session.picks), description="")
        self.progress_label = w.HTML()
        self.buttons: dict[str, Any] = {}
        for name in self.session.buttons:
            style = "danger" if name == JUNK else "warning" if name == UNSURE else "primary"
            b = w.Button(description=name, button_style=style, tooltip=f"label as {name}")
            b.on_click(lambda _b, n=name: self._do(self.session.label, n))
            self.buttons[name] = b
        self.nav = {
            "back": w.Button(description="◀ back", tooltip="previous pick"),
            "skip": w.Button(description="skip ▶", tooltip="next pick without labelling"),
            "undo": w.Button(description="↶ undo", tooltip="undo the last label"),
        }
        self.nav["back"].on_click(lambda _b: self._do(self.session.back))
        self.nav["skip"].on_click(lambda _b: self._do(self.session.next))
        self.nav["undo"].on_click(lambda _b: self._do(self.session.undo))
        self.message = w.HTML()
        title = w.HTML(
            f"<b>round {self.session.round}</b> · {len(self.session.picks)} picks · "
            f"{project.path.name}"
        )
        self.view = w.VBox(
            [
                title,
                self.image,
                self.caption,
                w.HBox(list(self.buttons.values()), layout=w.Layout(flex_flow="row wrap")),
                w.HBox([*self.nav.values(), self.progress, self.progress_label]),
                self.message,
            ]
        )
        self.refresh()

    def _do(self, action: Any, *args: Any) -> None:
        import html

        try:
            action(*args)
            self.message.value = ""
        except CryoalError as exc:  # a click cannot raise to the user: show it instead
            self.message.value = f'<span style="color:#a00">{html.escape(str(exc))}</span>'
        self.refresh()

    def refresh(self) -> None:
        """Redraw the current pick, its caption, the buttons and the progress."""
        s = self.session
        view = s.current()
        self.image.value = pick_png(s.volume())
        self.caption.value = self.caption_html(view)
        done, unsure, total = s.counts()
        self.progress.value = done + unsure
        self.progress_label.value = s.progress_text() + (" · all done" if s.finished else "")
        for name, b in self.buttons.items():
            chosen = (name == UNSURE and view.unsure) or (view.label == name)
            b.icon = "check" if chosen else ""
        self.nav["undo"].disabled = not s.can_undo()
        self.nav["back"].disabled = view.position == 0
        self.nav["skip"].disabled = view.position == view.total - 1

    @staticmethod
    def caption_html(view: PickView) -> str:
        """One line about the pick: position, rank, id, score, prediction, current label."""
        parts = [
            f"<b>{view.position + 1}/{view.total}</b>",
            f"rank {view.rank}",
            f"<code>{view.id}</code>",
        ]
        if view.score is not None:
            parts.append(f"score {view.score:.4g}")
        if view.predicted is not None:
            conf = f" ({view.confidence:.2f})" if view.confidence is not None else ""
            parts.append(f"predicted <b>{view.predicted}</b>{conf}")
        if view.label is not None:
            parts.append(f"label: <b>{view.label}</b>")
        elif view.unsure:
            parts.append("marked <b>unsure</b>")
        else:
            parts.append("not labelled")
        return " · ".join(parts)

    def snapshot_html(self) -> str:
        """A static HTML rendering of the widget's current state (image inline as base64),
        readable without any JavaScript: for screenshots and e-mails."""
        import base64
        import html

        img = base64.b64encode(self.image.value).decode("ascii")
        buttons = "".join(
            f'<button style="margin:2px;padding:4px 10px">{html.escape(n)}</button>'
            for n in [*self.buttons, *(b.description for b in self.nav.values())]
        )
        return (
            '<div style="font-family:sans-serif;font-size:13px">'
            f"<div><b>round {self.session.round}</b> · {len(self.session.picks)} picks</div>"
            f'<img src="data:image/png;base64,{img}" width="520">'
            f"<div>{self.caption.value}</div><div>{buttons}</div>"
            f"<div>{html.escape(self.progress_label.value)}</div></div>"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.view._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return (
            f"LabelWidget(round {self.session.round}, {self.session.progress_text()}, "
            f"pick {self.session.position + 1}/{len(self.session.picks)})"
        )

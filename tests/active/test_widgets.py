"""The labelling widget, driven headless: LabelSession logic and the ipywidgets view."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cryoal.active import Project
from cryoal.active.loop import register_pool
from cryoal.active.widgets import JUNK, UNSURE, LabelSession, LabelWidget
from cryoal.errors import ConfigError, ProjectError
from cryoal.io import VolumePool, read_volume

N_PICKS = 6


def _picked_project(path: Path, root: Path, truth: pd.DataFrame) -> tuple[Project, VolumePool]:
    """A project whose round 1 picked the first N_PICKS volumes not labelled at start."""
    pool = VolumePool.from_directory(root)
    project = Project(path)
    register_pool(project, pool)
    first = truth.iloc[:6]
    project.add_labels(dict(zip(first["id"], first["label"], strict=True)), source="import")
    rnd = project.start_round(strategy="entropy", budget=N_PICKS, seed=0, mode="score", config={})
    project.mark_trained(rnd.n, None, {})
    classes = project.class_names
    picks = [vid for vid in pool.ids if vid not in set(first["id"])][:N_PICKS]
    scores = []
    for k, vid in enumerate(picks):
        probs = {c: (0.6 if j == k % len(classes) else 0.2) for j, c in enumerate(classes)}
        scores.append((vid, 1.0 - 0.1 * k, classes[k % len(classes)], probs))
    project.record_scores(rnd.n, scores, [(vid, s) for vid, s, _, _ in scores])
    project.mark_picked(rnd.n)
    return project, pool


@pytest.fixture
def picked(
    tmp_path: Path, sim_pool_master: tuple[Path, pd.DataFrame]
) -> tuple[Project, VolumePool]:
    root, truth = sim_pool_master
    project, pool = _picked_project(tmp_path / "proj", root, truth)
    yield project, pool
    project.close()


def _fresh(project: Project) -> Project:
    """A second connection, as another process (or a restarted kernel) would open."""
    return Project(project.path, readonly=True)


def test_session_starts_at_first_unlabelled_pick(picked: tuple[Project, VolumePool]) -> None:
    project, pool = picked
    s = LabelSession(project, pool, annotator="ana")
    assert s.round == 1
    assert s.buttons == ["ball", "rod", "shell", JUNK, UNSURE]
    assert s.progress_text() == "0/6 labelled"
    view = s.current()
    assert (view.position, view.total, view.rank) == (0, 6, 1)
    assert view.score == pytest.approx(1.0)
    assert view.predicted == "ball" and view.confidence == pytest.approx(0.6)
    assert view.label is None and not view.unsure


def test_label_is_written_immediately_and_advances(picked: tuple[Project, VolumePool]) -> None:
    project, pool = picked
    s = LabelSession(project, pool, annotator="ana")
    first = s.current().id
    after = s.label("rod")
    assert after.position == 1
    other = _fresh(project)
    try:
        rec = {r.id: r for r in other.labels()}[first]
        assert (rec.label, rec.source, rec.annotator, rec.round) == ("rod", "expert", "ana", 1)
    finally:
        other.close()
    assert s.progress_text() == "1/6 labelled"


def test_undo_first_label_withdraws_it_into_history(picked: tuple[Project, VolumePool]) -> None:
    project, pool = picked
    s = LabelSession(project, pool)
    vid = s.current().id
    s.label("shell")
    seq_labelled = project._max_seq()
    back = s.undo()
    assert back.position == 0 and back.id == vid and back.label is None
    assert vid not in project.label_map()
    hist = project.label_history(vid)
    assert [(h["label"], h["source"]) for h in hist] == [("shell", "expert")]
    assert hist[0]["replaced_seq"] == seq_labelled + 1
    # the label as it stood before the undo is still reconstructable; after it, it is gone
    assert project.label_map(as_of_seq=seq_labelled)[vid] == "shell"
    assert vid not in project.label_map(as_of_seq=project._max_seq())
    assert s.progress_text() == "0/6 labelled"
    assert not s.can_undo()


def test_relabel_then_undo_restores_previous_label(picked: tuple[Project, VolumePool]) -> None:
    project, pool = picked
    s = LabelSession(project, pool)
    vid = s.current().id
    s.label("ball")
    s.back()
    s.label("rod")
    assert project.label_map()[vid] == "rod"
    s.undo()
    assert project.label_map()[vid] == "ball"
    assert [h["label"] for h in project.label_history(vid)] == ["ball", "rod"]
    s.undo()
    assert vid not in project.label_map()
    assert [h["label"] for h in project.label_history(vid)] == ["ball", "rod", "ball"]


def test_same_label_twice_writes_nothing_new(picked: tuple[Project, VolumePool]) -> None:
    project, pool = picked
    s = LabelSession(project, pool)
    vid = s.current().id
    s.label("ball")
    seq = project._max_seq()
    s.back()
    s.label("ball")
    assert project._max_seq() == seq
    assert project.label_history(vid) == []


def test_unsure_is_recorded_but_not_a_label(picked: tuple[Project, VolumePool]) -> None:
    project, pool = picked
    s = LabelSession(project, pool)
    vid = s.current().id
    s.label(UNSURE)
    assert vid not in project.label_map()
    assert project.get_meta("unsure")[vid]["round"] == 1
    assert s.progress_text() == "0/6 labelled, 1 unsure"
    s.back()
    assert s.current().unsure
    s.label("shell")  # changing one's mind clears the doubt
    assert project.get_meta("unsure") == {}
    s.undo()
    assert s.current().unsure and vid not in project.label_map()
    s.undo()
    assert not s.current().unsure


def test_unsure_on_a_labelled_pick_withdraws_the_label(picked: tuple[Project, VolumePool]) -> None:
    project, pool = picked
    s = LabelSession(project, pool)
    vid = s.current().id
    s.label("rod")
    s.back()
    s.label(UNSURE)
    assert vid not in project.label_map() and s.is_unsure(vid)
    s.undo()
    assert project.label_map()[vid] == "rod" and not s.is_unsure(vid)


def test_junk_is_a_class_of_its_own(picked: tuple[Project, VolumePool]) -> None:
    project, pool = picked
    s = LabelSession(project, pool)
    vid = s.current().id
    s.label(JUNK)
    assert project.label_map()[vid] == "junk"
    assert "junk" in project.class_names
    assert LabelSession(project, pool).buttons == ["ball", "rod", "shell", JUNK, UNSURE]


def test_finishing_and_resuming_a_round(picked: tuple[Project, VolumePool]) -> None:
    project, pool = picked
    s = LabelSession(project, pool)
    for k in range(N_PICKS - 1):
        s.label(("ball", "rod", UNSURE)[k % 3])
    assert not s.finished and s.current().position == N_PICKS - 1
    again = LabelSession(project, pool)  # a new session resumes at the first open pick
    assert again.position == N_PICKS - 1
    again.label("shell")
    assert again.finished and again.progress_text() == "5/6 labelled, 1 unsure"
    assert again.current().position == N_PICKS - 1  # stays on the last pick


def test_navigation_bounds_and_errors(picked: tuple[Project, VolumePool]) -> None:
    project, pool = picked
    s = LabelSession(project, pool)
    assert s.back().position == 0
    assert s.goto(5).position == 5
    assert s.next().position == 5
    with pytest.raises(ConfigError, match=r"^position 6 is outside 0\.\.5$"):
        s.goto(6)
    with pytest.raises(ConfigError, match=r"^nothing to undo in this labelling session$"):
        s.undo()
    with pytest.raises(
        ConfigError, match=r"^'Rod' is not one of the buttons: ball, rod, shell, junk, unsure$"
    ):
        s.label("Rod")


def test_volumes_from_registered_files_match_the_pool(picked: tuple[Project, VolumePool]) -> None:
    project, pool = picked
    with_pool = LabelSession(project, pool)
    without = LabelSession(project)
    for pos in (0, 3):
        vid = with_pool.picks[pos].id
        expected = read_volume(pool.root / vid).data
        np.testing.assert_array_equal(with_pool.volume(pos), expected)
        np.testing.assert_array_equal(without.volume(pos), expected)


def test_session_errors(tmp_path: Path, sim_pool_master: tuple[Path, pd.DataFrame]) -> None:
    root, _ = sim_pool_master
    project = Project(tmp_path / "empty")
    try:
        register_pool(project, VolumePool.from_directory(root))
        with pytest.raises(ProjectError, match="has no round with picks yet"):
            LabelSession(project)
        rnd = project.start_round(strategy="random", budget=2, seed=0, mode="cold", config={})
        project.mark_trained(rnd.n, None, {})
        ids = project.pool_ids()[:2]
        project.record_scores(rnd.n, [(i, None, None, None) for i in ids], [(i, None) for i in ids])
        with pytest.raises(ConfigError, match=r"knows no classes yet; pass classes=\[\.\.\.\]"):
            LabelSession(project)
        s = LabelSession(project, classes=["ribosome", "proteasome"])
        assert s.buttons == ["ribosome", "proteasome", JUNK, UNSURE]
        assert s.current().predicted is None and s.current().confidence is None
    finally:
        project.close()
    readonly = Project(tmp_path / "empty", readonly=True)
    try:
        with pytest.raises(ProjectError, match="open read-only"):
            LabelSession(readonly)
    finally:
        readonly.close()


def test_labels_survive_a_killed_kernel(picked: tuple[Project, VolumePool]) -> None:
    project, _ = picked
    code = textwrap.dedent(
        f"""
        import os, signal
        from cryoal.active import Project
        from cryoal.active.widgets import LabelSession
        s = LabelSession(Project({str(project.path)!r}), annotator="ana")
        s.label("rod"); s.label("shell")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    picks = [p.id for p in project.picks(1)]
    labels = _fresh(project).label_map()
    assert [labels.get(v) for v in picks[:3]] == ["rod", "shell", None]


# ---------------------------------------------------------------------- the ipywidgets view
def test_widget_buttons_drive_the_session(picked: tuple[Project, VolumePool]) -> None:
    pytest.importorskip("ipywidgets")
    project, pool = picked
    w = LabelWidget(project, pool, annotator="ana")
    assert list(w.buttons) == ["ball", "rod", "shell", "junk", "unsure"]
    assert w.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert w.progress_label.value == "0/6 labelled"
    assert "predicted <b>ball</b> (0.60)" in w.caption.value
    assert w.nav["undo"].disabled and w.nav["back"].disabled
    vid = w.session.current().id
    w.buttons["shell"].click()
    assert project.label_map()[vid] == "shell"
    assert w.progress_label.value == "1/6 labelled"
    assert w.progress.value == 1
    assert w.caption.value.startswith("<b>2/6</b>")
    assert not w.nav["undo"].disabled
    w.nav["back"].click()
    assert w.buttons["shell"].icon == "check" and w.buttons["rod"].icon == ""
    w.nav["undo"].click()
    assert vid not in project.label_map()
    assert w.progress_label.value == "0/6 labelled"
    w.nav["undo"].click()  # nothing left: shown in the widget, not raised
    assert "nothing to undo" in w.message.value
    w.nav["skip"].click()
    assert w.session.position == 1 and w.message.value == ""
    assert "LabelWidget(round 1, 0/6 labelled, pick 2/6)" == repr(w)


def test_widget_snapshot_and_mimebundle(picked: tuple[Project, VolumePool]) -> None:
    pytest.importorskip("ipywidgets")
    project, pool = picked
    w = LabelWidget(project, pool)
    html = w.snapshot_html()
    assert html.count("<button") == 5 + 3
    assert "data:image/png;base64," in html and "0/6 labelled" in html
    bundle = w._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle


# ---------------------------------------------------------------------- rendering in Chromium
def _chromium() -> str | None:
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _output_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import os

    env = os.environ.get("CRYOAL_TEST_OUTPUT")
    out = Path(env) if env else tmp_path_factory.getbasetemp() / "test-output"
    out.mkdir(parents=True, exist_ok=True)
    return out


def test_widget_renders_in_headless_chromium(
    picked: tuple[Project, VolumePool], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The widget's embedded HTML page (ipywidgets ``embed_minimal_html``) rendered by a real
    browser. Offline, the widget manager script (a CDN) does not load; the page then shows
    the widget's static snapshot, which is what the screenshot checks."""
    pytest.importorskip("ipywidgets")
    from ipywidgets.embed import embed_minimal_html
    from PIL import Image

    browser = _chromium()
    if browser is None:
        pytest.skip(
            "no Chromium found: install it with `apt-get install -y chromium` "
            "(.ci/run does) to run the rendering test"
        )
    project, pool = picked
    w = LabelWidget(project, pool)
    w.buttons["rod"].click()
    static = w.snapshot_html().replace("{", "{{").replace("}", "}}")
    template = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head>"
        f"<body style='background:#fff;margin:8px'>{static}{{snippet}}</body></html>"
    )
    out = _output_dir(tmp_path_factory)
    page = out / "label_widget.html"
    embed_minimal_html(page, views=[w.view], title="cryoal label widget", template=template)
    shot = out / "label_widget.png"
    shot.unlink(missing_ok=True)
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=700,420",
            f"--screenshot={shot}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file(), (
        f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-500:]}"
    )
    with Image.open(shot) as im:
        img = np.asarray(im.convert("L"), dtype=np.float64)
    assert img.shape == (420, 700)
    assert img.std() > 20.0  # not a blank page
    # the pick's four panels: many grey levels in the image band below the title
    band = img[30:200, 10:510]
    assert len(np.unique(band)) > 100
    assert "1/6 labelled" in page.read_text(encoding="utf-8")

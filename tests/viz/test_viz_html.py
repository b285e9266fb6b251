"""Rich HTML views (_repr_html_) of Volume, VolumePool, Selection and Project."""

from __future__ import annotations

import base64
import io
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cryoal.acquisition import Selection
from cryoal.active import Project
from cryoal.active.loop import register_pool
from cryoal.io import VolumePool, read_volume


def _images(html: str) -> list[np.ndarray]:
    out = []
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', html):
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            out.append(np.asarray(im.convert("L")))
    return out


def test_volume_html(volume_file: Path) -> None:
    html = read_volume(volume_file)._repr_html_()
    assert "<b>Volume</b> ramp.mrc" in html
    assert "6×8×10" in html and "8.5 Å" in html and "1, 2, 3 Å" in html
    assert "5.1 × 6.8 × 8.5 nm" in html
    imgs = _images(html)
    assert [im.shape for im in imgs] == [(8, 10), (6, 10), (6, 8), (8, 10)]
    # ramp along x in the z slice: grey rises left to right
    assert imgs[0][4, 0] < imgs[0][4, 5] < imgs[0][4, 9]


def test_pool_html(small_pool: VolumePool) -> None:
    html = small_pool._repr_html_()
    assert "<b>VolumePool</b>" in html and "16×16×16" in html and "12 Å" in html
    assert "4 (80 %)" in html
    assert re.search(r"ring</td><td[^>]*>3<", html) and re.search(r"rod</td><td[^>]*>1<", html)
    assert len(_images(html)) == 5
    short = small_pool.subset([0, 1, 2, 3, 4])
    assert "first 2 of 5" in __import__("cryoal.viz._html", fromlist=["x"]).pool_html(
        short, max_items=2
    )


def test_pool_html_names_an_unreadable_volume(small_pool: VolumePool, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(small_pool.root, root)
    pool = VolumePool.from_directory(root)
    (root / "p1.mrc").write_bytes(b"not an mrc")
    html = pool._repr_html_()
    assert len(_images(html)) == 4
    assert "p1.mrc: " in html and "color:#a00" in html


def test_selection_html(small_pool: VolumePool) -> None:
    from cryoal.viz._html import selection_html

    sel = Selection(torch.tensor([4, 0, 2]), torch.tensor([0.9, 0.45, float("nan")]), "entropy")
    html = sel._repr_html_()
    assert "<b>Selection</b> · entropy · 3 picks · scores 0.45 … 0.9" in html
    ranks = re.findall(r"<tr><td[^>]*>(\d+)</td><td[^>]*>(\d+)</td>", html)
    assert ranks == [("1", "4"), ("2", "0"), ("3", "2")]
    assert "width:80px" in html and "width:40px" in html and "width:0px" in html
    with_pool = selection_html(sel, small_pool)
    assert "p4.mrc" in with_pool and len(_images(with_pool)) == 3


def test_project_html(tmp_path: Path, small_pool: VolumePool) -> None:
    project = Project(tmp_path / "proj")
    try:
        assert "no rounds yet" in project._repr_html_()
        register_pool(project, small_pool)
        project.add_labels({"p0.mrc": "ring", "p2.mrc": "rod"})
        rnd = project.start_round(strategy="entropy", budget=2, seed=0, mode="train", config={})
        project.mark_trained(rnd.n, None, {"test_accuracy": 0.75})
        project.record_scores(
            rnd.n,
            [("p3.mrc", 0.8, "ring", {"ring": 0.7, "rod": 0.3}), ("p1.mrc", 0.2, "rod", None)],
            [("p3.mrc", 0.8), ("p1.mrc", 0.2)],
        )
        project.mark_picked(rnd.n)
        project.add_labels({"p3.mrc": "ring"}, source="expert")
        html = project._repr_html_()
    finally:
        project.close()
    assert "<b>Project</b>" in html and "5 volumes" in html
    assert re.search(r"ring</td><td[^>]*>2<", html)
    assert "0.75" in html and "entropy" in html
    assert "#1 p3.mrc<br>score 0.8<br>pred ring<br><b>ring</b>" in html
    assert len(_images(html)) == 2

"""Rich HTML views (``_repr_html_``) of volumes, pools, selections and projects.

Thumbnails are inline base64 PNGs (no files, no network), grey range from the 1st–99th
percentiles of each image. The classes declare their kind with one line each, without
importing this module (:mod:`cryoal._repr`)::

    _repr_html_ = html_view("volume")

and this module registers :data:`RENDERERS` there when imported (``cryoal/__init__.py``
names it as the provider, so the first rich display imports it). A renderer never
raises for a volume it cannot read: the thumbnail says why instead.
"""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cryoal._repr import register_html
from cryoal.errors import CryoalError

__all__ = [
    "RENDERERS",
    "pool_html",
    "project_html",
    "selection_html",
    "thumbnail_img",
    "volume_html",
]

logger = logging.getLogger(__name__)

_STYLE = "font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; font-size: 12px;"
_TABLE = "border-collapse: collapse; margin: 4px 0;"
_CELL = "padding: 1px 8px; text-align: left; border-bottom: 1px solid #ddd;"


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def thumbnail_img(image: np.ndarray, *, size: int = 72, title: str = "") -> str:
    """An ``<img>`` tag holding ``image`` (2D) as an inline PNG, scaled to ``size`` px."""
    from cryoal.viz.views import image_png

    data = base64.b64encode(image_png(image)).decode("ascii")
    h, w = image.shape
    scale = size / max(h, w)
    return (
        f'<img src="data:image/png;base64,{data}" width="{round(w * scale)}" '
        f'height="{round(h * scale)}" title="{_esc(title)}" alt="{_esc(title)}" '
        'style="image-rendering: pixelated; margin: 1px;">'
    )


def _views_html(volume: Any, size: int) -> str:
    from cryoal.viz.views import PANEL_TITLES, orthogonal_views

    return "".join(
        thumbnail_img(v, size=size, title=t)
        for v, t in zip(orthogonal_views(volume), PANEL_TITLES, strict=True)
    )


def _unavailable(what: str, exc: BaseException) -> str:
    return f'<span style="color:#a00">{_esc(what)}: {_esc(exc)}</span>'


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f'<th style="{_CELL}">{_esc(h)}</th>' for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_CELL}">{c}</td>' for c in row) + "</tr>" for row in rows
    )
    return f'<table style="{_TABLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if np.isnan(value) else f"{value:.{digits}g}"
    return _esc(value)


def volume_html(volume: Any, *, size: int = 96) -> str:
    """HTML card of one :class:`cryoal.io.Volume`: source, shape, voxel size, statistics
    and the four views (three central slices and the z projection)."""
    data = np.asarray(volume.data, dtype=np.float32)
    name = Path(volume.path).name + (f"#{volume.index}" if volume.index is not None else "")
    shape = "×".join(str(s) for s in data.shape)
    rows = [
        ["shape (D, H, W)", shape],
        ["voxel size", f"{volume.voxel_size:g} Å"],
        ["box edge", " × ".join(f"{s * volume.voxel_size / 10:g}" for s in data.shape) + " nm"],
        ["origin (x, y, z)", ", ".join(f"{o:g}" for o in volume.origin) + " Å"],
        [
            "mean ± std",
            f"{float(data.mean()):.4g} ± {float(data.std()):.4g}",
        ],
        ["min / max", f"{float(data.min()):.4g} / {float(data.max()):.4g}"],
    ]
    try:
        views = _views_html(volume, size)
    except (CryoalError, ValueError) as exc:
        views = _unavailable("no views", exc)
    return (
        f'<div style="{_STYLE}"><b>Volume</b> {_esc(name)}'
        f"<div>{views}</div>"
        f"{_table(['', ''], [[_esc(a), _esc(b)] for a, b in rows])}</div>"
    )


def _item_thumb(pool: Any, index: int, size: int) -> str:
    from cryoal.viz.views import as_volume_array

    vid = pool.ids[index]
    try:
        vol = as_volume_array(pool[index])
    except (OSError, CryoalError, ValueError) as exc:
        return _unavailable(str(vid), exc)
    d = vol.shape[0]
    return thumbnail_img(vol[d // 2], size=size, title=f"{vid} (central z slice)")


def pool_html(pool: Any, *, max_items: int = 8, size: int = 64) -> str:
    """HTML card of a :class:`cryoal.io.VolumePool`: counts, box, voxel size, labels per
    class and the central z slice of the first ``max_items`` volumes."""
    n = len(pool)
    try:
        box = "×".join(str(s) for s in pool.box)
        voxel = f"{pool.voxel_size:g} Å"
    except (OSError, CryoalError, ValueError) as exc:
        box, voxel = "?", _unavailable("header", exc)
    labels = list(getattr(pool, "labels", [None] * n))
    n_lab = sum(lab is not None for lab in labels)
    rows = [
        ["volumes", f"{n:,}"],
        ["box (D, H, W)", box],
        ["voxel size", voxel],
        ["root", _esc(pool.root)],
        ["labelled", f"{n_lab:,} ({100.0 * n_lab / n:.0f} %)" if n else "0"],
    ]
    counts: dict[str, int] = {}
    for lab in labels:
        if lab is not None:
            counts[lab] = counts.get(lab, 0) + 1
    class_table = ""
    if counts:
        class_table = _table(["class", "labelled"], [[_esc(c), counts[c]] for c in sorted(counts)])
    shown = min(n, max_items)
    thumbs = "".join(_item_thumb(pool, i, size) for i in range(shown))
    more = f" (first {shown} of {n:,})" if shown < n else ""
    return (
        f'<div style="{_STYLE}"><b>VolumePool</b>'
        f"{_table(['', ''], [[_esc(a), b] for a, b in rows])}{class_table}"
        f"<div>central z slices{_esc(more)}:</div><div>{thumbs}</div></div>"
    )


def selection_html(selection: Any, pool: Any = None, *, max_items: int = 24, size: int = 56) -> str:
    """HTML card of a :class:`cryoal.acquisition.Selection`: strategy, count, score range
    and the ranked picks (pool index, score; with ``pool`` also the id and a thumbnail)."""
    idx = [int(i) for i in selection.indices.tolist()]
    scores = [float(s) for s in selection.scores.detach().cpu().double().tolist()]
    k = len(idx)
    head = f"<b>Selection</b> · {_esc(selection.strategy)} · {k} pick{'s' if k != 1 else ''}"
    if scores:
        finite = [s for s in scores if np.isfinite(s)]
        if finite:
            head += f" · scores {min(finite):.4g} … {max(finite):.4g}"
    top = max((abs(s) for s in scores if np.isfinite(s)), default=0.0) or 1.0
    rows = []
    for rank, (i, s) in enumerate(zip(idx[:max_items], scores[:max_items], strict=True), start=1):
        width = 0 if not np.isfinite(s) else round(80 * abs(s) / top)
        bar = f'<div style="background:#4a7ab5; height:8px; width:{width}px" title="{s:.6g}"></div>'
        row: list[Any] = [rank, i]
        if pool is not None:
            row += [_esc(pool.ids[i]), _item_thumb(pool, i, size)]
        row += [_fmt(s), bar]
        rows.append(row)
    header = ["rank", "index", *(["id", "z slice"] if pool is not None else []), "score", ""]
    more = f"<div>… {k - max_items} more</div>" if k > max_items else ""
    return f'<div style="{_STYLE}">{head}{_table(header, rows)}{more}</div>'


def project_html(project: Any, *, max_picks: int = 6, size: int = 56) -> str:
    """HTML card of a :class:`cryoal.active.Project`: pool size, labels per class, rounds
    (mode, strategy, labels, status, metrics) and the latest round's first picks."""
    ids = project.pool_ids()
    counts = project.label_counts()
    n_lab = sum(counts.values())
    rows = [
        ["directory", _esc(project.path)],
        [
            "pool",
            f"{len(ids):,} volumes" + (f" in {_esc(project.get_meta('pool_root'))}" if ids else ""),
        ],
        ["labelled", f"{n_lab:,}"],
    ]
    parts = [f'<div style="{_STYLE}"><b>Project</b>', _table(["", ""], rows)]
    if counts:
        parts.append(_table(["class", "labels"], [[_esc(c), n] for c, n in counts.items()]))
    rounds = project.rounds()
    if rounds:
        table_rows = []
        for r in rounds:
            metric = r.metrics.get("test_accuracy", r.metrics.get("train_accuracy"))
            table_rows.append(
                [
                    r.n,
                    _esc(r.mode),
                    _esc(r.strategy),
                    r.budget,
                    r.n_labels,
                    _esc(r.status),
                    _fmt(metric, 3),
                ]
            )
        parts.append(
            _table(
                ["round", "mode", "strategy", "budget", "trained on", "status", "accuracy"],
                table_rows,
            )
        )
        latest = rounds[-1]
        picks = project.picks(latest.n)
        if picks:
            thumbs = []
            root = project.get_meta("pool_root")
            entries = {e.id: e for e in project.pool_entries()}
            labels = project.label_map()
            for p in picks[:max_picks]:
                thumbs.append(_pick_thumb(root, entries.get(p.id), p, labels.get(p.id), size))
            parts.append(
                f"<div>round {latest.n}: {len(picks)} picks"
                f"{' (first ' + str(max_picks) + ')' if len(picks) > max_picks else ''}</div>"
                f'<div style="display:flex; flex-wrap:wrap">{"".join(thumbs)}</div>'
            )
    else:
        parts.append("<div>no rounds yet</div>")
    parts.append("</div>")
    return "".join(parts)


def _pick_thumb(root: Any, entry: Any, pick: Any, label: str | None, size: int) -> str:
    from cryoal.io import read_volume

    caption = f"#{pick.rank} {pick.id}"
    if pick.score is not None:
        caption += f"<br>score {pick.score:.3g}"
    if pick.predicted:
        caption = caption + f"<br>pred {_esc(pick.predicted)}"
    if label is not None:
        caption += f"<br><b>{_esc(label)}</b>"
    try:
        if entry is None or root is None:
            raise FileNotFoundError("not registered")
        path = Path(root) / entry.path
        vid = str(pick.id)
        index = int(vid.rsplit("#", 1)[1]) if "#" in vid else None
        vol = read_volume(path, index=index).data
        img = thumbnail_img(vol[vol.shape[0] // 2], size=size, title=vid)
    except (OSError, CryoalError, ValueError) as exc:
        img = _unavailable("no thumbnail", exc)
    return f'<div style="margin:2px 6px; text-align:center">{img}<div>{caption}</div></div>'


#: Renderer of each kind of object.
RENDERERS: dict[str, Callable[[Any], str]] = {
    "volume": volume_html,
    "pool": pool_html,
    "selection": selection_html,
    "project": project_html,
}

for _kind, _render in RENDERERS.items():
    register_html(_kind, _render)

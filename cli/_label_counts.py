"""The label-count text that ``cryoal label status`` and ``cryoal status`` both print."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryoal.active import Project

__all__ = ["format_label_status", "format_segmentation_labels"]


def format_label_status(proj: Project) -> str:
    """Labelled / total volumes, per class and per source, as text."""
    if proj.get_meta("task") == "segmentation":
        return format_segmentation_labels(proj)

    labels = proj.labels()
    total = len(proj.pool_ids())
    counts = proj.label_counts()
    sources = Counter(r.source for r in labels)
    lines = [f"labelled: {len(labels)} of {total} volumes"]
    width = max([5, *(len(c) for c in counts)])
    lines.append(f"  {'class'.ljust(width)}  labels")
    lines += [f"  {c.ljust(width)}  {n}" for c, n in counts.items()]
    if sources:
        lines.append("by source: " + ", ".join(f"{s} {n}" for s, n in sorted(sources.items())))
    return "\n".join(lines)


def format_segmentation_labels(proj: Project) -> str:
    """Annotated patches of a segmentation project (``cryoal label status`` and ``status``).

    The labels are the voxel label maps on disk; the count shown is the one recorded when
    the latest round started.
    """
    rounds = proj.rounds()
    if not rounds:
        return (
            f"annotated: no round yet; the labels are the voxel label maps given with --masks "
            f"({len(proj.pool_ids())} patches)"
        )
    return (
        f"annotated: {rounds[-1].n_labels} of {len(proj.pool_ids())} patches when round "
        f"{rounds[-1].n} started (labels are the label maps on disk)"
    )

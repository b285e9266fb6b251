"""``cryoal status``: rounds, label counts per class and accuracy history of a project.

Segmentation projects show annotated patches and the per-class Dice history instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ._common import example_epilog
from ._label_counts import format_label_status, format_segmentation_labels

if TYPE_CHECKING:
    from cryoal.active import Project

EXAMPLES = """
cryoal status --project cryoal-project
cryoal status --project cryoal-demo
"""


@click.command(
    "status",
    epilog=example_epilog(EXAMPLES),
    short_help="Show a project's rounds, labels per class and accuracy history.",
)
@click.option(
    "--project",
    default="cryoal-project",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Project directory (made by `cryoal select`).",
)
def status(project: Path) -> None:
    """Show the rounds of a project, its labels per class and how accurate each model was.

    \b
    Accuracy columns:
      train  accuracy of the round's model on the labels it was trained on
      picks  how many of the round's picks the model predicted right, among those
             labelled since (an honest estimate: the picks were unseen at training)
      test   accuracy on a held-out test set (simulated loops and benchmarks only)
    """
    from cryoal.active import Project

    proj = Project(project, readonly=True)
    try:
        click.echo(format_status(proj))
    finally:
        proj.close()


def format_status(proj: Project) -> str:
    """The text ``cryoal status`` prints."""
    if proj.get_meta("task") == "segmentation":
        return format_segmentation_status(proj)
    box = proj.get_meta("box")
    lines = [f"project: {proj.path}"]
    if box is not None:
        lines.append(
            f"pool: {len(proj.pool_ids())} volumes in {proj.get_meta('pool_root')}, box "
            f"{'x'.join(map(str, box))}, {proj.get_meta('voxel_size'):g} Å/voxel"
        )
    lines.append(format_label_status(proj))
    rounds = proj.rounds()
    if not rounds:
        lines.append("rounds: none yet (run `cryoal select`)")
        return "\n".join(lines)
    header = ["round", "mode", "strategy", "budget", "labels", "status", "train", "picks", "test"]
    table = []
    for r in rounds:
        train = r.metrics.get("train_accuracy")
        test = r.metrics.get("test_accuracy")
        ok, n = proj.pick_accuracy(r.n)
        table.append(
            [
                str(r.n),
                r.mode,
                r.strategy,
                str(r.budget),
                str(r.n_labels),
                r.status,
                "-" if train is None else f"{train:.2f}",
                "-" if n == 0 else f"{ok}/{n} ({ok / n:.0%})",
                "-" if test is None else f"{test:.2f}",
            ]
        )
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    lines.append("rounds:")
    lines.append("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in table:
        lines.append(
            "  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        )
    latest = rounds[-1]
    if latest.status != "picked":
        lines.append(
            f"round {latest.n} is unfinished ({latest.status}): re-run the same `cryoal select` "
            "command to resume it"
        )
    return "\n".join(lines)


def format_segmentation_status(proj: Project) -> str:
    """``cryoal status`` of a segmentation project: patches, annotation and Dice history.

    Labels are the voxel label maps on disk, so the annotated-patch count is the one
    recorded when each round started; the Dice columns are the round's model on the
    patches it was trained on (mean, then per class).
    """
    patch = proj.get_meta("patch")
    classes = list(proj.get_meta("seg_class_names", []))
    lines = [f"project: {proj.path} (segmentation)"]
    lines.append(
        f"pool: {len(proj.pool_ids())} patches of {patch}³ from the crops in "
        f"{proj.get_meta('pool_root')}, {proj.get_meta('voxel_size'):g} Å/voxel; classes "
        f"{', '.join(classes)}"
    )
    rounds = proj.rounds()
    if not rounds:
        lines.append("rounds: none yet (run `cryoal select --task segmentation`)")
        return "\n".join(lines)
    lines.append(format_segmentation_labels(proj))
    header = ["round", "mode", "strategy", "budget", "annotated", "status", "train Dice"]
    header += classes
    table = []
    for r in rounds:
        mean = r.metrics.get("train_mean_dice")
        dice = r.metrics.get("train_dice") or {}
        table.append(
            [str(r.n), r.mode, r.strategy, str(r.budget), str(r.n_labels), r.status]
            + ["-" if mean is None else f"{mean:.2f}"]
            + [_dice(dice.get(c)) for c in classes]
        )
    lines += _table(header, table)
    latest = rounds[-1]
    if latest.status != "picked":
        lines.append(
            f"round {latest.n} is unfinished ({latest.status}): re-run the same `cryoal select "
            "--task segmentation` command to resume it"
        )
    return "\n".join(lines)


def _dice(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    out = ["rounds:"]
    out.append("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        out.append("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return out

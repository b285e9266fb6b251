"""``cryoal select --task image2d|segmentation``: the secondary pipelines of ``select``.

``cli/select.py`` parses the options and hands them here when ``--task`` is not the
default ``classification3d``. No logic of its own: the pool comes from the task
(:func:`cryoal.tasks.get`), the round from :func:`cryoal.active.loop.select_round`
(image2d: the same project database as subtomograms) or
:func:`cryoal.tasks.seg_select.select_segmentation_round` (segmentation: masks are the
labels; the rounds are recorded and resumed in the same project database).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def run_task(kw: dict[str, Any]) -> None:
    """Dispatch ``cryoal select`` for a non-default ``--task``."""
    from cryoal import tasks

    task = tasks.get(kw["task"])
    if kw["list_strategies"]:
        for name in task.strategies():
            click.echo(name)
        return
    if kw["demo"]:
        raise click.UsageError("--demo runs the subtomogram pipeline; drop --task")
    kw["arch"] = kw["arch"] or task.default_model
    if task.name == "image2d":
        _run_image2d(task, kw)
    else:
        _run_segmentation(task, kw)


def _run_image2d(task: Any, kw: dict[str, Any]) -> None:
    from cryoal.cli.select import DEFAULT_PROJECT, _config, format_picks, import_labels

    from cryoal.active import Project
    from cryoal.active.loop import register_pool, select_round

    if kw["images"] is None:
        raise click.UsageError("--task image2d needs --images DIR (a folder of images)")
    if kw["masks"] is not None:
        raise click.UsageError("--masks is for --task segmentation")
    pattern = kw["pattern"] if kw["pattern"] != "*.mrc" else None
    pool = task.open_pool(kw["images"], pattern=pattern)
    config = _config(kw)
    config.gallery_size = 0  # drawn below as images, not as volume views
    project_dir = kw["project"] or DEFAULT_PROJECT
    arguments = {k: v for k, v in kw.items() if k != "list_strategies"}
    project = Project(project_dir)
    try:
        with project.lock(timeout=kw["lock_timeout"]):
            register_pool(project, pool)
            if kw["labels"] is not None:
                import_labels(project, kw)
            result = select_round(
                project,
                pool,
                config,
                arguments=arguments,
                out=kw["out"],
                new_round=kw["new_round"],
                restart=kw["restart"],
            )
            rnd = result.round
            shown = result.picks[:24]
            gallery = project.gallery_path(rnd.n)
            task.write_gallery(
                gallery,
                [pool[pool.index_of(p.id)] for p in shown],
                [_caption(p) for p in shown],
                title=f"round {rnd.n} · {rnd.strategy} · {rnd.n_labels} labels before this round",
            )
            n_lab = len(project.label_map())
    finally:
        project.close()
    what = {"cold": "cold start", "train": f"trained on {rnd.n_labels} labels", "score": "scored"}
    click.echo(
        f"round {rnd.n} (image2d): {what[rnd.mode]} ({kw['arch']}); strategy {rnd.strategy}; "
        f"pool {len(pool)} images {pool.box[0]}x{pool.box[1]} px, {len(pool) - n_lab} "
        f"unlabelled; picked {len(result.picks)}"
    )
    if rnd.metrics.get("encoder"):
        click.echo(f"pretrained encoder: {rnd.metrics['encoder']}")
    acc = rnd.metrics.get("train_accuracy")
    if acc is not None:
        click.echo(f"model: {rnd.model_path} (training accuracy {acc:.2f})")
    click.echo(format_picks(result.table))
    click.echo(f"picks:   {result.files['csv']}  (+ {result.files['star'].name})")
    click.echo(f"gallery: {gallery}")
    if "out" in result.files:
        click.echo(f"also:    {result.files['out']}")
    click.echo(
        "next: label these images (CSV id,label), then\n"
        f"  cryoal label import LABELS.csv --project {project_dir}\n"
        f"  cryoal select --task image2d --images {kw['images']} --project {project_dir}"
    )


def _caption(p: Any) -> str:
    text = f"#{p.rank} {Path(p.id).name}"
    if p.predicted is not None and p.probabilities:
        text += f"\npred {p.predicted} ({p.probabilities.get(p.predicted, 0.0):.2f})"
    return text


def _run_segmentation(task: Any, kw: dict[str, Any]) -> None:
    from cryoal.active import Project
    from cryoal.errors import ConfigError
    from cryoal.runtime import resolve_device
    from cryoal.tasks.seg_select import SegSelectConfig, select_segmentation_round

    if kw["volumes"] is None:
        raise click.UsageError("--task segmentation needs --volumes DIR (tomogram crops, MRC)")
    if kw["images"] is not None or kw["labels"] is not None:
        raise click.UsageError(
            "--task segmentation takes label maps with --masks DIR, not --images/--labels"
        )
    if kw["pretrain_epochs"] not in (0, "auto"):  # auto (the default) means none here
        raise ConfigError(
            "--pretrain-epochs is not supported for --task segmentation: pool pretraining "
            "trains a classifier's encoder (features + linear head) to embed whole "
            "subtomograms or images, and the segmentation network (a UNet) has no such "
            "encoder and predicts every voxel, which image-level contrastive views do not "
            "train; drop --pretrain-epochs"
        )
    pool = task.open_pool(
        kw["volumes"],
        masks=kw["masks"],
        patch=kw["patch"],
        pattern=kw["pattern"],
        classes=None if kw["classes"] is None else [c.strip() for c in kw["classes"].split(",")],
    )
    # auto (the subtomogram default) chooses among classification strategies; for
    # segmentation it means expected-gradnorm over the mean voxel loss
    strategy = "expected-gradnorm" if kw["strategy"] == "auto" else kw["strategy"]
    config = SegSelectConfig(
        strategy=strategy,
        budget=kw["budget"],
        seed=kw["seed"],
        arch=kw["arch"],
        epochs=kw["epochs"],
        batch_size=kw["batch_size"],
        model=None if kw["model"] is None else str(kw["model"]),
        device=str(resolve_device(kw["device"])),
        progress=kw["progress"],
    )
    project_dir = kw["project"] or Path("cryoal-project")
    arguments = {k: v for k, v in kw.items() if k != "list_strategies"}
    project = Project(project_dir)
    try:
        with project.lock(timeout=kw["lock_timeout"]):
            res = select_segmentation_round(
                project,
                pool,
                config,
                arguments=arguments,
                out=kw["out"],
                new_round=kw["new_round"],
                restart=kw["restart"],
            )
    finally:
        project.close()
    if res.reused:
        click.echo(
            f"round {res.round} is complete and no mask changed since; showing its picks "
            "again (annotate them, or pass --new-round)"
        )
    elif res.resumed_from is not None:
        click.echo(f"resumed round {res.round} from step '{res.resumed_from}'")
    what = {
        "cold": "cold start (no annotated patch yet: random picks)",
        "train": f"trained {kw['arch']} on {res.n_labelled} annotated patches",
        "score": f"scored with {kw['model']}",
    }[res.mode]
    click.echo(
        f"round {res.round} (segmentation): {what}; strategy {res.strategy}; "
        f"{len(pool)} patches of {pool.patch}³ from {len(pool.volume_ids)} crops, "
        f"{res.n_unlabelled} unannotated; picked {len(res.table)}"
    )
    if "train_mean_dice" in res.metrics:
        dice = ", ".join(f"{c} {v:.2f}" for c, v in res.metrics["train_dice"].items() if v == v)
        click.echo(
            f"model: {res.files['model']} (training mean Dice {res.metrics['train_mean_dice']:.2f}: "
            f"{dice})"
        )
    cols = ["rank", "id", "score", *[c for c in res.table.columns if c.startswith("frac_")]]
    click.echo(res.table[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    click.echo(f"picks:   {res.files['csv']}  (+ {res.files['star'].name})")
    if "gallery" in res.files:
        click.echo(f"gallery: {res.files['gallery']}")
    if "out" in res.files:
        click.echo(f"also:    {res.files['out']}")
    click.echo(
        "next: annotate these patches (voxels z:z+size, y:y+size, x:x+size) in the crops' "
        f"label maps in {kw['masks'] or 'a --masks folder'}, then run the same command again\n"
        f"  (a killed run resumes where it stopped; progress: cryoal status --project {project_dir})"
    )

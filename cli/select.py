"""``cryoal select``: pick the subtomograms worth labelling next.

One command per round. With no labels it cold-starts (k-center greedy on the embedding
of an untrained network, or random picks); with labels it trains a model (from scratch
by default) and scores the unlabelled pool; with ``--model`` it only scores. Every round
is recorded in the project directory (default ``./cryoal-project``), and a run that was
killed resumes from its last finished step when the same command is run again.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import click
from cryoal.cli._common import (
    device_option,
    example_epilog,
    invert_option,
    inverted,
    pattern_option,
    progress_option,
    seed_option,
    volumes_option,
)
from cryoal.cli._tomo import copick_picks_option, tomogram_options

EXAMPLES = """
cryoal select --demo                                        # whole loop on built-in demo data
cryoal select --volumes subtomos/ --budget 24               # round 1: cold start
cryoal label import picks-labelled.csv --project cryoal-project
cryoal select --volumes subtomos/ --budget 24               # round 2: train, score, pick
cryoal select --volumes subtomos/ --labels old.csv --strategy entropy --out next.csv
cryoal select --volumes subtomos/ --model model.pt --budget 50 --project scored/
torchrun --nproc-per-node 4 -m cryoal.cli select --volumes subtomos/ --workers 4  # 4 ranks
cryoal select --volumes particles.star --budget 96 --project big/   # 10^6 listed volumes
cryoal select --tomograms tomos/ --coords particles.star --box 32 --project tomo/
cryoal select --copick config.json --object ribosome --voxel-spacing 10 --box 32
cryoal select --task image2d --images digits/images --labels digits/initial.csv --budget 20
cryoal select --task segmentation --volumes crops/ --masks masks/ --patch 16 --budget 8
"""

DEFAULT_PROJECT = Path("cryoal-project")
DEFAULT_DEMO_PROJECT = Path("cryoal-demo")
DEFAULT_ARCH = "cb3d"  # = cryoal.active.defaults.DEFAULT_ARCH (a new project's rounds)
DEMO_ARCH = "cb3d"


class _PretrainEpochs(click.ParamType):
    """``auto`` or an integer >= 0."""

    name = "auto|N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            n = value
        elif str(value).strip().lower() == "auto":
            return "auto"
        else:
            try:
                n = int(str(value))
            except ValueError:
                self.fail(f"{value!r} is neither 'auto' nor an integer", param, ctx)
        if n < 0:
            self.fail(f"{n} is negative; use 0 (no pretraining), N epochs or auto", param, ctx)
        return n


class _Candidates(click.ParamType):
    """``auto``, ``all`` or an integer >= 0 (0 = all)."""

    name = "auto|all|N"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value).strip().lower()
        if text in ("auto", "all"):
            return text
        try:
            n = int(text)
        except ValueError:
            self.fail(f"{value!r} is neither 'auto', 'all' nor an integer", param, ctx)
        if n < 0:
            self.fail(f"{n} is negative; use auto, all or a subset size N", param, ctx)
        return n


@click.command(
    "select",
    epilog=example_epilog(EXAMPLES),
    short_help="Pick the subtomograms worth labelling next (one active-learning round).",
)
@volumes_option(required=False)
@tomogram_options
@copick_picks_option
@click.option(
    "--task",
    type=click.Choice(["classification3d", "image2d", "segmentation"]),
    default="classification3d",
    show_default=True,
    help="Pipeline: subtomograms (--volumes), 2D images (--images) or 3D segmentation "
    "(--volumes crops + --masks label maps); see docs/pipelines.md.",
)
@click.option(
    "--images",
    type=click.Path(path_type=Path),
    help="--task image2d: folder of PNG/TIFF/2D MRC/.npy images.",
)
@click.option(
    "--masks",
    type=click.Path(file_okay=False, path_type=Path),
    help="--task segmentation: folder of integer MRC label maps named like the crops "
    "(-1 = not annotated; classes.txt names the values).",
)
@click.option(
    "--patch",
    default=16,
    show_default=True,
    type=click.IntRange(min=4),
    help="--task segmentation: patch edge in voxels.",
)
@click.option(
    "--classes",
    help="--task segmentation: comma-separated class names, index = label value "
    "[default: MASKS/classes.txt].",
)
@click.option(
    "--labels",
    type=click.Path(path_type=Path),
    help="Labels to import first (.csv 'id,label' or .star); same as `cryoal label import`.",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Let --labels replace labels already in the project (old ones kept in history).",
)
@click.option(
    "--allow-new-classes",
    is_flag=True,
    help="Accept --labels classes that look like typos of known classes.",
)
@click.option(
    "--model",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Score with this checkpoint instead of training (score-only round).",
)
@click.option(
    "--strategy",
    default="auto",
    show_default=True,
    help="Acquisition strategy for rounds with labels (see `cryoal select --list-strategies`); "
    "auto picks typicality, diverse or plain entropy-gradnorm by labels per class and "
    "records its choice in the picks file. expected-gradnorm is Σ_y p(y|x)·‖∇CE_y‖ (the "
    "expected gradient length); the released code's variant equals entropy-gradnorm "
    "(docs/acquisition.md).",
)
@click.option(
    "--budget",
    default=24,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many volumes to pick.",
)
@click.option(
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    help="Project directory holding every round [default: ./cryoal-project, "
    "./cryoal-demo with --demo].",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the picks here (.csv or .star).",
)
@click.option(
    "--epochs",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="Training epochs per round.",
)
@click.option(
    "--arch",
    default=None,
    help="Model architecture when training (cb3d, dsrf3d, rb3d, monai-resnet10, ...) "
    "[default: cb3d for a new project (it pretrains in about a minute on a CPU); a "
    "project keeps the architecture of its earlier rounds].",
)
@click.option(
    "--cold-start",
    type=click.Choice(["auto", "typicality", "coreset", "random"]),
    default="auto",
    show_default=True,
    help="First-round picks without labels: auto (typicality), typicality (most typical "
    "volume of each k-means cluster of the embedding), coreset (k-center greedy on an "
    "untrained network's embedding), or random.",
)
@click.option(
    "--pretrain-epochs",
    default="auto",
    show_default=True,
    type=_PretrainEpochs(),
    help="Pretrain an encoder on the pool (once per project, cached in "
    "PROJECT/models/encoder.pt) to initialise every round's model and embed the pool. "
    "auto: a new project pretrains for a bounded budget (CPU: ~600 GFLOP, e.g. 15 steps "
    "of cb3d on 32³ boxes, about a minute; GPU: 1500 steps), skipped with the reason for "
    "pools under 200 volumes or models too heavy for the CPU budget; a project keeps "
    "what its earlier rounds used. N: N epochs. 0: none (uses PROJECT/models/encoder.pt "
    "when `cryoal pretrain --project` made one). See docs/acquisition.md.",
)
@click.option(
    "--candidates",
    default="auto",
    show_default=True,
    type=_Candidates(),
    help="Unlabelled volumes a round scores. auto: pools of more than 2,000 volumes score "
    "a seeded random subset of 2,000 (CPU; GPU: 25,000, as the released code) and smaller "
    "pools all of them. N: a subset of N. all (or 0): every unlabelled volume. Fidelity "
    "of the subset: docs/benchmarks.md.",
)
@click.option(
    "--warm-start",
    is_flag=True,
    help="Start training from the previous round's model (default: from scratch).",
)
@click.option(
    "--new-round",
    is_flag=True,
    help="Start a new round even though no label was added since the last one.",
)
@click.option("--restart", is_flag=True, help="Discard an unfinished round instead of resuming it.")
@pattern_option
@invert_option
@click.option(
    "--batch-size",
    default=32,
    show_default=True,
    type=click.IntRange(min=1),
    help="Volumes per forward pass while scoring.",
)
@click.option(
    "--lock-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to wait for another process writing the same project.",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Build (once, cached) the demo pool and run --rounds rounds, a simulated "
    "expert answering from the demo's ground truth.",
)
@click.option(
    "--rounds",
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    help="Rounds to run with --demo.",
)
@click.option(
    "--demo-manifest",
    default="demo",
    show_default=True,
    help="Manifest the --demo pool is built from (a bundled name or a YAML file).",
)
@click.option("--list-strategies", is_flag=True, help="List the acquisition strategies and exit.")
@click.option(
    "--index",
    "use_index",
    is_flag=True,
    help="Large pools: index --volumes once (compactly) and keep the index in the project; "
    "later runs load it instead of walking the folder. Implied when --volumes is a "
    ".csv/.star list.",
)
@click.option(
    "--reindex",
    is_flag=True,
    help="Index --volumes again (after adding files); implies --index.",
)
@click.option(
    "--workers",
    "num_workers",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="DataLoader processes reading volumes while training and scoring.",
)
@click.option(
    "--distributed/--no-distributed",
    default=None,
    help="Train with DDP and score the pool in shards over torchrun's processes "
    "(rank 0 writes the picks) [default: on under torchrun]. Launch with "
    "`torchrun --nproc-per-node N -m cryoal.cli select ...`.",
)
@progress_option
@seed_option
@device_option
def select(**kw: Any) -> None:
    """Pick the next BUDGET subtomograms to label, and record the round in the project.

    \b
    Round logic:
      no labels yet        cold start (--cold-start auto = typicality on the embedding;
                           also coreset or random)
      labels, no --model   train from scratch on the labels, score the pool, pick
                           (--strategy auto: typicality below 10 labels per class,
                           diverse-entropy-gradnorm below 50, else entropy-gradnorm;
                           the choice and its reason go into the picks and the project)
      --model CKPT         score with that model only
    Outputs (in the project): picks/round-NNN.csv and .star (id, path, rank, score,
    predicted, p_<class>, strategy, round), gallery/round-NNN.png, config/round-NNN.json,
    models/round-NNN.pt. Re-running the same command after a crash resumes the round.
    """
    from cryoal import acquisition

    if kw["task"] != "classification3d":
        from cryoal.cli._task_select import run_task

        run_task(kw)
        return
    if kw["list_strategies"]:
        names = acquisition.available()
        width = max(map(len, names)) + 2
        for name in names:
            click.echo(f"{name:<{width}}{acquisition.summary(name)}")
        return
    if not _distributed(kw):
        _dispatch(kw)
        return
    from cryoal import distributed

    with distributed.session(device=kw["device"], drive=True) as info:
        if info.rank == 0:
            _dispatch(kw)  # rank 0 drives the round; training and scoring run on all ranks
        else:
            distributed.serve()


def _dispatch(kw: dict[str, Any]) -> None:
    if kw["demo"]:
        _run_demo({**kw, "arch": kw["arch"] or DEMO_ARCH})
        return
    if kw["volumes"] is None and kw["tomograms"] is None and kw["copick"] is None:
        raise click.UsageError("--volumes (or --tomograms/--copick) is required (or use --demo)")
    _run_select(kw)


def _distributed(kw: dict[str, Any]) -> bool:
    """--distributed, or torchrun's environment with more than one process."""
    from cryoal.distributed import in_torchrun

    if kw["distributed"] is None:
        return in_torchrun() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    if kw["distributed"] and not in_torchrun():
        from cryoal.errors import ConfigError

        raise ConfigError(
            "--distributed needs torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, "
            "MASTER_PORT): launch with `torchrun --nproc-per-node N -m cryoal.cli select ...`"
        )
    return bool(kw["distributed"])


def _config(kw: dict[str, Any]) -> Any:
    from cryoal import acquisition, models
    from cryoal.active.loop import SelectConfig

    acquisition.get(kw["strategy"])  # unknown name: fail early, with a suggestion
    arch = kw["arch"] or DEFAULT_ARCH
    if kw["model"] is None:
        models.describe(arch)
    return SelectConfig(
        strategy=kw["strategy"],
        budget=kw["budget"],
        seed=kw["seed"],
        cold_start=kw["cold_start"],
        arch=arch,
        epochs=kw["epochs"],
        warm_start=kw["warm_start"],
        model=None if kw["model"] is None else str(kw["model"]),
        batch_size=kw["batch_size"],
        device=str(_device(kw["device"])),
        progress=kw["progress"],
        num_workers=kw["num_workers"],
        pretrain_epochs=kw["pretrain_epochs"],
        candidates=kw["candidates"],
    )


def _device(name: str) -> Any:
    from cryoal.runtime import resolve_device

    return resolve_device(name)


def _run_select(kw: dict[str, Any]) -> None:
    from cryoal.cli._tomo import remember_particles, tomogram_pool, write_copick_picks

    from cryoal.active import Project
    from cryoal.active.defaults import recorded_arch, resolve_pretraining
    from cryoal.active.loop import register_pool, select_round
    from cryoal.io import VolumePool
    from cryoal.pretrain import reporting

    config = _config(kw)
    project_dir = kw["project"] or DEFAULT_PROJECT
    arguments = {k: v for k, v in kw.items() if k not in ("list_strategies",)}
    pool = tomogram_pool(kw)  # None unless --tomograms/--copick
    listed = str(kw["volumes"]).lower().endswith((".csv", ".star"))
    indexed = pool is None and (kw["use_index"] or kw["reindex"] or listed)
    if pool is None and not indexed:
        pool = VolumePool.from_path(kw["volumes"], kw["pattern"])
    project = Project(project_dir)
    try:
        with project.lock(timeout=kw["lock_timeout"]):
            if pool is None:
                from cryoal.io.index import project_index

                pool = project_index(
                    project, kw["volumes"], pattern=kw["pattern"], rebuild=kw["reindex"]
                )
            remember_particles(project, pool)
            if kw["invert"]:
                pool = inverted(pool, True)
            if kw["labels"] is not None:
                register_pool(project, pool)
                import_labels(project, kw)
            if kw["arch"] is None:  # a project keeps its architecture (defaults.py)
                kw["arch"] = recorded_arch(project) or DEFAULT_ARCH
                config = dataclasses.replace(config, arch=kw["arch"])
            config, plan = resolve_pretraining(project, pool, config)
            if plan is not None and config.model is None:
                click.echo(plan)
            # the pretraining's time estimate, if it runs (printed above its progress bar)
            with reporting(_echo_above_bars):
                result = select_round(
                    project,
                    pool,
                    config,
                    arguments=arguments,
                    out=kw["out"],
                    new_round=kw["new_round"],
                    restart=kw["restart"],
                )
            _print_summary(project, pool, result, kw)
            copick = write_copick_picks(kw, pool, result)
            if copick is not None:
                click.echo(f"copick:  {copick} in {kw['copick']}")
    finally:
        project.close()


def _echo_above_bars(message: str) -> None:
    """Print a line to stdout without breaking an active tqdm bar."""
    from tqdm.auto import tqdm

    tqdm.write(message)


def import_labels(project: Any, kw: dict[str, Any]) -> None:
    """Add the ``--labels`` table to ``project`` (its pool registered) and echo the counts.

    Shared by every ``--task`` that keeps labels in the project database: ids must name
    pool items; ``--overwrite`` / ``--allow-new-classes`` as parsed into ``kw``.
    """
    from cryoal.io import read_labels

    table = read_labels(kw["labels"], known_ids=set(project.pool_ids()))
    report = project.add_labels(
        list(zip(table["id"], table["label"], strict=True)),
        source="import",
        where=str(kw["labels"]),
        overwrite=kw["overwrite"],
        allow_new_classes=kw["allow_new_classes"],
    )
    click.echo(
        f"labels from {kw['labels']}: {len(report.added)} added, "
        f"{len(report.unchanged)} already known, {len(report.overwritten)} replaced"
    )


def _print_summary(project: Any, pool: Any, result: Any, kw: dict[str, Any]) -> None:
    rnd = result.round
    n_lab = len(project.label_map())
    if result.reused:
        click.echo(
            f"round {rnd.n} is complete and no label was added since; showing its picks "
            "(import labels for them, or pass --new-round)"
        )
    elif result.resumed_from is not None:
        click.echo(f"resumed round {rnd.n} from step '{result.resumed_from}'")
    what = {
        "cold": f"cold start ({rnd.strategy} on an untrained {kw['arch']})",
        "train": f"trained on {rnd.n_labels} labels",
        "score": f"scored with {kw['model']}",
    }[rnd.mode]
    click.echo(
        f"round {rnd.n}: {what}; strategy {rnd.strategy}; pool {len(pool)} volumes, "
        f"{len(pool) - n_lab} unlabelled; picked {len(result.picks)}"
    )
    chosen = rnd.metrics.get("selection") or {}
    if chosen.get("choice"):
        click.echo(f"auto chose {chosen['choice']}: {chosen.get('reason', '')}")
    if rnd.metrics.get("encoder"):
        click.echo(f"pretrained encoder: {rnd.metrics['encoder']}")
    acc = rnd.metrics.get("train_accuracy")
    if acc is not None:
        click.echo(f"model: {rnd.model_path} (training accuracy {acc:.2f})")
    click.echo(format_picks(result.table))
    files = result.files
    click.echo(f"picks:   {files['csv']}  (+ {files['star'].name})")
    if "gallery" in files:
        click.echo(f"gallery: {files['gallery']}")
    if "out" in files:
        click.echo(f"also:    {files['out']}")
    proj = str(project.path)
    click.echo(
        "next: label these volumes (a CSV with columns id,label), then\n"
        f"  cryoal label import LABELS.csv --project {proj}\n"
        f"  cryoal select {source_args(kw)} --project {proj}"
    )


def source_args(kw: dict[str, Any]) -> str:
    """The pool options of this command line, to show the next command."""
    from cryoal.cli._tomo import tomogram_args

    return tomogram_args(kw) or f"--volumes {kw['volumes']}"


def format_picks(table: Any, limit: int = 30) -> str:
    """The picks table as aligned text (first ``limit`` rows)."""
    cols = ["rank", "id", "score", "predicted"]
    rows = []
    for _, r in table.head(limit).iterrows():
        score = "" if r["score"] is None or r["score"] != r["score"] else f"{r['score']:.4g}"
        pred = str(r["predicted"] or "")
        if pred and f"p_{pred}" in table.columns:
            pred = f"{pred} ({r[f'p_{pred}']:.2f})"
        rows.append([str(r["rank"]), str(r["id"]), score, pred])
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    if len(table) > limit:
        lines.append(f"... {len(table) - limit} more in the picks file")
    return "\n".join(lines)


def _run_demo(kw: dict[str, Any]) -> None:
    from cryoal.active import Oracle, Project
    from cryoal.active.demo import demo_pool
    from cryoal.active.loop import run
    from cryoal.io import VolumePool, read_labels

    config = _config(kw)
    click.echo("demo: building the simulated demo pool (once; cached afterwards) ...")
    demo = demo_pool(manifest=kw["demo_manifest"], progress=kw["progress"])
    pool = VolumePool.from_path(demo.volumes)
    truth = read_labels(demo.labels)
    oracle = Oracle(dict(zip(truth["id"], truth["label"], strict=True)), annotator="demo-oracle")
    classes = sorted(set(truth["label"]))
    test_set = None
    if demo.test_volumes is not None and demo.test_labels is not None:
        test_pool = VolumePool.from_path(demo.test_volumes).with_labels(demo.test_labels)
        test_set = test_pool.dataset(class_names=classes)
    project_dir = kw["project"] or DEFAULT_DEMO_PROJECT
    click.echo(
        f"demo pool: {len(pool)} simulated subtomograms of {len(classes)} classes "
        f"({', '.join(classes)}) in {demo.volumes}"
        + (f", {len(test_set)} held out for testing" if test_set is not None else "")
    )
    click.echo(
        f"a simulated expert labels each round's {config.budget} picks from the ground truth; "
        f"project {project_dir}"
    )

    def show(result: Any, row: dict[str, Any]) -> None:
        rnd = result.round
        line = f"round {rnd.n}: {rnd.mode:<5} {rnd.strategy:<18} labels {rnd.n_labels:>3}"
        if "test_accuracy" in row:
            line += f"  test accuracy {row['test_accuracy']:.2f}"
        counts: dict[str, int] = {}
        for p in result.picks:
            counts[oracle.truth[p.id]] = counts.get(oracle.truth[p.id], 0) + 1
        line += "  picked " + ", ".join(f"{c} {counts.get(c, 0)}" for c in classes)
        click.echo(line)

    project = Project(project_dir)
    try:
        with project.lock(timeout=kw["lock_timeout"]):
            history = run(
                project,
                oracle,
                config.strategy,
                kw["rounds"],
                config.budget,
                pool=pool,
                config=config,
                test_set=test_set,
                test_classes=classes,
                on_round=show,
            )
    finally:
        project.close()
    last = history[-1]["round"]
    click.echo(
        f"done. picks: {project_dir}/picks/round-{last:03d}.csv, gallery: "
        f"{project_dir}/gallery/round-{last:03d}.png\n"
        f"next: cryoal status --project {project_dir}\n"
        f"      cryoal select --volumes {demo.volumes} --budget 24   # your own first round"
    )

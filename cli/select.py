"""``cryoal select``: pick the subtomograms worth labelling next.

One command per round. With no labels it cold-starts (k-center greedy on the embedding
of an untrained network, or random picks); with labels it trains a model (from scratch
by default) and scores the unlabelled pool; with ``--model`` it only scores. Every round
is recorded in the project directory (default ``./cryoal-project``), and a run that was
killed resumes from its last finished step when the same command is run again.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any

import click

from ._common import (
    device_option,
    example_epilog,
    invert_option,
    inverted,
    pattern_option,
    progress_option,
    seed_option,
    task_choice,
    volumes_option,
)
from ._options import OptionsCommand, flat, from_params
from ._tomo import TomogramOptions, copick_picks_option, tomogram_options

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


@dataclasses.dataclass(frozen=True)
class SelectOptions:
    """The options of ``cryoal select`` as parsed (one field per option, same names).

    ``tomo`` holds the tomogram/copick source options (``cli/_tomo.py``) that several
    commands share. Frozen: a pipeline that fills in a default (``--arch``) makes a new
    object (:meth:`_Pipeline.prepare`, :meth:`_Pipeline.resolve`).
    """

    volumes: Path | None = None
    task: str = "classification3d"
    images: Path | None = None
    masks: Path | None = None
    patch: int = 16
    classes: str | None = None
    labels: Path | None = None
    overwrite: bool = False
    allow_new_classes: bool = False
    model: Path | None = None
    strategy: str = "auto"
    budget: int = 24
    project: Path | None = None
    out: Path | None = None
    epochs: int = 20
    arch: str | None = None
    cold_start: str = "auto"
    pretrain_epochs: int | str = "auto"
    candidates: int | str = "auto"
    warm_start: bool = False
    new_round: bool = False
    restart: bool = False
    pattern: str = "*.mrc"
    invert: bool | None = None
    batch_size: int = 32
    lock_timeout: float = 30.0
    demo: bool = False
    rounds: int = 3
    demo_manifest: str = "demo"
    list_strategies: bool = False
    use_index: bool = False
    reindex: bool = False
    num_workers: int = 0
    distributed: bool | None = None
    progress: bool = True
    seed: int = 0
    device: str = "auto"
    tomo: TomogramOptions = TomogramOptions()
    copick_picks: bool = False

    @classmethod
    def from_click(cls, kw: dict[str, Any]) -> SelectOptions:
        """The options from click's parsed parameters (missing ones: the defaults)."""
        return from_params(cls, kw)

    def as_kw(self) -> dict[str, Any]:
        """Every option as one flat dict, by click parameter name."""
        return flat(self)

    def arguments(self) -> dict[str, Any]:
        """The command-line arguments recorded in each round's config JSON."""
        return {k: v for k, v in self.as_kw().items() if k != "list_strategies"}


@click.command(
    "select",
    cls=OptionsCommand,
    options=SelectOptions,
    epilog=example_epilog(EXAMPLES),
    short_help="Pick the subtomograms worth labelling next (one active-learning round).",
)
@volumes_option(required=False)
@tomogram_options
@copick_picks_option
@click.option(
    "--task",
    type=task_choice(),
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
    "auto: a new project pretrains for 20 passes over the pool on a CPU, bounded by "
    "4800 GFLOP (cb3d on 1,500 volumes of 16³: 920 steps, about 2 min on 2 cores; on 32³ "
    "boxes: 126 steps, about 9 min; GPU: 1500 steps), skipped with the reason for "
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
def select(opts: SelectOptions) -> None:
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
    pipeline = pipeline_of(opts.task)
    if opts.list_strategies:
        _list_strategies(pipeline)
        return
    if not _distributed(opts):
        _dispatch(pipeline, opts)
        return
    from cryoal import distributed

    with distributed.session(device=opts.device, drive=True) as info:
        if info.rank == 0:
            _dispatch(pipeline, opts)  # rank 0 drives the round; training and scoring on all
        else:
            distributed.serve()


def _list_strategies(pipeline: _Pipeline) -> None:
    from cryoal import acquisition

    names = pipeline.task.strategies()
    if not pipeline.list_summaries:
        for name in names:
            click.echo(name)
        return
    width = max(map(len, names)) + 2
    for name in names:
        click.echo(f"{name:<{width}}{acquisition.summary(name, task=pipeline.task.name)}")


def _dispatch(pipeline: _Pipeline, opts: SelectOptions) -> None:
    if opts.demo:
        if not pipeline.demo:
            raise click.UsageError("--demo runs the subtomogram pipeline; drop --task")
        _run_demo(dataclasses.replace(opts, arch=opts.arch or DEMO_ARCH))
        return
    pipeline.check(opts)
    _run_select(pipeline, opts)


def _distributed(opts: SelectOptions) -> bool:
    """--distributed, or torchrun's environment with more than one process."""
    from cryoal.distributed import in_torchrun

    if opts.distributed is None:
        return in_torchrun() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    if opts.distributed and not in_torchrun():
        from cryoal.errors import ConfigError

        raise ConfigError(
            "--distributed needs torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, "
            "MASTER_PORT): launch with `torchrun --nproc-per-node N -m cryoal.cli select ...`"
        )
    return bool(opts.distributed)


def _config(opts: SelectOptions, task: Any, arch: str) -> Any:
    """A classification task's round options; unknown strategy or model fails early."""
    from cryoal import acquisition, models

    acquisition.strategy_class(opts.strategy, task=task.name)  # with a suggestion
    if opts.model is None:
        models.describe(arch)
    return task.select_config(
        strategy=opts.strategy,
        budget=opts.budget,
        seed=opts.seed,
        cold_start=opts.cold_start,
        arch=arch,
        epochs=opts.epochs,
        warm_start=opts.warm_start,
        model=None if opts.model is None else str(opts.model),
        batch_size=opts.batch_size,
        device=str(_device(opts.device)),
        progress=opts.progress,
        num_workers=opts.num_workers,
        pretrain_epochs=opts.pretrain_epochs,
        candidates=opts.candidates,
    )


def _device(name: str) -> Any:
    from cryoal.runtime import resolve_device

    return resolve_device(name)


def _run_select(pipeline: _Pipeline, opts: SelectOptions) -> None:
    """The one select path of every task: lock, pool, labels, options, round, summary."""
    from cryoal.active import Project
    from cryoal.active.loop import register_pool

    opts = pipeline.prepare(opts)
    pool = pipeline.open_pool(opts)  # before the project: bad input fails first
    project = Project(opts.project or DEFAULT_PROJECT)
    try:
        with project.lock(timeout=opts.lock_timeout):
            pool = pipeline.in_project(project, pool, opts)
            if opts.labels is not None:
                register_pool(project, pool)
                import_labels(project, opts)
            opts = pipeline.resolve(project, opts)
            config = pipeline.config(project, pool, opts)
            with pipeline.reporting():
                result = pipeline.task.select_round(
                    project,
                    pool,
                    config,
                    arguments=opts.arguments(),
                    out=opts.out,
                    new_round=opts.new_round,
                    restart=opts.restart,
                )
            pipeline.summary(project, pool, result, opts)
    finally:
        project.close()


def _echo_above_bars(message: str) -> None:
    """Print a line to stdout without breaking an active tqdm bar."""
    from tqdm.auto import tqdm

    tqdm.write(message)


def import_labels(project: Any, opts: SelectOptions) -> None:
    """Add the ``--labels`` table to ``project`` (its pool registered) and echo the counts.

    Shared by every ``--task`` that keeps labels in the project database: ids must name
    pool items; ``--overwrite`` / ``--allow-new-classes`` as parsed.
    """
    from cryoal.io import read_labels

    assert opts.labels is not None
    table = read_labels(opts.labels, known_ids=set(project.pool_ids()))
    report = project.add_labels(
        list(zip(table["id"], table["label"], strict=True)),
        source="import",
        where=str(opts.labels),
        overwrite=opts.overwrite,
        allow_new_classes=opts.allow_new_classes,
    )
    click.echo(
        f"labels from {opts.labels}: {len(report.added)} added, "
        f"{len(report.unchanged)} already known, {len(report.overwritten)} replaced"
    )


class _Pipeline(abc.ABC):
    """What ``cryoal select`` does for one task around the one round engine.

    The command's single path (:func:`_run_select`) calls, in order: :meth:`check`,
    :meth:`prepare` and :meth:`open_pool` (before any file is written),
    :meth:`in_project` (under the project lock), :meth:`config`, the task's round (:meth:`cryoal.tasks.Task.select_round`)
    and :meth:`summary`. One subclass per registered task, in :data:`_PIPELINES`.
    """

    #: ``--list-strategies`` prints each strategy's one-line summary too
    list_summaries = False
    #: ``--demo`` runs this task's demo loop
    demo = False

    def __init__(self, task: Any) -> None:
        self.task = task

    def check(self, opts: SelectOptions) -> None:
        """Refuse options this task does not take (one line, exit 2)."""
        return None

    def prepare(self, opts: SelectOptions) -> SelectOptions:
        """Validate the round options before the project is opened; returns them with
        the task's defaults filled in."""
        return opts

    @abc.abstractmethod
    def open_pool(self, opts: SelectOptions) -> Any:
        """The task's pool from the options, opened before the project (bad input fails
        before anything is written); ``None`` when only :meth:`in_project` can open it."""

    def in_project(self, project: Any, pool: Any, opts: SelectOptions) -> Any:
        """The pool as the round uses it, under the project lock (e.g. an index kept in
        the project)."""
        return pool

    def resolve(self, project: Any, opts: SelectOptions) -> SelectOptions:
        """The options with what the project records filled in (under the lock)."""
        return opts

    @abc.abstractmethod
    def config(self, project: Any, pool: Any, opts: SelectOptions) -> Any:
        """The round's options object (:meth:`cryoal.tasks.Task.select_config`)."""

    def reporting(self) -> Any:
        """Context in which the round runs (messages printed above progress bars)."""
        return contextlib.nullcontext()

    @abc.abstractmethod
    def summary(self, project: Any, pool: Any, result: Any, opts: SelectOptions) -> None:
        """Print what the round did and what to do next."""


class _Subtomograms(_Pipeline):
    """``--task classification3d``: volumes, an index, or boxes cut from tomograms."""

    list_summaries = True
    demo = True

    def check(self, opts: SelectOptions) -> None:
        if opts.volumes is None and opts.tomo.tomograms is None and opts.tomo.copick is None:
            raise click.UsageError(
                "--volumes (or --tomograms/--copick) is required (or use --demo)"
            )

    def prepare(self, opts: SelectOptions) -> SelectOptions:
        self._config = _config(opts, self.task, opts.arch or DEFAULT_ARCH)
        return opts

    def open_pool(self, opts: SelectOptions) -> Any:
        from cryoal.io import VolumePool

        from ._tomo import tomogram_pool

        # None unless --tomograms/--copick
        pool = tomogram_pool(opts.tomo, volumes=opts.volumes, copick_picks=opts.copick_picks)
        listed = str(opts.volumes).lower().endswith((".csv", ".star"))
        if pool is None and not (opts.use_index or opts.reindex or listed):
            assert opts.volumes is not None  # check() ran
            pool = VolumePool.from_path(opts.volumes, opts.pattern)
        return pool  # None: indexed in the project (in_project)

    def in_project(self, project: Any, pool: Any, opts: SelectOptions) -> Any:
        from ._tomo import remember_particles

        if pool is None:
            from cryoal.active.pool_index import project_index

            assert opts.volumes is not None
            pool = project_index(project, opts.volumes, pattern=opts.pattern, rebuild=opts.reindex)
        remember_particles(project, pool)
        return inverted(pool, True) if opts.invert else pool

    def resolve(self, project: Any, opts: SelectOptions) -> SelectOptions:
        from cryoal.active.defaults import recorded_arch

        if opts.arch is not None:
            return opts
        # a project keeps its architecture (defaults.py)
        self._config = dataclasses.replace(
            self._config, arch=recorded_arch(project) or DEFAULT_ARCH
        )
        return dataclasses.replace(opts, arch=self._config.arch)

    def config(self, project: Any, pool: Any, opts: SelectOptions) -> Any:
        from cryoal.active.defaults import resolve_pretraining

        config, plan = resolve_pretraining(project, pool, self._config)
        if plan is not None and config.model is None:
            click.echo(plan)
        return config

    def reporting(self) -> Any:
        from cryoal.pretrain import reporting

        # the pretraining's time estimate, if it runs (printed above its progress bar)
        return reporting(_echo_above_bars)

    def summary(self, project: Any, pool: Any, result: Any, opts: SelectOptions) -> None:
        from ._tomo import write_copick_picks

        _print_summary(project, pool, result, opts)
        if opts.copick_picks:
            copick = write_copick_picks(opts.tomo, pool, result)
            click.echo(f"copick:  {copick} in {opts.tomo.copick}")


class _Images(_Pipeline):
    """``--task image2d``: a folder of 2D images, labels in the project database."""

    def check(self, opts: SelectOptions) -> None:
        if opts.images is None:
            raise click.UsageError("--task image2d needs --images DIR (a folder of images)")
        if opts.masks is not None:
            raise click.UsageError("--masks is for --task segmentation")

    def prepare(self, opts: SelectOptions) -> SelectOptions:
        opts = dataclasses.replace(opts, arch=opts.arch or self.task.default_model)
        assert opts.arch is not None
        self._config = _config(opts, self.task, opts.arch)
        return opts

    def open_pool(self, opts: SelectOptions) -> Any:
        pattern = opts.pattern if opts.pattern != "*.mrc" else None
        return self.task.open_pool(opts.images, pattern=pattern)

    def config(self, project: Any, pool: Any, opts: SelectOptions) -> Any:
        return self._config

    def summary(self, project: Any, pool: Any, result: Any, opts: SelectOptions) -> None:
        rnd = result.round
        n_lab = len(project.label_map())
        what = {
            "cold": "cold start",
            "train": f"trained on {rnd.n_labels} labels",
            "score": "scored",
        }
        click.echo(
            f"round {rnd.n} (image2d): {what[rnd.mode]} ({opts.arch}); strategy "
            f"{rnd.strategy}; pool {len(pool)} images {pool.box[0]}x{pool.box[1]} px, "
            f"{len(pool) - n_lab} unlabelled; picked {len(result.picks)}"
        )
        if rnd.metrics.get("encoder"):
            click.echo(f"pretrained encoder: {rnd.metrics['encoder']}")
        acc = rnd.metrics.get("train_accuracy")
        if acc is not None:
            click.echo(f"model: {rnd.model_path} (training accuracy {acc:.2f})")
        click.echo(format_picks(result.table))
        click.echo(f"picks:   {result.files['csv']}  (+ {result.files['star'].name})")
        click.echo(f"gallery: {result.files.get('gallery', project.gallery_path(rnd.n))}")
        if "out" in result.files:
            click.echo(f"also:    {result.files['out']}")
        click.echo(
            "next: label these images (CSV id,label), then\n"
            f"  cryoal label import LABELS.csv --project {project.path}\n"
            f"  cryoal select --task image2d --images {opts.images} --project {project.path}"
        )


class _Segmentation(_Pipeline):
    """``--task segmentation``: tomogram crops and their label maps (the masks are labels)."""

    def check(self, opts: SelectOptions) -> None:
        from cryoal.errors import ConfigError

        if opts.volumes is None:
            raise click.UsageError("--task segmentation needs --volumes DIR (tomogram crops, MRC)")
        if opts.images is not None or opts.labels is not None:
            raise click.UsageError(
                "--task segmentation takes label maps with --masks DIR, not --images/--labels"
            )
        if opts.pretrain_epochs not in (0, "auto"):  # auto (the default) means none here
            raise ConfigError(
                "--pretrain-epochs is not supported for --task segmentation: pool "
                "pretraining trains a classifier's encoder (features + linear head) to embed "
                "whole subtomograms or images, and the segmentation network (a UNet) has no "
                "such encoder and predicts every voxel, which image-level contrastive views "
                "do not train; drop --pretrain-epochs"
            )

    def prepare(self, opts: SelectOptions) -> SelectOptions:
        from cryoal.runtime import resolve_device

        opts = dataclasses.replace(opts, arch=opts.arch or self.task.default_model)
        # auto (the subtomogram default) chooses among classification strategies; for
        # segmentation it means expected-gradnorm over the mean voxel loss
        strategy = "expected-gradnorm" if opts.strategy == "auto" else opts.strategy
        self._config = self.task.select_config(
            strategy=strategy,
            budget=opts.budget,
            seed=opts.seed,
            arch=opts.arch,
            epochs=opts.epochs,
            batch_size=opts.batch_size,
            model=None if opts.model is None else str(opts.model),
            device=str(resolve_device(opts.device)),
            progress=opts.progress,
        )
        return opts

    def open_pool(self, opts: SelectOptions) -> Any:
        classes = None if opts.classes is None else [c.strip() for c in opts.classes.split(",")]
        return self.task.open_pool(
            opts.volumes, masks=opts.masks, patch=opts.patch, pattern=opts.pattern, classes=classes
        )

    def config(self, project: Any, pool: Any, opts: SelectOptions) -> Any:
        return self._config

    def summary(self, project: Any, pool: Any, result: Any, opts: SelectOptions) -> None:
        rnd, files = result.round, result.files
        if result.reused:
            click.echo(
                f"round {rnd.n} is complete and no mask changed since; showing its picks "
                "again (annotate them, or pass --new-round)"
            )
        elif result.resumed_from is not None:
            click.echo(f"resumed round {rnd.n} from step '{result.resumed_from}'")
        what = {
            "cold": "cold start (no annotated patch yet: random picks)",
            "train": f"trained {opts.arch} on {rnd.n_labels} annotated patches",
            "score": f"scored with {opts.model}",
        }[rnd.mode]
        click.echo(
            f"round {rnd.n} (segmentation): {what}; strategy {rnd.strategy}; "
            f"{len(pool)} patches of {pool.patch}³ from {len(pool.volume_ids)} crops, "
            f"{len(pool) - rnd.n_labels} unannotated; picked {len(result.table)}"
        )
        metrics = rnd.metrics
        if "train_mean_dice" in metrics:
            dice = ", ".join(f"{c} {v:.2f}" for c, v in metrics["train_dice"].items() if v == v)
            click.echo(
                f"model: {files['model']} (training mean Dice "
                f"{metrics['train_mean_dice']:.2f}: {dice})"
            )
        table = result.table
        cols = ["rank", "id", "score", *[c for c in table.columns if c.startswith("frac_")]]
        click.echo(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        click.echo(f"picks:   {files['csv']}  (+ {files['star'].name})")
        if "gallery" in files:
            click.echo(f"gallery: {files['gallery']}")
        if "out" in files:
            click.echo(f"also:    {files['out']}")
        click.echo(
            "next: annotate these patches (voxels z:z+size, y:y+size, x:x+size) in the "
            f"crops' label maps in {opts.masks or 'a --masks folder'}, then run the same "
            "command again\n  (a killed run resumes where it stopped; progress: cryoal "
            f"status --project {project.path})"
        )


#: the select pipeline of each registered task (tests check every task has one)
_PIPELINES: dict[str, type[_Pipeline]] = {
    "classification3d": _Subtomograms,
    "image2d": _Images,
    "segmentation": _Segmentation,
}


def pipeline_of(task_name: str) -> _Pipeline:
    """The select pipeline of task ``task_name`` (:func:`cryoal.tasks.get`)."""
    from cryoal import tasks

    task = tasks.get(task_name)
    return _PIPELINES[task.name](task)


def _print_summary(project: Any, pool: Any, result: Any, opts: SelectOptions) -> None:
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
        "cold": f"cold start ({rnd.strategy} on an untrained {opts.arch})",
        "train": f"trained on {rnd.n_labels} labels",
        "score": f"scored with {opts.model}",
    }[rnd.mode]
    click.echo(
        f"round {rnd.n}: {what}; strategy {rnd.strategy}; pool {len(pool)} volumes, "
        f"{len(pool) - n_lab} unlabelled; picked {len(result.picks)}"
    )
    heldout = rnd.metrics.get("heldout")
    if heldout:
        click.echo(
            f"held-out accuracy {heldout['accuracy']:.2f}: round {heldout['round']}'s model on "
            f"its {heldout['labelled']} labelled picks"
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
        f"  cryoal select {source_args(opts)} --project {proj}"
    )


def source_args(opts: SelectOptions) -> str:
    """The pool options of this command line, to show the next command."""
    from ._tomo import tomogram_args

    return tomogram_args(opts.tomo) or f"--volumes {opts.volumes}"


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


def _run_demo(opts: SelectOptions) -> None:
    from cryoal import tasks
    from cryoal.active import Oracle, Project
    from cryoal.active.demo import demo_pool
    from cryoal.active.loop import run
    from cryoal.io import VolumePool, read_labels

    config = _config(opts, tasks.get(opts.task), opts.arch or DEMO_ARCH)
    click.echo("demo: building the simulated demo pool (once; cached afterwards) ...")
    demo = demo_pool(manifest=opts.demo_manifest, progress=opts.progress)
    pool = VolumePool.from_path(demo.volumes)
    truth = read_labels(demo.labels)
    oracle = Oracle(dict(zip(truth["id"], truth["label"], strict=True)), annotator="demo-oracle")
    classes = sorted(set(truth["label"]))
    test_set = None
    if demo.test_volumes is not None and demo.test_labels is not None:
        test_pool = VolumePool.from_path(demo.test_volumes).with_labels(demo.test_labels)
        test_set = test_pool.dataset(class_names=classes)
    project_dir = opts.project or DEFAULT_DEMO_PROJECT
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
        with project.lock(timeout=opts.lock_timeout):
            history = run(
                project,
                oracle,
                config.strategy,
                opts.rounds,
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

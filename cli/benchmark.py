"""``cryoal benchmark``: reproducible benchmarks (``noise``: strategies × SNR × seeds)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import click

from ._common import RegistryChoice, example_epilog, task_choice
from ._options import OptionsCommand

EXAMPLES = """
cryoal benchmark noise --preset quick --out bench/quick
cryoal benchmark noise --preset standard --strategies random,entropy,expected-gradnorm --out bench/std
cryoal benchmark noise --preset paper --device cuda --out bench/paper      # GPU-sized
cryoal benchmark noise --preset quick --snr inf,0.05 --seeds 3 --out bench/q2
cryoal benchmark noise --preset quick --print-config                       # show, run nothing
cryoal benchmark noise --preset low-budget --out bench/low                 # 5-100 labels/class
cryoal benchmark noise --preset quick --pretrain-epochs 30 --strategies random,random@scratch,auto --out bench/pt
cryoal benchmark noise --preset quick --schedule 8,16,32,64 --initial-from cold-start --out bench/s
cryoal benchmark noise --task image2d --preset quick --out bench/images   # 2D projections
cryoal benchmark noise --task segmentation --preset quick --out bench/seg # UNet on crops
cryoal benchmark noise --config my_benchmark.json --out bench/mine         # options from a file
"""


def _preset_names() -> list[str]:
    from cryoal.benchmark import presets

    return presets.preset_names()


@click.group("benchmark", short_help="Benchmarks of the acquisition strategies.")
def benchmark() -> None:
    """Benchmarks of the acquisition strategies on simulated data with known truth."""


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise click.BadParameter("give at least one comma-separated value")
    return items


def _parse_schedule(value: str) -> tuple[int, ...]:
    from cryoal.errors import ConfigError

    try:
        counts = tuple(int(v) for v in _split(value) or ())
    except ValueError as exc:
        raise ConfigError(
            f"--schedule takes comma-separated label counts such as 20,40,80, got {value!r}"
        ) from exc
    return counts


def _parse_snrs(value: str | None) -> tuple[float, ...] | None:
    items = _split(value)
    if items is None:
        return None
    out = []
    for item in items:
        try:
            snr = math.inf if item.lower() in ("inf", "infinity", "none") else float(item)
        except ValueError:
            raise click.BadParameter(f"{item!r} is not a number (use e.g. inf,0.1,0.05)") from None
        out.append(snr)
    return tuple(out)


def _read_config_file(path: Path) -> dict[str, Any]:
    from cryoal.errors import ConfigError

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the benchmark config ({exc.strerror})") from exc
    import yaml

    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid JSON/YAML ({exc})") from exc
    if isinstance(data, dict) and "arguments" in data and "benchmark" in data["arguments"]:
        data = data["arguments"]["benchmark"]  # a config.json written by an earlier run
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of benchmark options")
    return data


@dataclasses.dataclass(frozen=True)
class NoiseOptions:
    """The options of ``cryoal benchmark noise`` as parsed by click (one field per option)."""

    preset_name: str
    config_file: Path | None
    out: Path | None
    strategies: str | None
    pretrain_epochs: int | None
    schedule: str | None
    initial_from: str | None
    snr: str | None
    seeds: int | None
    model_name: str | None
    task: str | None
    device: str | None
    resume: bool
    print_config: bool

    def base_config(self) -> Any:
        """The config of ``--config`` or of ``--preset`` for ``--task``, before overrides."""
        from cryoal.benchmark import presets

        if self.config_file is not None:
            return presets.from_dict(_read_config_file(self.config_file))
        return presets.preset(self.preset_name, task=self.task)

    def changes(self, config: Any) -> dict[str, Any]:
        """The options given on the command line, as config fields."""
        changes: dict[str, Any] = {}
        if self.strategies is not None:
            changes["strategies"] = tuple(_split(self.strategies) or ())
        if self.pretrain_epochs is not None:
            changes["pretrain_epochs"] = self.pretrain_epochs
        if self.schedule is not None:
            changes["schedule"] = _parse_schedule(self.schedule)
        if self.initial_from is not None:
            changes["initial_from"] = self.initial_from
        snrs = _parse_snrs(self.snr)
        if snrs is not None:
            changes["snrs"] = snrs
        if self.seeds is not None:
            changes["seeds"] = tuple(range(self.seeds))
        if self.model_name is not None:
            changes["model"] = self.model_name
            if self.model_name != config.model:
                changes["model_kwargs"] = {}
        if self.task is not None and self.task != config.task:
            changes["task"] = self.task
        if self.device is not None:
            changes["device"] = self.device
        if set(changes) - {"device"}:
            changes["preset"] = f"{config.preset} (modified)"
        return changes

    def config(self) -> Any:
        """The resolved benchmark config (raises ConfigError on bad values)."""
        config = self.base_config()
        changes = self.changes(config)
        return config.replace(**changes) if changes else config


@benchmark.command(
    "noise",
    cls=OptionsCommand,
    options=NoiseOptions,
    epilog=example_epilog(EXAMPLES),
    short_help="Noise robustness: strategies × SNR × seeds → curves, tables, report.",
)
@click.option(
    "--preset",
    "preset_name",
    type=RegistryChoice(_preset_names),
    default="quick",
    show_default=True,
    help="quick: ≤ 10 min on 2 CPU cores; standard: ≈ 1 h CPU; low-budget: 5–100 labels "
    "per class with a pretrained encoder, cold start (≈ 1 h CPU); paper: GPU-sized "
    "(image2d and segmentation: quick, standard).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON/YAML file of options (or an earlier run's config.json); replaces --preset.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (results.csv, summary.md, curves_snr*.png, robustness.png, config.json).",
)
@click.option(
    "--strategies",
    help="Comma-separated acquisition strategies (include random, the baseline); NAME@scratch "
    "runs NAME without the pretrained encoder.",
)
@click.option(
    "--pretrain-epochs",
    type=click.IntRange(min=0),
    help="Pretrain one encoder per SNR on its unlabelled pool for N epochs and start every "
    "round's model from it (0: none).",
)
@click.option(
    "--schedule",
    help="Comma-separated label counts at which models are evaluated (e.g. 20,40,80,160); "
    "replaces the preset's initial/budget/rounds.",
)
@click.option(
    "--initial-from",
    type=click.Choice(["balanced-random", "cold-start"]),
    help="First labels: a class-balanced random set shared by all strategies, or each "
    "strategy's own cold start from zero labels.",
)
@click.option("--snr", "snr", help="Comma-separated SNRs, var(signal)/var(noise); inf = no noise.")
@click.option("--seeds", type=click.IntRange(min=1), help="Number of seeds (0 … N-1).")
@click.option("--model", "model_name", help="Architecture from the model registry (e.g. dsrf3d).")
@click.option(
    "--task",
    type=task_choice(),
    default=None,
    help="Benchmarked task, from the task registry [default: classification3d]; image2d "
    "and segmentation have their own quick/standard presets (cryoal.benchmark.tasks).",
)
@click.option(
    "--device", default=None, help="cpu, cuda, cuda:N or auto [default: the preset's, auto]."
)
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Keep finished runs in --out and do only what is missing; --no-resume starts over.",
)
@click.option("--print-config", is_flag=True, help="Print the resolved options and exit.")
def noise(options: NoiseOptions) -> None:
    """Benchmark acquisition strategies on simulated data at several SNRs.

    For each SNR a labelled pool and a held-out test set are simulated (subtomograms:
    or reused from OUT/data), the simulated active loop runs for every strategy and seed
    from the same initial labelled set per seed, and each round's model is tested.
    Subtomograms: a model trained on the whole pool at each SNR is tested at every SNR
    (robustness.png). An interrupted run continues where it stopped when started again
    with the same options.
    """
    config = options.config()
    if options.print_config:
        from cryoal.benchmark.presets import expected_time

        click.echo(config.describe())
        click.echo(f"{'expected time':>18}: {expected_time(config)}")
        return
    _run(click.get_current_context(), options, config)


def _run(ctx: click.Context, options: NoiseOptions, config: Any) -> None:
    from cryoal.benchmark.engine import run
    from cryoal.benchmark.report import final_table, format_snr
    from cryoal.errors import ConfigError

    out = options.out
    if out is None:
        raise ConfigError(
            "--out is required: the folder for results.csv, summary.md and the figures"
        )
    arguments = {k: v for k, v in ctx.params.items() if k != "print_config"}
    table = run(config, out, resume=options.resume, arguments={"command": arguments})
    final = final_table(table)
    click.echo(f"noise benchmark ({config.preset}): final test accuracy, mean ± std over seeds")
    for _, row in final.iterrows():
        std = "n/a" if math.isnan(row["std"]) else f"{row['std']:.3f}"
        click.echo(
            f"  SNR {format_snr(float(row['snr'])):>6}  {row['strategy']:<20} "
            f"{row['mean']:.3f} ± {std}  ({int(row['n_seeds'])} seeds, {row['n_labels']:.0f} labels)"
        )
    click.echo(f"report: {out / 'summary.md'}")

"""``cryoal predict``: class probabilities for every volume from a trained checkpoint."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from ._common import (
    device_option,
    example_epilog,
    invert_option,
    inverted,
    pattern_option,
    progress_option,
    volumes_option,
)
from ._options import OptionsCommand
from ._tomo import (
    TomogramOptions,
    star_coordinates_option,
    tomogram_options,
    tomogram_pool,
)

EXAMPLES = """
cryoal predict --volumes subtomos/ --model model.pt --out predictions.csv
cryoal predict --volumes particles.mrcs --model model.pt --out predictions.star --batch-size 128
cryoal predict --tomograms tomos/ --coords particles.star --box 32 --model model.pt --out classes.star
cryoal predict --copick config.json --object particle --model model.pt --out classes.star --copick-picks
"""


@dataclasses.dataclass(frozen=True)
class PredictOptions:
    """The options of ``cryoal predict`` as parsed (one field per click parameter)."""

    checkpoint: Path
    out: Path
    volumes: Path | None = None
    tomo: TomogramOptions = TomogramOptions()
    batch_size: int = 64
    star_coordinates: str = "relion5"
    copick_picks: bool = False
    pattern: str = "*.mrc"
    invert: bool | None = None
    progress: bool = True
    device: str = "auto"


@click.command(
    "predict",
    cls=OptionsCommand,
    options=PredictOptions,
    epilog=example_epilog(EXAMPLES),
    short_help="Predict classes of volumes with a trained checkpoint.",
)
@volumes_option(required=False)
@tomogram_options
@click.option(
    "--model",
    "checkpoint",
    required=True,
    type=click.Path(path_type=Path),
    help="Checkpoint written by 'cryoal train'.",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Predictions table, .csv or .star.",
)
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@star_coordinates_option
@click.option(
    "--copick-picks",
    is_flag=True,
    help="--copick: also write the predictions into the copick project as picks, one picks "
    "set per predicted class (object = class, user cryoal, session predictions, score = "
    "the class probability).",
)
@pattern_option
@invert_option
@progress_option
@device_option
def predict(opts: PredictOptions) -> None:
    """Write one row per volume: id, predicted class, its probability (confidence), p_<class> columns.

    Volumes are z-scored one by one, as in training; their box (and voxel size, within
    1 %) must match the checkpoint's. With --tomograms/--copick the boxes are cut from
    the tomograms at the particle coordinates, and a .star output is a RELION 5
    particles.star (rlnTomoName, centred Å coordinates, rlnClassNumber = 1-based index
    of the predicted class in the checkpoint's classes).
    """
    import pandas as pd

    from cryoal.io import VolumePool, write_table
    from cryoal.models import check_compatible, load_checkpoint
    from cryoal.runtime import resolve_device
    from cryoal.train import predict as predict_probabilities
    from cryoal.transforms import normalize

    out, invert = opts.out, opts.invert
    copick = opts.tomo.copick if opts.copick_picks else None  # --copick-picks
    dev = resolve_device(opts.device)
    if out.suffix.lower() not in (".csv", ".star", ".tsv"):
        from cryoal.errors import ConfigError

        raise ConfigError(f"--out {out}: use a .csv or .star file name")
    pool = tomogram_pool(opts.tomo, volumes=opts.volumes, copick_picks=opts.copick_picks)
    if pool is None:
        if opts.volumes is None:
            raise click.UsageError("--volumes (or --tomograms/--copick) is required")
        pool = VolumePool.from_path(opts.volumes, opts.pattern).check()
    model, info = load_checkpoint(opts.checkpoint, device=dev)
    if invert is None:  # as the checkpoint was trained (cryoal train --invert)
        invert = bool((info.train_config or {}).get("invert", False))
    pool = inverted(pool, invert)
    check_compatible(info, pool.box, pool.voxel_size)
    classes = info.class_names or [f"class{i}" for i in range(info.arch.num_classes)]
    if copick is not None:  # any class may be predicted: each must be a copick object
        from ._tomo import check_copick_objects

        check_copick_objects(copick, classes)
    probs = predict_probabilities(
        model,
        pool.dataset(transform=normalize),
        batch_size=opts.batch_size,
        device=dev,
        progress=opts.progress,
    )
    confidence, best = probs.max(dim=1)
    table = pd.DataFrame(
        {
            "id": pool.ids,
            "predicted": [classes[i] for i in best.tolist()],
            "confidence": confidence.numpy().round(6),
            **{f"p_{name}": probs[:, c].numpy().round(6) for c, name in enumerate(classes)},
        }
    )
    writer = getattr(pool, "write_picks", None)
    copick_line = None
    if copick is not None:  # every copick check runs before anything is written
        from ._tomo import write_class_picks

        copick_line = write_class_picks(
            copick,
            pool.with_coordinates(table),
            float(pool.voxel_size),
            class_column="predicted",
            session_id="predictions",
            score_column="confidence",
        )
    if writer is not None:  # tomogram pools: tomo, x, y, z; RELION 5 .star with rlnClassNumber
        writer(out, table, coordinates=opts.star_coordinates)
    else:
        write_table(out, table)
    counts = table["predicted"].value_counts()
    click.echo(
        f"{len(pool)} volumes -> {out}: "
        + ", ".join(f"{name} {int(counts.get(name, 0))}" for name in classes)
    )
    if copick_line is not None:
        click.echo(f"copick: {copick_line}")

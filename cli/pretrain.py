"""``cryoal pretrain``: self-supervised pretraining of an encoder on the unlabelled pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ._common import (
    device_option,
    example_epilog,
    lr_option,
    pattern_option,
    progress_option,
    seed_option,
    volumes_option,
)

EXAMPLES = """
cryoal pretrain --volumes subtomos/ --model cb3d --epochs 50 --out encoder.pt
cryoal pretrain --volumes subtomos/ --model cb3d --project cryoal-project   # cached for select
cryoal pretrain --volumes particles.h5 --model dsrf3d --max-items 5000 --device cuda --out enc.pt
cryoal pretrain --images digits/images --epochs 20 --project cryoal-project   # 2D, cnn2d
"""


@click.command(
    "pretrain",
    epilog=example_epilog(EXAMPLES),
    short_help="Pretrain an encoder on the unlabelled pool (contrastive, no labels).",
)
@volumes_option(required=False)
@click.option(
    "--images",
    type=click.Path(path_type=Path),
    help="Instead of --volumes: a folder of 2D images (PNG/TIFF/2D MRC/.npy), the pool of "
    "`cryoal select --task image2d`.",
)
@pattern_option
@click.option(
    "--model",
    "model_name",
    default=None,
    help="Architecture whose encoder to pretrain; use the one you classify with "
    "[default: cb3d for --volumes, cnn2d for --images].",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Encoder checkpoint to write (config.json goes beside it).",
)
@click.option(
    "--project",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write (or reuse) the project's cached encoder, PROJECT/models/encoder.pt.",
)
@click.option("--epochs", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=2))
@lr_option
@click.option(
    "--temperature",
    default=0.1,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="NT-Xent temperature.",
)
@click.option(
    "--max-items",
    type=click.IntRange(min=2),
    help="Pretrain on a seeded random subset of this many volumes [default: all].",
)
@progress_option
@seed_option
@device_option
def pretrain(
    volumes: Path | None,
    images: Path | None,
    pattern: str,
    model_name: str | None,
    out: Path | None,
    project: Path | None,
    epochs: int,
    batch_size: int,
    lr: float,
    temperature: float,
    max_items: int | None,
    progress: bool,
    seed: int,
    device: str,
) -> None:
    """Train the encoder of --model on the pool without labels (SimCLR NT-Xent).

    Two views of each volume (random rotation, re-imposed missing wedge, extra noise,
    z-score) are pulled together, views of other volumes pushed apart. With --images the
    views of each 2D image are a random quarter turn and mirror, extra noise and z-score
    (no wedge). The encoder initialises classifiers and embeds the pool for the
    typicality cold start and the diversity step of `cryoal select` (see
    docs/acquisition.md).
    """
    import torch

    from cryoal import tasks
    from cryoal.errors import ConfigError
    from cryoal.io import VolumePool
    from cryoal.models import create, describe
    from cryoal.pretrain import PretrainConfig, cached_encoder, load_encoder, pretrain_encoder
    from cryoal.runtime import resolve_device, write_run_config

    if (out is None) == (project is None):
        raise ConfigError("give exactly one of --out FILE or --project DIR")
    if (volumes is None) == (images is None):
        raise ConfigError(
            "give exactly one of --volumes (subtomograms) or --images (a folder of 2D images)"
        )
    model_name = model_name or ("cb3d" if images is None else tasks.get("image2d").default_model)
    arguments = {**click.get_current_context().params, "model_name": model_name}
    dev = resolve_device(device)
    describe(model_name)  # unknown name: fail before reading any volume
    config = PretrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        temperature=temperature,
        max_items=max_items,
        seed=seed,
    )
    pool: Any
    if images is not None:
        pool = tasks.get("image2d").open_pool(
            images, pattern=None if pattern == "*.mrc" else pattern
        )
        what = f"{len(pool)} images, {'x'.join(map(str, pool.box))} px"
        source = {"images": str(images)}
    elif volumes is not None:
        pool = VolumePool.from_path(volumes, pattern)
        what = f"{len(pool)} volumes, box {'x'.join(map(str, pool.box))}"
        source = {"volumes": str(volumes)}
    else:  # unreachable: exactly one of volumes/images was checked above
        raise ConfigError("give exactly one of --volumes or --images")
    in_shape = (1, *pool.box)
    click.echo(f"{what}; pretraining {model_name} for {epochs} epochs on {dev}")
    if project is not None:
        from cryoal.active import ProjectLayout

        path = cached_encoder(
            ProjectLayout(Path(project)).encoder,
            pool,
            model_name,
            in_shape,
            config,
            device=dev,
            progress=progress,
        )
    elif out is not None:
        torch.manual_seed(seed)
        model = create(model_name, 2, in_shape)
        pretrain_encoder(
            model,
            pool,
            config,
            device=dev,
            out=out,
            progress=progress,
            meta={**source, "voxel_size": float(pool.voxel_size)},
        )
        path = out
    else:  # unreachable: exactly one of out/project was checked above
        raise ConfigError("give exactly one of --out FILE or --project DIR")
    _, info = load_encoder(path)
    losses = info.extra.get("losses") or []
    write_run_config(path.parent / "config.json", arguments, seed=seed)
    if losses:
        click.echo(
            f"NT-Xent {losses[0]:.3f} -> {losses[-1]:.3f} over {len(losses)} epochs "
            f"({info.extra.get('seconds', 0):.0f} s, {info.extra.get('n_items')} "
            f"{'images' if images is not None else 'volumes'})"
        )
    click.echo(f"wrote {path}")

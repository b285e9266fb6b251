"""Per-project defaults of ``cryoal select``: what ``--pretrain-epochs auto`` and no ``--arch`` mean.

A default that changes between cryoal versions must not change a project half way: a
round that was started (or finished) with the old default has to resume (or be shown
again) exactly as it was. So the defaults are *sticky* per project:

- a new project (no round yet) gets the current defaults: architecture
  :data:`DEFAULT_ARCH` and ``auto`` pretraining resolved by
  :func:`cryoal.pretrain.plan_pretraining` to a concrete step budget (or to none, with
  the reason);
- a project with rounds keeps what its latest round recorded (``select_config`` in the
  round's configuration): its architecture, and its pretraining epochs and steps, which
  are ``0`` for every round made before ``auto`` existed.

Explicit options (``--arch NAME``, ``--pretrain-epochs N``) always win.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from cryoal.active.select_config import SelectConfig

if TYPE_CHECKING:
    from cryoal.active.project import Project

__all__ = ["DEFAULT_ARCH", "recorded_arch", "resolve_pretraining"]

logger = logging.getLogger(__name__)

#: Architecture of a new project's rounds when ``--arch`` is not given. cb3d is the
#: network of the low-budget benchmark whose gains the pretrained encoder brings, and
#: it pretrains in about a minute on a CPU (dsrf3d: ~20x the FLOPs, > 1 min per step).
DEFAULT_ARCH = "cb3d"


def _recorded(project: Project) -> tuple[int, dict[str, Any]] | None:
    """``(round number, select_config)`` of the latest round, or ``None`` without rounds."""
    latest = project.latest_round()
    if latest is None:
        return None
    return latest.n, dict(latest.config.get("select_config") or {})


def recorded_arch(project: Project) -> str | None:
    """The architecture the project's latest round trained, or ``None`` for a new project.

    Rounds recorded before the architecture was stored (or score-only rounds of an old
    project) give the old default, ``dsrf3d``.
    """
    rec = _recorded(project)
    if rec is None:
        return None
    return str(rec[1].get("arch") or "dsrf3d")


def resolve_pretraining(
    project: Project, pool: Any, config: SelectConfig
) -> tuple[SelectConfig, str | None]:
    """Replace ``pretrain_epochs="auto"`` by concrete numbers for this project and pool.

    Parameters
    ----------
    project
        The open project (its latest round, if any, is read).
    pool
        The pool the rounds use (``len``, ``box``).
    config
        The round's options; returned unchanged unless ``pretrain_epochs == "auto"``.

    Returns
    -------
    config, message
        The config with integer ``pretrain_epochs`` and ``pretrain_steps`` (``0, 0``
        when nothing is pretrained), and a one-line account of the choice for the
        user (``None`` when ``config`` was explicit).
    """
    from cryoal.pretrain import plan_pretraining

    if config.pretrain_epochs != "auto":
        return config, None
    rec = _recorded(project)
    if rec is not None:
        n, sel = rec
        epochs = int(sel.get("pretrain_epochs") or 0)
        steps = int(sel.get("pretrain_steps") or 0)
        if epochs:
            what = f"{steps} steps" if steps else f"{epochs} epochs"
            message = f"pretraining: {what}, as in round {n} of this project (encoder cached)"
        else:
            message = (
                f"pretraining: off, as in round {n} of this project; pass --pretrain-epochs N "
                "to start"
            )
        return dataclasses.replace(config, pretrain_epochs=epochs, pretrain_steps=steps), message
    box = tuple(int(s) for s in pool.box)
    if len(box) != 3:
        message = (
            "pretraining: off for 2D images (auto pretrains subtomogram pools, where the "
            "benchmark measured its gain); pass --pretrain-epochs N to pretrain"
        )
        return dataclasses.replace(config, pretrain_epochs=0, pretrain_steps=0), message
    plan = plan_pretraining(
        len(pool),
        config.arch,
        (1, *box),
        device=config.device,
        arch_kwargs=config.arch_kwargs,
    )
    logger.info("pretrain auto: %s", plan.reason)
    config = dataclasses.replace(config, pretrain_epochs=plan.epochs, pretrain_steps=plan.max_steps)
    return config, f"pretraining (auto): {plan.reason}"

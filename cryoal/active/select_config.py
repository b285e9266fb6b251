"""The options of one classification round: :class:`SelectConfig`.

Its own module so that what reads the options (:mod:`cryoal.active.defaults`, which
resolves ``pretrain_epochs="auto"``) and what runs the round (:mod:`cryoal.active.loop`,
which re-exports it) both import it and neither imports the other.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from cryoal.active.candidates import resolve_candidates
from cryoal.errors import ConfigError

__all__ = ["SelectConfig"]


@dataclasses.dataclass
class SelectConfig:
    """Options of one active-learning round.

    Attributes
    ----------
    strategy
        Acquisition strategy (:func:`cryoal.acquisition.available`) for rounds with labels.
    budget
        Number of volumes to pick.
    seed
        Seeds model initialisation, training, scoring and cold-start picks.
    cold_start
        Strategy when there are no labels yet: ``"auto"`` (default: the ``auto``
        strategy, which cold-starts by typicality), ``"typicality"`` (TypiClust on the
        embedding), ``"coreset"`` (k-center greedy on the untrained model's embedding) or
        ``"random"``.
    arch, arch_kwargs
        Model architecture (:func:`cryoal.models.available`) and its options.
    epochs, train_batch_size, lr, balanced
        Training options (see :class:`cryoal.train.TrainConfig`); the batch size used is
        at most ``train_batch_size`` and shrinks for small label sets
        (:func:`cryoal.active.loop.train_batch_size`).
    warm_start
        Start training from the previous round's model instead of from scratch.
    model
        A checkpoint to score with (score-only round); ``None`` trains.
    batch_size
        Volumes per forward pass while scoring.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    gallery_size
        Picks shown in the gallery (the first ones by rank); 0 disables the gallery.
    progress
        Show progress bars.
    num_workers
        DataLoader worker processes reading volumes while training and scoring.
    pretrain_epochs, pretrain_steps
        Pool-pretrained encoder (:mod:`cryoal.pretrain`): ``pretrain_epochs > 0``
        pretrains one for that many epochs, stopping after ``pretrain_steps`` steps when
        that is ``> 0`` (cached in ``PROJECT/models/encoder.pt``, trained once per pool);
        ``0`` uses an encoder already there (``cryoal pretrain --project``) when it fits
        the architecture and box. ``"auto"`` is resolved by :func:`cryoal.active.loop.select_round` with
        :func:`cryoal.active.defaults.resolve_pretraining` (a new project: a budget
        sized by :func:`cryoal.pretrain.plan_pretraining`; else what the project's
        latest round used) and the round records the concrete numbers. The encoder
        initialises every round's model (all but the head) and embeds the pool for
        typicality / diversity.
    candidates
        Unlabelled volumes a round scores (:mod:`cryoal.active.candidates`): ``"auto"``
        scores a seeded random subset of 2,000 (CPU) or 25,000 (GPU) in pools of more
        than 2,000 volumes and all of them in smaller pools; a number: a subset of that
        size; ``0`` or ``"all"``: every unlabelled volume.
    """

    strategy: str = "auto"
    budget: int = 24
    seed: int = 0
    cold_start: str = "auto"
    arch: str = "dsrf3d"
    arch_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    epochs: int = 20
    train_batch_size: int = 16
    lr: float = 3e-3
    balanced: bool = True
    warm_start: bool = False
    model: str | None = None
    batch_size: int = 32
    device: str = "auto"
    gallery_size: int = 24
    progress: bool = True
    num_workers: int = 0
    pretrain_epochs: int | str = 0
    pretrain_steps: int = 0
    candidates: int | str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.budget, bool) or not isinstance(self.budget, int) or self.budget < 1:
            raise ConfigError(f"budget must be a positive integer, got {self.budget!r}")
        if self.cold_start not in ("auto", "typicality", "coreset", "random"):
            raise ConfigError(
                "cold_start must be 'auto', 'typicality', 'coreset' or 'random', "
                f"got {self.cold_start!r}"
            )
        if self.pretrain_epochs != "auto" and (
            isinstance(self.pretrain_epochs, bool)
            or not isinstance(self.pretrain_epochs, int)
            or self.pretrain_epochs < 0
        ):
            raise ConfigError(
                f"pretrain_epochs must be 'auto' or an integer >= 0, got {self.pretrain_epochs!r}"
            )
        if self.pretrain_steps < 0:
            raise ConfigError(f"pretrain_steps must be >= 0, got {self.pretrain_steps}")
        resolve_candidates(self.candidates, 0, 0, 1)  # a bad value fails here, not mid-round
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers}")

    def resume_key(self) -> dict[str, Any]:
        """The options that define a round's picks: a resumed round must match them."""
        model = None if self.model is None else str(Path(self.model).resolve())
        key = {
            "strategy": self.strategy,
            "budget": self.budget,
            "seed": self.seed,
            "cold_start": self.cold_start,
            "arch": self.arch,
            "arch_kwargs": dict(self.arch_kwargs),
            "epochs": self.epochs,
            "train_batch_size": self.train_batch_size,
            "lr": self.lr,
            "balanced": self.balanced,
            "warm_start": self.warm_start,
            "model": model,
        }
        if self.pretrain_epochs:  # only when used, so older rounds still resume
            key["pretrain_epochs"] = self.pretrain_epochs
        if self.pretrain_steps:
            key["pretrain_steps"] = self.pretrain_steps
        if self.candidates != "auto":  # only when given, so older rounds still resume
            key["candidates"] = self.candidates
        # as stored in the database (tuples become lists), so keys compare equal
        return dict(json.loads(json.dumps(key)))

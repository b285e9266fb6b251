"""Candidate subsets: score a seeded random subset of a large pool's unlabelled volumes.

Scoring a round costs one or more passes over the unlabelled pool (the trained model's
predictions, per-sample gradients, the encoder's embedding): on a CPU about 20 ms per
32³ volume and pass for ``cb3d``, so 10⁴ volumes take minutes where 10³ take seconds.
Like the released code of the gradient-norm paper (a random 25,000-volume subset), a
round of a large pool scores only a random subset of its unlabelled volumes (the
*candidates*) and picks among them. ``SelectConfig.candidates = "auto"`` (the default) does this only for
pools of more than :data:`AUTO_MIN_POOL` volumes, so the picks of smaller pools are
exactly those of scoring everything; a number sets the subset size for any pool, and
``0`` (``cryoal select --candidates all``) scores every unlabelled volume.

The fidelity of the subset (overlap of the picks with full scoring, rank correlation of
the scores, rank of the subset's picks in the full ranking) was measured on a real pool
and is given in docs/benchmarks.md ("Candidate subsets").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cryoal.errors import ConfigError

__all__ = [
    "AUTO_MIN_POOL",
    "CPU_CANDIDATES",
    "GPU_CANDIDATES",
    "MIN_PER_PICK",
    "candidate_indices",
    "resolve_candidates",
]

#: ``auto`` scores every unlabelled volume of pools up to this size (the picks of those
#: pools do not change; the low-budget benchmark uses pools of 1,500 volumes)
AUTO_MIN_POOL = 2000
#: ``auto``'s subset size on a CPU: a round on 10⁴ volumes costs about what one on
#: 2×10³ does
CPU_CANDIDATES = 2000
#: ``auto``'s subset size on a GPU (the released code's 25k)
GPU_CANDIDATES = 25000
#: a subset holds at least this many candidates per pick of the round's budget
MIN_PER_PICK = 10


def resolve_candidates(
    option: int | str,
    n_pool: int,
    n_unlabelled: int,
    budget: int,
    device: str | torch.device = "cpu",
) -> int | None:
    """How many unlabelled volumes a round scores, or ``None`` for all of them.

    Parameters
    ----------
    option
        ``"auto"`` (a subset only for pools of more than :data:`AUTO_MIN_POOL` volumes:
        :data:`CPU_CANDIDATES` on a CPU, :data:`GPU_CANDIDATES` on a GPU), ``0`` or
        ``"all"`` (score all), or a positive subset size.
    n_pool, n_unlabelled
        Volumes in the pool and unlabelled ones left.
    budget
        Picks of the round: a subset holds at least ``MIN_PER_PICK · budget`` volumes.
    device
        Where the round scores (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).

    Returns
    -------
    int or None
        The subset size, ``None`` when it would hold every unlabelled volume.

    Raises
    ------
    ConfigError
        ``option`` is not ``"auto"``, ``"all"`` or an integer >= 0.
    """
    if option == "all":
        return None
    if option == "auto":
        if n_pool <= AUTO_MIN_POOL:
            return None
        size = GPU_CANDIDATES if torch.device(device).type == "cuda" else CPU_CANDIDATES
    elif isinstance(option, bool) or not isinstance(option, int) or option < 0:
        raise ConfigError(f"candidates must be 'auto', 'all' or an integer >= 0, got {option!r}")
    elif option == 0:
        return None
    else:
        size = option
    size = max(size, MIN_PER_PICK * budget)
    return size if size < n_unlabelled else None


def candidate_indices(unlabelled: Sequence[int], size: int, *, seed: int) -> list[int]:
    """A seeded random subset of ``size`` of ``unlabelled``, in pool order.

    Parameters
    ----------
    unlabelled
        Pool indices of the unlabelled volumes, ascending.
    size
        Subset size, ``1 <= size``; all of ``unlabelled`` when it has at most ``size``.
    seed
        The round's seed: the same round draws the same subset when it resumes.

    Returns
    -------
    list of int
        ``size`` distinct indices of ``unlabelled``, ascending.
    """
    if size < 1:
        raise ConfigError(f"a candidate subset needs size >= 1, got {size}")
    if len(unlabelled) <= size:
        return list(unlabelled)
    generator = torch.Generator().manual_seed(int(seed))
    chosen = torch.randperm(len(unlabelled), generator=generator)[:size]
    return [int(unlabelled[j]) for j in sorted(chosen.tolist())]

"""What the pools share: ordered items with stable ids, and for most of them labels.

:class:`ItemIds` is the id lookup of every pool whose ``ids`` are a list (``index_of``,
also :class:`~cryoal.tasks.seg_data.PatchPool`). :class:`~cryoal.io.VolumePool`,
:class:`~cryoal.io.tomopool.TomogramPool` and :class:`~cryoal.io.images.ImagePool` also keep
``labels`` (one per item, ``None`` where unlabelled) and derive new pools from rows of
themselves (``_derive``): :class:`LabelledItems` is their one label join and subset rule.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Self

import numpy as np
import pandas as pd
import torch

from cryoal.errors import EmptyPoolError, InvalidLabelsError

__all__ = ["ItemIds", "LabelledItems"]


class ItemIds:
    """Mixin: ``index_of`` over ``ids`` (unique strings, in pool order), cached as a dict."""

    ids: list[str]
    _id_index: dict[str, int] | None = None

    def _describe_items(self) -> str:
        """How errors name the pool, e.g. ``"1500 items under /data"``."""
        return f"{len(self.ids)} items"

    def _ids_to_rows(self) -> dict[str, int]:
        if self._id_index is None:
            self._id_index = {s: i for i, s in enumerate(self.ids)}
        return self._id_index

    def index_of(self, id: str) -> int:
        """Position of the item with this id.

        Raises
        ------
        InvalidLabelsError
            The id is not in the pool.
        """
        try:
            return self._ids_to_rows()[id]
        except KeyError:
            raise InvalidLabelsError(
                f"id {id!r} is not in the pool ({self._describe_items()}); "
                f"ids look like {self.ids[0]!r}"
            ) from None


class LabelledItems(ItemIds, ABC):
    """Mixin: label join and subsets over ``ids`` / ``labels``.

    A pool using it sets ``ids`` (unique strings) and ``labels`` and implements
    ``_derive(rows, labels)``: a pool of its items ``rows`` (int64 positions, in order)
    carrying ``labels`` (one per row), sharing files and options.
    """

    labels: list[str | None]

    @abstractmethod
    def _derive(self, rows: np.ndarray, labels: list[str | None]) -> Self:
        """A pool of items ``rows`` (in order) carrying ``labels``."""

    @property
    def class_names(self) -> list[str]:
        """Sorted distinct labels."""
        return sorted({lab for lab in self.labels if lab is not None})

    def labelled_indices(self) -> list[int]:
        """Positions of labelled items, in pool order."""
        return [i for i, lab in enumerate(self.labels) if lab is not None]

    def unlabelled_indices(self) -> list[int]:
        """Positions of unlabelled items, in pool order."""
        return [i for i, lab in enumerate(self.labels) if lab is None]

    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor) -> Self:
        """A pool of the given items (in the given order; negative counts from the end),
        sharing files and labels.

        Raises
        ------
        IndexError
            An index is out of range.
        EmptyPoolError
            ``indices`` is empty.
        """
        if isinstance(indices, torch.Tensor):
            indices = indices.detach().cpu().numpy()
        rows = np.asarray(indices, dtype=np.int64).reshape(-1)
        if rows.size == 0:
            raise EmptyPoolError("subset of no items")
        n = len(self.ids)
        bad = rows[(rows < -n) | (rows >= n)]
        if bad.size:
            raise IndexError(f"subset index {int(bad[0])} out of range for {n} items")
        rows = np.where(rows < 0, rows + n, rows)
        return self._derive(rows, [self.labels[i] for i in rows.tolist()])

    def with_labels(self, labels: str | os.PathLike[str] | pd.DataFrame) -> Self:
        """A copy with labels joined on ids; items the table does not name are unlabelled.

        Parameters
        ----------
        labels
            A ``.csv``/``.star`` labels file or a DataFrame with ``id`` and ``label``.

        Raises
        ------
        InvalidLabelsError
            Malformed table, or ids not in the pool (the first five rows are listed).
        """
        from cryoal.io.labels import read_labels, validate_labels

        index = self._ids_to_rows()
        if isinstance(labels, pd.DataFrame):
            df = validate_labels(labels, known_ids=index)
        else:
            df = read_labels(labels, known_ids=index)
        joined: list[str | None] = [None] * len(self.ids)
        for s, lab in zip(df["id"], df["label"], strict=True):
            joined[index[s]] = lab
        return self._derive(np.arange(len(self.ids), dtype=np.int64), joined)

"""What the labelled pools share: ordered items with stable ids and optional labels.

:class:`~cryoal.io.VolumePool`, :class:`~cryoal.io.tomopool.TomogramPool` and
:class:`~cryoal.io.images.ImagePool` keep ``ids`` and ``labels`` (one per item, ``None``
where unlabelled) and derive new pools from rows of themselves (``_derive``); the id
lookup, the label join and the subset rules are this one implementation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Self

import numpy as np
import pandas as pd
import torch

from cryoal.errors import EmptyPoolError, InvalidLabelsError

__all__ = ["LabelledItems"]


class LabelledItems:
    """Mixin: id lookup, label join and subsets over ``ids`` / ``labels``.

    A pool using it sets ``ids`` (unique strings) and ``labels`` and implements
    ``_derive(rows, labels)``: a pool of its items ``rows`` (int64 positions, in order)
    carrying ``labels`` (one per row), sharing files and options.
    """

    ids: list[str]
    labels: list[str | None]
    _id_index: dict[str, int] | None = None

    def _derive(self, rows: np.ndarray, labels: list[str | None]) -> Self:
        raise NotImplementedError

    def _describe_items(self) -> str:
        """How errors name the pool, e.g. ``"1500 items under /data"``."""
        return f"{len(self.ids)} items"

    def _ids_to_rows(self) -> dict[str, int]:
        if self._id_index is None:
            self._id_index = {s: i for i, s in enumerate(self.ids)}
        return self._id_index

    @property
    def class_names(self) -> list[str]:
        """Sorted distinct labels."""
        return sorted({lab for lab in self.labels if lab is not None})

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
            joined[index[s]] = str(lab)
        return self._derive(np.arange(len(self.ids), dtype=np.int64), joined)

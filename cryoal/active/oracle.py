"""A simulated expert that answers label queries from ground truth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from cryoal.errors import ConfigError, InvalidLabelsError

__all__ = ["Oracle"]


class Oracle:
    """Answer label queries from ground-truth labels, optionally making mistakes.

    Parameters
    ----------
    truth
        ``{id: label}`` for every volume the oracle may be asked about.
    noise
        Probability in ``[0, 1)`` that an answer is wrong: a wrong answer is a class drawn
        uniformly from the *other* classes, modelling an expert's mistakes.
    seed
        Seed of the mistakes. Each id's answer is fixed by ``(seed, id)``: asking twice,
        or in a different order, gives the same answer (so a resumed run agrees with an
        uninterrupted one).
    annotator
        Name recorded with the labels this oracle gives.

    Examples
    --------
    >>> oracle = Oracle({"a.mrc": "ribosome", "b.mrc": "proteasome"})
    >>> oracle.label(["b.mrc"])
    {'b.mrc': 'proteasome'}
    """

    def __init__(
        self,
        truth: Mapping[str, str],
        *,
        noise: float = 0.0,
        seed: int = 0,
        annotator: str = "oracle",
    ) -> None:
        if not 0.0 <= noise < 1.0:
            raise ConfigError(f"oracle label-noise rate must be in [0, 1), got {noise}")
        self.truth = {str(k): str(v) for k, v in truth.items()}
        self.noise = float(noise)
        self.seed = int(seed)
        self.annotator = annotator
        self.classes = sorted(set(self.truth.values()))
        if noise > 0 and len(self.classes) < 2:
            raise ConfigError("a noisy oracle needs at least two classes to make mistakes")

    def __len__(self) -> int:
        return len(self.truth)

    def _answer(self, vid: str) -> str:
        true = self.truth[vid]
        if self.noise == 0.0:
            return true
        # one small generator per (seed, id): answers do not depend on query order
        digest = np.frombuffer(vid.encode("utf-8"), dtype=np.uint8)
        rng = np.random.default_rng([self.seed, len(digest), *digest.tolist()])
        if rng.random() >= self.noise:
            return true
        others = [c for c in self.classes if c != true]
        return others[int(rng.integers(len(others)))]

    def label(self, ids: Sequence[str]) -> dict[str, str]:
        """Answer for each id, in the order asked.

        Raises
        ------
        InvalidLabelsError
            An id has no ground-truth label.
        """
        missing = [i for i in ids if i not in self.truth]
        if missing:
            raise InvalidLabelsError(
                f"the oracle has no ground-truth label for {len(missing)} id(s), e.g. "
                f"{missing[0]!r}; give it labels for every volume of the pool"
            )
        return {vid: self._answer(vid) for vid in ids}

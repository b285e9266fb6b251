"""Held-out accuracy of a project's model, from the labels its own picks came back with.

A round's picks were unlabelled when its model predicted them (``scores.predicted``), so
once the expert labels them they are a held-out test of that model, at no extra cost and
with no label kept out of training. :func:`heldout_accuracy` measures the latest earlier
round's model on its labelled picks; ``cryoal select`` gives it to ``auto`` as
``val_accuracy`` (:func:`cryoal.acquisition.auto.choose`: below 0.6 the picks stay
diverse and class-balanced instead of plain gradient norms).

Two biases, both towards a lower estimate (so towards the diverse regime): the picks are
the volumes the strategy found hardest, and the model that predicted them was trained on
the labels of one round earlier than the model that scores now. On a simulated pool of
5,000 (10 classes, SNR 0.1, 50 to 1,000 labels, 3 seeds) the estimate was 0.00 to 0.06
below the test-set accuracy of the same model (the pool of
``docs/benchmarks/default-select/pool5000/``).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryoal.active.project import Project, RoundRecord

__all__ = ["MIN_HELDOUT", "HeldoutAccuracy", "heldout_accuracy"]

#: fewer labelled picks than this give no estimate (binomial SE above 0.11)
MIN_HELDOUT = 20


@dataclass(frozen=True)
class HeldoutAccuracy:
    """Accuracy of round ``round``'s model on its picks that have labels.

    Attributes
    ----------
    round
        The round whose model predicted the picks.
    correct, labelled
        Labelled picks with a prediction, and how many predictions equal the label.
    """

    round: int
    correct: int
    labelled: int

    @property
    def accuracy(self) -> float:
        """``correct / labelled`` in [0, 1]."""
        return self.correct / self.labelled

    def as_dict(self) -> dict[str, float | int]:
        """JSON-ready ``{"round", "correct", "labelled", "accuracy"}``."""
        return {
            "round": self.round,
            "correct": self.correct,
            "labelled": self.labelled,
            "accuracy": self.accuracy,
        }


def heldout_accuracy(
    project: Project, before: RoundRecord, *, min_labelled: int = MIN_HELDOUT
) -> HeldoutAccuracy | None:
    """The latest model's accuracy on its own picks, as labelled when ``before`` started.

    Parameters
    ----------
    project
        The project.
    before
        The round about to pick: only rounds numbered before it count, and only the labels
        of its ``label_seq`` (labels imported later do not change its estimate, so a
        resumed round decides as it did).
    min_labelled
        Fewest labelled picks that give an estimate.

    Returns
    -------
    HeldoutAccuracy or None
        For the latest earlier round whose picks carry predictions (a cold start's do
        not); ``None`` when there is none, or when fewer than ``min_labelled`` of its
        picks have a label. Older rounds are never used: their models are not the one
        that scores now.
    """
    for rnd in sorted(project.rounds(), key=lambda r: r.n, reverse=True):
        if rnd.n >= before.n or all(p.predicted is None for p in project.picks(rnd.n)):
            continue
        correct, labelled = project.pick_accuracy(rnd.n, as_of_seq=before.label_seq)
        return HeldoutAccuracy(rnd.n, correct, labelled) if labelled >= min_labelled else None
    return None

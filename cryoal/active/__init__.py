"""Active-learning projects: state on disk, rounds, labels, simulated experts, galleries.

The step machine that ``cryoal select`` drives lives in :mod:`cryoal.active.loop`;
import it from there (it pulls in torch and the model layers).
"""

from __future__ import annotations

from cryoal.active.gallery import contrast_limits, pick_panels, write_gallery
from cryoal.active.oracle import Oracle
from cryoal.active.project import (
    LABEL_SOURCES,
    ROUND_STATUSES,
    SCHEMA_VERSION,
    ImportReport,
    LabelRecord,
    PickRecord,
    PoolEntry,
    Project,
    ProjectLayout,
    RoundRecord,
)

__all__ = [
    "LABEL_SOURCES",
    "ROUND_STATUSES",
    "SCHEMA_VERSION",
    "ImportReport",
    "LabelRecord",
    "Oracle",
    "PickRecord",
    "PoolEntry",
    "Project",
    "ProjectLayout",
    "RoundRecord",
    "contrast_limits",
    "pick_panels",
    "write_gallery",
]

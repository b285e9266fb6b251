"""Picture sheets of picks; the drawing lives in :mod:`cryoal.viz` (one copy).

Kept so that ``from cryoal.active.gallery import write_gallery`` (the loop, the CLI and
older code) keeps working.
"""

from __future__ import annotations

from cryoal.viz.gallery import write_gallery
from cryoal.viz.views import PANEL_TITLES, contrast_limits
from cryoal.viz.views import orthogonal_views as pick_panels

__all__ = ["PANEL_TITLES", "contrast_limits", "pick_panels", "write_gallery"]

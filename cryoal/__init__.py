"""cryoal — classify cryo-ET subtomograms with as few expert labels as possible."""

from __future__ import annotations

from cryoal._version import __version__
from cryoal.errors import CryoalError

__all__ = ["CryoalError", "__version__"]

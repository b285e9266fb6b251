"""``python -m cryoal.cli`` (used with torchrun)."""

from .main import main

main()

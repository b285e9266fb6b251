"""``python -m cryoal.cli`` (used with torchrun)."""

from cryoal.cli.main import main

main()

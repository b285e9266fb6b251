"""The ``cryoal`` command line (installed as :mod:`cryoal.cli`)."""

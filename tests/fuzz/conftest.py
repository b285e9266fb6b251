"""Fuzz-test settings: deterministic, database-less hypothesis runs sized by one variable.

``CRYOAL_FUZZ_EXAMPLES`` scales the examples per reader (default 300: 300 inputs for the
fast readers, fewer for checkpoints, ``cryoal predict`` and copick; about 30 s in all on
one core); the long run (``tests/fuzz/long_run.py``, see docs/reliability.md)
uses the same mutation programs with atheris or a seeded RNG.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "cryoal-fuzz",
    max_examples=int(os.environ.get("CRYOAL_FUZZ_EXAMPLES", "300")),
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

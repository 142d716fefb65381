"""Constants the test fixtures (conftest.py) and the tests share: a test imports them from
here, never from a conftest module (pytest imports those itself)."""

from __future__ import annotations

CHAOS_KILL_ENV = "AUTOTAG_CHAOS_KILL_ON_PHOTO"  # bolts/autotag.py reads it
# bench/chaos.py's fault hook, armed on the test cluster for this one photo only: the bolt
# tagging it kills its own process, as a native decoder crash would (test_pipeline.py).
POISON_PHOTO = b"autotag test poison photo: kills the process that tags it\n"

"""Settings for every test directory.

Hypothesis fails a property test whose single example takes longer than a
deadline (200 ms by default).  These tests check what the code computes,
not how fast: the suite runs on two shared cores next to real servers, and
one example of a pure-function test once took 650 ms there under load.  So
no deadline anywhere (speed targets live in bench/, not in tests).
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("lightningstor", deadline=None)
settings.load_profile("lightningstor")

"""The storage node's hourly sweep of its chunk temp files.

A node killed in the middle of a ``PutChunk`` leaves that chunk's partial
temp file behind.  The node removed such files only at start-up, and only
those older than an hour, so a node restarted at once kept the file until
some later restart; and the orphan collector of the API servers cannot
reach a node's ``tmp/``.  This service removes, every hour, the temp files
no write has touched for an hour: a live ``PutChunk`` touches its file on
every message, and the API server gives a chunk write at most its node call
timeout (seconds), so no file that old belongs to a live write.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from lightningstor.periodic import PeriodicService

log = Logger()

TMP_MAX_AGE_SECONDS = 3600.0


class TmpSweep(PeriodicService):
    """``backend.cleanup_tmp(max_age_seconds)`` every ``interval_seconds``."""

    description = "Temp file sweep"

    def __init__(
        self, backend: Any, reactor: Any, interval_seconds: float = 3600.0,
        max_age_seconds: float = TMP_MAX_AGE_SECONDS,
    ) -> None:  # fmt: skip
        super().__init__(reactor, interval_seconds)
        self.backend = backend
        self.max_age_seconds = max_age_seconds

    def run_once(self) -> Any:
        d = self.backend.cleanup_tmp(self.max_age_seconds)
        return d.addCallback(self._removed)

    def _removed(self, count: int) -> None:
        if count:
            log.info("Removed {count} temporary chunk files of writes interrupted over an hour ago", count=count)

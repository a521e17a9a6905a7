"""Aborting abandoned multipart uploads (SPEC §3.4: 7-day timeout, configurable).

A client that dies between CreateMultipartUpload and Complete/Abort leaves
parts whose chunks are indexed (so the orphan collector must keep them) but
that nobody will ever use.  This service aborts uploads older than
``[limits] multipart_upload_timeout_hours``, freeing their chunks, the way an
AWS ``AbortIncompleteMultipartUpload`` lifecycle rule does.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from lightningstor.core.multipart import MultipartManager
from lightningstor.periodic import PeriodicService

log = Logger()


class UploadExpiryService(PeriodicService):
    """Runs :meth:`MultipartManager.expire` every ``interval_seconds``.

    The first run is one interval after start (start-up stays quick; an
    upload a week old can wait another hour).  ``reactor`` is any
    ``IReactorTime`` (a ``Clock`` in tests); the manager's own clock decides
    which uploads are old.
    """

    def __init__(
        self,
        multipart: MultipartManager,
        reactor: Any,
        *,
        max_age_seconds: float,
        interval_seconds: float = 3600.0,
    ) -> None:
        super().__init__(reactor, interval_seconds)
        self.multipart = multipart
        self.max_age_seconds = max_age_seconds

    def run_once(self) -> Any:
        """Deferred[int | None]: uploads aborted; failures are logged, never raised
        (a raising LoopingCall would stop for good)."""

        def report(count: int) -> int:
            if count:
                log.info("Aborted {n} abandoned multipart uploads", n=count)
            return count

        d = self.multipart.expire(self.max_age_seconds)
        d.addCallback(report)
        d.addErrback(lambda f: log.failure("Multipart upload expiry failed", f))
        return d

"""Background maintenance that runs every so often inside the server.

The collector, upload expiry and similar jobs share one shape: a
``LoopingCall`` on the injected reactor, first run one interval after start,
failures logged (a LoopingCall whose call raises stops for good).

With a :class:`~lightningstor.core.leases.Lease` (``service.lease``, set by
the server when several servers may share the metadata store) a pass runs
only on the server holding the job's lease; the others skip it quietly.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from lightningstor.core.leases import Lease, release_quietly, run_leased

log = Logger()


class PeriodicService(Service):
    """Calls :meth:`run_once` every ``interval_seconds``; subclasses implement it."""

    description = "periodic job"

    def __init__(self, reactor: Any, interval_seconds: float) -> None:
        self.interval_seconds = interval_seconds
        self.reactor = reactor
        # Optional: run only while holding this deployment-wide lease.
        self.lease: Lease | None = None
        self._loop = LoopingCall(self._guarded)
        self._loop.clock = reactor

    def run_once(self) -> Any:
        """One pass; may return a Deferred."""
        raise NotImplementedError

    def _guarded(self) -> Any:
        d = run_leased(self.lease, self.reactor, self.run_once, self.description)
        d.addErrback(lambda f: log.failure("{what} failed", f, what=self.description))
        return d

    def startService(self) -> None:
        super().startService()
        self._loop.start(self.interval_seconds, now=False)

    def stopService(self) -> Any:
        """Stop the loop; give the lease up so another server takes the job
        at its next run instead of after the expiry."""
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        return release_quietly(self.lease)


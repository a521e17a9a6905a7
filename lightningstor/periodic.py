"""Background maintenance that runs every so often inside the server.

The collector, upload expiry and similar jobs share one shape: a
``LoopingCall`` on the injected reactor, first run one interval after start,
failures logged (a LoopingCall whose call raises stops for good).
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

log = Logger()


class PeriodicService(Service):
    """Calls :meth:`run_once` every ``interval_seconds``; subclasses implement it."""

    description = "periodic job"

    def __init__(self, reactor: Any, interval_seconds: float) -> None:
        self.interval_seconds = interval_seconds
        self._loop = LoopingCall(self._guarded)
        self._loop.clock = reactor

    def run_once(self) -> Any:
        """One pass; may return a Deferred."""
        raise NotImplementedError

    def _guarded(self) -> Any:
        from twisted.internet.defer import maybeDeferred

        d = maybeDeferred(self.run_once)
        d.addErrback(lambda f: log.failure("{what} failed", f, what=self.description))
        return d

    def startService(self) -> None:
        super().startService()
        self._loop.start(self.interval_seconds, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()

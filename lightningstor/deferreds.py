"""One Deferred's outcome, shared by any number of waiters.

A Deferred's result belongs to its callback chain: the first consumer that
returns something else changes what the next one sees, and a result yielded
twice arrives as None the second time.  Several places need one outcome many
times: a request's authentication is awaited by both its body sink and its
handler (s3/app.py), and concurrent identical questions to the IAM service
share one call (authz/aegis.py).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure


class Shared:
    """Hands ``source``'s result (or failure) to every :meth:`get` caller,
    whether they arrive before or after it fires; each gets a Deferred of
    its own, so one caller's callbacks cannot change what another receives."""

    def __init__(self, source: Deferred[Any]) -> None:
        self._done = False
        self._result: Any = None
        self._waiters: list[Deferred[Any]] = []
        source.addBoth(self._fire)

    @property
    def done(self) -> bool:
        return self._done

    def _fire(self, result: Any) -> None:
        self._done, self._result = True, result
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            self._deliver(waiter)
        # Returning None: the failure, if any, has been handed to every
        # waiter and must not also stay unhandled in the source's chain.

    def _deliver(self, d: Deferred[Any]) -> None:
        if isinstance(self._result, Failure):
            d.errback(self._result)
        else:
            d.callback(self._result)

    def get(self) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        if self._done:
            self._deliver(d)
        else:
            self._waiters.append(d)
        return d

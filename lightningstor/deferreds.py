"""One Deferred's outcome, shared by any number of waiters.

A Deferred's result belongs to its callback chain: the first consumer that
returns something else changes what the next one sees, and a result yielded
twice arrives as None the second time.  Several places need one outcome many
times: a request's authentication is awaited by both its body sink and its
handler (s3/app.py), and concurrent identical questions to the IAM service
share one call (authz/aegis.py): :class:`Shared`.  And a component closing
must wait for the Deferreds it started without taking their outcomes from
their owners: :class:`Running`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from twisted.internet.defer import Deferred, gatherResults
from twisted.python.failure import Failure

_T = TypeVar("_T")


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

    def failure(self) -> Failure | None:
        """The failure ``source`` fired with, if it has fired and failed."""
        return self._result if self._done and isinstance(self._result, Failure) else None

    def get(self) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        if self._done:
            self._deliver(d)
        else:
            self._waiters.append(d)
        return d


class Running:
    """The Deferreds a component started and that have not fired yet, so
    that closing it can wait for them (an etcd call or a replica write still
    landing after its caller moved on) before what they need goes away.

    Waiting never touches their results: each waiter watches its Deferred
    from the end of the chain, so a failure still reaches (or stays
    unhandled in) the chain that owns it.
    """

    def __init__(self) -> None:
        self._running: set[Deferred[Any]] = set()

    def __len__(self) -> int:
        return len(self._running)

    def track(self, d: Deferred[_T]) -> Deferred[_T]:
        """Remember ``d`` until it fires; returns it."""
        self._running.add(d)

        def done(result: Any) -> Any:
            self._running.discard(d)
            return result

        d.addBoth(done)
        return d

    def settled(self) -> Deferred[None]:
        """Fires (with None) once every Deferred running now has fired."""
        return gatherResults([settled(d) for d in list(self._running)]).addCallback(lambda _: None)


def settled(d: Deferred[Any]) -> Deferred[None]:
    """A Deferred firing (with None) once ``d`` has fired, leaving ``d``'s
    result to its own chain."""
    watcher: Deferred[None] = Deferred()

    def fire(result: Any) -> Any:
        watcher.callback(None)
        return result

    d.addBoth(fire)
    return watcher

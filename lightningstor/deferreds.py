"""One Deferred's outcome, shared by any number of waiters.

A Deferred's result belongs to its callback chain: the first consumer that
returns something else changes what the next one sees, and a result yielded
twice arrives as None the second time.  Several places need one outcome many
times: a request's authentication is awaited by both its body sink and its
handler (s3/app.py), and concurrent identical questions to the IAM service
share one call (authz/aegis.py): :class:`Shared`.  And a component closing
must wait for the Deferreds it started without taking their outcomes from
their owners: :class:`Running`.  And a write that may already be in the
metadata store's hands must run to its end even when the request that
started it is cancelled (its client went away): :func:`uncancellable`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure

_T = TypeVar("_T")

log = Logger()


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

    def result(self) -> Any:
        """The source's result once it has fired with one (None before, or
        after a failure): for a reader that needs it only if it is there."""
        if self._done and not isinstance(self._result, Failure):
            return self._result
        return None

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


def shielded(d: Deferred[_T]) -> Deferred[_T]:
    """``d``'s outcome, in a Deferred whose cancellation leaves ``d`` running.

    Cancelling the returned Deferred fails it at once with CancelledError:
    its waiter gives up.  ``d`` goes on to its end, unaware; an outcome
    nobody waits for any more is dropped (a failure is logged at info
    level: the request it served is gone, so nobody else will report it).
    """
    out: Deferred[_T] = Deferred()

    def settle(result: Any) -> None:
        if out.called:  # the waiter gave up
            if isinstance(result, Failure) and not result.check(CancelledError):
                log.info("A write finished after its caller had gone: {error}", error=result.getErrorMessage())
            return None
        if isinstance(result, Failure):
            out.errback(result)
        else:
            out.callback(result)
        return None

    d.addBoth(settle)
    return out


def uncancellable(method: Callable[..., Deferred[_T]]) -> Callable[..., Deferred[_T]]:
    """Decorate a method returning a Deferred so that cancelling that
    Deferred never cancels the work (see :func:`shielded`).

    For metadata commits: once a transaction is in the store's hands, it
    may land whatever the caller does.  Cancelling the wait half-way (the
    request's client disconnected, and twisted.web cancels the handler)
    would otherwise skip the commit's own bookkeeping after the
    transaction (freeing the chunks of the version it replaced), and tell
    the caller nothing it could act on safely.
    """

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Deferred[_T]:
        return shielded(method(*args, **kwargs))

    return wrapper

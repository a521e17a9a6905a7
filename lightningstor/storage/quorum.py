"""Waiting for a quorum of replica operations.

A replicated write is acknowledged once ``quorum`` of its N copies are
durable; the rest may still be in flight (or failed, and are left for
repair).  :func:`gather_quorum` fires as soon as the outcome is known: with
the first ``quorum`` successes, or as soon as so many calls failed that the
quorum can no longer be reached.

**Full replicas (507) versus unreachable ones (503).**  A lost quorum is
:class:`QuorumFull` (a :class:`~lightningstor.errors.StorageFull`, answered
507 InsufficientStorage, which clients do not retry) only when the replicas
that refused for lack of space *alone* make the quorum unreachable: more
than ``N - quorum`` of them answered ``StorageFull``.  Then no retry can
succeed until space is freed, even if every other node comes back.  If the
quorum was lost for mixed reasons and the full replicas alone would not
have sunk it (say N=3, quorum 2: one node full, one down), it is
:class:`QuorumNotReached` (503, retried): the write succeeds again once the
down node returns.  When the failures seen so far are mixed but the calls
still outstanding could make the full ones decisive, the verdict waits for
them (each is bounded by the node client's deadline), so the answer does
not depend on which node happened to answer first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from lightningstor.errors import StorageError, StorageFull


class QuorumNotReached(StorageError):
    """Fewer than the quorum of replicas succeeded (answered as a 503)."""

    def __init__(self, message: str, failures: Sequence[Failure]) -> None:
        super().__init__(message)
        self.failures = list(failures)


class QuorumFull(QuorumNotReached, StorageFull):
    """The quorum was lost because too many replicas are out of space
    (see the module doc); answered as 507 InsufficientStorage."""


def gather_quorum(deferreds: Sequence[defer.Deferred[Any]], quorum: int, what: str = "operation") -> defer.Deferred[list[Any]]:
    """Deferred[list of the first ``quorum`` results]; fails with
    :class:`QuorumNotReached` (carrying every failure) when the quorum is
    lost, or :class:`QuorumFull` when full replicas alone lost it.

    Every input Deferred gets an errback, so a late failure after the outcome
    is decided is consumed, not logged as unhandled.
    """
    if quorum < 1:
        raise ValueError("quorum must be at least 1")
    total = len(deferreds)
    tolerated = total - quorum  # failures the quorum survives
    result: defer.Deferred[list[Any]] = defer.Deferred()
    successes: list[Any] = []
    failures: list[Failure] = []

    if total < quorum:
        return defer.fail(QuorumNotReached(f"{what}: only {total} replicas for a quorum of {quorum}", []))

    def decide() -> None:
        if result.called:
            return
        if len(successes) >= quorum:
            result.callback(successes[:quorum])
            return
        if len(failures) <= tolerated:
            return  # the quorum can still be reached
        full = sum(1 for f in failures if f.check(StorageFull))
        pending = total - len(successes) - len(failures)
        reasons = "; ".join(str(f.value) for f in failures)
        if full > tolerated:
            result.errback(QuorumFull(
                f"{what}: {full} of {total} replicas are out of space, {quorum} needed ({reasons})",
                failures,
            ))
        elif full + pending > tolerated:
            return  # the outstanding replies decide whether space is the cause
        else:
            result.errback(QuorumNotReached(
                f"{what}: {total - len(failures)} of {total} replicas can succeed, "
                f"{quorum} needed ({reasons})",
                failures,
            ))

    def succeeded(value: Any) -> None:
        successes.append(value)
        decide()

    def failed(failure: Failure) -> None:
        failures.append(failure)
        decide()

    for d in deferreds:
        d.addCallbacks(succeeded, failed)
    return result

"""Waiting for a quorum of replica operations.

A replicated write is acknowledged once ``quorum`` of its N copies are
durable; the rest may still be in flight (or failed, and are left for
repair).  :func:`gather_quorum` fires as soon as the outcome is known: with
the first ``quorum`` successes, or as soon as so many calls failed that the
quorum can no longer be reached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from lightningstor.errors import StorageError


class QuorumNotReached(StorageError):
    """Fewer than the quorum of replicas succeeded (answered as a 503)."""

    def __init__(self, message: str, failures: Sequence[Failure]) -> None:
        super().__init__(message)
        self.failures = list(failures)


def gather_quorum(deferreds: Sequence[defer.Deferred[Any]], quorum: int, what: str = "operation") -> defer.Deferred[list[Any]]:
    """Deferred[list of the first ``quorum`` results]; fails with
    :class:`QuorumNotReached` (carrying every failure) when the quorum is lost.

    Every input Deferred gets an errback, so a late failure after the outcome
    is decided is consumed, not logged as unhandled.
    """
    if quorum < 1:
        raise ValueError("quorum must be at least 1")
    total = len(deferreds)
    result: defer.Deferred[list[Any]] = defer.Deferred()
    successes: list[Any] = []
    failures: list[Failure] = []

    if total < quorum:
        return defer.fail(QuorumNotReached(f"{what}: only {total} replicas for a quorum of {quorum}", []))

    def succeeded(value: Any) -> None:
        successes.append(value)
        if len(successes) == quorum and not result.called:
            result.callback(list(successes))

    def failed(failure: Failure) -> None:
        failures.append(failure)
        if total - len(failures) < quorum and not result.called:
            reasons = "; ".join(str(f.value) for f in failures)
            result.errback(QuorumNotReached(
                f"{what}: {total - len(failures)} of {total} replicas can succeed, "
                f"{quorum} needed ({reasons})",
                failures,
            ))

    for d in deferreds:
        d.addCallbacks(succeeded, failed)
    return result

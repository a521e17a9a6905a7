"""Bounded, jittered retries of calls the server refused or could not serve.

Two kinds of failure are worth repeating, and they differ in what is safe:

- **Refused before running**: ``SlowDown`` (a principal over its gRPC call
  cap) and a bare ``RESOURCE_EXHAUSTED`` the client maps to ``SlowDown``
  (the server's whole-server call limit).  The server refuses these calls
  before their handler runs, so nothing happened and *any* call may be sent
  again, a ``PutObject`` included.
- **Failed in transit**: ``ServiceUnavailable`` (``UNAVAILABLE``: the
  connection failed, possibly after the server acted) and ``RequestTimeout``.
  Only calls whose repetition has the same effect may be sent again: reads,
  listings, ``UploadPart`` (a part number's new upload replaces the old) and
  ``CompleteMultipartUpload`` (a repeated Complete returns the same ETag).
  A ``PutObject``, ``CopyObject`` or ``DeleteObject`` is not repeated then:
  in a versioned bucket a repeat adds a version or a delete marker, and a
  conditional write's repeat would fail its own condition.

The waits use "full jitter" (a random time up to an exponentially growing
bound) so that clients refused together do not come back together.  A
refused call is tried again for ``refused_seconds`` (not only ``attempts``
times): the server refuses a principal's calls beyond its cap, and calls
that have to wait for a long download or upload of the same principal to
end would otherwise give up after a few seconds, although one client used
from many threads is how the API is meant to be used.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from lightningstor.client.errors import LightningStorError

T = TypeVar("T")

REFUSED_CODES = frozenset({"SlowDown"})
TRANSIENT_CODES = frozenset({"ServiceUnavailable", "RequestTimeout"})


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all, and a refused call also until
    ``refused_seconds`` have passed since its first try; the n-th wait is
    random in ``[0, min(cap, base * 2**n)]``."""

    attempts: int = 6
    base: float = 0.1
    cap: float = 5.0
    refused_seconds: float = 60.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * (2 ** min(attempt, 32))))


NO_RETRY = RetryPolicy(attempts=1, refused_seconds=0.0)


def retryable(error: LightningStorError, *, idempotent: bool) -> bool:
    """Whether ``error`` may be retried for a call that is (or is not) idempotent."""
    if error.code in REFUSED_CODES:
        return True
    return idempotent and error.code in TRANSIENT_CODES


def call(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    idempotent: bool,
    on_retry: Callable[[LightningStorError], None] | None = None,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``fn()``, repeated per ``policy`` while it fails with a retryable error."""
    attempt = 0
    started = clock()
    while True:
        try:
            return fn()
        except LightningStorError as e:
            attempt += 1
            if not retryable(e, idempotent=idempotent):
                raise
            refused_wait = e.code in REFUSED_CODES and clock() - started < policy.refused_seconds
            if attempt >= policy.attempts and not refused_wait:
                raise
            if on_retry is not None:
                on_retry(e)
            sleep(policy.delay(attempt))

"""Fair use of the gRPC server's handler threads.

grpcio's synchronous server runs every call on a thread of a fixed pool, and
a call holds its thread for as long as its handler runs: a client stream
that sends nothing, or a server stream whose client reads nothing, holds it
indefinitely.  Without limits one principal (even a read-only key) could
take every thread and deny the API, and its health check, to everyone else.
Three guards live here:

* :class:`CallLimiter`: at most ``cap`` calls of one principal hold a
  thread at once; the next is refused at once with ``RESOURCE_EXHAUSTED``
  (S3 code ``SlowDown``), so the cap is kept below the pool size.
* :class:`StreamWatchdog`: a stream whose client has not sent (or taken) a
  message for ``timeout`` seconds is cancelled with ``DEADLINE_EXCEEDED``;
  its handler sees the call end, cleans up as on any cancellation, and the
  thread is free again.  Only time spent waiting on the client counts,
  never time spent waiting on storage.
* :func:`own_pool`: a servicer method run on a separate executor (the
  health check and reflection), so a busy API pool does not delay them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
from twisted.logger import Logger

from lightningstor import errors

log = Logger()

T = TypeVar("T")

# The S3 error of a call over its principal's cap.  AWS's code for "too many
# requests, back off" is SlowDown; over gRPC it is RESOURCE_EXHAUSTED, the
# status retry policies treat as "try again later".
TOO_MANY_CALLS_STATUS = grpc.StatusCode.RESOURCE_EXHAUSTED


def too_many_calls(cap: int) -> errors.S3Error:
    """The error a call over its principal's cap fails with."""
    err = errors.SlowDown(
        f"Too many concurrent gRPC calls for this principal (at most {cap} may run at once); "
        "retry when one has finished"
    )
    err.grpc_status = TOO_MANY_CALLS_STATUS  # type: ignore[attr-defined]
    return err


class CallLimiter:
    """Counts the calls running per key (a principal id); thread-safe."""

    def __init__(self, cap: int) -> None:
        if cap < 1:
            raise ValueError("cap must be at least 1")
        self.cap = cap
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        """Count one more call of ``key``; False (nothing counted) at the cap."""
        with self._lock:
            n = self._running.get(key, 0)
            if n >= self.cap:
                return False
            self._running[key] = n + 1
            return True

    def release(self, key: str) -> None:
        with self._lock:
            n = self._running.get(key, 0) - 1
            if n > 0:
                self._running[key] = n
            else:
                self._running.pop(key, None)

    def running(self, key: str) -> int:
        with self._lock:
            return self._running.get(key, 0)


class Watch:
    """One stream's inactivity clock.  The handler thread calls
    :meth:`waiting` before it waits on the client (reading the next request
    message, or handing a response message to gRPC) and :meth:`progress`
    once the client has moved; the watchdog ends a stream that waits longer
    than its timeout."""

    __slots__ = ("context", "since", "expired", "_owner")

    def __init__(self, owner: StreamWatchdog, context: grpc.ServicerContext) -> None:
        self._owner = owner
        self.context = context
        self.since: float | None = None
        self.expired = False

    def waiting(self) -> None:
        self.since = self._owner.clock()

    def progress(self) -> None:
        self.since = None

    def close(self) -> None:
        self._owner.forget(self)

    def wrap(self, messages: Iterator[T]) -> Iterator[T]:
        """A request iterator whose reads are timed.  A read that ends
        because this watch expired raises rather than ending the stream
        normally: a part cut short must never be taken for a whole one."""
        while True:
            self.waiting()
            try:
                message = next(messages)
            except StopIteration:
                if self.expired:
                    raise StreamIdle(self._owner.timeout) from None
                return
            finally:
                self.progress()
            if self.expired:
                raise StreamIdle(self._owner.timeout)
            yield message


class StreamIdle(grpc.RpcError):
    """The stream was ended by the watchdog (its status is already sent).
    An RpcError, as a client that went away is: nothing more is answered."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"no message moved for {timeout:g} s")


class StreamWatchdog:
    """Ends streams that wait on their client for more than ``timeout``
    seconds.  :meth:`sweep` runs periodically (every :attr:`interval`
    seconds, from the reactor: it never blocks); cancelling a call is a
    non-blocking grpc core operation."""

    def __init__(self, timeout: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.clock = clock
        self._lock = threading.Lock()
        self._watches: set[Watch] = set()

    @property
    def interval(self) -> float:
        """How often to sweep: a stream ends at most this late."""
        return min(1.0, max(self.timeout / 4, 0.05))

    def watch(self, context: grpc.ServicerContext) -> Watch:
        w = Watch(self, context)
        with self._lock:
            self._watches.add(w)
        return w

    def forget(self, w: Watch) -> None:
        with self._lock:
            self._watches.discard(w)

    def sweep(self) -> int:
        """Cancel every stream idle for longer than the timeout; how many."""
        now = self.clock()
        with self._lock:
            idle = [w for w in self._watches if w.since is not None and now - w.since > self.timeout]
            for w in idle:
                self._watches.discard(w)
        for w in idle:
            w.expired = True
            cancel(w.context, grpc.StatusCode.DEADLINE_EXCEEDED, self.message())
        return len(idle)

    def message(self) -> str:
        return (
            f"RequestTimeout: the stream moved no message for {self.timeout:g} seconds "
            "and was ended by the server; nothing of it was kept"
        )


def cancel(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> None:
    """End the call now from any thread, with ``code`` and ``details`` for
    the client.  The handler's blocked read or write wakes with an error.

    grpcio's ServicerContext.cancel() takes no status (the client would see
    a bare CANCELLED); the call object under it can cancel with one.  Falls
    back to the public method if that object is not there."""
    call = getattr(getattr(context, "_rpc_event", None), "call", None)
    try:
        if call is not None:
            call.cancel(code.value[0], details)
            return
    except Exception:  # noqa: BLE001 - fall back to the plain cancel below
        log.failure("Cancelling a gRPC call with a status failed")
    context.cancel()


def own_pool(method: Callable[..., Any], pool: ThreadPoolExecutor) -> Callable[..., Any]:
    """``method`` as a behaviour grpcio runs on ``pool`` instead of the
    server's executor (its ``experimental_thread_pool`` hook; a bound method
    cannot carry the attribute, so it is wrapped)."""

    def behaviour(*args: Any, **kwargs: Any) -> Any:
        return method(*args, **kwargs)

    behaviour.experimental_thread_pool = pool  # type: ignore[attr-defined]
    behaviour.__name__ = getattr(method, "__name__", "behaviour")
    behaviour.__doc__ = getattr(method, "__doc__", None)
    return behaviour

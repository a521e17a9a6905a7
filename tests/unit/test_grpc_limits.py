"""lightningstor.grpc.limits on its own: the per-principal call cap, the
stream watchdog's clock and sweep, and the option checks of GrpcOptions.
The behaviour against a real server is in
tests/integration/test_grpc_fair_use.py."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from lightningstor.grpc.base import PROBE_WORKERS, GrpcOptions
from lightningstor.grpc.errors import as_s3_error
from lightningstor.grpc.limits import CallLimiter, StreamIdle, StreamWatchdog, too_many_calls


class FakeContext:
    """What the watchdog uses of a ServicerContext: cancel()."""

    def __init__(self) -> None:
        self.cancelled = 0

    def cancel(self) -> None:
        self.cancelled += 1


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_limiter_caps_each_key_separately() -> None:
    limiter = CallLimiter(2)
    assert limiter.acquire("a") and limiter.acquire("a")
    assert not limiter.acquire("a")
    assert limiter.acquire("b")
    limiter.release("a")
    assert limiter.running("a") == 1
    assert limiter.acquire("a")
    for _ in range(2):
        limiter.release("a")
    assert limiter.running("a") == 0


def test_over_the_cap_is_slowdown_with_resource_exhausted() -> None:
    err, status = as_s3_error(too_many_calls(3))
    assert err.code == "SlowDown"
    assert status == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "at most 3" in err.message


def test_watchdog_ends_only_streams_waiting_on_their_client_too_long() -> None:
    clock = Clock()
    dog = StreamWatchdog(5, clock=clock)
    waiting, busy, closed = FakeContext(), FakeContext(), FakeContext()
    w1, w2, w3 = dog.watch(waiting), dog.watch(busy), dog.watch(closed)  # type: ignore[arg-type]
    w1.waiting()
    w3.waiting()
    w3.close()
    clock.now += 5
    assert dog.sweep() == 0  # not more than the timeout yet
    clock.now += 0.5
    assert dog.sweep() == 1
    assert (waiting.cancelled, busy.cancelled, closed.cancelled) == (1, 0, 0)
    assert w1.expired and not w2.expired
    assert dog.sweep() == 0  # ended once


def test_progress_restarts_the_clock() -> None:
    clock = Clock()
    dog = StreamWatchdog(5, clock=clock)
    ctx = FakeContext()
    w = dog.watch(ctx)  # type: ignore[arg-type]
    for _ in range(4):
        w.waiting()
        clock.now += 4
        w.progress()
        assert dog.sweep() == 0
    assert ctx.cancelled == 0


def test_a_read_cut_short_by_the_watchdog_is_not_the_end_of_the_stream() -> None:
    """If an expired stream's reads end quietly, the handler must still see
    an error: it would otherwise take a partial part for a whole one."""
    clock = Clock()
    dog = StreamWatchdog(1, clock=clock)
    w = dog.watch(FakeContext())  # type: ignore[arg-type]

    def messages() -> Iterator[bytes]:
        yield b"a"
        clock.now += 2
        dog.sweep()
        return

    reads = w.wrap(messages())
    assert next(reads) == b"a"
    with pytest.raises(StreamIdle):
        next(reads)


def test_a_stream_that_ends_normally_ends_normally() -> None:
    dog = StreamWatchdog(1, clock=Clock())
    w = dog.watch(FakeContext())  # type: ignore[arg-type]
    assert list(w.wrap(iter([b"a", b"b"]))) == [b"a", b"b"]
    assert w.since is None


def test_options_keep_the_cap_below_the_pool() -> None:
    with pytest.raises(ValueError):
        GrpcOptions(max_workers=16, max_calls_per_principal=16)
    with pytest.raises(ValueError):
        GrpcOptions(max_calls_per_principal=0)
    with pytest.raises(ValueError):
        GrpcOptions(stream_idle_timeout_seconds=0)
    options = GrpcOptions(max_workers=16)
    assert options.max_concurrent_rpcs == 32 + PROBE_WORKERS

"""s3/limits.py in memory: the header, body and send deadlines and the connection
cap, driven with ``StringTransport`` and ``Clock`` around a twisted.web Site using
S3Request."""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web import resource, server

from lightningstor.s3 import limits
from lightningstor.s3.limits import ConnectionLimits
from lightningstor.s3.request import S3Request

ADDR = IPv4Address("TCP", "127.0.0.1", 40000)


class _Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request: server.Request) -> bytes:
        return b"hello"

    def render_PUT(self, request: server.Request) -> bytes:
        return b"stored"


def _factory(
    clock: Clock,
    *,
    max_connections: int = 10,
    header_timeout: float = 30,
    body_timeout: float = 0,
    send_timeout: float = 0,
) -> ConnectionLimits:
    site = server.Site(_Hello(), reactor=clock)
    site.requestFactory = S3Request
    return ConnectionLimits(
        site,
        clock,
        max_connections=max_connections,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        send_timeout=send_timeout,
    )


def _connect(factory: ConnectionLimits) -> tuple[object, StringTransport]:
    proto = factory.buildProtocol(ADDR)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def test_trickled_headers_are_aborted_at_the_deadline() -> None:
    """Headers that keep arriving but are not complete 30 s after the first byte abort
    the connection, even though no gap between bytes reached the idle timeout."""
    clock = Clock()
    factory = _factory(clock)
    proto, transport = _connect(factory)
    proto.dataReceived(b"GET / HTTP/1.1\r\n")  # type: ignore[attr-defined]
    for _ in range(29):
        clock.advance(1)
        proto.dataReceived(b"X")  # type: ignore[attr-defined]
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting
    assert factory.headers_timed_out == 1


def test_complete_headers_stop_the_deadline_and_idle_time_between_requests_is_free() -> None:
    """Once the headers end the deadline is off (a response may take long); time spent
    idle between keep-alive requests does not count against the next request, whose
    own headers are timed again from their first byte."""
    clock = Clock()
    factory = _factory(clock)
    proto, transport = _connect(factory)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # type: ignore[attr-defined]
    assert b"hello" in transport.value()
    clock.advance(25)  # idle, below the site's own idle timeout
    proto.dataReceived(b"GET / HTTP/1.1\r\n")  # type: ignore[attr-defined]
    clock.advance(20)
    proto.dataReceived(b"Host: x\r\n\r\n")  # type: ignore[attr-defined]
    clock.advance(30)
    assert not transport.disconnecting
    assert transport.value().count(b"hello") == 2
    # ...and the deadline is armed again for the next request's headers.
    proto.dataReceived(b"GET / HTTP/1.1\r\n")  # type: ignore[attr-defined]
    clock.advance(30)
    assert transport.disconnecting


def test_connection_above_the_cap_gets_slow_down_and_is_closed() -> None:
    """With max_connections open, the next connection is answered 503 SlowDown and
    closed without reaching the site; after one closes, connections are accepted again."""
    clock = Clock()
    factory = _factory(clock, max_connections=2)
    first, _ = _connect(factory)
    _connect(factory)
    _, refused = _connect(factory)
    reply = refused.value()
    assert reply.startswith(b"HTTP/1.1 503 ") and b"<Code>SlowDown</Code>" in reply
    assert refused.disconnecting
    assert factory.refused == 1
    first.connectionLost(None)  # type: ignore[attr-defined]
    _, accepted = _connect(factory)
    assert accepted.value() == b""
    assert factory.acceptableProtocols() == [b"http/1.1"]


class _LingeringTransport(StringTransport):
    """A transport whose close waits for the peer, as TLS's waits for a
    handshake or close_notify that may never come."""

    def loseConnection(self) -> None:
        self.disconnecting = True  # and nothing more: the peer never answers

    def abortConnection(self) -> None:
        self.aborted = True


def test_a_refused_connection_that_does_not_close_is_aborted() -> None:
    """A connection refused above the cap whose close never completes (TLS
    waiting for a peer that stays silent) is aborted after
    SLOW_DOWN_LINGER_SECONDS; one that closes in time is left alone.  Such
    connections used to hold their descriptors for ever."""
    clock = Clock()
    factory = _factory(clock, max_connections=1)
    _connect(factory)
    refused = factory.buildProtocol(ADDR)
    silent = _LingeringTransport()
    refused.makeConnection(silent)
    assert b"<Code>SlowDown</Code>" in silent.value() and silent.disconnecting
    clock.advance(limits.SLOW_DOWN_LINGER_SECONDS - 0.1)
    assert not getattr(silent, "aborted", False)
    clock.advance(0.1)
    assert getattr(silent, "aborted", False)
    closed = factory.buildProtocol(ADDR)
    prompt = _LingeringTransport()
    closed.makeConnection(prompt)
    closed.connectionLost(None)  # the peer closed
    clock.advance(limits.SLOW_DOWN_LINGER_SECONDS * 2)
    assert not getattr(prompt, "aborted", False)


_PUT_HEAD = b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"


def test_a_trickled_body_gets_request_timeout_and_is_closed() -> None:
    """A body bringing less than 1 KiB per body_timeout while the server reads
    it: 400 RequestTimeout, connection closed, counted."""
    clock = Clock()
    factory = _factory(clock, body_timeout=10)
    proto, transport = _connect(factory)
    proto.dataReceived(_PUT_HEAD)  # type: ignore[attr-defined]
    for _ in range(9):
        clock.advance(1)
        proto.dataReceived(b"x" * 50)  # type: ignore[attr-defined]
    assert not transport.disconnecting
    clock.advance(1)
    assert transport.disconnecting
    assert transport.value().startswith(b"HTTP/1.1 400 Bad Request") and b"<Code>RequestTimeout</Code>" in transport.value()
    assert factory.bodies_timed_out == 1


def test_a_steady_body_and_server_pauses_are_not_timed_out() -> None:
    """1 KiB or more per period keeps the deadline away, however long the
    body takes; a period in which the server paused reading (backpressure)
    is never held against the client."""
    clock = Clock()
    factory = _factory(clock, body_timeout=10)
    proto, transport = _connect(factory)
    proto.dataReceived(_PUT_HEAD)  # type: ignore[attr-defined]
    for _ in range(5):
        clock.advance(9)
        proto.dataReceived(b"x" * 2000)  # type: ignore[attr-defined]
        clock.advance(1)
    assert not transport.disconnecting
    proto.pauseProducing()  # type: ignore[attr-defined]
    assert transport.producerState == "paused"
    clock.advance(35)  # the server is not reading: no bytes can come
    assert not transport.disconnecting
    proto.resumeProducing()  # type: ignore[attr-defined]
    clock.advance(5)  # the period the pause ended in is still the server's
    assert not transport.disconnecting
    proto.dataReceived(b"x" * 2000)  # type: ignore[attr-defined]
    clock.advance(10)
    assert not transport.disconnecting
    clock.advance(10)  # a whole reading period without a byte
    assert transport.disconnecting
    assert factory.bodies_timed_out == 1


def test_the_deadline_ends_with_the_body() -> None:
    """Once the whole body is in, the response may take as long as it takes."""
    clock = Clock()
    factory = _factory(clock, body_timeout=10)
    proto, transport = _connect(factory)
    proto.dataReceived(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")  # type: ignore[attr-defined]
    clock.advance(50)  # five body periods, within the site's 60 s idle timeout
    assert not transport.disconnecting and factory.bodies_timed_out == 0


def test_time_the_server_holds_a_body_back_is_not_idle_time() -> None:
    """While the server has paused reading a body (backpressure), the site's
    idle timeout (60 s here) does not cut the upload, however long the pause."""
    clock = Clock()
    factory = _factory(clock, body_timeout=0)  # the body deadline off: only the idle timer
    proto, transport = _connect(factory)
    proto.dataReceived(_PUT_HEAD + b"x" * 2000)  # type: ignore[attr-defined]
    proto.pauseProducing()  # type: ignore[attr-defined]
    for _ in range(30):
        clock.advance(10)
    assert not transport.disconnecting
    proto.resumeProducing()  # type: ignore[attr-defined]
    clock.advance(61)  # the client's own silence still counts
    assert transport.disconnecting


class _Delivered:
    """Stands in for ``lightningstor.tcp.bytes_delivered``: what the client
    has received so far, as the test says."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, transport: object) -> int:
        return self.count


def _send_factory(clock: Clock, send_timeout: float) -> ConnectionLimits:
    """A factory with only the send deadline: no idle timeout of the site."""
    factory = _factory(clock, send_timeout=send_timeout)
    factory.wrappedFactory.timeOut = None  # type: ignore[attr-defined]
    return factory


def _run(clock: Clock, seconds: float) -> None:
    """Let ``seconds`` pass in half-second steps, as a reactor would (one
    ``Clock.advance`` runs every timer due as if at the end of the step)."""
    for _ in range(round(seconds * 2)):
        clock.advance(0.5)


def test_a_blocked_send_without_progress_is_aborted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The response waits for a client that receives nothing: aborted once
    send_timeout has passed (checked four times a period), counted."""
    monkeypatch.setattr(limits, "bytes_delivered", _Delivered())
    clock = Clock()
    factory = _send_factory(clock, 10)
    proto, transport = _connect(factory)
    proto.send_blocked()  # type: ignore[attr-defined]
    proto.send_blocked()  # the transport says so again on every write: one timer
    _run(clock, 9.5)
    assert not transport.disconnected
    _run(clock, 0.5)
    assert transport.disconnected and factory.sends_timed_out == 1


def test_a_client_receiving_slowly_keeps_its_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """A byte received now and then restarts the period, however long the
    send stays blocked; once the bytes stop, the period runs out."""
    delivered = _Delivered()
    monkeypatch.setattr(limits, "bytes_delivered", delivered)
    clock = Clock()
    factory = _send_factory(clock, 10)
    proto, transport = _connect(factory)
    proto.send_blocked()  # type: ignore[attr-defined]
    for _ in range(20):
        _run(clock, 7.5)
        delivered.count += 1
    assert not transport.disconnected
    _run(clock, 12.5)
    assert transport.disconnected and factory.sends_timed_out == 1


def test_a_send_that_unblocks_ends_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The transport resumed the channel (its buffer drained): no deadline
    until it blocks again, which starts a whole period."""
    monkeypatch.setattr(limits, "bytes_delivered", _Delivered())
    clock = Clock()
    factory = _send_factory(clock, 10)
    proto, transport = _connect(factory)
    proto.send_blocked()  # type: ignore[attr-defined]
    _run(clock, 9.5)
    proto.send_unblocked()  # type: ignore[attr-defined]
    _run(clock, 100)
    assert not transport.disconnected
    proto.send_blocked()  # type: ignore[attr-defined]
    _run(clock, 9.5)
    assert not transport.disconnected
    _run(clock, 0.5)
    assert transport.disconnected


def test_send_timeout_zero_is_off_and_a_lost_connection_stops_the_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "bytes_delivered", _Delivered())
    clock = Clock()
    proto, transport = _connect(_send_factory(clock, 0))
    proto.send_blocked()  # type: ignore[attr-defined]
    _run(clock, 1000)
    assert not transport.disconnected
    proto, transport = _connect(_send_factory(clock, 10))
    proto.send_blocked()  # type: ignore[attr-defined]
    proto.connectionLost(None)  # type: ignore[attr-defined]
    assert not [c for c in clock.getDelayedCalls() if "_check_send" in repr(c)]

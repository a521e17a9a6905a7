"""s3/limits.py in memory: the header deadline and the connection cap, driven with
``StringTransport`` and ``Clock`` around a twisted.web Site using S3Request."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web import resource, server

from lightningstor.s3.limits import ConnectionLimits
from lightningstor.s3.request import S3Request

ADDR = IPv4Address("TCP", "127.0.0.1", 40000)


class _Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request: server.Request) -> bytes:
        return b"hello"


def _factory(clock: Clock, *, max_connections: int = 10, header_timeout: float = 30) -> ConnectionLimits:
    site = server.Site(_Hello(), reactor=clock)
    site.requestFactory = S3Request
    return ConnectionLimits(site, clock, max_connections=max_connections, header_timeout=header_timeout)


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

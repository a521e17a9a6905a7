"""S3Request's hold on "100 Continue" (s3/request.py) with the connection
limits of s3/limits.py, in memory: ``StringTransport`` and ``Clock`` around
a twisted.web Site whose ``begin_request`` holds the 100 as ``S3Api.begin``
does for an upload, and the test ends the hold as the upload's checks would.

While the server holds the 100 back, neither the body-progress deadline nor
the idle timeout may drop the client (it is waiting for the server); the
deadline starts, with a full window, when the 100 goes out.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web import resource, server

from lightningstor.s3.limits import ConnectionLimits
from lightningstor.s3.request import CONTINUE, S3Request

ADDR = IPv4Address("TCP", "127.0.0.1", 40000)
IDLE = 60
BODY_TIMEOUT = 10


class _Stored(resource.Resource):
    isLeaf = True

    def render_PUT(self, request: server.Request) -> bytes:
        return b"stored"


class _HoldingSite(server.Site):
    """Holds the 100 of every request that expects one (S3Api.begin, for an upload)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(_Stored(), reactor=clock, timeout=IDLE)
        self.requestFactory = S3Request
        self.requests: list[S3Request] = []

    def begin_request(self, request: S3Request, command: bytes, path: bytes, length: int | None) -> None:
        self.requests.append(request)
        if request.expects_continue():
            request.hold_continue()


def _connect(clock: Clock) -> tuple[Any, StringTransport, _HoldingSite]:
    site = _HoldingSite(clock)
    factory = ConnectionLimits(site, clock, max_connections=10, header_timeout=30, body_timeout=BODY_TIMEOUT)
    proto = factory.buildProtocol(ADDR)
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport, site


def _head(length: int, *, version: bytes = b"HTTP/1.1", expect: bool = True) -> bytes:
    head = b"PUT /b/k %s\r\nHost: x\r\nContent-Length: %d\r\n" % (version, length)
    if expect:
        head += b"Expect: 100-continue\r\n"
    return head + b"\r\n"


def test_a_held_100_keeps_the_client_connected_until_released() -> None:
    """No 100 while held, and however long the checks take, neither the body
    deadline nor the idle timeout closes the connection; once released, the
    100 goes out and the client has a full body window from then."""
    clock = Clock()
    proto, transport, site = _connect(clock)
    proto.dataReceived(_head(5000))
    assert transport.value() == b""
    clock.pump([5.0] * 40)  # 200 s of checks: past the body and idle timeouts
    assert not transport.disconnecting and transport.value() == b""
    site.requests[0].release_continue(True)
    assert transport.value() == CONTINUE
    clock.advance(BODY_TIMEOUT - 1)
    assert not transport.disconnecting
    proto.dataReceived(b"x" * 5000)
    assert transport.value().endswith(b"stored")
    assert not transport.disconnecting


def test_after_the_100_the_body_deadline_applies() -> None:
    clock = Clock()
    proto, transport, site = _connect(clock)
    proto.dataReceived(_head(5000))
    clock.advance(30)
    site.requests[0].release_continue(True)
    clock.advance(BODY_TIMEOUT)
    assert b"RequestTimeout" in transport.value()
    assert transport.disconnecting


def test_no_100_once_the_client_started_its_body() -> None:
    """A client whose own wait ran out sends its body: a late 100 is not sent."""
    clock = Clock()
    proto, transport, site = _connect(clock)
    proto.dataReceived(_head(5000) + b"x" * 100)
    request = site.requests[0]
    assert not request.awaits_continue()
    request.release_continue(True)
    assert transport.value() == b""
    proto.dataReceived(b"x" * 4900)
    assert transport.value().endswith(b"stored")


def test_a_failed_check_sends_no_100() -> None:
    clock = Clock()
    proto, transport, site = _connect(clock)
    proto.dataReceived(_head(5000))
    request = site.requests[0]
    assert request.awaits_continue()
    request.refuse_body()
    assert not request.continue_held
    clock.advance(BODY_TIMEOUT * 2)
    assert transport.value() == b"" and not transport.disconnecting  # no deadline armed


def test_without_a_hold_twisted_answers_as_before() -> None:
    """Not held (no Expect, HTTP/1.0, or not an upload): twisted.web's own behaviour."""
    clock = Clock()
    proto, transport, _site = _connect(clock)
    proto.dataReceived(_head(4, version=b"HTTP/1.0"))
    assert transport.value() == b""  # no 1xx answer to HTTP/1.0
    proto.dataReceived(b"abcd")
    assert transport.value().endswith(b"stored")

    proto, transport, _site = _connect(clock)
    proto.dataReceived(_head(4, expect=False))
    clock.advance(BODY_TIMEOUT)
    assert b"RequestTimeout" in transport.value()  # the deadline started with the headers


def test_a_pause_begun_during_the_hold_keeps_the_client_connected() -> None:
    """The client sent its body early and the server paused reading it (the
    upload budget) while the 100 was held: once the hold ends, that pause is
    still the server's, so the idle timeout must not drop the client."""
    clock = Clock()
    proto, transport, site = _connect(clock)
    proto.dataReceived(_head(5000))
    proto.dataReceived(b"x" * 100)  # the client's own wait ran out
    proto.pauseProducing()  # the server holds the rest back
    site.requests[0].release_continue(True)
    assert transport.value() == b""  # no 100 once the body has begun
    clock.pump([5.0] * 40)  # 200 s paused: past the idle timeout
    assert not transport.disconnecting
    proto.resumeProducing()
    proto.dataReceived(b"x" * 4900)
    assert transport.value().endswith(b"stored")


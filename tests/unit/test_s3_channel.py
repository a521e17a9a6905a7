"""lightningstor.s3.channel and S3Request.write: the response head and a
small body leave in one transport write, bytes as twisted.web would send
them; the local address is read once per connection; any Content-Length
is a number."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.web import http, resource, server

from lightningstor.s3.channel import S3Channel
from lightningstor.s3.request import COALESCE_LIMIT, S3Request


class _Body(resource.Resource):
    isLeaf = True

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"x-amz-meta-Color", b"blue")
        request.setHeader(b"content-length", b"%d" % len(self.body))
        return self.body

    render_HEAD = render_GET


class _CountingTransport(StringTransport):
    def __init__(self) -> None:
        super().__init__(hostAddress=IPv4Address("TCP", "127.0.0.1", 9000))
        self.writes = 0
        self.host_asked = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)

    def writeSequence(self, seq: Any) -> None:
        self.writes += 1
        super().writeSequence(seq)

    def getHost(self) -> Any:
        self.host_asked += 1
        return super().getHost()


def _serve(channel_class: type[http.HTTPChannel], body: bytes, request: bytes, requests: int = 1) -> _CountingTransport:
    site = server.Site(_Body(body))
    site.requestFactory = S3Request
    channel = channel_class()
    channel.site = site  # type: ignore[attr-defined]
    channel.requestFactory = S3Request
    transport = _CountingTransport()
    channel.makeConnection(transport)
    for _ in range(requests):
        channel.dataReceived(request)
    return transport


def _without_date(raw: bytes) -> bytes:
    return b"\r\n".join(line for line in raw.split(b"\r\n") if not line.startswith(b"Date: "))


@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
@pytest.mark.parametrize("size", [0, 4096, COALESCE_LIMIT + 1])
def test_responses_are_the_bytes_twisted_web_sends(method: bytes, size: int) -> None:
    """Status line, headers and body byte for byte as twisted.web's own
    channel writes them; a GET up to COALESCE_LIMIT bytes, and any HEAD,
    in one write (head and body together), a larger body separately."""
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    raw = method + b" /k HTTP/1.1\r\nHost: h\r\n\r\n"
    ours = _serve(S3Channel, body, raw)
    theirs = _serve(http.HTTPChannel, body, raw)
    assert _without_date(ours.value()) == _without_date(theirs.value())
    assert b"\r\nx-amz-meta-color: blue\r\n" in ours.value()
    one_write = method == b"HEAD" or size <= COALESCE_LIMIT
    assert ours.writes == (1 if one_write else 2)


def test_the_local_address_is_read_once_per_connection() -> None:
    """Three requests on one connection: each knows its host, and the
    transport (a getsockname system call on a socket) was asked once."""
    transport = _serve(S3Channel, b"ok", b"GET /k HTTP/1.1\r\nHost: h\r\n\r\n", requests=3)
    assert transport.value().count(b"HTTP/1.1 200 OK") == 3
    assert transport.host_asked == 1


@pytest.mark.parametrize(
    ("declared", "length"),
    [(b"12", 12), (b"0" * 4400 + b"5", 5), (b"9" * 5000, int("9" * 40)), (b"1" + b"0" * 39, 10**39)],
)
def test_any_content_length_is_a_number(declared: bytes, length: int) -> None:
    """Leading zeros are dropped and a length beyond 40 digits is read as a
    40-digit one (larger than anything accepted), where ``int()`` refuses
    more than 4300 digits and the parser dropped the connection."""
    channel = S3Channel()
    channel.site = server.Site(resource.Resource())  # type: ignore[attr-defined]
    channel.makeConnection(StringTransport())
    channel.requests.append(S3Request(channel))
    assert channel._maybeChooseTransferDecoder(b"Content-Length", declared) is True
    assert channel.length == length

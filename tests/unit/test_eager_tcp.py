"""lightningstor.tcp: a server transport that sends from ``write`` when
nothing is queued, and otherwise behaves as Twisted's own."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.protocol import Protocol

from lightningstor.tcp import EagerServer


class _Port:
    """What tcp.Server reads from its listening port."""

    sessionno = 0
    _realPortNumber = 1

    def getHost(self) -> Any:
        return None


class _TLSLayer(Protocol):
    """Stands in for the TLS protocol startTLS puts in front."""

    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


class _Pull:
    """A pull (non-streaming) producer."""

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@pytest.fixture
def pair() -> Iterator[tuple[EagerServer, socket.socket]]:
    """A server transport on one end of a socket pair.  Whether it asks the
    reactor to watch for writability is recorded in ``server.watching``
    rather than done (the test drives ``doWrite`` itself)."""
    a, b = socket.socketpair()
    a.setblocking(False)
    server = EagerServer(a, _TLSLayer(), ("127.0.0.1", 1), _Port(), 1, reactor)  # type: ignore[arg-type]
    server.watching = False  # type: ignore[attr-defined]

    def start() -> None:
        server.watching = True  # type: ignore[attr-defined]

    def stop() -> None:
        server.watching = False  # type: ignore[attr-defined]

    server.startWriting = start  # type: ignore[method-assign]
    server.stopWriting = stop  # type: ignore[method-assign]
    try:
        yield server, b
    finally:
        reactor.removeReader(server)  # type: ignore[attr-defined]  # tcp.Server starts reading at once
        a.close()
        b.close()


def _read(peer: socket.socket, size: int) -> bytes:
    peer.settimeout(5)
    data = b""
    while len(data) < size:
        piece = peer.recv(size - len(data))
        assert piece
        data += piece
    return data


def test_a_small_write_is_sent_at_once(pair: tuple[EagerServer, socket.socket]) -> None:
    """Nothing queued: the bytes are on the socket when ``write`` returns,
    and the transport does not ask the reactor to watch for writability."""
    server, peer = pair
    server.write(b"HTTP/1.1 200 OK\r\n\r\nhello")
    assert _read(peer, 24) == b"HTTP/1.1 200 OK\r\n\r\nhello"
    assert not server.watching  # type: ignore[attr-defined]
    assert server.dataBuffer == b"" and not server._tempDataBuffer


def test_what_the_socket_does_not_take_is_queued_in_order(pair: tuple[EagerServer, socket.socket]) -> None:
    """A write larger than the socket buffer sends what fits, queues the
    rest without copying it, and later writes queue behind it: the peer
    reads every byte in order once the reactor drains the queue."""
    server, peer = pair
    big = bytes(range(256)) * 40_000  # 10 MB: more than any socket buffer
    server.write(big)
    assert 0 < server.offset < len(big) and server.dataBuffer is big
    assert server.watching  # type: ignore[attr-defined]
    server.write(b"tail")
    assert server._tempDataBuffer == [b"tail"]  # queued behind, not sent ahead
    received = bytearray()
    peer.settimeout(5)
    while len(received) < len(big) + 4:
        while server.offset < len(server.dataBuffer) or server._tempDataBuffer:
            if server.doWrite() is not None:
                break
            try:
                received += peer.recv(1 << 20)
            except TimeoutError:
                break
        if len(received) < len(big) + 4:
            received += peer.recv(1 << 20)
    assert bytes(received) == big + b"tail"


def test_other_writes_take_the_usual_path(pair: tuple[EagerServer, socket.socket]) -> None:
    """Text is refused as by Twisted; a write while the transport is
    closing, for a pull producer (asked for more only when doWrite empties
    the buffer), or after startTLS, is queued for the usual path."""
    server, peer = pair
    with pytest.raises(TypeError):
        server.write("text")  # type: ignore[arg-type]
    server.disconnecting = True
    server.write(b"closing")
    assert server._tempDataBuffer == [b"closing"] and server.watching  # type: ignore[attr-defined]
    server.disconnecting = False
    server._tempDataBuffer, server._tempDataLen = [], 0
    server.registerProducer(_Pull(), False)
    server.write(b"pulled")
    assert server._tempDataBuffer == [b"pulled"] and server.watching  # type: ignore[attr-defined]
    server.unregisterProducer()
    server._tempDataBuffer, server._tempDataLen = [], 0
    server.TLS = True
    server.write(b"through tls")
    assert server.protocol.written == [b"through tls"]  # type: ignore[attr-defined]
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(100)


def test_bytes_delivered_moves_only_as_the_peer_reads() -> None:
    """``bytes_delivered`` (the send deadline's measure of a client's
    progress) counts what the socket took less what still waits in the
    kernel's send queue: it stops while the peer reads nothing, however
    much the socket buffered, and moves once the peer reads.  It is found
    through protocol wrappers, and is None for another kind of transport."""
    import time

    from twisted.internet.testing import StringTransport
    from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

    from lightningstor.tcp import bytes_delivered

    listener = socket.create_server(("127.0.0.1", 0))
    peer = socket.create_connection(listener.getsockname())
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    accepted, _ = listener.accept()
    accepted.setblocking(False)
    server = EagerServer(accepted, _TLSLayer(), ("127.0.0.1", 1), _Port(), 1, reactor)  # type: ignore[arg-type]
    server.startWriting = lambda: None  # type: ignore[method-assign]  # the test drives doWrite
    server.stopWriting = lambda: None  # type: ignore[method-assign]
    wrapper = ProtocolWrapper(WrappingFactory(Protocol()), Protocol())  # type: ignore[arg-type]
    wrapper.makeConnection(server)
    try:
        server.write(b"x" * (16 << 20))
        time.sleep(0.2)
        server.doWrite()
        stalled = bytes_delivered(wrapper)
        assert stalled is not None and 0 < stalled < server.sent
        time.sleep(0.2)
        assert bytes_delivered(wrapper) == stalled  # nothing read: no progress
        peer.settimeout(5)
        read = 0
        while read < 1 << 20:
            read += len(peer.recv(1 << 20))
        time.sleep(0.2)
        server.doWrite()
        moved = bytes_delivered(wrapper)
        assert moved is not None and moved > stalled
        assert bytes_delivered(StringTransport()) is None
    finally:
        reactor.removeReader(server)  # type: ignore[attr-defined]
        accepted.close()
        peer.close()
        listener.close()

"""ObjectProducer (s3/streaming.py): bounded read-ahead, order, backpressure,
errors mid-stream, and the TCP send size of large responses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.tcp import Connection
from twisted.python.failure import Failure

from lightningstor.errors import ChunkCorrupted
from lightningstor.s3 import streaming
from lightningstor.s3.streaming import ObjectProducer
from tests.unit.transport_helpers import socket_connection, wrapped

reactor: Any = global_reactor


class FakeReader:
    """Pieces come back only when the test fires them (one read at a time)."""

    def __init__(self) -> None:
        self.calls: list[Deferred[bytes | None]] = []

    def next_piece(self) -> Deferred[bytes | None]:
        assert all(d.called for d in self.calls), "a second read before the first one returned"
        d: Deferred[bytes | None] = Deferred()
        self.calls.append(d)
        return d

    def fire(self, piece: bytes | None) -> None:
        pending = [d for d in self.calls if not d.called]
        assert len(pending) == 1, f"{len(pending)} reads pending"
        pending[0].callback(piece)

    @property
    def pending(self) -> int:
        return sum(not d.called for d in self.calls)


class FakeRequest:
    """Pauses its producer on every write, as Twisted's transport does when a
    write exceeds its buffer; the test resumes it (the buffer drained)."""

    def __init__(self, pause_on_write: bool = True) -> None:
        self.written: list[bytes] = []
        self.finished = 0
        self.producer: Any = None
        self.unregistered = False
        self.pause_on_write = pause_on_write

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert streaming
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.unregistered = True

    def write(self, data: bytes) -> None:
        assert not self.finished
        self.written.append(data)
        if self.pause_on_write and self.producer is not None:
            self.producer.pauseProducing()

    def finish(self) -> None:
        self.finished += 1

    def drain(self) -> None:
        self.producer.resumeProducing()


def started(read_ahead: int = 3, pause_on_write: bool = True) -> tuple[FakeReader, FakeRequest, ObjectProducer]:
    reader, request = FakeReader(), FakeRequest(pause_on_write)
    producer = ObjectProducer(request, reader, read_ahead=read_ahead)
    producer.start()
    return reader, request, producer


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_read_ahead_is_bounded_while_the_client_is_slow(depth: int) -> None:
    """While the transport is paused the producer reads ahead, but never more
    than ``read_ahead`` pieces, and never two reads at once."""
    reader, request, producer = started(read_ahead=depth)
    reader.fire(b"p0")
    assert request.written == [b"p0"]  # the transport took it and paused us
    for n in range(1, depth + 1):
        assert reader.pending == 1  # reading ahead while paused
        reader.fire(b"p%d" % n)
        assert producer.held_pieces <= depth
    assert reader.pending == 0 and producer.held_pieces == depth  # full: no more reads
    assert request.written == [b"p0"]
    request.drain()  # one piece handed over, room for one more read
    assert request.written == [b"p0", b"p1"]
    assert reader.pending == 1 and producer.held_pieces == depth


def test_pieces_go_out_in_order_and_the_response_finishes_once() -> None:
    """However reads and drains interleave, pieces are written in order, the
    response finishes once, after the last piece, and done fires."""
    reader, request, producer = started(read_ahead=2)
    reader.fire(b"a")
    reader.fire(b"b")
    request.drain()
    reader.fire(b"c")
    reader.fire(None)  # end of object while "c" still waits for the transport
    assert request.written == [b"a", b"b"] and request.finished == 0
    request.drain()
    assert request.written == [b"a", b"b", b"c"]
    assert request.finished == 1 and request.unregistered and producer.done.called
    request.drain()  # late resume: nothing more happens
    assert request.finished == 1 and reader.pending == 0


def test_unpaused_transport_gets_pieces_as_they_arrive() -> None:
    reader, request, producer = started(pause_on_write=False)
    for piece in (b"x", b"", b"y"):
        reader.fire(piece)  # an empty piece is skipped, not written
    reader.fire(None)
    assert request.written == [b"x", b"y"] and request.finished == 1
    assert producer.done.called


def test_read_error_mid_stream_fails_done_and_writes_nothing_more() -> None:
    """A failed read (corrupt chunk) fails ``done`` at once, so the caller
    aborts the connection: pieces read ahead are dropped, the response is
    not finished (a client must not take a truncated body for a whole one)."""
    reader, request, producer = started(read_ahead=3)
    reader.fire(b"a")
    reader.fire(b"b")  # read ahead, not yet written
    errors: list[Failure] = []
    producer.done.addErrback(errors.append)
    pending = [d for d in reader.calls if not d.called][0]
    pending.errback(ChunkCorrupted("bad block"))
    assert errors and errors[0].check(ChunkCorrupted)
    assert request.unregistered and request.finished == 0
    request.drain()
    assert request.written == [b"a"] and producer.held_pieces == 0
    assert reader.pending == 0  # no further reads


def test_client_gone_stops_reading() -> None:
    """stopProducing (connection lost) ends the stream: done fires, a read in
    flight is ignored when it lands, and nothing more is read or written."""
    reader, request, producer = started()
    reader.fire(b"a")
    producer.stopProducing()
    assert producer.done.called
    reader.fire(b"late")
    producer.resumeProducing()
    assert request.written == [b"a"] and request.finished == 0 and reader.pending == 0
    assert producer.held_pieces == 0


def test_inline_object_is_one_write_without_a_producer() -> None:
    class Inline:
        def whole_inline(self) -> bytes:
            return b"small"

        def next_piece(self) -> Deferred[bytes | None]:
            raise AssertionError("not read piece by piece")

    request = FakeRequest()
    producer = ObjectProducer(request, Inline())
    d = producer.start()
    assert d.called and request.written == [b"small"] and request.finished == 1
    assert request.producer is None


def test_read_ahead_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ObjectProducer(FakeRequest(), FakeReader(), read_ahead=0)


def test_synchronous_reader_streams_whole_object() -> None:
    """A reader whose Deferreds fire at once still gets every piece out."""

    class Sync:
        def __init__(self) -> None:
            self.left = [b"%d" % i for i in range(50)]

        def next_piece(self) -> Deferred[bytes | None]:
            return succeed(self.left.pop(0) if self.left else None)

    request = FakeRequest(pause_on_write=False)
    ObjectProducer(request, Sync()).start()
    assert request.written == [b"%d" % i for i in range(50)] and request.finished == 1


# -- the TCP transport under a response ---------------------------------------------


@pytest.fixture
def tcp() -> Iterator[Connection]:
    with socket_connection() as connection:
        yield connection


def test_large_response_raises_the_send_size(tcp: Connection) -> None:
    """A streamed response lets its TCP connection send a whole piece per
    call (Twisted's default is 128 KiB), through the connection-limit wrapper."""
    assert tcp.SEND_LIMIT < streaming.SEND_LIMIT
    reader, request = FakeReader(), FakeRequest()
    request.channel = type("Channel", (), {"transport": wrapped(tcp)})()  # type: ignore[attr-defined]
    ObjectProducer(request, reader).start()
    assert tcp.SEND_LIMIT == streaming.SEND_LIMIT
    assert Connection.SEND_LIMIT < streaming.SEND_LIMIT  # only this connection

"""ObjectBody (s3/body.py) reads an upload's TCP socket in large reads for the
length of the body, and puts the connection's read size back afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.tcp import Connection
from twisted.protocols.tls import TLSMemoryBIOProtocol

from lightningstor.s3 import body as body_module
from lightningstor.s3.body import ObjectBody
from tests.unit.transport_helpers import socket_connection, wrapped

reactor: Any = global_reactor
DEFAULT = Connection.bufferSize


@pytest.fixture
def tcp() -> Iterator[Connection]:
    with socket_connection() as connection:
        yield connection


class Writer:
    """Just what ObjectBody asks of a ChunkManager writer."""

    should_pause = False
    buffered_bytes = 0
    queued_bytes = 0

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.aborted = False

    def set_progress_listener(self, listener: Any) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.received.append(data)

    def when_drained(self) -> Deferred[None]:
        return succeed(None)

    def finish(self) -> Deferred[str]:
        return succeed("stored")

    def abort(self) -> Deferred[None]:
        self.aborted = True
        return succeed(None)


def upload(transport: Any) -> tuple[ObjectBody, Writer]:
    writer = Writer()
    context = SimpleNamespace(writer=writer, decoder=None)
    return ObjectBody(transport, lambda: succeed(context)), writer


@pytest_twisted.ensureDeferred
async def test_large_reads_for_the_body_then_back(tcp: Connection) -> None:
    """While the body streams in, the connection reads up to RECV_SIZE per
    call (through the connection-limit wrapper); once the body has ended
    it is back to its default, which also bounds what it buffers for the
    response before pausing a producer."""
    assert DEFAULT < body_module.RECV_SIZE
    body, writer = upload(wrapped(tcp))
    assert tcp.bufferSize == body_module.RECV_SIZE
    body.receive(b"data")
    assert writer.received == [b"data"]
    _, result = await body.finish()
    assert result.write == "stored"
    assert tcp.bufferSize == DEFAULT
    assert Connection.bufferSize == DEFAULT  # the class default was never touched


def test_read_size_restored_when_the_client_goes_away(tcp: Connection) -> None:
    body, writer = upload(wrapped(tcp))
    assert tcp.bufferSize == body_module.RECV_SIZE
    body.connection_lost()
    assert writer.aborted and tcp.bufferSize == DEFAULT


def test_read_size_restored_when_the_body_fails_before_authentication(tcp: Connection) -> None:
    never: Deferred[Any] = Deferred()
    ObjectBody(wrapped(tcp), lambda: never)
    assert tcp.bufferSize == body_module.RECV_SIZE
    never.errback(RuntimeError("signature does not match"))
    assert tcp.bufferSize == DEFAULT


def test_tls_connections_are_left_alone(tcp: Connection) -> None:
    tls = TLSMemoryBIOProtocol.__new__(TLSMemoryBIOProtocol)
    tls.transport = tcp
    body, _ = upload(wrapped(tls))
    assert tcp.bufferSize == DEFAULT
    body.connection_lost()
    assert tcp.bufferSize == DEFAULT



def budgeted(transport: Any, budget: Any) -> tuple[ObjectBody, Writer]:
    writer = Writer()
    context = SimpleNamespace(writer=writer, decoder=None)
    return ObjectBody(transport, lambda: succeed(context), budget), writer


def test_reads_shrink_while_the_inflight_budget_has_no_room_for_them() -> None:
    """A read is taken off the socket whatever the budget says, so its size
    is what the budget may overshoot by: uploads read RECV_SIZE only while
    the budget has room for every open upload to take that much, else the
    default, and large again once there is room."""
    from lightningstor.s3.inflight import InflightBudget

    size = body_module.RECV_SIZE
    budget = InflightBudget(limit=2 * size + size // 2)
    with socket_connection() as a, socket_connection() as b, socket_connection() as c:
        first, _ = budgeted(wrapped(a), budget)
        second, second_writer = budgeted(wrapped(b), budget)
        assert (a.bufferSize, b.bufferSize) == (size, size)  # two reads of RECV_SIZE fit
        third, _ = budgeted(wrapped(c), budget)
        assert c.bufferSize == DEFAULT  # a third would not
        # The others learn it when they next report (a read, or progress).
        second_writer.buffered_bytes = 1
        second.receive(b"x")
        assert b.bufferSize == DEFAULT
        third.connection_lost()
        assert c.bufferSize == DEFAULT
        second.receive(b"y")
        assert b.bufferSize == size
        second.connection_lost()
        first.connection_lost()
        assert (a.bufferSize, b.bufferSize) == (DEFAULT, DEFAULT) and budget.total == 0


def test_a_body_past_its_limit_is_refused_as_it_arrives(tcp: Connection) -> None:
    """A chunked body declares no length, so the object's (or part's) size
    limit is checked as the bytes arrive: past it, nothing more is written,
    the upload is aborted, and the S3 layer is told at once (it answers
    EntityTooLarge and closes instead of reading a body that may not end)."""
    from lightningstor import errors

    writer = Writer()
    context = SimpleNamespace(writer=writer, decoder=None, max_bytes=10)
    refused: list[BaseException] = []
    body = ObjectBody(wrapped(tcp), lambda: succeed(context), None, refused.append)
    body.receive(b"123456")
    body.receive(b"7890")
    assert refused == [] and not writer.aborted  # exactly the limit is fine
    body.receive(b"x")
    assert len(refused) == 1 and isinstance(refused[0], errors.EntityTooLarge)
    assert refused[0].fields["MaxSizeAllowed"] == "10"
    assert writer.aborted and b"".join(writer.received) == b"1234567890"
    body.receive(b"more")
    assert len(refused) == 1 and b"".join(writer.received) == b"1234567890"


"""lightningstor.tcp: how the S3 port accepts (prepare_s3_port,
accept_one_at_a_time, the worker balancer's say) on a real listening
``tcp.Port``, and finding the TCP connection under a request
(tcp_transport)."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import tcp
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from lightningstor.tcp import EagerServer, accept_one_at_a_time, prepare_s3_port, tcp_transport
from lightningstor.worker_balance import AcceptBalancer, ConnectionTable
from tests.unit.transport_helpers import socket_connection, wrapped


class _Reactor(Clock):
    """A clock whose readers are only recorded: the test calls the port's
    ``doRead`` itself, and sees whether the port asked to be woken."""

    def __init__(self) -> None:
        super().__init__()
        self.readers: set[Any] = set()

    def addReader(self, reader: Any) -> None:
        self.readers.add(reader)

    def removeReader(self, reader: Any) -> None:
        self.readers.discard(reader)

    def addWriter(self, writer: Any) -> None:
        pass

    def removeWriter(self, writer: Any) -> None:
        pass


class _Listener:
    """A listening ``tcp.Port`` on loopback, the connections it accepted,
    and clients to connect to it."""

    def __init__(self, reactor: _Reactor) -> None:
        self.reactor = reactor
        self.accepted: list[Protocol] = []
        factory = Factory.forProtocol(Protocol)
        build = factory.buildProtocol

        def build_protocol(addr: Any) -> Protocol | None:
            protocol = build(addr)
            assert protocol is not None
            self.accepted.append(protocol)
            return protocol

        factory.buildProtocol = build_protocol  # type: ignore[method-assign]
        self.port = tcp.Port(0, factory, interface="127.0.0.1", reactor=reactor)  # type: ignore[arg-type]
        self.port.startListening()
        self.clients: list[socket.socket] = []

    @property
    def reading(self) -> bool:
        return self.port in self.reactor.readers

    def connect(self) -> None:
        """A client connection, pending on the port once this returns."""
        self.clients.append(socket.create_connection(self.port.socket.getsockname()))
        poll = select.poll()
        poll.register(self.port.fileno(), select.POLLIN)
        deadline = time.monotonic() + 5
        while not poll.poll(10):
            assert time.monotonic() < deadline

    def close(self) -> None:
        for protocol in self.accepted:
            if protocol.transport is not None and protocol.transport.connected:  # type: ignore[attr-defined]
                protocol.transport.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]
        for client in self.clients:
            client.close()
        if self.port.connected:
            self.port.stopListening()
            self.reactor.advance(0)


@pytest.fixture
def reactor() -> _Reactor:
    return _Reactor()


@pytest.fixture
def listener(reactor: _Reactor) -> Iterator[_Listener]:
    listener = _Listener(reactor)
    yield listener
    listener.close()


@pytest.fixture
def table() -> Iterator[ConnectionTable]:
    t = ConnectionTable.create(2)
    yield t
    t.close()


def _other_worker(table: ConnectionTable, reactor: _Reactor) -> AcceptBalancer:
    b = AcceptBalancer(table, 1, reactor, pid=11)
    b.register()
    return b


# -- without a balancer ---------------------------------------------------------------


def test_a_single_process_port_sends_eagerly_and_accepts_as_twisted_does(listener: _Listener) -> None:
    """No workers: the connections are eager, the accept loop is Twisted's
    own (everything queued in one wake-up), and nothing else is wrapped."""
    port = listener.port
    prepare_s3_port(port, one_accept=False)
    assert port.transport is EagerServer
    assert "doRead" not in vars(port) and "stopListening" not in vars(port)
    listener.connect()
    listener.connect()
    port.doRead()
    assert len(listener.accepted) == 2
    assert all(type(p.transport) is EagerServer for p in listener.accepted)


def test_a_shared_port_takes_one_connection_per_wake_up(listener: _Listener) -> None:
    """A worker (no connection table) takes one of the queued connections
    and leaves the next wake-up to whichever worker gets it."""
    port = listener.port
    prepare_s3_port(port, one_accept=True)
    assert port.transport is EagerServer
    listener.connect()
    listener.connect()
    port.doRead()
    assert len(listener.accepted) == 1
    port.doRead()
    assert len(listener.accepted) == 2


def test_the_metrics_port_takes_one_connection_per_wake_up_with_plain_connections(
    listener: _Listener,
) -> None:
    port = listener.port
    accept_one_at_a_time(port)
    assert port.transport is tcp.Server
    listener.connect()
    listener.connect()
    port.doRead()
    assert len(listener.accepted) == 1 and type(listener.accepted[0].transport) is tcp.Server


def test_only_a_plain_tcp_port_is_prepared() -> None:
    """The S3 port is always a TCP one; anything else would lose its own
    connection class (and the balancer its counts), so it is refused."""
    with pytest.raises(TypeError):
        prepare_s3_port(object(), one_accept=False)  # type: ignore[arg-type]


# -- with the worker balancer ----------------------------------------------------------


def test_a_balanced_port_counts_connections_and_pauses_when_ahead(
    table: ConnectionTable, reactor: _Reactor, listener: _Listener
) -> None:
    """Each accepted connection counts until it is lost; a wake-up above the
    fair share accepts nothing and stops reading for one tick."""
    port = listener.port
    a = AcceptBalancer(table, 0, reactor, pid=10, tick=0.001, patience=0.02)
    prepare_s3_port(port, one_accept=True, balancer=a)
    b = _other_worker(table, reactor)
    assert table.read()[0] == (10, 0, 0)
    listener.connect()
    listener.connect()
    port.doRead()
    assert len(listener.accepted) == 1 and table.read()[0] == (10, 1, 1)
    port.doRead()  # 1 vs 0: leave it to the other worker
    assert len(listener.accepted) == 1 and not listener.reading
    reactor.advance(0.001)
    assert listener.reading
    b.opened()
    port.doRead()
    assert len(listener.accepted) == 2 and table.read()[0] == (10, 2, 2)
    first = listener.accepted[0].transport
    assert type(first) is EagerServer
    first.connectionLost(Failure(ConnectionDone()))
    assert table.read()[0] == (10, 1, 2)


def test_a_stall_ends_when_the_queue_is_empty(
    table: ConnectionTable, reactor: _Reactor, listener: _Listener
) -> None:
    """A stall lasts while connections stay pending: once the queue is empty
    - this worker took the last one, or it looks again and another worker
    took it - the next connection starts a fresh wait instead of being
    taken at once."""
    port = listener.port
    a = AcceptBalancer(table, 0, reactor, pid=10, tick=0.001, patience=0.005, stuck=0.05)
    prepare_s3_port(port, one_accept=True, balancer=a)
    _other_worker(table, reactor)
    a.opened()
    listener.connect()
    port.doRead()  # above its share: waits
    assert not listener.accepted and not listener.reading
    reactor.advance(0.06)  # looked again after 1 ms: still pending
    assert listener.reading
    port.doRead()  # stuck for 50 ms: taken, and the queue is empty
    assert len(listener.accepted) == 1
    listener.connect()
    port.doRead()  # a fresh wait
    assert len(listener.accepted) == 1 and not listener.reading
    port.socket.accept()[0].close()  # another worker takes it
    reactor.advance(0.06)  # looks again: nothing pending, the stall is over
    listener.connect()
    port.doRead()
    assert len(listener.accepted) == 1


def test_closing_the_port_frees_the_slot_and_stops_accepting(
    table: ConnectionTable, reactor: _Reactor, listener: _Listener
) -> None:
    """stopListening (shutdown) clears the slot so the other workers stop
    leaving connections to this one, drops a pending resume, and the port
    accepts nothing more while it closes."""
    port = listener.port
    a = AcceptBalancer(table, 0, reactor, pid=10)
    prepare_s3_port(port, one_accept=True, balancer=a)
    assert port.loseConnection == port.stopListening
    _other_worker(table, reactor)
    a.opened()
    port.doRead()
    assert not listener.reading and reactor.getDelayedCalls()
    listener.connect()
    port.stopListening()
    assert table.read()[0] == (0, 0, 0)
    port.doRead()  # a wake-up before the close takes effect
    assert not listener.accepted
    reactor.advance(0)  # the port closes
    assert not port.connected and not reactor.getDelayedCalls()


# -- the TCP connection under a request ------------------------------------------------


def test_tcp_transport_unwraps_protocol_wrappers_but_not_tls() -> None:
    with socket_connection() as connection:
        assert tcp_transport(connection) is connection
        assert tcp_transport(wrapped(connection)) is connection
        assert tcp_transport(wrapped(wrapped(connection))) is connection
        tls = TLSMemoryBIOProtocol.__new__(TLSMemoryBIOProtocol)  # no TLS context needed to be one
        tls.transport = connection
        assert tcp_transport(wrapped(tls)) is None
    assert tcp_transport(None) is None
    assert tcp_transport(object()) is None

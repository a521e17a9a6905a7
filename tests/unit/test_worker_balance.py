"""lightningstor.worker_balance: the shared connection table and the accept
rule that spreads keep-alive connections evenly over worker processes."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.task import Clock

from lightningstor.worker_balance import AcceptBalancer, ConnectionTable
from lightningstor.workers import worker_role_from_env


@pytest.fixture
def table() -> Iterator[ConnectionTable]:
    t = ConnectionTable.create(2)
    yield t
    t.close()


def _balancer(table: ConnectionTable, index: int, clock: Clock, pid: int) -> AcceptBalancer:
    b = AcceptBalancer(table, index, clock, pid=pid, tick=0.001, patience=0.005, stuck=0.05)
    b.register()
    return b


def _hold(b: AcceptBalancer, n: int) -> None:
    for _ in range(n):
        b.opened()


def test_table_is_shared_through_the_inherited_descriptor(table: ConnectionTable) -> None:
    """What one process writes, another mapping of the same descriptor (a
    worker's, after fork/exec) reads; attaching closes the descriptor."""
    fd = os.dup(table.fd)
    other = ConnectionTable.attach(fd)
    try:
        with pytest.raises(OSError):
            os.fstat(fd)
        assert other.slots == 2
        table.write(1, 4242, 3, 7)
        assert other.read()[1] == (4242, 3, 7)
        other.write(0, 99, 1, 1)
        assert table.read()[0] == (99, 1, 1)
    finally:
        other.close()


def test_clear_frees_a_slot_only_for_its_owner(table: ConnectionTable) -> None:
    """The supervisor clears a dead worker's slot, but not the slot its
    replacement (another pid) has claimed since."""
    table.write(1, 500, 4, 9)
    table.clear(1, pid=501)
    assert table.read()[1] == (500, 4, 9)
    table.clear(1, pid=500)
    assert table.read()[1] == (0, 0, 0)


def test_a_worker_accepts_only_within_its_fair_share(table: ConnectionTable) -> None:
    """ceil(total/live) after the accept: the worker with fewer connections
    always may; the one ahead waits; equal counts both may."""
    clock = Clock()
    a, b = _balancer(table, 0, clock, 10), _balancer(table, 1, clock, 11)
    assert a.may_accept() and b.may_accept()
    a.opened()
    assert not a.may_accept()
    assert b.may_accept()
    b.opened()
    assert a.may_accept() and b.may_accept()
    _hold(a, 8)
    _hold(b, 7)  # 9 / 8: the next one goes to b
    assert not a.may_accept() and b.may_accept()


def test_a_lone_or_surviving_worker_always_accepts(table: ConnectionTable) -> None:
    """A slot with no live worker (pid 0: never started, died, stopped
    listening) does not count: the survivor's fair share is everything."""
    clock = Clock()
    a = _balancer(table, 0, clock, 10)
    _hold(a, 16)
    assert a.may_accept()
    b = _balancer(table, 1, clock, 11)
    assert not a.may_accept()
    b.stop()
    assert table.read()[1][0] == 0
    assert a.may_accept()


def test_a_stall_gives_way_after_patience_then_entirely(table: ConnectionTable) -> None:
    """Starvation guard: while the other workers accept nothing (busy,
    stopped, stale counts), the worker above its share takes one connection
    per `patience` (5 ms), every one once the stall has lasted `stuck`
    (50 ms), and leaves them to the others again once they accept."""
    clock = Clock()
    a, b = _balancer(table, 0, clock, 10), _balancer(table, 1, clock, 11)
    _hold(a, 5)
    assert not a.may_accept()
    clock.advance(0.004)
    assert not a.may_accept()
    clock.advance(0.002)
    assert a.may_accept()
    a.opened()
    assert not a.may_accept()  # the next one waits another 5 ms
    taken = 1
    for _ in range(40):  # to 46 ms
        clock.advance(0.001)
        if a.may_accept():
            a.opened()
            taken += 1
    assert taken == 9  # at 6, 11, ..., 46 ms
    clock.advance(0.003)
    assert not a.may_accept()
    clock.advance(0.0015)  # 50.5 ms: stuck, all of them
    for _ in range(5):
        assert a.may_accept()
        a.opened()
    b.opened()  # the other worker is accepting again
    assert not a.may_accept()
    clock.advance(0.004)
    assert not a.may_accept()


def test_progress_elsewhere_restarts_the_wait(table: ConnectionTable) -> None:
    """While another worker is taking connections, the worker above its
    share keeps leaving them to it however long that takes."""
    clock = Clock()
    a, b = _balancer(table, 0, clock, 10), _balancer(table, 1, clock, 11)
    _hold(a, 6)
    assert not a.may_accept()
    for _ in range(4):
        clock.advance(0.015)
        b.opened()
        assert not a.may_accept()


class _FakeServer:
    """Stands in for twisted.internet.tcp.Server (the port's transport class)."""

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.lost = False

    def connectionLost(self, reason: Any) -> None:
        self.lost = True


class _FakePort:
    """A listening port's surface as AcceptBalancer uses it, on a real
    listening socket (whether a connection is pending is asked of it)."""

    transport = _FakeServer

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.reading = True
        self.connected = True
        self.disconnecting = False
        self.reads = 0
        self.closed = False

    def fileno(self) -> int:
        return self.socket.fileno()

    def doRead(self) -> None:
        """Accept one connection (as tcp.Port does): really, if one is
        pending on the socket; the test's connections are counted anyway."""
        self.reads += 1
        self.socket.setblocking(False)
        try:
            self.socket.accept()[0].close()
        except BlockingIOError:
            pass
        self.transport(None, None, ("127.0.0.1", 1), self, 0, None)

    def stopReading(self) -> None:
        self.reading = False

    def startReading(self) -> None:
        self.reading = True

    def loseConnection(self) -> None:
        self.closed = True
        self.reading = False
        self.socket.close()

    stopListening = loseConnection


def test_installed_port_counts_connections_and_pauses_when_ahead(table: ConnectionTable) -> None:
    """On a port: each accepted connection counts until it is lost; a wake-up
    above the fair share accepts nothing and stops reading for one tick."""
    clock = Clock()
    port = _FakePort()
    a = AcceptBalancer(table, 0, clock, pid=10, tick=0.001, patience=0.02)
    a.install(port)
    b = _balancer(table, 1, clock, 11)
    assert table.read()[0] == (10, 0, 0)
    port.doRead()
    assert port.reads == 1 and table.read()[0] == (10, 1, 1)
    port.doRead()  # 1 vs 0: leave it to the other worker
    assert port.reads == 1 and not port.reading
    clock.advance(0.001)
    assert port.reading
    b.opened()
    port.doRead()
    assert port.reads == 2 and table.read()[0] == (10, 2, 2)
    conn = port.transport(None, None, ("127.0.0.1", 2), port, 1, None)
    assert table.read()[0][1] == 3
    conn.connectionLost(None)
    assert conn.lost and table.read()[0] == (10, 2, 3)
    port.loseConnection()


def _wait_pending(a: AcceptBalancer) -> None:
    deadline = time.monotonic() + 5
    while not a._pending():
        assert time.monotonic() < deadline
        time.sleep(0.01)


class _OtherServer(_FakeServer):
    """A connection class another module sets on the port after install."""


def test_a_connection_class_set_after_install_is_kept_and_counted(table: ConnectionTable) -> None:
    """server.py swaps the port's connection class for an eager-sending one
    after adopting it: the balancer counts with a subclass of whichever
    class the port has when it accepts, and wraps it only once."""
    clock = Clock()
    port = _FakePort()
    a = AcceptBalancer(table, 0, clock, pid=10)
    a.install(port)
    assert port.transport is _FakeServer
    port.transport = _OtherServer  # type: ignore[assignment]
    port.doRead()
    port.doRead()
    assert issubclass(port.transport, _OtherServer) and port.transport.__mro__[1] is _OtherServer
    assert table.read()[0] == (10, 2, 2)
    port.loseConnection()


def test_a_stall_ends_when_the_queue_is_empty(table: ConnectionTable) -> None:
    """A stall lasts while connections stay pending: once the queue is empty
    - this worker took the last one, or it looks again and another worker
    took it - the next connection starts a fresh wait instead of being
    taken at once."""
    clock = Clock()
    port = _FakePort()
    a = AcceptBalancer(table, 0, clock, pid=10, tick=0.001, patience=0.005, stuck=0.05)
    a.install(port)
    _balancer(table, 1, clock, 11)
    a.opened()
    clients = []
    try:
        clients.append(socket.create_connection(port.socket.getsockname()))
        _wait_pending(a)
        port.doRead()  # above its share: waits
        assert port.reads == 0 and not port.reading
        clock.advance(0.06)  # looked again after 1 ms: still pending
        assert port.reading
        port.doRead()  # stuck for 50 ms: taken, and the queue is empty
        assert port.reads == 1
        clients.append(socket.create_connection(port.socket.getsockname()))
        _wait_pending(a)
        port.doRead()  # a fresh wait
        assert port.reads == 1 and not port.reading
        port.socket.accept()[0].close()  # another worker takes it
        clock.advance(0.06)  # looks again: nothing pending, the stall is over
        clients.append(socket.create_connection(port.socket.getsockname()))
        _wait_pending(a)
        port.doRead()
        assert port.reads == 1
    finally:
        for client in clients:
            client.close()
        port.loseConnection()


def test_closing_the_port_frees_the_slot_and_stops_resuming(table: ConnectionTable) -> None:
    """stopListening (shutdown) clears the slot so the other workers stop
    leaving connections to this one, and a pending resume is dropped."""
    clock = Clock()
    port = _FakePort()
    a = AcceptBalancer(table, 0, clock, pid=10)
    a.install(port)
    _balancer(table, 1, clock, 11)
    a.opened()
    port.doRead()
    assert not port.reading and clock.getDelayedCalls()
    port.stopListening()
    assert port.closed and table.read()[0] == (0, 0, 0)
    assert not clock.getDelayedCalls()
    port.doRead()
    assert port.reads == 0


def test_worker_role_reads_the_table_descriptor() -> None:
    role = worker_role_from_env({"LIGHTNINGSTOR_WORKER": "1", "LIGHTNINGSTOR_WORKER_FDS": "s3=3,status=4,balance=6"})
    assert role is not None and role.balance_fd == 6


def test_supervisor_frees_a_dead_workers_slot(table: ConnectionTable) -> None:
    """A worker that dies takes its connections with it: the supervisor
    clears its slot at once (the survivors then count one worker fewer and
    accept everything) and schedules its replacement, which claims the
    slot when it listens."""
    from types import SimpleNamespace

    from lightningstor.workers import WorkerSupervisor, _Child, _WorkerProtocol

    clock = Clock()
    settings: Any = SimpleNamespace(server=SimpleNamespace(workers=2))
    supervisor = WorkerSupervisor(settings, clock, ["twistd"], {})
    supervisor.connections = table
    child = _Child(index=1, protocol=_WorkerProtocol(supervisor, 1), started_at=0.0, ready=True, pid=4321)
    supervisor.children[1] = child
    table.write(1, 4321, 7, 30)
    table.write(0, 1234, 9, 31)
    supervisor._worker_ended(child, 137)
    assert table.read() == [(1234, 9, 31), (0, 0, 0)]
    assert [call.getTime() for call in clock.getDelayedCalls()] == [1.0]

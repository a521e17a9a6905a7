"""lightningstor.worker_balance: the shared connection table and the accept
rule that spreads keep-alive connections evenly over worker processes."""

from __future__ import annotations

import os
from collections.abc import Iterator

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


def test_worker_role_reads_the_table_descriptor() -> None:
    role = worker_role_from_env({"LIGHTNINGSTOR_WORKER": "1", "LIGHTNINGSTOR_WORKER_FDS": "s3=3,status=4,balance=6"})
    assert role is not None and role.balance_fd == 6

"""The server-wide in-flight upload limit (``limits.max_inflight_upload_bytes``).

First the accounting of :class:`InflightBudget` on its own (pause at the limit,
resume below three quarters of it, oldest first, and progress when nothing
drains), then :class:`ObjectBody` feeding real ``ObjectWriter`` s whose backend
writes complete only when the test says so: the budget's total is what the
writers hold, transports pause and resume, and every byte is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import deferLater

from lightningstor import errors
from lightningstor.s3.body import ObjectBody
from lightningstor.s3.inflight import BudgetAccount, InflightBudget
from lightningstor.storage.chunks import ChunkManager
from tests.unit.test_chunk_manager import GatedBackend

reactor: Any = global_reactor

KiB = 1024


class Recorder:
    """pause/resume callbacks of one account; fails on an unbalanced call."""

    def __init__(self) -> None:
        self.paused = False
        self.pauses = 0
        self.resumes = 0
        self.log: list[str] | None = None
        self.name = ""

    def pause(self) -> None:
        assert not self.paused, "paused twice"
        self.paused = True
        self.pauses += 1

    def resume(self) -> None:
        assert self.paused, "resumed while running"
        self.paused = False
        self.resumes += 1
        if self.log is not None:
            self.log.append(self.name)


def open_account(budget: InflightBudget, name: str = "", log: list[str] | None = None) -> tuple[BudgetAccount, Recorder]:
    rec = Recorder()
    rec.name, rec.log = name, log
    return budget.open(rec.pause, rec.resume), rec


# -- the budget on its own ----------------------------------------------------


def test_pauses_at_the_limit_and_resumes_below_three_quarters() -> None:
    """An upload that brings the total to the limit is paused; it resumes only
    once the total is below 75 % of the limit, not at the first freed byte."""
    budget = InflightBudget(100)
    a, ra = open_account(budget)
    b, rb = open_account(budget)
    a.update(60, True)
    assert not ra.paused and budget.total == 60
    b.update(40, True)
    assert budget.total == 100 and rb.paused and not ra.paused
    a.update(30, True)  # total 70: below the resume mark (75)
    assert budget.total == 70
    assert not rb.paused and rb.resumes == 1
    b.update(50, True)  # 80 < 100: no pause
    assert not rb.paused
    assert budget.peak == 100


def test_resume_waits_for_the_low_mark() -> None:
    """Between 75 % and 100 % nobody is resumed (hysteresis)."""
    budget = InflightBudget(100)
    a, ra = open_account(budget)
    b, rb = open_account(budget)
    a.update(90, True)
    b.update(20, True)
    assert rb.paused
    a.update(60, True)  # total 80: under the limit, above 75
    assert rb.paused
    a.update(50, True)  # total 70
    assert not rb.paused


def test_waiters_resume_oldest_first() -> None:
    """Paused uploads are resumed in the order they were paused."""
    budget = InflightBudget(100)
    log: list[str] = []
    big, _ = open_account(budget)
    big.update(100, True)  # paused itself: it drains
    waiters = [open_account(budget, name, log) for name in "cab"]
    for account, _rec in waiters:
        account.update(1, True)
    assert all(rec.paused for _, rec in waiters)
    big.close()
    assert log == ["c", "a", "b"]
    assert budget.total == 3 and budget.waiting == 0


def test_close_returns_every_byte() -> None:
    """Closing an account (end of body, failure, disconnect) takes its bytes
    off the total, and a closed account ignores later reports."""
    budget = InflightBudget(100)
    a, _ = open_account(budget)
    a.update(70, True)
    a.close()
    a.update(50, True)
    a.close()
    assert budget.total == 0 and budget.accounts == 0


def test_ended_body_is_never_paused() -> None:
    """Once its body has ended an upload still counts its bytes but is not
    paused any more (its transport already carries the next request)."""
    budget = InflightBudget(100)
    a, ra = open_account(budget)
    a.stop_reading()
    a.update(150, True)
    assert not ra.paused and budget.total == 150
    b, rb = open_account(budget)
    b.update(1, True)
    assert rb.paused
    a.close()
    assert not rb.paused and budget.total == 1


def test_one_upload_keeps_reading_when_nothing_drains() -> None:
    """If every held byte is a partly filled piece, nothing would ever free
    memory: the budget lets one upload (the runner) read on until it has a
    whole piece queued, then hands the turn to the oldest waiter."""
    budget = InflightBudget(100)
    accounts = [open_account(budget) for _ in range(4)]
    for account, _ in accounts[:3]:
        account.update(30, False)
    (d, rd) = accounts[3]
    d.update(30, False)  # 120 >= 100 and nothing drains: d must go on
    assert not rd.paused
    (a, ra) = accounts[0]
    a.update(31, False)  # someone else is already the runner
    assert ra.paused
    d.update(40, True)  # d completed a piece: it drains now, so it pauses
    assert rd.paused
    d.update(10, False)  # d's piece is stored; still 101 >= 75 and nothing drains
    # The oldest waiter (a) takes the turn.
    assert not ra.paused and rd.paused
    a.update(40, False)  # the runner is not paused while it reads
    assert not ra.paused


def test_runner_paused_for_another_drain_does_not_keep_the_turn() -> None:
    """The runner may be paused because another upload drains; once that one
    stops draining, the turn must pass on (a paused runner that kept it would
    leave every upload paused for good: seen on a CPU-starved server)."""
    budget = InflightBudget(100)
    (r, rr), (d, rd), (w, rw) = (open_account(budget) for _ in range(3))
    r.update(40, False)
    w.update(40, False)
    r.update(45, False)  # 85: under the limit
    w.update(50, False)  # 95
    r.update(50, False)  # 100 >= 100, nothing drains: r becomes the runner
    assert not rr.paused and budget._runner is r
    w.update(50, False)  # waiting behind the runner
    assert rw.paused
    d.update(5, True)  # another upload drains ...
    assert rd.paused
    r.update(55, False)  # ... so the runner is paused for it
    assert rr.paused
    d.update(0, False)  # the drain is over: total 105, nothing drains
    assert not rr.paused or not rw.paused, "every upload is paused and nobody may run"


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.sampled_from(["update", "update", "update", "close", "stop"]),
            st.sampled_from([0, 5, 20, 30, 40, 55]),
            st.booleans(),
        ),
        max_size=80,
    )
)
def test_invariants_under_any_sequence(ops: list[tuple[int, str, int, bool]]) -> None:
    """Whatever the order of reports: the total is the sum of what open
    accounts hold, pause/resume calls alternate, nobody waits while the total
    is below the resume mark, and someone can always make progress (an
    upload drains, or one is allowed to read)."""
    budget = InflightBudget(100)
    accounts = [open_account(budget) for _ in range(4)]
    for index, op, held, draining in ops:
        account, _ = accounts[index]
        if op == "update":
            account.update(held, draining)
        elif op == "close":
            account.close()
        else:
            account.stop_reading()
        open_held = sum(acc.held for acc, _ in accounts if not acc.closed)
        assert budget.total == open_held
        assert all(not acc.held for acc, _ in accounts if acc.closed)
        waiting = [acc for acc, rec in accounts if rec.paused]
        assert len(waiting) == budget.waiting
        assert all(acc.waiting and acc.reading and not acc.closed for acc in waiting)
        if budget.total < budget.resume_below:
            assert not waiting
        if waiting:
            drains = any(acc.draining for acc, _ in accounts if not acc.closed)
            runner = budget._runner
            runs = runner is not None and runner.reading and not runner.waiting and not runner.closed
            assert drains or runs
        assert budget.peak >= budget.total


def test_bad_limit() -> None:
    with pytest.raises(ValueError):
        InflightBudget(0)


# -- ObjectBody with real writers ------------------------------------------------

PIECE = 64 * KiB
CHUNK = 256 * KiB


class FakeTransport:
    """Counts pause/resume calls; refuses unbalanced ones."""

    def __init__(self) -> None:
        self.paused = False
        self.pauses = 0

    def pauseProducing(self) -> None:
        assert not self.paused
        self.paused = True
        self.pauses += 1

    def resumeProducing(self) -> None:
        assert self.paused
        self.paused = False


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.002)):
        if condition():
            return
        await deferLater(reactor, 0.002)
    raise AssertionError("condition never became true")


class Upload:
    """One ObjectBody on a fake transport with a real ObjectWriter."""

    def __init__(self, manager: ChunkManager, budget: InflightBudget, decoder: Any = None) -> None:
        self.transport = FakeTransport()
        self.writer = manager.new_writer()
        context = SimpleNamespace(writer=self.writer, decoder=decoder)
        self.body = ObjectBody(self.transport, lambda: succeed(context), budget)


def piece(n: int) -> bytes:
    return bytes([n % 251]) * PIECE


@pytest.fixture
def gated_manager(pools: Any) -> tuple[GatedBackend, ChunkManager]:
    gated = GatedBackend()
    return gated, ChunkManager(cast(Any, gated), reactor, pools[1], chunk_size=CHUNK, piece_size=PIECE, inline_threshold=0)


@pytest_twisted.ensureDeferred
async def test_bodies_pause_at_the_limit_and_resume_as_writes_land(gated_manager: Any) -> None:
    """Two pieces per upload are below each writer's own backpressure, but
    three uploads together reach a 4-piece limit: the third is paused by the
    budget, the total always equals what the writers hold, and the paused
    upload resumes once stored pieces bring the total below 3 pieces."""
    gated, manager = gated_manager
    budget = InflightBudget(4 * PIECE)
    uploads = [Upload(manager, budget) for _ in range(3)]
    a, b, c = uploads
    for n in range(2):
        a.body.receive(piece(n))
    assert not a.transport.paused  # its own writer holds only two pieces
    b.body.receive(piece(2))
    b.body.receive(piece(3))
    assert budget.total == 4 * PIECE == sum(u.writer.buffered_bytes for u in uploads)
    assert b.transport.paused  # reached the limit
    assert not a.transport.paused
    c.body.receive(piece(4))
    assert c.transport.paused and budget.total == 5 * PIECE

    # Let the backend store pieces one by one until the paused uploads resume.
    for _ in range(3):
        await until(lambda: bool(gated.pending))
        gated.pending.pop(0).callback(None)
        await until(lambda: True)
        assert budget.total == sum(u.writer.buffered_bytes for u in uploads)
    assert budget.total < budget.resume_below
    assert not b.transport.paused and not c.transport.paused

    finishing = [Deferred.fromCoroutine(_finish(u)) for u in uploads]
    while not all(d.called for d in finishing):
        if gated.pending:
            gated.pending.pop(0).callback(None)
        await deferLater(reactor, 0.002)
    sizes = [(await d) for d in finishing]
    assert sizes == [2 * PIECE, 2 * PIECE, PIECE]
    assert budget.total == 0 and budget.accounts == 0 and budget.peak == 5 * PIECE


async def _finish(upload: Upload) -> int:
    _context, result = await upload.body.finish()
    return int(result.write.size)


@pytest_twisted.ensureDeferred
async def test_disconnect_and_failure_release_their_bytes(gated_manager: Any) -> None:
    """A client that goes away mid-body, and a body whose framing fails,
    give their bytes back at once, resuming those paused behind them."""
    _gated, manager = gated_manager
    budget = InflightBudget(4 * PIECE)
    framing = BrokenAfter(1)
    a, b = Upload(manager, budget), Upload(manager, budget, decoder=framing)
    a.body.receive(piece(0))
    a.body.receive(piece(1))
    a.body.receive(piece(2))
    b.body.receive(piece(3))
    assert b.transport.paused and budget.total == 4 * PIECE
    a.body.connection_lost()
    assert budget.total == PIECE and not b.transport.paused
    b.body.receive(piece(4))  # bad aws-chunked framing: the body fails
    assert budget.total == 0 and budget.accounts == 0
    assert not b.transport.paused  # the rest is read and discarded
    with pytest.raises(errors.S3Error) as caught:
        await b.body.finish()
    assert caught.value.code == "IncompleteBody"


class BrokenAfter:
    """An aws-chunked decoder stand-in: passes ``good`` feeds, then fails."""

    def __init__(self, good: int) -> None:
        self.good = good

    def feed(self, data: bytes) -> tuple[bytes, ...]:
        if self.good <= 0:
            raise errors.IncompleteBody()
        self.good -= 1
        return (data,)

    def finish(self) -> dict[str, str]:
        return {}


@pytest_twisted.ensureDeferred
async def test_bytes_waiting_for_authentication_count(pools: Any) -> None:
    """Body bytes that arrive before the signature check are held too, and are
    handed to the writer's account when the check passes."""
    gated = GatedBackend()
    manager = ChunkManager(cast(Any, gated), reactor, pools[1], chunk_size=CHUNK, piece_size=PIECE, inline_threshold=0)
    budget = InflightBudget(16 * PIECE)
    ready: Deferred[Any] = Deferred()
    writer = manager.new_writer()
    body = ObjectBody(FakeTransport(), lambda: ready, budget)
    body.receive(piece(0))
    body.receive(piece(1)[:1000])
    assert budget.total == PIECE + 1000
    ready.callback(SimpleNamespace(writer=writer, decoder=None))
    assert budget.total == writer.buffered_bytes == PIECE + 1000
    body.abort()
    assert budget.total == 0


@pytest_twisted.ensureDeferred
async def test_transport_stays_paused_while_any_reason_holds(gated_manager: Any) -> None:
    """The writer's own backpressure and the budget pause the same transport
    independently: it is paused once, stays paused when the writer has
    drained but the budget is still over its resume mark, and resumes once
    both let go."""
    gated, manager = gated_manager
    budget = InflightBudget(PIECE)  # resume below 48 KiB
    upload = Upload(manager, budget)
    for n in range(4):
        upload.body.receive(piece(n))
    assert upload.writer.should_pause and budget.waiting == 1
    assert upload.transport.paused and upload.transport.pauses == 1
    # Store pieces until the writer has drained (at most one piece left).
    while upload.writer.queued_bytes > PIECE:
        await until(lambda: bool(gated.pending))
        gated.pending.pop(0).callback(None)
    assert not upload.writer.should_pause
    assert budget.total == PIECE and upload.transport.paused  # the budget still holds it
    await until(lambda: bool(gated.pending))
    gated.pending.pop(0).callback(None)
    assert budget.total == 0 and not upload.transport.paused
    assert upload.transport.pauses == 1
    finishing = Deferred.fromCoroutine(_finish(upload))
    assert await finishing == 4 * PIECE
    assert budget.accounts == 0

"""storage/retired.py: freed chunks are deleted after the delay, with one
timer and a bounded number of batches and ids whatever the rate of frees."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from lightningstor.storage.retired import BATCH_SECONDS, RetiredChunks


class Recorder:
    """The ``delete`` callable: records what was deleted, and when."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.deleted: dict[str, float] = {}

    def __call__(self, ids: list[str]) -> Deferred[None]:
        for chunk_id in ids:
            assert chunk_id not in self.deleted, f"{chunk_id} deleted twice"
            self.deleted[chunk_id] = self.clock.seconds()
        return succeed(None)


def _queue(delay: float, **options: Any) -> tuple[Clock, Recorder, RetiredChunks]:
    clock = Clock()
    clock.advance(1000.0)
    recorder = Recorder(clock)
    return clock, recorder, RetiredChunks(clock, recorder, delay, **options)


def test_a_burst_of_frees_holds_one_timer_and_one_batch() -> None:
    """100,000 deletes freed in the same second: one timer, one batch, all
    deleted after the delay (not before), each once."""
    clock, recorder, queue = _queue(300.0)
    for i in range(100_000):
        queue.retire([f"c{i}"])
    assert len(clock.getDelayedCalls()) == 1
    assert queue.batches == 1 and len(queue) == 100_000
    clock.advance(299.9)
    assert recorder.deleted == {}
    clock.advance(BATCH_SECONDS + 0.2)
    assert len(recorder.deleted) == 100_000 and len(queue) == 0
    assert clock.getDelayedCalls() == []


def test_a_steady_stream_keeps_batches_bounded_and_every_id_waits_the_delay() -> None:
    """Frees every 0.1 s for 20 minutes: at most delay / BATCH_SECONDS + 2
    batches and one timer at any time; each id is deleted no sooner than
    the delay after it was freed and at most a batch later."""
    clock, recorder, queue = _queue(60.0)
    freed: dict[str, float] = {}
    most_batches = 0
    for step in range(12_000):
        chunk_id = f"c{step}"
        freed[chunk_id] = clock.seconds()
        queue.retire([chunk_id])
        most_batches = max(most_batches, queue.batches)
        assert len(clock.getDelayedCalls()) == 1
        clock.advance(0.1)
    clock.pump([0.1] * 620)
    assert most_batches <= 60 / BATCH_SECONDS + 2
    assert set(recorder.deleted) == set(freed)
    for chunk_id, at in freed.items():
        waited = recorder.deleted[chunk_id] - at
        assert 60.0 <= waited <= 60.0 + BATCH_SECONDS + 0.2, (chunk_id, waited)


def test_beyond_the_bound_the_oldest_are_deleted_early() -> None:
    """More than ``max_pending`` ids waiting: the oldest go at once, so memory
    stays bounded and no space is held back; the newest keep their delay."""
    clock, recorder, queue = _queue(300.0, max_pending=10)
    queue.retire([f"a{i}" for i in range(6)])
    clock.advance(5.0)
    queue.retire([f"b{i}" for i in range(6)])
    assert set(recorder.deleted) == {"a0", "a1"}
    assert len(queue) == 10 and queue.deleted_early == 2
    clock.advance(5.0)
    queue.retire([f"c{i}" for i in range(10)])
    assert set(recorder.deleted) == {f"a{i}" for i in range(6)} | {f"b{i}" for i in range(6)}
    assert len(queue) == 10 and queue.batches == 1
    clock.advance(301.0)
    assert len(recorder.deleted) == 22 and len(queue) == 0


def test_no_delay_deletes_at_once() -> None:
    clock, recorder, queue = _queue(0.0)
    queue.retire(["x", "y"])
    assert set(recorder.deleted) == {"x", "y"}
    assert clock.getDelayedCalls() == [] and len(queue) == 0


def test_a_wall_clock_stepping_back_keeps_the_queue_in_order() -> None:
    """A batch opened after the clock stepped back is never due before an
    earlier one: the head's timer stays the earliest deletion."""
    clock, recorder, queue = _queue(10.0)
    queue.retire(["first"])
    clock.rightNow -= 5.0  # the wall clock is stepped back
    queue.retire(["second"])
    assert queue.batches == 2
    clock.advance(16.5)
    assert set(recorder.deleted) == {"first", "second"}


def test_flush_deletes_everything_now_and_later_frees_at_once() -> None:
    """Shutdown: what waits is deleted without waiting out the delay; frees
    after that (requests have drained) are deleted at once."""
    clock, recorder, queue = _queue(300.0)
    queue.retire(["a", "b"])
    clock.advance(2.0)
    queue.retire(["c"])
    left: list[int] = []
    queue.flush(30.0).addCallback(left.append)
    assert left == [0] and set(recorder.deleted) == {"a", "b", "c"}
    assert clock.getDelayedCalls() == []
    queue.retire(["d"])
    assert "d" in recorder.deleted


def test_flush_is_bounded_in_time_and_leaves_the_rest_to_the_collector() -> None:
    """A slow backend: the flush stops after its timeout (between slices)
    and reports how many ids it left unreferenced for the collector."""
    clock = Clock()
    calls: list[list[str]] = []

    def slow_delete(ids: list[str]) -> Deferred[None]:
        calls.append(ids)
        d: Deferred[None] = Deferred()
        clock.callLater(10.0, d.callback, None)
        return d

    queue = RetiredChunks(clock, slow_delete, 300.0)
    queue.retire([f"c{i}" for i in range(2000)])
    left: list[int] = []
    queue.flush(15.0).addCallback(left.append)
    for _ in range(10):
        clock.advance(10.0)
    assert len(calls) == 2  # two slices started before the deadline
    assert left == [2000 - sum(len(c) for c in calls)]


def test_take_pending_deletes_nothing_and_stops_the_timer() -> None:
    """A stop on a shared store: the queue is handed over, not deleted, each
    batch with the time it still had to wait (core/freedchunks.py records
    it), and its timer is cancelled."""
    clock, recorder, queue = _queue(300.0)
    queue.retire(["a", "b"])
    clock.advance(2.0)
    queue.retire(["c"])
    clock.advance(8.0)
    assert queue.take_pending() == [(291.0, ["a", "b"]), (293.0, ["c"])]  # delay + BATCH_SECONDS - waited
    assert len(queue) == 0 and queue.batches == 0 and clock.getDelayedCalls() == []
    clock.advance(600.0)
    assert recorder.deleted == {}

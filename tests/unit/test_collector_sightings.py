"""The collector's sightings kept in the metadata store (core/sightings.py).

On real plugins (SQLite store, local backend) in-process, with 4 KiB
chunks; each ``SharedSightings`` stands for one collector process (a server
start), given the times of that process's monotonic clock.  What is proven:

* observed age adds up across processes, and the time between the last pass
  of one and the first pass of the next (downtime, or another clock) is not
  counted;
* a thing that becomes referenced again loses its record, so it starts
  afresh; a deleted one loses its record too, and the records end empty;
* passes of two processes taking turns never count the same time twice;
* a pass overtaken by another process's pass saves nothing, and the other
  one's state stands;
* two passes overlapping, in every order of their end transactions, never
  date a sighting before its thing was seen (a chunk of a write in flight
  is not deleted early);
* records are written in transactions of at most ``chunkindex.BATCH``
  operations (etcd's limit on a transaction).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, succeed

from lightningstor.core import chunkindex, keys
from lightningstor.core.collector import collect_orphans
from lightningstor.core.objects import PutAttrs
from lightningstor.core.service import Core
from lightningstor.core.sightings import SharedSightings
from lightningstor.interfaces.metadata import IMetadataStore, Operation, prefix_end
from tests.unit.test_collector_clock import ALICE, CHUNK, _record, _stored, _write

GRACE = 100.0


@pytest.fixture
def core(make_core: Any) -> Core:
    made: Core = make_core(fsync=False, chunk_size=CHUNK, piece_size=1024, inline_threshold=512)
    return made


@inlineCallbacks
def _records(core: Core) -> Any:
    """Deferred[dict[(kind, name), first]]: the stored sightings."""
    rows = yield core.store.scan(keys.SIGHTINGS, prefix_end(keys.SIGHTINGS))
    out = {}
    for kv in rows:
        kind, _, name = kv.key[len(keys.SIGHTINGS) :].decode().partition("/")
        out[(kind, name)] = json.loads(kv.value)["first"]
    return out


@inlineCallbacks
def _clock(core: Core) -> Any:
    kv = yield core.store.get(keys.COLLECTOR_CLOCK)
    return json.loads(kv.value)["clock"]


def _pass(core: Core, seen: SharedSightings, now: float) -> Any:
    return collect_orphans(core.store, core.backend, now, GRACE, seen)


@pytest_twisted.inlineCallbacks
def test_observed_age_adds_up_across_restarts_without_the_downtime(core: Core) -> None:
    """Process A sees an orphan at 0 and 60 (its clock): 60 s observed.  B
    starts much later on a clock of its own; its first pass adds nothing,
    so the orphan goes at B's first pass 40 s after that one, not sooner.
    A fresh in-memory collector would need the whole 100 s."""
    _w, orphan = yield _write(core, os.urandom(CHUNK))
    (chunk,) = orphan.chunks
    a = SharedSightings(core.store)
    assert (yield _pass(core, a, 0.0)) == 0
    assert (yield _pass(core, a, 60.0)) == 0
    assert (yield _clock(core)) == 60.0
    assert (yield _records(core)) == {("chunk", chunk.chunk_id): 0.0}
    b = SharedSightings(core.store)
    assert (yield _pass(core, b, 5000.0)) == 0  # a week of downtime: adds nothing
    assert (yield _clock(core)) == 60.0
    assert (yield _pass(core, b, 5039.0)) == 0  # 99 s observed
    assert chunk.chunk_id in (yield _stored(core))
    assert (yield _pass(core, b, 5040.0)) == 1  # 100 s
    assert chunk.chunk_id not in (yield _stored(core))
    assert (yield _records(core)) == {}


@pytest_twisted.inlineCallbacks
def test_a_chunk_referenced_again_loses_its_record(core: Core) -> None:
    """A write's chunks seen unreferenced get records; once its commit
    references them the next pass drops the records, and however much
    observed time passes after that they are kept."""
    bucket = yield core.buckets.create(ALICE, "committed")
    _w, pending = yield _write(core, os.urandom(2 * CHUNK))
    ids = {c.chunk_id for c in pending.chunks}
    seen = SharedSightings(core.store)
    yield _pass(core, seen, 0.0)
    assert set((yield _records(core))) == {("chunk", i) for i in ids}
    yield core.objects.commit(bucket, _record(core, "k", pending), PutAttrs())
    yield _pass(core, seen, 50.0)
    assert (yield _records(core)) == {}
    assert (yield _pass(core, seen, 500.0)) == 0
    assert (yield _pass(core, SharedSightings(core.store), 9000.0)) == 0
    assert ids <= (yield _stored(core))
    assert (yield _records(core)) == {}


@pytest_twisted.inlineCallbacks
def test_processes_taking_turns_never_count_time_twice(core: Core) -> None:
    """A and B alternate (the lease moving back and forth): a pass after the
    other process's pass adds nothing, however far apart its own passes are
    on its own clock, so the orphan stays while no process has observed
    it for the grace period between two of its consecutive passes."""
    _w, orphan = yield _write(core, os.urandom(CHUNK))
    (chunk,) = orphan.chunks
    a, b = SharedSightings(core.store), SharedSightings(core.store)
    yield _pass(core, a, 0.0)
    yield _pass(core, a, 50.0)
    yield _pass(core, b, 60.0)
    assert (yield _pass(core, a, 1000.0)) == 0
    assert (yield _pass(core, b, 1000.0)) == 0
    assert (yield _clock(core)) == 50.0
    assert chunk.chunk_id in (yield _stored(core))
    assert (yield _pass(core, b, 1049.0)) == 0  # 99 s observed
    assert (yield _pass(core, b, 1050.0)) == 1


@pytest_twisted.inlineCallbacks
def test_an_overtaken_pass_saves_nothing(core: Core) -> None:
    """A begins a pass; B (which took the lease over meanwhile) runs a whole
    pass; A's end finds the clock record changed and writes nothing, and
    its next pass adds no time."""
    _w, orphan = yield _write(core, os.urandom(CHUNK))
    (chunk,) = orphan.chunks
    a, b = SharedSightings(core.store), SharedSightings(core.store)
    yield _pass(core, a, 0.0)
    yield a.begin(70.0, GRACE)
    yield _pass(core, b, 10.0)
    rev = (yield core.store.get(keys.COLLECTOR_CLOCK)).mod_revision
    a.aged("chunk", chunk.chunk_id)
    a.aged("chunk", "not-a-real-chunk")
    yield a.end()
    assert (yield core.store.get(keys.COLLECTOR_CLOCK)).mod_revision == rev
    assert (yield _records(core)) == {("chunk", chunk.chunk_id): 0.0}
    yield _pass(core, a, 200.0)
    assert (yield _clock(core)) == 0.0
    assert chunk.chunk_id in (yield _stored(core))


@pytest_twisted.inlineCallbacks
def test_records_are_written_in_bounded_transactions(core: Core) -> None:
    """250 orphans: every transaction a pass makes holds at most
    ``chunkindex.BATCH`` operations, and all 250 records are stored."""
    _w, orphans = yield _write(core, os.urandom(250 * CHUNK))
    sizes: list[int] = []
    txn = core.store.txn

    def counting(compares: Any, operations: Any) -> Any:
        sizes.append(len(operations))
        return txn(compares, operations)

    core.store.txn = counting  # type: ignore[method-assign]
    try:
        yield _pass(core, SharedSightings(core.store), 0.0)
    finally:
        del core.store.txn
    assert len((yield _records(core))) == len(orphans.chunks) == 250
    assert sizes and max(sizes) <= chunkindex.BATCH


@pytest_twisted.inlineCallbacks
def test_a_pass_that_dies_part_way_leaves_usable_state(core: Core) -> None:
    """The pass at 60 claims the clock, then fails writing its records (the
    store went away).  Nothing is over-counted: the clock it claimed stands,
    so the orphan seen since 0 goes at 100; the one first seen by the failed
    pass has no record and is seen afresh at 100, so it goes 100 s later."""
    _w1, first = yield _write(core, os.urandom(CHUNK))
    seen = SharedSightings(core.store)
    yield _pass(core, seen, 0.0)
    _w2, second = yield _write(core, os.urandom(CHUNK))
    txn = core.store.txn

    def failing_record_write(compares: Any, operations: Any) -> Any:
        if any(getattr(op, "key", b"").startswith(keys.SIGHTINGS) for op in operations):
            raise RuntimeError("metadata store unavailable")
        return txn(compares, operations)

    core.store.txn = failing_record_write  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError):
            yield _pass(core, seen, 60.0)
    finally:
        del core.store.txn
    assert (yield _records(core)) == {("chunk", first.chunks[0].chunk_id): 0.0}
    assert (yield _clock(core)) == 60.0
    assert (yield _pass(core, seen, 100.0)) == 1
    assert first.chunks[0].chunk_id not in (yield _stored(core))
    assert (yield _pass(core, seen, 199.0)) == 0
    assert (yield _pass(core, seen, 200.0)) == 1
    assert (yield _records(core)) == {}


class _Held:
    """A metadata store whose ``txn`` calls go to ``store``, except that
    the ``hold``-th (from 0) is parked until :meth:`release`, and that
    ``before(n)`` runs before the n-th: one collector's view of the store
    while another collector's transactions interleave with its own."""

    def __init__(self, store: IMetadataStore, hold: int = -1) -> None:
        self.store, self.hold, self.calls = store, hold, 0
        self.parked: tuple[Deferred[Any], Sequence[Any], Sequence[Operation]] | None = None
        self.before: Any = None
        self.reached: Deferred[None] = Deferred()  # fires once a transaction is parked

    def txn(self, compares: Sequence[Any], operations: Sequence[Operation]) -> Any:
        n, self.calls = self.calls, self.calls + 1
        if n == self.hold:
            self.parked = (Deferred(), compares, operations)
            self.reached.callback(None)
            return self.parked[0]
        if self.before is not None:
            return self.before(n).addCallback(lambda _: self.store.txn(compares, operations))
        return self.store.txn(compares, operations)

    @inlineCallbacks
    def release(self) -> Any:
        """Deferred: apply the parked transaction, then let its caller go on."""
        if self.parked is None:
            return
        (waiting, compares, operations), self.parked = self.parked, None
        result = yield self.store.txn(compares, operations)
        waiting.callback(result)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


@pytest.mark.parametrize("release_before", [0, 1, 2])
@pytest.mark.parametrize("hold", [0, 1])
@pytest_twisted.inlineCallbacks
def test_overlapping_passes_never_date_a_sighting_too_early(
    core: Core, hold: int, release_before: int
) -> None:
    """A (pass 1 at 0, pass 2 begun at 90 on its clock) sees a new orphan; a
    write starts after A's listing; A's end is parked at its ``hold``-th
    transaction while B, another process (a lease taken over, or the rare
    double pass), runs a whole pass that sees the write's chunk; A's parked
    transaction goes through just before B's ``release_before``-th (2: after
    B's pass).  Whatever the order, A's next pass at 101 (the write is 11 s
    old, on any clock) must not delete the write's chunk, nor count it older
    than 11 s.  Before the clock was claimed first, release 1 (B's records
    in, then A's parked transaction, then B's clock write, which failed) left
    B's records, dated on the clock B read (0), under A's clock (90): the
    chunk was deleted at 101."""
    a = SharedSightings(core.store)
    yield _pass(core, a, 0.0)
    _w0, early = yield _write(core, os.urandom(CHUNK))
    (orphan,) = early.chunks
    held = _Held(core.store, hold)
    a.store = held  # type: ignore[assignment]
    yield a.begin(90.0, GRACE)
    a.aged("chunk", orphan.chunk_id)
    _w, inflight = yield _write(core, os.urandom(CHUNK))
    (chunk,) = inflight.chunks
    ended = a.end()
    # Parked, or (a bug in the test) ended without reaching the hold-th transaction.
    yield DeferredList([held.reached, ended], fireOnOneCallback=True)
    assert held.parked is not None

    b_store = _Held(core.store)
    b_store.before = lambda n: held.release() if n == release_before else succeed(None)
    b = SharedSightings(b_store)  # type: ignore[arg-type]
    assert (yield collect_orphans(b_store, core.backend, 5.0, GRACE, b)) == 0  # type: ignore[arg-type]
    yield held.release()
    yield ended
    a.store = core.store
    assert (yield _pass(core, a, 101.0)) == 0
    assert chunk.chunk_id in (yield _stored(core))
    records, clock = (yield _records(core)), (yield _clock(core))
    assert clock - records[("chunk", chunk.chunk_id)] <= 11.0

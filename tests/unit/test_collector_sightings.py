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
* records are written in transactions of at most ``chunkindex.BATCH``
  operations (etcd's limit on a transaction).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import inlineCallbacks

from lightningstor.core import chunkindex, keys
from lightningstor.core.collector import collect_orphans
from lightningstor.core.objects import PutAttrs
from lightningstor.core.service import Core
from lightningstor.core.sightings import SharedSightings
from lightningstor.interfaces.metadata import prefix_end
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
def test_a_pass_that_dies_before_its_clock_write_leaves_usable_state(core: Core) -> None:
    """The pass at 60 saves its records but fails writing the clock (the
    store went away).  Nothing is over-counted: the next pass measures from
    the last pass whose clock was saved, the orphan seen since 0 goes at
    100, the one first seen by the failed pass only 100 s after that."""
    _w1, first = yield _write(core, os.urandom(CHUNK))
    seen = SharedSightings(core.store)
    yield _pass(core, seen, 0.0)
    _w2, second = yield _write(core, os.urandom(CHUNK))
    txn = core.store.txn

    def failing_clock_write(compares: Any, operations: Any) -> Any:
        if any(getattr(op, "key", None) == keys.COLLECTOR_CLOCK for op in operations):
            raise RuntimeError("metadata store unavailable")
        return txn(compares, operations)

    core.store.txn = failing_clock_write  # type: ignore[method-assign]
    try:
        with pytest.raises(RuntimeError):
            yield _pass(core, seen, 60.0)
    finally:
        del core.store.txn
    assert (yield _records(core))[("chunk", second.chunks[0].chunk_id)] == 60.0
    assert (yield _clock(core)) == 0.0
    assert (yield _pass(core, seen, 100.0)) == 1
    assert first.chunks[0].chunk_id not in (yield _stored(core))
    assert (yield _pass(core, seen, 159.0)) == 0
    assert (yield _pass(core, seen, 160.0)) == 1
    assert (yield _records(core)) == {}

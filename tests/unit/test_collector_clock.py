"""The orphan collector measures age on its own clock only (core/collector.py).

On real plugins (SQLite store, local backend) in-process, with 4 KiB chunks.
What is proven:

* a pass whose clock is years ahead of the chunk files' and the entries'
  times deletes nothing of a write that has not committed yet, which then
  commits and reads back;
* a genuine orphan goes once the collector has seen it unreferenced for the
  grace period on its own clock, across two passes, and not a second sooner;
  what became referenced meanwhile is kept and forgotten;
* written-ahead index entries of a large write (more than ``IN_COMMIT``
  chunks) whose chunks the pass's listing missed are not dropped because
  the writer's clock says they are old;
* the server's ``CollectorService`` keeps its sightings between passes and
  takes time from the clock it is given.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks, succeed

from lightningstor.core import chunkindex, keys
from lightningstor.core.collector import GRACE_SECONDS, CollectorService, Sightings, collect_orphans
from lightningstor.core.objects import PutAttrs
from lightningstor.core.service import Core
from lightningstor.core.types import ObjectRecord, Principal
from lightningstor.interfaces.metadata import Put, prefix_end
from tests.unit.core_helpers import read_object

ALICE = Principal("alice", "org-a")
CHUNK = 4096
DAY = 24 * 3600.0
# A clock 25 h ahead of the chunk files' and the hints' times.
SKEWED = 25 * 3600.0


@pytest.fixture
def core(make_core: Any) -> Core:
    made: Core = make_core(fsync=False, chunk_size=CHUNK, piece_size=1024, inline_threshold=512)
    return made


@inlineCallbacks
def _stored(core: Core) -> Any:
    infos = yield core.backend.list_chunks()
    return {i.chunk_id for i in infos}


@inlineCallbacks
def _index(core: Core) -> Any:
    rows = yield core.store.scan(keys.CHUNKS, prefix_end(keys.CHUNKS))
    return {kv.key[len(keys.CHUNKS) :].decode() for kv in rows}


@inlineCallbacks
def _write(core: Core, data: bytes) -> Any:
    """Deferred[(writer, WriteResult)]: a body stored, not committed."""
    writer = core.chunks.new_writer(())
    writer.write(data)
    result = yield writer.finish()
    return writer, result


def _record(core: Core, key: str, result: Any) -> ObjectRecord:
    return ObjectRecord(key=key, size=result.size, etag=result.md5_hex, created_at=core.objects.now_ms(),
                        chunks=list(result.chunks), inline=result.inline)  # fmt: skip


class StaleListing:
    """A backend whose listing was taken before the test's write stored its
    chunks (a pass that started just before)."""

    def __init__(self, inner: Any, infos: list[Any]) -> None:
        self.inner = inner
        self.infos = infos

    def list_chunks(self) -> Any:
        return succeed(list(self.infos))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest_twisted.inlineCallbacks
def test_a_pass_with_a_clock_far_ahead_keeps_an_uncommitted_write(core: Core) -> None:
    """The chunks of a body stored but not committed yet are unreferenced;
    a collector pass whose clock reads 25 h (or years) past their files'
    times deletes none of them, and the write then commits and reads back."""
    bucket = yield core.buckets.create(ALICE, "inflight")
    data = os.urandom(5 * CHUNK)
    _writer, result = yield _write(core, data)
    ids = {c.chunk_id for c in result.chunks}
    for ahead in (SKEWED, 10 * 365 * DAY):
        removed = yield collect_orphans(core.store, core.backend, time.time() + ahead, DAY)
        assert removed == 0
    assert ids <= (yield _stored(core))
    record = yield core.objects.commit(bucket, _record(core, "k", result), PutAttrs())
    assert (yield read_object(core, record)) == data


@pytest_twisted.inlineCallbacks
def test_an_orphan_goes_after_the_grace_on_the_collectors_clock(core: Core) -> None:
    """An orphan is deleted by the first pass at least a grace period after
    the pass that first saw it unreferenced, on the collector's clock; a
    write that committed in between is kept and forgotten, and the state
    ends empty."""
    bucket = yield core.buckets.create(ALICE, "orphans")
    _w1, orphan = yield _write(core, os.urandom(2 * CHUNK))
    _w2, pending = yield _write(core, os.urandom(2 * CHUNK))
    orphan_ids = {c.chunk_id for c in orphan.chunks}
    pending_ids = {c.chunk_id for c in pending.chunks}
    seen = Sightings()
    assert (yield collect_orphans(core.store, core.backend, 1000.0, DAY, seen)) == 0
    assert len(seen) == 4
    yield core.objects.commit(bucket, _record(core, "k", pending), PutAttrs())
    assert (yield collect_orphans(core.store, core.backend, 1000.0 + DAY - 1, DAY, seen)) == 0
    assert len(seen) == 2  # the committed write's chunks are forgotten
    assert orphan_ids | pending_ids <= (yield _stored(core))
    assert (yield collect_orphans(core.store, core.backend, 1000.0 + DAY, DAY, seen)) == 2
    stored = yield _stored(core)
    assert not orphan_ids & stored
    assert pending_ids <= stored
    assert len(seen) == 0


@pytest_twisted.inlineCallbacks
def test_a_fresh_collector_starts_its_own_clock(core: Core) -> None:
    """A collector that has not seen an orphan before (a restart, the job's
    lease moving to another server) waits the whole grace period again:
    only the safe direction."""
    _w, orphan = yield _write(core, os.urandom(CHUNK))
    (chunk,) = orphan.chunks
    seen = Sightings()
    yield collect_orphans(core.store, core.backend, 0.0, DAY, seen)
    fresh = Sightings()
    assert (yield collect_orphans(core.store, core.backend, 2 * DAY, DAY, fresh)) == 0
    assert (yield collect_orphans(core.store, core.backend, 3 * DAY, DAY, fresh)) == 1
    assert chunk.chunk_id not in (yield _stored(core))


@pytest_twisted.inlineCallbacks
def test_written_ahead_entries_survive_a_pass_that_missed_their_chunks(core: Core) -> None:
    """A large write (more than IN_COMMIT chunks) indexes its chunks before
    its commit.  A pass that listed the backend before those chunks were
    stored sees entries of chunks that do not exist; their hints carry the
    writer's time, 25 h behind the collector's clock.  The entries stay, the
    write commits, and later passes a grace apart delete nothing of it."""
    bucket = yield core.buckets.create(ALICE, "ahead")
    before = yield core.backend.list_chunks()
    data = os.urandom((chunkindex.IN_COMMIT + 6) * CHUNK)
    _writer, result = yield _write(core, data)
    writer_clock_ms = int((time.time() - SKEWED) * 1000)
    yield chunkindex.index(core.store, result.chunks, chunkindex.object_hint(bucket.bucket_id, "big", writer_clock_ms))
    ids = {c.chunk_id for c in result.chunks}
    yield collect_orphans(core.store, StaleListing(core.backend, before), time.time(), DAY)
    assert ids <= (yield _index(core))
    record = yield core.objects.commit(bucket, _record(core, "big", result), PutAttrs(), indexed=True)
    seen = Sightings()
    for now in (time.time(), time.time() + SKEWED):
        assert (yield collect_orphans(core.store, core.backend, now, DAY, seen)) == 0
    assert ids <= (yield _index(core))
    assert (yield read_object(core, record)) == data


@pytest_twisted.inlineCallbacks
def test_stale_written_ahead_entries_of_a_write_that_never_committed_go(core: Core) -> None:
    """Entries indexed ahead for a write that then died before storing its
    chunks are dropped, but only a grace period (collector's clock) after a
    pass first saw them unneeded."""
    bucket = yield core.buckets.create(ALICE, "dead")
    hint = chunkindex.object_hint(bucket.bucket_id, "gone", int(time.time() * 1000))
    yield core.store.txn([], [Put(keys.chunk_key(f"never-{i}"), hint) for i in range(3)])
    seen = Sightings()
    yield collect_orphans(core.store, core.backend, 50.0, DAY, seen)
    assert len((yield _index(core))) == 3
    yield collect_orphans(core.store, core.backend, 50.0 + DAY, DAY, seen)
    assert (yield _index(core)) == set()


@pytest_twisted.inlineCallbacks
def test_collector_service_keeps_sightings_between_passes(core: Core) -> None:
    """The service takes time from the clock it is given (the server gives
    ``time.monotonic``) and remembers what it saw from one pass to the next."""
    _w, orphan = yield _write(core, os.urandom(CHUNK))
    (chunk,) = orphan.chunks
    now = [500.0]
    service = CollectorService(core.store, core.backend, lambda: now[0], reactor)
    assert service.grace_seconds == GRACE_SECONDS
    assert (yield service.run_once()) == 0
    now[0] += GRACE_SECONDS
    assert (yield service.run_once()) == 1
    assert chunk.chunk_id not in (yield _stored(core))


@pytest_twisted.inlineCallbacks
def test_collector_service_removes_temporary_files_nobody_writes_to(core: Core) -> None:
    """A worker killed mid-chunk leaves a temporary file; one restarted at
    once finds it too young for the start-up cleanup.  Each pass removes
    the temporary files untouched for an hour, never a younger one (a live
    writer touches its file on every write)."""
    tmp = core.backend._tmp_dir  # type: ignore[attr-defined]
    yield core.backend.check()  # the layout, tmp/ included
    stale, live = os.path.join(tmp, "stale.tmp"), os.path.join(tmp, "live.tmp")
    for path in (stale, live):
        with open(path, "wb") as f:
            f.write(b"partial chunk")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    service = CollectorService(core.store, core.backend, lambda: 500.0, reactor)
    assert (yield service.run_once()) == 0
    assert not os.path.exists(stale) and os.path.exists(live)

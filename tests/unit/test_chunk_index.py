"""The chunk index (core/chunkindex.py) and the collector that resolves it.

On real plugins (SQLite store, local backend) in-process, with 4 KiB chunks
so that objects of hundreds of chunks are cheap.  What is proven:

* no commit carries an index operation: a 300-chunk PUT, its overwrite, a
  versioned overwrite, a version promotion and a multipart completion each
  stay far under etcd's 128 operations per transaction;
* a failed commit takes its hints back;
* the collector keeps every chunk a record lists (current, noncurrent, open
  part, completed upload) and reclaims the ones whose hint leads nowhere,
  the leftovers of a crash between a commit and its unindexing;
* resolution survives a version promoted while it reads.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import inlineCallbacks

from lightningstor import errors
from lightningstor.core import chunkindex, keys
from lightningstor.core.collector import Sightings, collect_orphans
from lightningstor.core.multipart import PartRef
from lightningstor.core.objects import PutAttrs
from lightningstor.core.service import Core
from lightningstor.core.types import Principal
from lightningstor.interfaces.metadata import Put, prefix_end
from tests.unit.core_helpers import put_object, put_part

ALICE = Principal("alice", "org-a")
CHUNK = 4096


@pytest.fixture
def core(make_core: Any) -> Core:
    made: Core = make_core(fsync=False, chunk_size=CHUNK, piece_size=1024, inline_threshold=512)
    made.multipart.min_part_size = 1  # parts of a few small chunks
    return made


class TxnRecorder:
    """Wraps a store: records the size of every transaction."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sizes: list[int] = []

    def txn(self, compares: Any, operations: Any) -> Any:
        self.sizes.append(len(compares) + len(operations))
        return self.inner.txn(compares, operations)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@inlineCallbacks
def _index(core: Core) -> Any:
    rows = yield core.store.scan(keys.CHUNKS, prefix_end(keys.CHUNKS))
    return {kv.key[len(keys.CHUNKS):].decode(): kv.value for kv in rows}


@inlineCallbacks
def _collect(core: Core) -> Any:
    """One collector pass that treats every chunk and entry as old enough."""
    removed = yield collect_orphans(core.store, core.backend, time.time() + 10, 0)
    return removed


@inlineCallbacks
def _stored(core: Core) -> Any:
    return {i.chunk_id for i in (yield core.backend.list_chunks())}


@inlineCallbacks
def _deleted(core: Core, chunk_ids: set[str], timeout: float = 10.0) -> Any:
    """Wait until none of ``chunk_ids`` is stored.  The chunks an overwrite
    supersedes are deleted in the background (at once: the tests' grace is
    0), so a test that puts some back must not race that deletion."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    deadline = time.monotonic() + timeout
    while chunk_ids & (yield _stored(core)):
        assert time.monotonic() < deadline, "superseded chunks were not deleted"
        yield deferLater(reactor, 0.01, lambda: None)  # type: ignore[arg-type]


def _ids(*holders: Any) -> set[str]:
    return {c.chunk_id for h in holders for c in h.chunks}


@pytest_twisted.inlineCallbacks
def test_commits_carry_no_index_operations(core: Core) -> None:
    """A 300-chunk object is indexed in batches before its commit; the commit
    itself, overwrites, versioned overwrites, promotions and deletes stay
    small whatever the object's size."""
    recorder = TxnRecorder(core.store)
    core.objects._store = recorder
    core.multipart._store = recorder
    bucket = yield core.buckets.create(ALICE, "big")
    first = yield put_object(core, bucket, "k", os.urandom(300 * CHUNK))
    assert len(first.chunks) == 300
    assert max(recorder.sizes) <= chunkindex.BATCH
    assert len(recorder.sizes) >= 4  # three index batches, then the commit
    recorder.sizes.clear()
    yield put_object(core, bucket, "k", os.urandom(300 * CHUNK))  # overwrite: unindexes the first
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    v1 = yield put_object(core, bucket, "k", os.urandom(300 * CHUNK))  # the null version is demoted
    yield core.objects.delete(bucket, "k", v1.version_id)  # the null version is promoted back
    yield core.objects.delete(bucket, "k", "null")
    assert max(recorder.sizes) <= chunkindex.BATCH
    commits = [n for n in recorder.sizes if n < 20]
    assert commits, recorder.sizes
    assert (yield _index(core)) == {}


@pytest_twisted.inlineCallbacks
def test_multipart_completion_touches_no_entry(core: Core) -> None:
    """Completing an upload of many chunks is one small transaction; the
    parts' hints lead to the object, and the collector keeps them."""
    recorder = TxnRecorder(core.store)
    bucket = yield core.buckets.create(ALICE, "mpu")
    upload = yield core.multipart.create(bucket, "obj", PutAttrs(), initiator=ALICE)
    data = [os.urandom(150 * CHUNK), os.urandom(150 * CHUNK)]
    parts = []
    for n, d in enumerate(data, 1):
        parts.append((yield put_part(core, upload, n, d)))
    before = yield _index(core)
    core.objects._store = recorder
    core.multipart._store = recorder
    done = yield core.multipart.complete(
        bucket, "obj", upload.upload_id, [PartRef(p.part_number, p.etag) for p in parts]
    )
    assert len(done.record.chunks) == 300
    assert max(recorder.sizes) < 20
    assert (yield _index(core)) == before
    assert (yield _collect(core)) == 0
    assert _ids(done.record) <= (yield _stored(core))


@pytest_twisted.inlineCallbacks
def test_failed_commit_takes_its_hints_back(core: Core) -> None:
    """If-None-Match: * on an existing key fails the commit: the new chunks'
    entries are removed (the writer's owner deletes the data)."""
    bucket = yield core.buckets.create(ALICE, "cond")
    kept = yield put_object(core, bucket, "k", os.urandom(3 * CHUNK))
    with pytest.raises(errors.PreconditionFailed):
        yield put_object(core, bucket, "k", os.urandom(3 * CHUNK), PutAttrs(if_none_match_any=True))
    assert set((yield _index(core))) == _ids(kept)


@pytest_twisted.inlineCallbacks
def test_collector_keeps_every_listed_chunk(core: Core) -> None:
    """Current and noncurrent versions, an open upload's parts and a
    completed upload's parts all survive a pass that considers every chunk old."""
    bucket = yield core.buckets.create(ALICE, "keep")
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    old = yield put_object(core, bucket, "k", os.urandom(3 * CHUNK))
    new = yield put_object(core, bucket, "k", os.urandom(3 * CHUNK))
    open_upload = yield core.multipart.create(bucket, "open", PutAttrs(), initiator=ALICE)
    open_part = yield put_part(core, open_upload, 3, os.urandom(2 * CHUNK))
    done_upload = yield core.multipart.create(bucket, "done", PutAttrs(), initiator=ALICE)
    done_part = yield put_part(core, done_upload, 1, os.urandom(2 * CHUNK))
    yield core.multipart.complete(bucket, "done", done_upload.upload_id, [PartRef(1, done_part.etag)])
    assert (yield _collect(core)) == 0
    assert _ids(old, new, open_part, done_part) <= (yield _stored(core))


@pytest_twisted.inlineCallbacks
def test_collector_reclaims_what_a_crash_left_behind(core: Core) -> None:
    """Crashes between a commit and its unindexing leave entries whose hints
    lead to records that no longer list the chunk: an overwritten object, a
    deleted one, a replaced part, an unlisted part of a completed upload.
    The collector deletes those chunks and their entries, and keeps the live ones."""
    bucket = yield core.buckets.create(ALICE, "crash")
    overwritten = yield put_object(core, bucket, "k", os.urandom(2 * CHUNK))
    deleted = yield put_object(core, bucket, "gone", os.urandom(2 * CHUNK))
    upload = yield core.multipart.create(bucket, "mp", PutAttrs(), initiator=ALICE)
    replaced = yield put_part(core, upload, 1, os.urandom(2 * CHUNK))
    unlisted = yield put_part(core, upload, 2, os.urandom(2 * CHUNK))
    # Simulate the crash: keep the entries the unindexing would remove.
    saved = yield _index(core)
    live = yield put_object(core, bucket, "k", os.urandom(2 * CHUNK))
    yield core.objects.delete(bucket, "gone")
    kept_part = yield put_part(core, upload, 1, os.urandom(2 * CHUNK))
    done = yield core.multipart.complete(bucket, "mp", upload.upload_id, [PartRef(1, kept_part.etag)])
    garbage = _ids(overwritten, deleted, replaced, unlisted)
    yield _deleted(core, garbage)
    yield core.store.txn([], [Put(keys.chunk_key(c), saved[c]) for c in garbage])
    # And the data the delayed deletions would remove (written back).
    for chunk_id in garbage:
        yield core.backend.put_chunk(chunk_id, b"x")
    removed = yield _collect(core)
    assert removed == len(garbage)
    stored = yield _stored(core)
    assert not garbage & stored
    assert _ids(live, done.record) <= stored
    assert set((yield _index(core))) == _ids(live, done.record)


@pytest_twisted.inlineCallbacks
def test_collector_reads_past_inline_data(core: Core) -> None:
    """An object overwritten by an inline one (its data follows the record's
    JSON): the old chunks' entries lead to a record that lists no chunk, so
    the collector reclaims them instead of keeping them as unreadable."""
    bucket = yield core.buckets.create(ALICE, "inline")
    chunked = yield put_object(core, bucket, "k", os.urandom(2 * CHUNK))
    saved = yield _index(core)  # the crash: entries the unindexing would remove
    small = yield put_object(core, bucket, "k", b"\x00{}" * 10)
    assert small.inline is not None and not small.chunks
    yield _deleted(core, _ids(chunked))
    yield core.store.txn([], [Put(keys.chunk_key(c), saved[c]) for c in _ids(chunked)])
    for chunk_id in _ids(chunked):
        yield core.backend.put_chunk(chunk_id, b"x")
    assert (yield _collect(core)) == len(_ids(chunked))
    assert not _ids(chunked) & (yield _stored(core))


@pytest_twisted.inlineCallbacks
def test_stale_entries_go_after_the_grace_period_only(core: Core) -> None:
    """An entry whose chunk no longer exists is removed once the collector
    has seen it unneeded for its grace period, on its own clock: whatever
    time the entry says it was written (the writer's clock: an hour ago or
    just now), the first pass keeps it, and the pass a grace later drops
    both.  A legacy entry has no hint and one a record needs is a scrub
    finding: kept."""
    bucket = yield core.buckets.create(ALICE, "stale")
    live = yield put_object(core, bucket, "k", os.urandom(CHUNK))
    now_ms = int(time.time() * 1000)
    old_hint = chunkindex.object_hint(bucket.bucket_id, "nothing", now_ms - 7_200_000)
    young_hint = chunkindex.object_hint(bucket.bucket_id, "nothing", now_ms)
    legacy = keys.object_key(bucket.bucket_id, "nothing")
    yield core.store.txn([], [
        Put(keys.chunk_key("stale-old"), old_hint),
        Put(keys.chunk_key("stale-young"), young_hint),
        Put(keys.chunk_key("stale-legacy"), legacy),
    ])  # fmt: skip
    (missing,) = live.chunks
    yield core.backend.delete_chunk(missing.chunk_id)  # a live record's chunk is lost
    seen = Sightings()
    yield collect_orphans(core.store, core.backend, 100.0, 3600, seen)
    assert set((yield _index(core))) == {"stale-old", "stale-young", "stale-legacy", missing.chunk_id}
    yield collect_orphans(core.store, core.backend, 100.0 + 3599, 3600, seen)
    assert set((yield _index(core))) == {"stale-old", "stale-young", "stale-legacy", missing.chunk_id}
    yield collect_orphans(core.store, core.backend, 100.0 + 3600, 3600, seen)
    assert set((yield _index(core))) == {"stale-legacy", missing.chunk_id}
    assert len(seen) == 0


@pytest_twisted.inlineCallbacks
def test_resolution_survives_a_promotion_between_its_reads(core: Core) -> None:
    """The version holding a chunk moves from the noncurrent key space to the
    object key after the resolver read the object key and before it scans
    the versions: it would be missed in both places, but the object key's
    revision moved, so the resolver looks again and finds it."""
    bucket = yield core.buckets.create(ALICE, "race")
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    held = yield put_object(core, bucket, "k", os.urandom(2 * CHUNK))
    top = yield put_object(core, bucket, "k", os.urandom(CHUNK))
    chunk_id = held.chunks[0].chunk_id
    value = (yield _index(core))[chunk_id]

    class PromoteOnScan:
        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.promoted = False

        @inlineCallbacks
        def scan(self, start: bytes, end: bytes, limit: int = 0) -> Any:
            if not self.promoted:
                self.promoted = True
                yield core.objects.delete(bucket, "k", top.version_id)  # ``held`` becomes current
            rows = yield self.inner.scan(start, end, limit)
            return rows

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    store = PromoteOnScan(core.store)
    assert (yield chunkindex.still_referenced(store, chunk_id, value))
    assert store.promoted


def test_hints_name_their_holders() -> None:
    """Scrub's audit: a hint leads to its object key and every version of it,
    a part hint also to its part record; a legacy entry only to itself."""
    hint = chunkindex.part_hint("b1", "a/key", "up1", 7, 1)
    assert json.loads(hint)["n"] == 7
    assert chunkindex.names_holder(hint, keys.object_key("b1", "a/key"))
    assert chunkindex.names_holder(hint, keys.version_key("b1", "a/key", 3))
    assert chunkindex.names_holder(hint, keys.part_key("up1", 7))
    assert not chunkindex.names_holder(hint, keys.part_key("up1", 8))
    assert not chunkindex.names_holder(hint, keys.object_key("b1", "a/ke"))
    assert not chunkindex.names_holder(hint, keys.version_key("b1", "a/key2", 3))
    legacy = keys.object_key("b1", "x")
    assert chunkindex.is_legacy(legacy) and chunkindex.names_holder(legacy, legacy)
    assert chunkindex.decode_hint(b"not json") is None
    assert chunkindex.hint_time_ms(legacy) is None


@pytest_twisted.inlineCallbacks
def test_recorded_finds_the_length_and_crc_a_record_lists(core: Core) -> None:
    """What chunk repair asks when replicas disagree: the (length, CRC32C)
    that the record an entry leads to lists, for a current object with a
    paged chunk list, a noncurrent version and an open upload's part; None
    without an entry or when no record lists the chunk any more."""
    core.objects.chunks_per_record = 4  # a 10-chunk object is paged
    bucket = yield core.buckets.create(ALICE, "rec")
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    old = yield put_object(core, bucket, "k", os.urandom(3 * CHUNK + 100))
    paged = yield put_object(core, bucket, "k", os.urandom(10 * CHUNK))
    upload = yield core.multipart.create(bucket, "open", PutAttrs(), initiator=ALICE)
    part = yield put_part(core, upload, 2, os.urandom(2 * CHUNK))
    pages = yield core.store.scan(keys.MANIFESTS, prefix_end(keys.MANIFESTS))
    assert pages, "the 10-chunk object's list is not paged"
    for ref in [old.chunks[-1], paged.chunks[7], part.chunks[0]]:
        assert (yield chunkindex.recorded(core.store, ref.chunk_id)) == (ref.size, ref.checksum)
    assert (yield chunkindex.recorded(core.store, "ab" * 16)) is None
    yield core.store.txn([], [Put(keys.chunk_key("cd" * 16), chunkindex.object_hint(bucket.bucket_id, "k", 1))])
    assert (yield chunkindex.recorded(core.store, "cd" * 16)) is None

"""Paged chunk lists (core/manifests.py) on real plugins, in-process.

With 4 KiB chunks and ``chunks_per_record = 3``, a 7-chunk object keeps its
chunk list in three manifest pages: what is stored, how ranges read, what
version moves, deletes and failed commits do to the pages, and what the
collector keeps or drops.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import inlineCallbacks

from lightningstor import errors
from lightningstor.core import keys, manifests
from lightningstor.core.collector import collect_orphans
from lightningstor.core.multipart import PartRef
from lightningstor.core.objects import PutAttrs
from lightningstor.core.service import Core
from lightningstor.core.types import Bucket, ObjectRecord, Principal
from lightningstor.interfaces.metadata import prefix_end
from tests.unit.core_helpers import put_object, read_object

ALICE = Principal("alice", "org-a")
CHUNK = 4096
PER = 3


@pytest.fixture
def core(make_core: Any) -> Core:
    made: Core = make_core(fsync=False, chunk_size=CHUNK, piece_size=1024, inline_threshold=512)
    made.objects.chunks_per_record = PER
    made.multipart.min_part_size = 1
    return made


@inlineCallbacks
def _pages(core: Core) -> Any:
    rows = yield core.store.scan(keys.MANIFESTS, prefix_end(keys.MANIFESTS))
    return [kv.key for kv in rows]


@inlineCallbacks
def _crash_leftovers(core: Core, bucket: Bucket, key: str) -> Any:
    """Deferred[ObjectRecord]: what a crash between paging a 5-chunk version
    of ``key`` and committing it leaves (indexed chunks, 2 pages, no record)."""
    from lightningstor.core import chunkindex

    writer = core.chunks.new_writer(())
    writer.write(os.urandom(5 * CHUNK))
    result = yield writer.finish()
    lost = ObjectRecord(key=key, size=result.size, etag=result.md5_hex, created_at=1, chunks=list(result.chunks))
    yield chunkindex.index(core.store, lost.chunks, chunkindex.object_hint(bucket.bucket_id, key, 1))
    yield manifests.write(core.store, bucket.bucket_id, lost, PER, 1)
    return lost


@inlineCallbacks
def _stored_record(core: Core, bucket: Bucket, key: str) -> Any:
    kv = yield core.store.get(keys.object_key(bucket.bucket_id, key))
    return json.loads(kv.value)


@pytest_twisted.inlineCallbacks
def test_long_chunk_lists_are_paged_and_read_back(core: Core) -> None:
    """The record names its manifest (no chunk list); the pages hold the
    chunks in order; whole and ranged reads, across page boundaries, are
    byte-identical, and a range loads only the pages it touches."""
    bucket = yield core.buckets.create(ALICE, "paged")
    data = os.urandom(7 * CHUNK - 100)
    committed = yield put_object(core, bucket, "k", data)
    stored = yield _stored_record(core, bucket, "k")
    assert "chunks" not in stored and stored["mf"]["n"] == 7
    assert stored["mf"]["s"] == [0, 3 * CHUNK, 6 * CHUNK]
    assert len((yield _pages(core))) == 3
    record = yield core.objects.head(bucket, "k")
    assert record.chunks == [] and record.manifest is not None
    assert (yield manifests.chunks_of(core.store, record)) == committed.chunks
    assert hashlib.sha256((yield read_object(core, record))).digest() == hashlib.sha256(data).digest()
    for start, length in [(0, 1), (3 * CHUNK - 10, 20), (CHUNK + 5, 5 * CHUNK), (6 * CHUNK, 900), (len(data) - 1, 1)]:
        assert (yield read_object(core, record, start, length)) == data[start : start + length]
    chunks, base = yield manifests.chunks_for_range(core.store, record, 3 * CHUNK + 1, 10)
    assert base == 3 * CHUNK and [c.chunk_id for c in chunks] == [c.chunk_id for c in committed.chunks[3:6]]


@pytest_twisted.inlineCallbacks
def test_pages_follow_their_version_and_go_with_it(core: Core) -> None:
    """A demoted version keeps its pages; deleting it for good removes them
    (and its chunks' index entries); an unversioned overwrite removes the old ones."""
    bucket = yield core.buckets.create(ALICE, "moves")
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    v1 = yield put_object(core, bucket, "k", os.urandom(7 * CHUNK))
    v2 = yield put_object(core, bucket, "k", os.urandom(4 * CHUNK))
    assert len((yield _pages(core))) == 3 + 2
    old = yield core.objects.get_version(bucket, "k", v1.version_id)
    assert (yield read_object(core, old))[:10] == (yield read_object(core, v1))[:10]
    yield core.objects.delete(bucket, "k", v1.version_id)
    assert len((yield _pages(core))) == 2
    for c in v1.chunks:
        assert (yield core.store.get(keys.chunk_key(c.chunk_id))) is None
    plain = yield core.buckets.create(ALICE, "plain")
    yield put_object(core, plain, "p", os.urandom(5 * CHUNK))
    yield put_object(core, plain, "p", os.urandom(5 * CHUNK))  # replaces the first, pages and all
    yield core.objects.delete(bucket, "k", v2.version_id)
    assert len((yield _pages(core))) == 2  # only the plain object's current pages


@pytest_twisted.inlineCallbacks
def test_failed_commit_removes_its_pages(core: Core) -> None:
    bucket = yield core.buckets.create(ALICE, "failed")
    yield put_object(core, bucket, "k", os.urandom(CHUNK))
    with pytest.raises(errors.PreconditionFailed):
        yield put_object(core, bucket, "k", os.urandom(7 * CHUNK), PutAttrs(if_none_match_any=True))
    assert (yield _pages(core)) == []


@pytest_twisted.inlineCallbacks
def test_multipart_and_part_copy_with_paged_lists(core: Core) -> None:
    """A completed upload of 8 chunks is paged; UploadPartCopy of a range of
    it reads the right pages."""
    bucket = yield core.buckets.create(ALICE, "multi")
    mp = core.multipart
    upload = yield mp.create(bucket, "obj", PutAttrs(), initiator=ALICE)
    data = [os.urandom(5 * CHUNK), os.urandom(3 * CHUNK)]
    parts = []
    for n, d in enumerate(data, 1):
        writer = mp.new_part_writer(upload)
        writer.write(d)
        result = yield writer.finish()
        parts.append((yield mp.commit_part(upload, n, result, {})))
    done = yield mp.complete(bucket, "obj", upload.upload_id, [PartRef(p.part_number, p.etag) for p in parts])
    whole = b"".join(data)
    record = yield core.objects.head(bucket, "obj")
    assert record.manifest is not None and record.manifest.count == 8
    assert (yield read_object(core, record)) == whole
    second = yield mp.create(bucket, "copy", PutAttrs(), initiator=ALICE)
    copied = yield mp.copy_part(second, 1, record, 4 * CHUNK - 7, 2 * CHUNK)
    final = yield mp.complete(bucket, "copy", second.upload_id, [PartRef(1, copied.etag)])
    assert (yield read_object(core, final.record)) == whole[4 * CHUNK - 7 : 6 * CHUNK - 7]
    assert done.record.size == len(whole)


@pytest_twisted.inlineCallbacks
def test_collector_keeps_paged_chunks_and_drops_orphaned_pages(core: Core) -> None:
    """Chunks listed only in pages are kept; pages that no record names (a
    crash before the commit) are dropped once old, and their chunks then go."""
    bucket = yield core.buckets.create(ALICE, "collect")
    live = yield put_object(core, bucket, "k", os.urandom(7 * CHUNK))
    lost = yield _crash_leftovers(core, bucket, "k")
    assert len((yield _pages(core))) == 3 + 2
    removed = yield collect_orphans(core.store, core.backend, time.time() + 10, 0)
    assert removed == len(lost.chunks)
    assert len((yield _pages(core))) == 3
    stored = {i.chunk_id for i in (yield core.backend.list_chunks())}
    assert {c.chunk_id for c in live.chunks} <= stored
    assert not {c.chunk_id for c in lost.chunks} & stored
    # Young pages of a commit still to come are left alone.
    yield manifests.write(core.store, bucket.bucket_id, lost, PER, int(time.time() * 1000))
    yield collect_orphans(core.store, core.backend, time.time(), 3600)
    assert len((yield _pages(core))) == 5


@pytest_twisted.inlineCallbacks
def test_orphaned_pages_of_a_key_now_holding_an_inline_object_are_dropped(core: Core) -> None:
    """The crash leftovers of a large write, then a small (inline) object
    at the same key: its record, data after the JSON, names no manifest, so
    the pages go.  (Read as JSON whole, the record would be "unreadable",
    and the pages and their chunks kept forever.)"""
    bucket = yield core.buckets.create(ALICE, "inline")
    lost = yield _crash_leftovers(core, bucket, "k")
    small = yield put_object(core, bucket, "k", b"\x00{}" * 20)
    assert small.inline is not None
    removed = yield collect_orphans(core.store, core.backend, time.time() + 10, 0)
    assert removed == len(lost.chunks)
    assert (yield _pages(core)) == []


@pytest_twisted.inlineCallbacks
def test_a_paged_record_read_back_cannot_be_committed_without_its_chunks(core: Core) -> None:
    """Read back, a paged record lists no chunks; committing it again as it
    is would store an object without data, so it is refused and nothing changes."""
    bucket = yield core.buckets.create(ALICE, "guard")
    data = os.urandom(7 * CHUNK)
    yield put_object(core, bucket, "k", data)
    stored = yield core.objects.head(bucket, "k")
    with pytest.raises(ValueError):
        yield core.objects.commit(bucket, stored)
    again = yield core.objects.head(bucket, "k")
    assert (yield read_object(core, again)) == data
    stored.chunks = yield manifests.chunks_of(core.store, stored)
    yield core.objects.commit(bucket, stored)  # with its chunks loaded it pages anew
    assert (yield read_object(core, (yield core.objects.head(bucket, "k")))) == data

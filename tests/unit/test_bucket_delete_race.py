"""DeleteBucket racing the writes that land objects (core/buckets.py).

An acknowledged object must never be left in a deleted bucket: either the
write fails (NoSuchBucket) or the DeleteBucket does (BucketNotEmpty), never
both succeed.  Each race is driven deterministically: a store wrapper runs a
whole write at a chosen point of the deletion (after its emptiness scan), or
a write resolved before the deletion commits after it.  SQLite store, local
backend, in-process.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import pytest
import pytest_twisted
from twisted.internet.defer import inlineCallbacks, maybeDeferred

from lightningstor import errors
from lightningstor.core import keys, records
from lightningstor.core.multipart import PartRef
from lightningstor.core.objects import PutAttrs
from lightningstor.core.quotas import BucketScope
from lightningstor.core.service import Core
from lightningstor.core.types import Bucket, Principal, Versioning
from lightningstor.interfaces.metadata import Delete, Put, prefix_end
from tests.unit.core_helpers import put_object

ALICE = Principal("alice", "org-a", display_name="Alice")


class HookedStore:
    """The real store, with a hook run after the ``n``-th scan of a prefix.

    The hook's Deferred is awaited before the scan's rows are returned, so
    the write it runs lands between the deletion's emptiness check and
    whatever the deletion does next.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.hooks: dict[tuple[bytes, int], Callable[[], Any]] = {}
        self.scans: dict[bytes, int] = {}

    def on_scan(self, prefix: bytes, n: int, hook: Callable[[], Any]) -> None:
        self.hooks[(prefix, n)] = hook

    def scan(self, start: bytes, end: bytes, limit: int = 0) -> Any:
        self.scans[start] = n = self.scans.get(start, 0) + 1
        hook = self.hooks.pop((start, n), None)
        d = self.inner.scan(start, end, limit)
        if hook is None:
            return d

        @inlineCallbacks
        def run_hook(rows: Any) -> Any:
            yield hook()
            return rows

        return d.addCallback(run_hook)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def core(make_core: Any) -> Core:
    c: Core = make_core(fsync=False, chunk_size=4096, piece_size=1024, inline_threshold=1024)
    c.multipart.min_part_size = 1000
    return c


@pytest.fixture
def hooked(core: Core) -> HookedStore:
    """Only the bucket manager's reads go through the hooks."""
    store = HookedStore(core.store)
    core.buckets._store = store
    return store


@inlineCallbacks
def _outcome(d: Any) -> Any:
    """("ok", value) or ("error", the S3Error's code)."""
    try:
        value = yield d
    except errors.S3Error as e:
        return ("error", e.code)
    return ("ok", value)


@inlineCallbacks
def _object_rows(core: Core, bucket_id: str) -> Any:
    prefix = keys.objects_prefix(bucket_id)
    rows = yield core.store.scan(prefix, prefix_end(prefix))
    return [kv.key[len(prefix):].decode() for kv in rows]


@inlineCallbacks
def _assert_never_both(core: Core, bucket: Bucket, write: Any, delete: Any, key: str) -> Any:
    """The invariant: an object write and a DeleteBucket never both succeed,
    and an acknowledged object stays reachable through its bucket's name."""
    assert not (write[0] == "ok" and delete[0] == "ok"), (write, delete)
    stored = yield _object_rows(core, bucket.bucket_id)
    if write[0] == "ok":
        assert delete == ("error", "BucketNotEmpty")
        again = yield core.buckets.get(ALICE, bucket.name)
        assert again.bucket_id == bucket.bucket_id
        found = yield core.objects.head(again, key)
        assert found.etag == write[1].etag
    else:
        assert write == ("error", "NoSuchBucket")
        assert delete[0] == "ok" and stored == []


@inlineCallbacks
def _race_delete(core: Core, hooked: HookedStore, bucket: Bucket, scan: int, write: Callable[[], Any]) -> Any:
    """(the write's outcome, DeleteBucket's): ``write()`` runs to its end
    right after DeleteBucket's ``scan``-th emptiness scan of ``bucket``."""
    outcomes: list[Any] = []

    @inlineCallbacks
    def racing() -> Any:
        outcomes.append((yield _outcome(write())))

    hooked.on_scan(keys.objects_prefix(bucket.bucket_id), scan, racing)
    delete = yield _outcome(core.buckets.delete(ALICE, bucket.name))
    assert outcomes, "the racing write never ran"
    return outcomes[0], delete


# -- the races ------------------------------------------------------------------------


@pytest.mark.parametrize("scan", [1, 2])
@pytest_twisted.inlineCallbacks
def test_put_landing_after_the_emptiness_scan_fails_the_delete(core: Core, hooked: HookedStore, scan: int) -> None:
    """A PUT committing right after DeleteBucket found the bucket empty (its
    first or its second scan) makes the DeleteBucket fail: BucketNotEmpty,
    and the acknowledged object stays readable."""
    bucket = yield core.buckets.create(ALICE, "race")
    data = os.urandom(3000)
    write, delete = yield _race_delete(core, hooked, bucket, scan, lambda: put_object(core, bucket, "k", data))
    assert write[0] == "ok"
    yield _assert_never_both(core, bucket, write, delete, "k")


@pytest_twisted.inlineCallbacks
def test_put_resolved_before_the_delete_and_committed_after_fails(core: Core) -> None:
    """A PUT whose bucket was resolved before a DeleteBucket succeeded (a long
    upload) answers NoSuchBucket: nothing lands under the deleted bucket's id."""
    bucket = yield core.buckets.create(ALICE, "gone")
    resolved = yield core.buckets.get(ALICE, "gone")
    yield core.buckets.delete(ALICE, "gone")
    write = yield _outcome(put_object(core, resolved, "k", os.urandom(3000)))
    assert write == ("error", "NoSuchBucket")
    assert (yield _object_rows(core, bucket.bucket_id)) == []
    # Nor once a bucket of the same name exists again: it is another bucket.
    yield core.buckets.create(ALICE, "gone")
    write = yield _outcome(put_object(core, resolved, "k", b"late"))
    assert write == ("error", "NoSuchBucket")
    assert (yield _object_rows(core, bucket.bucket_id)) == []


@pytest.mark.parametrize("scan", [1, 2])
@pytest_twisted.inlineCallbacks
def test_delete_marker_landing_after_the_scan_fails_the_delete(core: Core, hooked: HookedStore, scan: int) -> None:
    """A versioned DeleteObject writes a delete marker, which is a version
    too: it keeps the bucket from being deleted, as in S3."""
    bucket = yield core.buckets.create(ALICE, "markers", versioning=Versioning.ENABLED)
    write, delete = yield _race_delete(
        core, hooked, bucket, scan, lambda: core.objects.delete(bucket, "never-written")
    )
    assert write[0] == "ok" and write[1].delete_marker
    assert delete == ("error", "BucketNotEmpty")
    assert (yield _object_rows(core, bucket.bucket_id)) == ["never-written"]


@pytest.mark.parametrize("scan", [1, 2])
@pytest_twisted.inlineCallbacks
def test_complete_multipart_after_the_scan_fails_the_delete(core: Core, hooked: HookedStore, scan: int) -> None:
    """CompleteMultipartUpload landing its object after DeleteBucket's scan:
    the object survives and DeleteBucket answers BucketNotEmpty."""
    bucket = yield core.buckets.create(ALICE, "mpu")
    upload = yield core.multipart.create(bucket, "big", PutAttrs(), initiator=ALICE)
    writer = core.multipart.new_part_writer(upload)
    writer.write(os.urandom(2000))
    result = yield writer.finish()
    part = yield core.multipart.commit_part(upload, 1, result, {})
    refs = [PartRef(part.part_number, part.etag)]

    def complete() -> Any:
        return core.multipart.complete(bucket, "big", upload.upload_id, refs).addCallback(lambda done: done.record)

    write, delete = yield _race_delete(core, hooked, bucket, scan, complete)
    assert write[0] == "ok"
    yield _assert_never_both(core, bucket, write, delete, "big")


@pytest_twisted.inlineCallbacks
def test_complete_multipart_after_the_delete_fails(core: Core) -> None:
    """An upload of a deleted bucket cannot be completed into it."""
    bucket = yield core.buckets.create(ALICE, "mpu-gone")
    upload = yield core.multipart.create(bucket, "big", PutAttrs(), initiator=ALICE)
    writer = core.multipart.new_part_writer(upload)
    writer.write(os.urandom(2000))
    result = yield writer.finish()
    part = yield core.multipart.commit_part(upload, 1, result, {})
    yield core.buckets.delete(ALICE, "mpu-gone")
    refs = [PartRef(part.part_number, part.etag)]
    outcome = yield _outcome(core.multipart.complete(bucket, "big", upload.upload_id, refs))
    assert outcome[0] == "error" and outcome[1] in ("NoSuchBucket", "NoSuchUpload")
    assert (yield _object_rows(core, bucket.bucket_id)) == []


@pytest.mark.parametrize("scan", [1, 2])
@pytest_twisted.inlineCallbacks
def test_copy_into_the_bucket_after_the_scan_fails_the_delete(core: Core, hooked: HookedStore, scan: int) -> None:
    """CopyObject landing its object after DeleteBucket's scan: same rule."""
    source_bucket = yield core.buckets.create(ALICE, "source")
    source = yield put_object(core, source_bucket, "src", os.urandom(3000))
    bucket = yield core.buckets.create(ALICE, "dest")

    def copy() -> Any:
        return core.copy_object(source, bucket, "copied", replace_metadata=None, tags=None, owner="alice")

    write, delete = yield _race_delete(core, hooked, bucket, scan, copy)
    assert write[0] == "ok"
    yield _assert_never_both(core, bucket, write, delete, "copied")


@pytest_twisted.inlineCallbacks
def test_copy_after_the_delete_fails(core: Core) -> None:
    source_bucket = yield core.buckets.create(ALICE, "source")
    source = yield put_object(core, source_bucket, "src", os.urandom(3000))
    bucket = yield core.buckets.create(ALICE, "dest")
    yield core.buckets.delete(ALICE, "dest")
    d = core.copy_object(source, bucket, "copied", replace_metadata=None, tags=None, owner="alice")
    assert (yield _outcome(d)) == ("error", "NoSuchBucket")
    assert (yield _object_rows(core, bucket.bucket_id)) == []


@pytest_twisted.inlineCallbacks
def test_create_upload_after_the_delete_fails(core: Core) -> None:
    """No upload (and so no parts) is left under a deleted bucket's id."""
    bucket = yield core.buckets.create(ALICE, "uploads")
    yield core.buckets.delete(ALICE, "uploads")
    outcome = yield _outcome(core.multipart.create(bucket, "k", PutAttrs(), initiator=ALICE))
    assert outcome == ("error", "NoSuchBucket")
    prefix = keys.uploads_prefix(bucket.bucket_id)
    assert (yield core.store.scan(prefix, prefix_end(prefix))) == []


@pytest.mark.parametrize("scan", [1, 2])
@pytest_twisted.inlineCallbacks
def test_upload_created_during_the_delete_is_aborted(core: Core, hooked: HookedStore, scan: int) -> None:
    """Uploads do not keep a bucket alive (AWS): one created while the bucket
    is being deleted does not stop it, and is aborted with the bucket."""
    bucket = yield core.buckets.create(ALICE, "uploads")
    made, delete = yield _race_delete(
        core, hooked, bucket, scan, lambda: core.multipart.create(bucket, "k", PutAttrs(), initiator=ALICE)
    )
    assert made[0] == "ok" and delete[0] == "ok"
    prefix = keys.uploads_prefix(bucket.bucket_id)
    assert (yield core.store.scan(prefix, prefix_end(prefix))) == []


# -- what must not fail ---------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_bucket_setting_changes_during_a_put_do_not_fail_it(core: Core) -> None:
    """Versioning and tag changes rewrite the bucket record while a PUT runs:
    the PUT (resolved before them) still succeeds."""
    bucket = yield core.buckets.create(ALICE, "settings")
    resolved = yield core.buckets.get(ALICE, "settings")
    yield core.set_bucket_tags(bucket, {"a": "1"})
    first = yield put_object(core, resolved, "k1", b"one")
    yield core.set_bucket_versioning(bucket, "Enabled")
    second = yield put_object(core, resolved, "k2", b"two")
    assert (first.key, second.key) == ("k1", "k2")
    assert sorted((yield _object_rows(core, bucket.bucket_id))) == ["k1", "k2"]


@pytest_twisted.inlineCallbacks
def test_a_fresh_bucket_costs_a_put_nothing_more(core: Core) -> None:
    """The revision a bucket is created, read or changed with is the one the
    record has: a PUT with it commits in one transaction and reads nothing
    (the guard is one more compare, no read; the new object key is assumed
    absent, core/newkeys.py)."""
    calls: list[str] = []

    class Counting:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def get(self, key: bytes) -> Any:
            calls.append("get " + key.decode(errors="replace").split("/")[1])
            return self.inner.get(key)

        def txn(self, compares: Any, ops: Any) -> Any:
            calls.append("txn")
            return self.inner.txn(compares, ops)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    core.objects._store = Counting(core.store)
    bkey = keys.bucket_key("org-a", None, "fresh")
    made = [core.buckets.create(ALICE, "fresh")]
    made += [lambda b: core.buckets.get(ALICE, "fresh"), lambda b: core.set_bucket_tags(b, {"a": "1"}),
             lambda b: core.set_bucket_versioning(b, "Enabled")]
    bucket = None
    for n, step in enumerate(made):
        bucket = yield (step if n == 0 else step(bucket))
        raw = yield core.store.get(bkey)
        assert bucket.revision == raw.mod_revision
        del calls[:]
        yield put_object(core, bucket, f"k{n}", b"x")
        assert calls == ["txn"], calls


@pytest_twisted.inlineCallbacks
def test_a_cached_bucket_still_writes(core: Core) -> None:
    """A bucket from the read cache (maybe a revision behind) is good for a
    write: the commit re-reads the record once and goes on."""
    bucket = yield core.buckets.create(ALICE, "cached")
    cached = yield core.buckets.find_for_read(ALICE, "cached")
    yield core.set_bucket_tags(bucket, {"a": "1"})
    written = yield put_object(core, cached, "k", b"x")
    assert written.key == "k"


@pytest_twisted.inlineCallbacks
def test_a_failed_delete_leaves_the_bucket_writable(core: Core, hooked: HookedStore) -> None:
    """A DeleteBucket that finds an object after marking the bucket unmarks it:
    the record is as it was (no deletion pending)."""
    bucket = yield core.buckets.create(ALICE, "kept")

    def racing_put() -> Any:
        return put_object(core, bucket, "k", b"x")

    hooked.on_scan(keys.objects_prefix(bucket.bucket_id), 1, racing_put)
    with pytest.raises(errors.BucketNotEmpty):
        yield core.buckets.delete(ALICE, "kept")
    raw = yield core.store.get(keys.bucket_key("org-a", None, "kept"))
    assert not records.decode_bucket(raw.value).deleting
    yield put_object(core, bucket, "k2", b"y")


@pytest_twisted.inlineCallbacks
def test_a_deletion_left_pending_does_not_block_writers(core: Core) -> None:
    """A DeleteBucket that died after marking the bucket (a crashed server)
    leaves the mark: the next write clears it and succeeds, and a later
    DeleteBucket of the then non-empty bucket answers BucketNotEmpty."""
    bucket = yield core.buckets.create(ALICE, "stuck")
    bkey = keys.bucket_key("org-a", None, "stuck")
    raw = yield core.store.get(bkey)
    marked = records.decode_bucket(raw.value)
    marked.deleting = True
    yield core.store.txn([], [Put(bkey, records.encode_bucket(marked))])
    written = yield put_object(core, bucket, "k", b"x")
    assert written.key == "k"
    raw = yield core.store.get(bkey)
    assert not records.decode_bucket(raw.value).deleting
    with pytest.raises(errors.BucketNotEmpty):
        yield core.buckets.delete(ALICE, "stuck")


@pytest_twisted.inlineCallbacks
def test_a_deletion_left_pending_is_finished_by_the_next_delete(core: Core) -> None:
    bucket = yield core.buckets.create(ALICE, "stuck")
    bkey = keys.bucket_key("org-a", None, "stuck")
    raw = yield core.store.get(bkey)
    marked = records.decode_bucket(raw.value)
    marked.deleting = True
    yield core.store.txn([], [Put(bkey, records.encode_bucket(marked))])
    yield core.buckets.delete(ALICE, "stuck")
    assert (yield core.store.get(bkey)) is None
    assert (yield _outcome(put_object(core, bucket, "k", b"x"))) == ("error", "NoSuchBucket")


@pytest_twisted.inlineCallbacks
def test_concurrent_deletes_of_one_bucket(core: Core) -> None:
    """Two DeleteBuckets of one empty bucket: one deletes it, the other finds
    it gone (NoSuchBucket); neither claims success for nothing."""
    yield core.buckets.create(ALICE, "twice")
    first = core.buckets.delete(ALICE, "twice")
    second = core.buckets.delete(ALICE, "twice")
    outcomes = [(yield _outcome(first)), (yield _outcome(second))]
    assert sorted(o[0] for o in outcomes) == ["error", "ok"]
    assert ("error", "NoSuchBucket") in outcomes


@pytest_twisted.inlineCallbacks
def test_non_empty_bucket_is_refused_without_a_write(core: Core) -> None:
    """The common BucketNotEmpty answer costs no write to the bucket record."""
    bucket = yield core.buckets.create(ALICE, "full")
    yield put_object(core, bucket, "k", b"x")
    bkey = keys.bucket_key("org-a", None, "full")
    before = yield core.store.get(bkey)
    with pytest.raises(errors.BucketNotEmpty):
        yield core.buckets.delete(ALICE, "full")
    assert (yield core.store.get(bkey)) == before


@pytest_twisted.inlineCallbacks
def test_many_racing_puts_and_a_delete(core: Core) -> None:
    """Puts and a DeleteBucket started together: whatever the interleaving,
    every acknowledged object is reachable, or the bucket is gone and
    nothing was acknowledged."""
    from twisted.internet.defer import DeferredList

    bucket = yield core.buckets.create(ALICE, "crowd")
    ops = [_outcome(put_object(core, bucket, f"k{i}", os.urandom(100))) for i in range(8)]
    ops.insert(4, _outcome(core.buckets.delete(ALICE, "crowd")))
    results = yield DeferredList(ops)
    outcomes = [r for _ok, r in results]
    delete = outcomes.pop(4)
    acked = [i for i, o in enumerate(outcomes) if o[0] == "ok"]
    stored = yield _object_rows(core, bucket.bucket_id)
    assert sorted(stored) == sorted(f"k{i}" for i in acked)
    if delete[0] == "ok":
        assert acked == []
    else:
        assert delete == ("error", "BucketNotEmpty") and acked
        again = yield core.buckets.get(ALICE, "crowd")
        assert again.bucket_id == bucket.bucket_id


def test_the_deletion_mark_is_stored_only_while_set() -> None:
    """Bucket records without a pending deletion are byte-for-byte as before
    (older servers read them unchanged); the mark round-trips; the revision
    is never stored (it is the record's own mod revision)."""
    bucket = Bucket("b", "id", "org-a", None, 1, 2, "alice", revision=7)
    plain = records.encode_bucket(bucket)
    assert b"deleting" not in plain and b"revision" not in plain and b"7" not in plain
    marked = records.decode_bucket(records.encode_bucket(Bucket("b", "id", "org-a", None, 1, 2, "alice", deleting=True)))
    assert marked.deleting and marked.revision == 0
    assert not records.decode_bucket(plain).deleting


class LostAnswerStore:
    """The real store, whose deletion of a bucket record fails with
    MetadataUnavailable after (``applied``) or instead of being applied: an
    etcd answer lost on the way back, or a store that refused it."""

    def __init__(self, inner: Any, applied: bool) -> None:
        self.inner = inner
        self.applied = applied

    def txn(self, compares: Any, ops: Any) -> Any:
        if not any(isinstance(op, Delete) and op.key.startswith(keys.BUCKETS) for op in ops):
            return self.inner.txn(compares, ops)

        def lost(_: Any) -> None:
            raise errors.MetadataUnavailable("the answer was lost")

        if self.applied:
            return self.inner.txn(compares, ops).addCallback(lost)
        return maybeDeferred(lost, None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("applied", [True, False], ids=["applied", "not applied"])
@pytest_twisted.inlineCallbacks
def test_a_deletion_whose_answer_was_lost(core: Core, applied: bool) -> None:
    """DeleteBucket's commit fails without an answer: if the store applied
    it, the bucket is gone, so DeleteBucket succeeds and finishes its work
    (the uploads aborted, the usage rows dropped) instead of answering 503
    and leaving them (a retry then said NoSuchBucket); if not, it fails and
    the bucket stays, uploads and all."""
    bucket = yield core.buckets.create(ALICE, "lost-answer")
    upload = yield core.multipart.create(bucket, "k", PutAttrs(), initiator=ALICE)
    writer = core.multipart.new_part_writer(upload)
    writer.write(os.urandom(2000))
    yield core.multipart.commit_part(upload, 1, (yield writer.finish()), {})
    core.buckets._store = LostAnswerStore(core.store, applied)
    try:
        outcome = yield _outcome(core.buckets.delete(ALICE, bucket.name))
    except errors.MetadataUnavailable:
        outcome = ("failed", None)
    core.buckets._store = core.store
    prefix = keys.uploads_prefix(bucket.bucket_id)
    uploads = yield core.store.scan(prefix, prefix_end(prefix))
    usage = BucketScope.of(bucket).prefix
    usage_rows = yield core.store.scan(usage, prefix_end(usage))
    if applied:
        assert outcome == ("ok", None)
        assert (yield _outcome(core.buckets.get(ALICE, bucket.name))) == ("error", "NoSuchBucket")
        assert (uploads, usage_rows) == ([], [])
    else:
        assert outcome[0] == "failed"
        again = yield core.buckets.get(ALICE, bucket.name)
        assert again.bucket_id == bucket.bucket_id
        assert len(uploads) == 1 and usage_rows

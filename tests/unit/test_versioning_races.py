"""Writes and deletes racing a bucket's settings or each other, in the core.

A request resolves its bucket when it starts and commits when its body has
arrived; versioning may have been turned on in between.  Its commit must
follow the bucket as stored then: the object it replaces becomes a
noncurrent version, as under the settings the client was told are in force.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred

from lightningstor import errors
from lightningstor.core import keys
from lightningstor.core.types import Principal
from tests.unit.core_helpers import put_object, read_object

ALICE = Principal("alice", "org-a")


@pytest.mark.parametrize("before", ["Disabled", "Suspended"])
@pytest_twisted.inlineCallbacks
def test_a_put_that_read_the_bucket_before_versioning_was_enabled_keeps_the_old_version(
    make_core: Any, before: str
) -> Any:
    core = make_core(fsync=False, chunk_size=4096, inline_threshold=100)
    bucket = yield core.buckets.create(ALICE, "bkt")
    if before == "Suspended":
        bucket = yield core.set_bucket_versioning(bucket, "Suspended")
    old = yield put_object(core, bucket, "k", b"A" * 5000)
    stale = bucket  # what a PUT resolved before its body arrived
    yield core.set_bucket_versioning(bucket, "Enabled")  # acknowledged meanwhile
    new = yield put_object(core, stale, "k", b"B" * 5000)
    assert new.version_id is not None  # written under Enabled rules
    fresh = yield core.buckets.get(ALICE, "bkt")
    page = yield core.list_object_versions(fresh, max_keys=100)
    assert [(e.version_id is None, e.size) for e in page.entries] == [(False, 5000), (True, 5000)]
    kept = yield core.objects.head(fresh, "k", "null")
    assert (yield read_object(core, kept)) == b"A" * 5000
    assert old.version_id is None


@pytest_twisted.inlineCallbacks
def test_an_expiry_decided_while_suspended_keeps_the_null_version_once_enabled(make_core: Any) -> Any:
    """The lifecycle walk read the bucket while Suspended and expires the
    current null version; versioning is Enabled before its delete lands:
    the null version stays (a noncurrent version behind a delete marker)."""
    core = make_core(fsync=False, chunk_size=4096, inline_threshold=100)
    bucket = yield core.buckets.create(ALICE, "bkt")
    bucket = yield core.set_bucket_versioning(bucket, "Suspended")
    yield put_object(core, bucket, "k", b"A" * 5000)
    kv = yield core.store.get(keys.object_key(bucket.bucket_id, "k"))
    stale = bucket
    yield core.set_bucket_versioning(bucket, "Enabled")
    yield core.objects.delete(stale, "k", owner="", if_revision=kv.mod_revision)
    fresh = yield core.buckets.get(ALICE, "bkt")
    page = yield core.list_object_versions(fresh, max_keys=100)
    assert sorted((e.delete_marker, e.version_id is None) for e in page.entries) == [(False, True), (True, False)]


@pytest_twisted.inlineCallbacks
def test_a_plain_delete_that_read_the_bucket_unversioned_leaves_a_marker_once_enabled(make_core: Any) -> Any:
    core = make_core(fsync=False, chunk_size=4096, inline_threshold=100)
    bucket = yield core.buckets.create(ALICE, "bkt")
    yield put_object(core, bucket, "k", b"A" * 5000)
    stale = bucket
    yield core.set_bucket_versioning(bucket, "Enabled")
    outcome = yield core.objects.delete(stale, "k")
    assert outcome.delete_marker
    fresh = yield core.buckets.get(ALICE, "bkt")
    kept = yield core.objects.head(fresh, "k", "null")
    assert (yield read_object(core, kept)) == b"A" * 5000


@pytest_twisted.inlineCallbacks
def test_a_delete_of_a_paged_version_that_loses_the_race_answers_as_deleted(make_core: Any) -> Any:
    """Two deletes of one paged version (its chunk list in manifest pages):
    the loser finds the pages gone and reads again, rather than failing."""
    core = make_core(fsync=False, chunk_size=1024, inline_threshold=100)
    core.objects.chunks_per_record = 3
    bucket = yield core.buckets.create(ALICE, "bkt")
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    v1 = yield put_object(core, bucket, "k", b"x" * 8000)
    real_scan = core.store.scan
    gate: Deferred[None] = Deferred()
    held = []

    def scan(start: bytes, end: bytes, limit: int = 0) -> Any:
        if not held and start.startswith(keys.MANIFESTS):
            held.append(True)  # the first delete waits before loading its manifest
            return gate.addCallback(lambda _: real_scan(start, end, limit))
        return real_scan(start, end, limit)

    core.store.scan = scan
    slow = core.objects.delete(bucket, "k", v1.version_id)
    yield core.objects.delete(bucket, "k", v1.version_id)  # the other one wins
    gate.callback(None)
    outcome = yield slow
    assert outcome.version_id == v1.version_id
    with pytest.raises(errors.S3Error):  # NoSuchVersion / NoSuchKey
        yield core.objects.head(bucket, "k", v1.version_id)

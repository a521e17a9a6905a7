"""The bucket read cache (core/buckets.py): object reads and listings skip
the bucket record's read for a second; everything else reads it.  On a
store with an exact point-read cache (SQLite) a cached bucket is checked
against its record, answered from memory, on every use."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted

from lightningstor import errors
from lightningstor.core.access import OBJECTS_GET, OBJECTS_LIST, OBJECTS_PUT
from lightningstor.core.service import Core
from lightningstor.core.types import Principal, Versioning
from lightningstor.interfaces.metadata import has_point_read_cache

ALICE = Principal("alice", "org-a")
BOB = Principal("bob", "org-a", project_id="p1")


class CountingStore:
    """Counts the reads that go to the store.  Its class declares no
    IPointReadCache (as the etcd store's): the bucket cache trusts its clock."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gets = 0

    def get(self, key: bytes) -> Any:
        self.gets += 1
        return self.inner.get(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def core(make_core: Any) -> Core:
    made: Core = make_core(fsync=False)
    return made


@pytest.fixture
def clock(core: Core) -> list[float]:
    now = [1000.0]
    core.buckets._clock = lambda: now[0]
    return now


@pytest_twisted.inlineCallbacks
def test_reads_are_served_from_the_cache_for_a_second(core: Core, clock: list[float]) -> None:
    yield core.buckets.create(ALICE, "hot")
    counting = CountingStore(core.store)
    core.buckets._store = counting
    core.buckets._cached_reads = has_point_read_cache(counting)  # as if made with it
    first = yield core.access.bucket(ALICE, "hot", OBJECTS_GET, "k")
    assert counting.gets == 1
    clock[0] += 0.5
    again = yield core.access.bucket(ALICE, "hot", OBJECTS_LIST)
    assert counting.gets == 1 and again.bucket_id == first.bucket_id
    again.versioning = Versioning.ENABLED  # a caller's change stays its own
    cached = yield core.access.bucket(ALICE, "hot", OBJECTS_GET, "k")
    assert cached.versioning is Versioning.DISABLED
    yield core.access.bucket(ALICE, "hot", OBJECTS_PUT, "k")  # writes always read
    assert counting.gets == 2
    clock[0] += 1.0
    yield core.access.bucket(ALICE, "hot", OBJECTS_GET, "k")
    assert counting.gets == 3


@pytest_twisted.inlineCallbacks
def test_changes_through_this_process_clear_it(core: Core, clock: list[float]) -> None:
    bucket = yield core.buckets.create(ALICE, "conf")
    yield core.access.bucket(ALICE, "conf", OBJECTS_GET, "k")
    yield core.set_bucket_versioning(bucket, "Enabled")
    seen = yield core.access.bucket(ALICE, "conf", OBJECTS_GET, "k")
    assert seen.versioning is Versioning.ENABLED
    yield core.buckets.delete(ALICE, "conf")
    with pytest.raises(errors.NoSuchBucket):
        yield core.access.bucket(ALICE, "conf", OBJECTS_GET, "k")


@pytest_twisted.inlineCallbacks
def test_absent_buckets_and_scopes_are_not_mixed_up(core: Core, clock: list[float]) -> None:
    """A miss is not cached (a bucket is usable as soon as it is created),
    and each scope resolves its own: a project's bucket hides the org's."""
    with pytest.raises(errors.NoSuchBucket):
        yield core.access.bucket(ALICE, "late", OBJECTS_GET, "k")
    created = yield core.buckets.create(ALICE, "late")
    found = yield core.access.bucket(ALICE, "late", OBJECTS_GET, "k")
    assert found.bucket_id == created.bucket_id
    org_level = yield core.buckets.find_for_read(BOB, "late")
    assert org_level.bucket_id == created.bucket_id
    own = yield core.buckets.create(BOB, "late")  # hides the org's from BOB at once
    assert (yield core.buckets.find_for_read(BOB, "late")).bucket_id == own.bucket_id
    assert (yield core.buckets.find_for_read(ALICE, "late")).bucket_id == created.bucket_id


@pytest_twisted.inlineCallbacks
def test_on_an_exact_store_a_change_by_another_process_is_seen_at_once(
    core: Core, clock: list[float], tmp_path: Any
) -> None:
    """A second store on the same file stands for another worker: its change
    of the bucket (versioning here; a policy or Block Public Access the same
    way) is seen by the next object read, within the second, and a cached
    bucket that did not change is checked without a thread."""
    from twisted.internet import reactor

    from lightningstor.core import keys, records
    from lightningstor.interfaces.metadata import Put
    from lightningstor.metadata.sqlite import SqliteMetadataStore

    bucket = yield core.buckets.create(ALICE, "shared")
    first = yield core.access.bucket(ALICE, "shared", OBJECTS_GET, "k")
    assert first.versioning is Versioning.DISABLED
    check = core.access.bucket(ALICE, "shared", OBJECTS_GET, "k")
    assert check.called  # the record was answered from memory: no thread
    other = SqliteMetadataStore(core.store.path, reactor)
    try:
        key = keys.bucket_key(bucket.org_id, bucket.project_id, bucket.name)
        kv = yield other.get(key)
        changed = records.decode_bucket(kv.value)
        changed.versioning = Versioning.ENABLED
        yield other.txn([], [Put(key, records.encode_bucket(changed))])
        clock[0] += 0.1
        seen = yield core.access.bucket(ALICE, "shared", OBJECTS_GET, "k")
        assert seen.versioning is Versioning.ENABLED
    finally:
        yield other.close()


@pytest_twisted.inlineCallbacks
def test_a_bucket_row_is_decoded_once_per_revision(core: Core, monkeypatch: Any) -> None:
    """Writes resolve their bucket afresh, every time; the row read back
    under the same revision is not decoded again, a changed row is, and a
    caller's change to what it got never reaches the next caller."""
    from lightningstor.core import records

    bucket = yield core.buckets.create(ALICE, "decoded")
    decodes: list[bytes] = []
    real = records.decode_bucket

    def counting(value: bytes) -> Any:
        decodes.append(value)
        return real(value)

    monkeypatch.setattr(records, "decode_bucket", counting)
    first = yield core.access.bucket(ALICE, "decoded", OBJECTS_PUT, "k")
    first.versioning = Versioning.ENABLED  # a caller's change stays its own
    second = yield core.access.bucket(ALICE, "decoded", OBJECTS_PUT, "k")
    assert len(decodes) == 1
    assert second.versioning is Versioning.DISABLED and second.revision == first.revision
    yield core.set_bucket_versioning(bucket, "Enabled")
    del decodes[:]
    third = yield core.access.bucket(ALICE, "decoded", OBJECTS_PUT, "k")
    assert len(decodes) == 1
    assert third.versioning is Versioning.ENABLED and third.revision > first.revision
    yield core.access.bucket(ALICE, "decoded", OBJECTS_PUT, "k")
    assert len(decodes) == 1


@pytest_twisted.inlineCallbacks
def test_on_an_exact_store_a_project_bucket_made_by_another_process_hides_the_org_one_at_once(
    core: Core, clock: list[float]
) -> None:
    """A project caller whose cached entry resolved a name to its org's
    bucket: a project bucket of that name created through another worker
    (a second store on the same file) hides the org's from the next read,
    within the second, as it does when created through this one."""
    from dataclasses import replace

    from twisted.internet import reactor

    from lightningstor.core import keys, records
    from lightningstor.interfaces.metadata import Put
    from lightningstor.metadata.sqlite import SqliteMetadataStore

    org_bucket = yield core.buckets.create(ALICE, "shadowed")
    first = yield core.buckets.find_for_read(BOB, "shadowed")
    assert first.bucket_id == org_bucket.bucket_id
    other = SqliteMetadataStore(core.store.path, reactor)
    try:
        project_bucket = replace(org_bucket, bucket_id="p1-own-bucket", project_id="p1")
        key = keys.bucket_key("org-a", "p1", "shadowed")
        yield other.txn([], [Put(key, records.encode_bucket(project_bucket))])
        clock[0] += 0.1
        seen = yield core.buckets.find_for_read(BOB, "shadowed")
        assert seen.bucket_id == "p1-own-bucket"
        org_seen = yield core.buckets.find_for_read(ALICE, "shadowed")
        assert org_seen.bucket_id == org_bucket.bucket_id
    finally:
        yield other.close()

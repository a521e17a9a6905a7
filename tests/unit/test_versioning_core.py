"""Versioning rules of the core, on real plugins (SQLite store, local backend) in-process.

Runs on the real reactor through pytest-twisted (``--reactor=default`` from
setup.cfg).  Small chunks (4 KiB) make multi-chunk versions cheap, so chunk
bookkeeping is checked on every path that keeps or frees a version.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks
from twisted.internet.task import deferLater

from lightningstor import errors
from lightningstor.core import chunkindex, keys, records
from lightningstor.core.listing import list_object_versions, list_objects
from lightningstor.core.service import Core
from lightningstor.core.types import Bucket, ObjectRecord, Principal, Versioning
from lightningstor.core.versions import new_version_id, parse_version_id
from lightningstor.interfaces.metadata import prefix_end
from tests.unit.core_helpers import put_object as _put
from tests.unit.core_helpers import read_object as _read

ALICE = Principal("alice", "org-a")


@pytest.fixture
def core(make_core):
    return make_core(fsync=False, chunk_size=4096, piece_size=1024, inline_threshold=512)


class CountingStore:
    """Wraps a store to record the ranges scanned (proves which key spaces a listing reads)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.rows = 0
        self.starts: list[bytes] = []

    def scan(self, start: bytes, end: bytes, limit: int = 0) -> Any:
        self.starts.append(start)

        def count(rows: list[Any]) -> list[Any]:
            self.rows += len(rows)
            return rows

        return self.inner.scan(start, end, limit).addCallback(count)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@inlineCallbacks
def _bucket(core: Core, name: str, status: str | None) -> Any:
    bucket = yield core.buckets.create(ALICE, name)
    if status is not None:
        bucket = yield core.set_bucket_versioning(bucket, status)
    return bucket


@inlineCallbacks
def _versions(core: Core, bucket: Bucket, **kw: Any) -> Any:
    page = yield core.list_object_versions(bucket, **kw)
    return [(e.key, e.version_id, e.is_latest, e.delete_marker) for e in page.entries]


@inlineCallbacks
def _index(core: Core) -> Any:
    """chunk id -> owner record key, from the chunk index."""
    rows = yield core.store.scan(keys.CHUNKS, prefix_end(keys.CHUNKS))
    return {kv.key[len(keys.CHUNKS):].decode(): kv.value for kv in rows}


@inlineCallbacks
def _stored_chunks(core: Core, expect: set[str]) -> Any:
    """The backend's chunk ids, waiting briefly for best-effort deletions to settle."""
    stored: set[str] = set()
    for _ in range(100):
        stored = {i.chunk_id for i in (yield core.backend.list_chunks())}
        if stored == expect:
            break
        yield deferLater(reactor, 0.01, lambda: None)
    return stored


def _ids(*recs: ObjectRecord) -> set[str]:
    return {c.chunk_id for r in recs for c in r.chunks}


def test_version_ids_are_opaque_url_safe_and_carry_the_sequence():
    """Ids are 32 base32 characters (never a leading '-'), unique, and parse back to their sequence."""
    ids = {new_version_id(7) for _ in range(200)}
    assert len(ids) == 200
    for vid in ids:
        assert len(vid) == 32
        assert set(vid) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        assert parse_version_id(vid).sequence == 7
    assert parse_version_id("null").is_null
    for bad in ("", "abc", "x" * 32, new_version_id(1).lower(), new_version_id(1)[:-1] + "!"):
        with pytest.raises(errors.InvalidArgument):
            parse_version_id(bad)


@pytest_twisted.inlineCallbacks
def test_enabled_keeps_every_version_newest_first(core):
    """Each PUT makes a new current version; older ones stay readable by id and list newest first."""
    bucket = yield _bucket(core, "enabled", "Enabled")
    puts = []
    for i in range(4):
        rec = yield _put(core, bucket, "k", f"v{i}".encode() * 3000)
        puts.append(rec)
    assert len({r.version_id for r in puts}) == 4 and all(r.version_id for r in puts)
    current = yield core.objects.head(bucket, "k")
    assert current.version_id == puts[-1].version_id
    for rec in puts:
        got = yield core.objects.head(bucket, "k", rec.version_id)
        assert (yield _read(core, got)) == (yield _read(core, rec))
    listed = yield _versions(core, bucket)
    assert listed == [("k", r.version_id, r is puts[-1], False) for r in reversed(puts)]
    # Noncurrent versions live outside objects/: one current record only.
    rows = yield core.store.scan(keys.objects_prefix(bucket.bucket_id), prefix_end(keys.objects_prefix(bucket.bucket_id)))
    assert len(rows) == 1


@pytest_twisted.inlineCallbacks
def test_unknown_and_malformed_version_ids(core):
    """A well-formed unknown id is NoSuchVersion; a malformed one InvalidArgument."""
    bucket = yield _bucket(core, "unknown", "Enabled")
    rec = yield _put(core, bucket, "k", b"x")
    with pytest.raises(errors.NoSuchVersion):
        yield core.objects.head(bucket, "k", new_version_id(rec.sequence))  # same sequence, other id
    with pytest.raises(errors.NoSuchVersion):
        yield core.objects.head(bucket, "k", "null")
    with pytest.raises(errors.InvalidArgument):
        yield core.objects.head(bucket, "k", "not-a-version")


@pytest_twisted.inlineCallbacks
def test_pre_versioning_object_is_the_null_version(core):
    """An object written before versioning is ``null``: kept on overwrite, readable and deletable by 'null'."""
    bucket = yield _bucket(core, "prenull", None)
    old = yield _put(core, bucket, "k", b"old" * 2000)
    assert old.version_id is None
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    new = yield _put(core, bucket, "k", b"new" * 2000)
    assert new.version_id is not None
    null = yield core.objects.head(bucket, "k", "null")
    assert (yield _read(core, null)) == b"old" * 2000
    assert (yield _versions(core, bucket)) == [("k", new.version_id, True, False), ("k", None, False, False)]
    outcome = yield core.objects.delete(bucket, "k", "null")
    assert (outcome.version_id, outcome.delete_marker) == ("null", False)
    assert (yield _versions(core, bucket)) == [("k", new.version_id, True, False)]
    current = yield core.objects.find(bucket, "k")
    assert current.null_sequence is None
    assert (yield _stored_chunks(core, _ids(new))) == _ids(new)


@pytest_twisted.inlineCallbacks
def test_null_version_stays_findable_when_versions_above_it_change(core):
    """Deleting the current version promotes the next one; the noncurrent null version stays addressable."""
    bucket = yield _bucket(core, "nullptr", None)
    yield _put(core, bucket, "k", b"null data")
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    v1 = yield _put(core, bucket, "k", b"one")
    v2 = yield _put(core, bucket, "k", b"two")
    yield core.objects.delete(bucket, "k", v2.version_id)
    assert (yield core.objects.head(bucket, "k")).version_id == v1.version_id
    assert (yield _read(core, (yield core.objects.head(bucket, "k", "null")))) == b"null data"
    bucket = yield core.set_bucket_versioning(bucket, "Suspended")
    yield _put(core, bucket, "k", b"new null")  # must replace the old null, not add a second
    listed = yield _versions(core, bucket)
    assert [v for _k, v, _l, _d in listed] == [None, v1.version_id]
    assert (yield _read(core, (yield core.objects.head(bucket, "k", "null")))) == b"new null"


@pytest_twisted.inlineCallbacks
def test_suspended_put_replaces_only_the_null_version(core):
    """While Suspended, a PUT writes 'null', replacing (and freeing) an older null version but keeping real versions."""
    bucket = yield _bucket(core, "suspended", None)
    first_null = yield _put(core, bucket, "k", os.urandom(9000))
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    v1 = yield _put(core, bucket, "k", os.urandom(9000))
    bucket = yield core.set_bucket_versioning(bucket, "Suspended")
    second_null = yield _put(core, bucket, "k", os.urandom(9000))
    assert second_null.version_id is None
    assert (yield _versions(core, bucket)) == [("k", None, True, False), ("k", v1.version_id, False, False)]
    assert (yield _stored_chunks(core, _ids(v1, second_null))) == _ids(v1, second_null)
    third_null = yield _put(core, bucket, "k", os.urandom(9000))  # current null replaced in place
    assert (yield _versions(core, bucket)) == [("k", None, True, False), ("k", v1.version_id, False, False)]
    assert (yield _stored_chunks(core, _ids(v1, third_null))) == _ids(v1, third_null)
    assert not _ids(first_null, second_null) & _ids(v1, third_null)


@pytest_twisted.inlineCallbacks
def test_suspended_delete_writes_a_null_marker(core):
    """DELETE while Suspended replaces the null version with a null delete marker; real versions stay."""
    bucket = yield _bucket(core, "sdel", "Enabled")
    v1 = yield _put(core, bucket, "k", os.urandom(5000))
    bucket = yield core.set_bucket_versioning(bucket, "Suspended")
    null = yield _put(core, bucket, "k", os.urandom(5000))
    outcome = yield core.objects.delete(bucket, "k")
    assert (outcome.version_id, outcome.delete_marker) == ("null", True)
    assert (yield _versions(core, bucket)) == [("k", None, True, True), ("k", v1.version_id, False, False)]
    assert (yield _stored_chunks(core, _ids(v1))) == _ids(v1)
    assert not _ids(null) & (yield _stored_chunks(core, _ids(v1)))


@pytest_twisted.inlineCallbacks
def test_delete_marker_hides_then_deleting_it_restores(core):
    """A delete marker makes the key 404 (with marker headers), 405 by its id; removing it restores the object."""
    bucket = yield _bucket(core, "marker", "Enabled")
    v1 = yield _put(core, bucket, "k", b"keep me")
    outcome = yield core.objects.delete(bucket, "k")
    assert outcome.delete_marker and outcome.version_id not in (None, "null", v1.version_id)
    with pytest.raises(errors.NoSuchKey) as e:
        yield core.objects.head(bucket, "k")
    assert e.value.headers == {"x-amz-delete-marker": "true", "x-amz-version-id": outcome.version_id}
    with pytest.raises(errors.MethodNotAllowed) as e2:
        yield core.objects.head(bucket, "k", outcome.version_id)
    assert e2.value.headers["x-amz-delete-marker"] == "true"
    assert "Last-Modified" in e2.value.headers
    page = yield list_objects(core.store, bucket.bucket_id)
    assert page.entries == []
    removed = yield core.objects.delete(bucket, "k", outcome.version_id)
    assert (removed.version_id, removed.delete_marker) == (outcome.version_id, True)
    back = yield core.objects.head(bucket, "k")
    assert back.version_id == v1.version_id
    assert (yield _versions(core, bucket)) == [("k", v1.version_id, True, False)]


@pytest_twisted.inlineCallbacks
def test_markers_are_written_even_for_missing_keys_and_stack(core):
    """In a versioned bucket DELETE of a missing key still writes a marker; repeated deletes stack markers."""
    bucket = yield _bucket(core, "stack", "Enabled")
    yield _put(core, bucket, "k", b"x")
    for _ in range(3):
        yield core.objects.delete(bucket, "k")
    yield core.objects.delete(bucket, "ghost")
    listed = yield _versions(core, bucket)
    assert [(k, dm) for k, _v, _l, dm in listed] == [("ghost", True), ("k", True), ("k", True), ("k", True), ("k", False)]
    assert [latest for _k, _v, latest, _dm in listed] == [True, True, False, False, False]


@pytest_twisted.inlineCallbacks
def test_chunks_freed_exactly_when_a_version_is_permanently_deleted(core):
    """Every version's chunks stay indexed (hint: the object key) until that version is deleted."""
    bucket = yield _bucket(core, "chunks", "Enabled")
    v = []
    for _ in range(3):
        rec = yield _put(core, bucket, "k", os.urandom(10_000))  # 3 chunks each
        v.append(rec)
    yield core.objects.delete(bucket, "k")  # marker: frees nothing
    assert (yield _stored_chunks(core, _ids(*v))) == _ids(*v)
    index = yield _index(core)
    assert set(index) == _ids(*v)
    for rec in v:  # all noncurrent now: the hints still lead there, unchanged
        owner = keys.version_key(bucket.bucket_id, "k", rec.sequence)
        assert all(chunkindex.names_holder(index[c.chunk_id], owner) for c in rec.chunks)
        for c in rec.chunks:
            assert (yield chunkindex.still_referenced(core.store, c.chunk_id, index[c.chunk_id]))
    yield core.objects.delete(bucket, "k", v[1].version_id)  # a middle, noncurrent version
    assert (yield _stored_chunks(core, _ids(v[0], v[2]))) == _ids(v[0], v[2])
    assert set((yield _index(core))) == _ids(v[0], v[2])
    listed = yield _versions(core, bucket)
    marker_id = listed[0][1]
    yield core.objects.delete(bucket, "k", marker_id)  # v2 becomes current again
    index = yield _index(core)
    assert all(chunkindex.names_holder(index[c.chunk_id], keys.object_key(bucket.bucket_id, "k")) for c in v[2].chunks)
    for c in v[2].chunks:
        assert (yield chunkindex.still_referenced(core.store, c.chunk_id, index[c.chunk_id]))
    yield core.objects.delete(bucket, "k", v[2].version_id)
    yield core.objects.delete(bucket, "k", v[0].version_id)
    assert (yield _stored_chunks(core, set())) == set()
    assert (yield _index(core)) == {}
    assert (yield _versions(core, bucket)) == []
    assert (yield core.objects.find(bucket, "k")) is None


@pytest_twisted.inlineCallbacks
def test_unversioned_delete_and_overwrite_unchanged(core):
    """Without versioning there is no history: overwrite and delete free the old chunks and leave no version records."""
    bucket = yield _bucket(core, "plain", None)
    a = yield _put(core, bucket, "k", os.urandom(9000))
    b = yield _put(core, bucket, "k", os.urandom(9000))
    assert b.version_id is None and b.sequence == 0
    assert (yield _stored_chunks(core, _ids(b))) == _ids(b)
    assert not _ids(a) & _ids(b)
    outcome = yield core.objects.delete(bucket, "k")
    assert (outcome.version_id, outcome.delete_marker) == (None, False)
    assert (yield _stored_chunks(core, set())) == set()
    rows = yield core.store.scan(keys.VERSIONS, prefix_end(keys.VERSIONS))
    assert rows == []


@pytest_twisted.inlineCallbacks
def test_stale_bucket_view_never_drops_history(core):
    """A write carrying a pre-versioning view of the bucket keeps the key's
    versions: its commit follows the bucket as stored (Enabled), so it
    becomes a new version, and a delete with that view leaves a marker."""
    stale = yield _bucket(core, "stale", None)
    enabled = yield core.set_bucket_versioning(stale, "Enabled")
    v1 = yield _put(core, enabled, "k", os.urandom(6000))
    late = yield _put(core, stale, "k", os.urandom(6000))  # e.g. a PUT that started before enabling
    assert late.version_id is not None
    assert (yield _versions(core, enabled)) == [("k", late.version_id, True, False), ("k", v1.version_id, False, False)]
    yield core.objects.delete(stale, "k")
    listed = yield _versions(core, enabled)
    assert [dm for _k, _v, _l, dm in listed] == [True, False, False]
    assert [v for _k, v, _l, _dm in listed][1:] == [late.version_id, v1.version_id]
    assert (yield _stored_chunks(core, _ids(v1, late))) == _ids(v1, late)


@pytest_twisted.inlineCallbacks
def test_concurrent_writers_and_deleters_keep_consistent_history(core):
    """Racing PUTs all become versions with distinct sequences; racing version deletes leave a consistent key."""
    bucket = yield _bucket(core, "race", "Enabled")
    results = yield DeferredList([_put(core, bucket, "k", os.urandom(6000)) for _ in range(8)], consumeErrors=True)
    assert all(ok for ok, _ in results)
    recs = [r for _, r in results]
    assert len({r.sequence for r in recs}) == 8
    listed = yield _versions(core, bucket)
    assert {v for _k, v, _l, _d in listed} == {r.version_id for r in recs}
    current = yield core.objects.head(bucket, "k")
    assert current.sequence == max(r.sequence for r in recs)
    assert set((yield _index(core))) == _ids(*recs)
    # Delete half the versions (the current one included) while new ones arrive.
    doomed = recs[::2]
    ops = [core.objects.delete(bucket, "k", r.version_id) for r in doomed]
    ops += [_put(core, bucket, "k", os.urandom(6000)) for _ in range(3)]
    results = yield DeferredList(ops, consumeErrors=True)
    assert all(ok for ok, _ in results), [r for ok, r in results if not ok]
    added = [r for _, r in results[len(doomed):]]
    survivors = [r for r in recs if r not in doomed] + added
    listed = yield _versions(core, bucket)
    assert sorted(v for _k, v, _l, _d in listed) == sorted(r.version_id for r in survivors)
    seqs = [parse_version_id(v).sequence for _k, v, _l, _d in listed]
    assert seqs == sorted(seqs, reverse=True) and listed[0][2] and not any(x[2] for x in listed[1:])
    assert set((yield _index(core))) == _ids(*survivors)
    assert (yield _stored_chunks(core, _ids(*survivors))) == _ids(*survivors)


@pytest_twisted.inlineCallbacks
def test_listing_skips_markers_and_marker_only_prefixes(core):
    """ListObjects hides keys whose current version is a marker, and prefixes holding only markers."""
    bucket = yield _bucket(core, "hide", "Enabled")
    for k in ["a", "b", "dir/x", "dir/y", "gone/1", "gone/2", "z"]:
        yield _put(core, bucket, k, b"1")
    for k in ["b", "dir/x", "gone/1", "gone/2"]:
        yield core.objects.delete(bucket, k)
    flat = yield list_objects(core.store, bucket.bucket_id)
    assert [e.key for e in flat.entries] == ["a", "dir/y", "z"]
    tree = yield list_objects(core.store, bucket.bucket_id, delimiter="/")
    assert ([e.key for e in tree.entries], tree.common_prefixes) == (["a", "z"], ["dir/"])
    seen: list[str] = []
    after = None
    for _ in range(10):
        page = yield list_objects(core.store, bucket.bucket_id, delimiter="/", after=after, max_keys=1)
        seen += [e.key for e in page.entries] + page.common_prefixes
        if not page.is_truncated:
            break
        after = page.next_marker
    assert seen == ["a", "dir/", "z"]


@pytest_twisted.inlineCallbacks
def test_old_versions_do_not_touch_current_listing(core):
    """Listing current objects never scans the noncurrent key space, and the delimiter seek still works."""
    bucket = yield _bucket(core, "fast", "Enabled")
    for d in range(3):
        for i in range(40):
            for _ in range(2):
                yield _put(core, bucket, f"d{d}/k{i:03d}", b"x")
    counting = CountingStore(core.store)
    result = yield list_objects(counting, bucket.bucket_id, delimiter="/")
    assert result.common_prefixes == ["d0/", "d1/", "d2/"]
    assert all(s.startswith(keys.objects_prefix(bucket.bucket_id)) for s in counting.starts)
    assert counting.rows <= 3 * 32, counting.rows  # one small batch per prefix, not all 120 keys
    flat = CountingStore(core.store)
    result = yield list_objects(flat, bucket.bucket_id)
    assert len(result.entries) == 120 and flat.rows == 120


@pytest_twisted.inlineCallbacks
def test_version_listing_pages_with_key_and_version_markers(core):
    """Pages of every size, resumed with NextKeyMarker/NextVersionIdMarker, give the full listing once, in order."""
    bucket = yield _bucket(core, "vpages", None)
    yield _put(core, bucket, "a", b"null")  # a null version under later ones
    bucket = yield core.set_bucket_versioning(bucket, "Enabled")
    for k in ["a", "a", "b", "c/1", "c/1", "c/2", "d\u00e9", "d\U0001f600", "e"]:
        yield _put(core, bucket, k, b"v")
    yield core.objects.delete(bucket, "b")
    yield core.objects.delete(bucket, "e")
    full = yield _versions(core, bucket)
    keys_order = [k for k, *_ in full]
    assert keys_order == sorted(keys_order, key=lambda s: s.encode())
    assert full[2] == ("a", None, False, False)
    for size in range(1, 6):
        for delimiter in (None, "/"):
            seen: list[Any] = []
            km = vm = None
            for _ in range(50):
                page = yield list_object_versions(core.store, bucket.bucket_id, key_marker=km, version_id_marker=vm,
                                                  max_keys=size, delimiter=delimiter)
                assert len(page.entries) + len(page.common_prefixes) <= size
                items = [(e.key, (e.key, e.version_id, e.is_latest, e.delete_marker)) for e in page.entries]
                items += [(p, ("prefix", p)) for p in page.common_prefixes]
                items.sort(key=lambda x: x[0].encode())  # stable: a key's versions keep their order
                seen += [item for _k, item in items]
                if not page.is_truncated:
                    break
                km, vm = page.next_marker, page.next_version_id_marker
            if delimiter is None:
                assert seen == full, size
            else:
                expect = [x for x in full if not x[0].startswith("c/")]
                expect.insert(next(i for i, x in enumerate(expect) if x[0] > "c"), ("prefix", "c/"))
                assert seen == expect, size


@pytest_twisted.inlineCallbacks
def test_set_tags_is_metadata_only_and_per_version(core):
    """Tagging rewrites one version's record: chunks, ETag, Last-Modified and other versions stay as they were."""
    bucket = yield _bucket(core, "tags", "Enabled")
    v1 = yield _put(core, bucket, "k", os.urandom(9000))
    v2 = yield _put(core, bucket, "k", os.urandom(9000))
    before = yield _index(core)
    tagged = yield core.objects.set_tags(bucket, "k", v1.version_id, {"a": "1"})
    assert (tagged.chunks, tagged.etag, tagged.created_at) == (v1.chunks, v1.etag, v1.created_at)
    assert (yield core.objects.head(bucket, "k", v1.version_id)).tags == {"a": "1"}
    assert (yield core.objects.head(bucket, "k")).tags == {}
    yield core.objects.set_tags(bucket, "k", None, {"b": "2"})
    assert (yield core.objects.head(bucket, "k", v2.version_id)).tags == {"b": "2"}
    assert (yield _index(core)) == before
    marker = yield core.objects.delete(bucket, "k")
    with pytest.raises(errors.NoSuchKey):
        yield core.objects.set_tags(bucket, "k", None, {"c": "3"})
    with pytest.raises(errors.MethodNotAllowed):
        yield core.objects.set_tags(bucket, "k", marker.version_id, {"c": "3"})


@pytest_twisted.inlineCallbacks
def test_bucket_settings_never_lose_a_concurrent_change(core):
    """Versioning and tag changes racing on the bucket record both land; Disabled can never be requested."""
    bucket = yield _bucket(core, "settings", None)
    yield DeferredList([core.set_bucket_versioning(bucket, "Enabled"), core.set_bucket_tags(bucket, {"t": "1"}),
                        core.set_bucket_tags(bucket, {"t": "2"})])
    stored = yield core.buckets.get(ALICE, "settings")
    assert stored.versioning is Versioning.ENABLED and stored.tags in ({"t": "1"}, {"t": "2"})
    with pytest.raises(errors.MalformedXML):
        yield core.set_bucket_versioning(bucket, "Disabled")
    raw = yield core.store.get(keys.bucket_key("org-a", None, "settings"))
    assert records.decode_bucket(raw.value).versioning is Versioning.ENABLED
    yield core.buckets.delete(ALICE, "settings")
    with pytest.raises(errors.NoSuchBucket):
        yield core.set_bucket_tags(bucket, {"t": "3"})

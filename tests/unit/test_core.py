"""Core rules on real plugins (SQLite store, local backend) in-process."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import DeferredList, inlineCallbacks

from lightningstor import errors
from lightningstor.checksums import compute
from lightningstor.core import keys
from lightningstor.core.collector import Sightings, collect_orphans
from lightningstor.core.objects import PutAttrs, add_default_checksum, with_default_checksum
from lightningstor.core.service import Core
from lightningstor.core.types import ObjectRecord, Principal
from tests.unit.core_helpers import drain

ALICE = Principal("alice", "org-a")
BOB = Principal("bob", "org-b")
CAROL = Principal("carol", "org-a", project_id="proj-1")


class CountingStore:
    """Wraps a store to count rows returned by scans (proves seek behaviour)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.rows = 0
        self.scans = 0

    def scan(self, start: bytes, end: bytes, limit: int = 0) -> Any:
        self.scans += 1
        d = self.inner.scan(start, end, limit)

        def count(rows: list[Any]) -> list[Any]:
            self.rows += len(rows)
            return rows

        return d.addCallback(count)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def core(make_core):
    return make_core(chunk_size=1 << 20, inline_threshold=1024)


@inlineCallbacks
def _put(core: Core, bucket: Any, key: str, data: bytes) -> Any:
    writer = core.chunks.new_writer(())
    writer.write(data)
    result = yield writer.finish()
    record = ObjectRecord(key=key, size=result.size, etag=result.md5_hex, created_at=core.objects.now_ms(),
                          chunks=list(result.chunks), inline=result.inline)
    yield core.objects.commit(bucket, record, PutAttrs())
    return record


@pytest_twisted.inlineCallbacks
def test_bucket_names_are_scoped_per_tenant(core):
    """Two orgs may own the same name; a project principal sees project then org buckets."""
    a = yield core.buckets.create(ALICE, "backups")
    b = yield core.buckets.create(BOB, "backups")
    assert a.bucket_id != b.bucket_id
    c = yield core.buckets.create(CAROL, "backups")  # project scope inside org-a
    found = yield core.buckets.get(CAROL, "backups")
    assert found.bucket_id == c.bucket_id
    found = yield core.buckets.get(ALICE, "backups")
    assert found.bucket_id == a.bucket_id
    with pytest.raises(errors.BucketAlreadyOwnedByYou):
        yield core.buckets.create(BOB, "backups")
    # Bob's colleague: the bucket is their tenant's (AWS's owner is the
    # account), so owned by them too; it used to be BucketAlreadyExists.
    with pytest.raises(errors.BucketAlreadyOwnedByYou):
        yield core.buckets.create(Principal("dave", "org-b"), "backups")
    listed = yield core.buckets.list(BOB)
    assert [x.bucket_id for x in listed] == [b.bucket_id]


@pytest_twisted.inlineCallbacks
def test_location_constraint_is_the_servers_region_or_eu_for_eu_west_1(make_core):
    """A LocationConstraint names the server's region; ``EU``, AWS's old
    name for eu-west-1 (s3cmd's ``--bucket-location=EU``), names it too
    there, and nowhere else."""
    ireland, virginia = make_core(region="eu-west-1"), make_core()
    for location in ("eu-west-1", "EU", None):
        bucket = yield ireland.buckets.create(ALICE, f"b-{(location or 'none').lower()}", location=location)
        assert bucket.region == "eu-west-1"
    for core, location in ((ireland, "us-east-1"), (ireland, "eu"), (virginia, "EU"), (virginia, "eu-west-1")):
        with pytest.raises(errors.S3Error) as e:
            yield core.buckets.create(BOB, "refused", location=location)
        assert e.value.code == "InvalidLocationConstraint"


@pytest_twisted.inlineCallbacks
def test_delimiter_listing_seeks_past_prefixes(core):
    """A delimiter listing over 3 big 'directories' reads a few rows per prefix, not every key."""
    bucket = yield core.buckets.create(ALICE, "many")
    yield DeferredList([_put(core, bucket, f"d{d}/k{i:04d}", b"x") for d in range(3) for i in range(300)])
    yield _put(core, bucket, "top", b"y")
    counting = CountingStore(core.store)
    from lightningstor.core.listing import list_objects

    result = yield list_objects(counting, bucket.bucket_id, delimiter="/", max_keys=1000)
    assert result.common_prefixes == ["d0/", "d1/", "d2/"]
    assert [e.key for e in result.entries] == ["top"]
    assert not result.is_truncated
    assert counting.rows < 200, counting.rows


@pytest_twisted.inlineCallbacks
def test_listing_pagination_and_markers(core):
    """Pages of max_keys follow one another with no gap or repeat, also when a page ends on a prefix."""
    bucket = yield core.buckets.create(ALICE, "pages")
    names = [f"a/{i}" for i in range(5)] + [f"b{i}" for i in range(7)] + ["c/x", "c/y"]
    for n in names:
        yield _put(core, bucket, n, b"")
    seen: list[str] = []
    after = None
    for _ in range(20):
        page = yield core.list_objects(bucket, delimiter="/", after=after, max_keys=3)
        seen += page.common_prefixes + [e.key for e in page.entries]
        if not page.is_truncated:
            break
        after = page.next_marker
    assert sorted(seen) == ["a/", "b0", "b1", "b2", "b3", "b4", "b5", "b6", "c/"]
    assert len(seen) == len(set(seen))


@pytest_twisted.inlineCallbacks
def test_keys_listed_in_utf8_byte_order(core):
    """Keys sort as UTF-8 bytes (S3 order), not as Python strings or by code unit."""
    bucket = yield core.buckets.create(ALICE, "order")
    keys_ = ["\uffff", "\U0001f600", "a", "B", "a/b", "a\x01", "\u00e9"]
    for k in keys_:
        yield _put(core, bucket, k, b"")
    page = yield core.list_objects(bucket)
    assert [e.key for e in page.entries] == sorted(keys_, key=lambda s: s.encode("utf-8"))


@pytest_twisted.inlineCallbacks
def test_overwrite_deletes_superseded_chunks(core):
    """After an overwrite only the new object's chunks remain in the backend."""
    bucket = yield core.buckets.create(ALICE, "overwrite")
    first = yield _put(core, bucket, "k", os.urandom(3 << 20))
    second = yield _put(core, bucket, "k", os.urandom(2 << 20))
    for _ in range(50):
        stored = {i.chunk_id for i in (yield core.backend.list_chunks())}
        if stored == {c.chunk_id for c in second.chunks}:
            break
        yield _sleep(0.02)
    assert stored == {c.chunk_id for c in second.chunks}
    assert not stored & {c.chunk_id for c in first.chunks}


@pytest_twisted.inlineCallbacks
def test_concurrent_commits_last_writer_wins_cleanly(core):
    """Racing writers of one key all succeed; exactly one record remains with its chunks indexed."""
    bucket = yield core.buckets.create(ALICE, "race")
    records = yield DeferredList([_put(core, bucket, "k", os.urandom(1_500_000)) for _ in range(6)])
    assert all(ok for ok, _ in records)
    current = yield core.objects.head(bucket, "k")
    for c in current.chunks:
        assert (yield core.store.get(keys.chunk_key(c.chunk_id))) is not None
    index = yield core.store.scan(keys.CHUNKS, keys.CHUNKS + b"\xff")
    assert {kv.key for kv in index} == {keys.chunk_key(c.chunk_id) for c in current.chunks}


@pytest_twisted.inlineCallbacks
def test_conditional_commit(core):
    """If-None-Match: * refuses an existing key; If-Match on a missing key is NoSuchKey."""
    bucket = yield core.buckets.create(ALICE, "cond")
    yield _put(core, bucket, "k", b"1")
    rec = ObjectRecord(key="k", size=0, etag="d41d8cd98f00b204e9800998ecf8427e", created_at=1)
    with pytest.raises(errors.PreconditionFailed):
        yield core.objects.commit(bucket, rec, PutAttrs(if_none_match_any=True))
    rec2 = ObjectRecord(key="other", size=0, etag="x", created_at=1)
    with pytest.raises(errors.NoSuchKey):
        yield core.objects.commit(bucket, rec2, PutAttrs(if_match='"abc"'))


@pytest_twisted.inlineCallbacks
def test_collector_removes_only_old_unreferenced_chunks(core):
    """Orphans unreferenced for the grace period (on the collector's clock,
    across passes) go; referenced ones stay."""
    bucket = yield core.buckets.create(ALICE, "collect")
    live = yield _put(core, bucket, "live", os.urandom(2 << 20))
    yield core.backend.put_chunk("0123456789abcdef0123456789abcdef", b"orphan")
    seen = Sightings()
    removed = yield collect_orphans(core.store, core.backend, 0.0, grace_seconds=3600, sightings=seen)
    assert removed == 0
    removed = yield collect_orphans(core.store, core.backend, 7200.0, grace_seconds=3600, sightings=seen)
    assert removed == 1
    stored = {i.chunk_id for i in (yield core.backend.list_chunks())}
    assert stored == {c.chunk_id for c in live.chunks}


@pytest_twisted.inlineCallbacks
def test_credentials_encrypted_at_rest(core):
    """The stored credential record never contains the secret in clear; lookup decrypts it."""
    cred = yield core.credentials.create(ALICE, access_key_id="AKTEST", secret="s3cr3t-value-xyz")
    raw = yield core.store.get(keys.credential_key("AKTEST"))
    assert b"s3cr3t-value-xyz" not in raw.value
    assert json.loads(raw.value)["principal"] == "alice"
    found = yield core.credentials.lookup("AKTEST")
    assert found.secret == cred.secret
    assert (found.principal.principal_id, found.principal.org_id) == ("alice", "org-a")
    assert (yield core.credentials.lookup("NOPE")) is None


@pytest_twisted.inlineCallbacks
def test_expired_credentials_unusable(core):
    """An expired key is treated as unknown."""
    yield core.credentials.create(ALICE, access_key_id="AKOLD", secret="x", expires_at=int(time.time() * 1000) - 1)
    assert (yield core.credentials.lookup("AKOLD")) is None


def _failing(exc: Exception) -> Any:
    from twisted.internet.defer import fail

    return lambda *args, **kwargs: fail(exc)


def _sleep(seconds: float) -> Any:
    from twisted.internet.task import deferLater

    return deferLater(reactor, seconds, lambda: None)


def test_default_checksum_only_when_the_writer_chose_none():
    """AWS's default: a write that chose no checksum algorithm and sent no
    checksum value gets CRC64NVME; one that chose or sent one keeps its
    choice alone (Content-MD5 is no choice: PutAttrs keeps it apart)."""
    assert with_default_checksum(()) == ("crc64nvme",)
    assert with_default_checksum(("sha256",)) == ("sha256",)
    assert with_default_checksum((), {"crc32": "AAAAAA=="}) == ()
    md5_only = PutAttrs(content_md5="1B2M2Y8AsgTpgAmY7PhCfg==")
    add_default_checksum(md5_only)
    assert md5_only.store_checksums == ("crc64nvme",)
    chosen = PutAttrs(store_checksums=("crc32c",))
    add_default_checksum(chosen)
    assert chosen.store_checksums == ("crc32c",)


@pytest_twisted.inlineCallbacks
def test_copy_of_a_source_without_checksums_gets_the_default(core):
    """A copy is a new object: a source without checksums (written before
    the default existed, or a multipart object of an upload without an
    algorithm) gives it the default CRC64NVME, hashed while it is copied;
    a source's own checksum is kept instead."""
    bucket = yield core.buckets.create(ALICE, "copydflt")
    data = os.urandom(5000)
    src = yield _put(core, bucket, "src", data)
    assert src.checksums == {}
    copy = yield core.copy_object(src, bucket, "dst", replace_metadata=None, tags=None, owner="alice")
    assert copy.checksums == {"crc64nvme": compute("crc64nvme", data)}
    src.checksums = {"sha1": compute("sha1", data)}
    kept = yield core.copy_object(src, bucket, "dst2", replace_metadata=None, tags=None, owner="alice")
    assert kept.checksums == {"sha1": compute("sha1", data)}


@pytest_twisted.inlineCallbacks
def test_copy_keeps_chunks_when_commit_outcome_unknown(core, monkeypatch):
    """If the store cannot say whether a commit landed, the new chunks are kept for the collector."""
    bucket = yield core.buckets.create(ALICE, "unknown")
    src = yield _put(core, bucket, "src", os.urandom(3 << 20))
    before = {i.chunk_id for i in (yield core.backend.list_chunks())}

    monkeypatch.setattr(core.objects, "commit", _failing(errors.MetadataUnavailable("lost mid-commit")))
    with pytest.raises(errors.MetadataUnavailable):
        yield core.copy_object(src, bucket, "dst", replace_metadata=None, tags=None, owner="alice")
    yield _sleep(0.1)
    after = {i.chunk_id for i in (yield core.backend.list_chunks())}
    assert after > before  # the copy's chunks are still there for the collector to judge

    monkeypatch.setattr(core.objects, "commit", _failing(errors.PreconditionFailed()))
    with pytest.raises(errors.PreconditionFailed):
        yield core.copy_object(src, bucket, "dst2", replace_metadata=None, tags=None, owner="alice")
    yield _sleep(0.2)
    final = {i.chunk_id for i in (yield core.backend.list_chunks())}
    assert final == after  # a definite failure deletes its own chunks


@pytest_twisted.inlineCallbacks
def test_reader_of_the_old_record_survives_an_overwrite(make_core):
    """A GET that looked the object up before an overwrite still streams the old bytes:
    superseded chunks are retired after a grace period, and flushed at shutdown."""
    core = make_core(chunk_size=1 << 20, inline_threshold=1024, free_delay_seconds=60.0)
    bucket = yield core.buckets.create(ALICE, "racing")
    old_data = os.urandom(3 << 20)
    old = yield _put(core, bucket, "k", old_data)
    reader = core.chunks.read(old.chunks, old.inline, 0, old.size)
    yield _put(core, bucket, "k", os.urandom(2 << 20))  # overwrite while the "GET" is under way
    got = yield drain(reader)
    assert got == old_data
    yield core.chunks.flush_retired()
    stored = {i.chunk_id for i in (yield core.backend.list_chunks())}
    assert not stored & {c.chunk_id for c in old.chunks}


@pytest_twisted.inlineCallbacks
def test_chunks_waiting_out_the_free_delay_are_the_collectors_after_a_crash(make_core):
    """Chunks waiting for their delayed deletion are already unindexed and no
    record lists them: if the server dies during the delay (nothing flushed),
    the orphan collector removes exactly them, never the new version's."""
    core = make_core(chunk_size=1 << 20, inline_threshold=1024, free_delay_seconds=300.0)
    bucket = yield core.buckets.create(ALICE, "crashing")
    old = yield _put(core, bucket, "k", os.urandom(3 << 20))
    new = yield _put(core, bucket, "k", os.urandom(2 << 20))
    old_ids = {c.chunk_id for c in old.chunks}
    assert len(core.chunks.retired) == len(old_ids)  # waiting, not deleted
    stored = {i.chunk_id for i in (yield core.backend.list_chunks())}
    assert old_ids <= stored
    for chunk_id in old_ids:
        assert (yield core.store.get(keys.chunk_key(chunk_id))) is None
    # The restarted server's collector (grace 0: nothing else writes here).
    removed = yield collect_orphans(core.store, core.backend, 0.0, 0.0)
    assert removed == len(old_ids)
    stored = {i.chunk_id for i in (yield core.backend.list_chunks())}
    assert stored == {c.chunk_id for c in new.chunks}
    yield core.chunks.flush_retired()  # this test's timer (deleting what is gone is harmless)

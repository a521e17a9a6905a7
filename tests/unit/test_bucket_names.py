"""Finding a bucket by name alone, across tenants (BucketManager.find_unique),
for unsigned CORS preflights, and the stored name index behind it:

* the index is kept in step with the bucket records by the very
  transactions that create and delete them (a failed create leaves none);
* with the index complete, a lookup is one short scan of the name's
  entries plus one record read: none, one, ambiguous, deleted, stale;
* index_names, the start-up pass, completes the index of a store written
  by an older version (adds missing entries, drops stale ones, is
  idempotent, never indexes a bucket deleted during it) and sets the marker;
* before the marker, lookups still answer by walking the bucket records,
  at most once per interval whatever names they carry (anyone can send
  preflights, and each walk reads every bucket).

A real SQLite store on the real reactor (pytest-twisted); the clock is a
stand-in, so the interval passes without waiting.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet import reactor as global_reactor

from lightningstor import errors
from lightningstor.core import keys
from lightningstor.core.buckets import NAME_INDEX_SECONDS, BucketManager
from lightningstor.core.types import Principal
from lightningstor.interfaces.metadata import Delete, DeleteRange, Put, prefix_end
from lightningstor.metadata.sqlite import SqliteMetadataStore

reactor: Any = global_reactor
ACME = Principal("acme-admin", "acme", roles=("admin",))
GLOBEX = Principal("globex-admin", "globex", roles=("admin",))
WEB = Principal("web-rw", "acme", "web")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class CountingStore:
    """The store, with its range reads counted (each is a page of a walk)
    and the start of each one kept."""

    def __init__(self, store: SqliteMetadataStore) -> None:
        self._store = store
        self.scans = 0
        self.scanned: list[bytes] = []
        self.got: list[bytes] = []

    def get(self, key: bytes) -> Any:
        self.got.append(key)
        return self._store.get(key)

    def scan(self, start: bytes, *args: Any, **kwargs: Any) -> Any:
        self.scans += 1
        self.scanned.append(start)
        return self._store.scan(start, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _managers(tmp_path: Path, stores: list[SqliteMetadataStore]) -> tuple[BucketManager, BucketManager, CountingStore, Clock]:
    """Two managers on one database, as two workers would have: one makes
    the buckets, the other answers the lookups."""
    store = SqliteMetadataStore(str(tmp_path / "meta.db"), reactor)
    stores.append(store)
    counting = CountingStore(store)
    clock = Clock()
    writer = BucketManager(store, clock, "us-east-1")
    reader = BucketManager(counting, clock, "us-east-1")  # type: ignore[arg-type]
    return writer, reader, counting, clock


@pytest.mark.parametrize("indexed", [False, True], ids=["walk", "index"])
@pytest_twisted.ensureDeferred
async def test_a_name_in_one_scope_is_found_and_a_shared_or_unknown_one_is_not(
    tmp_path: Path, stores: list[SqliteMetadataStore], indexed: bool
) -> None:
    """The same answers from the name index (marker set) as from the walk
    over every record (a store whose index is not complete yet)."""
    writer, reader, counting, _clock = _managers(tmp_path, stores)
    if indexed:
        assert (await writer.index_names()).complete
    await writer.create(ACME, "backups")
    await writer.create(GLOBEX, "backups")
    await writer.create(ACME, "photos")
    await writer.create(WEB, "site")  # a project's bucket: org/project/name
    await writer.create(GLOBEX, "photos2")  # a longer name: not one of "photos"'s
    photos = await reader.find_unique("photos")
    assert photos is not None and (photos.org_id, photos.name) == ("acme", "photos")
    photos2 = await reader.find_unique("photos2")
    assert photos2 is not None and (photos2.org_id, photos2.name) == ("globex", "photos2")
    site = await reader.find_unique("site")
    assert site is not None and (site.org_id, site.project_id) == ("acme", "web")
    assert await reader.find_unique("backups") is None  # two tenants have one
    assert await reader.find_unique("nothing") is None
    assert await reader.find_unique("photo") is None  # names match whole, not by prefix
    assert await reader.find_unique("photos\x00acme/") is None  # a NUL cannot reach an entry
    walked = keys.BUCKETS in counting.scanned
    assert walked is not indexed


@pytest_twisted.ensureDeferred
async def test_lookups_share_one_read_of_the_names_per_interval(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """Before the index is complete: concurrent lookups share one walk of
    the records, later ones reuse it for the interval."""
    writer, reader, counting, clock = _managers(tmp_path, stores)
    for i in range(30):
        await writer.create(ACME, f"b{i:02d}")
    # Concurrent lookups of many names share one walk ...
    found = await defer.gatherResults([reader.find_unique(f"b{i % 40:02d}") for i in range(200)])
    assert sum(1 for b in found if b is not None) == 150
    assert counting.scans == 1
    # ... and later ones, until the interval is over, need none.
    assert await reader.find_unique("b07") is not None
    assert await reader.find_unique("unknown") is None
    assert counting.scans == 1

    # A bucket another worker creates is found once the interval is over.
    await writer.create(GLOBEX, "late")
    assert await reader.find_unique("late") is None
    clock.now += NAME_INDEX_SECONDS
    late = await reader.find_unique("late")
    assert late is not None and late.org_id == "globex"
    assert counting.scans == 2

    # One created through this worker is found at once.
    await reader.create(ACME, "mine")
    mine = await reader.find_unique("mine")
    assert mine is not None and counting.scans == 3


@pytest_twisted.ensureDeferred
async def test_past_the_bound_no_name_resolves(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """Before the index is complete, more buckets than a worker keeps
    names for: no unsigned name resolves, not even one read before the bound was reached; with the
    bound raised, the same names resolve."""
    writer, reader, counting, _clock = _managers(tmp_path, stores)
    for i in range(12):
        await writer.create(ACME, f"c{i:02d}")
    reader.name_index_max = 5
    assert await reader.find_unique("c00") is None
    assert await reader.find_unique("c11") is None
    assert counting.scans == 1
    reader.name_index_max = 12
    reader.forget_cached()
    found = await reader.find_unique("c11")
    assert found is not None and found.name == "c11"


# -- the stored name index ---------------------------------------------------------


async def _entries(store: Any) -> dict[bytes, bytes]:
    """Every name index entry: its key -> its value (a bucket record's key)."""
    rows = await store.scan(keys.BUCKET_NAMES, prefix_end(keys.BUCKET_NAMES))
    return {kv.key: kv.value for kv in rows}


async def _records(store: Any) -> set[bytes]:
    rows = await store.scan(keys.BUCKETS, prefix_end(keys.BUCKETS))
    return {kv.key for kv in rows}


def _expected(*scopes: tuple[str, str | None, str]) -> dict[bytes, bytes]:
    return {keys.bucket_name_key(*s): keys.bucket_key(*s) for s in scopes}


async def _forget_index(store: Any) -> None:
    """Make the store look written by a version without the index."""
    await store.txn([], [DeleteRange(keys.BUCKET_NAMES, prefix_end(keys.BUCKET_NAMES)),
                         Delete(keys.BUCKET_NAMES_INDEXED)])


@pytest_twisted.ensureDeferred
async def test_create_and_delete_keep_the_index_in_step(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """Each created bucket has exactly one entry, pointing at its record,
    written by the create; a deleted bucket's entry goes with it."""
    writer, _reader, _counting, _clock = _managers(tmp_path, stores)
    store = stores[0]
    await writer.create(ACME, "backups")
    await writer.create(GLOBEX, "backups")
    await writer.create(WEB, "site")
    await writer.create(ACME, "site")  # an org bucket beside the project's one
    assert await _entries(store) == _expected(
        ("acme", None, "backups"), ("globex", None, "backups"), ("acme", "web", "site"), ("acme", None, "site")
    )
    await writer.delete(ACME, "backups")
    await writer.delete(WEB, "site")
    assert await _entries(store) == _expected(("globex", None, "backups"), ("acme", None, "site"))
    assert set((await _entries(store)).values()) == await _records(store)


@pytest_twisted.ensureDeferred
async def test_a_failed_create_leaves_no_entry(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """A create refused for the org's max_buckets or for a name its scope
    already has writes no entry and leaves the existing one as it was."""
    writer, _reader, _counting, _clock = _managers(tmp_path, stores)
    store = stores[0]
    await writer.create(ACME, "taken")
    before = await store.get(keys.bucket_name_key("acme", None, "taken"))
    with pytest.raises(errors.BucketAlreadyOwnedByYou):
        await writer.create(ACME, "taken")
    after = await store.get(keys.bucket_name_key("acme", None, "taken"))
    assert after is not None and before is not None and after.mod_revision == before.mod_revision
    await writer._quotas.set_limits("acme", None, {"max_buckets": 1})
    with pytest.raises(errors.QuotaExceeded):
        await writer.create(ACME, "over")
    assert await _entries(store) == _expected(("acme", None, "taken"))


@pytest_twisted.ensureDeferred
async def test_a_create_that_loses_a_race_leaves_no_entry(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """Two creates of one name in one scope at once: one bucket, one entry
    (the loser's transaction failed whole), pointing at the winner."""
    writer, reader, _counting, _clock = _managers(tmp_path, stores)
    results = await defer.DeferredList(
        [writer.create(ACME, "race"), reader.create(ACME, "race")], consumeErrors=True
    )
    assert sorted(ok for ok, _ in results) == [False, True]
    assert await _entries(stores[0]) == _expected(("acme", None, "race"))


@pytest_twisted.ensureDeferred
async def test_indexed_lookups_read_only_the_names_entries(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """With the index complete, a lookup scans only its name's entries
    (never the bucket records) and sees another worker's create and delete
    at once, without waiting out an interval."""
    writer, reader, counting, _clock = _managers(tmp_path, stores)
    await writer.index_names()
    for i in range(20):
        await writer.create(ACME, f"b{i:02d}")
    found = await reader.find_unique("b07")
    assert found is not None and found.name == "b07"
    await writer.create(GLOBEX, "late")
    late = await reader.find_unique("late")
    assert late is not None and late.org_id == "globex"
    await writer.create(ACME, "late")
    assert await reader.find_unique("late") is None  # now ambiguous
    await writer.delete(GLOBEX, "late")
    again = await reader.find_unique("late")
    assert again is not None and again.org_id == "acme"
    await writer.delete(ACME, "late")
    assert await reader.find_unique("late") is None
    assert counting.scanned and all(s.startswith(keys.BUCKET_NAMES) for s in counting.scanned)
    assert counting.got.count(keys.BUCKET_NAMES_INDEXED) == 1  # the marker, once per worker


@pytest_twisted.ensureDeferred
async def test_an_entry_without_its_record_is_no_bucket(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """An entry left by an older server's delete (its record gone) resolves
    nothing; one whose record now holds another name neither."""
    writer, reader, _counting, _clock = _managers(tmp_path, stores)
    await writer.index_names()
    store = stores[0]
    await store.txn([], [Put(keys.bucket_name_key("acme", None, "ghost"), keys.bucket_key("acme", None, "ghost"))])
    assert await reader.find_unique("ghost") is None
    await writer.create(ACME, "real")
    await store.txn([], [Put(keys.bucket_name_key("acme", None, "alias"), keys.bucket_key("acme", None, "real"))])
    assert await reader.find_unique("alias") is None


@pytest_twisted.ensureDeferred
async def test_the_pass_completes_an_old_stores_index_once(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """Buckets of a store without the index: lookups walk the records until
    the pass ran; the pass adds every missing entry, drops a stale one,
    sets the marker, and a second pass changes nothing (idempotent)."""
    writer, reader, counting, _clock = _managers(tmp_path, stores)
    store = stores[0]
    await writer.create(ACME, "photos")
    await writer.create(GLOBEX, "backups")
    await writer.create(WEB, "site")
    await writer.create(ACME, "backups")
    await _forget_index(store)
    await store.txn([], [Put(keys.bucket_name_key("initech", None, "photos"),
                             keys.bucket_key("initech", None, "photos"))])  # a stale entry: no record
    # Before the pass: the walk answers, the stale entry misleads nobody.
    before = await reader.find_unique("photos")
    assert before is not None and before.org_id == "acme"
    assert keys.BUCKETS in counting.scanned

    report = await writer.index_names()
    assert (report.added, report.removed, report.complete) == (4, 1, True)
    assert await _entries(store) == _expected(
        ("acme", None, "photos"), ("globex", None, "backups"), ("acme", "web", "site"), ("acme", None, "backups")
    )
    marker = await store.get(keys.BUCKET_NAMES_INDEXED)
    assert marker is not None

    again = await writer.index_names()
    assert (again.added, again.removed, again.complete) == (0, 0, True)
    marker_again = await store.get(keys.BUCKET_NAMES_INDEXED)
    assert marker_again is not None and marker_again.mod_revision == marker.mod_revision

    counting.scanned.clear()
    site = await reader.find_unique("site")
    assert site is not None and site.project_id == "web"
    assert await reader.find_unique("backups") is None
    assert keys.BUCKETS not in counting.scanned  # the index answered

    # An older server (a rolling upgrade) creates a bucket after the marker:
    # no entry.  The pass at the next start, marker or not, adds it.
    await writer.create(GLOBEX, "later")
    await store.txn([], [Delete(keys.bucket_name_key("globex", None, "later"))])
    assert await reader.find_unique("later") is None
    third = await writer.index_names()
    assert (third.added, third.removed, third.complete) == (1, 0, True)
    later = await reader.find_unique("later")
    assert later is not None and later.org_id == "globex"


class DeletingStore:
    """The store, running ``hook`` (a change through the core or straight to
    the store) the first time the pass reads ``key``: before that read by
    default, or just after it (``after``), so that what the pass read is
    stale by the time it writes."""

    def __init__(self, store: SqliteMetadataStore, key: bytes, hook: Any, *, after: bool = False) -> None:
        self._store = store
        self._key = key
        self._hook: Any = hook
        self._after = after

    @defer.inlineCallbacks
    def get(self, key: bytes) -> Any:
        hook = None
        if key == self._key and self._hook is not None:
            hook, self._hook = self._hook, None
        if hook is not None and not self._after:
            yield hook()
        kv = yield self._store.get(key)
        if hook is not None and self._after:
            yield hook()
        return kv

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@pytest_twisted.ensureDeferred
async def test_the_pass_gives_no_entry_to_a_bucket_deleted_during_it(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """A bucket deleted after the pass read its record gets no entry: the
    entry's write compares the record's revision.  (Deleted by an older
    server, which knows of no index: nothing else would remove it.)"""
    writer, _reader, _counting, _clock = _managers(tmp_path, stores)
    store = stores[0]
    await writer.create(ACME, "kept")
    await writer.create(ACME, "doomed")
    await _forget_index(store)
    doomed = keys.bucket_key("acme", None, "doomed")
    hooked = DeletingStore(store, keys.bucket_name_key("acme", None, "doomed"),
                           lambda: store.txn([], [Delete(doomed)]))
    indexer = BucketManager(hooked, time.time, "us-east-1")  # type: ignore[arg-type]
    report = await indexer.index_names()
    assert (report.added, report.removed, report.complete) == (1, 0, True)
    assert await _entries(store) == _expected(("acme", None, "kept"))


@pytest_twisted.ensureDeferred
async def test_the_pass_leaves_a_bucket_created_during_it_as_created(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """A bucket deleted and re-created (by this version) between the pass's
    read and its write keeps the entry its create wrote: the pass reads the
    record again and finds the entry there."""
    writer, _reader, _counting, _clock = _managers(tmp_path, stores)
    store = stores[0]
    await writer.create(ACME, "again")
    await _forget_index(store)

    async def recreate() -> None:
        await writer.delete(ACME, "again")
        await writer.create(ACME, "again")

    hooked = DeletingStore(store, keys.bucket_name_key("acme", None, "again"),
                           lambda: defer.ensureDeferred(recreate()))
    indexer = BucketManager(hooked, time.time, "us-east-1")  # type: ignore[arg-type]
    report = await indexer.index_names()
    assert (report.added, report.complete) == (0, True)
    assert await _entries(store) == _expected(("acme", None, "again"))


@pytest_twisted.ensureDeferred
async def test_a_stopped_pass_sets_no_marker(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """A pass stopped early (the server stopping) does not mark the index
    complete: lookups keep walking the records until a later pass ends."""
    writer, reader, counting, _clock = _managers(tmp_path, stores)
    store = stores[0]
    for name in ("one", "two", "three"):
        await writer.create(ACME, name)
    await _forget_index(store)
    asked = 0

    def stop() -> bool:
        nonlocal asked
        asked += 1
        return asked > 1

    report = await writer.index_names(should_stop=stop)
    assert (report.added, report.complete) == (1, False)
    assert await store.get(keys.BUCKET_NAMES_INDEXED) is None
    found = await reader.find_unique("three")
    assert found is not None and keys.BUCKETS in counting.scanned


def test_the_name_index_key_space_stands_apart() -> None:
    """No top-level key space contains another, so no scan of one (bucket
    records: lifecycle, quotas, admin listings) reads the name entries;
    and a name's prefix holds no longer name's entries."""
    spaces = [v for k, v in vars(keys).items() if k.isupper() and isinstance(v, bytes) and v != keys.ROOT]
    assert keys.BUCKET_NAMES in spaces
    for a in spaces:
        for b in spaces:
            assert a == b or not b.startswith(a), (a, b)
    assert not (keys.BUCKET_NAMES <= keys.BUCKETS < prefix_end(keys.BUCKET_NAMES))
    assert not (keys.BUCKETS <= keys.BUCKET_NAMES < prefix_end(keys.BUCKETS))
    assert not keys.bucket_name_key("acme", None, "ab").startswith(keys.bucket_name_prefix("a"))
    for scope in (("acme", None, "b1"), ("acme", "web", "b1")):
        assert keys.bucket_key_scope(keys.bucket_key(*scope)) == scope
    assert keys.bucket_key_scope(keys.BUCKETS + b"acme") is None


@pytest_twisted.ensureDeferred
async def test_the_pass_keeps_an_entry_whose_bucket_comes_back_during_it(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """An entry whose record is gone when the pass reads it, but which an
    older server re-creates (record only) before the pass deletes the
    entry, stays: the delete compares the record's absence and the
    entry's revision."""
    writer, reader, _counting, _clock = _managers(tmp_path, stores)
    store = stores[0]
    await writer.index_names()
    await writer.create(ACME, "back")
    bkey = keys.bucket_key("acme", None, "back")
    record = await store.get(bkey)
    assert record is not None
    await store.txn([], [Delete(bkey)])  # an older server's DeleteBucket: the entry stays
    hooked = DeletingStore(store, bkey, lambda: store.txn([], [Put(bkey, record.value)]), after=True)
    indexer = BucketManager(hooked, time.time, "us-east-1")  # type: ignore[arg-type]
    report = await indexer.index_names()
    assert (report.added, report.removed, report.complete) == (0, 0, True)
    assert await _entries(store) == _expected(("acme", None, "back"))
    back = await reader.find_unique("back")
    assert back is not None and back.name == "back"

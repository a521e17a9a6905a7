"""The SQLite store's read cache (lightningstor/metadata/readcache.py).

Two stores opened on one file stand for two worker processes: each has its
own cache and its own mapping of the shared counters file, exactly as two
processes would.  What must hold: a cached answer is never older than a
write another store acknowledged; a hit answers without a thread; the cache
keeps within its byte budget.
"""

from __future__ import annotations

import random
from itertools import count
from pathlib import Path

import pytest
import pytest_twisted

from lightningstor.interfaces.metadata import Compare, Delete, DeleteRange, KeyValue, Put
from lightningstor.metadata import sqlite as sqlite_module
from lightningstor.metadata.readcache import Generations, ReadCache, slot_of
from lightningstor.metadata.sqlite import SqliteMetadataStore
from tests.unit.test_sqlite_store import open_store, stall_writer


@pytest_twisted.ensureDeferred
async def test_a_hit_answers_at_once_and_a_write_through_is_current(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """What a store wrote to a key its transaction compared (read before
    writing), and what it read once, it answers without a thread (the
    Deferred has fired when get returns).  A key written blind (a usage
    delta, an index entry) is not kept: such keys are scanned, not read."""
    store = open_store(stores, tmp_path / "meta.db")
    written = await store.txn([Compare(b"k", 0)], [Put(b"k", b"v1"), Put(b"blind", b"x")])
    d = store.get(b"k")
    assert d.called  # written through: no reader thread involved
    assert not store.get(b"blind").called  # not compared: written blind, not kept
    assert await d == KeyValue(b"k", b"v1", written.revision)
    first = store.get(b"absent")
    assert not first.called
    assert await first is None
    again = store.get(b"absent")
    assert again.called and await again is None
    assert store.cache is not None and store.cache.hits == 2


@pytest_twisted.ensureDeferred
async def test_another_processes_writes_are_seen_at_once(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """A store never answers from its cache what another store (another
    worker process) has overwritten or deleted since: 300 random puts,
    deletes and range deletes through either store, each followed by reads
    through both (half of the puts and deletes compare the key first, so
    they are also offered through the ring of published writes)."""
    path = tmp_path / "meta.db"
    a, b = open_store(stores, path), open_store(stores, path)
    keys = [b"k%d" % i for i in range(8)]
    truth: dict[bytes, bytes] = {}
    rnd = random.Random(7)
    for step in range(300):
        writer = rnd.choice((a, b))
        key = rnd.choice(keys)
        roll = rnd.random()
        # Half the writes compare the key first, as the core's do: those are
        # kept by the writer and offered to the other's cache (published.py).
        guard = []
        if rnd.random() < 0.5:
            current = await writer.get(key)
            guard = [Compare(key, current.mod_revision if current else 0)]
        if roll < 0.6:
            value = b"%d" % step
            assert (await writer.txn(guard, [Put(key, value)])).succeeded
            truth[key] = value
        elif roll < 0.9:
            await writer.txn(guard, [Delete(key)])
            truth.pop(key, None)
        else:
            start, end = rnd.choice(((b"k", b"k4"), (b"k5", b"\x00")))  # b"\x00": no upper bound
            await writer.txn([], [DeleteRange(start, end)])
            truth = {k: v for k, v in truth.items() if not (start <= k and (end == b"\x00" or k < end))}
        for reader in (a, b):
            for k in keys:
                kv = await reader.get(k)
                assert (kv.value if kv else None) == truth.get(k), (step, reader is a, k)
    assert a.cache is not None and b.cache is not None
    assert a.cache.hits > 100 and b.cache.hits > 100  # the reads above did use the caches


@pytest_twisted.ensureDeferred
async def test_a_failed_compare_forgets_the_key(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """A transaction whose compare failed drops the compared key from the
    cache: the caller will read it again, and must not loop on a stale answer."""
    store = open_store(stores, tmp_path / "meta.db")
    await store.txn([Compare(b"k", 0)], [Put(b"k", b"v")])
    assert store.cache is not None and b"k" in store.cache._entries
    outcome = await store.txn([Compare(b"k", 0)], [Put(b"k", b"other")])
    assert not outcome.succeeded
    assert b"k" not in store.cache._entries


def _same_slot(key: bytes) -> bytes:
    """Another key whose counter slot is ``key``'s (found by trying)."""
    slot = slot_of(key)
    return next(other for i in count() if slot_of(other := b"other-%d" % i) == slot and other != key)


@pytest_twisted.ensureDeferred
async def test_a_read_only_a_shared_slot_made_is_counted_apart_from_misses(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """Keys share counter slots: another process's write of a key (or a
    transaction of the key that failed its compare) makes the entries held
    for the other keys of its slot stop answering, and their next read goes
    to the database.  When the database answers what the entry held (the
    same revision, or still no such key) that read is counted as
    ``unchanged``, not as a miss; the read of a key that did change is a
    miss, as is the first read of a key not held."""
    a, b = open_store(stores, tmp_path / "meta.db"), open_store(stores, tmp_path / "meta.db")
    kept = await a.txn([Compare(b"kept", 0)], [Put(b"kept", b"v")])  # held, written through
    assert await a.get(b"absent") is None  # held as absent
    assert a.cache is not None and a.cache.misses == 1
    await b.txn([], [Put(_same_slot(b"kept"), b"x"), Put(_same_slot(b"absent"), b"y")])
    d = a.get(b"kept")
    assert not d.called  # the entry no longer answers: a read
    assert await d == KeyValue(b"kept", b"v", kept.revision)
    assert await a.get(b"absent") is None
    assert a.cache.misses == 1  # neither key changed
    assert a.cache.unchanged == 2
    assert a.get(b"kept").called and a.get(b"absent").called  # kept again at the new counters
    assert not (await b.txn([Compare(b"kept", kept.revision + 100)], [Put(b"kept", b"no")])).succeeded
    assert await a.get(b"kept") == KeyValue(b"kept", b"v", kept.revision)
    assert (a.cache.misses, a.cache.unchanged) == (1, 3)
    changed = await b.txn([], [Put(b"kept", b"w")])  # written blind: not offered to a's cache
    assert await a.get(b"kept") == KeyValue(b"kept", b"w", changed.revision)
    assert (a.cache.misses, a.cache.unchanged, a.cache.hits) == (2, 3, 2)


def test_a_slot_being_written_is_neither_used_nor_kept(tmp_path: Path) -> None:
    """While a writer holds a key's slot odd (between its mark and its
    COMMIT's end), reads of that slot go to the database and are not kept."""
    generations = Generations(str(tmp_path / "gen"))
    cache = ReadCache(generations, 1 << 20)
    reads: list[bytes] = []

    def read(key: bytes) -> object:
        from twisted.internet.defer import succeed

        reads.append(key)
        return succeed(KeyValue(key, b"db", 1))

    tag, everything = generations.tags(b"k")
    cache.keep(b"k", KeyValue(b"k", b"cached", 1), tag, everything)
    generations.begin([slot_of(b"k")])
    cache.get(b"k", read)  # type: ignore[arg-type]
    cache.get(b"k", read)  # type: ignore[arg-type]
    assert reads == [b"k", b"k"]
    settled = generations.end([slot_of(b"k")])
    assert settled[slot_of(b"k")] % 2 == 0 and settled[slot_of(b"k")] > tag
    cache.get(b"k", read)  # type: ignore[arg-type]  # the old entry no longer matches
    cache.get(b"k", read)  # type: ignore[arg-type]  # now kept
    assert reads == [b"k", b"k", b"k"]
    generations.close()


def test_counters_are_shared_through_the_file_and_only_grow(tmp_path: Path) -> None:
    """Two mappings of one counters file see each other's marks; a slot left
    odd (a writer died mid-commit) moves to a new odd value, never back."""
    one, two = Generations(str(tmp_path / "gen")), Generations(str(tmp_path / "gen"))
    s = slot_of(b"key")
    one.begin([s])
    assert two.tags(b"key")[0] == 1
    two.begin([s])  # the first writer never ended: still odd, and higher
    assert one.tags(b"key")[0] == 3
    two.end([s])
    assert one.tags(b"key")[0] == 4
    one.close()
    two.close()


def test_the_cache_keeps_to_its_budget(tmp_path: Path) -> None:
    """Least recently used entries go first; a value larger than the whole
    budget is not kept at all."""
    generations = Generations(None)
    cache = ReadCache(generations, 10_000)
    for i in range(20):
        key = b"k%02d" % i
        cache.keep(key, KeyValue(key, b"x" * 1000, 1), *generations.tags(key))
    assert cache.bytes <= 10_000
    assert b"k19" in cache._entries and b"k00" not in cache._entries
    cache.keep(b"big", KeyValue(b"big", b"x" * 20_000, 1), *generations.tags(b"big"))
    assert b"big" not in cache._entries and cache.bytes <= 10_000


@pytest_twisted.ensureDeferred
async def test_cache_bytes_zero_turns_it_off(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """With ``cache_bytes = 0`` every read goes to the database, while the
    store still moves the shared counters for the others' caches."""
    path = tmp_path / "meta.db"
    off = open_store(stores, path, cache_bytes=0)
    on = open_store(stores, path)
    await on.txn([], [Put(b"k", b"old")])
    assert (await on.get(b"k")).value == b"old"  # type: ignore[union-attr]
    await off.txn([], [Put(b"k", b"new")])
    assert off.cache is None and not off.get(b"k").called
    assert (await on.get(b"k")).value == b"new"  # type: ignore[union-attr]


def test_a_negative_cache_size_is_refused(tmp_path: Path) -> None:
    from twisted.internet import reactor

    with pytest.raises(ValueError):
        SqliteMetadataStore(str(tmp_path / "meta.db"), reactor, cache_bytes=-1)


@pytest_twisted.ensureDeferred
async def test_a_range_delete_after_a_put_in_one_batch_leaves_nothing_cached(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """A put that a later range delete of the same transaction (or of the
    same group commit) removed is not answered from the cache."""
    store = open_store(stores, tmp_path / "meta.db")
    other = open_store(stores, tmp_path / "meta.db")
    await other.check()
    await store.txn([], [Put(b"p/a", b"x"), DeleteRange(b"p/", b"p0")])
    assert await store.get(b"p/a") is None
    # Compared (so kept and published, were it not removed after):
    await store.txn([Compare(b"p/b", 0)], [Put(b"p/b", b"y"), DeleteRange(b"p/", b"p0"), Put(b"q", b"z")])
    assert await store.get(b"p/b") is None and await other.get(b"p/b") is None
    blocker, plug = await stall_writer(store)
    first = store.txn([], [Put(b"parts/u1/00001", b"part-1")])
    second = store.txn([], [DeleteRange(b"parts/u1/", b"parts/u10")])
    blocker.execute("COMMIT")
    blocker.close()
    await plug
    await first
    await second
    assert await store.get(b"parts/u1/00001") is None


def test_a_writer_that_died_between_its_marks_is_settled_by_the_next(tmp_path: Path) -> None:
    """A writer killed after its COMMIT but before its end mark leaves its
    slots (range deletes: slot 0, which turns every cache off) odd; the next
    batch, under the lock, moves them on to even, and reads are kept again."""
    dead = Generations(str(tmp_path / "gen"))
    dead.begin([0, slot_of(b"k")])  # ... and the process is gone
    successor = Generations(str(tmp_path / "gen"))
    cache = ReadCache(successor, 1 << 20)
    assert successor.tags(b"other")[1] & 1  # slot 0 odd: every read bypasses
    assert successor.begin([slot_of(b"x")]) == 2  # the two odd counters, settled
    successor.end([slot_of(b"x")])
    tag, everything = successor.tags(b"k")
    assert not (tag | everything) & 1
    cache.keep(b"k", KeyValue(b"k", b"v", 1), tag, everything)
    from twisted.internet.defer import Deferred

    d: Deferred[KeyValue | None] = cache.get(b"k", lambda key: Deferred())
    assert d.called and cache.hits == 1
    dead.close()
    successor.close()


def test_the_counters_file_has_its_blocks(tmp_path: Path) -> None:
    """The counters file is allocated, not sparse: the first store into a
    page of a sparse mapping on a full volume kills the process (SIGBUS)."""
    import os

    generations = Generations(str(tmp_path / "gen"))
    st = os.stat(tmp_path / "gen")
    assert st.st_size == 8 * (1 << 16) and st.st_blocks * 512 >= st.st_size
    generations.close()


@pytest_twisted.ensureDeferred
async def test_the_counters_file_follows_the_real_path(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """Two processes that open one database through different names (a
    symlink) share one counters file, so neither answers stale."""
    real = tmp_path / "meta.db"
    link = tmp_path / "link.db"
    a = open_store(stores, real)
    await a.check()
    link.symlink_to(real)
    b = open_store(stores, link)
    await a.txn([], [Put(b"k", b"old")])
    assert (await a.get(b"k")).value == b"old"  # type: ignore[union-attr]
    await b.txn([], [Put(b"k", b"new")])
    assert (await a.get(b"k")).value == b"new"  # type: ignore[union-attr]


@pytest_twisted.ensureDeferred
async def test_a_blind_write_after_a_compared_one_in_a_batch_is_what_caches_answer(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """One group commit: a transaction compares a key and puts it, a later
    one writes it without comparing (a put or a delete).  The counters then
    stand for the blind write, so neither the writer's cache nor another
    process's may answer the compared value."""
    path = tmp_path / "meta.db"
    a, b = open_store(stores, path), open_store(stores, path)
    await b.get(b"x")  # b is open and has looked at the ring of published writes
    for n, blind in enumerate([Put(b"K", b"blind"), Delete(b"K")]):
        current = await a.get(b"K")
        blocker, plug = await stall_writer(a)
        first = a.txn([Compare(b"K", current.mod_revision if current else 0)], [Put(b"K", b"compared %d" % n)])
        second = a.txn([], [blind])
        blocker.execute("COMMIT")
        blocker.close()
        await plug
        assert (await first).succeeded and (await second).succeeded
        want = blind.value if isinstance(blind, Put) else None
        for store in (a, b):
            kv = await store.get(b"K")
            assert (kv.value if kv else None) == want, (n, store is a)


@pytest_twisted.ensureDeferred
async def test_a_range_delete_leaves_the_other_keys_cached_in_every_process(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """A range delete (every multipart completion removes its parts so)
    moves the counter slots of the keys it removes, not the one every entry
    depends on: another process's cached records outside the range still
    answer at once, and what it cached inside the range is never answered
    stale.  More than ``_RANGE_KEYS_MAX`` keys move that shared slot."""
    path = tmp_path / "meta.db"
    a, b = open_store(stores, path), open_store(stores, path)
    await a.check()
    await b.check()  # open, so its cache exists before the first read
    await a.txn([Compare(b"objects/k", 0)], [Put(b"objects/k", b"record")])
    await a.txn([], [Put(b"parts/u1/%05d" % n, b"part") for n in range(1, 4)])
    assert (await b.get(b"objects/k")).value == b"record"
    assert (await b.get(b"parts/u1/00002")).value == b"part"
    assert (await b.get(b"parts/u1/00009")) is None  # absent, and stays so
    assert b.cache is not None
    assert b.get(b"objects/k").called and b.get(b"parts/u1/00002").called
    await a.txn([], [DeleteRange(b"parts/u1/", b"parts/u10")])
    hits = b.cache.hits
    assert b.get(b"objects/k").called  # still answered from memory
    assert b.get(b"parts/u1/00009").called
    assert b.cache.hits == hits + 2
    assert await b.get(b"parts/u1/00002") is None  # removed: not answered stale
    many = [Put(b"bulk/%06d" % n, b"") for n in range(sqlite_module._RANGE_KEYS_MAX + 1)]
    await a.txn([], many)
    assert b.get(b"objects/k").called
    await a.txn([], [DeleteRange(b"bulk/", b"bulk0")])
    assert not b.get(b"objects/k").called  # too many keys: every entry is read again
    assert (await b.get(b"objects/k")).value == b"record"


@pytest_twisted.ensureDeferred
async def test_a_range_delete_removes_compared_puts_at_its_bounds_from_every_cache(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """One group commit: transactions compare and put (so the writer keeps
    them and publishes them to the other processes) the key a later range
    delete starts at, the key it ends at, and a key after every byte an
    unbounded range delete (end b"\\x00") covers.  The removed keys are
    answered absent by both stores, and the end key, which the range
    excludes, is answered as written, from memory."""
    path = tmp_path / "meta.db"
    a, b = open_store(stores, path), open_store(stores, path)
    await b.get(b"x")  # b is open and has looked at the ring of published writes
    blocker, plug = await stall_writer(a)
    puts = [a.txn([Compare(key, 0)], [Put(key, b"v")]) for key in (b"p/", b"p0", b"z\xff\xff")]
    ranges = a.txn([], [DeleteRange(b"p/", b"p0"), DeleteRange(b"z", b"\x00")])
    blocker.execute("COMMIT")
    blocker.close()
    await plug
    for d in (*puts, ranges):
        assert (await d).succeeded
    for store in (a, b):
        assert await store.get(b"p/") is None, store is a
        assert await store.get(b"z\xff\xff") is None, store is a
        end = store.get(b"p0")
        assert end.called, store is a  # kept (a) or taken from the ring (b): no reader thread
        assert (await end).value == b"v", store is a  # type: ignore[union-attr]


@pytest_twisted.ensureDeferred
async def test_every_range_delete_of_a_group_commit_moves_the_keys_it_removes(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """One group commit holding several range deletes (two multipart
    completions removing their parts, and an unbounded one): another
    process that had read the keys they remove, the key at a range's start
    included, answers them absent, and still answers the key a range ends
    at (excluded) as it was."""
    path = tmp_path / "meta.db"
    a, b = open_store(stores, path), open_store(stores, path)
    parts = [b"parts/u1/1", b"parts/u2/", b"parts/u2/1", b"parts/u20", b"zz\xff"]
    await a.txn([], [Put(key, b"part") for key in parts])
    for key in parts:
        assert (await b.get(key)).value == b"part"  # type: ignore[union-attr]
    blocker, plug = await stall_writer(a)
    removals = [
        a.txn([], [DeleteRange(b"parts/u1/", b"parts/u10")]),
        a.txn([], [DeleteRange(b"parts/u2/", b"parts/u20")]),
        a.txn([], [DeleteRange(b"zz", b"\x00")]),
    ]
    blocker.execute("COMMIT")
    blocker.close()
    await plug
    for d in removals:
        assert (await d).succeeded
    for key in (b"parts/u1/1", b"parts/u2/", b"parts/u2/1", b"zz\xff"):
        assert await b.get(key) is None, key
    assert (await b.get(b"parts/u20")).value == b"part"  # type: ignore[union-attr]

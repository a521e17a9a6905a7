"""Committed writes offered to the other processes' read caches
(lightningstor/metadata/published.py).

Two stores opened on one file stand for two worker processes, as in
test_sqlite_read_cache.py.  What must hold: a record another store wrote
is answered from this store's cache without a read; an entry read torn,
or overwritten by a writer that came round, is never used; a store that
fell a whole ring behind answers from the database; the cache keeps to its
budget.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest_twisted

from lightningstor.interfaces.metadata import Compare, Delete, KeyValue, Put
from lightningstor.metadata import published
from lightningstor.metadata.published import PublishedWrites
from lightningstor.metadata.readcache import Generations, ReadCache
from lightningstor.metadata.sqlite import SqliteMetadataStore
from tests.unit.test_sqlite_store import open_store, stall_writer


async def _two(stores: list[SqliteMetadataStore], tmp_path: Path) -> tuple[SqliteMetadataStore, SqliteMetadataStore]:
    path = tmp_path / "meta.db"
    a, b = open_store(stores, path), open_store(stores, path)
    await a.check()
    await b.check()
    return a, b


@pytest_twisted.ensureDeferred
async def test_what_another_process_wrote_is_answered_without_a_read(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """b never read these keys; a wrote or deleted them: b answers at once
    (the Deferred has fired when get returns), with a's values."""
    a, b = await _two(stores, tmp_path)
    await b.get(b"x")  # b is open and has looked at the ring
    r0 = await a.txn([Compare(b"gone", 0)], [Put(b"gone", b"soon")])
    r1 = await a.txn([Compare(b"k1", 0), Compare(b"k2", 0)], [Put(b"k1", b"v1"), Put(b"k2", b"v2")])
    d0 = b.get(b"gone")
    assert d0.called and (await d0).value == b"soon"  # type: ignore[union-attr]
    await a.txn([Compare(b"gone", r0.revision)], [Delete(b"gone")])
    d1, d2, d3 = b.get(b"k1"), b.get(b"k2"), b.get(b"gone")
    assert d1.called and d2.called and d3.called
    assert await d1 == KeyValue(b"k1", b"v1", r1.revision)
    assert (await d2).value == b"v2"  # type: ignore[union-attr]
    assert await d3 is None
    assert b.cache is not None and b.cache.hits == 4


@pytest_twisted.ensureDeferred
async def test_an_entry_overtaken_by_a_later_write_never_answers(
    tmp_path: Path, stores: list[SqliteMetadataStore], monkeypatch
) -> None:
    """An entry taken after its key was written again carries the older
    counter value, so it does not answer: the newer value is read from the
    database (b takes one entry per miss here: the older one)."""
    a, b = await _two(stores, tmp_path)
    await b.get(b"x")
    old = await a.txn([Compare(b"k", 0)], [Put(b"k", b"old")])
    await a.txn([Compare(b"k", old.revision)], [Put(b"k", b"new")])
    monkeypatch.setattr(published, "DRAIN_MAX", 1)
    d = b.get(b"k")
    assert not d.called  # the entry taken ("old") is not current: a read
    assert (await d).value == b"new"  # type: ignore[union-attr]


def _ring(tmp_path: Path, name: str = "pub", writer: int = 1) -> PublishedWrites:
    return PublishedWrites(str(tmp_path / name), writer)


def test_a_torn_entry_is_not_used(tmp_path: Path) -> None:
    """An entry whose bytes do not match its CRC (read while being
    overwritten) is skipped, and so is everything after it until now."""
    writer, reader = _ring(tmp_path, writer=1), _ring(tmp_path, writer=2)
    generations = Generations(None)
    cache = ReadCache(generations, 1 << 20, reader)
    writer.append([(b"a", b"1", 5, 2, 0), (b"b", b"2", 6, 2, 0)])
    writer._view[published._DATA + published._ENTRY.size + 1] ^= 0xFF  # a byte of the first entry's value
    assert reader.drain(cache) == 0
    assert len(cache) == 0 and not reader.behind()
    writer.append([(b"c", b"3", 7, 2, 0)])
    assert reader.drain(cache) == 1 and b"c" in cache._entries
    writer.close()
    reader.close()


def test_a_reader_a_whole_ring_behind_starts_afresh(tmp_path: Path, monkeypatch) -> None:
    """What a writer may have overwritten is not read: a reader that fell
    more than a ring behind skips to the present."""
    monkeypatch.setattr(published, "RING_BYTES", 1 << 20)
    writer, reader = _ring(tmp_path, writer=1), _ring(tmp_path, writer=2)
    cache = ReadCache(Generations(None), 1 << 24, reader)
    for i in range(600):  # ~1.2 MiB: more than the ring
        writer.append([(b"k%04d" % i, b"v" * 2000, i, 2, 0)])
    assert reader.drain(cache) == 0 and not reader.behind()
    for i in range(600, 610):
        writer.append([(b"k%04d" % i, b"v" * 2000, i, 2, 0)])
    assert reader.drain(cache) == 10
    for i in range(610, 1200):  # entries wrap round the end of the ring
        writer.append([(b"k%04d" % i, bytes([i % 256]) * 2000, i, 2, 0)])
        assert reader.drain(cache) == 1
        assert cache._entries[b"k%04d" % i][0] == (bytes([i % 256]) * 2000, i)
    writer.close()
    reader.close()


def test_entries_are_kept_within_the_budget_and_large_values_stay_out(tmp_path: Path) -> None:
    """Others' writes are kept as this process keeps its own (least recently
    used out, within the byte budget); values over MAX_VALUE are not
    published at all."""
    writer, reader = _ring(tmp_path, writer=1), _ring(tmp_path, writer=2)
    generations = Generations(None)
    cache = ReadCache(generations, 20_000, reader)
    writer.append([(b"theirs%02d" % i, b"y" * 1000, 1, 0, 0) for i in range(50)])
    writer.append([(b"huge", b"z" * (published.MAX_VALUE + 1), 1, 0, 0)])
    assert reader.drain(cache) == 50
    assert b"huge" not in cache._entries and cache.bytes <= 20_000
    assert b"theirs49" in cache._entries and b"theirs00" not in cache._entries
    writer.close()
    reader.close()


def test_the_ring_file_has_its_blocks(tmp_path: Path) -> None:
    """Allocated, not sparse (as the counters file, for the same reason)."""
    ring = _ring(tmp_path)
    st = os.stat(tmp_path / "pub")
    assert st.st_size >= published.RING_BYTES and st.st_blocks * 512 >= st.st_size
    ring.close()


@pytest_twisted.ensureDeferred
async def test_a_key_written_twice_in_a_batch_is_published_once_at_its_final_state(
    tmp_path: Path, stores: list[SqliteMetadataStore], monkeypatch
) -> None:
    """A delete and a re-create of one key in one group commit share the
    counter value the batch leaves.  Were both published, a reader that took
    only the first (its drain limit reached) would answer "no such key" at
    the current counter; only the final state is published."""
    a, b = await _two(stores, tmp_path)
    created = await a.txn([Compare(b"K", 0)], [Put(b"K", b"old")])
    assert (await b.get(b"K")).value == b"old"  # type: ignore[union-attr]  # b took it from the ring
    blocker, plug = await stall_writer(a)
    deleted = a.txn([Compare(b"K", created.revision)], [Delete(b"K")])
    recreated = a.txn([Compare(b"K", 0)], [Put(b"K", b"new")])
    blocker.execute("COMMIT")
    blocker.close()
    await plug
    assert (await deleted).succeeded and (await recreated).succeeded
    monkeypatch.setattr(published, "DRAIN_MAX", 1)
    b.cache.forget(b"K")  # type: ignore[union-attr]  # as if evicted: the next read takes the ring
    for _ in range(2):
        assert (await b.get(b"K")).value == b"new"  # type: ignore[union-attr]


def test_a_ring_of_another_format_or_size_is_not_used(tmp_path: Path, monkeypatch) -> None:
    """Every process must lay entries out alike: a file written with another
    ring size (or another format) is refused, and the store then runs
    without a ring rather than misreading it."""
    _ring(tmp_path).close()
    monkeypatch.setattr(published, "RING_BYTES", 1 << 17)
    import pytest

    with pytest.raises(OSError):
        _ring(tmp_path)


def test_a_batch_larger_than_the_ring_appends_only_its_last_entries(tmp_path: Path, monkeypatch) -> None:
    """The first entries of a huge batch would be overwritten by its last
    ones before any reader took them: they are not written at all, and a
    reader that was up to date takes the rest."""
    monkeypatch.setattr(published, "RING_BYTES", 1 << 20)
    writer, reader = _ring(tmp_path, writer=1), _ring(tmp_path, writer=2)
    cache = ReadCache(Generations(None), 1 << 24, reader)
    monkeypatch.setattr(published, "DRAIN_MAX", 1000)
    writer.append([(b"k%03d" % i, b"v" * 4000, i, 2, 0) for i in range(300)])  # ~1.2 MiB
    assert writer._position[0] <= (1 << 20) - 2 * published.MAX_ENTRY
    taken = reader.drain(cache)
    assert 100 < taken < 300
    assert b"k299" in cache._entries and b"k000" not in cache._entries
    writer.close()
    reader.close()

"""The free-space reserve (``[storage] min_free_bytes``, lightningstor/diskspace.py).

What it promises: while a volume's free space is below the reserve, the
``local`` backend refuses chunk writes and the SQLite store refuses
transactions that add inline object data, both as a full disk (507) with a
message naming the reserve; deletes, moves of data already stored and other
metadata changes still commit.  ``statvfs`` never runs on the reactor thread
and is cached.  Free space is faked here (an injected ``statvfs``); the real
volume is exercised by tests/integration/test_disk_full.py.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor as global_reactor
from twisted.python.threadable import isInIOThread
from twisted.python.threadpool import ThreadPool

from lightningstor import diskspace
from lightningstor.config import ConfigProblems, load_settings
from lightningstor.core import records
from lightningstor.core.objects import may_have_committed
from lightningstor.core.types import Bucket, ChunkRef, ObjectRecord
from lightningstor.diskspace import (
    DEFAULT_MIN_FREE_BYTES,
    MAX_MIN_FREE_BYTES,
    FreeSpaceReserve,
    configured_min_free_bytes,
    inline_data,
)
from lightningstor.errors import (
    RESERVE_MESSAGE,
    ConfigError,
    InsufficientStorage,
    MetadataBelowReserve,
    MetadataFull,
    StorageBelowReserve,
    StorageFull,
    below_core,
)
from lightningstor.interfaces.metadata import Compare, Delete, Put
from lightningstor.interfaces.storage import PluginContext
from lightningstor.metadata.sqlite import SqliteMetadataStore, sqliteStoreFactory
from lightningstor.storage.local import LocalFsBackend, localStorageFactory
from tests.contract.storage_contract import failure_of

reactor: Any = global_reactor
MiB = 1 << 20
RESERVE = 8 * MiB


class FakeVolume:
    """A ``statvfs`` stand-in: ``free`` bytes available, calls counted, and
    whether any call came from the reactor thread."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.calls = 0
        self.on_reactor = False
        self.fail: OSError | None = None

    def __call__(self, path: str) -> os.statvfs_result:
        self.calls += 1
        self.on_reactor |= isInIOThread()
        if self.fail is not None:
            raise self.fail
        blocks = self.free // 4096
        # (bsize, frsize, blocks, bfree, bavail, files, ffree, favail, flag, namemax)
        return os.statvfs_result((4096, 4096, 1 << 30, blocks + 100, blocks, 0, 0, 0, 0, 255))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the reserve itself -------------------------------------------------------


def test_shortfall_only_below_the_reserve() -> None:
    """At or above the reserve nothing is refused; below it the reason names
    the free space and the configured reserve."""
    volume = FakeVolume(RESERVE)
    reserve = FreeSpaceReserve("/data", RESERVE, statvfs=volume, cache_seconds=0)
    assert reserve.shortfall() is None
    volume.free = RESERVE - 4096
    why = reserve.shortfall()
    assert why is not None
    assert "below the configured reserve" in why and str(RESERVE) in why and "/data" in why
    volume.free = 10 * RESERVE
    assert reserve.shortfall() is None


def test_zero_turns_it_off_without_a_syscall() -> None:
    volume = FakeVolume(0)
    reserve = FreeSpaceReserve("/data", 0, statvfs=volume)
    assert not reserve.enabled
    assert reserve.shortfall() is None
    assert volume.calls == 0


def test_statvfs_is_cached_for_a_short_time() -> None:
    """One statvfs per cache period, however many checks; a change of free
    space is seen once the period is over."""
    volume, clock = FakeVolume(RESERVE - 1), Clock()
    reserve = FreeSpaceReserve("/data", RESERVE, statvfs=volume, clock=clock, cache_seconds=0.5)
    for _ in range(100):
        assert reserve.shortfall() is not None
    assert volume.calls == 1
    volume.free = RESERVE * 2  # someone deleted
    clock.now += 0.4
    assert reserve.shortfall() is not None  # still the cached answer
    clock.now += 0.2
    assert reserve.shortfall() is None
    assert volume.calls == 2


def test_writes_are_charged_so_a_fast_disk_cannot_run_past_the_reserve() -> None:
    """Within one cache period, the bytes writes announce are debited from the
    cached answer; when it no longer clears the reserve statvfs is asked
    again at once (a tmpfs takes far more than a reserve in half a second)."""
    volume, clock = FakeVolume(RESERVE + 10 * MiB), Clock()
    reserve = FreeSpaceReserve("/data", RESERVE, statvfs=volume, clock=clock, cache_seconds=60)
    for _ in range(2):
        assert reserve.shortfall(4 * MiB) is None
        volume.free -= 4 * MiB  # the write lands
    assert volume.calls == 1
    assert reserve.shortfall(4 * MiB) is None  # 2 MiB left above the reserve: asked again, still fine
    assert volume.calls == 2
    volume.free -= 4 * MiB
    assert reserve.shortfall(4 * MiB) is not None  # really below now
    assert volume.calls == 3
    for _ in range(10):  # known short within the period: no statvfs per refusal
        assert reserve.shortfall(1) is not None
    assert volume.calls == 3


def test_concurrent_checks_share_one_refresh() -> None:
    """Threads that find the cache stale at once make one statvfs between them."""
    gate = threading.Event()
    volume = FakeVolume(RESERVE * 2)

    def slow_statvfs(path: str) -> os.statvfs_result:
        gate.wait(5)
        return volume(path)

    reserve = FreeSpaceReserve("/data", RESERVE, statvfs=slow_statvfs, cache_seconds=60)
    results: list[str | None] = []
    threads = [threading.Thread(target=lambda: results.append(reserve.shortfall())) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    gate.set()
    for t in threads:
        t.join(5)
    assert results == [None] * 8
    assert volume.calls == 1


def test_reserves_on_one_volume_share_its_cached_answer(tmp_path: Path) -> None:
    """The local backend's and the SQLite store's reserves on one disk share
    one cache (each must see what the other writes); another filesystem has
    its own; a path not created yet has none and refuses nothing."""
    (tmp_path / "data").mkdir()
    data = FreeSpaceReserve(str(tmp_path / "data"), 1)
    meta = FreeSpaceReserve(str(tmp_path), 2)
    assert data.volume() is not None and data.volume() is meta.volume()
    assert FreeSpaceReserve("/proc", 1).volume() is not data.volume()
    missing = FreeSpaceReserve(str(tmp_path / "not-yet"), 1)
    assert missing.volume() is None and missing.shortfall(10) is None
    real = data.free_bytes()
    assert real is not None and real > 0


def test_a_shared_volume_is_read_through_the_asker_s_own_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Removing the directory that first found the volume (a test's tmp dir,
    an old data dir) must not blind the other reserves on it."""
    monkeypatch.setattr(diskspace, "_volumes", {})  # ``first`` finds the volume first
    first = tmp_path / "first"
    first.mkdir()
    gone = FreeSpaceReserve(str(first), 1)
    assert gone.free_bytes() is not None
    first.rmdir()
    other = FreeSpaceReserve(str(tmp_path), 1)
    assert other.volume() is gone.volume()
    time.sleep(diskspace.CACHE_SECONDS + 0.1)  # the cached answer expires
    assert other.free_bytes() is not None


def test_a_failing_statvfs_refuses_nothing() -> None:
    """An unreadable volume is not reported as full: the write itself will fail
    if the volume is really gone."""
    volume = FakeVolume(0)
    volume.fail = OSError(5, "Input/output error")
    reserve = FreeSpaceReserve("/data", RESERVE, statvfs=volume, cache_seconds=0)
    assert reserve.free_bytes() is None
    assert reserve.shortfall() is None


def test_both_refusals_are_a_full_disk_with_the_reserve_message() -> None:
    """507 InsufficientStorage, like ENOSPC, but saying why (without the
    server's paths); the plain full-disk errors keep the default message."""
    for exc in (StorageBelowReserve("x"), MetadataBelowReserve("x")):
        assert isinstance(exc, (StorageFull, MetadataFull))
        answer = below_core(exc)
        assert isinstance(answer, InsufficientStorage)
        assert answer.status == 507 and answer.message == RESERVE_MESSAGE
        assert "reserve" in answer.message
    plain = below_core(StorageFull("disk full"))
    assert isinstance(plain, InsufficientStorage) and plain.message != RESERVE_MESSAGE


# -- what counts as object data in a metadata value ---------------------------


def _record(**kwargs: Any) -> ObjectRecord:
    base: dict[str, Any] = {"key": "k", "size": 0, "etag": "e", "created_at": 1}
    base.update(kwargs)
    return ObjectRecord(**base)


def test_the_separator_is_the_record_format_s() -> None:
    """The metadata store recognises inline data by the core's record format."""
    assert diskspace.INLINE_DATA_SEPARATOR == records.INLINE_SEPARATOR
    data = b"\x00abc\x00" * 100
    assert inline_data(records.encode_object(_record(size=len(data), inline=data))) == data


def test_records_without_object_data_carry_none() -> None:
    """Delete markers, chunked objects, empty objects, buckets: no object data."""
    assert inline_data(records.encode_object(_record(delete_marker=True))) is None
    assert inline_data(records.encode_object(_record(size=5, chunks=[ChunkRef("ab" * 16, 0, 5, 1)]))) is None
    assert inline_data(records.encode_object(_record(inline=b""))) is None
    bucket = Bucket(name="b", bucket_id="id", org_id="o", project_id=None, created_at=1, updated_at=1, created_by="u")
    assert inline_data(records.encode_bucket(bucket)) is None
    assert inline_data(b'{"v":1,"name":"nul\\u0000 escaped"}') is None


# -- configuration ----------------------------------------------------------


def test_config_default_range_and_value(tmp_path: Path) -> None:
    assert load_settings(env={}).storage.min_free_bytes == DEFAULT_MIN_FREE_BYTES == 64 * MiB
    conf = tmp_path / "c.toml"
    conf.write_text("[storage]\nmin_free_bytes = 0\n")
    assert load_settings(str(conf), env={}).storage.min_free_bytes == 0
    for bad in ("-1", str(MAX_MIN_FREE_BYTES + 1), '"64MiB"', "true"):
        conf.write_text(f"[storage]\nmin_free_bytes = {bad}\n")
        with pytest.raises(ConfigProblems, match="storage.min_free_bytes"):
            load_settings(str(conf), env={})


def test_the_metadata_store_takes_the_storage_reserve(tmp_path: Path) -> None:
    """[storage.local] wins with the local backend, as for the backend itself."""
    conf = tmp_path / "c.toml"
    conf.write_text("[storage]\nmin_free_bytes = 1000\n[storage.local]\nmin_free_bytes = 2000\n")
    assert configured_min_free_bytes(load_settings(str(conf), env={}).to_dict()) == 2000
    conf.write_text("[storage]\nmin_free_bytes = 1000\n")
    assert configured_min_free_bytes(load_settings(str(conf), env={}).to_dict()) == 1000
    settings = {"storage": {"backend": "distributed", "min_free_bytes": 5, "options": {"local": {"min_free_bytes": 7}}}}
    assert configured_min_free_bytes(settings) == 5
    assert configured_min_free_bytes({}) == DEFAULT_MIN_FREE_BYTES
    with pytest.raises(ConfigError, match="storage.local.min_free_bytes"):
        configured_min_free_bytes({"storage": {"options": {"local": {"min_free_bytes": -1}}}})


# -- the local backend ----------------------------------------------------------


def test_local_factory_reads_the_reserve(tmp_path: Path, io_pool: ThreadPool) -> None:
    context = PluginContext(reactor=reactor, io_pool=io_pool, data_dir=str(tmp_path))
    assert localStorageFactory.create({}, context).reserve.min_free_bytes == DEFAULT_MIN_FREE_BYTES
    assert localStorageFactory.create({"min_free_bytes": 0}, context).reserve.min_free_bytes == 0
    backend = localStorageFactory.create({"min_free_bytes": 0, "local": {"min_free_bytes": 123}}, context)
    assert backend.reserve.min_free_bytes == 123
    assert backend.reserve.path == backend.base_path
    with pytest.raises(ConfigError, match="storage.local.min_free_bytes"):
        localStorageFactory.create({"local": {"min_free_bytes": "1G"}}, context)


def _backend(tmp_path: Path, io_pool: ThreadPool, volume: FakeVolume) -> LocalFsBackend:
    backend = LocalFsBackend(str(tmp_path / "store"), reactor, io_pool, fsync=False)
    backend.reserve = FreeSpaceReserve(backend.base_path, RESERVE, statvfs=volume, cache_seconds=0)
    return backend


CHUNK_A = "aa" * 16
CHUNK_B = "bb" * 16


@pytest_twisted.ensureDeferred
async def test_local_refuses_chunk_writes_below_the_reserve(tmp_path: Path, io_pool: ThreadPool) -> None:
    """put_chunk and a streamed chunk are refused while short (leaving no
    file behind); reads and deletes still work; writes resume once space is
    back.  statvfs ran in the io pool, never on the reactor."""
    volume = FakeVolume(RESERVE * 4)
    backend = _backend(tmp_path, io_pool, volume)
    await backend.put_chunk(CHUNK_A, b"a" * 1000)

    volume.free = RESERVE - 1
    failure = await failure_of(backend.put_chunk(CHUNK_B, b"b" * 1000))
    assert failure.check(StorageBelowReserve)
    assert "below the configured reserve" in str(failure.value)
    writer = backend.open_chunk(CHUNK_B)
    failure = await failure_of(writer.write(b"b" * 1000))
    assert failure.check(StorageBelowReserve)
    await writer.abort()
    assert not await backend.chunk_exists(CHUNK_B)
    assert os.listdir(os.path.join(backend.base_path, "tmp")) == []

    assert await backend.get_chunk(CHUNK_A) == b"a" * 1000
    assert await backend.delete_chunk(CHUNK_A) is True

    volume.free = RESERVE
    await backend.put_chunk(CHUNK_B, b"b" * 1000)
    assert await backend.get_chunk(CHUNK_B) == b"b" * 1000
    assert volume.calls >= 3 and not volume.on_reactor


@pytest_twisted.ensureDeferred
async def test_local_refuses_a_chunk_when_space_runs_out_mid_write(tmp_path: Path, io_pool: ThreadPool) -> None:
    """Every append is checked, not only the first: a long chunk stops when
    the volume crosses the reserve under it."""
    volume = FakeVolume(RESERVE * 4)
    backend = _backend(tmp_path, io_pool, volume)
    writer = backend.open_chunk(CHUNK_A)
    await writer.write(b"x" * 4096)
    volume.free = RESERVE - 1
    failure = await failure_of(writer.write(b"x" * 4096))
    assert failure.check(StorageBelowReserve)
    await writer.abort()
    assert not await backend.chunk_exists(CHUNK_A)


# -- the SQLite store ------------------------------------------------------------


def _store(stores: list[SqliteMetadataStore], tmp_path: Path, volume: FakeVolume) -> SqliteMetadataStore:
    store = SqliteMetadataStore(str(tmp_path / "meta.db"), reactor)
    store.reserve = FreeSpaceReserve(str(tmp_path), RESERVE, statvfs=volume, cache_seconds=0)
    stores.append(store)
    return store


def _inline(data: bytes, **kwargs: Any) -> bytes:
    return records.encode_object(_record(size=len(data), inline=data, **kwargs))


SMALL = b"s" * 4096
OTHER = b"o" * 4096
MARKER = records.encode_object(_record(delete_marker=True))


def test_sqlite_factory_takes_the_reserve_from_the_settings(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    settings = {"storage": {"backend": "local", "min_free_bytes": 4321, "options": {}}}
    context = PluginContext(reactor=reactor, io_pool=None, data_dir=str(tmp_path), settings=settings)
    store = sqliteStoreFactory.create({}, context)
    stores.append(store)
    assert store.reserve.min_free_bytes == 4321
    assert store.reserve.path == str(tmp_path)
    memory = SqliteMetadataStore(":memory:", reactor, min_free_bytes=4321)
    stores.append(memory)
    assert not memory.reserve.enabled


@pytest_twisted.ensureDeferred
async def test_sqlite_refuses_new_inline_data_below_the_reserve(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """A new small object, a copy of one to another key and an overwrite with
    other bytes are refused while short; nothing of theirs is applied."""
    volume = FakeVolume(RESERVE * 4)
    store = _store(stores, tmp_path, volume)
    await store.txn([], [Put(b"obj/a", _inline(SMALL))])

    volume.free = RESERVE - 1
    for ops in (
        [Put(b"obj/new", _inline(SMALL)), Put(b"usage/1", b'{"b":4096}')],  # new object
        [Put(b"obj/copy", _inline(SMALL))],  # same bytes, but the source stays
        [Put(b"obj/a", _inline(OTHER))],  # overwrite with other bytes
    ):
        failure = await failure_of(store.txn([], ops))
        assert failure.check(MetadataBelowReserve)
        assert "below the configured reserve" in str(failure.value)
        # Rolled back to its savepoint: known not applied, so a PUT's chunks
        # are deleted at once rather than left to the collector for a day.
        assert not may_have_committed(failure.value)
    assert await store.get(b"obj/new") is None and await store.get(b"usage/1") is None
    assert await store.get(b"obj/copy") is None
    kv = await store.get(b"obj/a")
    assert kv is not None and inline_data(kv.value) == SMALL
    assert not volume.on_reactor

    volume.free = RESERVE  # space is back
    assert (await store.txn([], [Put(b"obj/new", _inline(SMALL))])).succeeded


@pytest_twisted.ensureDeferred
async def test_sqlite_keeps_deletes_and_moves_working_below_the_reserve(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """Deletes, delete markers, a versioned delete moving the data to a
    version key, promoting it back, re-tagging, empty objects and records
    without data all commit while short."""
    volume = FakeVolume(RESERVE * 4)
    store = _store(stores, tmp_path, volume)
    await store.txn([], [Put(b"obj/a", _inline(SMALL)), Put(b"obj/b", _inline(OTHER)), Put(b"obj/c", _inline(SMALL))])
    volume.free = 0

    # Versioned DELETE: the current record moves to a version key, a marker replaces it.
    demoted = _inline(SMALL, version_id="v1")
    assert (await store.txn([], [Put(b"ver/a/1", demoted), Put(b"obj/a", MARKER)])).succeeded
    # Deleting the marker promotes the version back.
    assert (await store.txn([], [Delete(b"ver/a/1"), Put(b"obj/a", _inline(SMALL))])).succeeded
    # Tagging rewrites the record with the same data.
    kv = await store.get(b"obj/b")
    assert kv is not None
    tagged = _inline(OTHER, tags={"t": "1"})
    assert (await store.txn([Compare(b"obj/b", kv.mod_revision)], [Put(b"obj/b", tagged)])).succeeded
    # Plain deletes, an empty object, records without object data.
    assert (await store.txn([], [Delete(b"obj/c")])).succeeded
    assert (await store.txn([], [Put(b"obj/empty", _inline(b""))])).succeeded
    assert (await store.txn([], [Put(b"bucket/x", b'{"v":1,"deleting":true}')])).succeeded
    assert await store.get(b"obj/c") is None
    kv = await store.get(b"obj/b")
    assert kv is not None and kv.value == tagged


@pytest_twisted.ensureDeferred
async def test_a_refused_txn_fails_alone_in_its_batch(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """Group commit: the txns queued with a refused one still commit."""
    volume = FakeVolume(0)
    store = _store(stores, tmp_path, volume)
    await store.check()
    pending = [store.txn([], [Put(b"meta/%d" % i, b"{}")]) for i in range(5)]
    refused = store.txn([], [Put(b"obj/new", _inline(SMALL))])
    pending += [store.txn([], [Delete(b"meta/0")])]
    for d in pending:
        assert (await d).succeeded
    failure = await failure_of(refused)
    assert failure.check(MetadataBelowReserve) and not may_have_committed(failure.value)
    assert await store.get(b"meta/1") is not None and await store.get(b"meta/0") is None


@pytest_twisted.ensureDeferred
async def test_sqlite_off_or_not_short_accepts_everything(tmp_path: Path, stores: list[SqliteMetadataStore]) -> None:
    """With room (or the reserve off), inline writes go through, and the old
    values are not even read."""
    volume = FakeVolume(RESERVE * 4)
    store = _store(stores, tmp_path, volume)
    assert (await store.txn([], [Put(b"obj/a", _inline(SMALL))])).succeeded
    off = SqliteMetadataStore(str(tmp_path / "off.db"), reactor, min_free_bytes=0)
    stores.append(off)
    assert (await off.txn([], [Put(b"obj/a", _inline(SMALL))])).succeeded


def _page_count(path: Path) -> int:
    """The database's size in pages, as another connection sees it (WAL included)."""
    conn = sqlite3.connect(str(path))
    try:
        count: int = conn.execute("PRAGMA page_count").fetchone()[0]
        return count
    finally:
        conn.close()


@pytest_twisted.ensureDeferred
async def test_sqlite_reuses_the_pages_deleted_objects_freed_below_the_reserve(
    tmp_path: Path, stores: list[SqliteMetadataStore]
) -> None:
    """Deleting small objects frees pages inside the file, not on the volume:
    while short, new inline data is let through as long as those free pages
    can hold it, and the file does not grow; then it is refused again."""
    volume = FakeVolume(RESERVE * 4)
    store = _store(stores, tmp_path, volume)
    await store.txn([], [Put(b"obj/%03d" % i, _inline(SMALL)) for i in range(64)])
    volume.free = RESERVE - 1
    failure = await failure_of(store.txn([], [Put(b"obj/new", _inline(OTHER))]))
    assert failure.check(MetadataBelowReserve)  # no free pages yet

    for i in range(32):
        assert (await store.txn([], [Delete(b"obj/%03d" % i)])).succeeded
    pages = _page_count(tmp_path / "meta.db")
    accepted = 0
    for i in range(32):
        try:
            await store.txn([], [Put(b"new/%03d" % i, _inline(OTHER))])
        except MetadataBelowReserve:
            break
        accepted += 1
    # 32 freed 4 KiB objects make room for fewer new ones (the charge is
    # generous), but for some, and never for all of them again.
    assert 8 <= accepted < 32, accepted
    assert _page_count(tmp_path / "meta.db") <= pages
    for i in range(accepted):
        kv = await store.get(b"new/%03d" % i)
        assert kv is not None and inline_data(kv.value) == OTHER
    assert await store.get(b"new/%03d" % accepted) is None

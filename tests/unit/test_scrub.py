"""core/scrub.py on real plugins (SQLite + the local backend): what a scrub pass
finds, and how the ScrubService reports it.  Runs with pytest-twisted's default
reactor (``@pytest_twisted.ensureDeferred``)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from prometheus_client import CollectorRegistry
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.python.threadpool import ThreadPool

from lightningstor.checksums import crc32c
from lightningstor.core import chunkindex, keys
from lightningstor.core.records import encode_object
from lightningstor.core.scrub import (
    CORRUPT,
    INDEX,
    MISSING,
    ScrubReport,
    ScrubService,
    iter_problem_lines,
    scrub,
)
from lightningstor.core.types import ChunkRef, ObjectRecord
from lightningstor.errors import StorageError
from lightningstor.interfaces.metadata import Delete, Put
from lightningstor.metadata.sqlite import SqliteMetadataStore
from lightningstor.metrics import S3Metrics
from lightningstor.storage.local import LocalFsBackend

reactor: Any = global_reactor


class Stores:
    """A SQLite store and a local backend in a temp dir, plus helpers that
    write records and chunks the way the core's commit does."""

    def __init__(self, tmp_path: Path, io: ThreadPool) -> None:
        self.store = SqliteMetadataStore(str(tmp_path / "meta.db"), reactor)
        self.backend = LocalFsBackend(str(tmp_path / "chunks"), reactor, io)
        self.root = tmp_path / "chunks"

    async def put_object(self, key: str, sizes: list[int], *, index: bool = True) -> list[ChunkRef]:
        refs = []
        offset = 0
        for size in sizes:
            data = os.urandom(size)
            chunk_id = uuid.uuid4().hex
            await self.backend.put_chunk(chunk_id, data)
            refs.append(ChunkRef(chunk_id, offset, size, crc32c(data)))
            offset += size
        record = ObjectRecord(key=key, size=offset, etag="e", created_at=1, chunks=refs)
        okey = keys.object_key("b" * 32, key)
        ops: list[Any] = [Put(okey, encode_object(record))]
        if index:
            hint = chunkindex.object_hint("b" * 32, key, 1)
            ops += [Put(keys.chunk_key(r.chunk_id), hint) for r in refs]
        await self.store.txn([], ops)
        return refs

    def path(self, chunk_id: str) -> Path:
        return next(self.root.rglob(chunk_id))


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    io = ThreadPool(1, 4, "test-io")
    io.start()
    s = Stores(tmp_path, io)
    yield s
    pytest_twisted.blockon(s.store.close())
    io.stop()


@pytest_twisted.ensureDeferred
async def test_inline_objects_are_records_without_chunks(stores: Stores) -> None:
    """An inline object's data follows its record's JSON; the scrub reads
    past it (the data may look like JSON, or hold NULs) and checks the rest."""
    await stores.put_object("chunked", [1000])
    for i, data in enumerate([b'{"chunks":[["x",0,1,0]]}', b"\x00\xff" * 100]):
        record = ObjectRecord(key=f"inline{i}", size=len(data), etag="e", created_at=1, inline=data)
        await stores.store.txn([], [Put(keys.object_key("b" * 32, f"inline{i}"), encode_object(record))])
    report = await scrub(stores.store, stores.backend)
    assert report.ok, report.problems
    assert report.records == 3 and report.chunks_checked == 1


@pytest_twisted.ensureDeferred
async def test_clean_store_has_no_problems(stores: Stores) -> None:
    """Every referenced chunk is read in full and counted; a healthy store reports nothing."""
    await stores.put_object("a", [1000, 2000])
    await stores.put_object("b", [70000])
    report = await scrub(stores.store, stores.backend)
    assert report.ok
    assert (report.records, report.chunks_checked, report.bytes_checked, report.index_entries) == (2, 3, 73000, 3)


@pytest_twisted.ensureDeferred
async def test_flipped_byte_and_deleted_file_are_found(stores: Stores) -> None:
    """A flipped byte is reported as corrupt and a deleted chunk file as missing,
    each naming the chunk and the record that holds it; other chunks stay clean."""
    bad, gone, good = await stores.put_object("k", [100000, 5000, 3000])
    path = stores.path(bad.chunk_id)
    raw = bytearray(path.read_bytes())
    raw[70000] ^= 0x01
    path.write_bytes(bytes(raw))
    stores.path(gone.chunk_id).unlink()
    report = await scrub(stores.store, stores.backend)
    found = {(p.kind, p.chunk_id) for p in report.problems}
    assert found == {(CORRUPT, bad.chunk_id), (MISSING, gone.chunk_id)}
    assert all(p.record_key == keys.object_key("b" * 32, "k") for p in report.problems)
    assert report.bytes_checked == good.size


@pytest_twisted.ensureDeferred
async def test_a_chunk_the_backend_cannot_read_is_unverified_and_the_pass_goes_on(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend error that is neither "missing" nor "corrupt" (a read that
    times out every time: an unfound RADOS object) ended the whole pass, so
    nothing after that chunk was ever checked again.  It is counted as
    unverified now, and the damage after it is still found."""
    stuck, bad, good = await stores.put_object("k", [3000, 4000, 5000])
    path = stores.path(bad.chunk_id)
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0x01
    path.write_bytes(bytes(raw))
    real = stores.backend.get_chunk

    def get_chunk(chunk_id: str) -> Deferred[bytes]:
        if chunk_id == stuck.chunk_id:
            return fail(StorageError("read timed out after 5s"))
        return real(chunk_id)

    monkeypatch.setattr(stores.backend, "get_chunk", get_chunk)
    report = await scrub(stores.store, stores.backend)
    assert [(p.kind, p.chunk_id) for p in report.problems] == [(CORRUPT, bad.chunk_id)]
    assert (report.unverified, report.chunks_checked, report.bytes_checked) == (1, 3, good.size)
    assert "unverified=1" in list(iter_problem_lines(report))[-1]


@pytest_twisted.ensureDeferred
async def test_crc_mismatch_with_metadata_is_corrupt(stores: Stores) -> None:
    """A chunk whose file is internally consistent but whose bytes are not the
    ones the record's CRC32C describes (a swapped file) is corrupt."""
    first, second = await stores.put_object("k", [4000, 4000])
    stores.path(first.chunk_id).write_bytes(stores.path(second.chunk_id).read_bytes())
    report = await scrub(stores.store, stores.backend)
    assert [(p.kind, p.chunk_id) for p in report.problems] == [(CORRUPT, first.chunk_id)]


@pytest_twisted.ensureDeferred
async def test_index_is_audited_both_ways(stores: Stores) -> None:
    """A referenced chunk without an index entry (the collector would delete it)
    and an entry that leads elsewhere are index problems; an entry no record
    lists (a commit still to come, or a delete's leftover) is only counted.
    The missing entry is written again, so the next pass finds it."""
    (unindexed,) = await stores.put_object("k", [100], index=False)
    (kept,) = await stores.put_object("j", [100])
    (misled,) = await stores.put_object("m", [100])
    await stores.store.txn([], [Delete(keys.object_key("b" * 32, "j"))])
    await stores.store.txn([], [Put(keys.chunk_key(misled.chunk_id), chunkindex.object_hint("b" * 32, "other", 1))])
    report = await scrub(stores.store, stores.backend)
    assert sorted((p.kind, p.chunk_id) for p in report.problems) == sorted(
        [(INDEX, unindexed.chunk_id), (INDEX, misled.chunk_id)]
    )
    assert report.unreferenced_entries == 1
    assert report.index_entries_recreated == 1
    entry = await stores.store.get(keys.chunk_key(unindexed.chunk_id))
    assert entry is not None and chunkindex.names_holder(entry.value, keys.object_key("b" * 32, "k"))
    again = await scrub(stores.store, stores.backend)
    assert [(p.kind, p.chunk_id) for p in again.problems] == [(INDEX, misled.chunk_id)]


@pytest_twisted.ensureDeferred
async def test_service_runs_on_its_interval_and_counts_in_metrics(stores: Stores) -> None:
    """ScrubService runs one interval after start (not at start) and feeds each
    report to its hook; S3Metrics counts problems by kind."""
    (ref,) = await stores.put_object("k", [100])
    stores.path(ref.chunk_id).unlink()
    clock = Clock()
    metrics = S3Metrics(CollectorRegistry())
    reports: list[ScrubReport] = []

    def hook(report: ScrubReport) -> None:
        reports.append(report)
        metrics.scrub_finished(report)

    service = ScrubService(stores.store, stores.backend, clock, interval_seconds=3600, on_report=hook)
    service.startService()
    assert reports == []
    assert metrics.registry.get_sample_value("lightningstor_scrub_errors_total", {"kind": "missing"}) is None
    clock.advance(3600)
    while not reports:  # the pass itself runs on the real reactor's threads
        await _sleep(0.01)
    await service.stopService()
    assert metrics.registry.get_sample_value("lightningstor_scrub_errors_total", {"kind": "missing"}) == 1.0
    assert metrics.registry.get_sample_value("lightningstor_scrub_errors_total", {"kind": "corrupt"}) == 0.0


async def _sleep(seconds: float) -> None:
    from twisted.internet.task import deferLater

    await deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_a_chunks_checksum_is_computed_off_the_reactor_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole chunks (up to 64 MiB, ~20 ms of CRC32C) are checked in a thread:
    the scrub of a busy server must not stall its requests."""
    from twisted.internet.defer import succeed
    from twisted.python.threadable import isInIOThread

    from lightningstor.core import scrub as scrub_module

    on_reactor: list[bool] = []

    def recording_crc(data: bytes) -> int:
        on_reactor.append(isInIOThread())
        return crc32c(data)

    monkeypatch.setattr(scrub_module, "crc32c", recording_crc)
    data = os.urandom(4096)

    class Backend:
        def get_chunk(self, chunk_id: str) -> Any:
            return succeed(data)

    ref = ChunkRef(chunk_id=uuid.uuid4().hex, offset=0, size=len(data), checksum=crc32c(data))
    assert await scrub_module.verify_chunk(Backend(), ref) is None  # type: ignore[arg-type]
    bad = ChunkRef(chunk_id=ref.chunk_id, offset=0, size=len(data), checksum=ref.checksum ^ 1)
    assert await scrub_module.verify_chunk(Backend(), bad) == CORRUPT  # type: ignore[arg-type]
    assert on_reactor == [False, False]


@pytest_twisted.ensureDeferred
async def test_a_record_overwritten_during_the_pass_is_no_damage(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass reads a page of records, then their chunks: on a live store a
    record of the page may be overwritten meanwhile and its chunks freed.
    Those are not reported missing (nothing was lost), nor are index entries
    written again for them; a chunk its record still lists, gone, still is."""
    old = await stores.put_object("a", [1000, 1000])
    (lost,) = await stores.put_object("z", [500])
    stores.path(lost.chunk_id).unlink()
    original = stores.backend.get_chunk
    moved: list[bool] = []

    async def overwrite_a() -> None:
        # The live store moves on: "a" is overwritten, its old chunks freed
        # (index entries removed, then the files deleted), as a commit does.
        await stores.put_object("a", [700])
        await stores.store.txn([], [Delete(keys.chunk_key(r.chunk_id)) for r in old])
        for ref in old:
            stores.path(ref.chunk_id).unlink()

    def get_chunk(chunk_id: str) -> Any:
        if chunk_id == old[0].chunk_id and not moved:
            moved.append(True)
            return Deferred.fromCoroutine(overwrite_a()).addCallback(lambda _: original(chunk_id))
        return original(chunk_id)

    monkeypatch.setattr(stores.backend, "get_chunk", get_chunk)
    report = await scrub(stores.store, stores.backend)
    assert moved
    assert [(p.kind, p.chunk_id) for p in report.problems] == [(MISSING, lost.chunk_id)]
    assert report.index_entries_recreated == 0
    for ref in old:
        assert await stores.store.get(keys.chunk_key(ref.chunk_id)) is None


@pytest_twisted.ensureDeferred
async def test_a_stop_ends_a_pass_in_progress_at_its_next_chunk(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass reads every chunk (hours on a large store) and the stop waited
    for all of it, past shutdown_timeout_seconds, until the supervisor or
    systemd killed the process.  The stop now ends it at its next chunk,
    without a report (a partial pass counts no errors)."""
    for i in range(40):
        await stores.put_object(f"k{i}", [100])
    real = stores.backend.get_chunk
    reads: list[str] = []

    async def slow(chunk_id: str) -> bytes:
        reads.append(chunk_id)
        await _sleep(0.05)
        return await real(chunk_id)

    monkeypatch.setattr(stores.backend, "get_chunk", lambda chunk_id: Deferred.fromCoroutine(slow(chunk_id)))
    clock = Clock()
    reports: list[ScrubReport] = []
    service = ScrubService(stores.store, stores.backend, clock, interval_seconds=3600, on_report=reports.append)
    service.startService()
    clock.advance(3600)
    while len(reads) < 3:
        await _sleep(0.01)
    await service.stopService()
    assert len(reads) <= 5, len(reads)
    assert reports == []


@pytest_twisted.ensureDeferred
async def test_a_stop_during_the_index_scan_ends_the_pass_at_its_next_entry(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop was asked only before each chunk of a record: once the pass
    had reached the chunk index (tens of seconds on a store of millions of
    chunks) it ran to its end.  Now each index entry asks too."""
    from lightningstor.core.scrub import ScrubStopped

    for i in range(12):
        await stores.put_object(f"k{i}", [100])
    real_scan = stores.store.scan
    index_pages: list[bytes] = []

    def scan(start: bytes, end: bytes, *args: Any, **kwargs: Any) -> Any:
        if start.startswith(keys.CHUNKS):
            index_pages.append(start)
        return real_scan(start, end, *args, **kwargs)

    monkeypatch.setattr(stores.store, "scan", scan)
    with pytest.raises(ScrubStopped):
        await scrub(stores.store, stores.backend, page=2, stopping=lambda: bool(index_pages))
    assert len(index_pages) == 1  # 6 pages of 2 entries without the stop

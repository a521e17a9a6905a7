"""ChunkManager: streaming object bodies into chunks while hashing, and reading
ranges back, against the real local backend and a real reactor and thread pools."""

from __future__ import annotations

import hashlib
import itertools
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor as global_reactor
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from lightningstor import errors
from lightningstor.checksums import crc32c, new_hasher
from lightningstor.core.types import ChunkRef
from lightningstor.errors import ChunkCorrupted, ChunkNotFound, StorageError
from lightningstor.interfaces.storage import BackendCapabilities
from lightningstor.storage import chunks as chunks_module
from lightningstor.storage.chunks import ChunkManager, ObjectWriter, WriteResult
from lightningstor.storage.local import LocalFsBackend
from tests.contract.storage_contract import failure_of, payload

# The installed reactor, typed loosely: its static type lacks IReactorFromThreads.
reactor: Any = global_reactor

KiB = 1024
CHUNK = 256 * KiB
PIECE = 64 * KiB
INLINE = 64 * KiB
BIG = CHUNK * 7 // 2  # 3.5 chunks


# -- fixtures and helpers ----------------------------------------------------------


def started_pool(name: str) -> ThreadPool:
    pool = ThreadPool(minthreads=1, maxthreads=2, name=name)
    pool.start()
    return pool


@pytest.fixture
def pools() -> Iterator[tuple[ThreadPool, ThreadPool]]:
    """(io pool, cpu pool), started for the test and stopped after it."""
    io, cpu = started_pool("test-io"), started_pool("test-cpu")
    yield io, cpu
    io.stop()
    cpu.stop()


@pytest.fixture
def backend(tmp_path: Path, pools: tuple[ThreadPool, ThreadPool]) -> LocalFsBackend:
    return LocalFsBackend(str(tmp_path / "store"), reactor, pools[0], fsync=False)


@pytest.fixture
def make_manager(pools: tuple[ThreadPool, ThreadPool]) -> Callable[..., ChunkManager]:
    """Build a ChunkManager over a backend with the small test sizes by default."""

    def build(backend: Any, **kwargs: Any) -> ChunkManager:
        options: dict[str, Any] = {"chunk_size": CHUNK, "piece_size": PIECE, "inline_threshold": INLINE}
        options.update(kwargs)
        return ChunkManager(backend, reactor, pools[1], **options)

    return build


@pytest.fixture
def manager(backend: LocalFsBackend, make_manager: Callable[..., ChunkManager]) -> ChunkManager:
    return make_manager(backend)


async def store(
    manager: ChunkManager, data: bytes, slices: list[int] | None = None, algorithms: tuple[str, ...] = ()
) -> WriteResult:
    """Write ``data`` through a new writer, in ``slices`` (cycled) if given."""
    writer = manager.new_writer(algorithms)
    feed(writer, data, slices)
    return await writer.finish()


def feed(writer: ObjectWriter, data: bytes, slices: list[int] | None = None) -> None:
    sizes = itertools.cycle(slices or [len(data) or 1])
    pos = 0
    while pos < len(data):
        n = next(sizes)
        writer.write(data[pos : pos + n])
        pos += n


async def read_all(manager: ChunkManager, result: WriteResult, offset: int = 0, length: int | None = None) -> bytes:
    """Read a range piece by piece, checking every piece's size and that none crosses a chunk."""
    length = result.size - offset if length is None else length
    reader = manager.read(result.chunks, result.inline, offset, length)
    out = bytearray()
    while (piece := await reader.next_piece()) is not None:
        assert 0 < len(piece) <= manager.piece_size
        first, last = offset + len(out), offset + len(out) + len(piece) - 1
        assert first // manager.chunk_size == last // manager.chunk_size, "piece crosses a chunk"
        out += piece
    return bytes(out)


def expected_chunks(data: bytes, chunk_size: int = CHUNK) -> list[tuple[int, int, int]]:
    """(offset, size, crc32c) of the chunks a one-shot split of ``data`` gives."""
    return [
        (start, len(data[start : start + chunk_size]), crc32c(data[start : start + chunk_size]))
        for start in range(0, len(data), chunk_size)
    ]


def layout(result: WriteResult) -> list[tuple[int, int, int]]:
    return [(c.offset, c.size, c.checksum) for c in result.chunks]


async def stored_ids(backend: LocalFsBackend) -> set[str]:
    return {info.chunk_id for info in await backend.list_chunks()}


def tmp_files(backend: LocalFsBackend) -> list[Path]:
    tmp = Path(backend.base_path, "tmp")
    return list(tmp.iterdir()) if tmp.exists() else []


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the reactor run until ``condition()`` holds (thread pools work meanwhile)."""
    for _ in range(int(timeout / 0.002)):
        if condition():
            return
        await deferLater(reactor, 0.002)
    raise AssertionError("condition never became true")


# -- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, INLINE, INLINE + 1, CHUNK, BIG])
@pytest_twisted.ensureDeferred
async def test_round_trip(manager: ChunkManager, backend: LocalFsBackend, size: int) -> None:
    """Bodies up to inline_threshold come back inline with no chunks; larger ones
    are split at exact multiples of chunk_size with correct CRC32C refs, stored
    on the backend (nothing else, no temp files) and read back identically."""
    data = payload(size, seed=size)
    result = await store(manager, data)
    assert result.size == size
    assert result.md5_hex == hashlib.md5(data).hexdigest()
    if size <= INLINE:
        assert (result.inline, result.chunks) == (data, [])
        assert await stored_ids(backend) == set()
    else:
        assert result.inline is None
        assert layout(result) == expected_chunks(data)
        assert await stored_ids(backend) == {c.chunk_id for c in result.chunks}
    assert tmp_files(backend) == []
    assert await read_all(manager, result) == data


@pytest.mark.parametrize("size", [10, BIG])
@pytest_twisted.ensureDeferred
async def test_digests_match_one_shot(manager: ChunkManager, size: int) -> None:
    """MD5 and the requested checksums equal independent one-shot computations,
    for inline and chunked bodies alike."""
    data = payload(size, seed=3)
    algorithms = ("crc32", "CRC32C", "crc64nvme", "sha1", "sha256")
    result = await store(manager, data, slices=[1000, 70_000], algorithms=algorithms)
    assert result.md5_hex == hashlib.md5(data).hexdigest()
    assert result.digests["sha256"] == hashlib.sha256(data).digest()
    assert result.digests["sha1"] == hashlib.sha1(data).digest()
    assert result.digests["crc32"] == zlib.crc32(data).to_bytes(4, "big")
    assert result.digests["crc32c"] == crc32c(data).to_bytes(4, "big")
    one_shot = new_hasher("crc64nvme")
    one_shot.update(data)
    assert result.digests["crc64nvme"] == one_shot.digest()
    assert set(result.digests) == {"crc32", "crc32c", "crc64nvme", "sha1", "sha256"}
    assert layout(result) == ([] if size <= INLINE else expected_chunks(data))


@pytest_twisted.ensureDeferred
async def test_md5_requested_as_algorithm(manager: ChunkManager) -> None:
    """Asking for md5 explicitly yields its raw digest and the same ETag hex."""
    data = payload(BIG, seed=4)
    result = await store(manager, data, algorithms=("md5",))
    assert result.digests == {"md5": hashlib.md5(data).digest()}
    assert result.md5_hex == hashlib.md5(data).hexdigest()


@pytest_twisted.ensureDeferred
async def test_chunked_bodies_are_hashed_off_the_reactor(
    manager: ChunkManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every hasher update of a chunked body runs in the CPU pool, never on the
    reactor thread (hashlib releases the GIL there, using the second core)."""
    threads: list[str] = []

    class Spy:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def update(self, data: bytes) -> None:
            threads.append(threading.current_thread().name)
            self.inner.update(data)

        def digest(self) -> bytes:
            return bytes(self.inner.digest())

    real = chunks_module.new_hasher
    monkeypatch.setattr(chunks_module, "new_hasher", lambda name: Spy(real(name)))
    data = payload(BIG, seed=24)
    result = await store(manager, data, algorithms=("sha256",))
    assert result.md5_hex == hashlib.md5(data).hexdigest()
    assert threads and threading.main_thread().name not in threads
    assert all(name.startswith("PoolThread-test-cpu") for name in threads), set(threads)


def test_unknown_algorithm_rejected(manager: ChunkManager) -> None:
    """An unknown checksum algorithm fails at new_writer, before any byte arrives."""
    with pytest.raises(ValueError):
        manager.new_writer(("crc99",))


class InlinePool:
    """A "thread pool" that runs work at once: with :class:`InlineReactor` the
    whole write path completes synchronously, so property tests need no reactor."""

    def callInThreadWithCallback(self, on_result: Callable[[bool, Any], None], f: Any, *args: Any) -> None:
        try:
            result = f(*args)
        except Exception:
            on_result(False, Failure())
        else:
            on_result(True, result)


class InlineReactor:
    def callFromThread(self, f: Any, *args: Any) -> None:
        f(*args)


class MemoryWriter:
    def __init__(self, backend: MemoryBackend, chunk_id: str) -> None:
        self.backend, self.chunk_id, self.data = backend, chunk_id, bytearray()

    def write(self, data: bytes) -> Deferred[None]:
        self.data += data
        return succeed(None)

    def commit(self) -> Deferred[None]:
        self.backend.chunks[self.chunk_id] = bytes(self.data)
        return succeed(None)

    def abort(self) -> Deferred[None]:
        return succeed(None)


class MemoryBackend:
    """Synchronous in-memory chunks: just what ChunkManager calls."""

    name = "memory"

    def __init__(self) -> None:
        self.chunks: dict[str, bytes] = {}

    def capabilities(self) -> BackendCapabilities:
        return BackendCapabilities(max_chunk_size=64 << 20)

    def open_chunk(self, chunk_id: str) -> MemoryWriter:
        return MemoryWriter(self, chunk_id)

    def get_chunk_range(self, chunk_id: str, offset: int, length: int) -> Deferred[bytes]:
        return succeed(self.chunks[chunk_id][offset : offset + length])

    def delete_chunk(self, chunk_id: str) -> Deferred[bool]:
        return succeed(self.chunks.pop(chunk_id, None) is not None)


def result_of(d: Deferred[Any]) -> Any:
    """The result of an already-fired Deferred (re-raising a failure)."""
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "Deferred has not fired"
    if isinstance(box[0], Failure):
        box[0].raiseException()
    return box[0]


SMALL_CHUNK, SMALL_PIECE, SMALL_INLINE = 4096, 1024, 1000


@settings(max_examples=60, derandomize=True, deadline=None, database=None)
@given(
    size=st.integers(min_value=0, max_value=4 * SMALL_CHUNK),
    slices=st.lists(st.integers(min_value=1, max_value=3 * SMALL_PIECE), min_size=1, max_size=30),
)
def test_any_write_slicing_gives_identical_chunks(size: int, slices: list[int]) -> None:
    """However the body is sliced into write() calls, the chunks (offsets, sizes,
    CRCs), the digests and the stored bytes are those of a one-shot split, and
    every range reads back as the same slice of the original."""
    memory = MemoryBackend()
    manager = ChunkManager(
        memory,  # type: ignore[arg-type]
        InlineReactor(),  # type: ignore[arg-type]
        InlinePool(),  # type: ignore[arg-type]
        chunk_size=SMALL_CHUNK,
        piece_size=SMALL_PIECE,
        inline_threshold=SMALL_INLINE,
    )
    data = payload(size, seed=size)
    writer = manager.new_writer(("sha256",))
    feed(writer, data, slices)
    result: WriteResult = result_of(writer.finish())
    assert result.md5_hex == hashlib.md5(data).hexdigest()
    assert result.digests["sha256"] == hashlib.sha256(data).digest()
    if size <= SMALL_INLINE:
        assert result.inline == data and memory.chunks == {}
        return
    assert layout(result) == expected_chunks(data, SMALL_CHUNK)
    assert b"".join(memory.chunks[c.chunk_id] for c in result.chunks) == data
    for offset, length in [(0, size), (SMALL_CHUNK - 1, SMALL_PIECE + 2), (size // 3, size // 2)]:
        reader = manager.read(result.chunks, None, offset, length)
        pieces = []
        while (piece := result_of(reader.next_piece())) is not None:
            pieces.append(piece)
        assert b"".join(pieces) == data[offset : offset + length]
        assert all(len(p) <= SMALL_PIECE for p in pieces)


@pytest_twisted.ensureDeferred
async def test_chunk_size_not_a_multiple_of_piece_size(backend: LocalFsBackend, make_manager: Any) -> None:
    """Chunk boundaries stay exact when pieces do not divide the chunk size."""
    manager = make_manager(backend, chunk_size=100_000, piece_size=30_000, inline_threshold=0)
    data = payload(450_001, seed=6)
    result = await store(manager, data, slices=[12_345])
    assert layout(result) == expected_chunks(data, 100_000)
    assert await read_all(manager, result, 99_990, 200_020) == data[99_990:300_010]


@pytest_twisted.ensureDeferred
async def test_inline_threshold_above_piece_size(backend: LocalFsBackend, make_manager: Any) -> None:
    """With inline_threshold > piece_size the writer holds several pieces' worth
    and still inlines or chunks correctly on either side of the threshold."""
    manager = make_manager(backend, inline_threshold=3 * PIECE + 1)
    at = payload(3 * PIECE + 1, seed=7)
    over = payload(3 * PIECE + 2, seed=8)
    assert (await store(manager, at, slices=[5000])).inline == at
    result = await store(manager, over, slices=[5000])
    assert result.inline is None and layout(result) == expected_chunks(over)


@pytest_twisted.ensureDeferred
async def test_inline_disabled_per_writer(manager: ChunkManager) -> None:
    """new_writer(inline_threshold=-1) stores even tiny bodies as chunks; an empty
    body then has neither chunks nor inline data."""
    writer = manager.new_writer(inline_threshold=-1)
    writer.write(b"tiny")
    result = await writer.finish()
    assert result.inline is None and layout(result) == expected_chunks(b"tiny")
    empty = await manager.new_writer(inline_threshold=-1).finish()
    assert (empty.size, empty.chunks, empty.inline) == (0, [], None)
    assert await read_all(manager, empty) == b""


@pytest_twisted.ensureDeferred
async def test_bytes_received(manager: ChunkManager) -> None:
    """bytes_received counts every byte handed to write()."""
    writer = manager.new_writer()
    writer.write(b"a" * 10)
    writer.write(b"")
    writer.write(b"b" * 100_000)
    assert writer.bytes_received == 100_010
    await writer.abort()


@pytest_twisted.ensureDeferred
async def test_write_after_finish_and_double_finish(manager: ChunkManager) -> None:
    """write() after finish() raises; a second finish() fails."""
    writer = manager.new_writer()
    writer.write(b"x")
    await writer.finish()
    with pytest.raises(RuntimeError):
        writer.write(b"y")
    (await failure_of(writer.finish())).trap(RuntimeError)


def test_chunk_size_over_backend_limit(backend: LocalFsBackend, make_manager: Any) -> None:
    """A chunk_size the backend cannot store is refused up front."""
    with pytest.raises(ValueError):
        make_manager(backend, chunk_size=backend.max_chunk_size + 1)


# -- reads ---------------------------------------------------------------------------------


class RecordingBackend:
    """Delegates to a real backend, recording get_chunk_range calls."""

    def __init__(self, inner: LocalFsBackend) -> None:
        self.inner = inner
        self.ranges: list[tuple[str, int, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_chunk_range(self, chunk_id: str, offset: int, length: int) -> Deferred[bytes]:
        self.ranges.append((chunk_id, offset, length))
        return self.inner.get_chunk_range(chunk_id, offset, length)

    def get_chunk_range_crc(self, chunk_id: str, offset: int, length: int, crc: int) -> Deferred[tuple[bytes, int]]:
        self.ranges.append((chunk_id, offset, length))
        return self.inner.get_chunk_range_crc(chunk_id, offset, length, crc)


@pytest.mark.parametrize(
    ("offset", "length"),
    [
        (0, 1),
        (CHUNK - 1, 2),  # straddles chunks 0 and 1
        (CHUNK, CHUNK),  # exactly chunk 1
        (CHUNK - 10, 2 * CHUNK + 20),  # chunks 0..3
        (3 * CHUNK + 5, 10 * CHUNK),  # clipped at the end of the half chunk
        (BIG, 5),  # empty: starts at the end
        (100, 0),  # empty
    ],
)
@pytest_twisted.ensureDeferred
async def test_ranged_reads(backend: LocalFsBackend, make_manager: Any, offset: int, length: int) -> None:
    """A ranged read returns exactly the slice of the original and asks the
    backend only for the chunks the range touches."""
    recorder = RecordingBackend(backend)
    manager = make_manager(recorder)
    data = payload(BIG, seed=9)
    result = await store(manager, data)
    reader = manager.read(result.chunks, None, offset, length)
    assert (reader.size, reader.offset, reader.length) == (BIG, min(offset, BIG), len(data[offset : offset + length]))
    assert await read_all(manager, result, offset, length) == data[offset : offset + length]
    end = min(offset + length, BIG)
    touched = {c.chunk_id for c in result.chunks if c.offset < end and c.offset + c.size > offset and length}
    assert {chunk_id for chunk_id, _, _ in recorder.ranges} == touched


@pytest_twisted.ensureDeferred
async def test_inline_ranged_reads(manager: ChunkManager) -> None:
    """Inline objects are served from memory in pieces, ranges clipped at the end."""
    data = payload(1000, seed=10)
    result = await store(manager, data)
    assert await read_all(manager, result) == data
    assert await read_all(manager, result, 990, 50) == data[990:]
    small = manager.read([], data, 0, 1000)
    assert await small.next_piece() is data  # whole inline body: no copy
    assert await small.next_piece() is None


def test_read_rejects_bad_arguments(manager: ChunkManager) -> None:
    """Negative ranges, and inline data together with chunks, are programming errors."""
    with pytest.raises(ValueError):
        manager.read([], b"x", -1, 1)
    with pytest.raises(ValueError):
        manager.read([ChunkRef("ab", 0, 1, 0)], b"x", 0, 1)


@pytest_twisted.ensureDeferred
async def test_corrupted_chunk_file_fails_reader(manager: ChunkManager, backend: LocalFsBackend) -> None:
    """A bit flipped on disk in chunk 1 surfaces as ChunkCorrupted from the
    reader after chunk 0's pieces were served correctly."""
    data = payload(BIG, seed=11)
    result = await store(manager, data)
    [path] = Path(backend.base_path, "chunks").rglob(result.chunks[1].chunk_id)
    raw = bytearray(path.read_bytes())
    raw[1000] ^= 0x01
    path.write_bytes(bytes(raw))
    reader = manager.read(result.chunks, None, 0, BIG)
    got = bytearray()
    for _ in range(CHUNK // PIECE):
        piece = await reader.next_piece()
        assert piece is not None
        got += piece
    assert bytes(got) == data[:CHUNK]
    (await failure_of(reader.next_piece())).trap(ChunkCorrupted)
    (await failure_of(reader.next_piece())).trap(ChunkCorrupted)  # stays failed


@pytest_twisted.ensureDeferred
async def test_checksum_mismatch_detected_at_last_piece(manager: ChunkManager) -> None:
    """A whole-chunk read whose bytes do not match ChunkRef.checksum fails at
    that chunk's last piece; a partial read of it is not checked end-to-end."""
    data = payload(CHUNK, seed=12)
    result = await store(manager, data)
    [ref] = result.chunks
    wrong = [ChunkRef(ref.chunk_id, ref.offset, ref.size, ref.checksum ^ 1)]
    reader = manager.read(wrong, None, 0, CHUNK)
    for i in range(CHUNK // PIECE - 1):
        assert await reader.next_piece() == data[i * PIECE : (i + 1) * PIECE]
    (await failure_of(reader.next_piece())).trap(ChunkCorrupted)
    partial = WriteResult(CHUNK, "", {}, wrong, None)
    assert await read_all(manager, partial, 1, CHUNK - 1) == data[1:]


@pytest_twisted.ensureDeferred
async def test_missing_chunk_fails_reader(manager: ChunkManager, backend: LocalFsBackend) -> None:
    """A chunk deleted from the backend fails the reader with ChunkNotFound."""
    result = await store(manager, payload(BIG, seed=13))
    await backend.delete_chunk(result.chunks[0].chunk_id)
    reader = manager.read(result.chunks, None, 0, BIG)
    (await failure_of(reader.next_piece())).trap(ChunkNotFound)


@pytest_twisted.ensureDeferred
async def test_short_chunk_is_corruption(manager: ChunkManager) -> None:
    """A chunk shorter than its ChunkRef says is reported as ChunkCorrupted."""
    result = await store(manager, payload(CHUNK + 10, seed=14))
    last = result.chunks[-1]
    longer = [*result.chunks[:-1], ChunkRef(last.chunk_id, last.offset, last.size + 5, last.checksum)]
    reader = manager.read(longer, None, CHUNK, 15)
    (await failure_of(reader.next_piece())).trap(ChunkCorrupted)


# -- abort and clean-up ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_abort_after_finish_deletes_chunks(manager: ChunkManager, backend: LocalFsBackend) -> None:
    """abort() after finish() (the metadata commit failed) deletes the object's
    chunks; a second abort() is harmless."""
    writer = manager.new_writer()
    feed(writer, payload(BIG, seed=15))
    result = await writer.finish()
    assert len(await stored_ids(backend)) == 4
    await writer.abort()
    await writer.abort()  # a second abort is harmless
    assert await stored_ids(backend) == set()
    (await failure_of(manager.read(result.chunks, None, 0, 1).next_piece())).trap(ChunkNotFound)


@pytest_twisted.ensureDeferred
async def test_abort_mid_stream(manager: ChunkManager, backend: LocalFsBackend) -> None:
    """abort() while pieces are in flight leaves no chunk and no temp file; later
    writes are ignored and finish() fails with CancelledError."""
    writer = manager.new_writer()
    feed(writer, payload(2 * CHUNK + PIECE, seed=16), slices=[PIECE])
    chunks_dir = Path(backend.base_path, "chunks")
    await until(lambda: any(p.is_file() for p in chunks_dir.rglob("*")))  # a chunk landed
    await writer.abort()
    writer.write(b"ignored")
    (await failure_of(writer.finish())).trap(CancelledError)
    assert await stored_ids(backend) == set()
    assert tmp_files(backend) == []


@pytest_twisted.ensureDeferred
async def test_abort_during_finish(manager: ChunkManager, backend: LocalFsBackend) -> None:
    """abort() racing a pending finish() makes finish fail with CancelledError and
    leaves nothing stored."""
    writer = manager.new_writer()
    feed(writer, payload(BIG, seed=17))
    finishing = writer.finish()
    await writer.abort()
    (await failure_of(finishing)).trap(CancelledError)
    assert await stored_ids(backend) == set()
    assert tmp_files(backend) == []


@pytest_twisted.ensureDeferred
async def test_delete_chunks_best_effort(manager: ChunkManager, backend: LocalFsBackend) -> None:
    """delete_chunks accepts refs and ids, skips missing and invalid ones and never fails."""
    result = await store(manager, payload(BIG, seed=18))
    ids: list[ChunkRef | str] = [*result.chunks[:2], result.chunks[2].chunk_id, "0123456789abcdef", "../../nope"]
    await manager.delete_chunks(ids)  # never fails, despite the missing and invalid ids
    assert await stored_ids(backend) == {result.chunks[3].chunk_id}


# -- backpressure ------------------------------------------------------------------------


class GatedWriter:
    def __init__(self, backend: GatedBackend) -> None:
        self.backend = backend

    def write(self, data: bytes) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.backend.pending.append(d)
        return d

    def commit(self) -> Deferred[None]:
        return succeed(None)

    def abort(self) -> Deferred[None]:
        return succeed(None)


class GatedBackend:
    """In-memory stand-in whose chunk writes complete only when the test says so."""

    name = "gated"

    def __init__(self) -> None:
        self.pending: list[Deferred[None]] = []

    def capabilities(self) -> BackendCapabilities:
        return BackendCapabilities(max_chunk_size=64 << 20)

    def open_chunk(self, chunk_id: str) -> GatedWriter:
        return GatedWriter(self)

    def delete_chunk(self, chunk_id: str) -> Deferred[bool]:
        return succeed(False)


@pytest_twisted.ensureDeferred
async def test_backpressure_flags(make_manager: Any) -> None:
    """should_pause turns on with more than two pieces waiting, and when_drained
    fires (and should_pause turns off) only once at most one piece is left."""
    gated = GatedBackend()
    writer = make_manager(gated).new_writer()
    writer.write(payload(INLINE, seed=19))  # held: not above the inline threshold yet
    assert not writer.should_pause
    writer.write(payload(4 * PIECE - INLINE, seed=20))  # now 4 pieces go to the lane
    assert writer.should_pause
    drained = writer.when_drained()
    assert not drained.called

    await until(lambda: len(gated.pending) == 1)
    gated.pending.pop(0).callback(None)  # 3 pieces left
    await until(lambda: len(gated.pending) == 1)
    assert writer.should_pause and not drained.called
    gated.pending.pop(0).callback(None)  # 2 pieces left: no more pause, but not drained
    await until(lambda: len(gated.pending) == 1)
    assert not writer.should_pause and not drained.called
    gated.pending.pop(0).callback(None)  # 1 piece left
    assert drained.called
    assert writer.when_drained().called

    finished = writer.finish()
    await until(lambda: len(gated.pending) == 1)
    gated.pending.pop(0).callback(None)
    result = await finished
    assert result.size == 4 * PIECE and len(result.chunks) == 1


# -- failure injection ---------------------------------------------------------------------


class FailingBackend:
    """Delegates to a real backend; the Nth chunk writer fails at ``stage``."""

    def __init__(self, inner: LocalFsBackend, stage: str, nth: int = 2) -> None:
        self.inner = inner
        self.stage = stage
        self.nth = nth
        self.opened = 0
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def open_chunk(self, chunk_id: str) -> Any:
        self.opened += 1
        writer = self.inner.open_chunk(chunk_id)
        if self.opened != self.nth:
            return writer
        if self.stage == "open":
            raise StorageError("disk on fire (open)")
        if self.stage == "write":

            def write(data: bytes) -> Deferred[None]:
                self.failed = True
                return fail(StorageError("disk on fire (write)"))

            writer.write = write  # type: ignore[method-assign]
        if self.stage == "commit":
            real_commit = writer.commit

            def commit() -> Deferred[None]:
                d = real_commit()  # the file lands, then the backend reports failure
                return d.addCallback(lambda _: fail(StorageError("disk on fire (commit)")))

            writer.commit = commit  # type: ignore[method-assign]
        return writer


@pytest.mark.parametrize("stage", ["open", "write", "commit"])
@pytest_twisted.ensureDeferred
async def test_backend_failure_on_second_chunk(
    backend: LocalFsBackend, make_manager: Any, stage: str
) -> None:
    """A backend failure on the second chunk fails finish() with that error,
    leaves no chunk or temp file behind, ignores later writes and still
    allows abort()."""
    manager = make_manager(FailingBackend(backend, stage))
    writer = manager.new_writer()
    feed(writer, payload(BIG, seed=21), slices=[PIECE])
    failure = await failure_of(writer.finish())
    failure.trap(StorageError)
    assert stage in str(failure.value)
    assert await stored_ids(backend) == set()
    assert tmp_files(backend) == []
    writer.write(b"ignored")
    assert not writer.should_pause and writer.when_drained().called
    await writer.abort()  # still works, never fails


@pytest_twisted.ensureDeferred
async def test_failure_before_finish_is_reported_by_finish(backend: LocalFsBackend, make_manager: Any) -> None:
    """A failure while the body is still arriving is held and reported by finish()."""
    failing = FailingBackend(backend, "write", nth=1)
    writer = make_manager(failing).new_writer()
    writer.write(payload(INLINE + 1, seed=22))
    writer.write(payload(PIECE, seed=23))
    await until(lambda: failing.failed)
    writer.write(b"more")
    (await failure_of(writer.finish())).trap(StorageError)
    assert tmp_files(backend) == []


# -- chunk commits in the background ---------------------------------------------------


class CommitGatedWriter:
    def __init__(self, backend: CommitGatedBackend, chunk_id: str) -> None:
        self.backend, self.chunk_id, self.data = backend, chunk_id, bytearray()

    def write(self, data: bytes) -> Deferred[None]:
        self.backend.events.append(("write", self.chunk_id))
        self.data += data
        return succeed(None)

    def commit(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()

        def landed(result: Any) -> Any:
            if not isinstance(result, Failure):
                self.backend.chunks[self.chunk_id] = bytes(self.data)
                self.backend.events.append(("durable", self.chunk_id))
            return result

        self.backend.commits.append(d)
        self.backend.events.append(("commit", self.chunk_id))
        return d.addBoth(landed)

    def abort(self) -> Deferred[None]:
        self.backend.events.append(("abort", self.chunk_id))
        return succeed(None)


class CommitGatedBackend:
    """In memory; a chunk is durable only when the test fires its commit."""

    name = "commit-gated"

    def __init__(self) -> None:
        self.chunks: dict[str, bytes] = {}
        self.commits: list[Deferred[None]] = []
        self.events: list[tuple[str, str]] = []
        self.opened: list[str] = []

    def capabilities(self) -> BackendCapabilities:
        return BackendCapabilities(max_chunk_size=64 << 20)

    def open_chunk(self, chunk_id: str) -> CommitGatedWriter:
        self.opened.append(chunk_id)
        return CommitGatedWriter(self, chunk_id)

    def delete_chunk(self, chunk_id: str) -> Deferred[bool]:
        self.events.append(("delete", chunk_id))
        return succeed(self.chunks.pop(chunk_id, None) is not None)

    def written(self, chunk_id: str) -> int:
        return sum(1 for event in self.events if event == ("write", chunk_id))

    def pending_commits(self) -> list[Deferred[None]]:
        return [d for d in self.commits if not d.called]


async def settle() -> None:
    """Give the reactor and the pools a moment (for "nothing more happens")."""
    await deferLater(reactor, 0.05)


@pytest_twisted.ensureDeferred
async def test_chunk_commit_overlaps_next_chunk_and_finish_waits_for_every_commit(make_manager: Any) -> None:
    """While a full chunk is being committed (fsync), the next chunk is
    already written; at most ``commits_in_flight`` commits run (the lane
    waits at the next boundary); finish() delivers a result only after every
    chunk, the last included, is durable."""
    gated = CommitGatedBackend()
    writer = make_manager(gated, commits_in_flight=1).new_writer()
    data = payload(2 * CHUNK + CHUNK // 2, seed=40)
    feed(writer, data, slices=[PIECE])
    await until(lambda: len(gated.opened) == 2 and gated.written(gated.opened[1]) == CHUNK // PIECE)
    first, second = gated.opened
    assert gated.events.index(("commit", first)) < gated.events.index(("write", second))
    assert len(gated.pending_commits()) == 1  # chunk 1 still committing
    await settle()
    # Chunk 2 is full but may not start its commit, and chunk 3 waits.
    assert [e for e in gated.events if e[0] == "commit"] == [("commit", first)]
    assert len(gated.opened) == 2
    finished = writer.finish()
    gated.commits[0].callback(None)
    await until(lambda: len(gated.commits) == 3)  # chunk 2's commit, then chunk 3 (the end)
    assert not finished.called
    gated.commits[1].callback(None)
    await settle()
    assert not finished.called  # the last chunk is not durable yet
    gated.commits[2].callback(None)
    result = await finished
    assert layout(result) == expected_chunks(data)
    assert b"".join(gated.chunks[c.chunk_id] for c in result.chunks) == data


@pytest_twisted.ensureDeferred
async def test_commits_in_flight_two(make_manager: Any) -> None:
    """With two commits allowed, two full chunks commit at once while a third is written."""
    gated = CommitGatedBackend()
    writer = make_manager(gated, commits_in_flight=2).new_writer()
    data = payload(3 * CHUNK + PIECE, seed=41)
    feed(writer, data, slices=[PIECE])
    await until(lambda: len(gated.pending_commits()) == 2 and len(gated.opened) == 3)
    await until(lambda: gated.written(gated.opened[2]) == CHUNK // PIECE)
    await settle()
    assert len(gated.commits) == 2 and len(gated.opened) == 3  # the third waits for a slot
    finished = writer.finish()
    for n in range(4):
        await until(lambda: len(gated.commits) > n)  # noqa: B023 (awaited at once)
        gated.commits[n].callback(None)
    result = await finished
    assert layout(result) == expected_chunks(data)


@pytest.mark.parametrize("lane_busy", [True, False])
@pytest_twisted.ensureDeferred
async def test_failed_background_commit_fails_the_upload(make_manager: Any, lane_busy: bool) -> None:
    """A commit that fails while later chunks are written (or while the lane
    waits for more body) fails the writer: finish() reports the error, the
    open chunk is aborted and every chunk it opened is deleted, so nothing
    is acknowledged and nothing is left behind."""
    gated = CommitGatedBackend()
    writer = make_manager(gated).new_writer()
    feed(writer, payload(CHUNK + CHUNK // 2, seed=42), slices=[PIECE])
    await until(lambda: len(gated.opened) == 2 and gated.written(gated.opened[1]) == CHUNK // (2 * PIECE))
    if lane_busy:
        writer.write(payload(PIECE, seed=43))  # in the lane as the commit fails
    gated.commits[0].errback(StorageError("fsync failed"))
    if not lane_busy:
        # Nothing else will run the lane: the clean-up starts by itself.
        await until(lambda: ("delete", gated.opened[1]) in gated.events)
    writer.write(b"ignored after the failure")
    failure = await failure_of(writer.finish())
    failure.trap(StorageError)
    assert "fsync failed" in str(failure.value)
    first, second = gated.opened
    assert ("abort", second) in gated.events
    assert {("delete", first), ("delete", second)} <= set(gated.events)
    assert gated.chunks == {}
    await writer.abort()  # still fine


@pytest_twisted.ensureDeferred
async def test_abort_waits_for_commit_in_flight_before_deleting(make_manager: Any) -> None:
    """Aborting while a chunk commits deletes that chunk only after its
    commit landed (a delete first would let the rename resurrect it)."""
    gated = CommitGatedBackend()
    writer = make_manager(gated).new_writer()
    feed(writer, payload(CHUNK + PIECE, seed=44), slices=[PIECE])
    await until(lambda: len(gated.opened) == 2 and gated.written(gated.opened[1]) == 1)
    aborted = writer.abort()
    await settle()
    first = gated.opened[0]
    assert ("delete", first) not in gated.events and not aborted.called
    gated.commits[0].callback(None)
    await aborted
    assert gated.events.index(("durable", first)) < gated.events.index(("delete", first))
    assert gated.chunks == {}


@pytest_twisted.ensureDeferred
async def test_large_writes_are_pieces_without_a_copy(make_manager: Any) -> None:
    """A write of a quarter piece or more (a network read) reaches the chunk
    writer as the same bytes object; a small write buffered before it goes
    first as a short piece; chunk boundaries stay exact."""

    class Recording(CommitGatedBackend):
        def __init__(self) -> None:
            super().__init__()
            self.pieces: list[bytes] = []

        def open_chunk(self, chunk_id: str) -> CommitGatedWriter:
            chunk = super().open_chunk(chunk_id)
            original = chunk.write

            def write(data: bytes) -> Deferred[None]:
                self.pieces.append(data)
                return original(data)

            def commit() -> Deferred[None]:
                self.chunks[chunk_id] = bytes(chunk.data)
                return succeed(None)

            chunk.write = write  # type: ignore[method-assign]
            chunk.commit = commit  # type: ignore[method-assign]
            return chunk

    backend = Recording()
    writer = make_manager(backend, inline_threshold=0).new_writer()
    small, big = payload(100, seed=45), payload(PIECE - 7, seed=46)
    writer.write(small)
    writer.write(big)
    writer.write(payload(CHUNK, seed=47))  # crosses the chunk boundary: split there
    result = await writer.finish()
    pieces = backend.pieces
    assert pieces[0] == small and pieces[1] is big
    assert all(len(p) <= PIECE for p in pieces)
    assert [c.size for c in result.chunks] == [CHUNK, 100 + PIECE - 7]


# -- the write deadline (max_write_seconds) ----------------------------------------


def ticking(*readings: float) -> Callable[[], float]:
    """A monotonic clock that returns ``readings`` in turn (it is read when a
    chunk is opened and when the writer finishes), then the last one."""
    values = iter(readings)
    last = [0.0]

    def read() -> float:
        last[0] = next(values, last[0])
        return last[0]

    return read


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(
    "readings",
    [
        pytest.param((0.0, 5.0, 10.5), id="between-chunks"),
        pytest.param((0.0, 5.0, 6.0, 10.5), id="before-the-result"),
    ],
)
async def test_a_write_older_than_max_write_seconds_fails_and_leaves_nothing(
    backend: LocalFsBackend, make_manager: Callable[..., ChunkManager], readings: tuple[float, ...]
) -> None:
    """A write whose first chunk was opened more than ``max_write_seconds``
    ago (monotonic clock) gives no result: ``RequestTimeout``, and every chunk
    it stored is deleted, so it can never commit chunks the orphan collector
    may already be deleting."""
    manager = make_manager(backend, max_write_seconds=10, monotonic=ticking(*readings))
    writer = manager.new_writer()
    writer.write(payload(3 * CHUNK))
    with pytest.raises(errors.RequestTimeout) as caught:
        await writer.finish()
    assert caught.value.status == 400
    assert await stored_ids(backend) == set()


@pytest_twisted.ensureDeferred
async def test_a_write_within_max_write_seconds_succeeds(
    backend: LocalFsBackend, make_manager: Callable[..., ChunkManager]
) -> None:
    """Exactly at the bound (10 s after its first chunk) the write still gives its result."""
    manager = make_manager(backend, max_write_seconds=10, monotonic=ticking(0.0, 4.0, 8.0, 10.0))
    data = payload(3 * CHUNK)
    result = await store(manager, data)
    assert await read_all(manager, result) == data

"""Object bodies <-> chunks (SPEC §5.3), streaming, hashed off the reactor.

The write path receives an object body on the reactor thread as it comes off
the network and must neither block the reactor nor hold the body in memory:

* bytes accumulate into *pieces* (``piece_size``, 1 MiB by default); a large
  write (a network read of a quarter piece or more) is a piece by itself,
  without a copy;
* full pieces go through one ordered *lane*: each piece is hashed in the CPU
  pool (MD5 for the ETag, the requested x-amz-checksum-* algorithms, and the
  running CRC32C of its chunk unless the backend's chunk writer reports it),
  then written to the backend's chunk writer.  While piece N is being
  written (I/O pool), piece N+1 is already being hashed (CPU pool), so both
  cores work on one upload;
* chunks are cut exactly at multiples of ``chunk_size``: a piece that would
  straddle a boundary is split, so every chunk but the last has the same size
  and a range read maps to chunks by arithmetic;
* a full chunk is committed (made durable: fsync, rename, directory fsync)
  in the background while the next chunk is received, hashed and written;
  at most ``commits_in_flight`` commits run at once, and ``finish()`` gives
  a result only once every commit succeeded.  A failed commit fails the
  writer, which deletes every chunk it opened;
* bodies of at most ``inline_threshold`` bytes never reach the backend: they
  come back as ``inline`` bytes for the metadata record (one durable metadata
  commit instead of a file write, two fsyncs and a commit).
* with a ``cipher`` (SSE-S3, core/sse.py) each piece is hashed *and*
  encrypted in the same CPU-pool job: hashes over the plaintext, the chunk
  CRC32C over the ciphertext the backend stores (so backends, scrub and
  repair see opaque bytes); inline bytes are encrypted too.
* with ``max_write_seconds``, a write whose first chunk was opened longer
  ago than that (on a monotonic clock) stores no further chunk and fails
  with ``RequestTimeout`` instead of giving a result, deleting what it
  wrote.  Until its commit nothing references those chunks; the orphan
  collector (core/collector.py) removes chunks that stay unreferenced for
  its grace period, which must therefore be longer than any write can last.

The read path returns an object's range piece by piece, reading only the
chunks the range touches, so a response producer holds a bounded number of
pieces.  A backend with the ``chunk_crc32c`` capability computes the running CRC32C
checked against the chunk's metadata where it reads (off the reactor).
Encrypted pieces are decrypted after that check (CPU pool, or on the reactor
when small).
"""

from __future__ import annotations

import enum
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from twisted.internet.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from lightningstor import errors
from lightningstor.checksums import Hasher, crc32c, new_hasher
from lightningstor.core.types import ChunkRef, Encryption
from lightningstor.errors import ChunkCorrupted
from lightningstor.interfaces.storage import IChunkWriter, IStorageBackend
from lightningstor.storage.retired import RetiredChunks

if TYPE_CHECKING:
    from lightningstor.core.sse import DataCipher

_log = Logger()

KiB = 1 << 10
MiB = 1 << 20

# Bodies up to this size are hashed on the reactor thread: a thread hop costs
# about as much as hashing 64 KiB (~0.1 ms of MD5).
_HASH_INLINE_MAX = 64 * KiB
# Chunk deletions in flight at once: enough to keep the io pool busy without
# queueing a huge object's thousands of deletions in front of everyone else.
_DELETE_CONCURRENCY = 4


def _uuid_hex() -> str:
    return uuid.uuid4().hex


def _log_cleanup_failure(failure: Failure, chunk_id: str) -> None:
    _log.failure("Could not clean up chunk {chunk_id}", failure, chunk_id=chunk_id)


@dataclass(frozen=True)
class WriteResult:
    """What an :class:`ObjectWriter` stored.

    ``digests`` maps each requested algorithm to its raw digest (as
    :mod:`lightningstor.checksums` hashers produce it).  Exactly one of
    ``chunks`` (non-empty) and ``inline`` is set, except for an empty body
    written with inlining disabled (no chunks, ``inline`` None).
    """

    size: int
    md5_hex: str
    digests: dict[str, bytes]
    chunks: list[ChunkRef]
    inline: bytes | None
    # SSE-S3: how ``chunks``/``inline`` are encrypted (None: plaintext).
    encryption: Encryption | None = None


class ChunkManager:
    """Splits object bodies into chunks on a backend and reads them back.

    ``chunk_size`` must not exceed the backend's ``max_chunk_size``.
    ``inline_threshold < 0`` disables inlining (every non-empty body becomes
    chunks).  ``commits_in_flight`` bounds the chunk commits of one upload
    that run while its next chunk is written.  ``new_chunk_id`` is
    injectable so tests can predict ids.  ``max_write_seconds`` (None: no
    bound) limits how long a write may take from its first chunk to its
    result, measured on ``monotonic``.  ``free_delay_seconds`` (0: none)
    is how long freed chunks are kept before deletion (:meth:`retire_chunks`).
    """

    def __init__(
        self,
        backend: IStorageBackend,
        reactor: IReactorFromThreads,
        cpu_pool: ThreadPool,
        *,
        chunk_size: int = 8 * MiB,
        inline_threshold: int = 64 * KiB,
        piece_size: int = 1 * MiB,
        commits_in_flight: int = 1,
        new_chunk_id: Callable[[], str] = _uuid_hex,
        max_write_seconds: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        free_delay_seconds: float = 0.0,
    ) -> None:
        if chunk_size <= 0 or piece_size <= 0:
            raise ValueError("chunk_size and piece_size must be positive")
        if commits_in_flight < 1:
            raise ValueError("commits_in_flight must be >= 1")
        capabilities = backend.capabilities()
        limit = capabilities.max_chunk_size
        if chunk_size > limit:
            raise ValueError(f"chunk_size {chunk_size} exceeds the backend's max_chunk_size {limit}")
        self.backend = backend
        self.chunk_size = chunk_size
        self.inline_threshold = inline_threshold
        self.piece_size = piece_size
        self.commits_in_flight = commits_in_flight
        # The backend computes chunk CRCs itself (BackendCapabilities.chunk_crc32c).
        self.backend_crc32c = capabilities.chunk_crc32c
        # Reads pass each chunk's size and CRC to the backend
        # (BackendCapabilities.checked_reads), which serves only a copy
        # matching them.
        self.checked_reads = capabilities.checked_reads
        self._reactor = reactor
        # Chunks of versions gone for good, waiting out the delay that lets
        # reads in flight finish (storage/retired.py).
        self.retired = RetiredChunks(reactor, self.delete_chunks, free_delay_seconds)
        self._cpu_pool = cpu_pool
        self._new_chunk_id = new_chunk_id
        self.max_write_seconds = max_write_seconds
        self._monotonic = monotonic

    def new_writer(
        self,
        algorithms: Sequence[str] = (),
        *,
        inline_threshold: int | None = None,
        cipher: DataCipher | None = None,
    ) -> ObjectWriter:
        """A writer for one object body; ``algorithms`` are S3 checksum names.

        ``inline_threshold`` overrides the manager's for this body (for
        example ``-1`` where the caller cannot store inline data).
        ``cipher`` (SSE-S3, core/sse.py) encrypts every byte before it
        reaches the backend or the inline result; hashes and checksums stay
        over the plaintext, chunk CRCs are over the stored ciphertext.
        Unknown algorithms raise ``ValueError`` here, before any byte arrives.
        """
        hashers = {name.lower(): new_hasher(name) for name in algorithms}
        threshold = self.inline_threshold if inline_threshold is None else inline_threshold
        return ObjectWriter(self, hashers, threshold, cipher)

    def read(
        self,
        chunks: Sequence[ChunkRef],
        inline: bytes | None,
        offset: int,
        length: int,
        cipher: DataCipher | None = None,
    ) -> ObjectReader:
        """A reader of bytes ``[offset, offset + length)`` (clipped at the end).

        The order of ``chunks`` is authoritative: chunk N starts where chunk
        N-1 ends (``ChunkRef.offset`` is informational).  ``cipher``
        decrypts an encrypted object's bytes (after their CRC is checked).
        """
        return ObjectReader(self, list(chunks), inline, offset, length, cipher)

    def retire_chunks(self, chunks: Iterable[ChunkRef | str]) -> None:
        """Delete freed chunks after ``free_delay_seconds`` (storage/retired.py):
        readers that looked the old record up just before an overwrite or a
        delete can still finish.  Their index entries must be gone already."""
        self.retired.retire(c.chunk_id if isinstance(c, ChunkRef) else c for c in chunks)

    def flush_retired(self, timeout_seconds: float = 30.0) -> Deferred[int]:
        """Deferred[int]: delete every retired chunk now (shutdown, after
        requests drained); how many were left to the orphan collector."""
        d: Deferred[int] = self.retired.flush(timeout_seconds)
        return d

    def take_retired(self) -> list[tuple[float, list[str]]]:
        """Every retired chunk not yet deleted, as (seconds until due, ids)
        batches, deleting none (shutdown of a server whose store others
        share: core/freedchunks.py records them)."""
        return self.retired.take_pending()

    def delete_chunks(self, chunks: Iterable[ChunkRef | str]) -> Deferred[None]:
        """Delete chunks, best effort: failures are logged, never raised.

        Chunks left behind are found later by the orphan collector.
        """
        ids = [c.chunk_id if isinstance(c, ChunkRef) else c for c in chunks]
        return Deferred.fromCoroutine(self._delete_all(ids))

    async def _delete_all(self, ids: list[str]) -> None:
        pending = iter(ids)

        async def worker() -> None:
            for chunk_id in pending:
                d = maybeDeferred(self.backend.delete_chunk, chunk_id)
                await d.addErrback(_log_cleanup_failure, chunk_id)

        workers = min(_DELETE_CONCURRENCY, len(ids))
        await DeferredList([Deferred.fromCoroutine(worker()) for _ in range(workers)])

    def _in_cpu(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return deferToThreadPool(self._reactor, self._cpu_pool, f, *args)


# -- writing -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Segment:
    """Part of the body that lies within one chunk, as queued in the lane."""

    data: bytes
    offset: int  # in the object
    starts_chunk: bool


@dataclass(frozen=True, slots=True)
class _Hashed:
    segment: _Segment
    crc: int  # running CRC32C of its chunk up to the end of this segment
    # Encrypted objects: the bytes to store (ciphertext) and the chunk id
    # they were encrypted for (the chunk's counter prefix derives from it).
    stored: bytes | None = None
    chunk_id: str = ""


class _End:
    """Queued by ``finish()``: commit the open chunk after everything before it."""


_END = _End()


class _State(enum.Enum):
    OPEN = "open"  # accepting write()
    FINISHING = "finishing"  # finish() called, lane draining
    FINISHED = "finished"  # result delivered
    FAILED = "failed"  # a hash or backend step failed
    ABORTED = "aborted"


def _hash_segment(data: bytes, hashers: Sequence[Hasher], crc: int | None) -> int:
    """Feed ``data`` to every hasher; return the updated chunk CRC, or 0 when
    the backend computes it (``crc`` None) (CPU pool)."""
    for hasher in hashers:
        hasher.update(data)
    return 0 if crc is None else crc32c(data, crc)


def _hash_encrypt_segment(
    data: bytes, hashers: Sequence[Hasher], crc: int | None, cipher: DataCipher, chunk_id: str, within: int
) -> tuple[bytes, int]:
    """Hash the plaintext ``data`` (ETag and client checksums are over it,
    as on AWS), encrypt it at offset ``within`` of chunk ``chunk_id`` and
    return the ciphertext with the chunk CRC over the *stored* bytes (so
    scrub, repair and read verification work unchanged) (CPU pool)."""
    for hasher in hashers:
        hasher.update(data)
    stored = cipher.chunk(chunk_id, within, data)
    return stored, (0 if crc is None else crc32c(stored, crc))


def _hash_all(data: bytes, hashers: Sequence[Hasher]) -> None:
    for hasher in hashers:
        hasher.update(data)


class _Signal:
    """A one-shot event any number of parties can wait on."""

    def __init__(self) -> None:
        self.fired = False
        self._waiters: list[Deferred[None]] = []

    def wait(self) -> Deferred[None]:
        if self.fired:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def fire(self) -> None:
        self.fired = True
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)


class ObjectWriter:
    """Receives one object body on the reactor thread; see the module docstring.

    Use: ``write()`` as bytes arrive (pause the source while ``should_pause``
    and resume on ``when_drained()``), then ``finish()``.  ``abort()`` undoes
    everything, also after ``finish()`` (when committing the metadata fails).
    """

    def __init__(
        self,
        manager: ChunkManager,
        hashers: dict[str, Hasher],
        inline_threshold: int,
        cipher: DataCipher | None = None,
    ) -> None:
        self._m = manager
        self._cipher = cipher
        # Encrypted writers name each chunk when its first segment is
        # hashed (the ciphertext depends on the id); see _hash.
        self._hash_chunk_id = ""
        self._digest_hashers = hashers
        md5 = hashers["md5"] if "md5" in hashers else new_hasher("md5")
        self._md5 = md5
        self._hashers = [md5, *(h for h in hashers.values() if h is not md5)]
        self._inline_threshold = inline_threshold
        self._state = _State.OPEN
        self._failure: Failure | None = None
        # Reactor-side accumulation.
        self._buf = bytearray()
        self._received = 0
        self._enqueued = 0  # body bytes handed to the lane
        # The lane.
        self._queue: deque[_Segment | _End] = deque()
        self._backlog = 0  # bytes queued or in flight, not yet written
        self._lane_running = False
        self._idle_waiters: list[Deferred[None]] = []
        self._drain_waiters: list[Deferred[None]] = []
        self._hash_crc = 0
        # The backend's chunk writers report their chunk's CRC32C (computed
        # from the checksums they store anyway): no CRC pass in the CPU pool.
        self._backend_crc = manager.backend_crc32c
        # The write stage.
        self._chunk_writer: IChunkWriter | None = None
        self._chunk_id = ""
        self._chunk_start = 0
        self._chunk_len = 0
        self._chunk_crc = 0
        self._chunk_ids: list[str] = []  # every chunk opened, for clean-up
        self._chunks: list[ChunkRef] = []
        self._commits: list[Deferred[None]] = []  # chunk commits in flight, oldest first
        self._end_done = False
        self._cleanup: _Signal | None = None
        self._progress: Callable[[], None] | None = None
        # When the first chunk was opened (ChunkManager's monotonic clock).
        self._first_chunk_at: float | None = None

    # -- feeding -------------------------------------------------------------

    @property
    def bytes_received(self) -> int:
        return self._received

    @property
    def buffered_bytes(self) -> int:
        """Body bytes taken by ``write()`` and not yet written to the backend
        (0 once failed or aborted): what this upload holds in memory."""
        return len(self._buf) + self._backlog

    @property
    def queued_bytes(self) -> int:
        """The part of ``buffered_bytes`` in whole pieces, queued or in flight:
        it drains without further ``write()`` calls."""
        return self._backlog

    def set_progress_listener(self, listener: Callable[[], None] | None) -> None:
        """Call ``listener()`` (reactor thread) whenever ``buffered_bytes`` drops
        because bytes reached the backend or the writer stopped
        (s3/inflight.py keeps a server-wide account with it)."""
        self._progress = listener

    def _notify_progress(self) -> None:
        if self._progress is not None:
            self._progress()

    @property
    def should_pause(self) -> bool:
        """True while more than two pieces wait to be hashed and written."""
        active = self._state in (_State.OPEN, _State.FINISHING)
        return active and self._backlog > 2 * self._m.piece_size

    def when_drained(self) -> Deferred[None]:
        """Fires once at most one piece is waiting (at once if so already).

        Also fires when the writer fails or is aborted, so a paused source
        is never left paused; the error surfaces from ``finish()``.
        """
        if self._backlog <= self._m.piece_size or self._state not in (_State.OPEN, _State.FINISHING):
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._drain_waiters.append(d)
        return d

    def write(self, data: bytes) -> None:
        """Take the next bytes of the body; never blocks, ignored once failed/aborted."""
        if self._state in (_State.FAILED, _State.ABORTED):
            return
        if self._state is not _State.OPEN:
            raise RuntimeError("write() after finish()")
        if not data:
            return
        self._received += len(data)
        if self._received <= self._inline_threshold:
            self._buf += data
        elif type(data) is bytes and len(data) >= self._m.piece_size // 4:
            # Fast path for large writes (a network read of up to a piece or
            # so): ``data`` itself becomes the piece, copied only where a
            # chunk boundary splits it.  Pieces vary in size (only chunks
            # must be cut at exact offsets), so what is buffered goes first
            # as a short piece of its own.
            if self._buf:
                self._enqueue(bytes(self._buf))
                self._buf = bytearray()
            piece_size = self._m.piece_size
            if len(data) <= piece_size:
                self._enqueue(data)
            else:
                whole = len(data) - len(data) % piece_size
                for pos in range(0, whole, piece_size):
                    self._enqueue(data[pos : pos + piece_size])
                self._buf += memoryview(data)[whole:]
            self._kick()
        else:
            self._buf += data
            self._cut_pieces(final=False)

    def _cut_pieces(self, *, final: bool) -> None:
        piece_size = self._m.piece_size
        buf = self._buf
        while len(buf) >= piece_size or (final and buf):
            n = min(piece_size, len(buf))
            with memoryview(buf) as view:
                piece = view[:n].tobytes()
            del buf[:n]  # O(1) at the front of a bytearray
            self._enqueue(piece)
        self._kick()

    def _enqueue(self, piece: bytes) -> None:
        """Queue ``piece``, split where it crosses a chunk boundary."""
        chunk_size = self._m.chunk_size
        pos = 0
        while pos < len(piece):
            offset = self._enqueued
            within = offset % chunk_size
            n = min(chunk_size - within, len(piece) - pos)
            data = piece if n == len(piece) else piece[pos : pos + n]
            self._queue.append(_Segment(data, offset, within == 0))
            self._enqueued += n
            self._backlog += n
            pos += n

    # -- the lane ------------------------------------------------------------

    def _kick(self) -> None:
        if self._lane_running or not self._queue:
            return
        self._lane_running = True
        d = Deferred.fromCoroutine(self._lane())
        d.addErrback(self._fail)
        d.addBoth(self._lane_stopped)

    async def _lane(self) -> None:
        """Hash item N+1 while item N is written; stop at the first error."""
        ready: _Hashed | _End | None = None
        while self._active():
            nxt = self._queue.popleft() if self._queue else None
            if ready is None and nxt is None:
                return
            ops: list[Deferred[Any]] = []
            if ready is not None:
                ops.append(Deferred.fromCoroutine(self._store(ready)))
            if isinstance(nxt, _Segment):
                ops.append(self._hash(nxt))
            # Wait for both even if one fails: nothing may be in flight when
            # clean-up starts.
            results = await DeferredList(ops, consumeErrors=True)
            for ok, value in results:
                if not ok:
                    value.raiseException()
            ready = results[-1][1] if isinstance(nxt, _Segment) else nxt

    def _lane_stopped(self, _: object) -> None:
        self._lane_running = False
        if self._state is _State.FAILED:
            self._start_cleanup()
        waiters, self._idle_waiters = self._idle_waiters, []
        for d in waiters:
            d.callback(None)

    def _active(self) -> bool:
        """Still writing (a method, so type checkers re-read it after awaits)."""
        return self._state in (_State.OPEN, _State.FINISHING)

    def _hash(self, segment: _Segment) -> Deferred[_Hashed]:
        previous: int | None = 0 if segment.starts_chunk else self._hash_crc
        if self._backend_crc:
            previous = None
        if self._cipher is not None:
            return self._hash_encrypted(segment, previous, self._cipher)
        d = self._m._in_cpu(_hash_segment, segment.data, self._hashers, previous)

        def hashed(crc: int) -> _Hashed:
            self._hash_crc = crc
            return _Hashed(segment, crc)

        return d.addCallback(hashed)

    def _hash_encrypted(self, segment: _Segment, previous: int | None, cipher: DataCipher) -> Deferred[_Hashed]:
        """Hash and encrypt one segment in the CPU pool.  Segments are
        hashed in order, so a new chunk's id is drawn here, before its
        first bytes are encrypted, and travels with them to ``_store``."""
        if segment.starts_chunk:
            self._hash_chunk_id = self._m._new_chunk_id()
        chunk_id = self._hash_chunk_id
        within = segment.offset % self._m.chunk_size
        d = self._m._in_cpu(_hash_encrypt_segment, segment.data, self._hashers, previous, cipher, chunk_id, within)

        def hashed(result: tuple[bytes, int]) -> _Hashed:
            stored, crc = result
            self._hash_crc = crc
            return _Hashed(segment, crc, stored, chunk_id)

        return d.addCallback(hashed)

    async def _store(self, item: _Hashed | _End) -> None:
        if not self._active():
            return
        if isinstance(item, _End):
            if self._chunk_writer is not None:
                self._start_commit()
            # Every chunk durable before the result exists (a commit failure
            # fails the writer through _fail).
            await self._commits_settled()
            if self._active():
                self._end_done = True
            return
        segment = item.segment
        if self._chunk_writer is None:
            self._check_deadline()
            chunk_id = item.chunk_id or self._m._new_chunk_id()
            self._chunk_ids.append(chunk_id)
            self._chunk_writer = self._m.backend.open_chunk(chunk_id)
            self._chunk_id = chunk_id
            self._chunk_start = segment.offset
            self._chunk_len = 0
        await self._chunk_writer.write(segment.data if item.stored is None else item.stored)
        if not self._active():
            return  # aborted: counters were reset; clean-up aborts the writer
        self._chunk_len += len(segment.data)
        self._chunk_crc = item.crc
        self._backlog -= len(segment.data)
        self._maybe_drained()
        self._notify_progress()
        if self._chunk_len == self._m.chunk_size:
            # Bound the commits running in the background.
            while len(self._commits) >= self._m.commits_in_flight:
                await self._commits[0]
            if self._active():
                self._start_commit()

    def _start_commit(self) -> None:
        """Commit the open chunk (fsync, rename, directory fsync) in the
        background: the next chunk is received, hashed and written meanwhile.

        The chunk is listed now, in order; the result is only delivered once
        every commit succeeded (:meth:`_commits_settled`), and a failed commit
        fails the writer, whose clean-up deletes every chunk it opened.
        """
        writer, self._chunk_writer = self._chunk_writer, None
        assert writer is not None
        # Every write of this chunk has landed and none follows: the
        # backend's CRC (from its block checksums) covers exactly its bytes.
        crc = writer.crc32c if self._backend_crc else self._chunk_crc  # type: ignore[attr-defined]
        expect = getattr(writer, "expect_crc32c", None)
        if expect is not None:
            # End to end: the backend checks the bytes it stores against
            # the CRC recorded in the object's metadata (IChunkWriter).
            expect(crc)
        self._chunks.append(ChunkRef(self._chunk_id, self._chunk_start, self._chunk_len, crc))
        settled: Deferred[None] = Deferred()  # never fails
        self._commits.append(settled)

        def done(result: object) -> None:
            self._commits.remove(settled)
            if isinstance(result, Failure):
                self._fail(result)
                if not self._lane_running and self._state is _State.FAILED:
                    self._start_cleanup()  # else the lane starts it as it stops
            settled.callback(None)

        maybeDeferred(writer.commit).addBoth(done)

    async def _commits_settled(self) -> None:
        """Wait until no commit is in flight (each one succeeded or failed)."""
        while self._commits:
            await self._commits[0]

    def _when_idle(self) -> Deferred[None]:
        if not self._lane_running:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle_waiters.append(d)
        return d

    def _maybe_drained(self, force: bool = False) -> None:
        if force or self._backlog <= self._m.piece_size:
            waiters, self._drain_waiters = self._drain_waiters, []
            for d in waiters:
                d.callback(None)

    def _stop_lane(self, state: _State) -> None:
        self._state = state
        self._queue.clear()
        self._buf = bytearray()
        self._backlog = 0
        self._maybe_drained(force=True)
        self._notify_progress()

    def _fail(self, failure: Failure) -> None:
        if self._state is _State.ABORTED:
            return
        self._failure = failure
        self._stop_lane(_State.FAILED)

    # -- ending --------------------------------------------------------------

    def finish(self) -> Deferred[WriteResult]:
        """Flush and commit the rest; Deferred[WriteResult].

        Fails with the first backend or hashing error (after deleting what was
        written), or ``CancelledError`` if ``abort()`` came first.
        """
        if self._state in (_State.FINISHING, _State.FINISHED):
            return fail(RuntimeError("finish() called twice"))
        if self._state is _State.ABORTED:
            return fail(CancelledError("the writer was aborted"))
        return Deferred.fromCoroutine(self._finish())

    async def _finish(self) -> WriteResult:
        if self._state is _State.FAILED:
            return await self._failed_result()
        self._state = _State.FINISHING
        if self._received <= self._inline_threshold:
            return await self._finish_inline()
        self._cut_pieces(final=True)
        self._queue.append(_END)
        self._kick()
        await self._when_idle()
        if self._state is _State.ABORTED:
            raise CancelledError("the writer was aborted")
        if self._state is _State.FAILED:
            return await self._failed_result()
        assert self._end_done, "lane went idle before committing the last chunk"
        try:
            self._check_deadline()
        except errors.RequestTimeout:
            self._fail(Failure())
            return await self._failed_result()
        self._state = _State.FINISHED
        return self._result(list(self._chunks), None)

    def _check_deadline(self) -> None:
        """Raise ``RequestTimeout`` once the first chunk is older than
        ``max_write_seconds`` (start the clock at the first chunk)."""
        limit = self._m.max_write_seconds
        if limit is None:
            return
        now = self._m._monotonic()
        if self._first_chunk_at is None:
            self._first_chunk_at = now
        elif now - self._first_chunk_at > limit:
            raise errors.RequestTimeout(
                f"The upload took longer than the {limit:g} seconds this server allows for one object body"
            )

    async def _finish_inline(self) -> WriteResult:
        data = bytes(self._buf)
        self._buf = bytearray()
        if len(data) <= _HASH_INLINE_MAX:
            _hash_all(data, self._hashers)
        else:
            await self._m._in_cpu(_hash_all, data, self._hashers)
            if self._state is _State.ABORTED:
                raise CancelledError("the writer was aborted")
        self._state = _State.FINISHED
        if self._cipher is not None and data:
            # At most the inline threshold (64 KiB by default): AES-CTR of
            # that is tens of microseconds, less than a thread hop.
            data = self._cipher.inline(data)
        return self._result([], data)

    async def _failed_result(self) -> WriteResult:
        await self._start_cleanup()
        assert self._failure is not None
        self._failure.raiseException()

    def _result(self, chunks: list[ChunkRef], inline: bytes | None) -> WriteResult:
        digests = {name: h.digest() for name, h in self._digest_hashers.items()}
        encryption = None if self._cipher is None else self._cipher.encryption
        return WriteResult(self._received, self._md5.digest().hex(), digests, chunks, inline, encryption)

    def abort(self) -> Deferred[None]:
        """Stop, discard the open chunk and delete committed ones; never fails.

        Safe at any time and more than once; after ``finish()`` it deletes the
        chunks the result names (the caller's metadata commit failed).
        """
        if self._state is not _State.ABORTED:
            self._stop_lane(_State.ABORTED)
        return Deferred.fromCoroutine(self._abort())

    async def _abort(self) -> None:
        await self._when_idle()
        await self._start_cleanup()

    def _start_cleanup(self) -> Deferred[None]:
        """Run the clean-up once (only while the lane is idle); wait for it."""
        if self._cleanup is None:
            signal = self._cleanup = _Signal()
            d = Deferred.fromCoroutine(self._do_cleanup())
            d.addErrback(lambda f: _log.failure("Chunk clean-up failed", f))
            d.addBoth(lambda _: signal.fire())
        return self._cleanup.wait()

    async def _do_cleanup(self) -> None:
        # A commit still running would rename its chunk into place after the
        # deletion below: let it land first.
        await self._commits_settled()
        writer, self._chunk_writer = self._chunk_writer, None
        if writer is not None:
            d = maybeDeferred(writer.abort)
            await d.addErrback(_log_cleanup_failure, self._chunk_id)
        await self._m.delete_chunks(self._chunk_ids)


# -- reading -------------------------------------------------------------------


@dataclass(slots=True)
class _Span:
    """The part of one chunk a read needs."""

    ref: ChunkRef
    pos: int  # next byte to read, within the chunk
    end: int
    verify: bool  # the whole chunk is read: check ChunkRef.checksum
    crc: int = 0


class ObjectReader:
    """Pieces of an object's byte range, read lazily; see :meth:`ChunkManager.read`.

    ``size`` is the whole object's size; ``offset``/``length`` the (clipped)
    range this reader returns.  Call ``next_piece()`` again only after its
    previous Deferred fired; it fires with ``None`` at the end.
    """

    def __init__(
        self,
        manager: ChunkManager,
        chunks: list[ChunkRef],
        inline: bytes | None,
        offset: int,
        length: int,
        cipher: DataCipher | None = None,
    ) -> None:
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be >= 0")
        if inline is not None and chunks:
            raise ValueError("an object has inline data or chunks, not both")
        self._m = manager
        self._cipher = cipher
        if cipher is not None and inline:
            # Small (the inline threshold): decrypted here, on the reactor.
            inline = cipher.inline(inline)
        self._inline = inline
        self.size = len(inline) if inline is not None else sum(c.size for c in chunks)
        start = min(offset, self.size)
        end = min(offset + length, self.size)
        self.offset = start
        self.length = end - start
        self._pos = start  # inline reads only
        self._end = end
        self._spans: deque[_Span] = deque()
        self._busy = False
        self._error: Failure | BaseException | None = None
        if inline is None:
            self._plan(chunks, start, end)

    def _plan(self, chunks: list[ChunkRef], start: int, end: int) -> None:
        chunk_start = 0
        for ref in chunks:
            chunk_end = chunk_start + ref.size
            if chunk_end > start and chunk_start < end:
                lo = max(start, chunk_start) - chunk_start
                hi = min(end, chunk_end) - chunk_start
                self._spans.append(_Span(ref, lo, hi, lo == 0 and hi == ref.size))
            chunk_start = chunk_end
            if chunk_start >= end:
                break

    def next_piece(self) -> Deferred[bytes | None]:
        """Deferred[bytes | None]: the next piece (never crossing a chunk), None at the end.

        Fails with ``ChunkNotFound``/``ChunkCorrupted`` (then keeps failing).
        """
        if self._error is not None:
            return fail(self._error)
        if self._busy:
            return fail(RuntimeError("next_piece() called before the previous piece arrived"))
        if self._inline is not None:
            return succeed(self._next_inline())
        while self._spans and self._spans[0].pos >= self._spans[0].end:
            self._spans.popleft()
        if not self._spans:
            return succeed(None)
        span = self._spans[0]
        n = min(self._m.piece_size, span.end - span.pos)
        self._busy = True
        backend: Any = self._m.backend  # get_chunk_range_crc comes with the capability
        # Where this piece starts in its chunk: taken now, since a backend
        # that answers synchronously advances ``span.pos`` before the
        # decryption callback is added.
        within = span.pos
        if self._m.checked_reads:
            # Only from a copy whose whole-chunk size and CRC match the
            # record, ranged reads included; full reads check on top below.
            dc: Deferred[Any] = backend.get_chunk_range_checked(
                span.ref.chunk_id, span.pos, n, span.ref.size, span.ref.checksum
            )
            dc.addCallbacks(self._got, self._failed, callbackArgs=(span, n))
        elif span.verify and self._m.backend_crc32c:
            # The backend computes the running CRC where it reads (off the
            # reactor, from checksums it verifies anyway).
            dc = backend.get_chunk_range_crc(span.ref.chunk_id, span.pos, n, span.crc)
            dc.addCallbacks(self._got_crc, self._failed, callbackArgs=(span, n))
        else:
            dc = backend.get_chunk_range(span.ref.chunk_id, span.pos, n)
            dc.addCallbacks(self._got, self._failed, callbackArgs=(span, n))
        if self._cipher is not None:
            dc.addCallback(self._decrypt, self._cipher, span.ref.chunk_id, within)
        return dc

    def whole_inline(self) -> bytes | None:
        """The rest of an inline object's range, when it is one piece (what
        :meth:`next_piece` would give before its ``None``), consumed; None
        for chunked objects and larger ranges (read those piece by piece).
        Lets a small GET be answered without a producer and its Deferreds."""
        if self._inline is None or self._error is not None or self._busy:
            return None
        if self._end - self._pos > self._m.piece_size:
            return None
        return self._next_inline() or b""

    def _next_inline(self) -> bytes | None:
        assert self._inline is not None
        if self._pos >= self._end:
            return None
        n = min(self._m.piece_size, self._end - self._pos)
        if n == len(self._inline):
            piece = self._inline
        else:
            with memoryview(self._inline) as view:
                piece = view[self._pos : self._pos + n].tobytes()
        self._pos += n
        return piece

    def _got(self, data: bytes, span: _Span, n: int) -> bytes:
        # A backend without the chunk_crc32c capability: CRC32C on the reactor
        # (~0.2 ms per MiB piece), cheaper than another thread hop.
        crc = crc32c(data, span.crc) if span.verify else 0
        return self._got_crc((data, crc), span, n)

    def _got_crc(self, result: tuple[bytes, int], span: _Span, n: int) -> bytes:
        data, crc = result
        self._busy = False
        chunk_id = span.ref.chunk_id
        if len(data) != n:
            self._corrupt(f"chunk {chunk_id}: {len(data)} bytes where {n} were expected")
        span.pos += n
        if span.verify:
            span.crc = crc
            if span.pos == span.end and span.crc != span.ref.checksum:
                self._corrupt(f"chunk {chunk_id}: checksum does not match its metadata")
        return data

    def _decrypt(self, stored: bytes, cipher: DataCipher, chunk_id: str, within: int) -> Any:
        """The plaintext of ``stored``, read at ``within`` of ``chunk_id``
        (its CRC already checked): in the CPU pool unless it is small."""
        if len(stored) <= _HASH_INLINE_MAX:
            return cipher.chunk(chunk_id, within, stored)
        self._busy = True  # the piece is not delivered yet

        def done(result: Any) -> Any:
            self._busy = False
            return result

        return self._m._in_cpu(cipher.chunk, chunk_id, within, stored).addBoth(done)

    def _corrupt(self, message: str) -> NoReturn:
        error = self._error = ChunkCorrupted(message)
        raise error

    def _failed(self, failure: Failure) -> Failure:
        self._busy = False
        self._error = failure
        return failure


async def pump(reader: ObjectReader, writer: ObjectWriter) -> WriteResult:
    """Copy ``reader``'s pieces into ``writer`` (honouring its backpressure) and
    finish it.  If that fails, cancellation included (a copy whose client
    went away), the writer is aborted here: nothing was committed from it
    yet, so its chunks go (after a successful pump, keeping or deleting them
    is the caller's commit's to decide)."""
    try:
        while True:
            piece = await reader.next_piece()
            if piece is None:
                break
            writer.write(piece)
            if writer.should_pause:
                await writer.when_drained()
        return await writer.finish()
    except BaseException:
        await writer.abort()
        raise

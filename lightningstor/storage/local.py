"""The ``local`` storage backend: chunks as files on a local filesystem (SPEC §5.2).

Layout under ``base_path``::

    chunks/ab/cd/abcd1234...    one file per chunk, sharded by the id's first hex pairs
    tmp/abcd1234....<random>    chunks being written; renamed into chunks/ on commit

A chunk file is the chunk's bytes followed by a footer, so a range read can
verify just the 64 KiB blocks it touches instead of the whole chunk::

    data | CRC32C of each block (4 bytes BE each) | trailer (24 bytes)
    trailer = data_len u64 | block_size u32 | version u16 | reserved u16
              | footer_crc u32 (CRC32C of the block CRCs + the 16 bytes before it)
              | magic b"LSCK"

The footer CRC makes a garbled length or block table detectable; a bad block
CRC makes its block unreadable.  Either way readers get ``ChunkCorrupted`` and
never wrong bytes.

Durability: a chunk is written to ``tmp/``, fsync'd, renamed into place and
its directory fsync'd (plus the parents of shard directories the write
created), so after ``commit`` fires the chunk survives a crash and before it
the chunk is invisible.  ``fsync=False`` skips the fsyncs: faster, but an
acknowledged write can be lost on power failure (tests, scratch stores).

Free-space reserve: while the volume under ``base_path`` has less than
``min_free_bytes`` free, chunk writes are refused with ``StorageBelowReserve``
(507) before the disk is really full, so that the metadata commits of
deletes still find room (lightningstor/diskspace.py).  Deletes and reads are
never refused by it.

Chunk ids must be lower-case hex with optional dashes (what ``uuid4().hex``
and ``str(uuid4())`` produce); anything else is rejected with ``ValueError``
so that no caller-controlled string ever becomes a path.

Several server processes may share one directory: writes go to unique temp
names and land with an atomic ``rename``, and readers hold their file open, so
a concurrent overwrite or delete never shows a reader a mix of two versions.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import struct
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from awscrt.checksums import combine_crc32c
from twisted.internet import defer
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from lightningstor.checksums import crc32c
from lightningstor.diskspace import DEFAULT_MIN_FREE_BYTES, FreeSpaceReserve, check_min_free_bytes
from lightningstor.errors import (
    ChunkCorrupted,
    ChunkNotFound,
    ConfigError,
    StorageBelowReserve,
    StorageError,
    StorageFull,
)
from lightningstor.interfaces.storage import (
    BackendCapabilities,
    ChunkInfo,
    DurabilityLevel,
    IChunkWriter,
    IStorageBackend,
    IStorageBackendFactory,
    PluginContext,
)

_T = TypeVar("_T")
_log = Logger()

MiB = 1 << 20
BLOCK_SIZE = 64 * 1024
"""Granularity of the on-disk checksums: the most a range read over-reads."""

MAX_CHUNK_SIZE = 64 * MiB
"""The largest chunk the format and the config allow (SPEC §5.3)."""

_MAGIC = b"LSCK"
_VERSION = 1
# data_len, block_size, version, reserved, footer_crc, magic
_TRAILER = struct.Struct(">QIHHI4s")
_CRC = struct.Struct(">I")
_CRC_SIZE = _CRC.size
# Covers the block table of any chunk up to MAX_CHUNK_SIZE, so one pread
# usually fetches the whole footer.
_FOOTER_READ = _TRAILER.size + _CRC_SIZE * (MAX_CHUNK_SIZE // BLOCK_SIZE)

_CHUNK_ID = re.compile(r"[0-9a-f][0-9a-f-]{0,127}")
# Whole-chunk CRCs remembered by _footer_crc (a few hundred KiB at most).
_CRC_CACHE_SIZE = 4096
# Bytes read at a time by verify_chunk.
_VERIFY_PIECE = 1 * MiB
_FILE_MODE = 0o600


def chunk_relpath(chunk_id: str, shard_depth: int) -> str:
    """Where chunk ``chunk_id`` is, relative to the ``chunks`` directory:
    ``shard_depth`` directories named by its first pairs of hex digits,
    then the id (``ab/cd/abcd...``); ``ValueError`` for an unsafe id.  The
    backup (lightningstor.backup) finds chunks by it too."""
    if not isinstance(chunk_id, str) or not _CHUNK_ID.fullmatch(chunk_id):
        raise ValueError(f"invalid chunk id {chunk_id!r}: must be [0-9a-f-], 1..128 chars")
    digits = chunk_id.replace("-", "")
    if len(digits) < 2 * shard_depth:
        raise ValueError(f"invalid chunk id {chunk_id!r}: too short for shard_depth")
    return os.path.join(*[digits[2 * i : 2 * i + 2] for i in range(shard_depth)], chunk_id)
_DIR_MODE = 0o700


def _blocks(data_len: int, block_size: int) -> int:
    return -(-data_len // block_size)


def _data_size(file_size: int) -> int:
    """Data length of a chunk file of ``file_size`` bytes written by this version.

    Inverts ``file_size = data + 4 * ceil(data / BLOCK) + trailer`` so that
    ``list_chunks`` needs a ``stat`` per chunk rather than a read.
    """
    payload = file_size - _TRAILER.size
    if payload <= 0:
        return 0
    return payload - _CRC_SIZE * _blocks(payload, BLOCK_SIZE + _CRC_SIZE)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _open_chunk(path: str, chunk_id: str) -> int:
    """A read-only descriptor of the chunk file at ``path``; ChunkNotFound if
    there is none."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ChunkNotFound(f"chunk {chunk_id} not found") from None


UNREADABLE_ERRNOS = frozenset({errno.EIO, errno.EBADMSG, errno.EUCLEAN})
"""What a read of a chunk file fails with when its bytes are damaged rather
than out of reach: a bad sector (EIO), a checksumming filesystem's failed
block check (btrfs and ZFS answer EIO, XFS's corrupted structures EUCLEAN,
fs-verity EIO, others EBADMSG)."""


def _pread(fd: int, length: int, offset: int, chunk_id: str) -> bytes:
    """``os.pread``; a read the disk cannot serve is ``ChunkCorrupted``, as
    a block failing its CRC is: the copy is damaged, not the node down, so
    a cluster serves another copy, read repair and scrub rewrite it, and
    the node lets a new copy replace it (``node/servicer.py`` ``_admit``).
    As ``StorageError`` (a retryable 503, over gRPC UNAVAILABLE) the node
    was taken for down and the copy never repaired."""
    try:
        return os.pread(fd, length, offset)
    except OSError as e:
        if e.errno in UNREADABLE_ERRNOS:
            raise ChunkCorrupted(f"chunk {chunk_id}: unreadable: {e}") from e
        raise


def _pread_exact(fd: int, length: int, offset: int, chunk_id: str) -> bytes:
    """Read exactly ``length`` bytes; a short read means the file was truncated."""
    data = _pread(fd, length, offset, chunk_id)
    if len(data) == length:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = _pread(fd, length - got, offset + got, chunk_id)
        if not more:
            raise ChunkCorrupted(f"chunk {chunk_id}: file is truncated")
        parts.append(more)
        got += len(more)
    return b"".join(parts)


class _BlockCrcs:
    """Per-block CRC32C computed incrementally over writes of any alignment."""

    __slots__ = ("_crc", "_fill", "_whole", "size", "table")

    def __init__(self) -> None:
        self._crc = 0
        self._fill = 0
        self._whole = 0  # CRC32C of the full blocks, combined from theirs
        self.table = bytearray()
        self.size = 0

    def update(self, data: bytes) -> None:
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            take = min(BLOCK_SIZE - self._fill, len(view) - pos)
            self._crc = crc32c(view[pos : pos + take], self._crc)
            self._fill += take
            pos += take
            if self._fill == BLOCK_SIZE:
                self.table += _CRC.pack(self._crc)
                self._whole = combine_crc32c(self._whole, self._crc, BLOCK_SIZE)
                self._crc = 0
                self._fill = 0
        self.size += len(view)

    def crc32c(self) -> int:
        """CRC32C of everything written so far, combined from the block CRCs
        (no pass over the data, O(1))."""
        if not self._fill:
            return int(self._whole)
        return int(combine_crc32c(self._whole, self._crc, self._fill))

    def footer(self) -> bytes:
        """The footer for everything written so far (closes the last block)."""
        table = bytes(self.table)
        if self._fill:
            table += _CRC.pack(self._crc)
        head = table + _TRAILER.pack(self.size, BLOCK_SIZE, _VERSION, 0, 0, _MAGIC)[:16]
        return head + struct.pack(">I4s", crc32c(head), _MAGIC)


class _ChunkFile:
    """The blocking half of one chunk write; every method runs in the io pool.

    A lock serializes the methods so that an ``abort`` racing an in-flight
    ``append`` (a caller cancelling an upload) waits instead of closing the
    descriptor under it.
    """

    def __init__(self, backend: LocalFsBackend, chunk_id: str) -> None:
        self._backend = backend
        self._chunk_id = chunk_id
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._tmp_path: str | None = None
        self._crcs = _BlockCrcs()
        self._done = False

    def _open(self) -> int:
        if self._fd is None:
            self._backend._ensure_layout()
            name = f"{self._chunk_id}.{secrets.token_hex(8)}"
            self._tmp_path = os.path.join(self._backend._tmp_dir, name)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
            self._fd = os.open(self._tmp_path, flags, _FILE_MODE)
        return self._fd

    def append(self, data: bytes) -> None:
        with self._lock:
            if self._done:
                raise RuntimeError(f"chunk {self._chunk_id}: write after commit or abort")
            backend = self._backend
            if self._crcs.size + len(data) > backend.max_chunk_size:
                raise ValueError(
                    f"chunk {self._chunk_id}: exceeds max_chunk_size {backend.max_chunk_size}"
                )
            # Every append, not just the first: a chunk is up to 64 MiB, and
            # many uploads in flight must not all pass one early check.  Costs
            # a lock and a clock read between statvfs refreshes.
            backend._ensure_layout()  # statvfs needs base_path to exist
            shortfall = backend.reserve.shortfall(len(data))
            if shortfall is not None:
                raise StorageBelowReserve(f"local storage: {shortfall}")
            _write_all(self._open(), data)
            self._crcs.update(data)

    def crc32c(self) -> int:
        # No lock: called between writes (none in flight, none to come before
        # the commit), and a commit's fsync must not hold up the reactor.
        return self._crcs.crc32c()

    def commit(self) -> None:
        with self._lock:
            if self._done:
                raise RuntimeError(f"chunk {self._chunk_id}: commit after commit or abort")
            fd = self._open()
            _write_all(fd, self._crcs.footer())
            durable = self._backend.fsync
            if durable:
                os.fsync(fd)
            os.close(fd)
            self._fd = None
            assert self._tmp_path is not None
            directory, path = self._backend._locate(self._chunk_id)
            created = self._backend._make_dirs(directory)
            os.replace(self._tmp_path, path)
            self._done = True
            if durable:
                # The file's entry, then the entries of directories we created
                # (deepest first), so the whole path survives a crash.
                fsync_dir(directory)
                for new_dir in reversed(created):
                    fsync_dir(os.path.dirname(new_dir))

    def abort(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._tmp_path is not None:
                try:
                    os.unlink(self._tmp_path)
                except FileNotFoundError:
                    pass


@implementer(IChunkWriter)
class LocalChunkWriter:
    """Streams one chunk into a temp file; see :class:`IChunkWriter`.

    Nothing touches the disk until the first ``write`` (``open_chunk`` runs on
    the reactor thread).  ``abort`` after ``commit`` is a no-op: a committed
    chunk is removed with ``delete_chunk``.
    """

    def __init__(self, backend: LocalFsBackend, chunk_id: str) -> None:
        self._backend = backend
        self._file = _ChunkFile(backend, chunk_id)

    def write(self, data: bytes) -> defer.Deferred[None]:
        # Threads get immutable bytes: the caller may reuse a bytearray.
        payload = data if isinstance(data, bytes) else bytes(data)
        return self._backend._run(self._file.append, payload)

    @property
    def crc32c(self) -> int:
        """CRC32C of the bytes written so far (read it once the last
        ``write`` has fired): :class:`ObjectWriter` takes a chunk's checksum
        from here instead of a pass of its own over the data."""
        return self._file.crc32c()

    def commit(self) -> defer.Deferred[None]:
        return self._backend._run(self._file.commit)

    def abort(self) -> defer.Deferred[None]:
        d = self._backend._run(self._file.abort)
        d.addErrback(_log_abort_failure)  # the contract: abort never fails
        return d


@implementer(IStorageBackend)
class LocalFsBackend:
    """Chunks as checksummed files under ``base_path``; see the module docstring.

    The constructor does no I/O (it runs on the reactor thread at start-up);
    directories are created by the first write or ``check()``.
    """

    name = "local"

    def __init__(
        self,
        base_path: str,
        reactor: IReactorFromThreads,
        io_pool: ThreadPool,
        *,
        shard_depth: int = 2,
        fsync: bool = True,
        max_chunk_size: int = MAX_CHUNK_SIZE,
        min_free_bytes: int = 0,
    ) -> None:
        if not 0 <= shard_depth <= 4:
            raise ValueError("shard_depth must be 0..4")
        if not 0 < max_chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"max_chunk_size must be 1..{MAX_CHUNK_SIZE}")
        self.base_path = base_path
        self.shard_depth = shard_depth
        self.fsync = fsync
        self.max_chunk_size = max_chunk_size
        # 0 (off) unless configured: the factory applies the server's default.
        self.reserve = FreeSpaceReserve(base_path, min_free_bytes)
        self._reactor = reactor
        self._pool = io_pool
        self._chunks_dir = os.path.join(base_path, "chunks")
        self._tmp_dir = os.path.join(base_path, "tmp")
        self._layout_ready = False
        # (chunk id, inode, mtime, size) -> whole-chunk CRC32C; see _footer_crc.
        self._crc_cache: dict[tuple[str, int, int, int], int] = {}
        self._crc_lock = threading.Lock()

    # -- helpers (reactor thread) -------------------------------------------

    def _run(self, f: Callable[..., _T], *args: Any) -> defer.Deferred[_T]:
        """Run blocking ``f`` in the io pool, reporting OS errors as StorageError."""
        return deferToThreadPool(self._reactor, self._pool, _storage_errors, f, *args)

    def _locate(self, chunk_id: str) -> tuple[str, str]:
        """(directory, path) of a chunk; ``ValueError`` for an unsafe id."""
        path = os.path.join(self._chunks_dir, chunk_relpath(chunk_id, self.shard_depth))
        return os.path.dirname(path), path

    def _chunk_op(
        self, chunk_id: str, f: Callable[..., _T], *args: Any
    ) -> defer.Deferred[_T]:
        """Validate ``chunk_id`` here, then run ``f(chunk_id, path, *args)`` in the pool."""
        try:
            path = self._locate(chunk_id)[1]
        except ValueError:
            return defer.fail()
        return self._run(f, chunk_id, path, *args)

    # -- helpers (io pool) ---------------------------------------------------

    def _ensure_layout(self) -> None:
        if self._layout_ready:
            return
        created = not os.path.isdir(self._chunks_dir) or not os.path.isdir(self._tmp_dir)
        os.makedirs(self._chunks_dir, _DIR_MODE, exist_ok=True)
        os.makedirs(self._tmp_dir, _DIR_MODE, exist_ok=True)
        if created and self.fsync:
            fsync_dir(self.base_path)
        self._layout_ready = True

    def _make_dirs(self, directory: str) -> list[str]:
        """Create the missing shard directories of ``directory``, top-down.

        Returns the ones this call created: their parents need an fsync too.
        The common case (directory exists) costs one ``stat``.
        """
        self._ensure_layout()
        missing: list[str] = []
        path = directory
        while path != self._chunks_dir and not os.path.isdir(path):
            missing.append(path)
            path = os.path.dirname(path)
        created: list[str] = []
        for path in reversed(missing):
            try:
                os.mkdir(path, _DIR_MODE)
            except FileExistsError:
                continue  # another writer made it
            created.append(path)
        return created

    def _store(self, chunk_id: str, data: bytes) -> None:
        chunk = _ChunkFile(self, chunk_id)
        try:
            chunk.append(data)
            chunk.commit()
        except BaseException:
            chunk.abort()
            raise

    def _read(self, chunk_id: str, path: str, offset: int, length: int | None) -> bytes:
        return self._read_crc(chunk_id, path, offset, length, None)[0]

    def _read_crc(
        self, chunk_id: str, path: str, offset: int, length: int | None, crc: int | None
    ) -> tuple[bytes, int]:
        data, out, _ = self._read_blocks(chunk_id, path, offset, length, crc, False)
        return data, out

    def _read_info(self, chunk_id: str, path: str, offset: int, length: int | None) -> tuple[bytes, int, int]:
        """The verified bytes of the range, the chunk's length and its whole
        CRC32C (from the footer: see :meth:`get_chunk_range_info`)."""
        data, _, info = self._read_blocks(chunk_id, path, offset, length, None, True)
        assert info is not None
        return data, info[0], info[1]

    def _read_blocks(
        self, chunk_id: str, path: str, offset: int, length: int | None, crc: int | None, whole: bool
    ) -> tuple[bytes, int, tuple[int, int] | None]:
        """The verified bytes of the range, ``crc32c(data, crc)`` when
        ``crc`` is not None (else 0), and with ``whole`` the chunk's
        (length, CRC32C) from its footer.

        Every block the range touches is checked against the footer.  The
        running CRC is then built from those block CRCs (``combine``: no
        second pass over the data) for the blocks the range covers whole,
        and computed directly only for a block it cuts.
        """
        fd = _open_chunk(path, chunk_id)
        try:
            data_len, block_size, table = self._read_footer(fd, chunk_id)
            info = (data_len, self._footer_crc(fd, chunk_id, data_len, block_size, table)) if whole else None
            start = min(offset, data_len)
            end = data_len if length is None else min(data_len, offset + length)
            if start >= end:
                return b"", 0 if crc is None else crc, info
            first, last = start // block_size, (end - 1) // block_size
            span_start = first * block_size
            span_end = min((last + 1) * block_size, data_len)
            data = _pread_exact(fd, span_end - span_start, span_start, chunk_id)
        finally:
            os.close(fd)
        view = memoryview(data)
        running = crc
        for block in range(first, last + 1):
            lo = (block - first) * block_size
            (expected,) = _CRC.unpack_from(table, block * _CRC_SIZE)
            piece = view[lo : lo + block_size]
            if crc32c(piece) != expected:
                raise ChunkCorrupted(f"chunk {chunk_id}: block {block} fails its checksum")
            if running is not None:
                # The part of this block inside [start, end), relative to ``piece``.
                cut_lo = max(start - span_start - lo, 0)
                cut_hi = min(end - span_start - lo, len(piece))
                if cut_lo == 0 and cut_hi == len(piece):
                    running = combine_crc32c(running, expected, len(piece))
                else:
                    running = crc32c(piece[cut_lo:cut_hi], running)
        out = running if running is not None else 0
        if start == span_start and end == span_end:
            return data, out, info
        return view[start - span_start : end - span_start].tobytes(), out, info

    def _footer_crc(self, fd: int, chunk_id: str, data_len: int, block_size: int, table: bytes) -> int:
        """The chunk's whole CRC32C, combined from its (verified) block CRCs.

        A few hundred ``combine`` calls for a large chunk (about 40 us for
        128 blocks), so the answer is cached per file version (inode, mtime,
        size): a streamed read asks once per piece.
        """
        st = os.fstat(fd)
        key = (chunk_id, st.st_ino, st.st_mtime_ns, st.st_size)
        with self._crc_lock:
            cached = self._crc_cache.get(key)
        if cached is not None:
            return cached
        whole = 0
        for block in range(_blocks(data_len, block_size)):
            (crc,) = _CRC.unpack_from(table, block * _CRC_SIZE)
            whole = int(combine_crc32c(whole, crc, min(block_size, data_len - block * block_size)))
        with self._crc_lock:
            if len(self._crc_cache) >= _CRC_CACHE_SIZE:
                self._crc_cache.pop(next(iter(self._crc_cache)))
            self._crc_cache[key] = whole
        return whole

    def _verify(self, chunk_id: str, path: str) -> tuple[int, int]:
        """(length, CRC32C) of the chunk after reading every block and
        checking it against the footer, a piece at a time (bounded memory)."""
        fd = _open_chunk(path, chunk_id)
        try:
            data_len, block_size, table = self._read_footer(fd, chunk_id)
            whole = 0
            step = max(block_size, (_VERIFY_PIECE // block_size) * block_size)
            for start in range(0, data_len, step):
                piece = _pread_exact(fd, min(step, data_len - start), start, chunk_id)
                view = memoryview(piece)
                for lo in range(0, len(piece), block_size):
                    block = (start + lo) // block_size
                    (expected,) = _CRC.unpack_from(table, block * _CRC_SIZE)
                    part = view[lo : lo + block_size]
                    if crc32c(part) != expected:
                        raise ChunkCorrupted(f"chunk {chunk_id}: block {block} fails its checksum")
                    whole = int(combine_crc32c(whole, expected, len(part)))
            return data_len, whole
        finally:
            os.close(fd)

    def _read_footer(self, fd: int, chunk_id: str) -> tuple[int, int, bytes]:
        """Validate the footer; return (data length, block size, block CRC table)."""
        size = os.fstat(fd).st_size
        if size < _TRAILER.size:
            raise ChunkCorrupted(f"chunk {chunk_id}: file too short for a footer")
        tail_len = min(size, _FOOTER_READ)
        tail = _pread_exact(fd, tail_len, size - tail_len, chunk_id)
        data_len, block_size, version, _, footer_crc, magic = _TRAILER.unpack_from(
            tail, tail_len - _TRAILER.size
        )
        if magic != _MAGIC or version != _VERSION or block_size == 0:
            raise ChunkCorrupted(f"chunk {chunk_id}: bad footer")
        table_len = _CRC_SIZE * _blocks(data_len, block_size)
        if data_len + table_len + _TRAILER.size != size:
            raise ChunkCorrupted(f"chunk {chunk_id}: footer does not match file size")
        head_len = table_len + 16
        if head_len + 8 <= tail_len:
            head = tail[tail_len - _TRAILER.size - table_len : tail_len - 8]
        else:
            head = _pread_exact(fd, head_len, data_len, chunk_id)
        if crc32c(head) != footer_crc:
            raise ChunkCorrupted(f"chunk {chunk_id}: footer fails its checksum")
        return data_len, block_size, head[:table_len]

    def _delete(self, chunk_id: str, path: str) -> bool:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        if self.fsync:
            fsync_dir(os.path.dirname(path))
        return True

    def _exists(self, chunk_id: str, path: str) -> bool:
        return os.path.isfile(path)

    def _list(self) -> list[ChunkInfo]:
        found: list[ChunkInfo] = []
        for directory, _, files in os.walk(self._chunks_dir):
            for name in files:
                if not _CHUNK_ID.fullmatch(name):
                    continue
                try:
                    st = os.stat(os.path.join(directory, name))
                except FileNotFoundError:
                    continue  # deleted while we walked
                if stat.S_ISREG(st.st_mode):
                    found.append(ChunkInfo(name, _data_size(st.st_size), st.st_mtime))
        return found

    def _check(self) -> None:
        self._layout_ready = False  # re-create directories someone removed
        self._ensure_layout()
        if not os.access(self._chunks_dir, os.W_OK | os.X_OK):
            raise StorageError(f"{self._chunks_dir} is not writable")
        probe = os.path.join(self._tmp_dir, f"check.{secrets.token_hex(8)}")
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
        try:
            _write_all(fd, b"ok")
        finally:
            os.close(fd)
            os.unlink(probe)

    def _cleanup_tmp(self, max_age_seconds: float) -> int:
        cutoff = time.time() - max_age_seconds
        removed = 0
        try:
            entries = list(os.scandir(self._tmp_dir))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue  # another process cleaned it up
        return removed

    # -- IStorageBackend -----------------------------------------------------

    def put_chunk(self, chunk_id: str, data: bytes) -> defer.Deferred[None]:
        """Write, fsync and rename a whole chunk in a single thread hop."""
        try:
            self._locate(chunk_id)
        except ValueError:
            return defer.fail()
        if len(data) > self.max_chunk_size:
            return defer.fail(ValueError(f"chunk {chunk_id}: exceeds max_chunk_size"))
        payload = data if isinstance(data, bytes) else bytes(data)
        return self._run(self._store, chunk_id, payload)

    def open_chunk(self, chunk_id: str) -> LocalChunkWriter:
        self._locate(chunk_id)
        return LocalChunkWriter(self, chunk_id)

    def get_chunk(self, chunk_id: str) -> defer.Deferred[bytes]:
        return self._chunk_op(chunk_id, self._read, 0, None)

    def get_chunk_range(self, chunk_id: str, offset: int, length: int) -> defer.Deferred[bytes]:
        """Reads and verifies only the 64 KiB blocks the range touches."""
        if offset < 0 or length < 0:
            return defer.fail(ValueError("offset and length must be >= 0"))
        return self._chunk_op(chunk_id, self._read, offset, length)

    def get_chunk_range_crc(
        self, chunk_id: str, offset: int, length: int, crc: int
    ) -> defer.Deferred[tuple[bytes, int]]:
        """Deferred[(data, crc32c(data, crc))]: :meth:`get_chunk_range` plus the
        running CRC32C a reader checks against the chunk's metadata.

        The CRC comes from the footer's verified block checksums, in the io
        pool: a streaming read makes one pass over the bytes, not two, and
        none on the reactor thread.
        """
        if offset < 0 or length < 0:
            return defer.fail(ValueError("offset and length must be >= 0"))
        return self._chunk_op(chunk_id, self._read_crc, offset, length, crc)

    def get_chunk_range_info(self, chunk_id: str, offset: int, length: int) -> defer.Deferred[tuple[bytes, int, int]]:
        """Deferred[(data, chunk length, chunk CRC32C)]: :meth:`get_chunk_range`
        plus the whole chunk's length and CRC32C, taken from its footer (no
        read beyond the range).  A storage node sends them with the first
        piece of a GetChunk, so that the reader can check that this replica
        holds the chunk its record describes before using any byte."""
        if offset < 0 or length < 0:
            return defer.fail(ValueError("offset and length must be >= 0"))
        return self._chunk_op(chunk_id, self._read_info, offset, length)

    def verify_chunk(self, chunk_id: str) -> defer.Deferred[tuple[int, int]]:
        """Deferred[(length, CRC32C)] of the chunk after every block was read
        and checked; ``ChunkCorrupted`` if one fails, ``ChunkNotFound``."""
        return self._chunk_op(chunk_id, self._verify)

    def delete_chunk(self, chunk_id: str) -> defer.Deferred[bool]:
        return self._chunk_op(chunk_id, self._delete)

    def chunk_exists(self, chunk_id: str) -> defer.Deferred[bool]:
        return self._chunk_op(chunk_id, self._exists)

    def list_chunks(self) -> defer.Deferred[list[ChunkInfo]]:
        """Every chunk file; ``size`` is derived from the file size (no reads)."""
        return self._run(self._list)

    def capabilities(self) -> BackendCapabilities:
        # chunk_crc32c: LocalChunkWriter.crc32c and get_chunk_range_crc.
        return BackendCapabilities(self.max_chunk_size, True, True, DurabilityLevel.LOCAL, 1, chunk_crc32c=True)

    def check(self) -> defer.Deferred[None]:
        """Create the layout if needed and prove the filesystem takes writes."""
        return self._run(self._check)

    def close(self) -> defer.Deferred[None]:
        return defer.succeed(None)

    # -- maintenance -----------------------------------------------------------

    def cleanup_tmp(self, max_age_seconds: float = 3600.0) -> defer.Deferred[int]:
        """Remove temp files older than ``max_age_seconds``; Deferred[count].

        They are left by writers that died mid-chunk.  The age limit keeps
        in-progress writes of other processes sharing the directory safe (an
        active writer touches its file on every write).
        """
        return self._run(self._cleanup_tmp, max_age_seconds)


def _storage_errors(f: Callable[..., _T], *args: Any) -> _T:
    """Call ``f``; OS errors become ``StorageError`` (answered as a retryable
    503), a full disk or quota ``StorageFull`` (507, not retried)."""
    try:
        return f(*args)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageFull(f"local storage: {e}") from e
        raise StorageError(f"local storage: {e}") from e


def _log_abort_failure(failure: Failure) -> None:
    _log.failure("Could not remove a partial chunk's temp file", failure)


# -- plugin factory --------------------------------------------------------------

_LOCAL_KEYS = frozenset({"data_dir", "shard_depth", "fsync", "min_free_bytes"})


@implementer(IPlugin, IStorageBackendFactory)
class LocalStorageFactory:
    """Builds :class:`LocalFsBackend` from the ``[storage]`` config section.

    Options may sit in ``[storage]`` itself or in its ``[storage.local]``
    sub-table (which wins): ``data_dir`` (default ``<server data_dir>/data``;
    relative paths are relative to the server's data directory),
    ``shard_depth`` (0..4, default 2), ``fsync`` (default true),
    ``min_free_bytes`` (the free-space reserve, default 64 MiB, 0 off).
    ``chunk_size_bytes`` is checked against the 64 MiB format limit.
    """

    name = "local"
    description = "Chunks as checksummed files on a local filesystem (fsync'd)"

    def create(self, options: Mapping[str, Any], context: PluginContext) -> LocalFsBackend:
        local = options.get("local", {})
        if not isinstance(local, Mapping):
            raise ConfigError("storage.local: must be a table")
        unknown = sorted(set(local) - _LOCAL_KEYS)
        if unknown:
            raise ConfigError(f"storage.local.{unknown[0]}: unknown option")

        def option(key: str, default: Any) -> tuple[str, Any]:
            if key in local:
                return f"storage.local.{key}", local[key]
            return f"storage.{key}", options.get(key, default)

        where, data_dir = option("data_dir", None)
        if data_dir is None or data_dir == "":
            data_dir = os.path.join(context.data_dir, "data")
        elif not isinstance(data_dir, str):
            raise ConfigError(f"{where}: must be a path string")
        else:
            data_dir = os.path.join(context.data_dir, os.path.expanduser(data_dir))

        where, shard_depth = option("shard_depth", 2)
        if isinstance(shard_depth, bool) or not isinstance(shard_depth, int) or not 0 <= shard_depth <= 4:
            raise ConfigError(f"{where}: must be 0..4")

        where, fsync = option("fsync", True)
        if not isinstance(fsync, bool):
            raise ConfigError(f"{where}: must be true or false")

        where, min_free = option("min_free_bytes", DEFAULT_MIN_FREE_BYTES)
        min_free = check_min_free_bytes(where, min_free)

        chunk_size = options.get("chunk_size_bytes", MAX_CHUNK_SIZE)
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise ConfigError(f"storage.chunk_size_bytes: must be 1..{MAX_CHUNK_SIZE} for the local backend")

        backend = LocalFsBackend(
            data_dir,
            context.reactor,
            context.io_pool,
            shard_depth=shard_depth,
            fsync=fsync,
            max_chunk_size=MAX_CHUNK_SIZE,
            min_free_bytes=min_free,
        )
        # Temp files of writes interrupted by a crash: nothing references
        # them, and no live writer is older than an hour.  The first use of
        # the directory: a path that cannot be one is said here, once, as
        # /ready goes on saying (it was an "Unhandled error in Deferred").
        def clean_tmp() -> None:
            d = backend.cleanup_tmp(3600.0)
            d.addErrback(lambda f: _log.error("Local storage is not usable: {error}", error=f.getErrorMessage()))

        context.reactor.callWhenRunning(clean_tmp)
        return backend


localStorageFactory = LocalStorageFactory()

"""``RadosBackend``: LightningStor chunks as objects in one RADOS pool and namespace.

Layout: chunk ``<id>`` is the RADOS object ``<id>`` in the configured pool and
namespace.  Each object carries an xattr ``lightningstor.crc32c`` (4 bytes,
big-endian) written in the *same* RADOS operation as the data, so the pair is
atomic: a reader never sees new bytes with an old checksum.

Writes.  RADOS has no rename, so "write to a temp object, then rename" is not
available.  A streaming writer therefore buffers its chunk in memory (at most
``MAX_CHUNK_SIZE``; chunks are 8 MiB by default) and stores it at ``commit``
with one ``write_full`` + ``set_xattr`` operation.  That gives, for free, what
the contract asks: nothing is visible before commit, an overwritten chunk keeps
its old bytes until the commit, and ``abort`` only drops a buffer.  Writing at
offsets into the final object with a "complete" marker would save the buffer
but make partial objects visible to listing and require cleaning them up.

Durability.  A Deferred fires only after librados reports the operation
complete, i.e. after every OSD in the acting set has it on stable storage.

Threads.  librados calls block, so they run in the backend's *own* bounded
``ThreadPool``: when the cluster is unavailable those threads sit in calls
until ``op_timeout_seconds``, and a private pool keeps that from starving the
server's shared ``io_pool`` (metadata, TLS...).  Every call is bounded by the
client timeouts set in :func:`lightningstor_rados.cluster.client_conf`; a
timeout becomes ``StorageError``, which the S3 layer answers with 503.
``close()`` waits for the calls still running before it shuts the cluster
handle down: shutting it down under them took away the completions and
timers they wait on, and they (and the server's exit) never returned.

Integrity.  RADOS checksums data itself (BlueStore keeps a CRC32C per block and
verifies it on every read).  ``get_chunk`` additionally compares the whole
chunk with the stored CRC32C, catching corruption above the OSD.  Range reads
rely on BlueStore's checks only.
"""

from __future__ import annotations

import re
import struct
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from awscrt.checksums import crc32c
from lightningstor.errors import ChunkCorrupted, ChunkNotFound, StorageError
from lightningstor.interfaces import (
    BackendCapabilities,
    BufferedChunkWriter,
    ChunkInfo,
    IStorageBackend,
)
from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from lightningstor_rados.cluster import CHECK_OBJECT, PoolDurability

log = Logger()

_T = TypeVar("_T")

MiB = 1 << 20
MAX_CHUNK_SIZE = 64 * MiB
"""Largest chunk accepted; below Ceph's default osd_max_write_size (90 MiB)."""

CRC_XATTR = "lightningstor.crc32c"
CLOSE_MARGIN_SECONDS = 5.0
"""close() waits for running calls up to op_timeout_seconds plus this."""

_CRC = struct.Struct(">I")
_CHUNK_ID = re.compile(r"[0-9a-f][0-9a-f-]{0,127}")


def new_pool(threads: int) -> ThreadPool:
    """The backend's private pool, of daemon threads: should a librados call
    outlive even close()'s wait, it must not keep the process from exiting
    (the interpreter joins every non-daemon thread at exit)."""
    pool = ThreadPool(minthreads=0, maxthreads=threads, name="lightningstor-rados")
    pool.threadFactory = _daemon_thread  # type: ignore[method-assign,assignment]
    return pool


def _daemon_thread(*args: Any, **kwargs: Any) -> threading.Thread:
    return threading.Thread(*args, daemon=True, **kwargs)


def _validate(chunk_id: str) -> str:
    """Chunk ids become object names: accept only what the server generates."""
    if not isinstance(chunk_id, str) or not _CHUNK_ID.fullmatch(chunk_id):
        raise ValueError(f"invalid chunk id {chunk_id!r}")
    return chunk_id


@implementer(IStorageBackend)
class RadosBackend:
    """IStorageBackend over one ``rados.Ioctx``; see the module docstring."""

    name = "rados"

    def __init__(
        self,
        rados: ModuleType,
        cluster: Any,
        ioctx: Any,
        durability: PoolDurability,
        reactor: Any,
        pool: ThreadPool,
        *,
        verify_crc: bool = True,
        op_timeout_seconds: float = 30.0,
    ) -> None:
        """Take ownership of a connected ``cluster``/``ioctx`` and a *started* ``pool``.

        ``close()`` shuts all three down.
        """
        self._rados = rados
        self._cluster = cluster
        self._ioctx = ioctx
        self._durability = durability
        self._reactor = reactor
        self._pool = pool
        self._verify_crc = verify_crc
        self._op_timeout = op_timeout_seconds
        self._closed = False
        self._running = 0  # calls submitted to the pool and not finished (reactor thread only)
        # Safety net: a pool thread is not a daemon, so a server that stops
        # without calling close() (a failed start) would otherwise hang.
        self._trigger = reactor.addSystemEventTrigger("after", "shutdown", self._stop_pool)

    # -- plumbing ------------------------------------------------------------

    def _run(self, what: str, chunk_id: str, f: Callable[..., _T], *args: Any) -> defer.Deferred[_T]:
        """Run ``f`` in the pool, turning librados errors into LightningStor ones."""
        if self._closed:
            return defer.fail(StorageError("rados backend is closed"))
        rados = self._rados

        def call() -> _T:
            try:
                return f(*args)
            except rados.ObjectNotFound:
                raise ChunkNotFound(f"chunk {chunk_id}: no such RADOS object") from None
            except rados.IOError as exc:
                if what == "read":
                    # EIO on a read: the cluster holds the object but cannot
                    # return good data (an EC pool short of shards, a checksum
                    # failure); as the local backend's EIO, corruption that
                    # reads elsewhere and scrub must hear about.
                    raise ChunkCorrupted(f"chunk {chunk_id}: RADOS read failed: {exc}") from None
                raise StorageError(f"RADOS {what} {chunk_id}: {exc}") from None
            except rados.TimedOut:
                raise StorageError(
                    f"RADOS {what} {chunk_id}: timed out after {self._op_timeout:g}s (cluster unavailable?)"
                ) from None
            except rados.Error as exc:
                raise StorageError(f"RADOS {what} {chunk_id}: {exc}") from None

        self._running += 1
        d = deferToThreadPool(self._reactor, self._pool, call)
        return d.addBoth(self._finished)

    def _finished(self, result: _T) -> _T:
        self._running -= 1
        return result

    def _write(self, chunk_id: str, data: bytes) -> None:
        """Replace the object's bytes and checksum in one atomic RADOS operation."""
        with self._rados.WriteOpCtx() as op:
            op.write_full(data)
            op.set_xattr(CRC_XATTR, _CRC.pack(crc32c(data)))
            # An explicit mtime: with the default (0) librados stores the
            # epoch, and list_chunks' created_at (which the orphan collector's
            # age check relies on) comes from the mtime.
            self._ioctx.operate_write_op(op, chunk_id, int(time.time()))

    def _read_all(self, chunk_id: str) -> bytes:
        data: bytes = self._ioctx.read(chunk_id, MAX_CHUNK_SIZE + 1, 0)
        return data

    def _stored_crc(self, chunk_id: str) -> int | None:
        try:
            raw = self._ioctx.get_xattr(chunk_id, CRC_XATTR)
        except self._rados.NoData:
            return None  # written by something else: nothing to compare with
        return int(_CRC.unpack(raw)[0]) if len(raw) == _CRC.size else -1

    def _get_verified(self, chunk_id: str) -> bytes:
        """Whole chunk, checked against its CRC32C xattr.

        The xattr and the data are two reads; an overwrite between them could
        pair old and new, so a mismatch is re-checked once before it is
        reported as corruption.
        """
        for attempt in (1, 2):
            expected = self._stored_crc(chunk_id)
            data = self._read_all(chunk_id)
            if expected is None or crc32c(data) == expected:
                return data
            if attempt == 1 and self._stored_crc(chunk_id) != expected:
                continue
            break
        raise ChunkCorrupted(f"chunk {chunk_id}: data does not match its stored CRC32C")

    def _exists(self, chunk_id: str) -> bool:
        try:
            self._ioctx.stat(chunk_id)
        except self._rados.ObjectNotFound:
            return False
        return True

    def _delete(self, chunk_id: str) -> bool:
        try:
            self._ioctx.remove_object(chunk_id)
        except self._rados.ObjectNotFound:
            return False
        return True

    def _list(self) -> list[ChunkInfo]:
        """Every chunk object in the namespace.

        The binding's iterator ends on *any* error as if the listing were
        complete (its ``__next__`` raises StopIteration for every negative
        return), so an outage or a key without read caps listed an empty or
        partial pool as a success, and the collector reported "0 orphaned
        chunks".  A stat of the probe object afterwards stands in for the
        lost error: permission errors and an unreachable cluster fail it.
        (Timing the last step cannot: librados walks the remaining PGs
        inside it, which on a large pool legitimately takes long.)  A
        listing cut short by a failure confined to some PGs still passes;
        the collector then deletes nothing it did not list, and only
        collects the rest a pass later.
        """
        infos = []
        for obj in self._ioctx.list_objects():
            if not _CHUNK_ID.fullmatch(obj.key):
                continue
            try:
                size, mtime = self._ioctx.stat(obj.key)
            except self._rados.ObjectNotFound:
                continue  # deleted since it was listed
            infos.append(ChunkInfo(obj.key, int(size), time.mktime(mtime)))
        try:
            self._ioctx.stat(CHECK_OBJECT)
        except self._rados.ObjectNotFound:
            pass  # never written in this namespace: the cluster answered, which is what counts
        return infos

    # -- IStorageBackend -----------------------------------------------------------

    def put_chunk(self, chunk_id: str, data: bytes) -> defer.Deferred[None]:
        _validate(chunk_id)
        if len(data) > MAX_CHUNK_SIZE:
            return defer.fail(StorageError(f"chunk {chunk_id}: {len(data)} bytes exceed {MAX_CHUNK_SIZE}"))
        return self._run("write", chunk_id, self._write, chunk_id, bytes(data))

    def open_chunk(self, chunk_id: str) -> BufferedChunkWriter:
        return BufferedChunkWriter(_validate(chunk_id), self.put_chunk, MAX_CHUNK_SIZE)

    def get_chunk(self, chunk_id: str) -> defer.Deferred[bytes]:
        _validate(chunk_id)
        read = self._get_verified if self._verify_crc else self._read_all
        return self._run("read", chunk_id, read, chunk_id)

    def get_chunk_range(self, chunk_id: str, offset: int, length: int) -> defer.Deferred[bytes]:
        _validate(chunk_id)
        if offset < 0 or length < 0:
            return defer.fail(ValueError(f"bad range offset={offset} length={length}"))
        if length == 0:
            # librados rejects zero-length reads; the chunk must still exist.
            d = self._run("stat", chunk_id, self._ioctx.stat, chunk_id)
            return d.addCallback(lambda _: b"")
        return self._run("read", chunk_id, self._ioctx.read, chunk_id, length, offset)

    def delete_chunk(self, chunk_id: str) -> defer.Deferred[bool]:
        _validate(chunk_id)
        return self._run("delete", chunk_id, self._delete, chunk_id)

    def chunk_exists(self, chunk_id: str) -> defer.Deferred[bool]:
        _validate(chunk_id)
        return self._run("stat", chunk_id, self._exists, chunk_id)

    def list_chunks(self) -> defer.Deferred[list[ChunkInfo]]:
        return self._run("list", "objects", self._list)

    def capabilities(self) -> BackendCapabilities:
        return BackendCapabilities(
            max_chunk_size=MAX_CHUNK_SIZE,
            supports_range_reads=True,
            supports_streaming=True,
            durability=self._durability.durability,
            replicas=self._durability.replicas,
        )

    def check(self) -> defer.Deferred[None]:
        """Write a small probe object: proves the monitors, the OSDs and our caps all work."""
        probe = f"{time.time():.6f}".encode()
        return self._run("write check", CHECK_OBJECT, self._ioctx.write_full, CHECK_OBJECT, probe).addCallback(
            lambda _: None
        )

    @defer.inlineCallbacks
    def close(self) -> Any:
        """Refuse new calls, wait for the running ones (each ends within
        ``op_timeout_seconds``), then disconnect from the cluster (in the
        pool, it can block) and stop the pool.

        Should calls still run after that wait, the handle is left connected
        and the pool's daemon threads to the process's exit: disconnecting
        under them would leave them waiting for ever."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + self._op_timeout + CLOSE_MARGIN_SECONDS
        while self._running and time.monotonic() < deadline:
            yield deferLater(self._reactor, 0.05, lambda: None)
        self._reactor.removeSystemEventTrigger(self._trigger)
        if self._running:
            log.warn(
                "rados: {n} librados calls still running {s:g}s after close; leaving the cluster "
                "connection to the process's exit",
                n=self._running, s=self._op_timeout + CLOSE_MARGIN_SECONDS,
            )
            return
        try:
            yield deferToThreadPool(self._reactor, self._pool, self._disconnect)
        finally:
            self._stop_pool()

    def _disconnect(self) -> None:
        self._ioctx.close()
        self._cluster.shutdown()

    def _stop_pool(self) -> None:
        if self._pool.started:
            self._pool.stop()



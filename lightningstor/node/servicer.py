"""The ``lightningstor.node.v1.ChunkService`` handlers over a local backend.

Handlers run on grpcio's thread pool; the backend (a
:class:`~lightningstor.storage.local.LocalFsBackend`) lives on the reactor
thread and does its disk I/O in the io pool, so each backend call is made
with ``blockingCallFromThread``: the handler thread waits, the reactor never
does.  Backend errors map to gRPC codes in one place (:func:`_status_of`), so
the distributed backend can tell "this replica has no such chunk"
(NOT_FOUND) from "this replica is damaged" (DATA_LOSS) from "this node's
disk is full" (RESOURCE_EXHAUSTED, marked with the trailing metadata
``lightningstor-error: storage-full`` so that it cannot be mistaken for
gRPC's own RESOURCE_EXHAUSTED) from "try elsewhere" (UNAVAILABLE).

End to end, a ``PutChunk`` may carry the writer's CRC32C and length: bytes
that do not match them are refused (DATA_LOSS) before the rename makes the
chunk visible.  ``GetChunk`` reports the whole chunk's length and CRC32C
(from its verified footer) with its first piece, and ``VerifyChunk`` reads
and checks a whole chunk on the node, so that the API servers can tell a
divergent replica from a good one (docs/scaling.md, "Chunk integrity").

Chunk ids name immutable content (the API servers draw a fresh id for every
chunk), so a ``PutChunk`` never replaces an intact copy with other bytes: a
writer's bug, a stale retry or a misdirected copy would otherwise destroy
the only good copy silently.  Before the new bytes are renamed into place
the stored copy, if any, is verified (:meth:`ChunkServicer._admit`): the
same length and CRC32C is an idempotent retry (answered OK, nothing
rewritten); a copy that fails its own block checks is rotten and replaced
(that is how repair heals it); other intact bytes are kept and the call
fails with ALREADY_EXISTS, unless the request names that copy's CRC32C in
``replace_crc32c`` (repair replacing a copy it found divergent from the
object's record).  Puts of one id are serialized on the node so that two of
them cannot both pass the check.
"""

from __future__ import annotations

import bisect
import os
import shutil
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from twisted.internet.threads import blockingCallFromThread, deferToThreadPool
from twisted.logger import Logger

from lightningstor.errors import ChunkCorrupted, ChunkExists, ChunkNotFound, StorageFull
from lightningstor.node import ERROR_KIND_KEY, STORAGE_FULL
from lightningstor.node.gen import lightningstor_node_pb2 as pb
from lightningstor.node.gen import lightningstor_node_pb2_grpc as pb_grpc

log = Logger()

MiB = 1 << 20
READ_PIECE = 1 * MiB
"""Bytes per GetChunk message (and per backend range read)."""
LIST_PAGE = 1000
"""ListChunks page size when the request does not set one."""
PUT_LOCKS = 64
"""Striped locks serializing the check-then-rename of PutChunks of one id."""


@dataclass(frozen=True)
class NodeIdentity:
    """Who this node says it is in ``Stat`` (for operators and placement)."""

    node_id: str
    zone: str
    data_dir: str


def _status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, ChunkNotFound):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, ChunkCorrupted):
        return grpc.StatusCode.DATA_LOSS, str(exc)
    if isinstance(exc, ChunkExists):
        return grpc.StatusCode.ALREADY_EXISTS, str(exc)
    if isinstance(exc, ValueError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, StorageFull):  # ENOSPC/EDQUOT on this node's disk
        return grpc.StatusCode.RESOURCE_EXHAUSTED, f"node out of disk space: {exc}"
    return grpc.StatusCode.UNAVAILABLE, f"{type(exc).__name__}: {exc}"


def _writer_crc(writer: Any) -> int:
    """CRC32C of what ``writer`` (a local chunk writer) has taken so far
    (O(1): combined from its block CRCs); on the reactor thread."""
    return int(writer.crc32c)


def _disk_usage(path: str) -> tuple[int, int, int]:
    """(free, used, total) bytes of the filesystem holding ``path`` (io pool)."""
    os.makedirs(path, exist_ok=True)
    usage = shutil.disk_usage(path)
    return usage.free, usage.used, usage.total


class ChunkServicer(pb_grpc.ChunkServiceServicer):
    """Serves chunks from ``backend`` (an ``IStorageBackend``, normally local)."""

    def __init__(self, backend: Any, reactor: Any, io_pool: Any, identity: NodeIdentity) -> None:
        self.backend = backend
        self.reactor = reactor
        self.io_pool = io_pool
        self.identity = identity
        self._put_locks = [threading.Lock() for _ in range(PUT_LOCKS)]

    def _call(self, f: Any, *args: Any) -> Any:
        return blockingCallFromThread(self.reactor, f, *args)

    def _abort(self, context: grpc.ServicerContext, exc: BaseException) -> Any:
        code, detail = _status_of(exc)
        if code is grpc.StatusCode.UNAVAILABLE:
            log.warn("chunk service error: {detail}", detail=detail)
        elif code is grpc.StatusCode.RESOURCE_EXHAUSTED:
            log.warn("chunk write refused, {detail}", detail=detail)
            context.set_trailing_metadata(((ERROR_KIND_KEY, STORAGE_FULL),))
        context.abort(code, detail)

    def PutChunk(self, request_iterator: Iterator[pb.PutChunkRequest], context: grpc.ServicerContext) -> pb.PutChunkResponse:
        writer = None
        first: pb.PutChunkRequest | None = None
        size = 0
        try:
            for message in request_iterator:
                if writer is None:
                    first = message
                    # ValueError for a missing or unsafe id: INVALID_ARGUMENT.
                    writer = self._call(self.backend.open_chunk, message.chunk_id)
                if message.data:
                    self._call(writer.write, message.data)
                    size += len(message.data)
            if writer is None or first is None:
                raise ValueError("no chunk id sent")
            crc = self._call(_writer_crc, writer)
            if first.has_crc32c and (size != first.size or crc != first.crc32c):
                # End to end: the bytes that reached this node are the bytes
                # the writer checksummed, or the chunk never becomes visible.
                log.warn("Refused chunk {chunk_id}: its bytes do not match the CRC32C sent with them",
                         chunk_id=first.chunk_id)
                raise ChunkCorrupted(
                    f"chunk {first.chunk_id}: received {size} bytes with CRC32C {crc:08x}, "
                    f"the writer sent {first.size} bytes with CRC32C {first.crc32c:08x}"
                )
            replace = first.replace_crc32c if first.has_replace_crc32c else None
            with self._put_lock(first.chunk_id):
                if self._admit(first.chunk_id, size, crc, replace):
                    self._call(writer.commit)
                else:
                    self._call(writer.abort)  # the same bytes are stored already
        except Exception as exc:
            if writer is not None:
                self._call(writer.abort)  # never fails (IChunkWriter contract)
            self._abort(context, exc)
        return pb.PutChunkResponse(size=size)

    def _put_lock(self, chunk_id: str) -> threading.Lock:
        return self._put_locks[zlib.crc32(chunk_id.encode()) % PUT_LOCKS]

    def _admit(self, chunk_id: str, size: int, crc: int, replace: int | None) -> bool:
        """Whether a new copy of ``chunk_id`` (``size`` bytes, CRC32C ``crc``)
        may be renamed into place (see the module docstring); False when the
        stored copy already holds those bytes.  Raises ``ChunkExists`` when
        it holds other intact bytes that ``replace`` does not name.  Runs
        in the handler thread, with the id's put lock held."""
        try:
            stored = self._call(self.backend.verify_chunk, chunk_id)
        except ChunkNotFound:
            return True
        except ChunkCorrupted as exc:
            log.warn("Replacing the rotten copy of chunk {chunk_id}: {error}", chunk_id=chunk_id, error=exc)
            return True
        stored_size, stored_crc = stored
        if (stored_size, stored_crc) == (size, crc):
            return False
        if replace is not None and stored_crc == replace:
            log.warn("Replacing the divergent copy of chunk {chunk_id} ({size} bytes, CRC32C {crc:08x}) "
                     "as asked by repair", chunk_id=chunk_id, size=stored_size, crc=stored_crc)
            return True
        log.warn("Refused chunk {chunk_id}: the node holds other bytes under that id "
                 "({size} bytes, CRC32C {crc:08x}), which are kept",
                 chunk_id=chunk_id, size=stored_size, crc=stored_crc)
        raise ChunkExists(
            f"chunk {chunk_id}: already stored with other bytes ({stored_size} bytes, CRC32C {stored_crc:08x}; "
            f"this write has {size} bytes, CRC32C {crc:08x}); chunk ids are immutable"
        )

    def GetChunk(self, request: pb.GetChunkRequest, context: grpc.ServicerContext) -> Iterator[pb.GetChunkResponse]:
        offset = request.offset
        remaining = request.length if request.has_length else None
        first = True
        while remaining is None or remaining > 0:
            want = READ_PIECE if remaining is None else min(READ_PIECE, remaining)
            try:
                if first:
                    data, chunk_size, chunk_crc = self._call(
                        self.backend.get_chunk_range_info, request.chunk_id, offset, want
                    )
                else:
                    data = self._call(self.backend.get_chunk_range, request.chunk_id, offset, want)
            except Exception as exc:
                self._abort(context, exc)
            if first:
                yield pb.GetChunkResponse(
                    data=data, chunk_size=chunk_size, chunk_crc32c=chunk_crc, has_chunk_info=True
                )
            elif data:
                yield pb.GetChunkResponse(data=data)
            first = False
            if len(data) < want:
                return
            offset += len(data)
            if remaining is not None:
                remaining -= len(data)

    def DeleteChunk(self, request: pb.DeleteChunkRequest, context: grpc.ServicerContext) -> pb.DeleteChunkResponse:
        try:
            existed = self._call(self.backend.delete_chunk, request.chunk_id)
        except Exception as exc:
            self._abort(context, exc)
        return pb.DeleteChunkResponse(existed=bool(existed))

    def HasChunk(self, request: pb.HasChunkRequest, context: grpc.ServicerContext) -> pb.HasChunkResponse:
        try:
            exists = self._call(self.backend.chunk_exists, request.chunk_id)
        except Exception as exc:
            self._abort(context, exc)
        return pb.HasChunkResponse(exists=bool(exists))

    def VerifyChunk(self, request: pb.VerifyChunkRequest, context: grpc.ServicerContext) -> pb.VerifyChunkResponse:
        try:
            size, crc = self._call(self.backend.verify_chunk, request.chunk_id)
        except Exception as exc:
            self._abort(context, exc)
        return pb.VerifyChunkResponse(size=size, crc32c=crc)

    def ListChunks(self, request: pb.ListChunksRequest, context: grpc.ServicerContext) -> pb.ListChunksResponse:
        limit = request.limit or LIST_PAGE
        try:
            infos = self._call(self.backend.list_chunks)
        except Exception as exc:
            self._abort(context, exc)
        infos.sort(key=lambda info: info.chunk_id)
        ids = [info.chunk_id for info in infos]
        start = bisect.bisect_right(ids, request.start_after) if request.start_after else 0
        page = infos[start : start + limit]
        more = start + limit < len(infos)
        return pb.ListChunksResponse(
            chunks=[pb.ChunkEntry(chunk_id=i.chunk_id, size=i.size, created_at=i.created_at) for i in page],
            next_start_after=page[-1].chunk_id if more and page else "",
        )

    def Stat(self, request: pb.StatRequest, context: grpc.ServicerContext) -> pb.StatResponse:
        try:
            infos = self._call(self.backend.list_chunks)
            free, used, total = self._call(
                deferToThreadPool, self.reactor, self.io_pool, _disk_usage, self.identity.data_dir
            )
        except Exception as exc:
            self._abort(context, exc)
        return pb.StatResponse(
            node_id=self.identity.node_id,
            zone=self.identity.zone,
            free_bytes=free,
            used_bytes=used,
            total_bytes=total,
            chunk_count=len(infos),
            chunk_bytes=sum(info.size for info in infos),
        )

    def Health(self, request: pb.HealthRequest, context: grpc.ServicerContext) -> pb.HealthResponse:
        try:
            self._call(self.backend.check)
        except StorageFull as exc:
            # A full disk still serves reads, deletes and listings (and
            # deleting is how space comes back): not "down".  Writes are
            # refused one by one with RESOURCE_EXHAUSTED.
            return pb.HealthResponse(serving=True, detail=f"serving; disk full, writes refused: {exc}")
        except Exception as exc:
            return pb.HealthResponse(serving=False, detail=f"{type(exc).__name__}: {exc}")
        return pb.HealthResponse(serving=True, detail="ok")

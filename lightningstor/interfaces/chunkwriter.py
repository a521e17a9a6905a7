"""A ready-made :class:`IChunkWriter` for backends that store whole chunks.

Backends whose medium takes one object per write (storage nodes, RADOS
``write_full``) cannot stream a chunk in place without exposing a partial
one.  This writer collects the pieces (at most ``max_size`` bytes: chunks
are at most 64 MiB) and hands the whole chunk to ``put_chunk`` at commit, so
nothing is visible before then and ``abort`` only drops the buffer.
Public so that third-party backends can use it too.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from zope.interface import implementer

from lightningstor.errors import StorageError
from lightningstor.interfaces.storage import IChunkWriter


@implementer(IChunkWriter)
class BufferedChunkWriter:
    """Buffers one chunk; ``put_chunk(chunk_id, data)`` stores it at commit.

    Writing past ``max_size`` or after commit/abort fails with StorageError
    and finishes the writer (nothing is stored).
    """

    def __init__(self, chunk_id: str, put_chunk: Callable[[str, bytes], Any], max_size: int) -> None:
        self._chunk_id = chunk_id
        self._put_chunk = put_chunk
        self._max_size = max_size
        self._parts: list[bytes] = []
        self._size = 0
        self._done = False

    def write(self, data: bytes) -> defer.Deferred[None]:
        if self._done:
            return defer.fail(StorageError(f"chunk {self._chunk_id}: writer already finished"))
        self._size += len(data)
        if self._size > self._max_size:
            self._parts = []
            self._done = True
            return defer.fail(StorageError(f"chunk {self._chunk_id}: more than {self._max_size} bytes"))
        self._parts.append(bytes(data))
        return defer.succeed(None)

    def commit(self) -> defer.Deferred[Any]:
        if self._done:
            return defer.fail(StorageError(f"chunk {self._chunk_id}: writer already finished"))
        self._done = True
        data, self._parts = b"".join(self._parts), []
        return defer.maybeDeferred(self._put_chunk, self._chunk_id, data)

    def abort(self) -> defer.Deferred[None]:
        self._done = True
        self._parts = []
        return defer.succeed(None)

"""Writing and reading objects through a real in-process Core (unit tests).

The way a protocol handler does it, minus the protocol: a ChunkManager
writer takes the body, ``ObjectManager.commit`` (or ``commit_part``) makes it
visible, and ``Core.open_reader`` reads it back (manifest pages included).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks

from lightningstor.core.objects import PutAttrs
from lightningstor.core.types import Bucket, ObjectRecord


@inlineCallbacks
def put_object(core: Any, bucket: Bucket, key: str, data: bytes, attrs: PutAttrs | None = None) -> Any:
    """Deferred[ObjectRecord] committed; the written chunks are deleted if the commit fails."""
    writer = core.chunks.new_writer(())
    writer.write(data)
    result = yield writer.finish()
    record = ObjectRecord(key=key, size=result.size, etag=result.md5_hex, created_at=core.objects.now_ms(),
                          chunks=list(result.chunks), inline=result.inline)  # fmt: skip
    try:
        committed = yield core.objects.commit(bucket, record, attrs or PutAttrs())
    except BaseException:
        yield writer.abort()
        raise
    return committed


@inlineCallbacks
def put_part(core: Any, upload: Any, number: int, data: bytes) -> Any:
    """Deferred[Part]: part ``number`` of ``upload`` holding ``data``."""
    writer = core.multipart.new_part_writer(upload)
    writer.write(data)
    result = yield writer.finish()
    part = yield core.multipart.commit_part(upload, number, result, {})
    return part


@inlineCallbacks
def read_object(core: Any, record: ObjectRecord, start: int = 0, length: int | None = None) -> Any:
    """Deferred[bytes] of ``[start, start + length)`` (default: to the end)."""
    reader = yield core.open_reader(record, start, record.size - start if length is None else length)
    data = yield drain(reader)
    return data


@inlineCallbacks
def drain(reader: Any) -> Any:
    """Deferred[bytes]: every piece an ObjectReader still has, joined."""
    out = []
    while True:
        piece = yield reader.next_piece()
        if piece is None:
            return b"".join(out)
        out.append(piece)

"""Request bodies as they arrive: streamed into chunks, or buffered (bounded).

Stock ``twisted.web`` spools every body into memory or a temporary file
before any resource sees the request.  :class:`~lightningstor.s3.request.S3Request`
instead hands each piece to one of these sinks the moment it arrives:

* :class:`ObjectBody` (PutObject, UploadPart) decodes aws-chunked framing when
  present and feeds a ChunkManager writer, pausing the TCP transport while the
  writer is behind (backpressure).  Nothing is written before the request's
  signature is verified: bytes arriving earlier wait (bounded, transport
  paused).
* :class:`BufferedBody` keeps small bodies (XML documents) up to a limit.

A sink that failed (bad signature, bad chunk framing, no such bucket) keeps
swallowing the rest of the body so the connection stays usable, and reports
the error when the handler asks for the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger
from twisted.python.failure import Failure

from lightningstor import errors

log = Logger()

_PENDING_LIMIT = 1 << 20  # raw bytes held while authentication is under way


@dataclass
class BodyResult:
    write: Any  # storage.chunks.WriteResult
    trailers: dict[str, str] = field(default_factory=dict)


class _Flow:
    """Pauses/resumes a transport at most once each way (no unbalanced resumes)."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self.paused = False

    def pause(self) -> None:
        if not self.paused and self._transport is not None:
            self.paused = True
            self._transport.pauseProducing()

    def resume(self) -> None:
        if self.paused and self._transport is not None:
            self.paused = False
            self._transport.resumeProducing()


class BufferedBody:
    """A small body kept in memory, refused (reported later) over ``limit``."""

    def __init__(self, limit: int, too_large: Callable[[], errors.S3Error]) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._limit = limit
        self._too_large = too_large
        self.error: errors.S3Error | None = None

    @property
    def size(self) -> int:
        return self._size

    def receive(self, data: bytes) -> None:
        self._size += len(data)
        if self.error is not None:
            return
        if self._size > self._limit:
            self.error = self._too_large()
            self._parts = []
            return
        self._parts.append(data)

    def connection_lost(self) -> None:
        self._parts = []

    def content(self) -> bytes:
        if self.error is not None:
            raise self.error
        return b"".join(self._parts)


class ObjectBody:
    """Streams object data into a writer prepared after authentication.

    ``prepare`` returns a Deferred firing with an object that has ``writer``
    (a ChunkManager ObjectWriter) and ``decoder`` (an AwsChunkedDecoder or
    None); it fails with an S3Error if the request may not store anything.
    """

    def __init__(self, transport: Any, prepare: Callable[[], Deferred[Any]]) -> None:
        self._flow = _Flow(transport)
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._context: Any = None
        self._error: BaseException | None = None
        self._ended = False
        self.raw_bytes = 0
        self._ready: Deferred[Any] = prepare()
        self._ready.addCallbacks(self._on_ready, self._on_prepare_failed)

    # -- set-up -----------------------------------------------------------
    def _on_ready(self, context: Any) -> Any:
        self._context = context
        pending, self._pending = self._pending, []
        self._pending_size = 0
        for data in pending:
            self._feed(data)
        if not self._ended:
            self._flow.resume()
        return context

    def _on_prepare_failed(self, failure: Failure) -> None:
        self._fail(failure.value or errors.InternalError())

    # -- data -------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        self.raw_bytes += len(data)
        if self._error is not None:
            return
        if self._context is None:
            self._pending.append(data)
            self._pending_size += len(data)
            if self._pending_size > _PENDING_LIMIT:
                self._flow.pause()
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        if self._error is not None:
            return
        ctx = self._context
        try:
            pieces = ctx.decoder.feed(data) if ctx.decoder is not None else (data,)
        except errors.S3Error as e:
            self._fail(e)
            return
        writer = ctx.writer
        for piece in pieces:
            if piece:
                writer.write(piece)
        if writer.should_pause and not self._flow.paused:
            self._flow.pause()
            writer.when_drained().addBoth(self._drained)

    def _drained(self, result: Any) -> Any:
        if not self._ended:
            self._flow.resume()
        return None

    def _fail(self, error: BaseException) -> None:
        if self._error is not None:
            return
        self._error = error
        self._pending = []
        ctx = self._context
        if ctx is not None:
            ctx.writer.abort()
        # Keep reading (and discarding) so the error can be answered on a
        # connection that is still in sync.
        self._flow.resume()

    def connection_lost(self) -> None:
        """The client went away mid-body: store nothing.

        Once the body has ended the upload belongs to the handler (it may be
        committing), so a late disconnect must not touch the chunks.
        """
        if not self._ended:
            self._fail(errors.IncompleteBody())

    # -- end --------------------------------------------------------------
    @inlineCallbacks
    def finish(self) -> Any:
        """Deferred[(context, BodyResult)] once the whole body is stored."""
        self._ended = True
        self._flow.resume()
        context = yield self._ready
        if self._error is not None:
            raise self._error
        trailers: dict[str, str] = {}
        if context.decoder is not None:
            try:
                trailers = context.decoder.finish()
            except errors.S3Error as e:
                self._fail(e)
                raise
        try:
            result = yield context.writer.finish()
        except Exception:
            context.writer.abort()
            raise
        return context, BodyResult(result, trailers)

    def abort(self) -> None:
        """Discard whatever was stored (the metadata commit failed)."""
        if self._context is not None:
            self._context.writer.abort()

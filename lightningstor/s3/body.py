"""Request bodies as they arrive: streamed into chunks, or buffered (bounded).

Stock ``twisted.web`` spools every body into memory or a temporary file
before any resource sees the request.  :class:`~lightningstor.s3.request.S3Request`
instead hands each piece to one of these sinks the moment it arrives:

* :class:`ObjectBody` (PutObject, UploadPart) decodes aws-chunked framing when
  present and feeds a ChunkManager writer, pausing the TCP transport while the
  writer is behind (backpressure).  Nothing is written before the request's
  signature is verified: bytes arriving earlier wait (bounded, transport
  paused).
* :class:`BufferedBody` keeps small bodies (XML documents) up to a limit,
  and checks the ``Content-MD5`` or ``x-amz-checksum-*`` header sent with
  one before any handler reads it (:func:`verify_sent_digests`).

Every :class:`ObjectBody` also reports the bytes it holds (received, not yet
stored) to the server-wide :class:`~lightningstor.s3.inflight.InflightBudget`
(``limits.max_inflight_upload_bytes``), which may pause its transport too;
so does every :class:`BufferedBody` (the bytes it keeps, until its request
ends).

A sink that failed (bad signature, bad chunk framing, no such bucket) keeps
swallowing the rest of the body so the connection stays usable, and reports
the error when the handler asks for the result.  A buffered body whose
request is known to be refused (s3/bodycheck.py) stops keeping bytes the
same way.

:meth:`ObjectBody.when_prepared` tells when the checks before the first
stored byte are over: the S3 layer answers ``Expect: 100-continue`` then
(``S3Api._upload_checked``), with "100 Continue" or with the error.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger
from twisted.python.failure import Failure

from lightningstor import errors
from lightningstor.auth.request import STREAMING_PAYLOADS
from lightningstor.checksums import new_hasher
from lightningstor.core.objects import PutAttrs, verify_digests
from lightningstor.deferreds import Shared
from lightningstor.s3.headers import checksum_algorithms
from lightningstor.s3.inflight import BudgetAccount, InflightBudget
from lightningstor.tcp import tcp_transport

log = Logger()

_PENDING_LIMIT = 1 << 20  # raw bytes held while authentication is under way
RECV_SIZE = 1 << 20
"""Bytes the connection may take from its socket per read while an object
body streams in (Twisted reads 64 KiB a reactor turn: sixteen turns, and
sixteen passes through the HTTP parser, per MiB)."""


class _LargeReads:
    """Raises a TCP connection's read size for the length of one body, and
    puts it back after (the same attribute bounds what the connection
    buffers for writing before it pauses a response's producer).

    :meth:`allow` lowers it back meanwhile, while the in-flight budget has
    no room for large reads (s3/inflight.py): a read is taken off the socket
    whatever the budget says, so its size is what the budget overshoots by.
    """

    def __init__(self, transport: Any, size: int, *, large: bool = True) -> None:
        self._tcp = tcp_transport(transport)
        self._size = size
        self._saved: int | None = None
        if self._tcp is not None and self._tcp.bufferSize < size:
            self._saved = self._tcp.bufferSize
            if large:
                self._tcp.bufferSize = size

    def allow(self, large: bool) -> None:
        if self._tcp is not None and self._saved is not None:
            self._tcp.bufferSize = self._size if large else self._saved

    def restore(self) -> None:
        if self._tcp is not None and self._saved is not None:
            self._tcp.bufferSize = self._saved
        self._tcp = None


@dataclass
class BodyResult:
    write: Any  # storage.chunks.WriteResult
    trailers: dict[str, str] = field(default_factory=dict)


class _Flow:
    """Pauses a transport while any reason to hold it applies.

    Three parties pause an upload's transport independently: the pre-auth
    buffer, the writer's own backlog and the server-wide budget.  The
    transport is paused once when the first reason appears and resumed once
    when the last one goes (no unbalanced pause/resume calls).  After
    :meth:`release_all` (body ended or failed) nothing pauses it any more.
    """

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._reasons: set[str] = set()
        self._closed = False

    @property
    def paused(self) -> bool:
        return bool(self._reasons)

    def holds(self, reason: str) -> bool:
        return reason in self._reasons

    def hold(self, reason: str) -> None:
        if self._closed or self._transport is None or reason in self._reasons:
            return
        self._reasons.add(reason)
        if len(self._reasons) == 1:
            self._transport.pauseProducing()

    def release(self, reason: str) -> None:
        if reason not in self._reasons:
            return
        self._reasons.discard(reason)
        if not self._reasons:
            self._transport.resumeProducing()

    def release_all(self) -> None:
        """Resume for good: the body ended, or the rest is discarded."""
        self._closed = True
        if self._reasons:
            self._reasons.clear()
            self._transport.resumeProducing()


class BufferedBody:
    """A small body kept in memory, refused (reported later) over ``limit``.

    With ``headers``, the body's ``Content-MD5`` and (unless
    ``object_checksums``: CompleteMultipartUpload's describe the object, not
    its XML) ``x-amz-checksum-*`` headers are checked when the body is first
    read, so that every handler of a buffered body answers ``BadDigest`` for
    a body damaged on the way, as AWS does, instead of acting on it.

    With a ``budget``, the bytes it keeps count in the server-wide
    :class:`~lightningstor.s3.inflight.InflightBudget`, as upload bytes do,
    from the first byte until the request ends (:meth:`release`): a few
    thousand connections each sending an 8 MiB DeleteObjects body would
    otherwise hold gigabytes.  While the budget is full its ``transport`` is
    paused.  The account is opened by the first byte, so a request without
    a body (nearly every one) never touches the budget.

    ``auth`` (the request's authentication, set by ``S3Api.begin``) gives,
    when the body is first read, the verified signature's payload
    (:meth:`expect_payload`): a signed ``x-amz-content-sha256`` must then
    hash the body, checked with the digests, or the signature of one
    request would carry another body (a DeleteObjects naming other keys,
    another policy).

    :meth:`discard` (the request is known to be refused: its credentials
    failed, or an anonymous caller cannot be let in) keeps nothing more and
    gives the bytes back; the rest of the body is read and dropped, so the
    error is answered on a connection still in sync (the declared length is
    at most ``limit``: ``S3Api.begin`` refuses a longer one before reading).
    """

    def __init__(
        self,
        limit: int,
        too_large: Callable[[], errors.S3Error],
        headers: Mapping[str, str] | None = None,
        *,
        object_checksums: bool = False,
        transport: Any = None,
        budget: InflightBudget | None = None,
    ) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._limit = limit
        self._too_large = too_large
        self._headers = headers
        self._object_checksums = object_checksums
        self._transport = transport
        self._budget = budget
        self._flow: _Flow | None = None
        self._account: BudgetAccount | None = None
        self._signed_sha256: str | None = None
        self.auth: Shared | None = None
        self.error: BaseException | None = None

    @property
    def size(self) -> int:
        return self._size

    def receive(self, data: bytes) -> None:
        self._size += len(data)
        if self.error is not None:
            return
        if self._size > self._limit:
            self.discard(self._too_large())
            return
        self._parts.append(data)
        if self._budget is not None:
            self._report()

    def _report(self) -> None:
        account = self._account
        if account is None:
            if self._budget is None:
                return
            self._flow = _Flow(self._transport)
            account = self._account = self._budget.open(self._budget_pause, self._budget_resume)
        # Never draining: a buffered body frees nothing until its request
        # has been answered, so it is one the budget lets read on (its
        # "runner") only while nothing else drains.
        account.update(self._size, False)

    def _budget_pause(self) -> None:
        if self._flow is not None:
            self._flow.hold("budget")

    def _budget_resume(self) -> None:
        if self._flow is not None:
            self._flow.release("budget")

    def body_ended(self) -> None:
        """The whole body has arrived (``S3Request.requestReceived``): it
        reads no more, so nothing may pause it; its bytes stay counted
        until the request ends."""
        if self._account is not None:
            self._account.stop_reading()
        if self._flow is not None:
            self._flow.release_all()

    def discard(self, error: BaseException) -> None:
        """Keep nothing more: the handler will answer ``error`` (or an error
        of its own found first), never act on this body.  Bytes still to
        come are dropped as they arrive, and the budget gets its bytes back."""
        if self.error is None:
            self.error = error
        self._parts = []
        self.release()

    def release(self) -> None:
        """Give the bytes back to the budget (the request ended, or its
        client went away).  Idempotent.  The account is dropped, not just
        closed: it holds this sink's bound methods."""
        account, self._account = self._account, None
        if account is not None:
            account.close()
        flow, self._flow = self._flow, None
        if flow is not None:
            flow.release_all()

    def connection_lost(self) -> None:
        self._parts = []
        self.release()

    def expect_payload(self, authenticated: tuple[Any, Any]) -> None:
        """Take the verified payload of (principal, VerifiedAuth).

        An aws-chunked payload (``STREAMING-...``) is PutObject's and
        UploadPart's only: here nothing would decode it or check its chunk
        signatures, so a plain body sent under that mode was applied with no
        signature over it at all."""
        verified = authenticated[1]
        if verified.payload == "SIGNED":
            self._signed_sha256 = verified.payload_sha256.lower()
        elif verified.payload in STREAMING_PAYLOADS:
            raise errors.InvalidRequest(
                "aws-chunked payloads (x-amz-content-sha256: STREAMING-...) are accepted by PutObject and "
                "UploadPart only"
            )

    def content(self) -> bytes:
        if self.error is not None:
            raise self.error
        body = b"".join(self._parts)
        auth, self.auth = self.auth, None
        authenticated = auth.result() if auth is not None else None
        try:
            if authenticated is not None:
                self.expect_payload(authenticated)
            signed, self._signed_sha256 = self._signed_sha256, None  # checked once
            if self._headers is None and signed is None:
                return body
            headers, self._headers = self._headers, None  # checked once
            if signed is not None:
                computed = hashlib.sha256(body).hexdigest()
                if not hmac.compare_digest(computed, signed):
                    raise errors.XAmzContentSHA256Mismatch(
                        ClientComputedContentSHA256=signed, S3ComputedContentSHA256=computed
                    )
            if headers is not None:
                verify_sent_digests(headers, body, checksums=not self._object_checksums)
        except errors.S3Error as e:
            self.error = e
            raise
        self._parts = [body]
        return body


def verify_sent_digests(headers: Mapping[str, str], body: bytes, *, checksums: bool = True) -> None:
    """``InvalidDigest``/``BadDigest`` unless ``body`` matches the
    ``Content-MD5`` and (``checksums``) ``x-amz-checksum-*`` headers sent
    with it; nothing to check when none was sent.  Whether an operation
    *requires* one is its handler's rule (handlers.objects.check_body_digest)."""
    md5 = headers.get("content-md5")
    expected = checksum_algorithms(headers)[0] if checksums else {}
    if md5 is None and not expected:
        return
    attrs = PutAttrs(content_md5=md5)
    attrs.expected_checksums = expected
    digests = {}
    for algorithm in expected:
        h = new_hasher(algorithm)
        h.update(body)
        digests[algorithm] = h.digest()
    verify_digests(attrs, hashlib.md5(body).hexdigest(), digests)


class ObjectBody:
    """Streams object data into a writer prepared after authentication.

    ``prepare`` returns a Deferred firing with an object that has ``writer``
    (a ChunkManager ObjectWriter) and ``decoder`` (an AwsChunkedDecoder or
    None); it fails with an S3Error if the request may not store anything.
    ``budget`` is the server-wide in-flight limit (none: only the per-upload
    backpressure applies).
    """

    # Until prepare's Deferred fires: what when_prepared waits for.
    _prepared = False
    _on_prepared: Callable[[BaseException | None], None] | None = None
    # The context's ``max_bytes``: the most data the object (or part) may
    # hold, checked as the body arrives (a chunked body declares no length).
    _max_bytes: int | None = None
    _decoded = 0

    def __init__(
        self,
        transport: Any,
        prepare: Callable[[], Deferred[Any]],
        budget: InflightBudget | None = None,
        refuse_early: Callable[[errors.S3Error], None] | None = None,
    ) -> None:
        # Told when the body turns out too large before it ends: the S3
        # layer answers at once and closes (S3Api._refuse_now) instead of
        # reading a body that may never end.
        self._refuse_early = refuse_early
        self._flow = _Flow(transport)
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._context: Any = None
        self._error: BaseException | None = None
        self._ended = False
        self.raw_bytes = 0
        self._account: BudgetAccount | None = None
        if budget is not None:
            self._account = budget.open(self._budget_pause, self._budget_resume)
        large = self._account is None or self._account.large_reads_fit(RECV_SIZE)
        self._reads = _LargeReads(transport, RECV_SIZE, large=large)
        self._ready: Deferred[Any] = prepare()
        self._ready.addCallbacks(self._on_ready, self._on_prepare_failed)

    def when_prepared(self, callback: Callable[[BaseException | None], None]) -> None:
        """Call ``callback`` once ``prepare`` has fired (at once if it has):
        with None if the body may now be stored, else with the error that
        refused it (or that ended the body meanwhile: the client went away).

        One listener (the S3 layer, for ``Expect: 100-continue``); a
        callback rather than a Deferred, which every upload would pay for.
        """
        if self._prepared:
            callback(self._error)
        else:
            self._on_prepared = callback

    def _tell_prepared(self) -> None:
        self._prepared = True
        callback, self._on_prepared = self._on_prepared, None
        if callback is not None:
            callback(self._error)

    # -- set-up -----------------------------------------------------------
    def _on_ready(self, context: Any) -> Any:
        self._context = context
        if self._error is not None:
            # The client went away (or the body failed) while authenticating.
            context.writer.abort()
            self._tell_prepared()
            return context
        context.writer.set_progress_listener(self._report)
        self._max_bytes = getattr(context, "max_bytes", None)
        pending, self._pending = self._pending, []
        self._pending_size = 0
        for data in pending:
            self._feed(data)
        self._report()
        self._flow.release("auth")
        self._tell_prepared()
        return context

    def _on_prepare_failed(self, failure: Failure) -> None:
        self._fail(failure.value or errors.InternalError())
        self._tell_prepared()

    # -- the in-flight budget ---------------------------------------------
    def _report(self) -> None:
        """Tell the budget what this upload holds now (and whether it drains)."""
        account = self._account
        if account is None or account.closed:
            return
        if self._error is not None:
            account.close()
            return
        ctx = self._context
        if ctx is None:
            # Waiting for the signature check, which will feed these bytes on.
            account.update(self._pending_size, self._pending_size > 0)
        else:
            writer = ctx.writer
            account.update(writer.buffered_bytes, writer.queued_bytes > 0)
        self._reads.allow(account.large_reads_fit(RECV_SIZE))

    def _budget_pause(self) -> None:
        self._flow.hold("budget")

    def _budget_resume(self) -> None:
        account = self._account
        if account is not None:
            # Its first read after the pause takes what the budget has room for now.
            self._reads.allow(account.large_reads_fit(RECV_SIZE))
        self._flow.release("budget")

    def _close_account(self) -> None:
        # Dropped, not just closed: the account holds this sink's bound
        # methods, and the cycle would otherwise outlive the request until a
        # cyclic garbage collection.
        account, self._account = self._account, None
        if account is not None:
            account.close()

    # -- data -------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        self.raw_bytes += len(data)
        if self._error is not None:
            return
        if self._context is None:
            self._pending.append(data)
            self._pending_size += len(data)
            if self._pending_size > _PENDING_LIMIT:
                self._flow.hold("auth")
            self._report()
            return
        self._feed(data)
        self._report()

    def _feed(self, data: bytes) -> None:
        if self._error is not None:
            return
        ctx = self._context
        try:
            pieces = ctx.decoder.feed(data) if ctx.decoder is not None else (data,)
        except errors.S3Error as e:
            self._fail(e)
            return
        if self._max_bytes is not None:
            self._decoded += sum(len(piece) for piece in pieces)
            if self._decoded > self._max_bytes:
                self._too_large()
                return
        writer = ctx.writer
        for piece in pieces:
            if piece:
                writer.write(piece)
        if writer.should_pause and not self._flow.holds("writer"):
            self._flow.hold("writer")
            writer.when_drained().addBoth(self._drained)

    def _too_large(self) -> None:
        error = errors.EntityTooLarge(MaxSizeAllowed=str(self._max_bytes))
        self._fail(error)
        if self._refuse_early is not None:
            self._refuse_early(error)

    def _drained(self, result: Any) -> Any:
        self._flow.release("writer")
        return None

    def _fail(self, error: BaseException) -> None:
        if self._error is not None:
            return
        self._error = error
        self._reads.restore()
        self._pending = []
        self._pending_size = 0
        ctx = self._context
        if ctx is not None:
            ctx.writer.abort()
        self._close_account()
        # Keep reading (and discarding) so the error can be answered on a
        # connection that is still in sync.
        self._flow.release_all()

    def refuse(self, error: BaseException) -> None:
        """Store nothing more: the body's wrapper found it unacceptable (a
        PostObject file over its policy's size, a malformed form).  What
        was written is discarded and the rest of the body is swallowed;
        ``finish`` then fails with ``error``."""
        self._fail(error)

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
        self._reads.restore()
        self._flow.release_all()
        if self._account is not None:
            # Still holds bytes until they are stored, but reads no more.
            self._account.stop_reading()
        try:
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
        finally:
            self._close_account()
            if self._context is not None:
                # The writer reports progress to this sink: a cycle, once done.
                self._context.writer.set_progress_listener(None)
            if self._ready.called:
                # Every byte has been fed (the body ended, and what waited
                # for the signature check went in when it fired), so nothing
                # can be refused early any more.  The S3 layer's callback
                # holds its call, which holds this sink: a cycle that only
                # the cyclic collector would free (about 60 objects a PUT).
                self._refuse_early = None
        return context, BodyResult(result, trailers)

    def abort(self) -> None:
        """Discard whatever was stored (the metadata commit failed)."""
        self._close_account()
        if self._context is not None:
            self._context.writer.abort()

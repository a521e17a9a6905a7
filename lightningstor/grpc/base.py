"""What every servicer shares: reaching the core, authentication, errors.

gRPC handlers run on the server's own thread pool.  The core lives on the
reactor thread and returns Deferreds, so every core call goes through
:meth:`Rpc.call` (``blockingCallFromThread``): the handler thread waits, the
reactor never does.  The decorators authenticate each call and turn any
exception into a gRPC status with the S3 code in trailing metadata
(:mod:`lightningstor.grpc.errors` is the one mapping).  When the call has
ended they hand its facts (principal, decisions, status) to the audit log
(:mod:`lightningstor.audit`) and name the call's request id to the client in
trailing metadata (:data:`REQUEST_ID_KEY`).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import grpc
from twisted.internet.threads import blockingCallFromThread
from twisted.logger import Logger
from twisted.python.failure import Failure

from lightningstor import audit, errors
from lightningstor.config import GRPC_HANDLER_THREADS
from lightningstor.core.access import OBJECTS_GET, Decision, action_of
from lightningstor.core.policy_actions import COPY_SOURCE
from lightningstor.core.types import Principal
from lightningstor.grpc import token
from lightningstor.grpc.accesslog import GrpcAccessLog, GrpcCall
from lightningstor.grpc.errors import as_s3_error, trailing_metadata
from lightningstor.grpc.limits import CallLimiter, StreamWatchdog, Watch, too_many_calls

log = Logger()

MiB = 1 << 20
# GetObject content messages carry at most this much (SPEC: 1 MiB chunks).
MAX_CONTENT_MESSAGE = 1 * MiB
# Trailing metadata naming the call's request id (the audit record's).
REQUEST_ID_KEY = "lightningstor-request-id"
# Threads of the pool that runs health checks and reflection, apart from the
# API's; reflection streams may hold at most half of them.
PROBE_WORKERS = 4


@dataclass(frozen=True)
class GrpcOptions:
    """Limits the gRPC layer applies at its edge (from ``[limits]``)."""

    max_put_object_bytes: int = 5 * MiB
    max_metadata_bytes: int = 2048
    max_delete_keys: int = 1000
    max_workers: int = GRPC_HANDLER_THREADS
    grace_seconds: float = 10.0
    # Calls of one principal that may hold a handler thread at once (below
    # max_workers, so no principal can take them all).
    max_calls_per_principal: int = 8
    # A stream that moves no message for this long is ended (DEADLINE_EXCEEDED).
    stream_idle_timeout_seconds: float = 60.0
    # Keepalive pings closer together than this, on a connection whose
    # server sends nothing (an upload), are strikes; past two the
    # connection is ended (GOAWAY too_many_pings).  grpc's own default is
    # five minutes, which a client detecting dead servers cannot wait for.
    min_ping_interval_seconds: float = 10.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_calls_per_principal < self.max_workers:
            raise ValueError("max_calls_per_principal must be at least 1 and below max_workers")
        if self.stream_idle_timeout_seconds <= 0:
            raise ValueError("stream_idle_timeout_seconds must be positive")
        if self.min_ping_interval_seconds <= 0:
            raise ValueError("min_ping_interval_seconds must be positive")

    @property
    def max_concurrent_rpcs(self) -> int:
        """Calls the server takes at once, running or waiting for a thread
        (grpcio's ``maximum_concurrent_rpcs``): the pool, as many waiting,
        and the health/reflection pool.  Beyond it a call fails at once
        with RESOURCE_EXHAUSTED instead of queueing without bound."""
        return 2 * self.max_workers + PROBE_WORKERS

    @property
    def max_receive_message_bytes(self) -> int:
        """gRPC's own message limit: a PutObject of the largest allowed
        content plus room for its other fields, and never below what an
        UploadPart message may reasonably carry."""
        return max(self.max_put_object_bytes, 4 * MiB) + 1 * MiB


class Gate:
    """One call's access to buckets: scope resolution plus authorization of
    the RPC's action (``core.access.OPERATION_ACTIONS``; the RPC names are
    the operation names), with every decision kept for the audit record.
    Its methods run on the reactor thread and return Deferreds."""

    def __init__(
        self,
        core: Any,
        principal: Principal,
        method: str,
        decisions: list[Decision],
        *,
        peer: str = "",
        secure: bool = False,
        message: Any = None,
    ) -> None:
        self.core = core
        self.principal = principal
        self.method = method
        self.decisions = decisions
        self.peer = peer
        self.secure = secure
        # The call's request message: whether it names a version.
        self.message = message
        self._version_field = "version_id"

    # -- what a bucket policy may ask (core/access.py, PolicyContext) --------
    @property
    def op(self) -> str:
        return self.method

    def version_named(self) -> bool:
        """Whether the call names a version of the object being authorized
        (``version_id``, or ``source_version_id`` for a copy's source), so a
        policy sees s3:GetObjectVersion rather than s3:GetObject, as for S3."""
        return _names(self.message, self._version_field)

    def condition_keys(self) -> dict[str, tuple[str, ...]]:
        """What an RPC states of the request: the caller's address, whether
        TLS carries it, and the version it names (``s3:VersionId``, which
        also picks the version whose tags ``s3:ExistingObjectTag`` reads).
        Headers and query parameters (s3:prefix, s3:x-amz-acl...) have no
        gRPC counterpart and are absent."""
        keys: dict[str, tuple[str, ...]] = {"aws:securetransport": ("true" if self.secure else "false",)}
        host = peer_host(self.peer)
        if host:
            keys["aws:sourceip"] = (host,)
        if _names(self.message, self._version_field):
            keys["s3:versionid"] = (getattr(self.message, self._version_field),)
        return keys

    def bucket(self, name: str, key: str | None = None, action: str | None = None) -> Any:
        """Deferred[Bucket] ``name`` authorized for the action on it (or on
        ``key``).  ``objects:get`` asked by a copy is its source's read."""
        copying = action == OBJECTS_GET and self.method in ("CopyObject", "UploadPartCopy")
        self._version_field = "source_version_id" if copying else "version_id"
        return self.core.access.bucket(
            self.principal,
            name,
            action or action_of(self.method, key is not None),
            key,
            self.decisions.append,
            self,
            COPY_SOURCE if copying else None,
        )

    def scope(self, bucket: str | None = None) -> Any:
        """Deferred[None]: the action on the caller's scope (or a bucket to create)."""
        return self.core.access.scope(
            self.principal, action_of(self.method, False), self.decisions.append, bucket
        )


def _names(message: Any, field: str) -> bool:
    """Whether a request message sets ``field`` (False for messages without
    it, and for client streams, whose messages come later)."""
    try:
        return bool(message.HasField(field)) and bool(getattr(message, field))
    except (AttributeError, ValueError):
        return False


def peer_host(peer: str) -> str:
    """The address of a gRPC peer string (``ipv4:127.0.0.1:5000``,
    ``ipv6:[::1]:5000``); empty for other kinds (``unix:``)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return ""


class Rpc:
    """The servicers' handle on the core and the reactor."""

    def __init__(self, core: Any, reactor: Any, options: GrpcOptions, *, clock: Callable[[], float] = time.time) -> None:
        self.core = core
        self.reactor = reactor
        self.options = options
        self.clock = clock
        self._lock = threading.Lock()
        self._active = 0
        # The RPC running on this handler thread and its authorization
        # decisions (set by the unary/streaming decorators).
        self.local = threading.local()
        # Whether calls arrive over TLS (aws:SecureTransport in bucket policies).
        self.secure = False
        # Where finished calls are recorded (an AuditLog), or None.
        self.audit: Any = None
        # lightningstor.metrics.S3Metrics: every call is counted and timed.
        self.metrics: Any = None
        # Where finished calls are logged (``[logging] access_log``), or None.
        self.access_log: GrpcAccessLog | None = None
        # Fair use of the handler threads (lightningstor.grpc.limits).
        self.limiter = CallLimiter(options.max_calls_per_principal)
        self.watchdog = StreamWatchdog(options.stream_idle_timeout_seconds)

    @property
    def active(self) -> int:
        """Handlers running now (stopService waits for them to finish)."""
        return self._active

    def call(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``f`` on the reactor thread; wait for its (Deferred) result."""
        return blockingCallFromThread(self.reactor, f, *args, **kwargs)

    def authenticate(self, context: grpc.ServicerContext) -> Principal:
        """The principal of the call's bearer token: one of ours (see
        :mod:`lightningstor.grpc.token`), or one the IAM service issued when
        the authorizer vouches for tokens (aegis; SPEC §4.3)."""
        value = token.bearer_from_metadata(context.invocation_metadata())
        authority = self.core.token_authority
        if authority is not None and not token.is_own(value):
            return self._vouched(authority, token.check_outside_token(value))
        parsed = token.parse_token(value)
        cred = self.call(self.core.credentials.lookup, parsed.access_key_id)
        if cred is None:
            raise errors.InvalidAccessKeyId(
                "The access key of the bearer token does not exist or is disabled",
                AWSAccessKeyId=parsed.access_key_id,
            )
        self.local.access_key_id = parsed.access_key_id
        token.verify_token(parsed, cred.secret, now=self.clock())
        principal: Principal = cred.principal
        self.local.principal = principal
        return principal

    def _vouched(self, authority: Any, value: str) -> Principal:
        """The principal the IAM service says ``value`` names; UNAUTHENTICATED
        when it does not accept the token, UNAVAILABLE when it cannot say."""
        try:
            principal: Principal | None = self.call(authority.authenticate_token, value)
        except errors.S3Error:
            raise
        except Exception as e:
            log.warn("the IAM service could not authenticate a bearer token: {err}", err=e)
            raise errors.ServiceUnavailable("The authentication service is unavailable") from None
        if principal is None:
            raise errors.S3Error(
                "The IAM service does not accept the bearer token (unknown, expired or revoked)",
                code="InvalidToken",
            )
        self.local.principal = principal
        return principal

    def gate(self, principal: Principal) -> Gate:
        """The current call's :class:`Gate` (call from the handler thread)."""
        method = getattr(self.local, "method", "")
        decisions = getattr(self.local, "decisions", None)
        if decisions is None:
            decisions = self.local.decisions = []
        peer = getattr(self.local, "peer", "")
        message = getattr(self.local, "message", None)
        return Gate(self.core, principal, method, decisions, peer=peer, secure=self.secure, message=message)

    def bucket(self, principal: Principal, name: str, key: str | None = None, action: str | None = None) -> Any:
        """Bucket ``name`` resolved and authorized (blocking; handler thread)."""
        return self.call(self.gate(principal).bucket, name, key, action)

    def begin(self, method: str, path: str = "") -> None:
        """A call starts on this thread: reset the per-call state."""
        self.local.method = method
        self.local.path = path or method
        self.local.bytes_out = 0
        self.local.decisions = []
        self.local.principal = None
        self.local.access_key_id = None
        self.local.request_id = audit.new_request_id()
        self.local.started = time.monotonic()
        self.local.object_size = None

    def wrote(self, size: int) -> None:
        """The call on this thread stored an object (or part) of ``size``
        bytes: observed in ``lightningstor_object_size_bytes`` by method once
        it answers OK, as the S3 writes are (gRPC writes were left out)."""
        self.local.object_size = size

    def succeeded(self, context: grpc.ServicerContext) -> None:
        """The call on this thread is answering OK: name its request id."""
        context.set_trailing_metadata(((REQUEST_ID_KEY, self.local.request_id),))

    def finish(self, context: grpc.ServicerContext, request: Any, code: grpc.StatusCode, error_code: str | None) -> None:
        """The call on this thread has ended with ``code``: count it in the
        metrics and record it in the audit log (waiting, if its queue is
        full, up to ``audit.SUBMIT_WAIT_SECONDS``: backpressure on gRPC
        clients).  Never raises."""
        local = self.local
        # A client-streamed call's messages (:class:`_Requests`): the first
        # one names the bucket and key.
        subject = request.first if isinstance(request, _Requests) else request
        bucket, key = _addressed(subject)
        if self.metrics is not None:
            try:
                self.metrics.grpc_finished(local.method, code.name, time.monotonic() - local.started)
                size = getattr(local, "object_size", None)
                if size is not None and code is grpc.StatusCode.OK:
                    self.metrics.object_written(local.method, size)
            except Exception:
                failure = Failure()
                self.reactor.callFromThread(log.failure, "Counting gRPC {method} failed", failure, method=local.method)
        if self.access_log is not None:
            self._log_access(context, request, bucket, key, code, error_code)
        if self.audit is None:
            return
        try:
            record = audit.grpc_record(
                method=local.method,
                request_id=local.request_id,
                principal=local.principal,
                access_key_id=local.access_key_id,
                decisions=local.decisions,
                code=code.name,
                error_code=error_code,
                peer=context.peer(),
                bucket=bucket,
                key=key,
                duration=time.monotonic() - local.started,
            )
            self.audit.submit(record, wait=audit.SUBMIT_WAIT_SECONDS)
        except Exception:
            failure = Failure()  # captured here: the reactor thread has no current exception
            method = getattr(self.local, "method", "?")
            self.reactor.callFromThread(log.failure, "Auditing gRPC {method} failed", failure, method=method)

    def _log_access(
        self,
        context: grpc.ServicerContext,
        request: Any,
        bucket: str | None,
        key: str | None,
        code: grpc.StatusCode,
        error_code: str | None,
    ) -> None:
        """Emit the call's access event (:mod:`lightningstor.grpc.accesslog`). Never raises."""
        local = self.local
        try:
            bytes_in = request.bytes if isinstance(request, _Requests) else _size(request)
            assert self.access_log is not None
            self.access_log.emit(GrpcCall(
                request_id=local.request_id,
                access_key_id=local.access_key_id,
                operation=local.method,
                path=local.path,
                status=code.name,
                completed=code is not grpc.StatusCode.CANCELLED,
                error_code=error_code,
                bucket=bucket,
                key=key,
                bytes_in=bytes_in,
                bytes_out=local.bytes_out,
                duration=time.monotonic() - local.started,
                peer=context.peer(),
                principal_id=getattr(local.principal, "principal_id", None),
            ))  # fmt: skip
        except Exception:
            failure = Failure()
            self.reactor.callFromThread(log.failure, "Logging gRPC {method} failed", failure, method=local.method)

    def enter(self) -> None:
        with self._lock:
            self._active += 1

    def leave(self) -> None:
        with self._lock:
            self._active -= 1

    def fail(self, context: grpc.ServicerContext, exc: BaseException, method: str) -> NoReturn:
        """Answer ``exc`` as a gRPC status; never returns (``context.abort`` raises)."""
        if isinstance(exc, grpc.RpcError) or not context.is_active():
            raise exc  # the client went away (a broken request stream): nothing to answer
        err, status = as_s3_error(exc)
        if not isinstance(exc, errors.S3Error):
            failure = Failure(exc)
            self.reactor.callFromThread(log.failure, "gRPC {method} failed", failure, method=method)
        context.set_trailing_metadata(
            (*trailing_metadata(err), (REQUEST_ID_KEY, getattr(self.local, "request_id", "")))
        )
        context.abort(status, err.message)
        raise AssertionError("context.abort returned")  # pragma: no cover


T = TypeVar("T")
Handler = Callable[..., Any]


class Undecodable:
    """A request message that did not decode (a ``string`` field holding
    bytes that are not UTF-8...): the server's deserializer hands it on
    (service.py), and the call answers it INVALID_ARGUMENT, logged and
    audited like any refusal, where grpcio answered a bare INTERNAL."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def refuse_undecodable(message: Any) -> None:
    """InvalidArgument for a message that did not decode (S3 answers a key
    that is not UTF-8 with 400 too)."""
    if isinstance(message, Undecodable):
        raise errors.InvalidArgument(f"The request message does not decode: {message.reason}")


class _Requests:
    """A client-streamed call's messages, as the handler reads them: counted
    for the access log, and the first one kept (it names the bucket and key
    for the access log and the audit record)."""

    __slots__ = ("_messages", "first", "bytes")

    def __init__(self, messages: Iterator[Any]) -> None:
        self._messages = messages
        self.first: Any = None
        self.bytes = 0

    def timed(self, watch: Watch) -> None:
        """Read through ``watch``: a client that sends nothing for the
        watchdog's timeout has its stream ended."""
        self._messages = watch.wrap(self._messages)

    def __iter__(self) -> _Requests:
        return self

    def __next__(self) -> Any:
        message = next(self._messages)
        refuse_undecodable(message)
        if self.first is None:
            self.first = message
        self.bytes += _size(message)
        return message


def _size(message: Any) -> int:
    """A protobuf message's serialized size (0 for anything else)."""
    size = getattr(message, "ByteSize", None)
    return size() if size is not None else 0


# Requests that name their bucket ``name`` (the bucket is what they act on).
_BUCKET_NAMED = frozenset({"CreateBucketRequest", "HeadBucketRequest", "DeleteBucketRequest"})


def _addressed(message: Any) -> tuple[str | None, str | None]:
    """The bucket and key a request message names (None for unset or absent fields)."""
    if message is None:
        return None, None
    bucket = getattr(message, "bucket", None)
    if bucket is None and type(message).__name__ in _BUCKET_NAMED:
        bucket = message.name
    return bucket or None, getattr(message, "key", None) or None


def _path(servicer: Any, name: str) -> str:
    """``/package.Service/Method``: the call's path on the wire."""
    return f"/{getattr(servicer, 'SERVICE_NAME', type(servicer).__name__)}/{name}"


@contextlib.contextmanager
def _call(
    rpc: Rpc, name: str, request: Any, context: grpc.ServicerContext, path: str = "", *, stream: bool = False
) -> Iterator[Principal]:
    """One RPC from start to end, for both decorators: count it active, set
    up its per-thread state, authenticate (the block gets the principal),
    hold one of the principal's call slots (:mod:`lightningstor.grpc.limits`),
    turn any failure into a gRPC status, and record the outcome (metrics,
    audit).  A streamed call (``stream``) is timed by the watchdog from its
    start (``rpc.local.watch``).  A client that goes away mid-stream
    (GeneratorExit) stays CANCELLED; a stream the watchdog ended is
    DEADLINE_EXCEEDED (RequestTimeout)."""
    rpc.enter()
    rpc.begin(name, path)
    rpc.local.peer = context.peer()
    rpc.local.message = request
    watch = rpc.local.watch = rpc.watchdog.watch(context) if stream else None
    if watch is not None and isinstance(request, _Requests):
        request.timed(watch)
    slot: str | None = None
    outcome: tuple[grpc.StatusCode, str | None] = (grpc.StatusCode.CANCELLED, None)
    try:
        principal = rpc.authenticate(context)
        if not rpc.limiter.acquire(principal.principal_id):
            raise too_many_calls(rpc.limiter.cap)
        slot = principal.principal_id
        yield principal
        rpc.succeeded(context)
        outcome = (grpc.StatusCode.OK, None)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a status
        outcome = _outcome(context, exc)
        rpc.fail(context, exc, name)
    finally:
        if watch is not None and watch.expired:
            outcome = (grpc.StatusCode.DEADLINE_EXCEEDED, "RequestTimeout")
        if slot is not None:
            rpc.limiter.release(slot)
        if watch is not None:
            watch.close()
        rpc.local.watch = None
        rpc.finish(context, request, *outcome)
        rpc.leave()


def unary(method: Handler) -> Handler:
    """Decorate ``method(self, principal, request, context)`` as an RPC handler
    (unary or client-streaming response)."""

    @functools.wraps(method)
    def handler(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        if hasattr(request, "__next__"):  # a client stream
            request = _Requests(request)
        name = method.__name__
        stream = isinstance(request, _Requests)
        with _call(self.rpc, name, request, context, _path(self, name), stream=stream) as principal:
            refuse_undecodable(request)
            response = method(self, principal, request, context)
            self.rpc.local.bytes_out = _size(response)
            return response

    return handler


def streaming(method: Callable[..., Iterator[T]]) -> Callable[..., Iterator[T]]:
    """Like :func:`unary` for a server-streaming ``method`` (a generator)."""

    @functools.wraps(method)
    def handler(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[T]:
        name = method.__name__
        with _call(self.rpc, name, request, context, _path(self, name), stream=True) as principal:
            refuse_undecodable(request)
            local = self.rpc.local
            watch: Watch = local.watch
            responses = method(self, principal, request, context)
            try:
                for response in responses:
                    local.bytes_out += _size(response)
                    # gRPC sends the message before asking for the next one:
                    # until then the call waits on the client's reading.
                    watch.waiting()
                    yield response
                    watch.progress()
            finally:
                # As ``yield from`` did: a client that goes away closes the
                # handler at once (an object reader it holds is released).
                responses.close()  # type: ignore[attr-defined]

    return handler


def _outcome(context: grpc.ServicerContext, exc: BaseException) -> tuple[grpc.StatusCode, str | None]:
    """The status and S3 code :meth:`Rpc.fail` answers ``exc`` with
    (CANCELLED when the client already went away: nothing is answered)."""
    if isinstance(exc, grpc.RpcError) or not context.is_active():
        return grpc.StatusCode.CANCELLED, None
    err, status = as_s3_error(exc)
    return status, err.code


def require(value: str, name: str) -> str:
    """A required string field: InvalidArgument naming it when empty."""
    if not value:
        raise errors.InvalidArgument(f"Missing required field '{name}'", ArgumentName=name)
    return value


def optional(message: Any, name: str) -> Any:
    """The value of an ``optional`` field, or None when it is not set."""
    return getattr(message, name) if message.HasField(name) else None

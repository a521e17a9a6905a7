"""The audit log: one JSON line per S3 request and gRPC call (SPEC §9.4).

Who did what to which resource, and whether it was allowed: every operation
of both protocols, including requests whose authentication failed (the
principal is then unknown and the result ``denied``).  The record lists every
authorization decision the request needed (:class:`~lightningstor.core.access.Decision`):
CopyObject's ``objects:copy`` on the target and ``objects:get`` on the source,
DeleteObjects' bucket check plus one decision per key.

Building records and writing them are kept apart:

* :func:`s3_record` and :func:`grpc_record` turn what a protocol layer knows
  about a finished request into a plain dict; the protocol layers only hand
  over their facts (the S3 finish hook, the gRPC decorators), the rules of
  what a record says (``result``, the top-level ``action``/``resource``)
  live here.  No record holds a secret: no headers, no signature, no query
  values, no token; callers are named by principal id and access key id
  (public, like a user name), and the access key id of a failed
  authentication only when the key exists (a string typed into the
  access-key field could be a secret pasted in the wrong place).
* :class:`AuditLog` writes records from a dedicated thread, never from the
  reactor: :meth:`AuditLog.submit` encodes the record as one line (JSON
  escapes a ``\\n`` in an object key) and puts it on a bounded queue.  The
  writer appends batches of whole lines with one ``write()`` each, on a
  descriptor opened with ``O_APPEND`` (worker processes share the file and
  their lines never interleave), and fsyncs as ``[audit] fsync`` says.

When the disk is slower than the request rate, the queue absorbs bursts
(``[audit] max_queued_records``).  Once it is full, callers that may wait
(gRPC handler threads) block for up to :data:`SUBMIT_WAIT_SECONDS`, which
slows gRPC clients down (backpressure); the reactor thread must not wait, so
an S3 record that finds the queue full is dropped.  A drop is never silent:
it is counted in ``lightningstor_audit_records_dropped_total`` (registered
at the first drop), logged as an error, and once the writer catches up it
writes a ``"type": "gap"`` record saying how many records are missing.  A
failing write (disk full, I/O error) is retried with backoff, holding the
batch (and so, the queue filling up, applying the same backpressure) rather
than discarding it.

``SIGHUP`` reopens the file (:meth:`AuditLog.reopen`): rotate by renaming the
file, then signal the server (``systemctl reload``); lines written between
the two land, whole, in the renamed file.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from lightningstor.core.access import OPERATION_ACTIONS, Decision

__all__ = [
    "AUTH_ERRORS",
    "FSYNC_POLICIES",
    "AuditLog",
    "AuditService",
    "DropCounter",
    "encode_record",
    "grpc_peer_host",
    "grpc_record",
    "new_request_id",
    "result_of",
    "s3_record",
]

log = Logger()

# ``[audit] fsync``: "never" leaves flushing to the OS, "interval" fsyncs at
# most once a second (what a power loss can take), "batch" after every write.
FSYNC_POLICIES = ("never", "interval", "batch")
FSYNC_INTERVAL_SECONDS = 1.0
# How long a caller that may block (a gRPC handler thread) waits for room in
# a full queue before its record is dropped.
SUBMIT_WAIT_SECONDS = 10.0
# One write() carries at most this many bytes (whole lines; one line may be
# longer); the writer takes at most this many records per batch.
_BATCH_BYTES = 256 * 1024
_BATCH_RECORDS = 2048
# Retrying a failed write: first pause, longest pause; stop gives up after
# this many further attempts.
_RETRY_FIRST = 0.1
_RETRY_MAX = 5.0
_RETRIES_WHEN_STOPPING = 3
# A persistent write error is logged again at most this often.
_ERROR_LOG_INTERVAL = 30.0
# After writing a batch the writer lets records gather this long before it
# waits on the queue again.  A writer blocked on the queue is woken by every
# record (a futex wake-up and a GIL hand-over on the reactor thread, per
# request); one that is pausing costs the submitter nothing.  Records reach
# the file at most this much later; fsync and drop rules are unchanged.
_LINGER_SECONDS = 0.01

# S3 error codes that mean "authentication failed or was refused": such a
# request's result is ``denied`` (a known principal refused by the
# authorizer is ``AccessDenied`` too, with a denied decision).
AUTH_ERRORS = frozenset(
    {
        "AccessDenied",
        "AccountProblem",
        "AuthorizationHeaderMalformed",
        "AuthorizationQueryParametersError",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "MissingSecurityHeader",
        "RequestTimeTooSkewed",
        "SignatureDoesNotMatch",
    }
)

# Unauthenticated liveness probes and the metrics scrape are not operations
# on anyone's data (a load balancer polls them every few seconds).
_NOT_AUDITED = frozenset({"Health", "Ready", "Metrics"})


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------


def new_request_id() -> str:
    """A request id in the S3 layer's format (16 hex digits)."""
    return secrets.token_hex(8).upper()


def result_of(ok: bool, error_code: str | None, decisions: Sequence[Decision]) -> str:
    """``success``; ``partial`` (succeeded, but some decision was denied: a
    DeleteObjects key the caller may not delete); ``denied`` (failed
    authentication or authorization); ``error`` (failed otherwise, or the
    client went away)."""
    refused = False
    for d in decisions:  # a loop, not any(<genexpr>): cheaper for the usual one decision
        if not d.allowed:
            refused = True
            break
    if ok:
        return "partial" if refused else "success"
    if refused or error_code in AUTH_ERRORS:
        return "denied"
    return "error"


def _decisions(decisions: Iterable[Decision]) -> list[dict[str, Any]]:
    return [{"action": d.action, "resource": d.resource, "allowed": d.allowed} for d in decisions]


def _resource(decisions: Sequence[Decision], key: str | None) -> str | None:
    """The resource the request as a whole acted on: its first decision's,
    except that a request naming no object whose decisions are per object
    (DeleteObjects) acted on their bucket.  Cutting at the first
    ``/object/`` is safe: org, project and bucket names hold no ``/``."""
    if not decisions:
        return None
    resource = decisions[0].resource
    if key is None and "/object/" in resource:
        return resource.split("/object/", 1)[0]
    return resource


# os.getpid() is a system call (glibc no longer caches it); a forked child
# refreshes the copy.
_pid = os.getpid()


def _refresh_pid() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_refresh_pid)


def _record(
    *,
    protocol: str,
    request_id: str,
    operation: str,
    principal: Any,
    access_key_id: str | None,
    decisions: Sequence[Decision],
    ok: bool,
    error_code: str | None,
    http_status: int | None,
    grpc_code: str | None,
    source: str | None,
    bucket: str | None,
    key: str | None,
    duration: float,
    now: float,
) -> dict[str, Any]:
    """The one record shape both protocols share (documented in
    docs/operations.md, "Audit log")."""
    decisions = list(decisions)
    action = OPERATION_ACTIONS.get(operation) or (decisions[0].action if decisions else None)
    return {
        "type": "request",
        "time": now,
        "protocol": protocol,
        "request_id": request_id,
        "operation": operation,
        # An unsigned request's principal (core.access.ANONYMOUS) has
        # neither: null, like an unknown caller's; its result tells them apart.
        "principal": getattr(principal, "principal_id", None) or None,
        "access_key_id": getattr(principal, "access_key_id", None) or access_key_id,
        "org_id": getattr(principal, "org_id", None) or None,
        "project_id": getattr(principal, "project_id", None),
        "action": action,
        "resource": _resource(decisions, key),
        "result": result_of(ok, error_code, decisions),
        "decisions": _decisions(decisions),
        "bucket": bucket,
        "key": key,
        "http_status": http_status,
        "grpc_code": grpc_code,
        "error_code": error_code,
        "source": source,
        "duration": round(duration, 6),
        "pid": _pid,
    }


def s3_record(summary: Any, call: Any, now: float | None = None) -> dict[str, Any] | None:
    """The record of a finished S3 request, or None for the unauthenticated
    probes (``/health``, ``/ready``, ``/metrics``).

    ``summary`` is the request's :class:`~lightningstor.s3.summary.RequestSummary`
    (status, error code, client address), ``call`` its
    :class:`~lightningstor.s3.app.S3Call` (principal, decisions) or None
    when the request never got that far.
    """
    if summary.operation in _NOT_AUDITED:
        return None
    ok = summary.completed and summary.status < 400
    return _record(
        protocol="s3",
        request_id=summary.request_id,
        operation=summary.operation,
        principal=getattr(call, "principal", None),
        access_key_id=getattr(call, "access_key_id", None),
        decisions=getattr(call, "decisions", ()),
        ok=ok,
        error_code=summary.error_code,
        http_status=summary.status,
        grpc_code=None,
        source=summary.remote if summary.remote != "-" else None,
        bucket=summary.bucket,
        key=summary.key,
        duration=summary.duration,
        now=time.time() if now is None else now,
    )


def grpc_peer_host(peer: str | None) -> str | None:
    """The client address of a grpc ``context.peer()`` string
    (``ipv4:10.0.0.1:5000``, ``ipv6:[::1]:5000``, ``unix:/path``)."""
    if not peer:
        return None
    scheme, _, rest = peer.partition(":")
    if scheme == "ipv4":
        return rest.rpartition(":")[0] or rest
    if scheme == "ipv6":
        host = rest.rpartition(":")[0] if rest.startswith("[") else rest
        return host.strip("[]") or None
    return peer


def grpc_record(
    *,
    method: str,
    request_id: str,
    principal: Any,
    access_key_id: str | None,
    decisions: Sequence[Decision],
    code: str,
    error_code: str | None,
    peer: str | None,
    bucket: str | None,
    key: str | None,
    duration: float,
    now: float | None = None,
) -> dict[str, Any]:
    """The record of a finished gRPC call; ``code`` is the status code's
    name (``OK``, ``PERMISSION_DENIED``, ``CANCELLED`` when the client went
    away)."""
    return _record(
        protocol="grpc",
        request_id=request_id,
        operation=method,
        principal=principal,
        access_key_id=access_key_id,
        decisions=decisions,
        ok=code == "OK",
        error_code=error_code,
        http_status=None,
        grpc_code=code,
        source=grpc_peer_host(peer),
        bucket=bucket or None,
        key=key or None,
        duration=duration,
        now=time.time() if now is None else now,
    )


# The generic encoder (what every line was once written with, and still is
# for anything but the usual request record): compact, ASCII only (the
# default escapes everything but printable ASCII), str() of anything JSON
# cannot say.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
_second_prefix: tuple[int, str] = (-1, "")


def _iso(t: float) -> str:
    """``2025-01-01T12:00:00.123Z``; the part up to the second is formatted
    once per second (records come in bursts)."""
    global _second_prefix
    second = int(t)
    cached, prefix = _second_prefix
    if cached != second:
        prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second_prefix = (second, prefix)
    return f"{prefix}.{int((t - second) * 1000):03d}Z"


def encode_record(record: dict[str, Any]) -> bytes:
    """One record as one line: compact JSON, ASCII only (a control
    character or newline in an object key is escaped, so it can never split
    the line), ``time`` as ISO 8601 UTC."""
    if record.__class__ is dict and tuple(record) == _REQUEST_FIELDS:
        line = _request_line(record)
        if line is not None:
            return line
    out = dict(record)
    t = out.get("time")
    if isinstance(t, (int, float)):
        out["time"] = _iso(float(t))
    return _ENCODER.encode(out).encode("ascii") + b"\n"


# The usual record, the one :func:`_record` builds, is written by
# :func:`_request_line` instead of the generic encoder, which costs three
# times as much on the reactor thread: it escapes every key again, and
# JSONEncoder.encode builds a new C encoder for every call.  The field
# names are known, so they are written once, here; the values go through
# the same escaping function the generic encoder uses.  Any value of
# another type than the fields usually hold makes it give up (None), and
# the generic encoder writes the record: the line is the same either way
# (tests/unit/test_audit_encoding.py compares the two).
_REQUEST_FIELDS = (
    "type", "time", "protocol", "request_id", "operation", "principal", "access_key_id",
    "org_id", "project_id", "action", "resource", "result", "decisions", "bucket", "key",
    "http_status", "grpc_code", "error_code", "source", "duration", "pid",
)  # fmt: skip
_DECISION_FIELDS = ("action", "resource", "allowed")
_esc = json.encoder.encode_basestring_ascii


class _Unusual(Exception):
    """A value the fast path does not write: the generic encoder does."""


def _text(value: Any) -> str:
    """The JSON of a field that holds a string or null."""
    if value.__class__ is str:
        return _esc(value)
    if value is None:
        return "null"
    raise _Unusual


def _integer(value: Any) -> str:
    """The JSON of a field that holds an int or null (not a bool)."""
    if value.__class__ is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    raise _Unusual


def _decision_list(decisions: Any) -> str:
    if decisions.__class__ is not list:
        raise _Unusual
    parts = []
    for d in decisions:
        if d.__class__ is not dict or tuple(d) != _DECISION_FIELDS:
            raise _Unusual
        allowed = d["allowed"]
        if allowed is True:
            verdict = "true"
        elif allowed is False:
            verdict = "false"
        else:
            raise _Unusual
        parts.append(
            f'{{"action":{_text(d["action"])},"resource":{_text(d["resource"])},"allowed":{verdict}}}'
        )
    return "[" + ",".join(parts) + "]"


def _request_line(record: dict[str, Any]) -> bytes | None:
    """:func:`encode_record` of a record with exactly the fields of
    :data:`_REQUEST_FIELDS`, in that order, or None when some value is not
    of the type the fast path handles (see above)."""
    (
        kind, t, protocol, request_id, operation, principal, access_key_id, org_id, project_id,
        action, resource, result, decisions, bucket, key, http_status, grpc_code, error_code,
        source, duration, pid,
    ) = record.values()  # fmt: skip
    if (t.__class__ is not float and t.__class__ is not int) or duration.__class__ is not float:
        return None
    if duration - duration != 0.0:  # NaN or infinite: the generic encoder's spelling
        return None
    try:
        line = (
            f'{{"type":{_text(kind)},"time":{_esc(_iso(float(t)))},"protocol":{_text(protocol)},'
            f'"request_id":{_text(request_id)},"operation":{_text(operation)},'
            f'"principal":{_text(principal)},"access_key_id":{_text(access_key_id)},'
            f'"org_id":{_text(org_id)},"project_id":{_text(project_id)},"action":{_text(action)},'
            f'"resource":{_text(resource)},"result":{_text(result)},'
            f'"decisions":{_decision_list(decisions)},"bucket":{_text(bucket)},"key":{_text(key)},'
            f'"http_status":{_integer(http_status)},"grpc_code":{_text(grpc_code)},'
            f'"error_code":{_text(error_code)},"source":{_text(source)},'
            f'"duration":{float.__repr__(duration)},"pid":{_integer(pid)}}}\n'
        )
    except _Unusual:
        return None
    return line.encode("ascii")


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


class DropCounter:
    """``lightningstor_audit_records_dropped_total``, registered on the
    first drop (like the scrub's counter: a server that never dropped a
    record exposes only the SPEC's metric families).  Reactor thread only."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self.counter: Any = None

    def inc(self, n: int) -> None:
        if self.registry is None:
            return
        if self.counter is None:
            from prometheus_client import Counter

            self.counter = Counter(
                "lightningstor_audit_records_dropped",
                "Audit records that could not be written (queue full, or the disk failed at shutdown)",
                registry=self.registry,
            )
        self.counter.inc(n)


# Put on the queue to wake the writer for a reopen or stop (if the queue is
# full, the writer is busy and sees the flag after its current batch).
_WAKE = object()


# Queue places the writer's own wake-ups may take (reopen, stop): kept free
# with ``[audit] when_full = "refuse"`` (AuditLog.admits).
WAKE_SLOTS = 2


class AuditLog:
    """Appends audit records to ``path`` from its own writer thread.

    ``reactor`` is used to log and count from the writer thread
    (``callFromThread``) and by :class:`AuditService` to wait for it.
    :meth:`open` opens the file (start-up: an unwritable path is a start-up
    error); :meth:`start` starts the writer; :meth:`stop` drains the queue.
    """

    def __init__(
        self,
        path: str,
        reactor: Any,
        *,
        fsync: str = "interval",
        max_queued_records: int = 65536,
        registry: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES}, not {fsync!r}")
        self.path = path
        self.reactor = reactor
        self.fsync = fsync
        self.clock = clock
        self.dropped = DropCounter(registry)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queued_records)
        self._fd: int | None = None
        self._thread: threading.Thread | None = None
        self._reopen = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        # Records dropped and not yet announced by a gap record (any thread).
        self._gap = 0
        self._gap_since: float | None = None
        self._last_error_log = -_ERROR_LOG_INTERVAL
        self._last_refusal_log = -_ERROR_LOG_INTERVAL  # admits (reactor thread)
        self.written = 0  # records written (writer thread; tests and diagnostics)

    # -- life cycle ---------------------------------------------------------
    def open(self) -> None:
        """Open (creating) the file for appending; raises OSError."""
        self._fd = self._open_fd()

    def _open_fd(self) -> int:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def start(self) -> None:
        if self._fd is None:
            self.open()
        self._thread = threading.Thread(target=self._run, name="lightningstor-audit", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def admits(self, in_flight: int, reserved: int) -> bool:
        """Whether the queue keeps room for the records of ``in_flight``
        requests (each ends with at most one) besides ``reserved`` places
        that others may take at any time (gRPC calls in flight, wake-ups).
        What ``[audit] when_full = "refuse"`` asks before serving an S3
        request: admitted only while this holds, no S3 record finds the
        queue full.  A refusal is logged, at most every 30 s (reactor
        thread)."""
        if self._queue.qsize() + in_flight + reserved <= self._queue.maxsize:
            return True
        now = self.clock()
        if now - self._last_refusal_log >= _ERROR_LOG_INTERVAL:
            self._last_refusal_log = now
            log.error(
                "Audit log {path} is not keeping up ({queued} records queued): S3 requests are refused "
                "with 503 SlowDown until its queue has room ([audit] when_full = \"refuse\")",
                path=self.path, queued=self.queued,
            )
        return False

    def reopen(self) -> None:
        """Reopen the file on the writer thread (log rotation, SIGHUP)."""
        self._reopen.set()
        self._wake()

    def _wake(self) -> None:
        try:
            self._queue.put_nowait(_WAKE)
        except queue.Full:
            pass

    @inlineCallbacks
    def stop(self, timeout: float = 10.0) -> Any:
        """Deferred: write what is queued, fsync, close.  A writer still
        stuck on the disk after ``timeout`` seconds is left behind (it is a
        daemon thread) and what it held is reported as lost."""
        self._stopping.set()
        self._wake()
        deadline = self.clock() + timeout
        while self.running and self.clock() < deadline:
            d: Deferred[None] = Deferred()
            self.reactor.callLater(0.02, d.callback, None)
            yield d
        if self.running:
            log.error(
                "Audit log writer did not finish within {timeout}s: up to {n} records not written",
                timeout=timeout,
                n=self.queued,
            )
            self.dropped.inc(self.queued)

    # -- producers ----------------------------------------------------------
    def submit(self, record: dict[str, Any], *, wait: float = 0.0) -> bool:
        """Queue ``record``; True when queued.

        The record is encoded here, by the caller: the queue then holds
        compact bytes (about 0.5 KiB a record, so ``max_queued_records``
        bounds memory), and with the GIL the CPU cost is the same on either
        thread.  ``wait`` is how long the caller may block for room (0 on
        the reactor thread).  A record that finds no room is dropped and
        counted (see the module docstring); never raises.
        """
        line = self._encode(record)
        try:
            if wait > 0:
                self._queue.put(line, timeout=wait)
            else:
                self._queue.put_nowait(line)
            return True
        except queue.Full:
            self._note_dropped(1, on_reactor=wait <= 0)
            return False

    def _note_dropped(self, n: int, *, on_reactor: bool) -> None:
        with self._lock:
            first = self._gap == 0
            self._gap += n
            if self._gap_since is None:
                self._gap_since = time.time()
        if on_reactor:
            self._count_drop(n, first)
        else:
            self.reactor.callFromThread(self._count_drop, n, first)

    def _count_drop(self, n: int, first: bool) -> None:
        self.dropped.inc(n)
        if first:
            log.error(
                "Audit log {path} is not keeping up (queue of {size} full): dropping records "
                "(counted in lightningstor_audit_records_dropped_total)",
                path=self.path,
                size=self._queue.maxsize,
            )

    # -- the writer thread --------------------------------------------------
    def _run(self) -> None:
        last_sync = self.clock()
        dirty = False  # written since the last fsync
        while True:
            if self._reopen.is_set():
                self._reopen.clear()
                self._do_reopen()
            wait = 1.0
            if self._stopping.is_set():
                wait = 0.05
            elif dirty and self.fsync == "interval":
                wait = min(wait, max(0.0, last_sync + FSYNC_INTERVAL_SECONDS - self.clock()))
            batch = self._take(wait)
            data = b"".join(batch)
            gap = self._take_gap()
            if gap is not None:
                data += gap
            if data and self._write(data):
                self.written += len(batch)
                dirty = True
            if dirty and (
                self.fsync == "batch"
                or (self.fsync == "interval" and self.clock() - last_sync >= FSYNC_INTERVAL_SECONDS)
            ):
                self._sync()
                last_sync, dirty = self.clock(), False
            if not batch and self._stopping.is_set() and self._queue.empty():
                break
            if batch and not self._stopping.is_set() and not self._reopen.is_set():
                time.sleep(_LINGER_SECONDS)
        if dirty and self.fsync != "never":
            self._sync()
        self._close()

    def _take(self, timeout: float) -> list[Any]:
        """Up to one batch of records: waits ``timeout`` for the first."""
        try:
            first = self._queue.get(timeout=max(timeout, 0.001))
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < _BATCH_RECORDS:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return [r for r in batch if r is not _WAKE]

    @staticmethod
    def _encode(record: dict[str, Any]) -> bytes:
        try:
            return encode_record(record)
        except Exception as exc:  # noqa: BLE001 - a bad record must still leave a trace
            fallback = {
                "type": "request",
                "time": record.get("time"),
                "request_id": str(record.get("request_id")),
                "encoding_error": repr(exc),
            }
            return encode_record(fallback)

    def _take_gap(self) -> bytes | None:
        with self._lock:
            n, since = self._gap, self._gap_since
            self._gap, self._gap_since = 0, None
        if not n:
            return None
        return encode_record(
            {
                "type": "gap",
                "time": time.time(),
                "dropped": n,
                "since": _iso(since) if since is not None else None,
                "pid": os.getpid(),
            }
        )

    def _write(self, data: bytes) -> bool:
        """Append ``data`` (whole lines) in ``write()`` calls of at most
        :data:`_BATCH_BYTES`, each cut at a line end (a single longer line
        goes in one call).  Failures are retried with backoff, holding the
        data; False only when stopping and the disk keeps failing (the lines
        are then counted as dropped)."""
        offset = 0
        pause = _RETRY_FIRST
        failures_while_stopping = 0
        while offset < len(data):
            end = len(data)
            if end - offset > _BATCH_BYTES:
                cut = data.rfind(b"\n", offset, offset + _BATCH_BYTES)
                end = cut + 1 if cut >= 0 else data.find(b"\n", offset) + 1 or len(data)
            try:
                if self._fd is None:
                    self._fd = self._open_fd()
                offset += os.write(self._fd, data[offset:end])
                pause = _RETRY_FIRST
            except OSError as exc:
                self._log_error("Audit log write to {path} failed, retrying: {error}", exc)
                if self._stopping.is_set():
                    failures_while_stopping += 1
                    if failures_while_stopping > _RETRIES_WHEN_STOPPING:
                        lost = data.count(b"\n", offset) or 1
                        self.reactor.callFromThread(self._count_drop, lost, False)
                        return False
                time.sleep(pause)
                pause = min(pause * 2, _RETRY_MAX)
                if self._reopen.is_set():  # rotation may be the cure (a deleted directory)
                    self._reopen.clear()
                    self._do_reopen()
        return True

    def _sync(self) -> None:
        if self._fd is None:
            return
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self._log_error("Audit log fsync of {path} failed: {error}", exc)

    def _do_reopen(self) -> None:
        try:
            fd = self._open_fd()
        except OSError as exc:
            self._log_error(
                "Audit log {path} could not be reopened, still writing the old file: {error}", exc
            )
            return
        old, self._fd = self._fd, fd
        if old is not None:
            try:
                if self.fsync != "never":
                    os.fsync(old)
            except OSError:
                pass
            os.close(old)
        self.reactor.callFromThread(log.info, "Audit log {path} reopened", path=self.path)

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def _log_error(self, message: str, exc: OSError) -> None:
        now = self.clock()
        if now - self._last_error_log < _ERROR_LOG_INTERVAL:
            return
        self._last_error_log = now
        self.reactor.callFromThread(log.error, message, path=self.path, error=str(exc))


class AuditService(Service):
    """Runs an :class:`AuditLog` with the process.

    Add it to the server *before* the protocol services: children stop in
    reverse order, so the S3 and gRPC services have drained (and submitted
    their last records) before the writer is told to finish.
    """

    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    def startService(self) -> None:
        super().startService()
        self.audit.start()

    def stopService(self) -> Any:
        super().stopService()
        return self.audit.stop()

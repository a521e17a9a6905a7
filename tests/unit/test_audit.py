"""The audit log's records and its writer (lightningstor.audit), in process.

The writer runs on its real thread against a real file in a temp dir; the
reactor is the real one (pytest-twisted), so ``stop()`` and the logging and
counting it hands back to the reactor run as they do in the server.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from prometheus_client import CollectorRegistry
from twisted.internet import reactor

from lightningstor import audit
from lightningstor.audit import AuditLog, encode_record, grpc_peer_host, grpc_record, result_of, s3_record
from lightningstor.core.access import Decision
from lightningstor.core.types import Principal
from lightningstor.s3.summary import RequestSummary

ALICE = Principal("p-alice", "acme", "web", "AKALICE", "Alice")
RECORD_FIELDS = {
    "type", "time", "protocol", "request_id", "operation", "principal", "access_key_id", "org_id",
    "project_id", "action", "resource", "result", "decisions", "bucket", "key", "http_status",
    "grpc_code", "error_code", "source", "duration", "pid",
}  # fmt: skip


def _summary(**kw: Any) -> RequestSummary:
    values: dict[str, Any] = dict(
        request_id="REQ1", principal="AKALICE", operation="PutObject", method="PUT", uri="/b/k",
        bucket="b", key="k", status=200, completed=True, error_code=None, bytes_in=3, bytes_out=0,
        duration=0.01, remote="10.0.0.7", object_size=3,
    )  # fmt: skip
    values.update(kw)
    return RequestSummary(**values)


class _Call:
    """The S3Call attributes the audit hook reads."""

    def __init__(self, principal: Principal | None, decisions: list[Decision], access_key_id: str | None = None) -> None:
        self.principal = principal
        self.decisions = decisions
        self.access_key_id = access_key_id


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


# -- records ------------------------------------------------------------------------------


def test_result_rules() -> None:
    """success / partial (a DeleteObjects key refused) / denied (auth error or refused
    decision) / error (anything else, including a client that went away)."""
    yes, no = Decision("a", "r", True), Decision("a", "r", False)
    assert result_of(True, None, [yes]) == "success"
    assert result_of(True, None, [yes, no]) == "partial"
    assert result_of(False, "AccessDenied", [no]) == "denied"
    assert result_of(False, "SignatureDoesNotMatch", []) == "denied"
    assert result_of(False, "InvalidAccessKeyId", []) == "denied"
    assert result_of(False, "NoSuchKey", [yes]) == "error"
    assert result_of(False, None, []) == "error"


def test_s3_record_of_an_allowed_request() -> None:
    """A successful PutObject names the principal, its key, org and project, the
    action and resource of its decision, the status and the client address."""
    d = Decision("lightningstor:objects:put", "org/acme/project/web/bucket/b/object/k", True)
    rec = s3_record(_summary(), _Call(ALICE, [d]), now=1_700_000_000.5)
    assert rec is not None and set(rec) == RECORD_FIELDS
    assert rec["protocol"] == "s3" and rec["request_id"] == "REQ1" and rec["operation"] == "PutObject"
    assert (rec["principal"], rec["access_key_id"], rec["org_id"], rec["project_id"]) == (
        "p-alice", "AKALICE", "acme", "web")  # fmt: skip
    assert rec["action"] == "lightningstor:objects:put"
    assert rec["resource"] == "org/acme/project/web/bucket/b/object/k"
    assert rec["result"] == "success" and rec["http_status"] == 200 and rec["grpc_code"] is None
    assert rec["decisions"] == [{"action": d.action, "resource": d.resource, "allowed": True}]
    assert rec["source"] == "10.0.0.7" and rec["pid"] == os.getpid()
    assert json.loads(encode_record(rec))["time"] == "2023-11-14T22:13:20.500Z"


def test_s3_record_of_a_failed_authentication() -> None:
    """A bad signature: principal unknown, result denied, the (existing) key named."""
    rec = s3_record(
        _summary(status=403, error_code="SignatureDoesNotMatch", principal="-"),
        _Call(None, [], access_key_id="AKALICE"),
    )
    assert rec is not None
    assert rec["principal"] is None and rec["org_id"] is None
    assert rec["access_key_id"] == "AKALICE"
    assert rec["result"] == "denied" and rec["error_code"] == "SignatureDoesNotMatch"
    assert rec["action"] == "lightningstor:objects:put" and rec["resource"] is None
    assert rec["http_status"] == 403


def test_s3_record_keeps_every_decision_of_a_copy() -> None:
    """CopyObject records copy on the target and get on the source; the top-level
    action is the operation's, the resource the first decision's."""
    ds = [
        Decision("lightningstor:objects:copy", "org/acme/bucket/dst/object/k2", True),
        Decision("lightningstor:objects:get", "org/acme/bucket/src/object/k1", False),
    ]
    rec = s3_record(_summary(operation="CopyObject", status=403, error_code="AccessDenied"), _Call(ALICE, ds))
    assert rec is not None
    assert [d["action"] for d in rec["decisions"]] == ["lightningstor:objects:copy", "lightningstor:objects:get"]
    assert rec["action"] == "lightningstor:objects:copy" and rec["result"] == "denied"


def test_delete_objects_resource_is_the_bucket() -> None:
    """DeleteObjects names no key: its resource is the bucket its per-key decisions
    share (a key containing "/object/" does not confuse it)."""
    ds = [
        Decision("lightningstor:objects:delete", "org/acme/bucket/b/object/x/object/y", True),
        Decision("lightningstor:objects:delete", "org/acme/bucket/b/object/z", False),
    ]
    rec = s3_record(_summary(operation="DeleteObjects", key=None), _Call(ALICE, ds))
    assert rec is not None
    assert rec["resource"] == "org/acme/bucket/b" and rec["result"] == "partial"
    assert len(rec["decisions"]) == 2


def test_probes_and_client_gone() -> None:
    """Health/readiness probes and the metrics scrape are not audited; a request whose
    client left (499, not completed) is an error."""
    assert s3_record(_summary(operation="Health"), None) is None
    assert s3_record(_summary(operation="Metrics"), None) is None
    rec = s3_record(_summary(status=499, completed=False), _Call(ALICE, []))
    assert rec is not None and rec["result"] == "error" and rec["http_status"] == 499


def test_grpc_record() -> None:
    """A gRPC call: its status code name, no HTTP status, the peer's host."""
    d = Decision("lightningstor:objects:get", "org/acme/project/web/bucket/b/object/k", False)
    rec = grpc_record(
        method="GetObject", request_id="R2", principal=ALICE, access_key_id="AKALICE", decisions=[d],
        code="PERMISSION_DENIED", error_code="AccessDenied", peer="ipv4:127.0.0.1:5555",
        bucket="b", key="k", duration=0.2,
    )  # fmt: skip
    assert set(rec) == RECORD_FIELDS
    assert rec["protocol"] == "grpc" and rec["grpc_code"] == "PERMISSION_DENIED" and rec["http_status"] is None
    assert rec["result"] == "denied" and rec["source"] == "127.0.0.1"
    assert grpc_peer_host("ipv6:[::1]:4000") == "::1"
    assert grpc_peer_host("ipv6:%5B::1%5D:4000") is not None
    assert grpc_peer_host(None) is None


def test_a_line_is_one_line_whatever_the_key() -> None:
    """Newlines, control characters and non-ASCII in object keys are escaped: one
    record is exactly one ASCII line."""
    rec = s3_record(_summary(key="a\nb\r\x00\u2028é"), _Call(ALICE, []))
    assert rec is not None
    line = encode_record(rec)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    line.decode("ascii")
    assert json.loads(line)["key"] == "a\nb\r\x00\u2028é"


# -- the writer ---------------------------------------------------------------------------


def _wait(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _rec(i: int, pad: int = 0) -> dict[str, Any]:
    return {"type": "request", "time": time.time(), "request_id": f"R{i:06d}", "pad": "x" * pad}


@pytest_twisted.inlineCallbacks
def test_records_are_written_in_order_by_the_writer_thread(tmp_path: Path) -> Any:
    """submit() only queues; the writer thread appends every record, in order, and
    stop() drains the queue before closing."""
    path = tmp_path / "sub" / "audit.log"
    log = AuditLog(str(path), reactor, fsync="batch")
    log.start()
    writer_threads: set[str] = set()
    real_write = os.write

    def spy(fd: int, data: Any) -> int:
        writer_threads.add(threading.current_thread().name)
        return real_write(fd, data)

    os.write = spy  # type: ignore[assignment]
    try:
        for i in range(500):
            assert log.submit(_rec(i))
        yield log.stop()
    finally:
        os.write = real_write  # type: ignore[assignment]
    assert not log.running
    assert [r["request_id"] for r in _lines(path)] == [f"R{i:06d}" for i in range(500)]
    assert writer_threads == {"lightningstor-audit"}
    assert oct(path.stat().st_mode & 0o777) == "0o600"


@pytest_twisted.inlineCallbacks
def test_two_writers_on_one_file_never_interleave(tmp_path: Path) -> Any:
    """Two logs on the same path (as two worker processes have: separate O_APPEND
    descriptors) writing large records at once: every line is one whole record."""
    path = tmp_path / "audit.log"
    logs = [AuditLog(str(path), reactor, fsync="never") for _ in range(2)]
    for a in logs:
        a.start()

    def produce(a: AuditLog, base: int) -> None:
        for i in range(2000):
            a.submit(_rec(base + i, pad=3000), wait=5.0)

    producers = [threading.Thread(target=produce, args=(a, n * 100000)) for n, a in enumerate(logs)]
    for t in producers:
        t.start()
    for t in producers:
        t.join(30)
    for a in logs:
        yield a.stop()
    ids = [r["request_id"] for r in _lines(path)]  # json.loads fails on a torn line
    assert sorted(ids) == sorted([f"R{i:06d}" for i in range(2000)] + [f"R{100000 + i:06d}" for i in range(2000)])


@pytest_twisted.inlineCallbacks
def test_a_full_queue_drops_counts_and_leaves_a_gap_record(tmp_path: Path) -> Any:
    """With the writer not keeping up (here: not started) a reactor-side submit never
    blocks: the record is dropped, counted in the metric, and the log later says how
    many records are missing."""
    path = tmp_path / "audit.log"
    registry = CollectorRegistry()
    log = AuditLog(str(path), reactor, max_queued_records=2, registry=registry)
    log.open()
    assert registry.get_sample_value("lightningstor_audit_records_dropped_total") is None
    assert log.submit(_rec(1)) and log.submit(_rec(2))
    started = time.monotonic()
    assert not log.submit(_rec(3))
    assert time.monotonic() - started < 0.5
    assert registry.get_sample_value("lightningstor_audit_records_dropped_total") == 1.0
    log.start()
    yield log.stop()
    lines = _lines(path)
    assert [r.get("request_id") for r in lines[:2]] == ["R000001", "R000002"]
    assert lines[2]["type"] == "gap" and lines[2]["dropped"] == 1 and lines[2]["since"].endswith("Z")


@pytest_twisted.inlineCallbacks
def test_a_blocking_submit_waits_for_room(tmp_path: Path) -> Any:
    """A caller allowed to wait (a gRPC handler thread) is held until the writer
    makes room, and nothing is dropped."""
    path = tmp_path / "audit.log"
    log = AuditLog(str(path), reactor, max_queued_records=1)
    log.open()
    assert log.submit(_rec(1))
    done = threading.Event()

    def blocked() -> None:
        log.submit(_rec(2), wait=10.0)
        done.set()

    t = threading.Thread(target=blocked)
    t.start()
    assert not done.wait(0.2)  # held: the queue is full
    log.start()
    assert done.wait(5.0)
    t.join()
    yield log.stop()
    assert [r["request_id"] for r in _lines(path)] == ["R000001", "R000002"]


@pytest_twisted.inlineCallbacks
def test_reopen_after_rotation(tmp_path: Path) -> Any:
    """Rename the file, reopen (SIGHUP): later records go to a new file at the path,
    earlier ones stay whole in the renamed one."""
    path = tmp_path / "audit.log"
    log = AuditLog(str(path), reactor)
    log.start()
    log.submit(_rec(1))
    _wait(lambda: log.written == 1)
    os.rename(path, tmp_path / "audit.log.1")
    log.reopen()
    _wait(lambda: path.exists())
    log.submit(_rec(2))
    yield log.stop()
    assert [r["request_id"] for r in _lines(tmp_path / "audit.log.1")] == ["R000001"]
    assert [r["request_id"] for r in _lines(path)] == ["R000002"]


@pytest_twisted.inlineCallbacks
def test_a_failing_write_is_retried_not_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """ENOSPC on a write: the batch is held and written again once the disk recovers."""
    path = tmp_path / "audit.log"
    log = AuditLog(str(path), reactor)
    failures = [OSError(errno.ENOSPC, "No space left on device")] * 2
    real_write = os.write

    def flaky(fd: int, data: Any) -> int:
        if fd == log._fd and failures:  # os.write is shared: the reactor's waker uses it too
            raise failures.pop()
        return real_write(fd, data)

    monkeypatch.setattr(audit.os, "write", flaky)
    log.start()
    log.submit(_rec(1))
    _wait(lambda: log.written == 1)
    yield log.stop()
    assert [r["request_id"] for r in _lines(path)] == ["R000001"]


@pytest.mark.parametrize(("policy", "expect_sync"), [("batch", True), ("never", False)])
@pytest_twisted.inlineCallbacks
def test_fsync_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str, expect_sync: bool) -> Any:
    """``batch`` fsyncs after a write (before the next batch); ``never`` never does."""
    synced: list[int] = []
    monkeypatch.setattr(audit.os, "fsync", lambda fd: synced.append(fd))
    log = AuditLog(str(tmp_path / "audit.log"), reactor, fsync=policy)
    log.start()
    log.submit(_rec(1))
    _wait(lambda: log.written == 1)
    if expect_sync:
        _wait(lambda: bool(synced))
    yield log.stop()
    assert bool(synced) == expect_sync


def test_an_unwritable_path_fails_at_open(tmp_path: Path) -> None:
    """open() (called while the server is built) raises: a start-up error, not a
    silent loss of every record."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError):
        AuditLog(str(blocker / "audit.log"), reactor).open()


# -- the gRPC decorators hand every call to the audit log ----------------------------------


class _Aborted(Exception):
    pass


class _Context:
    """The parts of grpc.ServicerContext the decorators use."""

    def __init__(self) -> None:
        self.trailing: tuple[tuple[str, Any], ...] = ()
        self.active = True
        self.aborted: Any = None

    def set_trailing_metadata(self, metadata: tuple[tuple[str, Any], ...]) -> None:
        self.trailing = metadata

    def peer(self) -> str:
        return "ipv4:10.0.0.9:41000"

    def is_active(self) -> bool:
        return self.active

    def abort(self, code: Any, message: str) -> None:
        self.aborted = code
        raise _Aborted(message)


class _Sink:
    def __init__(self) -> None:
        self.records: list[tuple[dict[str, Any], float]] = []

    def submit(self, record: dict[str, Any], *, wait: float = 0.0) -> bool:
        self.records.append((record, wait))
        return True


def _servicer(authenticated: bool = True) -> Any:
    from lightningstor import errors
    from lightningstor.grpc.base import GrpcOptions, Rpc, streaming, unary

    rpc = Rpc(None, reactor, GrpcOptions())
    rpc.audit = _Sink()

    def authenticate(context: Any) -> Principal:
        rpc.local.access_key_id = "AKALICE"
        if not authenticated:
            raise errors.SignatureDoesNotMatch()
        rpc.local.principal = ALICE
        return ALICE

    rpc.authenticate = authenticate  # type: ignore[method-assign]

    class Servicer:
        def __init__(self) -> None:
            self.rpc = rpc

        @unary
        def PutObject(self, principal: Principal, request: Any, context: Any) -> str:
            rpc.local.decisions.append(Decision("lightningstor:objects:put", "org/acme/bucket/b/object/k", True))
            return "done"

        @unary
        def DeleteObject(self, principal: Principal, request: Any, context: Any) -> str:
            rpc.local.decisions.append(Decision("lightningstor:objects:delete", "org/acme/bucket/b/object/k", False))
            raise errors.AccessDenied()

        @streaming
        def GetObject(self, principal: Principal, request: Any, context: Any) -> Any:
            yield 1
            yield 2

        @unary
        def UploadPart(self, principal: Principal, requests: Any, context: Any) -> str:
            return f"part {len(list(requests))}"

    return Servicer()


class _Req:
    bucket = "b"
    key = "k"


def test_grpc_ok_call_is_recorded_with_its_request_id() -> None:
    """An OK unary call: one record (submitted allowing a wait: backpressure on the
    handler thread), and the client gets the same request id in trailing metadata."""
    from lightningstor.grpc.base import REQUEST_ID_KEY

    s, ctx = _servicer(), _Context()
    assert s.PutObject(_Req(), ctx) == "done"
    [(rec, wait)] = s.rpc.audit.records
    assert wait > 0
    assert (rec["grpc_code"], rec["result"], rec["principal"], rec["source"]) == ("OK", "success", "p-alice", "10.0.0.9")
    assert (rec["bucket"], rec["key"], rec["operation"]) == ("b", "k", "PutObject")
    assert dict(ctx.trailing)[REQUEST_ID_KEY] == rec["request_id"]


def test_grpc_client_stream_is_recorded_with_its_first_message_names() -> None:
    """A client-streamed call (UploadPart) names its bucket and key in its
    first message only; the record takes them from there."""

    class _Content:
        bucket = ""
        key = ""

    s, ctx = _servicer(), _Context()
    assert s.UploadPart(iter([_Req(), _Content(), _Content()]), ctx) == "part 3"
    [(rec, _)] = s.rpc.audit.records
    assert (rec["bucket"], rec["key"], rec["operation"], rec["grpc_code"]) == ("b", "k", "UploadPart", "OK")


def test_grpc_denied_and_unauthenticated_calls_are_recorded() -> None:
    """An authorizer refusal (PERMISSION_DENIED) and a failed authentication
    (UNAUTHENTICATED, principal unknown, key named): both ``denied``, the error
    response carrying the request id too."""
    from lightningstor.grpc.base import REQUEST_ID_KEY
    from lightningstor.grpc.errors import CODE_KEY

    s, ctx = _servicer(), _Context()
    with pytest.raises(_Aborted):
        s.DeleteObject(_Req(), ctx)
    [(rec, _)] = s.rpc.audit.records
    assert (rec["grpc_code"], rec["error_code"], rec["result"]) == ("PERMISSION_DENIED", "AccessDenied", "denied")
    assert dict(ctx.trailing)[REQUEST_ID_KEY] == rec["request_id"] and dict(ctx.trailing)[CODE_KEY] == "AccessDenied"

    s, ctx = _servicer(authenticated=False), _Context()
    with pytest.raises(_Aborted):
        s.PutObject(_Req(), ctx)
    [(rec, _)] = s.rpc.audit.records
    assert (rec["grpc_code"], rec["principal"], rec["access_key_id"], rec["result"]) == (
        "UNAUTHENTICATED", None, "AKALICE", "denied")  # fmt: skip


def test_grpc_stream_abandoned_by_the_client_is_recorded_cancelled() -> None:
    """A server-streaming call whose client goes away mid-stream (the generator is
    closed) is still recorded, as CANCELLED; a completed one as OK."""
    s, ctx = _servicer(), _Context()
    stream = s.GetObject(_Req(), ctx)
    assert next(stream) == 1
    stream.close()
    [(rec, _)] = s.rpc.audit.records
    assert (rec["grpc_code"], rec["result"]) == ("CANCELLED", "error")
    assert list(s.GetObject(_Req(), _Context())) == [1, 2]
    assert s.rpc.audit.records[-1][0]["grpc_code"] == "OK"

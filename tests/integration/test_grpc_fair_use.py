"""Fair use of the gRPC server's handler threads, against a real server
process: one principal cannot starve the API or its health check.

The server runs with a small per-principal cap and a short stream idle
timeout (``[limits] max_grpc_calls_per_principal`` and
``grpc_stream_idle_timeout_seconds``).  Streams are driven with raw grpc
stubs, so a test can open a client stream that sends nothing, or a server
stream it never reads, exactly as a hostile client would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from lightningstor.client import cli
from lightningstor.grpc.errors import CODE_KEY
from lightningstor.grpc.gen import lightningstor_pb2 as pb
from lightningstor.grpc.gen import lightningstor_pb2_grpc as pb_grpc
from lightningstor.grpc.token import make_token
from tests.integration.tenants import Identity, Spec, Tenancy

MiB = 1 << 20
CAP = 3
IDLE = 10  # seconds: the greedy test runs the command-line client (a process start, slow on a loaded box) while its streams still hold their slots
# How long after the idle timeout a stream may still be open: the watchdog
# sweeps every second, plus slack for a loaded machine.
SLACK = 4.0
QUICK = 3.0  # a deadline calls must meet while one principal is greedy
POOL = 16  # the server's gRPC handler threads
TENANTS = 7  # enough principals, CAP calls each, to fill the pool


@pytest.fixture(scope="module")
def tenancy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenancy]:
    extra = f"[limits]\nmax_grpc_calls_per_principal = {CAP}\ngrpc_stream_idle_timeout_seconds = {IDLE}\n"
    t = Tenancy.start(tmp_path_factory.mktemp("grpc-fair-use"), extra_config=extra)
    yield t
    t.stop()


@pytest.fixture(scope="module")
def ids(tenancy: Tenancy) -> dict[str, Identity]:
    return tenancy.provision([
        Spec("acme-admin", "acme", roles=("admin",)),
        Spec("acme-ro", "acme", roles=("read-only",)),
        Spec("globex-admin", "globex", roles=("admin",)),
        *(Spec(f"t{i}-ro", f"t{i}", roles=("read-only",)) for i in range(TENANTS)),
    ])  # fmt: skip


@pytest.fixture
def channel(tenancy: Tenancy) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(tenancy.server.grpc_endpoint)
    yield ch
    ch.close()


def _auth(ident: Identity) -> list[tuple[str, str]]:
    return [("authorization", "Bearer " + make_token(ident.access_key, ident.secret_key))]


def _code_key(err: grpc.RpcError) -> str | None:
    return dict(err.trailing_metadata() or ()).get(CODE_KEY)  # type: ignore[attr-defined]


class Silent:
    """A request stream that sends ``first`` messages and then nothing until
    released (a client that stalls)."""

    def __init__(self, *first: pb.UploadPartRequest) -> None:
        self.first = first
        self.release = threading.Event()

    def __iter__(self) -> Iterator[pb.UploadPartRequest]:
        yield from self.first
        self.release.wait(120)


def _open_silent(stub: pb_grpc.ObjectServiceStub, ident: Identity, n: int, *first: pb.UploadPartRequest) -> tuple[list[Any], list[Silent]]:
    streams = [Silent(*first) for _ in range(n)]
    futures = [stub.UploadPart.future(iter(s), metadata=_auth(ident), timeout=120) for s in streams]
    return futures, streams


def _outcome(future: Any, timeout: float) -> grpc.StatusCode | None:
    """The status a call ended with (OK for success); None if still running."""
    try:
        future.result(timeout=timeout)
    except grpc.FutureTimeoutError:
        return None
    except grpc.RpcError as e:
        return e.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _done_within(futures: list[Any], count: int, seconds: float) -> list[Any]:
    """The calls that have ended once ``count`` of them have, or after
    ``seconds`` (well before the idle timeout could end any)."""
    deadline = time.monotonic() + seconds
    while True:
        done = [f for f in futures if f.done()]
        if len(done) >= count or time.monotonic() > deadline:
            return done
        time.sleep(0.05)


def _list_buckets_ok(channel: grpc.Channel, ident: Identity) -> None:
    pb_grpc.BucketServiceStub(channel).ListBuckets(pb.ListBucketsRequest(), metadata=_auth(ident), timeout=QUICK)


def _health_ok(channel: grpc.Channel) -> None:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=QUICK)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def _wait_free(channel: grpc.Channel, ident: Identity, timeout: float) -> None:
    """Wait until ``ident`` may make a call again (its earlier streams have
    released their slots)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _list_buckets_ok(channel, ident)
            return
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def test_one_principal_over_its_cap_is_refused_while_others_are_served(
    tenancy: Tenancy, ids: dict[str, Identity], channel: grpc.Channel
) -> None:
    """A read-only key opens more silent UploadPart streams than the server
    has handler threads: all but ``CAP`` are refused at once with
    RESOURCE_EXHAUSTED (S3 code SlowDown), while another tenant's
    ListBuckets and the health check answer within a short deadline."""
    ro, other = ids["acme-ro"], ids["globex-admin"]
    stub = pb_grpc.ObjectServiceStub(channel)
    futures, streams = _open_silent(stub, ro, POOL + 2)
    try:
        refused = _done_within(futures, len(futures) - CAP, QUICK)
        assert len(refused) == len(futures) - CAP, [_outcome(f, 0) for f in futures]
        for f in refused:
            assert f.exception().code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        err = refused[0].exception()
        assert _code_key(err) == "SlowDown"
        assert "concurrent" in err.details()
        # The same principal's next call is refused at once too.
        t0 = time.monotonic()
        with pytest.raises(grpc.RpcError) as exc:
            _list_buckets_ok(channel, ro)
        assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert time.monotonic() - t0 < QUICK
        # The command-line client tells a script to retry later (exit 6),
        # not that it failed (1), though the status is RESOURCE_EXHAUSTED.
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTNINGSTOR_")}
        env.update(LIGHTNINGSTOR_ENDPOINT=f"grpc://{tenancy.server.grpc_endpoint}",
                   LIGHTNINGSTOR_TOKEN=make_token(ro.access_key, ro.secret_key))  # fmt: skip
        script = str(Path(sys.executable).with_name("lightningstor"))
        busy = subprocess.run([script, "ls"], capture_output=True, text=True, env=env, timeout=60)
        assert (busy.returncode, "SlowDown" in busy.stderr) == (cli.EXIT_UNAVAILABLE, True), busy.stderr
        # Everyone else is served while the greedy principal holds its slots.
        _list_buckets_ok(channel, other)
        _health_ok(channel)
    finally:
        for s in streams:
            s.release.set()
    for f in futures:
        assert _outcome(f, IDLE + SLACK) is not None


def test_the_client_waits_out_a_refusal_while_its_principals_calls_run(
    tenancy: Tenancy, ids: dict[str, Identity], channel: grpc.Channel
) -> None:
    """One client used from many threads (as documented): a call refused
    because the principal's other calls hold its slots is tried again until
    one ends, here 3 s later, instead of giving up after a fixed number of
    tries (with these waits, under 2 s: the call failed with SlowDown)."""
    from lightningstor.client import LightningStorClient, retry

    admin = ids["acme-admin"]
    _wait_free(channel, admin, IDLE + SLACK)
    stub = pb_grpc.ObjectServiceStub(channel)
    futures, streams = _open_silent(stub, admin, CAP)
    deadline = time.monotonic() + 10
    while True:  # until the silent streams hold every slot
        try:
            _list_buckets_ok(channel, admin)  # holds a slot while it runs, if it gets one
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
            break  # refused: the streams hold every slot
        assert time.monotonic() < deadline, "the silent streams never held the principal's slots"
        # A stream that arrived while the probe held a slot was refused: open it again.
        for i, f in enumerate(futures):
            if f.done():
                streams[i].release.set()
                (futures[i],), (streams[i],) = _open_silent(stub, admin, 1)
        time.sleep(0.1)
    release = threading.Timer(3.0, lambda: [s.release.set() for s in streams])
    policy = retry.RetryPolicy(base=0.05, cap=0.5)
    try:
        with LightningStorClient.connect(f"grpc://{tenancy.server.grpc_endpoint}", access_key=admin.access_key,
                                         secret_key=admin.secret_key, timeout=10, retry=policy) as client:  # fmt: skip
            t0 = time.monotonic()
            release.start()
            client.list_buckets()
            assert time.monotonic() - t0 >= 2.5  # it did wait for a slot
    finally:
        release.cancel()
        for s in streams:
            s.release.set()
    for f in futures:
        assert _outcome(f, IDLE + SLACK) is not None


def test_idle_upload_part_streams_are_ended_and_store_nothing(
    tenancy: Tenancy, ids: dict[str, Identity], channel: grpc.Channel
) -> None:
    """UploadPart streams that stall (one after sending some content, the
    others before any message) are ended with DEADLINE_EXCEEDED after the
    idle timeout; nothing of the part is kept, and the principal's slots,
    all of which they held, are free again.  Meanwhile a part that keeps
    moving (another principal's: the stalled streams hold every slot of
    theirs) is not affected."""
    admin, other = ids["acme-admin"], ids["globex-admin"]
    bucket, key = f"idle-{uuid.uuid4().hex[:10]}", "part"
    buckets = pb_grpc.BucketServiceStub(channel)
    stub = pb_grpc.ObjectServiceStub(channel)
    buckets.CreateBucket(pb.CreateBucketRequest(name=bucket), metadata=_auth(admin), timeout=10)
    upload = stub.CreateMultipartUpload(
        pb.CreateMultipartUploadRequest(bucket=bucket, key=key), metadata=_auth(admin), timeout=10
    )
    moving_bucket = f"moving-{uuid.uuid4().hex[:10]}"
    buckets.CreateBucket(pb.CreateBucketRequest(name=moving_bucket), metadata=_auth(other), timeout=10)
    moving_upload = stub.CreateMultipartUpload(
        pb.CreateMultipartUploadRequest(bucket=moving_bucket, key=key), metadata=_auth(other), timeout=10
    )

    # The part that keeps moving: messages spaced out by less than the idle
    # timeout, for longer than it in all.  It runs while the stalled streams
    # below wait out the timeout (waiting for it afterwards took as long
    # again, and proved no more).
    def slow() -> Iterator[pb.UploadPartRequest]:
        yield pb.UploadPartRequest(
            bucket=moving_bucket, key=key, upload_id=moving_upload.upload_id, part_number=1, content=b"a"
        )
        for _ in range(3):
            time.sleep(IDLE / 2)
            yield pb.UploadPartRequest(content=b"b")

    moving = stub.UploadPart.future(slow(), metadata=_auth(other), timeout=60)
    try:
        first = pb.UploadPartRequest(bucket=bucket, key=key, upload_id=upload.upload_id, part_number=1, content=b"x" * MiB)
        started = time.monotonic()
        with_content, s1 = _open_silent(stub, admin, 1, first, pb.UploadPartRequest(content=b"y" * MiB))
        empty, s2 = _open_silent(stub, admin, CAP - 1)
        try:
            for f in with_content + empty:
                assert _outcome(f, IDLE + SLACK) == grpc.StatusCode.DEADLINE_EXCEEDED
            elapsed = time.monotonic() - started
            assert IDLE - 0.5 <= elapsed < IDLE + SLACK, elapsed
            assert "RequestTimeout" in with_content[0].exception().details()
        finally:
            for s in s1 + s2:
                s.release.set()
        _wait_free(channel, admin, SLACK)
        parts = stub.ListParts(
            pb.ListPartsRequest(bucket=bucket, key=key, upload_id=upload.upload_id), metadata=_auth(admin), timeout=10
        )
        assert list(parts.parts) == []
        done = moving.result(timeout=60)
        assert done.size == 4
    finally:
        moving.cancel()  # a no-op once it has ended


def test_unread_get_object_streams_are_ended(
    tenancy: Tenancy, ids: dict[str, Identity], channel: grpc.Channel
) -> None:
    """GetObject streams whose client takes the first message and then reads
    nothing are ended after the idle timeout (the client sees
    DEADLINE_EXCEEDED before the end of the content), and the principal can
    call again."""
    admin = ids["acme-admin"]
    bucket = f"unread-{uuid.uuid4().hex[:10]}"
    size = 64 * MiB
    s3 = admin.s3(tenancy.server.endpoint)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="big", Body=b"z" * size)
    stub = pb_grpc.ObjectServiceStub(channel)
    output = tenancy.server.output
    since = len(output)
    streams = [
        stub.GetObject(pb.GetObjectRequest(bucket=bucket, key="big"), metadata=_auth(admin), timeout=120)
        for _ in range(CAP)
    ]
    for s in streams:
        assert next(s).content_length == size
    started = time.monotonic()
    # Until the server has ended all of them (each finished call has its
    # access line), which the idle timeout does, not before.
    while sum(admin.access_key in line and line.rstrip().endswith(" GetObject") for line in output[since:]) < CAP:
        assert time.monotonic() - started < IDLE + 2 * SLACK, "".join(output[-20:])
        time.sleep(0.2)
    assert time.monotonic() - started >= IDLE - 1
    # Every slot is free again while the streams are still open on this side.
    _wait_free(channel, admin, SLACK)
    for s in streams:
        received = 0
        with pytest.raises(grpc.RpcError) as exc:
            for message in s:
                received += len(message.content)
        assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, exc.value
        assert received < size
    _health_ok(channel)


def test_health_answers_while_every_handler_thread_is_held_and_excess_calls_fail_fast(
    tenancy: Tenancy, ids: dict[str, Identity], channel: grpc.Channel
) -> None:
    """Several tenants together hold every API handler thread with silent
    streams (more calls than threads: some wait for one).  The health check
    still answers at once (it has threads of its own), and calls beyond the
    server-wide bound (twice the pool, plus the health pool) fail at once
    with RESOURCE_EXHAUSTED instead of queueing."""
    stub = pb_grpc.ObjectServiceStub(channel)
    opened: list[tuple[list[Any], list[Silent]]] = []
    try:
        for i in range(TENANTS - 1):
            opened.append(_open_silent(stub, ids[f"t{i}-ro"], CAP))
        held = CAP * (TENANTS - 1)
        assert held > POOL
        time.sleep(0.5)
        _health_ok(channel)
        # Far more than the bound: the excess is refused by the server at once.
        flood, streams = _open_silent(stub, ids[f"t{TENANTS - 1}-ro"], 2 * POOL)
        opened.append((flood, streams))
        refused = _done_within(flood, 1, QUICK)
        assert refused, "no call was refused"
        for f in refused:
            assert f.exception().code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        for _, streams in opened:
            for s in streams:
                s.release.set()
    for futures, _ in opened:
        for f in futures:
            assert _outcome(f, IDLE + SLACK) is not None
    _health_ok(channel)


def test_reflection_streams_are_capped_and_ended_when_idle(channel: grpc.Channel) -> None:
    """Reflection needs no token: at most 2 of its streams run at once (more
    are refused at once) and a silent one is ended after the idle timeout,
    so anonymous callers cannot hold threads either."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    release = threading.Event()

    def silent() -> Iterator[reflection_pb2.ServerReflectionRequest]:
        yield reflection_pb2.ServerReflectionRequest(list_services="")
        release.wait(120)

    streams = [stub.ServerReflectionInfo(silent(), timeout=120) for _ in range(3)]
    try:
        outcomes = []
        for s in streams:
            try:
                assert next(s).HasField("list_services_response")
                outcomes.append("served")
            except grpc.RpcError as e:
                outcomes.append(e.code())
        assert sorted(map(str, outcomes)) == sorted(["served", "served", str(grpc.StatusCode.RESOURCE_EXHAUSTED)])
        started = time.monotonic()
        for s, outcome in zip(streams, outcomes):
            if outcome != "served":
                continue
            with pytest.raises(grpc.RpcError) as exc:
                next(s)
            assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < IDLE + SLACK
    finally:
        release.set()
    _health_ok(channel)

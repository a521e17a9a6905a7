"""The audit log of a real server (``[audit]``, lightningstor.audit).

One ``twistd lightningstor`` serves the module with the audit log on; boto3
and gRPC calls (allowed, refused by the authorizer, with a bad signature or
token, CopyObject, DeleteObjects) are then looked up in the file by their
request id, and every field of their records is checked.  A second server
runs two worker processes appending to one file under concurrent load: no
line is torn or interleaved, and SIGHUP after a rename (log rotation) moves
writing to a new file.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import grpc
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lightningstor.client import LightningStorClient, errors
from lightningstor.core.credentials import DEFAULT_ORG, ROOT_PRINCIPAL
from lightningstor.grpc.base import REQUEST_ID_KEY
from lightningstor.grpc.gen import lightningstor_pb2 as pb
from lightningstor.grpc.gen import lightningstor_pb2_grpc as pb_grpc
from lightningstor.grpc.token import make_token
from tests.integration.conftest import make_client
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess

FIELDS = {
    "type", "time", "protocol", "request_id", "operation", "principal", "access_key_id", "org_id",
    "project_id", "action", "resource", "result", "decisions", "bucket", "key", "http_status",
    "grpc_code", "error_code", "source", "duration", "pid",
}  # fmt: skip
WRONG_SECRET = "not/the/Right/Secret/for/this/key/123456"
ADMIN = str(Path(sys.executable).with_name("lightningstor-admin"))


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("audit")
    data = root / "data"
    data.mkdir()
    config = root / "server.toml"
    config.write_text(f'[audit]\npath = "{root / "logs" / "audit.log"}"\nfsync = "batch"\n')
    proc = ServerProcess(data, config=str(config)).start()
    proc.audit_path = root / "logs" / "audit.log"  # type: ignore[attr-defined]
    yield proc
    proc.stop()


def _admin(data_dir: Path, *args: str) -> Any:
    out = subprocess.run(
        [ADMIN, *args, "--data-dir", str(data_dir), "--json"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr + out.stdout
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def nobody(audited: ServerProcess) -> tuple[str, str]:
    """A principal of the root's org with no roles: the authorizer refuses it
    everything.  Created with ``lightningstor-admin`` while the server runs."""
    _admin(audited.data_dir, "principal", "create", "auditee", "--org", DEFAULT_ORG)
    key = _admin(audited.data_dir, "key", "create", "auditee")
    return key["access_key_id"], key["secret_access_key"]


def _client(server: ServerProcess, access: str = ROOT_ACCESS_KEY, secret: str = ROOT_SECRET_KEY) -> Any:
    if (access, secret) == (ROOT_ACCESS_KEY, ROOT_SECRET_KEY):
        return make_client(server.endpoint)
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=access,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def s3(audited: ServerProcess) -> Any:
    return _client(audited)


@pytest.fixture(scope="module")
def bucket(s3: Any) -> str:
    name = f"audit-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def _records(path: Path) -> list[dict[str, Any]]:
    """Every complete line of the file, parsed (a torn line fails json.loads).

    A last line without its newline is left out: the file is read while the
    writers append, and a reader may see a ``write()`` that is still copying
    its bytes in.  A line cut or spliced by another write would have its
    newline, and still fails here.
    """
    if not path.exists():
        return []
    data = path.read_bytes()
    return [json.loads(line) for line in data[: data.rfind(b"\n") + 1].splitlines()]


def _find(path: Path, match: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
    """The one record ``match`` accepts, waiting for the writer thread."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in _records(path) if match(r)]
        if found:
            assert len(found) == 1, found
            return found[0]
        assert time.monotonic() < deadline, "no such audit record"
        time.sleep(0.05)


def _by_id(server: ServerProcess, request_id: str) -> dict[str, Any]:
    rec = _find(server.audit_path, lambda r: r.get("request_id") == request_id)  # type: ignore[attr-defined]
    assert set(rec) == FIELDS
    return rec


def _request_id(response: dict[str, Any]) -> str:
    return str(response["ResponseMetadata"]["RequestId"])


def _failed(call: Callable[[], Any]) -> ClientError:
    with pytest.raises(ClientError) as info:
        call()
    return info.value


def _resource(bucket: str, key: str | None = None) -> str:
    path = f"org/{DEFAULT_ORG}/bucket/{bucket}"
    return path if key is None else f"{path}/object/{key}"


# -- S3 -------------------------------------------------------------------------------------


def test_allowed_put_is_recorded_completely(audited: ServerProcess, s3: Any, bucket: str) -> None:
    """A PutObject by the admin: who (principal, key, org), what (operation, action,
    resource), the outcome (success, 200), the request id sent to the client, where
    from, when."""
    before = time.time()
    rid = _request_id(s3.put_object(Bucket=bucket, Key="docs/a.txt", Body=b"hello"))
    rec = _by_id(audited, rid)
    assert rec["type"] == "request" and rec["protocol"] == "s3" and rec["operation"] == "PutObject"
    assert (rec["principal"], rec["access_key_id"], rec["org_id"], rec["project_id"]) == (
        ROOT_PRINCIPAL, ROOT_ACCESS_KEY, DEFAULT_ORG, None)  # fmt: skip
    assert rec["action"] == "lightningstor:objects:put"
    assert rec["resource"] == _resource(bucket, "docs/a.txt")
    assert rec["decisions"] == [{"action": rec["action"], "resource": rec["resource"], "allowed": True}]
    assert (rec["result"], rec["http_status"], rec["grpc_code"], rec["error_code"]) == ("success", 200, None, None)
    assert (rec["bucket"], rec["key"], rec["source"]) == (bucket, "docs/a.txt", "127.0.0.1")
    assert rec["time"].endswith("Z")
    stamp = time.mktime(time.strptime(rec["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert before - 2 <= stamp <= time.time() + 2


def test_denied_get_names_the_principal_and_the_refused_decision(
    audited: ServerProcess, s3: Any, bucket: str, nobody: tuple[str, str]
) -> None:
    """A principal without roles gets AccessDenied; its record says who was refused
    which action on which resource."""
    s3.put_object(Bucket=bucket, Key="secret.txt", Body=b"x")
    err = _failed(lambda: _client(audited, *nobody).get_object(Bucket=bucket, Key="secret.txt"))
    assert err.response["Error"]["Code"] == "AccessDenied"
    rec = _by_id(audited, _request_id(err.response))
    assert (rec["principal"], rec["access_key_id"], rec["org_id"]) == ("auditee", nobody[0], DEFAULT_ORG)
    assert rec["operation"] == "GetObject" and rec["action"] == "lightningstor:objects:get"
    assert rec["decisions"] == [
        {"action": "lightningstor:objects:get", "resource": _resource(bucket, "secret.txt"), "allowed": False}
    ]
    assert (rec["result"], rec["http_status"], rec["error_code"]) == ("denied", 403, "AccessDenied")


def test_failed_authentication_is_recorded_without_secrets(audited: ServerProcess, bucket: str) -> None:
    """A bad signature (known key) and an unknown key: principal unknown, result
    denied, the existing key named, the unknown one not; no secret or signature
    anywhere in the file, also not a presigned URL's."""
    bad = _failed(lambda: _client(audited, ROOT_ACCESS_KEY, WRONG_SECRET).list_objects_v2(Bucket=bucket))
    assert bad.response["Error"]["Code"] == "SignatureDoesNotMatch"
    rec = _by_id(audited, _request_id(bad.response))
    assert (rec["principal"], rec["org_id"], rec["access_key_id"]) == (None, None, ROOT_ACCESS_KEY)
    assert (rec["result"], rec["http_status"], rec["error_code"]) == ("denied", 403, "SignatureDoesNotMatch")
    assert rec["operation"] == "ListObjectsV2" and rec["action"] == "lightningstor:objects:list"
    assert rec["decisions"] == [] and rec["resource"] is None and rec["bucket"] == bucket

    unknown = _failed(lambda: _client(audited, "AKNOSUCHKEY000000000", WRONG_SECRET).head_bucket(Bucket=bucket))
    rec = _by_id(audited, unknown.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"])
    assert (rec["principal"], rec["access_key_id"], rec["result"], rec["http_status"]) == (None, None, "denied", 403)

    _client(audited).put_object(Bucket=bucket, Key="shared.txt", Body=b"x")
    url = _client(audited).generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared.txt"})
    with urllib.request.urlopen(url, timeout=10) as r:
        presigned_id = r.headers["x-amz-request-id"]
    assert _by_id(audited, presigned_id)["result"] == "success"
    text = audited.audit_path.read_text()  # type: ignore[attr-defined]
    signature = url.split("X-Amz-Signature=")[1].split("&")[0]
    for secret in (ROOT_SECRET_KEY, WRONG_SECRET, signature, "AKNOSUCHKEY", "X-Amz-Credential", "Authorization"):
        assert secret not in text


def test_unsigned_requests_are_recorded_without_a_principal(audited: ServerProcess, bucket: str) -> None:
    """An unsigned GET: no principal, org or key (null, not empty); denied
    without a bucket policy, a success with the policy's decision once one
    lets everyone read."""
    url = f"{audited.endpoint}/{bucket}/public.txt"
    _client(audited).put_object(Bucket=bucket, Key="public.txt", Body=b"p")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    rec = _by_id(audited, refused.value.headers["x-amz-request-id"])
    assert (rec["principal"], rec["org_id"], rec["access_key_id"]) == (None, None, None)
    assert (rec["result"], rec["http_status"], rec["error_code"]) == ("denied", 403, "AccessDenied")
    _client(audited).put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/public.txt"}]}))  # fmt: skip
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.read() == b"p"
            allowed = _by_id(audited, r.headers["x-amz-request-id"])
    finally:
        _client(audited).delete_bucket_policy(Bucket=bucket)
    assert (allowed["principal"], allowed["org_id"], allowed["result"]) == (None, None, "success")
    assert allowed["decisions"][0]["allowed"] is True


def test_copy_records_both_decisions(audited: ServerProcess, s3: Any, bucket: str) -> None:
    """CopyObject: objects:copy on the target and objects:get on the source."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"data")
    rid = _request_id(s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"}))
    rec = _by_id(audited, rid)
    assert rec["operation"] == "CopyObject" and rec["action"] == "lightningstor:objects:copy"
    assert rec["result"] == "success"
    assert sorted((d["action"], d["resource"], d["allowed"]) for d in rec["decisions"]) == [
        ("lightningstor:objects:copy", _resource(bucket, "dst"), True),
        ("lightningstor:objects:get", _resource(bucket, "src"), True),
    ]


def test_delete_objects_records_one_decision_per_key(audited: ServerProcess, s3: Any, bucket: str) -> None:
    """DeleteObjects: a decision for every key named (besides the bucket's)."""
    keys = ["del/1", "del/2", "del/3"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    rid = _request_id(s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]}))
    rec = _by_id(audited, rid)
    assert rec["operation"] == "DeleteObjects" and rec["result"] == "success"
    assert rec["resource"] == _resource(bucket) and rec["action"] == "lightningstor:objects:delete"
    per_key = {d["resource"] for d in rec["decisions"] if "/object/" in d["resource"]}
    assert per_key == {_resource(bucket, k) for k in keys}
    assert all(d["action"] == "lightningstor:objects:delete" and d["allowed"] for d in rec["decisions"])


def test_probes_are_not_audited(audited: ServerProcess, s3: Any) -> None:
    """GET /health and /ready are not operations on anyone's data: no record.  (A
    request made after them is recorded, and records are written in order.)"""
    for probe in ("health", "ready"):
        with urllib.request.urlopen(f"{audited.endpoint}/{probe}", timeout=10) as r:
            assert r.status == 200
    marker = _request_id(s3.list_buckets())
    _by_id(audited, marker)
    assert not [r for r in _records(audited.audit_path) if r["operation"] in ("Health", "Ready")]  # type: ignore[attr-defined]


# -- gRPC -----------------------------------------------------------------------------------


def _stub(server: ServerProcess) -> tuple[grpc.Channel, Any]:
    channel = grpc.insecure_channel(server.grpc_endpoint)
    return channel, pb_grpc.ObjectServiceStub(channel)


def _metadata(access: str, secret: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {make_token(access, secret)}"),)


def test_grpc_calls_are_recorded_with_their_status(
    audited: ServerProcess, bucket: str, nobody: tuple[str, str]
) -> None:
    """gRPC PutObject (OK), GetObject by a principal without roles
    (PERMISSION_DENIED) and with a forged token (UNAUTHENTICATED): each record
    carries the request id the server sent in trailing metadata."""
    channel, stub = _stub(audited)
    try:
        _resp, call = stub.PutObject.with_call(
            pb.PutObjectRequest(bucket=bucket, key="g/1", content=b"abc"),
            metadata=_metadata(ROOT_ACCESS_KEY, ROOT_SECRET_KEY),
            timeout=30,
        )
        rid = dict(call.trailing_metadata())[REQUEST_ID_KEY]
        rec = _by_id(audited, rid)
        assert (rec["protocol"], rec["operation"], rec["grpc_code"], rec["http_status"]) == (
            "grpc", "PutObject", "OK", None)  # fmt: skip
        assert (rec["principal"], rec["access_key_id"], rec["result"]) == (ROOT_PRINCIPAL, ROOT_ACCESS_KEY, "success")
        assert rec["decisions"] == [
            {"action": "lightningstor:objects:put", "resource": _resource(bucket, "g/1"), "allowed": True}
        ]
        assert (rec["bucket"], rec["key"], rec["source"]) == (bucket, "g/1", "127.0.0.1")

        for metadata, code, principal, error in (
            (_metadata(*nobody), "PERMISSION_DENIED", "auditee", "AccessDenied"),
            (_metadata(ROOT_ACCESS_KEY, WRONG_SECRET), "UNAUTHENTICATED", None, None),
        ):
            with pytest.raises(grpc.RpcError) as info:
                for _ in stub.GetObject(pb.GetObjectRequest(bucket=bucket, key="g/1"), metadata=metadata, timeout=30):
                    pass
            assert info.value.code().name == code  # type: ignore[attr-defined]
            rid = dict(info.value.trailing_metadata())[REQUEST_ID_KEY]  # type: ignore[attr-defined]
            rec = _by_id(audited, rid)
            assert (rec["operation"], rec["grpc_code"], rec["principal"], rec["result"]) == (
                "GetObject", code, principal, "denied")  # fmt: skip
            if error is not None:
                assert rec["error_code"] == error
                assert [d["allowed"] for d in rec["decisions"]] == [False]
            else:
                assert rec["error_code"] and rec["decisions"] == []
    finally:
        channel.close()


def test_grpc_client_library_calls_are_recorded(audited: ServerProcess, bucket: str) -> None:
    """Through lightningstor.client: CopyObject with both decisions, DeleteObjects
    with one per key."""
    with LightningStorClient.connect(
        f"grpc://{audited.grpc_endpoint}", access_key=ROOT_ACCESS_KEY, secret_key=ROOT_SECRET_KEY, timeout=30
    ) as client:
        client.put_object(bucket, "gc/src", b"payload")
        client.copy_object(bucket, "gc/src", bucket, "gc/dst")
        client.delete_objects(bucket, ["gc/src", "gc/dst"])
        with pytest.raises(errors.LightningStorError):
            client.head_object(bucket, "gc/missing")
    path = audited.audit_path  # type: ignore[attr-defined]
    copy = _find(path, lambda r: r["protocol"] == "grpc" and r["operation"] == "CopyObject" and r["key"] == "gc/dst")
    assert sorted(d["action"] for d in copy["decisions"]) == ["lightningstor:objects:copy", "lightningstor:objects:get"]
    deleted = _find(path, lambda r: r["operation"] == "DeleteObjects" and r["protocol"] == "grpc")
    assert {_resource(bucket, "gc/src"), _resource(bucket, "gc/dst")} <= {d["resource"] for d in deleted["decisions"]}
    missing = _find(path, lambda r: r["operation"] == "HeadObject" and r["key"] == "gc/missing")
    assert (missing["result"], missing["grpc_code"], missing["error_code"]) == ("error", "NOT_FOUND", "NoSuchKey")


def test_grpc_create_bucket_in_another_org_shows_no_allowed_decision(audited: ServerProcess) -> None:
    """A CreateBucket naming another org is refused (AccessDenied) before any
    question about the caller's own org: its record holds no decision that
    allowed it (it used to show one, on the caller's org and bucket name)."""
    name = f"elsewhere-{uuid.uuid4().hex[:8]}"
    with LightningStorClient.connect(
        f"grpc://{audited.grpc_endpoint}", access_key=ROOT_ACCESS_KEY, secret_key=ROOT_SECRET_KEY, timeout=30
    ) as client:
        with pytest.raises(errors.LightningStorError) as info:
            client.create_bucket(name, org_id="someone-else")
    assert info.value.code == "AccessDenied"
    rec = _find(audited.audit_path, lambda r: r["operation"] == "CreateBucket" and r["bucket"] == name)  # type: ignore[attr-defined]
    assert (rec["result"], rec["error_code"]) == ("denied", "AccessDenied")
    assert not any(d["allowed"] for d in rec["decisions"]), rec["decisions"]


# -- worker processes sharing one file ------------------------------------------------------


def test_workers_share_the_file_and_reopen_on_sighup(tmp_path: Path) -> None:
    """Two worker processes append to one file under concurrent load (long keys make
    long lines): every line is one whole record, every request is there once, both
    workers wrote.  After a rename and SIGHUP to the supervisor, new records go to a
    new file at the path."""
    data = tmp_path / "data"
    data.mkdir()
    path = tmp_path / "audit.log"
    config = tmp_path / "server.toml"
    config.write_text(f'[audit]\npath = "{path}"\n')
    proc = ServerProcess(data, config=str(config), extra_args=["--workers", "2"]).start()
    try:
        proc.ready_workers(2)
        s3 = make_client(proc.endpoint, max_pool_connections=32, response_checksum_validation="when_required")
        name = f"w-{uuid.uuid4().hex[:12]}"
        s3.create_bucket(Bucket=name)  # type: ignore[attr-defined]

        def put(i: int) -> str:
            key = f"{i:04d}/" + "k" * 900
            r = s3.put_object(Bucket=name, Key=key, Body=b"x")  # type: ignore[attr-defined]
            return _request_id(r)

        with ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(put, range(400)))
        deadline = time.monotonic() + 15
        while True:
            records = _records(path)  # json.loads of every line: a torn line fails here
            seen = [r["request_id"] for r in records if r["operation"] == "PutObject"]
            if set(ids) <= set(seen) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert sorted(seen) == sorted(ids)
        assert len({r["pid"] for r in records}) == 2

        path.rename(tmp_path / "audit.log.1")
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while sum("Audit log" in line and "reopened" in line for line in proc.output) < 2:
            assert time.monotonic() < deadline, "".join(proc.output[-30:])
            time.sleep(0.05)
        after = [_request_id(s3.head_bucket(Bucket=name)) for _ in range(20)]  # type: ignore[attr-defined]
        deadline = time.monotonic() + 15
        while not set(after) <= {r["request_id"] for r in _records(path)}:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert not set(after) & {r["request_id"] for r in _records(tmp_path / "audit.log.1")}
    finally:
        proc.stop()


def test_presigned_probe_of_bad_url_reaches_the_log(audited: ServerProcess, bucket: str) -> None:
    """A presigned GET whose signature was altered is refused and audited as denied."""
    url = _client(audited).generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "nothing"})
    head, _, signature = url.partition("X-Amz-Signature=")
    forged = head + "X-Amz-Signature=" + ("0" if signature[0] != "0" else "1") + signature[1:]
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(forged, timeout=10)
    assert info.value.code == 403
    rid = info.value.headers["x-amz-request-id"]
    rec = _by_id(audited, rid)
    assert rec["error_code"] == "SignatureDoesNotMatch"
    assert (rec["operation"], rec["result"], rec["principal"], rec["access_key_id"]) == (
        "GetObject", "denied", None, ROOT_ACCESS_KEY)  # fmt: skip


def test_an_unwritable_path_stops_start_up_and_off_means_off(tmp_path: Path) -> None:
    """A path that cannot be opened fails start-up with a message naming the key
    (never a server that silently audits nothing); ``enabled = false`` writes no file."""
    data = tmp_path / "data"
    data.mkdir()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    config = tmp_path / "bad.toml"
    config.write_text(f'[audit]\npath = "{blocker / "audit.log"}"\n')
    with pytest.raises(RuntimeError) as info:
        ServerProcess(data, config=str(config)).start(timeout=20)
    assert "audit.path" in str(info.value)

    off = tmp_path / "off.toml"
    off.write_text("[audit]\nenabled = false\n")
    proc = ServerProcess(data, config=str(off)).start()
    try:
        make_client(proc.endpoint).create_bucket(Bucket="not-audited")  # type: ignore[attr-defined]
    finally:
        proc.stop()
    assert not (data / "audit.log").exists()


def test_refuse_mode_serves_nothing_it_could_not_record(tmp_path: Path) -> None:
    """``[audit] when_full = "refuse"``: the audit log is a pipe nobody
    reads, so the writer blocks and the queue fills.  S3 requests are then
    answered 503 SlowDown before doing anything (one error line says why),
    and served again once the pipe is read.  Every request that was served
    has its record and no record was dropped (no gap); the refused ones
    have none."""
    import fcntl
    import os
    import threading

    data = tmp_path / "data"
    data.mkdir()
    fifo = tmp_path / "audit.pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    fcntl.fcntl(reader, fcntl.F_SETPIPE_SZ, 4096)  # the smallest pipe: a few records
    config = tmp_path / "refuse.toml"
    config.write_text(
        f'[audit]\npath = "{fifo}"\nfsync = "never"\nmax_queued_records = 64\nwhen_full = "refuse"\n'
    )
    server = ServerProcess(data, config=str(config)).start()
    received = bytearray()
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="refusing")
        served, refused = 1, 0
        for _ in range(200):
            try:
                s3.list_objects_v2(Bucket="refusing", MaxKeys=1)
                served += 1
            except ClientError as e:
                assert (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]) == (
                    "SlowDown", 503)
                refused += 1
                if refused == 3:
                    break
        assert refused == 3 and 40 < served < 120, (served, refused)
        assert sum("S3 requests are refused with 503 SlowDown" in line for line in server.output) == 1

        os.set_blocking(reader, True)
        done = threading.Event()

        def drain() -> None:
            while chunk := os.read(reader, 65536):
                received.extend(chunk)
            done.set()

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + 30
        while True:
            try:
                s3.list_objects_v2(Bucket="refusing", MaxKeys=1)
                served += 1
                break
            except ClientError as e:
                assert e.response["Error"]["Code"] == "SlowDown" and time.monotonic() < deadline
                refused += 1
                time.sleep(0.1)
        for _ in range(10):
            s3.list_objects_v2(Bucket="refusing", MaxKeys=1)
            served += 1
    finally:
        server.stop()
    assert done.wait(30)
    os.close(reader)
    records = [json.loads(line) for line in received.decode().splitlines()]
    assert [r for r in records if r["type"] != "request"] == []  # no gap: nothing dropped
    operations = [r["operation"] for r in records if r["protocol"] == "s3"]
    assert operations.count("CreateBucket") + operations.count("ListObjectsV2") == served
    assert all(r["http_status"] != 503 for r in records)

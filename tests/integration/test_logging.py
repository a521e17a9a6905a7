"""Logging of a real server: JSON lines, one access event per request, no secrets."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.integration.conftest import make_client
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess

ACCESS_FIELDS = {
    "request_id", "principal", "operation", "bucket", "key", "status", "bytes_in", "bytes_out",
    "duration", "remote", "method", "uri", "completed", "error_code",
}  # fmt: skip
WRONG_SECRET = "Wrong/Secret/Key+ThatMustNeverBeLogged0"


def _start(tmp_path: Path, toml: str) -> ServerProcess:
    config = tmp_path / "logging.toml"
    config.write_text(toml)
    data = tmp_path / "data"
    data.mkdir()
    return ServerProcess(data, config=str(config)).start()


@pytest.fixture(scope="module")
def json_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = _start(tmp_path_factory.mktemp("jsonlog"), '[logging]\nformat = "json"\n')
    yield server
    server.stop()


def _events(server: ServerProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.output if line.strip()]


def _access(server: ServerProcess) -> list[dict[str, Any]]:
    return [e for e in _events(server) if e["namespace"] == "lightningstor.access"]


def _wait_access(server: ServerProcess, request_ids: set[str], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not request_ids <= {e["request_id"] for e in _access(server)}:
        assert time.monotonic() < deadline, "access events missing"
        time.sleep(0.02)


def _fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            reply.read()
            return reply.status, reply.headers["x-amz-request-id"]
    except urllib.error.HTTPError as error:
        return error.code, error.headers["x-amz-request-id"]


def test_json_format_one_access_event_per_request_and_no_secrets(json_server: ServerProcess) -> None:
    """With format = "json" every output line is one JSON object with time, level, namespace
    and message; each request (signed, presigned V4 and V2, bad signatures, wrong secret)
    has exactly one access event carrying the documented fields; and no secret, signature,
    credential scope or Authorization value appears anywhere in the output."""
    server = json_server
    sent_auth: list[str] = []

    def record(request: Any, **_: Any) -> None:
        value = request.headers.get("Authorization")
        if value:
            sent_auth.append(value.decode() if isinstance(value, bytes) else value)

    s3 = make_client(server.endpoint)
    s3.meta.events.register("before-send.s3", record)
    ids: list[str] = []
    bucket = f"log-{uuid.uuid4().hex[:8]}"
    ids.append(s3.create_bucket(Bucket=bucket)["ResponseMetadata"]["RequestId"])
    ids.append(s3.put_object(Bucket=bucket, Key="a b/c", Body=b"hello")["ResponseMetadata"]["RequestId"])
    ids.append(s3.get_object(Bucket=bucket, Key="a b/c")["ResponseMetadata"]["RequestId"])

    presigned = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "a b/c"})
    status, rid = _fetch(presigned)
    assert status == 200
    ids.append(rid)
    signature = parse_qs(urlsplit(presigned).query)["X-Amz-Signature"][0]
    credential = parse_qs(urlsplit(presigned).query)["X-Amz-Credential"][0]
    tampered = presigned.replace(signature, "0" * len(signature))
    status, rid = _fetch(tampered)
    assert status == 403
    ids.append(rid)

    v2 = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=ROOT_ACCESS_KEY,
                      aws_secret_access_key=ROOT_SECRET_KEY, region_name="us-east-1",
                      config=Config(signature_version="s3", s3={"addressing_style": "path"}))
    presigned_v2 = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "a b/c"})
    v2_signature = parse_qs(urlsplit(presigned_v2).query)["Signature"][0]
    ids.append(_fetch(presigned_v2)[1])

    wrong = boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=ROOT_ACCESS_KEY,
                         aws_secret_access_key=WRONG_SECRET, region_name="us-east-1",
                         config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                       retries={"max_attempts": 1}))
    wrong.meta.events.register("before-send.s3", record)
    with pytest.raises(ClientError) as denied:
        wrong.put_object(Bucket=bucket, Key="x", Body=b"secret-less")
    assert denied.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    ids.append(denied.value.response["ResponseMetadata"]["RequestId"])

    _wait_access(server, set(ids))
    output = "".join(server.output)
    for event in _events(server):  # every line parsed: one JSON object per line
        assert {"time", "level", "namespace", "message"} <= set(event)
    access = _access(server)
    for rid in ids:
        mine = [e for e in access if e["request_id"] == rid]
        assert len(mine) == 1, rid
        assert ACCESS_FIELDS <= set(mine[0]), mine[0]
        assert mine[0]["protocol"] == "s3"
    put = next(e for e in access if e["request_id"] == ids[1])
    assert (put["operation"], put["bucket"], put["key"], put["status"]) == ("PutObject", bucket, "a b/c", 200)
    assert put["principal"] == ROOT_ACCESS_KEY and put["bytes_in"] >= 5 and put["duration"] > 0
    denied_event = next(e for e in access if e["request_id"] == ids[4])
    assert (denied_event["status"], denied_event["error_code"], denied_event["principal"]) == (
        403, "SignatureDoesNotMatch", "-")
    assert "X-Amz-Signature" in denied_event["uri"] and signature not in denied_event["uri"]

    secrets = [ROOT_SECRET_KEY, WRONG_SECRET, signature, credential, v2_signature]
    secrets += [auth.rsplit("Signature=", 1)[-1] for auth in sent_auth]
    assert len(sent_auth) >= 4
    for secret in secrets:
        assert secret not in output
        assert urllib.parse.quote(secret, safe="") not in output
    assert "AWS4-HMAC-SHA256 Credential" not in output
    assert "/us-east-1/s3/aws4_request" not in output


def test_connection_lost_mid_upload_is_logged_once_as_499(json_server: ServerProcess) -> None:
    """A request whose client disconnects before the response still gets exactly one access
    event: status 499, completed false, the body bytes that arrived."""
    server = json_server
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"PUT /gone/away HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"
                     + b"z" * 100)
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while not (mine := [e for e in _access(server) if e["uri"] == "/gone/away"]):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.1)
    mine = [e for e in _access(server) if e["uri"] == "/gone/away"]
    assert len(mine) == 1
    assert (mine[0]["status"], mine[0]["completed"], mine[0]["bytes_in"]) == (499, False, 100)


def test_text_access_line_has_no_query_values(server: ServerProcess) -> None:
    """The default text format writes one access line per request, with the request id
    and operation, and query parameter names but not their values."""
    status, rid = _fetch(f"{server.endpoint}/nobucket/k?uploadId=SECRETISH123&partNumber=4")
    assert status == 404  # unsigned, for a bucket no tenant has: NoSuchBucket, as AWS answers
    deadline = time.monotonic() + 5
    while not (lines := [line for line in server.output if rid in line]):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert len(lines) == 1
    assert "uploadId&partNumber" in lines[0] and "SECRETISH123" not in lines[0]
    assert "[lightningstor.access#info]" in lines[0] and "404" in lines[0]


def test_access_log_false_disables_access_lines(tmp_path: Path) -> None:
    """logging.access_log = false: requests are served but no access event is logged."""
    server = _start(tmp_path, "[logging]\naccess_log = false\n")
    try:
        status, rid = _fetch(f"{server.endpoint}/health")
        assert status == 200 and rid
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="quiet")
        time.sleep(0.2)
        assert not [line for line in server.output if "lightningstor.access" in line]
        assert not [line for line in server.output if rid in line]
    finally:
        server.stop()


def test_grpc_calls_have_access_events_like_s3(json_server: ServerProcess) -> None:
    """Every gRPC call gets one access event with the S3 event's fields plus
    ``protocol``: unary, server-streaming and client-streaming calls, with
    their byte counts, and a failed call with its status and S3 code.  No
    bearer token appears in any line."""
    from lightningstor.client import LightningStorClient, errors

    client = LightningStorClient.connect(
        f"grpc://{json_server.grpc_endpoint}", access_key=ROOT_ACCESS_KEY, secret_key=ROOT_SECRET_KEY, timeout=30
    )
    bucket = f"glog-{uuid.uuid4().hex[:12]}"
    body = b"g" * 300_000
    part = b"p" * 200_000
    try:
        client.create_bucket(bucket)
        client.put_object(bucket, "unary", body)
        assert client.get_object(bucket, "unary").read() == body
        upload = client.create_multipart_upload(bucket, "streamed")
        client.upload_part(bucket, "streamed", upload.upload_id, 1, [part[:100_000], part[100_000:]])
        with pytest.raises(errors.LightningStorError):
            client.head_object(bucket, "missing")
    finally:
        client.close()

    def mine() -> list[dict[str, Any]]:
        return [e for e in _access(json_server) if e.get("protocol") == "grpc" and e.get("bucket") == bucket]

    deadline = time.monotonic() + 5
    while len(mine()) < 6:
        assert time.monotonic() < deadline, [e for e in _access(json_server) if e.get("protocol") == "grpc"]
        time.sleep(0.02)
    events = {e["operation"]: e for e in mine()}
    assert len(mine()) == 6 and set(events) == {
        "CreateBucket", "PutObject", "GetObject", "CreateMultipartUpload", "UploadPart", "HeadObject",
    }  # fmt: skip
    for event in events.values():
        assert ACCESS_FIELDS | {"protocol"} <= set(event)
        assert event["principal"] == ROOT_ACCESS_KEY and event["remote"] == "127.0.0.1"
        assert event["method"] == "POST" and event["uri"].startswith("/lightningstor.v1.")
        assert event["request_id"] and event["duration"] >= 0
    put, get, part_event, head = events["PutObject"], events["GetObject"], events["UploadPart"], events["HeadObject"]
    assert put["uri"] == "/lightningstor.v1.ObjectService/PutObject"
    assert events["CreateBucket"]["uri"] == "/lightningstor.v1.BucketService/CreateBucket"
    assert (put["status"], put["completed"], put["error_code"], put["key"]) == ("OK", True, None, "unary")
    # Serialized messages: the content plus a few bytes of other fields.
    assert len(body) < put["bytes_in"] < len(body) + 200 and put["bytes_out"] < 200
    assert len(body) < get["bytes_out"] < len(body) + 2000 and get["bytes_in"] < 200
    # A client stream: the bucket and key come from its first message.
    assert part_event["key"] == "streamed" and len(part) < part_event["bytes_in"] < len(part) + 300
    assert (head["status"], head["completed"], head["error_code"]) == ("NOT_FOUND", True, "NoSuchKey")
    text = "\n".join(json_server.output)
    assert "Bearer" not in text and ROOT_SECRET_KEY not in text

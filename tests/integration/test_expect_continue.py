"""``Expect: 100-continue`` on uploads, on raw sockets against the real server.

As with AWS, "100 Continue" goes out only once the upload's checks have
passed (credentials, bucket, permission, upload id); a check that fails,
even one that needs a metadata read, is answered at once with its error and
the connection closes, so the client never sends the body.  Each request is
presigned with boto3 (only ``host`` is signed), so the test adds
``Content-Length`` and ``Expect`` itself and sends nothing after the head
until the server answers.
"""

from __future__ import annotations

import io
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from tests.integration.tenants import Identity, Spec, Tenancy

MiB = 1 << 20


@pytest.fixture(scope="module")
def tenancy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenancy]:
    """A server with JSON logs (its access events are read back) and tenants."""
    t = Tenancy.start(tmp_path_factory.mktemp("expect"), extra_config='[logging]\nformat = "json"\n')
    yield t
    t.stop()


@pytest.fixture(scope="module")
def ids(tenancy: Tenancy) -> dict[str, Identity]:
    return tenancy.provision([
        Spec("exp-admin", "expco", roles=("admin",)),
        Spec("exp-ro", "expco", roles=("read-only",)),
        Spec("exp-fresh", "expco", roles=("admin",)),
    ])


@pytest.fixture(scope="module")
def admin(tenancy: Tenancy, ids: dict[str, Identity]) -> Any:
    return ids["exp-admin"].s3(tenancy.server.endpoint)


@pytest.fixture
def bucket(admin: Any) -> str:
    name = f"exp-{uuid.uuid4().hex[:12]}"
    admin.create_bucket(Bucket=name)
    return name


def _presigned_put(client: Any, bucket: str, key: str, **params: Any) -> str:
    return str(client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key, **params}))


def _presigned_part(client: Any, bucket: str, key: str, upload_id: str, part: int = 1) -> str:
    return str(client.generate_presigned_url(
        "upload_part", Params={"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": part}))


def _head(url: str, length: int, *, expect: bool = True, version: str = "HTTP/1.1") -> bytes:
    parts = urlsplit(url)
    lines = [f"PUT {parts.path}?{parts.query} {version}", f"Host: {parts.netloc}", f"Content-Length: {length}"]
    if expect:
        lines.append("Expect: 100-continue")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _connect(tenancy: Tenancy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", tenancy.server.port), timeout=10)


def _read_until_closed(sock: socket.socket) -> bytes:
    reply = b""
    while chunk := sock.recv(65536):  # b"": the server closed the connection
        reply += chunk
    return reply


def _read_response(sock: socket.socket, already: bytes = b"") -> tuple[bytes, bytes]:
    """One final response (head, body), read by its Content-Length."""
    data = already
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, head
        body += chunk
    return head, body


def _refused(tenancy: Tenancy, url: str, length: int) -> bytes:
    """Send only the head of an upload that expects 100-continue; the whole
    reply, read until the server closes the connection."""
    with _connect(tenancy) as sock:
        sock.sendall(_head(url, length))
        return _read_until_closed(sock)


def _access(tenancy: Tenancy, request_id: str) -> list[dict[str, Any]]:
    """The access events logged for ``request_id`` (waits for the first)."""
    deadline = time.monotonic() + 5
    while True:
        events = []
        for line in list(tenancy.server.output):
            if line.strip().startswith("{"):
                event = json.loads(line)
                if event.get("namespace") == "lightningstor.access" and event.get("request_id") == request_id:
                    events.append(event)
        if events or time.monotonic() > deadline:
            return events
        time.sleep(0.02)


def _request_id(reply: bytes) -> str:
    head = reply.split(b"\r\n\r\n", 1)[0]
    return next(line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                if line.lower().startswith(b"x-amz-request-id:"))


def _keys(client: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_missing_bucket_is_refused_before_the_body(tenancy: Tenancy, ids: dict[str, Identity]) -> None:
    """The first request of a key nobody used yet (its credential is not
    cached, the bucket lookup needs a metadata read too): the final 404
    NoSuchBucket comes instead of "100 Continue", and the connection closes.
    The access log has the request once, with that status and code."""
    fresh = ids["exp-fresh"].s3(tenancy.server.endpoint)
    url = _presigned_put(fresh, "no-such-bucket-expect", "k")
    reply = _refused(tenancy, url, 5 * 1024**3)
    assert reply.startswith(b"HTTP/1.1 404 "), reply[:200]
    assert b"HTTP/1.1 100" not in reply
    assert b"<Code>NoSuchBucket</Code>" in reply
    events = _access(tenancy, _request_id(reply))
    time.sleep(0.1)
    events = _access(tenancy, _request_id(reply))
    assert [(e["status"], e["error_code"], e["operation"]) for e in events] == [(404, "NoSuchBucket", "PutObject")]
    assert events[0]["bytes_in"] == 0


def test_permission_failure_is_refused_before_the_body(
    tenancy: Tenancy, ids: dict[str, Identity], admin: Any, bucket: str
) -> None:
    """A read-only principal's upload: the AccessDenied it gets without
    Expect, here at once instead of the 100; nothing is stored."""
    ro = ids["exp-ro"].s3(tenancy.server.endpoint)
    with pytest.raises(ClientError) as without_expect:
        ro.put_object(Bucket=bucket, Key="denied", Body=b"x")
    status = without_expect.value.response["ResponseMetadata"]["HTTPStatusCode"]
    code = without_expect.value.response["Error"]["Code"]
    reply = _refused(tenancy, _presigned_put(ro, bucket, "denied"), 1 * MiB)
    assert reply.startswith(b"HTTP/1.1 %d " % status), reply[:200]
    assert b"HTTP/1.1 100" not in reply
    assert f"<Code>{code}</Code>".encode() in reply
    assert _keys(admin, bucket) == []


def test_upload_part_of_missing_upload_is_refused_before_the_body(
    tenancy: Tenancy, admin: Any, bucket: str
) -> None:
    reply = _refused(tenancy, _presigned_part(admin, bucket, "k", "no-such-upload-id"), 8 * MiB)
    assert reply.startswith(b"HTTP/1.1 404 "), reply[:200]
    assert b"HTTP/1.1 100" not in reply
    assert b"<Code>NoSuchUpload</Code>" in reply


def test_accepted_upload_gets_100_continue_then_200(tenancy: Tenancy, admin: Any, bucket: str) -> None:
    """A valid upload: "100 Continue" first, then, once the body is sent,
    200; the object reads back byte for byte, and the connection stays open
    for another request."""
    data = os.urandom(3 * MiB + 17)
    with _connect(tenancy) as sock:
        sock.sendall(_head(_presigned_put(admin, bucket, "accepted"), len(data)))
        interim = sock.recv(len(b"HTTP/1.1 100 Continue\r\n\r\n"))
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(data)
        head, _ = _read_response(sock)
        assert head.startswith(b"HTTP/1.1 200 "), head
        # Same connection: a second upload with Expect.
        sock.sendall(_head(_presigned_put(admin, bucket, "second"), 5))
        assert sock.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        head, _ = _read_response(sock)
        assert head.startswith(b"HTTP/1.1 200 "), head
    assert admin.get_object(Bucket=bucket, Key="accepted")["Body"].read() == data
    assert admin.get_object(Bucket=bucket, Key="second")["Body"].read() == b"hello"


def test_accepted_part_gets_100_continue(tenancy: Tenancy, admin: Any, bucket: str) -> None:
    upload_id = admin.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    data = os.urandom(5 * MiB)
    with _connect(tenancy) as sock:
        sock.sendall(_head(_presigned_part(admin, bucket, "mp", upload_id), len(data)))
        assert sock.recv(64) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(data)
        head, _ = _read_response(sock)
        assert head.startswith(b"HTTP/1.1 200 "), head
    etag = admin.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id)["Parts"][0]["ETag"]
    admin.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload_id,
                                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert admin.get_object(Bucket=bucket, Key="mp")["Body"].read() == data


def test_body_sent_without_waiting_is_answered_after_it(tenancy: Tenancy, admin: Any) -> None:
    """A client that sends its body right after the head (as one whose own
    wait for the 100 ran out): the error comes after the body, as without
    Expect, on a connection that stays usable (no early answer and close,
    which could reset the connection under a body still being sent)."""
    url = _presigned_put(admin, "no-such-bucket-expect", "k")
    with _connect(tenancy) as sock:
        sock.sendall(_head(url, 100_000) + b"x" * 100_000)
        interim = b"HTTP/1.1 100 Continue\r\n\r\n"
        first = sock.recv(len(interim))
        head, body = _read_response(sock, first[len(interim):] if first == interim else first)
        assert head.startswith(b"HTTP/1.1 404 "), head
        assert b"<Code>NoSuchBucket</Code>" in body
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert _read_until_closed(sock).startswith(b"HTTP/1.1 200 ")


def test_http_1_0_gets_no_100(tenancy: Tenancy, admin: Any, bucket: str) -> None:
    """No 1xx answer to an HTTP/1.0 client (RFC 9110): it sends its body
    when its wait runs out, and the upload works."""
    with _connect(tenancy) as sock:
        sock.sendall(_head(_presigned_put(admin, bucket, "old"), 4, version="HTTP/1.0"))
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(64)
        sock.settimeout(10)
        sock.sendall(b"old!")
        reply = _read_until_closed(sock)
    assert b" 100 " not in reply and b" 200 " in reply.split(b"\r\n", 1)[0], reply[:200]
    assert admin.get_object(Bucket=bucket, Key="old")["Body"].read() == b"old!"


def test_boto3_large_put_still_works(admin: Any, bucket: str) -> None:
    """boto3 sends Expect: 100-continue for file-like bodies: a 9 MiB
    PutObject and a multipart upload_fileobj round-trip."""
    from boto3.s3.transfer import TransferConfig

    data = os.urandom(9 * MiB + 3)
    admin.put_object(Bucket=bucket, Key="big", Body=io.BytesIO(data))
    assert admin.get_object(Bucket=bucket, Key="big")["Body"].read() == data
    cfg = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB)
    admin.upload_fileobj(io.BytesIO(data), bucket, "big-mp", Config=cfg)
    assert admin.get_object(Bucket=bucket, Key="big-mp")["Body"].read() == data

"""Streaming upload wire formats and broken uploads, on raw HTTP against the real server.

The aws-chunked bodies are framed by botocore itself (unsigned trailer, what
boto3 sends over HTTPS) or by a small encoder written here from the AWS
documentation (signed chunks, what minio-go/restic and the Java/Go SDKs send).
The headers are signed with botocore's SigV4 signer.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import io
import os
import socket
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum

from lightningstor.checksums import compute
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY

CREDS = Credentials(ROOT_ACCESS_KEY, ROOT_SECRET_KEY)
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def _signed_headers(method: str, url: str, headers: dict[str, str]) -> dict[str, str]:
    req = AWSRequest(method, url, headers=headers)
    SigV4Auth(CREDS, "s3", "us-east-1").add_auth(req)
    return dict(req.headers.items())


def _signed_date(headers: dict[str, str]) -> str:
    """The X-Amz-Date the signer stamped: it takes the clock again, so it
    may be a second past the date the test put in the headers, and the
    chunk signatures must use the one the seed signature used."""
    return next(v for k, v in headers.items() if k.lower() == "x-amz-date")


def _send(server, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _signing_key(date: str) -> bytes:
    k = _hmac(("AWS4" + ROOT_SECRET_KEY).encode(), date)
    k = _hmac(k, "us-east-1")
    k = _hmac(k, "s3")
    return _hmac(k, "aws4_request")


def _signed_chunks(data: bytes, seed: str, amz_date: str, chunk: int, *, trailer: str | None = None,
                   corrupt_chunk: int | None = None) -> bytes:
    """aws-chunked with chunk signatures (AWS 'Transferring Payload in Multiple Chunks')."""
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    key = _signing_key(amz_date[:8])
    prev = seed
    out = io.BytesIO()
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    for n, piece in enumerate(pieces):
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, EMPTY_SHA,
                         hashlib.sha256(piece).hexdigest()])
        sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        if corrupt_chunk == n:
            sig = "0" * 64
        prev = sig
        out.write(f"{len(piece):x};chunk-signature={sig}\r\n".encode() + piece + b"\r\n")
    if trailer is not None:
        trailer_bytes = trailer.encode() + b"\n"
        sts = "\n".join(["AWS4-HMAC-SHA256-TRAILER", amz_date, scope, prev,
                         hashlib.sha256(trailer_bytes).hexdigest()])
        sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        out.write(trailer.encode() + b"\r\n" + f"x-amz-trailer-signature:{sig}\r\n".encode() + b"\r\n")
    return out.getvalue()


def _raw_head(url: str, headers: dict[str, str]) -> str:
    parts = urlsplit(url)
    lines = [f"PUT {parts.path} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "host"]
    return "\r\n".join(lines) + "\r\n"


def _seed(headers: dict[str, str]) -> str:
    return headers["Authorization"].rsplit("Signature=", 1)[1]


@pytest.fixture
def raw_bucket(s3) -> str:
    name = f"raw-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def _crc32_trailer_body(data: bytes) -> bytes:
    """``data`` framed by botocore as aws-chunked with a trailing CRC32."""
    return AwsChunkedWrapper(io.BytesIO(data), checksum_cls=Crc32Checksum,
                             checksum_name="x-amz-checksum-crc32", chunk_size=65536).read()


def _put_unsigned_trailer(server: Any, url: str, data: bytes, framed: bytes) -> tuple[int, bytes]:
    """PUT ``framed`` (``data`` with a trailing CRC32) as STREAMING-UNSIGNED-PAYLOAD-TRAILER."""
    headers = _signed_headers("PUT", url, {
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "x-amz-trailer": "x-amz-checksum-crc32", "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)), "Content-Length": str(len(framed)),
    })
    return _send(server, "PUT", urlsplit(url).path, headers, framed)


def test_unsigned_trailer_upload_from_botocore(server, s3, raw_bucket):
    """STREAMING-UNSIGNED-PAYLOAD-TRAILER framed by botocore stores the decoded bytes and the CRC32."""
    data = os.urandom(300_000)
    status, body = _put_unsigned_trailer(server, f"{server.endpoint}/{raw_bucket}/trailer", data,
                                         _crc32_trailer_body(data))
    assert status == 200, body
    got = s3.get_object(Bucket=raw_bucket, Key="trailer", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ChecksumCRC32"] == compute("crc32", data)
    assert "ContentEncoding" not in got  # aws-chunked is framing, not an encoding of the object


@pytest.mark.parametrize(("value", "code"), [
    (compute("crc32", b"other"), b"BadDigest"),
    # Not base64, or a digest of the wrong size: InvalidRequest, as the same
    # value in a header is (it was BadDigest).
    ("!!notb64", b"InvalidRequest"),
    ("AAAA", b"InvalidRequest"),
])
def test_unsigned_trailer_wrong_or_malformed_checksum(server, s3, raw_bucket, value, code):
    """A trailing checksum that does not match the data is a 400 BadDigest, one
    that is no base64 CRC32 at all a 400 InvalidRequest; nothing is stored."""
    data = os.urandom(100_000)
    framed = _crc32_trailer_body(data).replace(compute("crc32", data).encode(), value.encode())
    status, body = _put_unsigned_trailer(server, f"{server.endpoint}/{raw_bucket}/bad-trailer", data, framed)
    assert status == 400 and code in body, body
    if code == b"InvalidRequest":
        assert b"Value for x-amz-checksum-crc32 trailing header is invalid." in body
    assert s3.list_objects_v2(Bucket=raw_bucket)["KeyCount"] == 0


@pytest.mark.parametrize("declared", ["nothing", "header-too"])
def test_a_trailing_checksum_is_verified_or_refused(server, s3, raw_bucket, declared):
    """A trailing checksum the request did not declare in x-amz-trailer is
    400 InvalidArgument (it went unverified: a wrong value was stored with
    200); a x-amz-checksum-* header beside a declared trailer is 400
    InvalidRequest (two checksums; the header's was set aside).  Nothing is
    stored either way."""
    data = os.urandom(100_000)
    framed = AwsChunkedWrapper(io.BytesIO(data), checksum_cls=Crc32Checksum,
                               checksum_name="x-amz-checksum-crc32", chunk_size=65536).read()
    extra = {"x-amz-trailer": "x-amz-checksum-crc32"}
    if declared == "nothing":  # and the trailing value is wrong too
        framed = framed.replace(compute("crc32", data).encode(), compute("crc32", b"other").encode())
        extra = {}
    else:
        extra["x-amz-checksum-crc32"] = compute("crc32", b"other")
    url = f"{server.endpoint}/{raw_bucket}/trailing"
    headers = _signed_headers("PUT", url, {
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)), "Content-Length": str(len(framed)), **extra,
    })
    status, body = _send(server, "PUT", urlsplit(url).path, headers, framed)
    expected = b"InvalidArgument" if declared == "nothing" else b"InvalidRequest"
    assert status == 400 and expected in body, body
    assert s3.list_objects_v2(Bucket=raw_bucket)["KeyCount"] == 0


@pytest.mark.parametrize("with_trailer", [False, True])
def test_signed_streaming_upload(server, s3, raw_bucket, with_trailer):
    """STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER) with a valid chain stores exactly the payload,
    without Content-Encoding: aws-chunked (minio-go omits it)."""
    data = os.urandom(200_000 + 123)
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if with_trailer else "")
    trailer = f"x-amz-checksum-crc32:{compute('crc32', data)}" if with_trailer else None
    hdrs = {"x-amz-content-sha256": mode, "x-amz-date": amz_date,
            "x-amz-decoded-content-length": str(len(data))}
    if with_trailer:
        hdrs["x-amz-trailer"] = "x-amz-checksum-crc32"
    url = f"{server.endpoint}/{raw_bucket}/signed"
    # Content-Length depends on the signatures' fixed width, not their values.
    probe = _signed_chunks(data, "0" * 64, amz_date, 65536, trailer=trailer)
    hdrs["Content-Length"] = str(len(probe))
    headers = _signed_headers("PUT", url, hdrs)
    framed = _signed_chunks(data, _seed(headers), _signed_date(headers), 65536, trailer=trailer)
    status, body = _send(server, "PUT", urlsplit(url).path, headers, framed)
    assert status == 200, body
    assert s3.get_object(Bucket=raw_bucket, Key="signed")["Body"].read() == data


def test_signed_streaming_bad_chunk_signature(server, s3, raw_bucket):
    """One wrong chunk signature in the chain is a 403 SignatureDoesNotMatch and stores nothing."""
    data = os.urandom(200_000)
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    hdrs = {"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "x-amz-date": amz_date,
            "x-amz-decoded-content-length": str(len(data)), "Content-Encoding": "aws-chunked"}
    url = f"{server.endpoint}/{raw_bucket}/forged"
    hdrs["Content-Length"] = str(len(_signed_chunks(data, "0" * 64, amz_date, 65536)))
    headers = _signed_headers("PUT", url, hdrs)
    framed = _signed_chunks(data, _seed(headers), _signed_date(headers), 65536, corrupt_chunk=2)
    status, body = _send(server, "PUT", urlsplit(url).path, headers, framed)
    assert status == 403 and b"SignatureDoesNotMatch" in body
    assert s3.list_objects_v2(Bucket=raw_bucket)["KeyCount"] == 0


def test_signed_payload_hash_mismatch(server, s3, raw_bucket):
    """A signed x-amz-content-sha256 that does not match the body is XAmzContentSHA256Mismatch."""
    data = b"actual body"
    url = f"{server.endpoint}/{raw_bucket}/sha"
    headers = _signed_headers("PUT", url, {"x-amz-content-sha256": hashlib.sha256(b"other").hexdigest(),
                                            "Content-Length": str(len(data))})
    status, body = _send(server, "PUT", urlsplit(url).path, headers, data)
    assert status == 400 and b"XAmzContentSHA256Mismatch" in body
    assert s3.list_objects_v2(Bucket=raw_bucket)["KeyCount"] == 0


def test_plain_transfer_encoding_chunked(server, s3, raw_bucket):
    """A plain HTTP chunked body (no Content-Length) with UNSIGNED-PAYLOAD is stored decoded."""
    data = os.urandom(150_000)
    url = f"{server.endpoint}/{raw_bucket}/te"
    headers = _signed_headers("PUT", url, {"x-amz-content-sha256": "UNSIGNED-PAYLOAD",
                                            "Transfer-Encoding": "chunked"})
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("PUT", urlsplit(url).path, body=iter([data[:70_000], data[70_000:]]),
                 headers=headers, encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 200, resp.read()
    conn.close()
    assert s3.get_object(Bucket=raw_bucket, Key="te")["Body"].read() == data


def test_truncated_body_stores_nothing(server, s3, raw_bucket):
    """A client that drops the connection mid-body leaves no object behind, and the server keeps serving."""
    url = f"{server.endpoint}/{raw_bucket}/cut"
    total = 20 * 1024 * 1024
    headers = _signed_headers("PUT", url, {"x-amz-content-sha256": "UNSIGNED-PAYLOAD",
                                            "Content-Length": str(total)})
    sock = socket.create_connection(("127.0.0.1", server.port))
    head = _raw_head(url, headers)
    sock.sendall(head.encode() + b"\r\n" + os.urandom(total // 2))
    sock.close()
    time.sleep(0.5)
    assert s3.list_objects_v2(Bucket=raw_bucket)["KeyCount"] == 0
    s3.put_object(Bucket=raw_bucket, Key="after", Body=b"still fine")
    assert s3.get_object(Bucket=raw_bucket, Key="after")["Body"].read() == b"still fine"


def test_put_to_missing_bucket_stores_nothing(server, s3):
    """PutObject to a bucket that does not exist is NoSuchBucket even for a large body."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="missing-bucket-xyz", Key="k", Body=os.urandom(3 * 1024 * 1024))
    assert e.value.response["Error"]["Code"] == "NoSuchBucket"


def test_expect_100_continue_refused_before_the_body(server, s3, raw_bucket):
    """A request whose signature is already known to be wrong when its head
    arrives gets the error instead of "100 Continue", as from AWS: the client
    never sends the body, and the connection closes.  Nothing is stored."""
    data = os.urandom(50_000)
    url = f"{server.endpoint}/{raw_bucket}/refused"
    headers = _signed_headers("PUT", url, {"x-amz-content-sha256": "UNSIGNED-PAYLOAD",
                                            "Content-Length": str(len(data)), "Expect": "100-continue"})
    headers["Authorization"] = headers["Authorization"][:-8] + "00000000"  # another signature
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(_raw_head(url, headers).encode() + b"\r\n")
        reply = b""
        while chunk := sock.recv(4096):  # until the server closes: no body was sent
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 403 "), reply[:100]
    assert b"<Code>SignatureDoesNotMatch</Code>" in reply and b"HTTP/1.1 100" not in reply
    assert "Contents" not in s3.list_objects_v2(Bucket=raw_bucket, Prefix="refused")


def test_expect_100_continue(server, s3, raw_bucket):
    """Clients sending Expect: 100-continue get the interim response and their object stored."""
    data = os.urandom(50_000)
    url = f"{server.endpoint}/{raw_bucket}/expect"
    headers = _signed_headers("PUT", url, {"x-amz-content-sha256": "UNSIGNED-PAYLOAD",
                                            "Content-Length": str(len(data)), "Expect": "100-continue"})
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = _raw_head(url, headers)
    sock.sendall(head.encode() + b"\r\n")
    interim = sock.recv(100)
    assert interim.startswith(b"HTTP/1.1 100")
    sock.sendall(data)
    final = sock.recv(4096)
    sock.close()
    assert b" 200 " in final.split(b"\r\n", 1)[0]
    assert s3.get_object(Bucket=raw_bucket, Key="expect")["Body"].read() == data

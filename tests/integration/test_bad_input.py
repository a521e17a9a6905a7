"""Hostile and malformed requests get a clear S3 error and change nothing."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError

from tests.integration.raw import CREDS, md5_header, signed


@pytest.fixture
def clean_bucket(s3):
    name = f"bad-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    for o in s3.list_objects_v2(Bucket=name).get("Contents", []):
        s3.delete_object(Bucket=name, Key=o["Key"])
    s3.delete_bucket(Bucket=name)


def _count(s3, bucket):
    return s3.list_objects_v2(Bucket=bucket)["KeyCount"]


def test_nul_in_key_refused(server, s3, clean_bucket):
    """A NUL byte in a key is InvalidArgument and stores nothing."""
    status, body = signed(server, "PUT", f"/{clean_bucket}/a%00b", b"x")
    assert status == 400 and b"<Code>InvalidArgument</Code>" in body
    assert _count(s3, clean_bucket) == 0


def test_invalid_utf8_path_refused(server, s3, clean_bucket):
    """A key that is not valid UTF-8 is InvalidURI (400)."""
    status, body = signed(server, "PUT", f"/{clean_bucket}/bad%ff%fe", b"x")
    assert status == 400 and b"InvalidURI" in body
    assert _count(s3, clean_bucket) == 0


def test_dot_dot_key_is_just_a_key(server, s3, clean_bucket, tmp_path):
    """'../..' segments are part of the key, stored by id: nothing outside the data dir is touched."""
    status, _ = signed(server, "PUT", f"/{clean_bucket}/../../../../tmp/escape-{uuid.uuid4().hex}", b"x" * 100_000)
    assert status == 200
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=clean_bucket)["Contents"]]
    assert len(keys) == 1 and keys[0].startswith("../../../../tmp/escape-")
    import os

    assert not os.path.exists("/tmp/" + keys[0].rsplit("/", 1)[1])


def test_malformed_delete_xml(server, s3, clean_bucket):
    """DeleteObjects with broken XML, entity tricks or an external entity is MalformedXML; nothing deleted."""
    s3.put_object(Bucket=clean_bucket, Key="keep", Body=b"x")
    bodies = [
        b"<Delete><Object><Key>keep</Key></Object>",  # truncated
        b"not xml at all",
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b"<Delete><Object><Key>&b;</Key></Object></Delete>",
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<Delete><Object><Key>&x;</Key></Object></Delete>",
        b"<Delete></Delete>",
    ]
    for body in bodies:
        md5 = __import__("base64").b64encode(hashlib.md5(body).digest()).decode()
        status, resp = signed(server, "POST", f"/{clean_bucket}?delete", body, {"Content-MD5": md5})
        assert status == 400 and b"MalformedXML" in resp, body
    assert _count(s3, clean_bucket) == 1


def test_delete_without_integrity_header(server, s3, clean_bucket):
    """DeleteObjects without Content-MD5 or x-amz-checksum-* is refused (InvalidRequest)."""
    s3.put_object(Bucket=clean_bucket, Key="keep", Body=b"x")
    body = b"<Delete><Object><Key>keep</Key></Object></Delete>"
    status, resp = signed(server, "POST", f"/{clean_bucket}?delete", body)
    assert status == 400 and b"InvalidRequest" in resp
    assert _count(s3, clean_bucket) == 1


def _damaged(body: bytes, header: str) -> dict[str, str]:
    """A digest header of ``header``'s kind for a body other than ``body``
    (what a body damaged on the way would arrive with)."""
    import base64
    import zlib

    other = body + b" "
    if header == "content-md5":
        return {"Content-MD5": base64.b64encode(hashlib.md5(other).digest()).decode()}
    return {"x-amz-checksum-crc32": base64.b64encode(zlib.crc32(other).to_bytes(4, "big")).decode()}


@pytest.mark.parametrize("header", ["content-md5", "x-amz-checksum-crc32"])
def test_buffered_bodies_are_checked_against_their_digest_headers(server, s3, clean_bucket, header):
    """Every configuration body (and CompleteMultipartUpload's Content-MD5)
    is checked against a digest header sent with it, required or not:
    BadDigest, and nothing changes, as AWS answers a body damaged on the
    way.  Before, only the operations that require a digest checked it."""
    bucket = clean_bucket
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    documents = [
        (f"/{bucket}?tagging", b"<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet></Tagging>"),
        (f"/{bucket}/k?tagging", b"<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet></Tagging>"),
        (f"/{bucket}?versioning", b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"),
        (f"/{bucket}?website", b"<WebsiteConfiguration><IndexDocument><Suffix>index.html</Suffix></IndexDocument></WebsiteConfiguration>"),
        (f"/{bucket}?policy", b'{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::' + bucket.encode() + b'/*"}]}'),
    ]
    for path, body in documents:
        status, resp = signed(server, "PUT", path, body, _damaged(body, header))
        assert (status, b"<Code>BadDigest</Code>" in resp) == (400, True), (path, resp)
    # Nothing of the above was stored.
    with pytest.raises(ClientError):
        s3.get_bucket_tagging(Bucket=bucket)
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    with pytest.raises(ClientError):
        s3.get_bucket_website(Bucket=bucket)
    with pytest.raises(ClientError):
        s3.get_bucket_policy(Bucket=bucket)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"
    # The same documents with the right digest are taken.
    status, _ = signed(server, "PUT", documents[0][0], documents[0][1], md5_header(documents[0][1]))
    assert status in (200, 204)
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "a", "Value": "b"}]


def test_complete_multipart_checks_content_md5_not_object_checksums(server, s3, clean_bucket):
    """CompleteMultipartUpload's x-amz-checksum-* headers are the object's
    checksum (checked against the parts, not the XML); its Content-MD5 is
    the body's, and a wrong one leaves the upload open."""
    bucket = clean_bucket
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"part")["ETag"]
    body = f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part></CompleteMultipartUpload>".encode()
    status, resp = signed(server, "POST", f"/{bucket}/mp?uploadId={upload}", body, _damaged(body, "content-md5"))
    assert (status, b"<Code>BadDigest</Code>" in resp) == (400, True)
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])] == [upload]
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert done["ETag"].endswith('-1"')
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"part"


def test_oversized_xml_body(server, s3, clean_bucket):
    """An XML body over the configured limit is refused without buffering it:
    a declared length over it is answered while the client is still sending
    (and the connection closes); a chunked body that grows past it is
    answered once it has ended (tests/integration/test_buffered_bodies.py
    covers more)."""
    import socket

    body = b"<Delete>" + b"<Object><Key>k</Key></Object>" * 350_000 + b"</Delete>"  # > 8 MiB
    path = f"/{clean_bucket}?delete"
    req = AWSRequest("POST", f"{server.endpoint}{path}", data=body, headers=md5_header(body))
    S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(req)
    for chunked in (False, True):
        head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
        head += [f"{k}: {v}" for k, v in req.headers.items() if k.lower() not in ("host", "content-length")]
        head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}")
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            if chunked:
                for start in range(0, len(body), 1 << 20):
                    piece = body[start:start + (1 << 20)]
                    sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
            else:
                sock.sendall(body[:65536])
            reply = b""
            while b"</Error>" not in reply:
                data = sock.recv(65536)
                if not data:
                    break
                reply += data
        assert reply.startswith(b"HTTP/1.1 400 "), reply[:300]
        assert b"<Code>MaxMessageLengthExceeded</Code>" in reply
        assert (b"connection: close" in reply.lower()) == (not chunked)


def test_unknown_subresource_and_method(server, s3, clean_bucket):
    """Unknown S3 calls answer a quick 4xx/501 S3 error, never a 5xx that SDKs would retry."""
    status, body = signed(server, "POST", f"/{clean_bucket}/k?select&select-type=2", b"<x/>")
    assert status == 501 and b"NotImplemented" in body
    status, body = signed(server, "PATCH", f"/{clean_bucket}/k", b"")
    assert status in (400, 405) and b"<Error>" in body
    status, body = signed(server, "GET", "/?Action=GetCallerIdentity", b"")
    assert status < 500


def test_bad_max_keys_and_token(server, s3, clean_bucket):
    """Non-numeric max-keys and garbage continuation tokens are InvalidArgument."""
    status, body = signed(server, "GET", f"/{clean_bucket}?list-type=2&max-keys=abc")
    assert status == 400 and b"InvalidArgument" in body
    status, body = signed(server, "GET", f"/{clean_bucket}?list-type=2&continuation-token=%%%")
    assert status == 400 and b"InvalidArgument" in body


@pytest.mark.parametrize("declared", [str(6 * 1024**3), "1" + "0" * 30, "9" * 5000])
def test_impossible_content_length_is_refused_before_the_body(server, s3, clean_bucket, declared):
    """A PutObject or UploadPart declaring more bytes than any object or part
    may hold is answered at once (400 EntityTooLarge, Connection: close)
    while the client is still sending; nothing is stored and the server
    keeps serving.  A length of more than 4300 digits, which ``int()``
    refuses, is no exception (it used to drop the connection unanswered)."""
    import socket

    for path in (f"/{clean_bucket}/huge", f"/{clean_bucket}/huge?partNumber=1&uploadId=x"):
        req = AWSRequest("PUT", f"{server.endpoint}{path}",
                         headers={"Content-Length": declared, "x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
        S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(req)
        head = [f"PUT {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
        head += [f"{k}: {v}" for k, v in req.headers.items() if k.lower() != "host"]
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + b"x" * 65536)
            reply = b""
            while b"</Error>" not in reply:
                data = sock.recv(65536)
                if not data:
                    break
                reply += data
            status_line, _, rest = reply.partition(b"\r\n")
            assert status_line == b"HTTP/1.1 400 Bad Request", reply[:300]
            assert b"<Code>EntityTooLarge</Code>" in rest and b"connection: close" in rest.lower()
    assert _count(s3, clean_bucket) == 0
    s3.put_object(Bucket=clean_bucket, Key="after", Body=b"still serving")
    assert s3.get_object(Bucket=clean_bucket, Key="after")["Body"].read() == b"still serving"


def test_content_length_with_thousands_of_leading_zeros_is_its_value(server, s3, clean_bucket):
    """``Content-Length: 000…05`` (4,400 zeros) is the number 5: the PUT stores
    the five bytes sent, like any other length (``int()`` alone refuses the
    string, and the connection used to drop unanswered)."""
    import socket

    path = f"/{clean_bucket}/zeros"
    req = AWSRequest("PUT", f"{server.endpoint}{path}", data=b"hello")
    S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(req)
    head = [f"PUT {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", "Content-Length: " + "0" * 4400 + "5"]
    head += [f"{k}: {v}" for k, v in req.headers.items() if k.lower() not in ("host", "content-length")]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + b"hello")
        reply = b""
        while b"\r\n\r\n" not in reply:
            data = sock.recv(65536)
            assert data, reply
            reply += data
    assert reply.startswith(b"HTTP/1.1 200 OK"), reply[:300]
    assert s3.get_object(Bucket=clean_bucket, Key="zeros")["Body"].read() == b"hello"

"""SSE-C end to end: customer-provided keys against a real TLS server, with
boto3's SSECustomer* parameters (it sends the three headers, computing the
key's MD5), and the gRPC client.

What is pinned:

* PutObject / GetObject / HeadObject / GetObjectAttributes: plaintext back
  with the key, the algorithm and key MD5 echoed (not the SSE-S3 header);
  nothing on disk holds the plaintext or the key; the ETag is not the
  plaintext's MD5 (AWS) but is stable;
* AWS's errors: no key 400 InvalidRequest, another key 403, a key for a
  plain object 400, bad / missing / mismatched headers 400 InvalidArgument,
  SSE-C with x-amz-server-side-encryption 400, plain HTTP 400;
* SSE-C wins over the bucket's default encryption;
* multipart (every part with the same key), CopyObject and UploadPartCopy
  with ``x-amz-copy-source-server-side-encryption-customer-*``;
* gRPC reads of an SSE-C object are refused, never ciphertext.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from lightningstor.s3 import ssec
from tests.integration.certs import Pki, make_pki
from tests.integration.conftest import make_client
from tests.integration.raw import client_error
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess

MiB = 1024 * 1024
KEY_A = os.urandom(32)
KEY_B = os.urandom(32)


def sse_c(key: bytes) -> dict[str, Any]:
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}


def copy_source_c(key: bytes) -> dict[str, Any]:
    return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": key}


def md5_b64(key: bytes) -> str:
    return base64.b64encode(hashlib.md5(key).digest()).decode()


def marker_body(size: int, tag: str) -> bytes:
    unit = f"PLAINTEXT-{tag}-".encode().ljust(64, b"#")
    return (unit * (size // 64 + 1))[:size]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Pki]]:
    base = tmp_path_factory.mktemp("ssec")
    pki = make_pki(base / "pki")
    config = base / "ssec.toml"
    config.write_text(pki.config() + "[storage]\nchunk_size_bytes = 1048576\ninline_threshold_bytes = 4096\n")
    data = base / "data"
    data.mkdir()
    server = ServerProcess(data, config=str(config)).start()
    yield server, pki
    server.stop()


@pytest.fixture(scope="module")
def s3c(tls: tuple[ServerProcess, Pki]) -> Any:
    server, pki = tls
    return boto3.client(
        "s3",
        endpoint_url=f"https://127.0.0.1:{server.port}",
        aws_access_key_id=ROOT_ACCESS_KEY,
        aws_secret_access_key=ROOT_SECRET_KEY,
        region_name="us-east-1",
        verify=str(pki.ca_file),
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      retries={"max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture
def bucket(s3c: Any) -> str:
    name = f"ssec-{uuid.uuid4().hex[:10]}"
    s3c.create_bucket(Bucket=name)
    return name


def data_files(server: ServerProcess) -> bytes:
    """Every byte under the server's data dir (chunks, metadata DB, WAL)."""
    return b"".join(p.read_bytes() for p in Path(server.data_dir).rglob("*") if p.is_file())


def echoed(response: dict[str, Any], key: bytes) -> bool:
    """The response carries SSE-C's two headers for ``key`` and not SSE-S3's."""
    return (
        response.get("SSECustomerAlgorithm") == "AES256"
        and response.get("SSECustomerKeyMD5") == md5_b64(key)
        and "ServerSideEncryption" not in response
    )


def without_header(client: Any, event: str, name: str) -> Callable[[], None]:
    """Drop request header ``name`` before signing ``event``; returns the undo."""

    def drop(request: Any, **_: Any) -> None:
        if name in request.headers:
            del request.headers[name]

    client.meta.events.register(f"before-sign.s3.{event}", drop)
    return lambda: client.meta.events.unregister(f"before-sign.s3.{event}", drop)


# -- PutObject / GetObject / HeadObject ----------------------------------------------


@pytest.mark.parametrize("size", [100, 3 * MiB + 123])
def test_round_trip_stores_neither_plaintext_nor_key(
    tls: tuple[ServerProcess, Pki], s3c: Any, bucket: str, size: int
) -> None:
    """Inline and chunked objects: plaintext back with the key, headers
    echoed, ciphertext only on disk, and the key nowhere on disk."""
    server, _ = tls
    tag = uuid.uuid4().hex[:10]
    body = marker_body(size, tag)
    put = s3c.put_object(Bucket=bucket, Key="secret", Body=body, **sse_c(KEY_A))
    assert echoed(put, KEY_A)
    got = s3c.get_object(Bucket=bucket, Key="secret", **sse_c(KEY_A))
    assert echoed(got, KEY_A)
    assert got["Body"].read() == body
    assert got["ETag"] == put["ETag"]
    head = s3c.head_object(Bucket=bucket, Key="secret", **sse_c(KEY_A))
    assert echoed(head, KEY_A) and head["ContentLength"] == size
    control = uuid.uuid4().hex[:10]
    s3c.put_object(Bucket=bucket, Key="plain", Body=marker_body(size, control))
    disk = data_files(server)
    assert f"PLAINTEXT-{control}-".encode() in disk  # the check can see plaintext
    assert f"PLAINTEXT-{tag}-".encode() not in disk
    assert KEY_A not in disk and base64.b64encode(KEY_A) not in disk


def test_etag_is_not_the_plaintext_md5(s3c: Any, bucket: str) -> None:
    """AWS: an SSE-C object's ETag is not the MD5 of its data (a listing,
    which needs no key, must not confirm a guess of the content); it stays
    usable for If-Match."""
    body = b"guessable content" * 10
    put = s3c.put_object(Bucket=bucket, Key="e", Body=body, **sse_c(KEY_A))
    assert put["ETag"] != f'"{hashlib.md5(body).hexdigest()}"'
    listed = s3c.list_objects_v2(Bucket=bucket)["Contents"][0]["ETag"]
    assert listed == put["ETag"]
    got = s3c.get_object(Bucket=bucket, Key="e", IfMatch=put["ETag"], **sse_c(KEY_A))
    assert got["Body"].read() == body
    again = s3c.put_object(Bucket=bucket, Key="e2", Body=body, **sse_c(KEY_A))
    assert again["ETag"] != put["ETag"]  # salted per object


def test_ranged_reads_decrypt_from_any_offset(s3c: Any, bucket: str) -> None:
    body = os.urandom(2 * MiB + 77)
    s3c.put_object(Bucket=bucket, Key="r", Body=body, **sse_c(KEY_A))
    for first, last in [(0, 0), (5, 40), (MiB - 3, MiB + 20), (len(body) - 17, len(body) - 1)]:
        got = s3c.get_object(Bucket=bucket, Key="r", Range=f"bytes={first}-{last}", **sse_c(KEY_A))
        assert got["Body"].read() == body[first:last + 1]


def test_reads_need_the_right_key(s3c: Any, bucket: str) -> None:
    """No key: 400 InvalidRequest with AWS's message; another key: 403;
    SSE-C headers for a plain object: 400 InvalidRequest."""
    s3c.put_object(Bucket=bucket, Key="k", Body=b"data", **sse_c(KEY_A))
    with pytest.raises(ClientError) as e:
        s3c.get_object(Bucket=bucket, Key="k")
    assert client_error(e) == (400, "InvalidRequest", ssec.MSG_KEY_REQUIRED)
    with pytest.raises(ClientError) as e:
        s3c.get_object(Bucket=bucket, Key="k", **sse_c(KEY_B))
    assert client_error(e)[:2] == (403, "AccessDenied")
    with pytest.raises(ClientError) as e:
        s3c.head_object(Bucket=bucket, Key="k")
    assert client_error(e)[0] == 400
    with pytest.raises(ClientError) as e:
        s3c.head_object(Bucket=bucket, Key="k", **sse_c(KEY_B))
    assert client_error(e)[0] == 403
    with pytest.raises(ClientError) as e:
        s3c.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"])
    assert client_error(e) == (400, "InvalidRequest", ssec.MSG_KEY_REQUIRED)
    # botocore does not encode the key for this operation: the raw header values.
    encoded = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": base64.b64encode(KEY_A).decode(),
               "SSECustomerKeyMD5": md5_b64(KEY_A)}
    attrs = s3c.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"], **encoded)
    assert attrs["ObjectSize"] == 4
    s3c.put_object(Bucket=bucket, Key="p", Body=b"plain")
    with pytest.raises(ClientError) as e:
        s3c.get_object(Bucket=bucket, Key="p", **sse_c(KEY_A))
    assert client_error(e) == (400, "InvalidRequest", ssec.MSG_NOT_APPLICABLE)


# -- header validation ---------------------------------------------------------------


def test_bad_keys_are_invalid_argument(s3c: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as e:
        s3c.put_object(Bucket=bucket, Key="k", Body=b"x", **sse_c(os.urandom(16)))
    assert client_error(e) == (400, "InvalidArgument", ssec.MSG_BAD_KEY)
    with pytest.raises(ClientError) as e:
        # With the MD5 given, botocore sends the key as it is: the base64 text.
        s3c.put_object(Bucket=bucket, Key="k", Body=b"x", SSECustomerAlgorithm="AES256",
                       SSECustomerKey=base64.b64encode(KEY_A).decode(), SSECustomerKeyMD5=md5_b64(KEY_B))
    assert client_error(e) == (400, "InvalidArgument", ssec.MSG_MD5_MISMATCH)
    with pytest.raises(ClientError) as e:
        s3c.put_object(Bucket=bucket, Key="k", Body=b"x", SSECustomerAlgorithm="AES128", SSECustomerKey=KEY_A)
    assert client_error(e) == (400, "InvalidEncryptionAlgorithmError", ssec.MSG_BAD_ALGORITHM)
    with pytest.raises(ClientError) as e:
        s3c.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="AES256", **sse_c(KEY_A))
    assert client_error(e) == (400, "InvalidArgument", ssec.MSG_INCOMPATIBLE)


@pytest.mark.parametrize(("header", "message"), [
    (ssec.ALGORITHM_HEADER, ssec.MSG_NO_ALGORITHM),
    (ssec.KEY_HEADER, ssec.MSG_NO_KEY),
    (ssec.KEY_MD5_HEADER, ssec.MSG_NO_MD5),
])
def test_missing_header_is_invalid_argument(s3c: Any, bucket: str, header: str, message: str) -> None:
    undo = without_header(s3c, "PutObject", header)
    try:
        with pytest.raises(ClientError) as e:
            s3c.put_object(Bucket=bucket, Key="k", Body=b"x", **sse_c(KEY_A))
    finally:
        undo()
    assert client_error(e) == (400, "InvalidArgument", message)
    with pytest.raises(ClientError):
        s3c.head_object(Bucket=bucket, Key="k")  # nothing was stored


def test_plain_http_is_refused(server: ServerProcess) -> None:
    """AWS refuses SSE-C over plain HTTP: 400 InvalidRequest (the TLS
    server of this module accepts the same requests)."""
    plain = make_client(f"http://127.0.0.1:{server.port}")
    name = f"ssec-plain-{uuid.uuid4().hex[:8]}"
    plain.create_bucket(Bucket=name)  # type: ignore[attr-defined]
    with pytest.raises(ClientError) as e:
        plain.put_object(Bucket=name, Key="k", Body=b"x", **sse_c(KEY_A))  # type: ignore[attr-defined]
    assert client_error(e) == (400, "InvalidRequest", ssec.MSG_INSECURE)
    with pytest.raises(ClientError) as e:
        plain.create_multipart_upload(Bucket=name, Key="k", **sse_c(KEY_A))  # type: ignore[attr-defined]
    assert client_error(e) == (400, "InvalidRequest", ssec.MSG_INSECURE)
    plain.put_object(Bucket=name, Key="p", Body=b"x")  # type: ignore[attr-defined]
    with pytest.raises(ClientError) as e:
        plain.get_object(Bucket=name, Key="p", **sse_c(KEY_A))  # type: ignore[attr-defined]
    assert client_error(e) == (400, "InvalidRequest", ssec.MSG_INSECURE)


def test_ssec_wins_over_the_bucket_default(s3c: Any, bucket: str) -> None:
    s3c.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    put = s3c.put_object(Bucket=bucket, Key="k", Body=b"data", **sse_c(KEY_A))
    assert echoed(put, KEY_A)
    with pytest.raises(ClientError) as e:
        s3c.get_object(Bucket=bucket, Key="k")
    assert client_error(e)[:2] == (400, "InvalidRequest")
    assert s3c.put_object(Bucket=bucket, Key="d", Body=b"x")["ServerSideEncryption"] == "AES256"


# -- multipart ---------------------------------------------------------------------------


def test_multipart_every_part_with_the_same_key(s3c: Any, bucket: str) -> None:
    up = s3c.create_multipart_upload(Bucket=bucket, Key="mp", **sse_c(KEY_A))
    assert echoed(up, KEY_A)
    uid = up["UploadId"]
    one, two = os.urandom(5 * MiB), os.urandom(MiB + 5)
    with pytest.raises(ClientError) as e:
        s3c.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=one)
    assert client_error(e) == (400, "InvalidRequest", ssec.MSG_PART_KEY_REQUIRED)
    with pytest.raises(ClientError) as e:
        s3c.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=one, **sse_c(KEY_B))
    assert client_error(e) == (400, "InvalidRequest", ssec.MSG_PART_KEY_MISMATCH)
    p1 = s3c.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=one, **sse_c(KEY_A))
    assert echoed(p1, KEY_A)
    p2 = s3c.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=2, Body=two, **sse_c(KEY_A))
    done = s3c.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]})
    assert done["ETag"].endswith('-2"')
    got = s3c.get_object(Bucket=bucket, Key="mp", **sse_c(KEY_A))
    assert echoed(got, KEY_A) and got["Body"].read() == one + two
    with pytest.raises(ClientError) as e:
        s3c.get_object(Bucket=bucket, Key="mp", **sse_c(KEY_B))
    assert client_error(e)[0] == 403


def test_plain_upload_refuses_part_keys(s3c: Any, bucket: str) -> None:
    uid = s3c.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3c.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=b"x", **sse_c(KEY_A))
    assert client_error(e) == (400, "InvalidRequest", ssec.MSG_NOT_APPLICABLE)


# -- copies ----------------------------------------------------------------------------------


def test_copy_object_keys(s3c: Any, bucket: str) -> None:
    """An SSE-C source opens with the copy-source key only; the destination
    takes its own key (or none)."""
    body = os.urandom(20000)
    s3c.put_object(Bucket=bucket, Key="src", Body=body, **sse_c(KEY_A))
    source = {"Bucket": bucket, "Key": "src"}
    with pytest.raises(ClientError) as e:
        s3c.copy_object(Bucket=bucket, Key="dst", CopySource=source)
    assert client_error(e) == (400, "InvalidRequest", ssec.MSG_KEY_REQUIRED)
    with pytest.raises(ClientError) as e:
        s3c.copy_object(Bucket=bucket, Key="dst", CopySource=source, **copy_source_c(KEY_B))
    assert client_error(e)[:2] == (403, "AccessDenied")
    plain = s3c.copy_object(Bucket=bucket, Key="dst", CopySource=source, **copy_source_c(KEY_A))
    assert "SSECustomerAlgorithm" not in plain
    assert s3c.get_object(Bucket=bucket, Key="dst")["Body"].read() == body
    rekeyed = s3c.copy_object(Bucket=bucket, Key="dst2", CopySource=source, **copy_source_c(KEY_A), **sse_c(KEY_B))
    assert echoed(rekeyed, KEY_B)
    assert s3c.get_object(Bucket=bucket, Key="dst2", **sse_c(KEY_B))["Body"].read() == body
    with pytest.raises(ClientError) as e:
        s3c.get_object(Bucket=bucket, Key="dst2", **sse_c(KEY_A))
    assert client_error(e)[0] == 403
    # A plain source named with a copy-source key: AWS's 400.
    with pytest.raises(ClientError) as e:
        s3c.copy_object(Bucket=bucket, Key="dst3", CopySource={"Bucket": bucket, "Key": "dst"},
                        **copy_source_c(KEY_A))
    assert client_error(e) == (400, "InvalidRequest", ssec.MSG_NOT_APPLICABLE)


def test_upload_part_copy_keys(s3c: Any, bucket: str) -> None:
    body = os.urandom(3 * MiB)
    s3c.put_object(Bucket=bucket, Key="src", Body=body, **sse_c(KEY_A))
    uid = s3c.create_multipart_upload(Bucket=bucket, Key="mp", **sse_c(KEY_B))["UploadId"]
    source = {"Bucket": bucket, "Key": "src"}
    with pytest.raises(ClientError) as e:
        s3c.upload_part_copy(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, CopySource=source,
                             **sse_c(KEY_B))
    assert client_error(e) == (400, "InvalidRequest", ssec.MSG_KEY_REQUIRED)
    with pytest.raises(ClientError) as e:
        s3c.upload_part_copy(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, CopySource=source,
                             **copy_source_c(KEY_A))
    assert client_error(e) == (400, "InvalidRequest", ssec.MSG_PART_KEY_REQUIRED)
    part = s3c.upload_part_copy(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, CopySource=source,
                                **copy_source_c(KEY_A), **sse_c(KEY_B))
    assert echoed(part, KEY_B)
    s3c.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]})
    assert s3c.get_object(Bucket=bucket, Key="mp", **sse_c(KEY_B))["Body"].read() == body


# -- other paths -------------------------------------------------------------------------------


def test_grpc_refuses_ssec_reads(tls: tuple[ServerProcess, Pki], s3c: Any, bucket: str) -> None:
    """The gRPC API has no key fields: a read of an SSE-C object is refused
    with the S3 code, never answered with ciphertext; a copy, or a part for
    an SSE-C upload, likewise.  HeadObject too, as S3's HEAD without the key
    (its checksums are the plaintext's: one would confirm a guess of the
    content), and a read of an empty SSE-C object, which needs no cipher;
    ListParts of an SSE-C upload leaves the parts' checksums out."""
    from lightningstor.client import LightningStorClient
    from lightningstor.client.errors import LightningStorError

    server, pki = tls
    s3c.put_object(Bucket=bucket, Key="k", Body=b"secret bytes", **sse_c(KEY_A))
    with LightningStorClient.connect(
        f"grpcs://{server.grpc_endpoint}", access_key=ROOT_ACCESS_KEY, secret_key=ROOT_SECRET_KEY,
        root_certificates=pki.ca_file.read_bytes(), certificate_chain=pki.client_cert_file.read_bytes(),
        private_key=pki.client_key_file.read_bytes(), timeout=10,
    ) as client:
        with pytest.raises(LightningStorError) as e:
            b"".join(client.get_object(bucket, "k"))
        assert e.value.code == "InvalidRequest"
        with pytest.raises(LightningStorError) as e:
            client.copy_object(bucket, "k", bucket, "k2")
        assert e.value.code == "InvalidRequest"
        uid = s3c.create_multipart_upload(Bucket=bucket, Key="mp", **sse_c(KEY_A))["UploadId"]
        with pytest.raises(LightningStorError) as e:
            client.upload_part(bucket, "mp", uid, 1, b"part bytes")
        assert e.value.code == "InvalidRequest"
        s3c.put_object(Bucket=bucket, Key="empty", Body=b"", **sse_c(KEY_A))
        for read in (lambda: client.head_object(bucket, "k"), lambda: b"".join(client.get_object(bucket, "empty"))):
            with pytest.raises(LightningStorError) as e:
                read()
            assert e.value.code == "InvalidRequest"
        summed = s3c.create_multipart_upload(Bucket=bucket, Key="summed", ChecksumAlgorithm="SHA256", **sse_c(KEY_A))
        s3c.upload_part(Bucket=bucket, Key="summed", UploadId=summed["UploadId"], PartNumber=1, Body=b"guessable",
                        ChecksumAlgorithm="SHA256", **sse_c(KEY_A))  # fmt: skip
        [part] = client.list_parts(bucket, "summed", summed["UploadId"]).parts
        assert part.size == 9 and list(part.checksums) == []
        assert client.get_object_tagging(bucket, "k") == {}  # tags are not the object's content


def test_list_parts_of_an_ssec_upload_shows_checksums_only_with_its_key(s3c: Any, bucket: str) -> None:
    """An SSE-C upload's part checksums are the plaintext's: ListParts
    without the upload's key lists the parts without them; with the key,
    with them (and the SSE-C headers echoed); with another key, refused."""
    up = s3c.create_multipart_upload(Bucket=bucket, Key="mp", ChecksumAlgorithm="SHA256", **sse_c(KEY_A))
    uid = up["UploadId"]
    sent = s3c.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=b"guessable",
                           ChecksumAlgorithm="SHA256", **sse_c(KEY_A))  # fmt: skip
    [bare] = s3c.list_parts(Bucket=bucket, Key="mp", UploadId=uid)["Parts"]
    assert bare["Size"] == 9 and "ChecksumSHA256" not in bare
    def encoded(key: bytes) -> dict[str, str]:  # botocore does not encode the key for ListParts
        return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": base64.b64encode(key).decode(),
                "SSECustomerKeyMD5": md5_b64(key)}  # fmt: skip

    keyed = s3c.list_parts(Bucket=bucket, Key="mp", UploadId=uid, **encoded(KEY_A))
    assert keyed["Parts"][0]["ChecksumSHA256"] == sent["ChecksumSHA256"]
    assert keyed["ResponseMetadata"]["HTTPHeaders"]["x-amz-server-side-encryption-customer-algorithm"] == "AES256"
    with pytest.raises(ClientError) as e:
        s3c.list_parts(Bucket=bucket, Key="mp", UploadId=uid, **encoded(KEY_B))
    assert e.value.response["Error"]["Code"] == "InvalidRequest"
    s3c.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid)


def test_post_object_ssec_fields_not_implemented(tls: tuple[ServerProcess, Pki], s3c: Any, bucket: str) -> None:
    """SSE-C in a browser form upload stays 501, never stored unencrypted."""
    server, pki = tls
    post = s3c.generate_presigned_post(bucket, "form", Fields={ssec.ALGORITHM_HEADER: "AES256"},
                                       Conditions=[{ssec.ALGORITHM_HEADER: "AES256"}])
    response = requests.post(post["url"], data=post["fields"], files={"file": b"x"}, verify=str(pki.ca_file),
                             timeout=10)
    assert response.status_code == 501
    with pytest.raises(ClientError):
        s3c.head_object(Bucket=bucket, Key="form")


def test_a_bucket_policy_may_require_sse_c(s3c: Any, bucket: str) -> None:
    """AWS's recipe: deny PutObject when the request names no customer
    algorithm (``Null`` on ``s3:x-amz-server-side-encryption-customer-algorithm``).
    The policy is accepted, plain uploads are refused, SSE-C ones pass."""
    s3c.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/*",
        "Condition": {"Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "true"}},
    }]}))  # fmt: skip
    with pytest.raises(ClientError) as e:
        s3c.put_object(Bucket=bucket, Key="plain", Body=b"plain")
    assert e.value.response["Error"]["Code"] == "AccessDenied"
    s3c.put_object(Bucket=bucket, Key="sealed", Body=b"sealed", **sse_c(KEY_A))
    assert s3c.get_object(Bucket=bucket, Key="sealed", **sse_c(KEY_A))["Body"].read() == b"sealed"

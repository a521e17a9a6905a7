"""SSE-S3 end to end: ``x-amz-server-side-encryption: AES256`` and bucket
default encryption against one real server, with boto3, a form upload, the
gRPC client and a bucket policy.

What is pinned:

* PutObject, CopyObject, CreateMultipartUpload (UploadPart, UploadPartCopy,
  CompleteMultipartUpload) and PostObject take AES256 and answer with the
  header, as GetObject and HeadObject of the object do; ETags stay the MD5
  of the plaintext;
* nothing written to the data directory (chunk files, the metadata
  database with its inline data) holds an encrypted object's plaintext,
  while an unencrypted control object's plaintext is there (so the check
  can fail);
* ranged reads from any offset decrypt correctly;
* Put/Get/DeleteBucketEncryption and the default applied to writes that
  ask for nothing (S3 and gRPC), never to writes in other buckets;
* a copy re-encrypts under a fresh key (the records' wrapped keys differ);
* aws:kms, aws:kms:dsse and KMS key ids stay 501 (SSE-C over plain HTTP is
  400, test_ssec.py covers it); unknown values
  are AWS's 400 InvalidArgument;
* the classic "deny unencrypted uploads" bucket policy.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.integration.raw import client_error
from tests.integration.tenants import Identity, Spec, Tenancy

MiB = 1024 * 1024
SSE = "x-amz-server-side-encryption"
AES = {"ServerSideEncryption": "AES256"}
CONFIG = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}


@pytest.fixture(scope="module")
def tenancy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenancy]:
    # Small chunks: a few MiB make several chunks and manifest-free ranges.
    t = Tenancy.start(
        tmp_path_factory.mktemp("sse"),
        extra_config="[storage]\nchunk_size_bytes = 1048576\ninline_threshold_bytes = 4096\n",
    )
    yield t
    t.stop()


@pytest.fixture(scope="module")
def ids(tenancy: Tenancy) -> dict[str, Identity]:
    return tenancy.provision([
        Spec("sse-admin", "acme", roles=("admin",)),
        Spec("sse-writer", "acme", roles=("read-write",)),
    ])


@pytest.fixture(scope="module")
def admin(tenancy: Tenancy, ids: dict[str, Identity]) -> Any:
    return ids["sse-admin"].s3(tenancy.server.endpoint)


@pytest.fixture(scope="module")
def writer(tenancy: Tenancy, ids: dict[str, Identity]) -> Any:
    return ids["sse-writer"].s3(tenancy.server.endpoint)


@pytest.fixture
def bucket(admin: Any) -> str:
    name = f"sse-{uuid.uuid4().hex[:12]}"
    admin.create_bucket(Bucket=name)
    return name


def marker_body(size: int, tag: str) -> bytes:
    """A body whose every 64 bytes hold a recognisable plaintext marker."""
    unit = f"PLAINTEXT-{tag}-".encode().ljust(64, b"#")
    return (unit * (size // 64 + 1))[:size]


def data_files(tenancy: Tenancy) -> bytes:
    """Every byte under the server's data dir (chunks, metadata DB, WAL)."""
    root = Path(tenancy.server.data_dir)
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def stored_record(tenancy: Tenancy, key: str) -> dict[str, Any]:
    """The JSON fields of the one current object record named ``key``."""
    db = sqlite3.connect(f"file:{Path(tenancy.server.data_dir) / 'metadata.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT key, value FROM kv").fetchall()
    finally:
        db.close()
    found = [bytes(v) for k, v in rows if bytes(k).endswith(b"/" + key.encode()) and b"/objects/" in bytes(k)]
    assert len(found) == 1, found
    value = found[0]
    end = value.find(b"\x00")
    return json.loads(value if end < 0 else value[:end])  # type: ignore[no-any-return]


def sse_header(response: dict[str, Any]) -> str | None:
    return response["ResponseMetadata"]["HTTPHeaders"].get(SSE)


# -- PutObject / GetObject / HeadObject ---------------------------------------------


@pytest.mark.parametrize("size", [100, 3 * MiB + 123])
def test_put_encrypted_stores_no_plaintext(tenancy: Tenancy, admin: Any, bucket: str, size: int) -> None:
    """AES256 objects (inline and chunked) are stored as ciphertext only;
    the ETag is the plaintext's MD5; every response carries the header."""
    tag = uuid.uuid4().hex[:10]
    body = marker_body(size, tag)
    put = admin.put_object(Bucket=bucket, Key="secret", Body=body, **AES)
    assert put["ServerSideEncryption"] == "AES256"
    assert put["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    got = admin.get_object(Bucket=bucket, Key="secret")
    assert got["ServerSideEncryption"] == "AES256"
    assert got["Body"].read() == body
    assert admin.head_object(Bucket=bucket, Key="secret")["ServerSideEncryption"] == "AES256"
    control_tag = uuid.uuid4().hex[:10]
    admin.put_object(Bucket=bucket, Key="plain", Body=marker_body(size, control_tag))
    assert "ServerSideEncryption" not in admin.head_object(Bucket=bucket, Key="plain")
    disk = data_files(tenancy)
    assert f"PLAINTEXT-{control_tag}-".encode() in disk  # the check can see plaintext
    assert f"PLAINTEXT-{tag}-".encode() not in disk


def test_ranged_reads_decrypt_from_any_offset(admin: Any, bucket: str) -> None:
    body = bytes(range(256)) * (3 * MiB // 256) + b"tail"
    admin.put_object(Bucket=bucket, Key="r", Body=body, **AES)
    for first, last in [(0, 0), (1, 16), (15, 17), (MiB - 3, MiB + 20), (2 * MiB + 7, len(body) - 1), (100, 100)]:
        got = admin.get_object(Bucket=bucket, Key="r", Range=f"bytes={first}-{last}")
        assert got["Body"].read() == body[first : last + 1], (first, last)
        assert got["ServerSideEncryption"] == "AES256"
    tail = admin.get_object(Bucket=bucket, Key="r", Range="bytes=-5")["Body"].read()
    assert tail == body[-5:]


def test_data_key_is_stored_wrapped(tenancy: Tenancy, admin: Any) -> None:
    """The record holds the data key only wrapped (60 bytes: nonce, sealed
    key, tag), never two versions alike."""
    name = f"sse-{uuid.uuid4().hex[:12]}"
    admin.create_bucket(Bucket=name)
    key = f"wrapped-{uuid.uuid4().hex}"
    admin.put_object(Bucket=name, Key=key, Body=b"x" * 5000, **AES)
    first = stored_record(tenancy, key)["sse"]
    assert first["a"] == "AES256"
    import base64

    assert len(base64.b64decode(first["k"])) == 12 + 32 + 16
    admin.put_object(Bucket=name, Key=key, Body=b"x" * 5000, **AES)
    assert stored_record(tenancy, key)["sse"]["k"] != first["k"]


@pytest.mark.parametrize(("extra", "status", "code"), [
    ({"ServerSideEncryption": "aws:kms"}, 501, "NotImplemented"),
    ({"ServerSideEncryption": "aws:kms:dsse"}, 501, "NotImplemented"),
    ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/x"}, 501, "NotImplemented"),
    # SSE-C is implemented (test_ssec.py); over plain HTTP it is AWS's 400.
    ({"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32}, 400, "InvalidRequest"),
])
def test_unsupported_encryption_refused(admin: Any, bucket: str, extra: dict[str, str], status: int, code: str) -> None:
    with pytest.raises(ClientError) as e:
        admin.put_object(Bucket=bucket, Key="k", Body=b"x", **extra)
    assert client_error(e)[:2] == (status, code)
    with pytest.raises(ClientError) as e:
        admin.create_multipart_upload(Bucket=bucket, Key="k", **extra)
    assert client_error(e)[:2] == (status, code)
    with pytest.raises(ClientError):
        admin.head_object(Bucket=bucket, Key="k")


def test_unknown_algorithm_is_invalid_argument(admin: Any, bucket: str) -> None:
    def bad(request: Any, **_: Any) -> None:
        request.headers[SSE] = "AES512"

    admin.meta.events.register_first("before-sign.s3.PutObject", bad)
    try:
        with pytest.raises(ClientError) as e:
            admin.put_object(Bucket=bucket, Key="k", Body=b"x")
    finally:
        admin.meta.events.unregister("before-sign.s3.PutObject", bad)
    status, code, message = client_error(e)
    assert (status, code, message) == (400, "InvalidArgument", "The encryption method specified is not supported")
    assert e.value.response["Error"]["ArgumentName"] == SSE
    assert e.value.response["Error"]["ArgumentValue"] == "AES512"


# -- bucket default encryption ---------------------------------------------------------


def test_bucket_encryption_configuration(admin: Any, writer: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as e:
        admin.get_bucket_encryption(Bucket=bucket)
    assert client_error(e)[:2] == (404, "ServerSideEncryptionConfigurationNotFoundError")
    admin.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=CONFIG)
    rules = admin.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules == [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": False}]
    with_key = {"Rules": [{**CONFIG["Rules"][0], "BucketKeyEnabled": True}]}
    admin.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=with_key)
    rules = admin.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["BucketKeyEnabled"] is True
    # Changing it takes buckets:create (a read-write principal may not).
    with pytest.raises(ClientError) as e:
        writer.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=CONFIG)
    assert client_error(e)[:2] == (403, "AccessDenied")
    assert writer.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    admin.delete_bucket_encryption(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        admin.get_bucket_encryption(Bucket=bucket)
    assert client_error(e)[:2] == (404, "ServerSideEncryptionConfigurationNotFoundError")


@pytest.mark.parametrize(("rule", "status", "code"), [
    ({"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}, 501, "NotImplemented"),
    ({"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms:dsse"}}, 501, "NotImplemented"),
    ({"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256", "KMSMasterKeyID": "k"}}, 400, "InvalidArgument"),
    ({"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "DES"}}, 400, "MalformedXML"),
])
def test_bad_bucket_encryption_refused(admin: Any, bucket: str, rule: dict[str, Any], status: int, code: str) -> None:
    with pytest.raises(ClientError) as e:
        admin.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})
    assert client_error(e)[:2] == (status, code)
    with pytest.raises(ClientError):
        admin.get_bucket_encryption(Bucket=bucket)


def test_default_applies_to_writes_asking_nothing(tenancy: Tenancy, ids: dict[str, Identity], admin: Any,
                                                  bucket: str) -> None:
    """PutObject, multipart and gRPC writes in a bucket with a default are
    encrypted; a bucket without one stays plaintext."""
    admin.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=CONFIG)
    tag = uuid.uuid4().hex[:10]
    body = marker_body(2 * MiB, tag)
    put = admin.put_object(Bucket=bucket, Key="d", Body=body)
    assert put["ServerSideEncryption"] == "AES256"
    assert admin.head_object(Bucket=bucket, Key="d")["ServerSideEncryption"] == "AES256"
    up = admin.create_multipart_upload(Bucket=bucket, Key="m")
    assert up["ServerSideEncryption"] == "AES256"
    admin.abort_multipart_upload(Bucket=bucket, Key="m", UploadId=up["UploadId"])
    client = ids["sse-admin"].grpc(tenancy.server.grpc_endpoint)
    grpc_tag = uuid.uuid4().hex[:10]
    client.put_object(bucket, "g", marker_body(3000, grpc_tag) + marker_body(9000, grpc_tag))
    assert admin.head_object(Bucket=bucket, Key="g")["ServerSideEncryption"] == "AES256"
    with client.get_object(bucket, "d") as stream:
        assert stream.read() == body
    with client.get_object(bucket, "d", range="bytes=1000-1500000") as stream:
        assert stream.read() == body[1000:1500001]
    disk = data_files(tenancy)
    assert f"PLAINTEXT-{tag}-".encode() not in disk
    assert f"PLAINTEXT-{grpc_tag}-".encode() not in disk
    other = f"sse-{uuid.uuid4().hex[:12]}"
    admin.create_bucket(Bucket=other)
    assert "ServerSideEncryption" not in admin.put_object(Bucket=other, Key="p", Body=b"x")


# -- CopyObject --------------------------------------------------------------------------


def test_copy_reencrypts_with_a_new_key(tenancy: Tenancy, admin: Any, bucket: str) -> None:
    body = marker_body(2 * MiB + 5, "copy")
    admin.put_object(Bucket=bucket, Key="src-" + bucket, Body=body, **AES)
    dest = f"sse-{uuid.uuid4().hex[:12]}"
    admin.create_bucket(Bucket=dest)
    # Same object name in another bucket: only a new data key tells them apart.
    copied = admin.copy_object(Bucket=dest, Key="src-" + bucket, CopySource=f"{bucket}/src-{bucket}", **AES)
    assert copied["ServerSideEncryption"] == "AES256"
    assert copied["CopyObjectResult"]["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert admin.get_object(Bucket=dest, Key="src-" + bucket)["Body"].read() == body
    db = sqlite3.connect(f"file:{Path(tenancy.server.data_dir) / 'metadata.db'}?mode=ro", uri=True)
    try:
        rows = [bytes(v) for k, v in db.execute("SELECT key, value FROM kv") if bytes(k).endswith(f"/src-{bucket}".encode())]
    finally:
        db.close()
    fields = [json.loads(v[: v.find(b"\x00")] if b"\x00" in v else v) for v in rows]
    assert len(fields) == 2
    assert fields[0]["sse"]["k"] != fields[1]["sse"]["k"]
    assert {c[0] for c in fields[0]["chunks"]}.isdisjoint(c[0] for c in fields[1]["chunks"])


def test_copy_follows_the_destination(admin: Any, bucket: str) -> None:
    """An encrypted source copied without the header into a bucket without a
    default is plaintext; into one with a default it is encrypted; an
    unencrypted object copied onto itself with AES256 becomes encrypted."""
    admin.put_object(Bucket=bucket, Key="s", Body=b"hello world", **AES)
    plain = admin.copy_object(Bucket=bucket, Key="c", CopySource=f"{bucket}/s")
    assert "ServerSideEncryption" not in plain
    assert "ServerSideEncryption" not in admin.head_object(Bucket=bucket, Key="c")
    assert admin.get_object(Bucket=bucket, Key="c")["Body"].read() == b"hello world"
    self_copy = admin.copy_object(Bucket=bucket, Key="c", CopySource=f"{bucket}/c", **AES)
    assert self_copy["ServerSideEncryption"] == "AES256"
    assert admin.get_object(Bucket=bucket, Key="c")["Body"].read() == b"hello world"
    dest = f"sse-{uuid.uuid4().hex[:12]}"
    admin.create_bucket(Bucket=dest)
    admin.put_bucket_encryption(Bucket=dest, ServerSideEncryptionConfiguration=CONFIG)
    assert admin.copy_object(Bucket=dest, Key="c", CopySource=f"{bucket}/c")["ServerSideEncryption"] == "AES256"


# -- multipart ------------------------------------------------------------------------------


def test_multipart_encrypted(tenancy: Tenancy, admin: Any, bucket: str) -> None:
    """The upload's key encrypts every part (uploaded and copied) and the
    completed object; each answer carries the header."""
    tag = uuid.uuid4().hex[:10]
    part1 = marker_body(5 * MiB, tag)
    admin.put_object(Bucket=bucket, Key="copy-src", Body=b"0123456789" * 100_000, **AES)
    up = admin.create_multipart_upload(Bucket=bucket, Key="mp", **AES)
    assert up["ServerSideEncryption"] == "AES256"
    p1 = admin.upload_part(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=part1)
    assert p1["ServerSideEncryption"] == "AES256"
    p2 = admin.upload_part_copy(Bucket=bucket, Key="mp", UploadId=up["UploadId"], PartNumber=2,
                                CopySource=f"{bucket}/copy-src", CopySourceRange="bytes=5-500004")
    assert p2["ServerSideEncryption"] == "AES256"
    done = admin.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]},
                                   {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]},
    )
    assert done["ServerSideEncryption"] == "AES256"
    whole = part1 + (b"0123456789" * 100_000)[5:500005]
    got = admin.get_object(Bucket=bucket, Key="mp")
    assert got["ServerSideEncryption"] == "AES256"
    assert got["Body"].read() == whole
    span = admin.get_object(Bucket=bucket, Key="mp", Range=f"bytes={5 * MiB - 10}-{5 * MiB + 10}")["Body"].read()
    assert span == whole[5 * MiB - 10 : 5 * MiB + 11]
    assert admin.get_object(Bucket=bucket, Key="mp", PartNumber=2)["Body"].read() == whole[5 * MiB :]
    assert f"PLAINTEXT-{tag}-".encode() not in data_files(tenancy)


# -- PostObject ------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "status"), [("AES256", 204), ("aws:kms", 501), ("nope", 400)])
def test_post_object_encryption_field(tenancy: Tenancy, admin: Any, bucket: str, value: str, status: int) -> None:
    form = admin.generate_presigned_post(
        bucket, "posted", Fields={SSE: value}, Conditions=[{SSE: value}]
    )
    body = marker_body(200, "post-" + value)
    answer = requests.post(form["url"], data=form["fields"], files={"file": ("f", body)}, timeout=30)
    assert answer.status_code == status, answer.text
    if status == 204:
        assert answer.headers[SSE] == "AES256"
        head = admin.head_object(Bucket=bucket, Key="posted")
        assert head["ServerSideEncryption"] == "AES256"
        assert admin.get_object(Bucket=bucket, Key="posted")["Body"].read() == body
        assert b"PLAINTEXT-post-AES256" not in data_files(tenancy)
    else:
        with pytest.raises(ClientError):
            admin.head_object(Bucket=bucket, Key="posted")


# -- bucket policy ----------------------------------------------------------------------------


def test_deny_unencrypted_uploads_policy(admin: Any, writer: Any, bucket: str) -> None:
    """AWS's classic policy: PutObject without the header, or with another
    value, is denied; with AES256 it is allowed."""
    arn = f"arn:aws:s3:::{bucket}/*"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "WrongValue", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": arn,
             "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}}},
            {"Sid": "Missing", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": arn,
             "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}}},
        ],
    }
    admin.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    with pytest.raises(ClientError) as e:
        writer.put_object(Bucket=bucket, Key="plain", Body=b"x")
    assert client_error(e)[:2] == (403, "AccessDenied")
    put = writer.put_object(Bucket=bucket, Key="enc", Body=b"x", **AES)
    assert put["ServerSideEncryption"] == "AES256"
    with pytest.raises(ClientError) as e:
        writer.create_multipart_upload(Bucket=bucket, Key="mp")
    assert client_error(e)[:2] == (403, "AccessDenied")
    assert writer.create_multipart_upload(Bucket=bucket, Key="mp", **AES)["ServerSideEncryption"] == "AES256"


def test_sse_header_refused_where_it_cannot_apply(admin: Any, bucket: str) -> None:
    """GetObject, HeadObject, UploadPart and UploadPartCopy cannot choose
    encryption: the header there is AWS's 400 InvalidArgument (a part copied
    into a plain upload is not encrypted because it asks)."""
    admin.put_object(Bucket=bucket, Key="o", Body=b"x", **AES)
    up = admin.create_multipart_upload(Bucket=bucket, Key="o2", **AES)

    def add(params: Any, **_: Any) -> None:
        params["headers"][SSE] = "AES256"

    for event in ("before-call.s3.GetObject", "before-call.s3.HeadObject", "before-call.s3.UploadPart",
                  "before-call.s3.UploadPartCopy"):  # fmt: skip
        admin.meta.events.register(event, add)
    try:
        with pytest.raises(ClientError) as e:
            admin.get_object(Bucket=bucket, Key="o")
        assert client_error(e) == (400, "InvalidArgument", "x-amz-server-side-encryption header is not supported for this operation.")
        with pytest.raises(ClientError) as e:
            admin.head_object(Bucket=bucket, Key="o")
        assert client_error(e)[0] == 400
        with pytest.raises(ClientError) as e:
            admin.upload_part(Bucket=bucket, Key="o2", UploadId=up["UploadId"], PartNumber=1, Body=b"x")
        assert client_error(e)[:2] == (400, "InvalidArgument")
        with pytest.raises(ClientError) as e:
            admin.upload_part_copy(Bucket=bucket, Key="o2", UploadId=up["UploadId"], PartNumber=1,
                                   CopySource={"Bucket": bucket, "Key": "o"})  # fmt: skip
        assert client_error(e)[:2] == (400, "InvalidArgument")
        assert admin.list_parts(Bucket=bucket, Key="o2", UploadId=up["UploadId"]).get("Parts", []) == []
    finally:
        for event in ("before-call.s3.GetObject", "before-call.s3.HeadObject", "before-call.s3.UploadPart",
                      "before-call.s3.UploadPartCopy"):  # fmt: skip
            admin.meta.events.unregister(event, add)
    assert admin.get_object(Bucket=bucket, Key="o")["Body"].read() == b"x"


# -- the master key ---------------------------------------------------------------------------


def test_master_key_rotation_and_loss(tmp_path: Path) -> None:
    """Encrypted objects survive a restart and a master key rotation (a new
    first line, the old one kept); with a different key file they cannot be
    read (500), while plaintext objects still can."""
    from cryptography.fernet import Fernet

    from tests.integration.conftest import make_client
    from tests.integration.server import ServerProcess

    data = tmp_path / "data"
    data.mkdir()
    server = ServerProcess(data).start()
    try:
        s3: Any = make_client(server.endpoint)
        s3.create_bucket(Bucket="keys")
        s3.put_object(Bucket="keys", Key="old", Body=b"old secret" * 1000, **AES)
        s3.put_object(Bucket="keys", Key="plain", Body=b"plain")
        key_file = data / "master.key"
        original = key_file.read_bytes()
        key_file.write_bytes(Fernet.generate_key() + b"\n" + original)
        server.restart()
        s3 = make_client(server.endpoint)
        assert s3.get_object(Bucket="keys", Key="old")["Body"].read() == b"old secret" * 1000
        s3.put_object(Bucket="keys", Key="new", Body=b"new secret" * 1000, **AES)
        assert s3.get_object(Bucket="keys", Key="new")["Body"].read() == b"new secret" * 1000
        # Another deployment's key (the credential lines kept, so the server
        # starts): the data keys no longer open.
        key_file.write_bytes(original + b"\n")
        server.restart()
        s3 = make_client(server.endpoint)
        assert s3.get_object(Bucket="keys", Key="old")["Body"].read() == b"old secret" * 1000
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket="keys", Key="new")
        assert client_error(e)[0] == 500
        assert s3.get_object(Bucket="keys", Key="plain")["Body"].read() == b"plain"
    finally:
        server.stop()


def test_aws_cli(tenancy: Tenancy, tmp_path: Path) -> None:
    """``aws s3 cp --sse AES256`` (a multipart upload above 8 MiB, a single
    PUT below) and ``s3api`` bucket encryption, as the aws cli sends them
    (as the root principal, in its own bucket)."""
    from tests.integration.conftest import make_client
    from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY
    from tests.integration.tools import run_tool, tool

    aws = tool("aws")
    admin: Any = make_client(tenancy.server.endpoint)
    bucket = f"sse-{uuid.uuid4().hex[:12]}"
    admin.create_bucket(Bucket=bucket)
    env = {"AWS_ACCESS_KEY_ID": ROOT_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": ROOT_SECRET_KEY,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}  # fmt: skip
    endpoint = ["--endpoint-url", tenancy.server.endpoint]
    big, small = tmp_path / "big", tmp_path / "small"
    big.write_bytes(marker_body(9 * MiB, "cli-big"))
    small.write_bytes(b"small body")
    run_tool([aws, *endpoint, "s3", "cp", "--sse", "AES256", str(big), f"s3://{bucket}/big"], env)
    run_tool([aws, *endpoint, "s3", "cp", "--sse", "AES256", str(small), f"s3://{bucket}/small"], env)
    for key, path in (("big", big), ("small", small)):
        got = admin.get_object(Bucket=bucket, Key=key)
        assert got["ServerSideEncryption"] == "AES256"
        assert got["Body"].read() == path.read_bytes()
    config = json.dumps({"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    run_tool([aws, *endpoint, "s3api", "put-bucket-encryption", "--bucket", bucket,
              "--server-side-encryption-configuration", config], env)  # fmt: skip
    out = json.loads(run_tool([aws, *endpoint, "s3api", "get-bucket-encryption", "--bucket", bucket], env))
    rule = out["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    head = json.loads(run_tool([aws, *endpoint, "s3api", "head-object", "--bucket", bucket, "--key", "big"], env))
    assert head["ServerSideEncryption"] == "AES256"

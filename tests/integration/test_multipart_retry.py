"""A repeated CompleteMultipartUpload against the real server answers the
first one's result, as AWS S3 does.

A client whose complete succeeded but whose answer was lost (a timeout, a
dropped connection) retries it; AWS answers 200 with the same
CompleteMultipartUploadResult, where answering NoSuchUpload would fail an
upload whose object was stored.  The server recognises the retry from the
object record (the upload id and a digest of the completed part list), so
the answer survives a restart; a different part list, an object overwritten
since, or an aborted upload still get NoSuchUpload.  Through boto3, the aws
cli and the gRPC client; authorization is that of a complete.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lightningstor.client import LightningStorClient
from lightningstor.client import errors as grpc_errors
from lightningstor.grpc.gen import lightningstor_pb2 as pb
from tests.integration.conftest import make_client
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess
from tests.integration.tenants import Spec, Tenancy
from tests.integration.tools import run_tool, tool

MiB = 1 << 20
FIRST = os.urandom(5 * MiB)  # every part but the last is at least 5 MiB
LAST = os.urandom(1000)
# The fields of CompleteMultipartUploadResult (and x-amz-version-id) that a
# repeated complete must answer exactly as the first one did.
RESULT_FIELDS = ("Location", "Bucket", "Key", "ETag", "ChecksumCRC32", "ChecksumType", "VersionId")


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of this module's own, so that one test may restart it."""
    data = tmp_path_factory.mktemp("mpretry") / "data"
    data.mkdir()
    proc = ServerProcess(data).start()
    yield proc
    proc.stop()


@pytest.fixture
def s3(own_server: ServerProcess) -> Any:
    return make_client(own_server.endpoint)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"retry-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def _crc32(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def _upload(s3: Any, bucket: str, key: str, bodies: list[bytes] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Create an upload with CRC32 checksums and upload ``bodies`` as parts
    1..N; the upload id and the part list a complete names (with the
    parts' checksums, as SDKs send them)."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32")["UploadId"]
    parts = []
    for number, body in enumerate(bodies or [FIRST, LAST], start=1):
        done = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body,
                              ChecksumCRC32=_crc32(body))  # fmt: skip
        parts.append({"PartNumber": number, "ETag": done["ETag"], "ChecksumCRC32": done["ChecksumCRC32"]})
    return upload_id, parts


def _complete(s3: Any, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """CompleteMultipartUpload; the result fields that must repeat, by name."""
    out = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    headers = out["ResponseMetadata"]["HTTPHeaders"]
    assert out.get("VersionId") == headers.get("x-amz-version-id")
    return {name: out.get(name) for name in RESULT_FIELDS}


def _code(e: pytest.ExceptionInfo[ClientError]) -> str:
    return str(e.value.response["Error"]["Code"])


def _no_such_upload(s3: Any, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]]) -> None:
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    assert _code(e) == "NoSuchUpload"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_complete_twice_answers_the_same_result_and_stores_one_object(s3: Any, bucket: str) -> None:
    """The retry answers 200 with the first result (Location, Bucket, Key,
    ETag, checksum and type); the object reads back once, byte-identical,
    and no upload is left.  An abort of the completed upload is still
    NoSuchUpload, as from AWS."""
    upload_id, parts = _upload(s3, bucket, "obj")
    first = _complete(s3, bucket, "obj", upload_id, parts)
    assert first["ETag"].endswith('-2"') and first["ChecksumCRC32"].endswith("-2")
    assert first["ChecksumType"] == "COMPOSITE" and first["VersionId"] is None
    assert _complete(s3, bucket, "obj", upload_id, parts) == first
    assert _complete(s3, bucket, "obj", upload_id, parts) == first  # and again
    got = s3.get_object(Bucket=bucket, Key="obj")
    assert got["Body"].read() == FIRST + LAST and got["ETag"] == first["ETag"]
    listing = s3.list_object_versions(Bucket=bucket)
    assert [(v["Key"], v["ETag"]) for v in listing.get("Versions", [])] == [("obj", first["ETag"])]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as e:
        s3.abort_multipart_upload(Bucket=bucket, Key="obj", UploadId=upload_id)
    assert _code(e) == "NoSuchUpload"
    assert _complete(s3, bucket, "obj", upload_id, parts) == first  # the abort changed nothing


def test_a_retry_with_another_part_list_is_no_such_upload(s3: Any, bucket: str) -> None:
    """Only the part list that was completed answers: fewer parts, other
    part numbers of the same bytes (hence the same multipart ETag), or a
    different part checksum get NoSuchUpload, as before."""
    upload_id, parts = _upload(s3, bucket, "obj", [FIRST, LAST, LAST])
    first = _complete(s3, bucket, "obj", upload_id, parts[:2])
    renumbered = [parts[0], {**parts[2], "PartNumber": 3}]
    assert renumbered[1]["ETag"] == parts[1]["ETag"]
    for other in (parts[:1], renumbered, [parts[0], {**parts[1], "ChecksumCRC32": _crc32(b"other")}]):
        _no_such_upload(s3, bucket, "obj", upload_id, other)
    assert _complete(s3, bucket, "obj", upload_id, parts[:2]) == first


def test_a_retry_after_an_overwrite_is_no_such_upload(s3: Any, bucket: str) -> None:
    """Once another PutObject replaced the object (unversioned bucket), the
    upload's object is gone, and so is the answer."""
    upload_id, parts = _upload(s3, bucket, "obj")
    _complete(s3, bucket, "obj", upload_id, parts)
    s3.put_object(Bucket=bucket, Key="obj", Body=b"newer")
    _no_such_upload(s3, bucket, "obj", upload_id, parts)
    assert s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == b"newer"


def test_a_retry_of_an_aborted_upload_is_no_such_upload(s3: Any, bucket: str) -> None:
    """An aborted upload made no object: a complete of it is NoSuchUpload,
    even with a multipart object of another upload at the key."""
    upload_id, parts = _upload(s3, bucket, "obj")
    _complete(s3, bucket, "obj", upload_id, parts)
    aborted, _ = _upload(s3, bucket, "obj", [LAST])
    s3.abort_multipart_upload(Bucket=bucket, Key="obj", UploadId=aborted)
    _no_such_upload(s3, bucket, "obj", aborted, parts)


def test_a_retry_in_a_versioned_bucket_answers_the_uploads_version(s3: Any, bucket: str) -> None:
    """With versioning the retry answers the same VersionId (header and
    result), also after a newer PutObject made the upload's version
    noncurrent (it still exists); once that version is deleted, NoSuchUpload."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="obj", Body=b"older")
    upload_id, parts = _upload(s3, bucket, "obj")
    first = _complete(s3, bucket, "obj", upload_id, parts)
    assert first["VersionId"] not in (None, "null")
    assert _complete(s3, bucket, "obj", upload_id, parts) == first
    s3.put_object(Bucket=bucket, Key="obj", Body=b"newer")
    assert _complete(s3, bucket, "obj", upload_id, parts) == first
    versions = s3.list_object_versions(Bucket=bucket, Prefix="obj")["Versions"]
    assert len(versions) == 3 and sum(v["VersionId"] == first["VersionId"] for v in versions) == 1
    s3.delete_object(Bucket=bucket, Key="obj", VersionId=first["VersionId"])
    _no_such_upload(s3, bucket, "obj", upload_id, parts)


def test_a_retry_after_a_restart_answers_the_same(own_server: ServerProcess, bucket: str) -> None:
    """The answer is durable: nothing of it is held in memory."""
    s3 = make_client(own_server.endpoint)
    upload_id, parts = _upload(s3, bucket, "obj")
    first = _complete(s3, bucket, "obj", upload_id, parts)
    own_server.restart()
    s3 = make_client(own_server.endpoint)
    again = _complete(s3, bucket, "obj", upload_id, parts)
    # Location names the Host the request was sent to: the port changed.
    assert again.pop("Location") == f"{own_server.endpoint}/{bucket}/obj"
    first.pop("Location")
    assert again == first
    _no_such_upload(s3, bucket, "obj", upload_id, parts[:1])
    assert s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == FIRST + LAST


def _grpc_complete(client: LightningStorClient, request: pb.CompleteMultipartUploadRequest) -> Any:
    """CompleteMultipartUpload with fields the client's helper does not
    send (per-part and whole-object checksum values)."""
    return client._unary(client.objects.CompleteMultipartUpload, request)


def test_a_retry_through_grpc_answers_the_same(own_server: ServerProcess) -> None:
    """Through the gRPC API too (the core decides, both protocols translate):
    a repeated complete answers the same ETag, checksum, size and version,
    also with checksum values (the API looks up the upload's algorithm,
    which the completed object still tells) and across protocols (completed
    over S3, retried over gRPC)."""
    name = f"gretry-{uuid.uuid4().hex[:12]}"
    with LightningStorClient.connect(f"grpc://{own_server.grpc_endpoint}", access_key=ROOT_ACCESS_KEY,
                                     secret_key=ROOT_SECRET_KEY, timeout=30) as client:  # fmt: skip
        client.create_bucket(name)
        up = client.create_multipart_upload(name, "obj", checksum_algorithm="crc32")
        p1 = client.upload_part(name, "obj", up.upload_id, 1, FIRST)
        p2 = client.upload_part(name, "obj", up.upload_id, 2, LAST)
        first = client.complete_multipart_upload(name, "obj", up.upload_id, [p1, p2])
        again = client.complete_multipart_upload(name, "obj", up.upload_id, [p1, p2])
        assert again == first and first.etag.endswith("-2")
        request = pb.CompleteMultipartUploadRequest(bucket=name, key="obj", upload_id=up.upload_id,
                                                    checksum_value=first.checksums[0].value)  # fmt: skip
        request.parts.add(part_number=1, etag=p1.etag, checksum_value=_crc32(FIRST))
        request.parts.add(part_number=2, etag=p2.etag, checksum_value=_crc32(LAST))
        assert _grpc_complete(client, request) == first
        with pytest.raises(grpc_errors.NoSuchUpload):
            client.complete_multipart_upload(name, "obj", up.upload_id, [p1])
        with pytest.raises(grpc_errors.NoSuchUpload):
            client.abort_multipart_upload(name, "obj", up.upload_id)
        s3 = make_client(own_server.endpoint)
        upload_id, parts = _upload(s3, name, "s3obj")
        over_s3 = _complete(s3, name, "s3obj", upload_id, parts)
        over_grpc = client.complete_multipart_upload(name, "s3obj", upload_id, [(1, parts[0]["ETag"]),
                                                                                (2, parts[1]["ETag"])])  # fmt: skip
        assert f'"{over_grpc.etag}"' == over_s3["ETag"] and over_grpc.size == len(FIRST + LAST)


def test_aws_cli_complete_multipart_upload_twice(own_server: ServerProcess, bucket: str, tmp_path: Path) -> None:
    """``aws s3api complete-multipart-upload`` run twice prints the same result."""
    aws = tool("aws")
    env = {"AWS_ACCESS_KEY_ID": ROOT_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": ROOT_SECRET_KEY,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}  # fmt: skip
    s3api = [aws, "--endpoint-url", own_server.endpoint, "--output", "json", "s3api"]
    upload_id, parts = _upload(make_client(own_server.endpoint), bucket, "cli")
    doc = tmp_path / "parts.json"
    doc.write_text(json.dumps({"Parts": parts}))
    args = [*s3api, "complete-multipart-upload", "--bucket", bucket, "--key", "cli", "--upload-id", upload_id,
            "--multipart-upload", f"file://{doc}"]  # fmt: skip
    first = json.loads(run_tool(args, env))
    second = json.loads(run_tool(args, env))
    assert second == first and first["ETag"].endswith('-2"') and first["Key"] == "cli"


@pytest.fixture(scope="module")
def tenancy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenancy]:
    t = Tenancy.start(tmp_path_factory.mktemp("mpretry-tenancy"))
    yield t
    t.stop()


def test_a_retry_needs_the_authorization_of_a_complete(tenancy: Tenancy) -> None:
    """The retry is authorized as a complete (``uploads:complete`` on the
    key, AWS's s3:PutObject): a principal denied it gets AccessDenied, not
    the result, while one allowed gets the result."""
    ids = tenancy.provision([
        Spec("mpr-admin", "mpr", roles=("admin",)),
        Spec("mpr-no-complete", "mpr", roles=("admin",),
             grants=((("lightningstor:uploads:complete",), ("org/mpr", "org/mpr/*"), "deny"),)),
    ])  # fmt: skip
    admin = ids["mpr-admin"].s3(tenancy.server.endpoint)
    denied = ids["mpr-no-complete"].s3(tenancy.server.endpoint)
    admin.create_bucket(Bucket="mpr-bucket")
    upload_id, parts = _upload(admin, "mpr-bucket", "obj")
    first = _complete(admin, "mpr-bucket", "obj", upload_id, parts)
    with pytest.raises(ClientError) as e:
        denied.complete_multipart_upload(Bucket="mpr-bucket", Key="obj", UploadId=upload_id,
                                         MultipartUpload={"Parts": parts})  # fmt: skip
    assert _code(e) == "AccessDenied"
    assert _complete(admin, "mpr-bucket", "obj", upload_id, parts) == first

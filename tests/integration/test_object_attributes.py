"""GetObjectAttributes (``GET /b/k?attributes``) against the real server:
boto3 and the aws cli, single-part, versioned and multipart objects, stored
checksums (whole object and per part), paging of ObjectParts, bad headers,
missing keys, delete markers and a caller without read permission."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from lightningstor.checksums import compute
from lightningstor.core import access
from tests.integration.conftest import make_client
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess
from tests.integration.tenants import Spec, Tenancy
from tests.integration.tools import run_tool, tool

MiB = 1 << 20
ALL = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


@pytest.fixture(scope="module")
def s3(server: ServerProcess) -> Any:
    """A client that adds no checksum of its own, so the objects hold only
    the checksums a test asks for."""
    return make_client(
        server.endpoint, request_checksum_calculation="when_required", response_checksum_validation="when_required"
    )


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    name = f"attrs-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    versions = s3.list_object_versions(Bucket=name)
    for v in versions.get("Versions", []) + versions.get("DeleteMarkers", []):
        s3.delete_object(Bucket=name, Key=v["Key"], VersionId=v["VersionId"])
    for u in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=u["Key"], UploadId=u["UploadId"])
    s3.delete_bucket(Bucket=name)


def _error(e: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    return e.value.response["ResponseMetadata"]["HTTPStatusCode"], e.value.response["Error"]["Code"]


def _signed_get(server: ServerProcess, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """A SigV4-signed GET with exactly ``headers`` (boto3 always sends
    x-amz-object-attributes, so its absence needs a raw request)."""
    req = AWSRequest("GET", f"{server.endpoint}{path}", headers=dict(headers))
    S3SigV4Auth(Credentials(ROOT_ACCESS_KEY, ROOT_SECRET_KEY), "s3", "us-east-1").add_auth(req)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", path, headers=dict(req.headers.items()))
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# -- objects written in one request ---------------------------------------------------------


def test_single_part_object(s3: Any, bucket: str) -> None:
    before = time.time()
    put = s3.put_object(Bucket=bucket, Key="dir/obj.txt", Body=b"hello attributes")
    got = s3.get_object_attributes(Bucket=bucket, Key="dir/obj.txt", ObjectAttributes=ALL)
    assert got["ETag"] == hashlib.md5(b"hello attributes").hexdigest() == put["ETag"].strip('"')
    assert got["ObjectSize"] == 16
    assert got["StorageClass"] == "STANDARD"
    assert "ObjectParts" not in got
    # Uploaded without a checksum: AWS's default CRC64NVME (as AWS's
    # GetObjectAttributes answers since 2025, awslabs/mountpoint-s3#1185).
    assert got["Checksum"] == {"ChecksumCRC64NVME": compute("crc64nvme", b"hello attributes"), "ChecksumType": "FULL_OBJECT"}
    assert "VersionId" not in got and "DeleteMarker" not in got  # a bucket never versioned
    assert abs(got["LastModified"].timestamp() - before) < 60


def test_only_the_requested_attributes_are_returned(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"abc", ChecksumAlgorithm="CRC32")
    got = s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["ObjectSize"])
    assert got["ObjectSize"] == 3
    assert not {"ETag", "Checksum", "StorageClass", "ObjectParts"} & set(got)
    status, headers, body = _signed_get(server, f"/{bucket}/k?attributes", {"x-amz-object-attributes": "ETag"})
    assert status == 200 and headers["content-type"] == "application/xml"
    root = ElementTree.fromstring(body)
    assert root.tag == f"{NS}GetObjectAttributesResponse"
    # Unquoted, unlike the ETag of every other answer.
    assert [(child.tag, child.text) for child in root] == [(f"{NS}ETag", hashlib.md5(b"abc").hexdigest())]


def test_versioned_object(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=bucket, Key="v", Body=b"one")
    second = s3.put_object(Bucket=bucket, Key="v", Body=b"second")
    got = s3.get_object_attributes(Bucket=bucket, Key="v", ObjectAttributes=ALL)
    assert got["VersionId"] == second["VersionId"]
    assert (got["ETag"], got["ObjectSize"]) == (hashlib.md5(b"second").hexdigest(), 6)
    old = s3.get_object_attributes(Bucket=bucket, Key="v", VersionId=first["VersionId"], ObjectAttributes=ALL)
    assert old["VersionId"] == first["VersionId"]
    assert (old["ETag"], old["ObjectSize"], old["StorageClass"]) == (hashlib.md5(b"one").hexdigest(), 3, "STANDARD")
    assert "ObjectParts" not in old and "DeleteMarker" not in old
    vid = second["VersionId"]
    unknown = vid[:-1] + ("A" if vid[-1] != "A" else "B")  # well formed, never written
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="v", VersionId=unknown, ObjectAttributes=ALL)
    assert _error(e) == (404, "NoSuchVersion")
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="v", VersionId="nonsense", ObjectAttributes=ALL)
    assert _error(e) == (400, "InvalidArgument")


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "SHA256"])
def test_single_part_checksum(s3: Any, bucket: str, algorithm: str) -> None:
    put = s3.put_object(Bucket=bucket, Key="ck", Body=b"A" * 1024, ChecksumAlgorithm=algorithm)
    value = put[f"Checksum{algorithm}"]
    got = s3.get_object_attributes(Bucket=bucket, Key="ck", ObjectAttributes=ALL)
    assert got["Checksum"] == {f"Checksum{algorithm}": value, "ChecksumType": "FULL_OBJECT"}
    if algorithm == "SHA256":
        assert value == base64.b64encode(hashlib.sha256(b"A" * 1024).digest()).decode()
    assert "ObjectParts" not in got


# -- multipart objects ----------------------------------------------------------------------------


def _multipart(s3: Any, bucket: str, key: str, sizes: list[int], **create: Any) -> tuple[dict[str, Any], list[Any]]:
    """Upload parts of ``sizes`` bytes; (CompleteMultipartUpload's answer, UploadPart answers)."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    algorithm = create.get("ChecksumAlgorithm")
    answers = []
    for number, size in enumerate(sizes, 1):
        extra = {"ChecksumAlgorithm": algorithm} if algorithm else {}
        body = bytes([64 + number]) * size
        answers.append(s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body,
                                      **extra))  # fmt: skip
    parts = []
    for number, answer in enumerate(answers, 1):
        part = {"PartNumber": number, "ETag": answer["ETag"]}
        if algorithm:
            part[f"Checksum{algorithm}"] = answer[f"Checksum{algorithm}"]
        parts.append(part)
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
    return done, answers


def test_multipart_object_parts_and_paging(s3: Any, bucket: str) -> None:
    sizes = [5 * MiB, 5 * MiB, 1234]
    done, _answers = _multipart(s3, bucket, "mp", sizes)
    got = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=ALL)
    assert got["ETag"] == done["ETag"].strip('"') and got["ETag"].endswith("-3")
    assert got["ObjectSize"] == sum(sizes) and got["StorageClass"] == "STANDARD"
    assert "Checksum" not in got
    parts = got["ObjectParts"]
    assert parts["TotalPartsCount"] == 3  # <PartsCount> in the XML
    assert (parts["PartNumberMarker"], parts["MaxParts"], parts["IsTruncated"]) == (0, 1000, False)
    assert [(p["PartNumber"], p["Size"]) for p in parts["Parts"]] == [(1, 5 * MiB), (2, 5 * MiB), (3, 1234)]
    assert all(set(p) == {"PartNumber", "Size"} for p in parts["Parts"])  # no checksum kept

    page = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"],
                                    MaxParts=1, PartNumberMarker=1)["ObjectParts"]  # fmt: skip
    assert (page["MaxParts"], page["PartNumberMarker"], page["IsTruncated"], page["NextPartNumberMarker"]) == (
        1, 1, True, 2)
    assert [(p["PartNumber"], p["Size"]) for p in page["Parts"]] == [(2, 5 * MiB)]
    rest = s3.get_object_attributes(Bucket=bucket, Key="mp", ObjectAttributes=["ObjectParts"],
                                    MaxParts=10, PartNumberMarker=page["NextPartNumberMarker"])["ObjectParts"]
    assert (rest["IsTruncated"], [p["PartNumber"] for p in rest["Parts"]]) == (False, [3])
    assert rest["TotalPartsCount"] == 3


@pytest.mark.parametrize(
    ("algorithm", "kind"), [("CRC32", "COMPOSITE"), ("CRC32C", "FULL_OBJECT"), ("SHA256", "COMPOSITE")]
)
def test_multipart_checksums(s3: Any, bucket: str, algorithm: str, kind: str) -> None:
    done, answers = _multipart(s3, bucket, "mpck", [5 * MiB, 777], ChecksumAlgorithm=algorithm, ChecksumType=kind)
    name = f"Checksum{algorithm}"
    got = s3.get_object_attributes(Bucket=bucket, Key="mpck", ObjectAttributes=ALL)
    assert got["Checksum"] == {name: done[name], "ChecksumType": kind}
    head = s3.head_object(Bucket=bucket, Key="mpck", ChecksumMode="ENABLED")
    assert (head[name], head["ChecksumType"]) == (done[name], kind)  # the same value HeadObject gives
    parts = got["ObjectParts"]["Parts"]
    assert [(p["PartNumber"], p["Size"], p[name]) for p in parts] == [
        (1, 5 * MiB, answers[0][name]), (2, 777, answers[1][name])]
    if algorithm == "SHA256":
        assert parts[1][name] == base64.b64encode(hashlib.sha256(bytes([66]) * 777).digest()).decode()


def test_get_part_with_checksum_mode_gives_that_parts_checksum(s3: Any, bucket: str) -> None:
    """GetObject partNumber=N with x-amz-checksum-mode: ENABLED answers part N's own
    checksum (what UploadPart answered), never the whole object's; a range has none."""
    done, answers = _multipart(s3, bucket, "gp", [5 * MiB, 777], ChecksumAlgorithm="CRC32", ChecksumType="COMPOSITE")
    for number, answer in ((1, answers[0]), (2, answers[1])):
        got = s3.get_object(Bucket=bucket, Key="gp", PartNumber=number, ChecksumMode="ENABLED")
        got["Body"].read()
        assert (got["ChecksumCRC32"], got["ChecksumType"]) == (answer["ChecksumCRC32"], "COMPOSITE")
        assert got["ChecksumCRC32"] != done["ChecksumCRC32"] and got["PartsCount"] == 2
    ranged = s3.get_object(Bucket=bucket, Key="gp", Range="bytes=0-9", ChecksumMode="ENABLED")
    assert ranged["Body"].read() == b"A" * 10
    assert "ChecksumCRC32" not in ranged
    whole = s3.get_object(Bucket=bucket, Key="gp", ChecksumMode="ENABLED")
    whole["Body"].read()
    assert whole["ChecksumCRC32"] == done["ChecksumCRC32"]


# -- errors ---------------------------------------------------------------------------------------


def test_bad_headers_are_invalid_argument(server: ServerProcess, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    cases = [
        ({}, "missing or empty"),
        ({"x-amz-object-attributes": ""}, "missing or empty"),
        ({"x-amz-object-attributes": "ETag,Bogus"}, "Invalid attribute name specified."),
        ({"x-amz-object-attributes": "etag"}, "Invalid attribute name specified."),
        ({"x-amz-object-attributes": "ObjectParts", "x-amz-max-parts": "-1"}, "must be an integer between"),
        ({"x-amz-object-attributes": "ObjectParts", "x-amz-part-number-marker": "x"}, "not an integer"),
    ]
    for headers, message in cases:
        status, _headers, body = _signed_get(server, f"/{bucket}/k?attributes", headers)
        root = ElementTree.fromstring(body)
        assert (status, root.findtext("Code")) == (400, "InvalidArgument"), (headers, body)
        assert message in (root.findtext("Message") or ""), (headers, body)
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="k", ObjectAttributes=["Size"])
    assert _error(e) == (400, "InvalidArgument")


def test_missing_key_and_bucket(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="nope", ObjectAttributes=ALL)
    assert _error(e) == (404, "NoSuchKey")
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=f"none-{uuid.uuid4().hex[:8]}", Key="k", ObjectAttributes=ALL)
    assert _error(e) == (404, "NoSuchBucket")


def test_delete_marker(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="gone", Body=b"data")
    marker = s3.delete_object(Bucket=bucket, Key="gone")["VersionId"]
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="gone", ObjectAttributes=ALL)
    assert _error(e) == (404, "NoSuchKey")
    headers = e.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amz-delete-marker"] == "true" and headers["x-amz-version-id"] == marker
    with pytest.raises(ClientError) as e:
        s3.get_object_attributes(Bucket=bucket, Key="gone", VersionId=marker, ObjectAttributes=ALL)
    assert _error(e) == (405, "MethodNotAllowed")
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"


@pytest.fixture(scope="module")
def tenancy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenancy]:
    t = Tenancy.start(tmp_path_factory.mktemp("attrs-tenancy"))
    yield t
    t.stop()


def test_read_permission_is_needed(tenancy: Tenancy) -> None:
    """The action is GetObject's (objects:get): an admin denied it gets 403,
    a principal granted only it gets the attributes."""
    everything = ("org/acme", "org/acme/*")
    ids = tenancy.provision([
        Spec("attrs-admin", "acme", roles=("admin",)),
        Spec("attrs-no-get", "acme", roles=("admin",), grants=(((access.OBJECTS_GET,), everything, "deny"),)),
        Spec("attrs-only-get", "acme", grants=(((access.OBJECTS_GET,), everything, "allow"),)),
    ])  # fmt: skip
    endpoint = tenancy.server.endpoint
    admin = ids["attrs-admin"].s3(endpoint)
    admin.create_bucket(Bucket="attrs-perm")
    admin.put_object(Bucket="attrs-perm", Key="k", Body=b"secret")
    with pytest.raises(ClientError) as e:
        ids["attrs-no-get"].s3(endpoint).get_object_attributes(Bucket="attrs-perm", Key="k", ObjectAttributes=ALL)
    assert _error(e) == (403, "AccessDenied")
    got = ids["attrs-only-get"].s3(endpoint).get_object_attributes(
        Bucket="attrs-perm", Key="k", ObjectAttributes=["ObjectSize"])
    assert got["ObjectSize"] == 6


def test_aws_cli(server: ServerProcess, s3: Any, bucket: str, tmp_path: Path) -> None:
    aws = tool("aws")
    s3.put_object(Bucket=bucket, Key="cli.txt", Body=b"from the cli", ChecksumAlgorithm="SHA256")
    env = {"AWS_ACCESS_KEY_ID": ROOT_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": ROOT_SECRET_KEY,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}  # fmt: skip
    out = run_tool([aws, "--endpoint-url", server.endpoint, "s3api", "get-object-attributes", "--bucket", bucket,
                    "--key", "cli.txt", "--object-attributes", "ETag", "Checksum", "ObjectSize"], env)  # fmt: skip
    got = json.loads(out)
    assert got["ETag"] == hashlib.md5(b"from the cli").hexdigest()
    assert got["ObjectSize"] == 12
    assert got["Checksum"]["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(b"from the cli").digest()).decode()

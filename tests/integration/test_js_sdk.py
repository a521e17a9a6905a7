"""The AWS SDK for JavaScript v3 (client-s3, lib-storage, s3-request-presigner)
against the real server.

Each test runs one scenario of ``tests/sdk-js/scenarios.mjs`` in ``node``
and asserts on the JSON line it prints (what the SDK sent and got back),
then reads the stored state with boto3 where that proves more: the bytes
stored are the bytes the SDK sent, with the checksum it sent.  The SDK runs
with its defaults (CRC32 request checksums, aws-chunked bodies with a
trailing checksum for streams, response checksum validation on GetObject),
which differ from boto3's in ways S3-compatible servers often get wrong.

``npm ci`` in ``tests/sdk-js`` installs the pinned SDK.  Without node or the
installed SDK the tests are skipped, except under
LIGHTNINGSTOR_REQUIRE_TOOLS=1 (CI), where that is a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY
from tests.integration.tools import node_project

PROJECT = Path(__file__).resolve().parent.parent / "sdk-js"
# The pinned SDK's "engines" (package-lock.json): Node.js 20 or later.
NODE_MAJOR = 20


def _node_env(server: Any, bucket: str) -> dict[str, str]:
    """The scenario's settings, and no AWS_* variable or shared config file
    from the surrounding environment: those change the SDK's defaults
    (``AWS_REQUEST_CHECKSUM_CALCULATION`` among them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "LS_ENDPOINT": server.endpoint,
        "LS_ACCESS_KEY": ROOT_ACCESS_KEY,
        "LS_SECRET_KEY": ROOT_SECRET_KEY,
        "LS_BUCKET": bucket,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    })
    return env


def run_scenario(server: Any, bucket: str, scenario: str) -> dict[str, Any]:
    """Run one scenario; its JSON result, which must say ``ok``."""
    node = node_project(PROJECT, "@aws-sdk/client-s3", NODE_MAJOR)
    proc = subprocess.run([node, str(PROJECT / "scenarios.mjs"), scenario], env=_node_env(server, bucket),
                          cwd=PROJECT, capture_output=True, timeout=120)
    lines = proc.stdout.decode().splitlines()
    assert lines, (scenario, proc.returncode, proc.stderr.decode()[-3000:])
    result: dict[str, Any] = json.loads(lines[-1])
    assert result["scenario"] == scenario
    assert result["ok"] and proc.returncode == 0, (result, proc.stderr.decode()[-3000:])
    return result


def _stored(c: Any, bucket: str, key: str) -> tuple[str, dict[str, Any]]:
    """SHA-256 of the object's bytes as boto3 reads them, and its HeadObject
    with the checksum asked for."""
    body = c.get_object(Bucket=bucket, Key=key)["Body"].read()
    return hashlib.sha256(body).hexdigest(), c.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")


def _assert_round_trip(c: Any, bucket: str, result: dict[str, Any]) -> None:
    """The SDK read back what it sent, its GetObject asked for and validated
    the stored CRC32, and boto3 finds the same bytes and checksum."""
    back = result["back"]
    assert (back["sha256"], back["size"]) == (result["sentSha256"], result["sentSize"])
    assert back["contentLength"] == result["sentSize"]
    assert result["getHeaders"]["x-amz-checksum-mode"] == "ENABLED"
    assert (back["checksumCRC32"], back["checksumType"]) == (result["expectedCRC32"], "FULL_OBJECT")
    digest, head = _stored(c, bucket, result["key"])
    assert digest == result["sentSha256"]
    assert head["ChecksumCRC32"] == result["expectedCRC32"]


@pytest.fixture
def fresh_bucket(c: Any) -> Any:
    """A bucket name nobody has created; removed afterwards if a test made it."""
    name = f"js-{uuid.uuid4().hex[:16]}"
    yield name
    try:
        c.delete_bucket(Bucket=name)
    except c.exceptions.ClientError:
        pass


def test_buckets(server, c, fresh_bucket):
    """CreateBucket, HeadBucket and ListBuckets (path style)."""
    result = run_scenario(server, fresh_bucket, "buckets")
    assert (result["createStatus"], result["headStatus"], result["listed"]) == (200, 200, True)
    c.head_bucket(Bucket=fresh_bucket)


@pytest.mark.parametrize("scenario", ["put-string", "put-buffer"])
def test_put_with_default_checksum(server, c, bkt, scenario):
    """PutObject of a string and of a Buffer sends the CRC32 as a header; it
    is stored and validated by the SDK's GetObject."""
    result = run_scenario(server, bkt, scenario)
    sent = result["putHeaders"]
    assert (sent["x-amz-sdk-checksum-algorithm"], sent["x-amz-checksum-crc32"]) == ("CRC32", result["expectedCRC32"])
    assert (result["putChecksumCRC32"], result["putChecksumType"]) == (result["expectedCRC32"], "FULL_OBJECT")
    _assert_round_trip(c, bkt, result)


def test_put_stream_aws_chunked_trailer(server, c, bkt):
    """PutObject of a Node Readable: an aws-chunked body with an unsigned
    trailing x-amz-checksum-crc32."""
    result = run_scenario(server, bkt, "put-stream")
    sent = result["putHeaders"]
    assert sent["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert (sent["content-encoding"], sent["x-amz-trailer"]) == ("aws-chunked", "x-amz-checksum-crc32")
    assert sent["x-amz-decoded-content-length"] == str(result["sentSize"])
    assert (result["putChecksumCRC32"], result["putChecksumType"]) == (result["expectedCRC32"], "FULL_OBJECT")
    _assert_round_trip(c, bkt, result)


def test_put_stream_of_unknown_length(server, c, bkt):
    """A stream of unknown length through lib-storage's Upload: one PutObject
    when it fits in a part."""
    result = run_scenario(server, bkt, "put-stream-unknown-length")
    assert result["requests"] == ["PUT x-id", "GET x-id"]
    assert result["putHeaders"]["x-amz-checksum-crc32"] == result["expectedCRC32"]
    _assert_round_trip(c, bkt, result)


def test_put_when_required(server, c, bkt):
    """requestChecksumCalculation WHEN_REQUIRED: no checksum sent or asked
    for, none stored, the bytes still round-trip."""
    result = run_scenario(server, bkt, "put-when-required")
    assert not [h for h in result["putHeaders"] if h.startswith("x-amz-checksum") or h == "x-amz-sdk-checksum-algorithm"]
    assert "x-amz-checksum-mode" not in result["getHeaders"]
    back = result["back"]
    assert (back["sha256"], back["size"]) == (result["sentSha256"], result["sentSize"])
    digest, head = _stored(c, bkt, result["key"])
    assert digest == result["sentSha256"]
    assert "ChecksumCRC32" not in head


def test_head_object(server, c, bkt):
    """HeadObject: length, type, metadata, and the CRC32 with its type when asked for."""
    result = run_scenario(server, bkt, "head-object")
    assert (result["contentLength"], result["contentType"], result["metadata"]) == (7, "text/plain", {"colour": "blue"})
    assert result["etag"] == f'"{hashlib.md5(b"head me").hexdigest()}"'
    assert (result["checksumCRC32"], result["checksumType"]) == (result["expectedCRC32"], "FULL_OBJECT")
    assert result["lastModified"]


def test_list_objects_v2_pages(server, c, bkt):
    """ListObjectsV2 through the SDK's paginator, 3 keys a page, and a delimited listing."""
    result = run_scenario(server, bkt, "list-pages")
    keys = [f"js/list/{i:02d}" for i in range(10)]
    assert [p["keys"] for p in result["pages"]] == [keys[0:3], keys[3:6], keys[6:9], keys[9:]]
    assert [p["truncated"] for p in result["pages"]] == [True, True, True, False]
    assert [p["keyCount"] for p in result["pages"]] == [3, 3, 3, 1]
    assert result["commonPrefixes"] == ["js/list/"]


def test_copy_object(server, c, bkt):
    """CopyObject keeps the bytes and the metadata; CopyObjectResult has the
    copy's CRC32 and its type, and the copy's CRC32 validates."""
    result = run_scenario(server, bkt, "copy-object")
    back = result["back"]
    assert back["sha256"] == result["sentSha256"]
    assert result["copyETag"] == back["etag"] and result["copyLastModified"]
    assert result["metadata"] == {"origin": "source"}
    assert (back["checksumCRC32"], back["checksumType"]) == (result["expectedCRC32"], "FULL_OBJECT")
    assert (result["copyChecksumCRC32"], result["copyChecksumType"]) == (result["expectedCRC32"], "FULL_OBJECT")
    assert _stored(c, bkt, "js/copy-dst.bin")[0] == result["sentSha256"]


def test_delete_objects(server, c, bkt):
    """DeleteObjects (the SDK adds the required checksum of the body): every
    key reported deleted, a missing one too, as AWS does."""
    result = run_scenario(server, bkt, "delete-objects")
    assert result["deleted"] == ["js/del/a", "js/del/b", "js/del/c", "js/del/never-existed"]
    assert (result["errors"], result["left"]) == ([], 0)
    assert c.list_objects_v2(Bucket=bkt, Prefix="js/del/")["KeyCount"] == 0


def test_lib_storage_upload(server, c, bkt):
    """lib-storage Upload of 20 MiB from a stream, 5 MiB parts, 4 at once:
    a CRC32 multipart upload completed with a COMPOSITE checksum."""
    result = run_scenario(server, bkt, "upload-multipart")
    assert result["createHeaders"]["x-amz-checksum-algorithm"] == "CRC32"
    assert result["parts"] == 5
    assert result["etag"].endswith('-5"')
    assert result["completeChecksumType"] == "COMPOSITE"
    assert result["completeChecksumCRC32"].endswith("-5")
    assert (result["headChecksumCRC32"], result["headChecksumType"]) == (result["completeChecksumCRC32"], "COMPOSITE")
    back = result["back"]
    assert (back["sha256"], back["size"]) == (result["sentSha256"], result["sentSize"])
    digest, head = _stored(c, bkt, "js/multipart.bin")
    assert digest == result["sentSha256"]
    assert (head["ChecksumCRC32"], head["ChecksumType"]) == (result["completeChecksumCRC32"], "COMPOSITE")


def test_multipart_full_object_crc32(server, c, bkt):
    """A FULL_OBJECT CRC32 multipart upload: part CRCs checked, the whole
    object's CRC32 returned and validated by the SDK's GetObject."""
    result = run_scenario(server, bkt, "multipart-full-object")
    assert (result["createChecksumAlgorithm"], result["createChecksumType"]) == ("CRC32", "FULL_OBJECT")
    assert result["partCRC32s"] == result["expectedPartCRC32s"]
    assert (result["completeChecksumCRC32"], result["completeChecksumType"]) == (result["expectedCRC32"], "FULL_OBJECT")
    back = result["back"]
    assert back["sha256"] == result["sentSha256"]
    assert (back["checksumCRC32"], back["checksumType"]) == (result["expectedCRC32"], "FULL_OBJECT")
    head = _stored(c, bkt, "js/full-object.bin")[1]
    assert (head["ChecksumCRC32"], head["ChecksumType"]) == (result["expectedCRC32"], "FULL_OBJECT")


def test_upload_part_copy_checksum(server, c, bkt):
    """UploadPartCopy into a CRC32 upload returns the copied part's CRC32 in
    CopyPartResult, as AWS does, so the SDK can complete the upload with
    every part's checksum; ListParts and ListMultipartUploads give the
    upload's checksum algorithm and type."""
    result = run_scenario(server, bkt, "upload-part-copy")
    assert result["copyPartCRC32"] == result["expectedCopyPartCRC32"]
    assert result["listedPartCRC32s"][1] == result["expectedCopyPartCRC32"]
    assert (result["listedChecksumAlgorithm"], result["listedChecksumType"]) == ("CRC32", "COMPOSITE")
    assert result["uploads"] == [{"key": "js/upc-dst.bin", "checksumAlgorithm": "CRC32", "checksumType": "COMPOSITE"}]
    assert (result["completeChecksumType"], result["completeChecksumCRC32"][-2:]) == ("COMPOSITE", "-2")
    back = result["back"]
    assert (back["sha256"], back["size"]) == (result["sentSha256"], result["sentSize"])
    assert _stored(c, bkt, "js/upc-dst.bin")[0] == result["sentSha256"]


def test_presigned_urls(server, c, bkt):
    """getSignedUrl PUT and GET used with Node's fetch.  The PUT URL carries
    the CRC32 of an empty body in its query (the SDK signs before there is
    a body); S3 ignores checksums in a presigned query, and so does the server."""
    result = run_scenario(server, bkt, "presigned")
    assert result["putUrlHasChecksum"]
    assert (result["putStatus"], result["putBody"]) == (200, "")
    assert (result["getStatus"], result["gotSha256"]) == (200, result["sentSha256"])
    assert result["unsignedStatus"] == 403
    assert _stored(c, bkt, result["key"])[0] == result["sentSha256"]


def test_error_mapping(server, c, bkt):
    """S3 errors reach the SDK as its typed exceptions with the HTTP status."""
    result = run_scenario(server, bkt, "errors")
    missing = result["missingKey"]
    assert (missing["name"], missing["code"], missing["status"], missing["fault"]) == ("NoSuchKey", "NoSuchKey", 404, "client")
    assert missing["requestId"]
    assert (result["missingHead"]["name"], result["missingHead"]["status"]) == ("NotFound", 404)
    assert (result["missingBucket"]["name"], result["missingBucket"]["status"]) == ("NoSuchBucket", 404)
    wrong = result["wrongSecret"]
    assert (wrong["name"], wrong["code"], wrong["status"]) == ("SignatureDoesNotMatch", "SignatureDoesNotMatch", 403)


def test_conditional_put(server, c, bkt):
    """PutObject with IfNoneMatch '*': created, then refused with 412
    PreconditionFailed, the first body kept."""
    result = run_scenario(server, bkt, "conditional")
    assert result["firstStatus"] == 200
    assert result["second"] == {"thrown": True, "name": "PreconditionFailed", "status": 412}
    assert result["backSha256"] == result["firstSha256"]
    assert c.get_object(Bucket=bkt, Key="js/conditional.txt")["Body"].read() == b"first"

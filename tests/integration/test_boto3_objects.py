"""Object operations through boto3 against the real server process."""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import zlib
from urllib.parse import unquote_plus

import pytest
import requests
from botocore.exceptions import ClientError

from lightningstor.checksums import compute
from tests.integration.conftest import make_client
from tests.integration.raw import signed


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


@pytest.mark.parametrize("size", [0, 1, 4096, 65536, 65537, 3 * 1024 * 1024 + 17, 20 * 1024 * 1024 + 5])
def test_put_get_roundtrip(s3, bucket, size):
    """Bytes, ETag (hex MD5) and length round-trip for inline, single- and multi-chunk sizes."""
    data = os.urandom(size)
    put = s3.put_object(Bucket=bucket, Key="obj", Body=data)
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="obj")
    assert got["Body"].read() == data
    assert got["ContentLength"] == size
    assert got["ETag"] == put["ETag"]


def test_every_response_has_date_server_and_request_id(s3, bucket):
    """Date (RFC 7231, now), Server and the request id headers on successes and
    errors alike: the S3 request path sets them itself, not twisted.web."""
    s3.put_object(Bucket=bucket, Key="d", Body=b"x")
    ok = s3.head_object(Bucket=bucket, Key="d")["ResponseMetadata"]
    with pytest.raises(ClientError) as missing:
        s3.get_object(Bucket=bucket, Key="absent")
    for meta in (ok, missing.value.response["ResponseMetadata"]):
        headers = meta["HTTPHeaders"]
        sent = datetime.datetime.strptime(headers["date"], "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=datetime.UTC)
        assert abs((datetime.datetime.now(datetime.UTC) - sent).total_seconds()) < 30
        assert headers["server"] == "LightningStor"
        assert headers["x-amz-request-id"] == meta["RequestId"] and len(meta["RequestId"]) == 16


def test_metadata_and_system_headers(s3, bucket):
    """x-amz-meta-*, Content-Type and the stored system headers come back on GET and HEAD."""
    expires = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    s3.put_object(
        Bucket=bucket, Key="m", Body=b"hello",
        ContentType="text/plain", ContentEncoding="identity", ContentDisposition="attachment",
        ContentLanguage="en", CacheControl="no-cache", Expires=expires,
        Metadata={"color": "blue", "mtime": "1700000000.5"},
    )
    for resp in (s3.head_object(Bucket=bucket, Key="m"), s3.get_object(Bucket=bucket, Key="m")):
        assert resp["ContentType"] == "text/plain"
        assert resp["ContentEncoding"] == "identity"
        assert resp["ContentDisposition"] == "attachment"
        assert resp["ContentLanguage"] == "en"
        assert resp["CacheControl"] == "no-cache"
        assert resp["Metadata"] == {"color": "blue", "mtime": "1700000000.5"}
        assert resp["ContentLength"] == 5


def test_metadata_too_large(s3, bucket):
    """More than 2 KiB of user metadata is MetadataTooLarge and stores nothing."""
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="big-meta", Body=b"x", Metadata={"a": "b" * 3000})
    assert _code(e) == "MetadataTooLarge"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="big-meta")


def _put_raw_metadata(s3, bucket, key, metadata):
    """PutObject with non-ASCII metadata sent as SDKs other than boto3 send
    it, raw UTF-8 bytes in the header (boto3 itself refuses non-ASCII
    metadata, so the headers are set after its validation, as s3-tests'
    test_object_set_get_unicode_metadata does)."""

    def set_headers(params, **_kwargs):
        for name, value in metadata.items():
            params["headers"][f"x-amz-meta-{name}"] = value

    s3.meta.events.register("before-call.s3.PutObject", set_headers)
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    finally:
        s3.meta.events.unregister("before-call.s3.PutObject", set_headers)


def test_non_ascii_metadata_is_rfc2047_encoded(s3, bucket):
    """AWS stores non-ASCII metadata as text and returns it as an RFC 2047
    encoded-word (``=?UTF-8?B?...?=``); ASCII values come back as they are."""
    values = {"latin": "Hello World\u00e9", "cjk": "\u65e5\u672c", "emoji": "\U0001f680!", "plain": "=?not encoded"}
    _put_raw_metadata(s3, bucket, "uni", values)
    expected = {
        name: value if value.isascii() else "=?UTF-8?B?" + base64.b64encode(value.encode()).decode() + "?="
        for name, value in values.items()
    }
    for resp in (s3.head_object(Bucket=bucket, Key="uni"), s3.get_object(Bucket=bucket, Key="uni")):
        assert resp["Metadata"] == expected
        assert resp["ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-latin"] == "=?UTF-8?B?SGVsbG8gV29ybGTDqQ==?="


def test_non_ascii_metadata_counts_utf8_bytes(s3, bucket):
    """The 2 KiB metadata limit counts the UTF-8 bytes of the text, as AWS:
    1000 "é" are 2000 bytes and fit (each "é" is not four bytes because it
    arrived as two)."""
    _put_raw_metadata(s3, bucket, "fits", {"m": "\u00e9" * 1000})
    head = s3.head_object(Bucket=bucket, Key="fits")
    assert head["Metadata"] == {"m": "=?UTF-8?B?" + base64.b64encode(("\u00e9" * 1000).encode()).decode() + "?="}
    with pytest.raises(ClientError) as e:
        _put_raw_metadata(s3, bucket, "too-big", {"m": "\u00e9" * 1030})
    assert _code(e) == "MetadataTooLarge"


def test_content_md5(s3, bucket):
    """A correct Content-MD5 is accepted; a wrong one is BadDigest, a malformed one InvalidDigest."""
    data = b"payload"
    good = base64.b64encode(hashlib.md5(data).digest()).decode()
    s3.put_object(Bucket=bucket, Key="md5", Body=data, ContentMD5=good)
    bad = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="md5-bad", Body=data, ContentMD5=bad)
    assert _code(e) == "BadDigest"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="md5-bad", Body=data, ContentMD5="notbase64!!")
    assert _code(e) == "InvalidDigest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="md5-bad")


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"])
def test_checksums_validated_and_returned(s3, bucket, algorithm):
    """x-amz-checksum-* is validated, stored and returned with ChecksumMode=ENABLED."""
    data = os.urandom(100_000)
    put = s3.put_object(Bucket=bucket, Key="ck", Body=data, ChecksumAlgorithm=algorithm)
    # PutObject's answer has the checksum and its type (always FULL_OBJECT for PutObject, as AWS says).
    assert (put[f"Checksum{algorithm}"], put["ChecksumType"]) == (compute(algorithm.lower(), data), "FULL_OBJECT")
    head = s3.head_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == compute(algorithm.lower(), data)
    assert head["ChecksumType"] == "FULL_OBJECT"


def test_listings_show_checksum_algorithm_and_type(c, bkt, server):
    """ListObjects, ListObjectsV2 and ListObjectVersions show, for each object
    stored with a checksum, its ChecksumAlgorithm and ChecksumType (AWS's
    Object and ObjectVersion shapes): FULL_OBJECT for PutObject and
    FULL_OBJECT multipart uploads, COMPOSITE for composite ones; noncurrent
    versions keep theirs; objects uploaded without a checksum show the
    default CRC64NVME AWS adds; a multipart object completed without a
    checksum algorithm and delete markers show neither."""
    bare = make_client(server.endpoint, request_checksum_calculation="when_required")
    c.put_bucket_versioning(Bucket=bkt, VersioningConfiguration={"Status": "Enabled"})
    c.put_object(Bucket=bkt, Key="sha", Body=b"v1", ChecksumAlgorithm="SHA256")
    bare.put_object(Bucket=bkt, Key="sha", Body=b"v2, without a checksum")
    bare.put_object(Bucket=bkt, Key="plain", Body=b"no checksum")
    c.put_object(Bucket=bkt, Key="dir/crc", Body=b"x", ChecksumAlgorithm="CRC32")
    for key, algorithm, kind in (("mp-composite", "CRC32C", "COMPOSITE"), ("mp-full", "CRC64NVME", "FULL_OBJECT")):
        uid = c.create_multipart_upload(Bucket=bkt, Key=key, ChecksumAlgorithm=algorithm, ChecksumType=kind)["UploadId"]
        part = c.upload_part(Bucket=bkt, Key=key, UploadId=uid, PartNumber=1, Body=b"part", ChecksumAlgorithm=algorithm)
        c.complete_multipart_upload(Bucket=bkt, Key=key, UploadId=uid, MultipartUpload={"Parts": [
            {"PartNumber": 1, "ETag": part["ETag"], f"Checksum{algorithm}": part[f"Checksum{algorithm}"]}]})
    uid = c.create_multipart_upload(Bucket=bkt, Key="mp-plain")["UploadId"]
    part = c.upload_part(Bucket=bkt, Key="mp-plain", UploadId=uid, PartNumber=1, Body=b"part")
    c.complete_multipart_upload(Bucket=bkt, Key="mp-plain", UploadId=uid,
                                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    c.put_object(Bucket=bkt, Key="gone", Body=b"g", ChecksumAlgorithm="SHA1")
    c.delete_object(Bucket=bkt, Key="gone")

    def shown(entries):
        return {e["Key"]: (e.get("ChecksumAlgorithm"), e.get("ChecksumType")) for e in entries}

    current = {"dir/crc": (["CRC32"], "FULL_OBJECT"), "mp-composite": (["CRC32C"], "COMPOSITE"),
               "mp-full": (["CRC64NVME"], "FULL_OBJECT"), "mp-plain": (None, None),
               "plain": (["CRC64NVME"], "FULL_OBJECT"), "sha": (["CRC64NVME"], "FULL_OBJECT")}
    assert shown(c.list_objects_v2(Bucket=bkt)["Contents"]) == current
    assert shown(c.list_objects_v2(Bucket=bkt, FetchOwner=True)["Contents"]) == current
    assert shown(c.list_objects(Bucket=bkt)["Contents"]) == current
    delimited = c.list_objects_v2(Bucket=bkt, Delimiter="/")
    assert shown(delimited["Contents"]) == {k: v for k, v in current.items() if "/" not in k}
    assert shown(c.list_objects_v2(Bucket=bkt, Prefix="dir/", Delimiter="/")["Contents"]) == {
        "dir/crc": (["CRC32"], "FULL_OBJECT")}
    versions = c.list_object_versions(Bucket=bkt)
    by_version = {(v["Key"], v["IsLatest"]): (v.get("ChecksumAlgorithm"), v.get("ChecksumType"))
                  for v in versions["Versions"]}
    assert by_version == {**{(k, True): v for k, v in current.items()},
                          ("sha", False): (["SHA256"], "FULL_OBJECT"), ("gone", False): (["SHA1"], "FULL_OBJECT")}
    [marker] = versions["DeleteMarkers"]
    assert "ChecksumAlgorithm" not in marker and "ChecksumType" not in marker


def _presigned_put(client, bucket, key, data, headers=None):
    """PUT ``data`` through a presigned URL, as curl or a browser does: no
    checksum header, no SDK; the response."""
    url = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key})
    return requests.put(url, data=data, headers=headers or {}, timeout=30)


@pytest.mark.parametrize("size", [5, 3 * 1024 * 1024 + 17])
def test_default_crc64nvme_checksum_is_validated_by_boto3(c, bkt, size):
    """An object uploaded without any checksum (a presigned PUT) gets AWS's
    default CRC64NVME, a FULL_OBJECT checksum: PutObject answers with it,
    HeadObject with ChecksumMode shows it, and boto3's default download
    validation (response_checksum_validation=when_supported) checks the body
    against it: the validation ran (botocore records the algorithm it
    checked) and a wrong value would have failed the read."""
    from botocore.exceptions import FlexibleChecksumError

    data = os.urandom(size)
    crc = compute("crc64nvme", data)
    put = _presigned_put(c, bkt, "plain", data)
    assert put.status_code == 200, put.text
    assert (put.headers["x-amz-checksum-crc64nvme"], put.headers["x-amz-checksum-type"]) == (crc, "FULL_OBJECT")
    head = c.head_object(Bucket=bkt, Key="plain", ChecksumMode="ENABLED")
    assert (head["ChecksumCRC64NVME"], head["ChecksumType"]) == (crc, "FULL_OBJECT")

    checked = []
    corrupt = []

    def before_parse(response_dict, **kwargs):
        # botocore has wrapped the body in its validating reader by now
        # and noted the algorithm it checks.
        checked.append(response_dict["context"].get("checksum", {}).get("response_algorithm"))
        if corrupt:  # what the SDK expects, changed: the read must fail
            response_dict["body"]._expected = compute("crc64nvme", b"something else")

    events = c.meta.events
    events.register("before-parse.s3.GetObject", before_parse)
    try:
        got = c.get_object(Bucket=bkt, Key="plain")
        assert got["Body"].read() == data
        assert (got["ChecksumCRC64NVME"], got["ChecksumType"]) == (crc, "FULL_OBJECT")
        assert checked == ["crc64nvme"]
        corrupt.append(True)
        with pytest.raises(FlexibleChecksumError):
            c.get_object(Bucket=bkt, Key="plain")["Body"].read()
    finally:
        events.unregister("before-parse.s3.GetObject", before_parse)


def test_default_checksum_only_without_a_chosen_one(s3, bucket, server):
    """The default is added only when the upload chose no checksum: with
    Content-MD5 alone the object gets CRC64NVME too (MD5 is no checksum
    choice), while a client's own algorithm is kept alone (AWS keeps the one
    the client chose)."""
    data = b"integrity" * 1000
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    plain = make_client(server.endpoint, request_checksum_calculation="when_required")
    put = plain.put_object(Bucket=bucket, Key="md5", Body=data, ContentMD5=md5)
    assert (put["ChecksumCRC64NVME"], put["ChecksumType"]) == (compute("crc64nvme", data), "FULL_OBJECT")
    s3.put_object(Bucket=bucket, Key="sha", Body=data, ChecksumAlgorithm="SHA256")
    head = s3.head_object(Bucket=bucket, Key="sha", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == compute("sha256", data)
    assert not [k for k in head if k.startswith("Checksum") and k not in ("ChecksumSHA256", "ChecksumType")]


def test_wrong_checksum_is_bad_digest(s3, bucket):
    """A checksum header that does not match the body is BadDigest; nothing is stored."""
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="ck-bad", Body=b"abc", ChecksumCRC32=compute("crc32", b"abd"))
    assert _code(e) == "BadDigest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="ck-bad")


def test_ranges(s3, bucket):
    """bytes=a-b, a-, -n give 206 with Content-Range; across chunk boundaries too."""
    data = os.urandom(9 * 1024 * 1024)
    s3.put_object(Bucket=bucket, Key="r", Body=data)
    cases = {"bytes=0-9": data[0:10], "bytes=8388600-8388700": data[8388600:8388701],
             f"bytes={len(data) - 5}-": data[-5:], "bytes=-7": data[-7:],
             "bytes=100-99999999999": data[100:]}
    for header, want in cases.items():
        resp = s3.get_object(Bucket=bucket, Key="r", Range=header)
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 206, header
        assert resp["Body"].read() == want, header
        assert resp["ContentRange"].endswith(f"/{len(data)}")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", Range=f"bytes={len(data)}-")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416


def test_conditional_get(s3, bucket):
    """If-Match/If-None-Match/If-Modified-Since/If-Unmodified-Since give 412/304 as AWS."""
    put = s3.put_object(Bucket=bucket, Key="c", Body=b"cond")
    etag = put["ETag"]
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"cond"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"0000"')
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    past = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=future)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=past)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_conditional_put_if_none_match(s3, bucket):
    """PutObject with If-None-Match: * creates once, then answers 412 and keeps the first."""
    s3.put_object(Bucket=bucket, Key="once", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="once", Body=b"second", IfNoneMatch="*")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert s3.get_object(Bucket=bucket, Key="once")["Body"].read() == b"first"


def _assert_if_none_match_refused(e):
    """AWS's answer to an If-None-Match other than "*" on a write: 501 with
    the header named (not an ignored condition, not a 412)."""
    err = e.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 501
    assert err["Error"]["Code"] == "NotImplemented"
    assert err["Error"]["Message"] == "A header you provided implies functionality that is not implemented"
    assert err["Error"]["Header"] == "If-None-Match"
    assert err["Error"]["additionalMessage"] == "We don't accept the provided value of If-None-Match header for this API"


def test_write_if_none_match_takes_only_star(s3, bucket):
    """On PutObject and CopyObject (either metadata directive) If-None-Match
    must be "*": an ETag there is 501 NotImplemented, as AWS answers, and
    nothing is written."""
    etag = s3.put_object(Bucket=bucket, Key="src", Body=b"source")["ETag"]
    for value in (etag, "badetag"):
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key="new", Body=b"x", IfNoneMatch=value)
        _assert_if_none_match_refused(e)
        for directive in ("COPY", "REPLACE"):
            with pytest.raises(ClientError) as e:
                s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "src"},
                               MetadataDirective=directive, IfNoneMatch=value)
            _assert_if_none_match_refused(e)
    for key in ("new", "copy"):
        with pytest.raises(ClientError) as e:
            s3.head_object(Bucket=bucket, Key=key)
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "src"}, IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "src"}, IfNoneMatch="*")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_response_overrides(s3, bucket):
    """response-content-* query parameters override the GET response headers."""
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ContentType="text/plain")
    resp = s3.get_object(Bucket=bucket, Key="o", ResponseContentType="application/json",
                         ResponseContentDisposition="inline", ResponseCacheControl="max-age=5")
    assert resp["ContentType"] == "application/json"
    assert resp["ContentDisposition"] == "inline"
    assert resp["CacheControl"] == "max-age=5"


def test_missing_key_and_delete(s3, bucket):
    """GET/HEAD of a missing key is 404 NoSuchKey; DELETE of anything answers 204."""
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="nope")
    assert _code(e) == "NoSuchKey"
    s3.put_object(Bucket=bucket, Key="d", Body=b"x")
    assert s3.delete_object(Bucket=bucket, Key="d")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.delete_object(Bucket=bucket, Key="d")["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="d")


def test_overwrite_replaces(s3, bucket):
    """Overwriting a key replaces bytes and metadata entirely."""
    s3.put_object(Bucket=bucket, Key="ow", Body=os.urandom(200_000), Metadata={"a": "1"})
    s3.put_object(Bucket=bucket, Key="ow", Body=b"small")
    got = s3.get_object(Bucket=bucket, Key="ow")
    assert got["Body"].read() == b"small"
    assert got["Metadata"] == {}


@pytest.mark.parametrize("key", [
    "a b", "plus+sign", "uni\u00e9\u4e2d", "per%cent", "q?mark", "hash#", "amp&lt", "../../etc/passwd",
    "dir//double", "trailing/", "semi;colon", "tab\tkey", "ctrl\x01char", "~tilde", "quote\"s", "a" * 1024,
    "line\nfeed", "cr\rkey",
])
def test_odd_keys_roundtrip(s3, bucket, key):
    """Keys with spaces, '+', unicode, '%', '..', '//' and control characters round-trip and list."""
    s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    # botocore asks for encoding-type=url itself and decodes the answer...
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]
    assert [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]] == [key]
    # ...but leaves the decoding to the caller when the caller asks explicitly.
    raw = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, EncodingType="url")["Contents"]]
    assert [unquote_plus(k) for k in raw] == [key]


def test_key_too_long(s3, bucket):
    """A key over 1024 bytes is KeyTooLongError."""
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert _code(e) == "KeyTooLongError"


def test_delete_objects(s3, bucket):
    """DeleteObjects removes the listed keys (missing ones count as deleted); Quiet lists only errors."""
    for i in range(5):
        s3.put_object(Bucket=bucket, Key=f"del/{i}", Body=b"x")
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"del/{i}"} for i in range(3)] + [{"Key": "missing"}]})
    assert sorted(d["Key"] for d in resp["Deleted"]) == ["del/0", "del/1", "del/2", "missing"]
    resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "del/3"}], "Quiet": True})
    assert "Deleted" not in resp and "Errors" not in resp
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert left == ["del/4"]


def test_delete_objects_too_many(s3, bucket):
    """More than 1000 keys in one DeleteObjects is MalformedXML."""
    with pytest.raises(ClientError) as e:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": str(i)} for i in range(1001)]})
    assert _code(e) == "MalformedXML"


def test_copy_object_copy_and_replace(s3, bucket):
    """CopyObject COPY keeps metadata; REPLACE takes new metadata; bytes equal."""
    data = os.urandom(300_000)
    s3.put_object(Bucket=bucket, Key="src", Body=data, Metadata={"k": "v"}, ContentType="text/x")
    s3.copy_object(Bucket=bucket, Key="dst1", CopySource={"Bucket": bucket, "Key": "src"})
    d1 = s3.get_object(Bucket=bucket, Key="dst1")
    assert d1["Body"].read() == data and d1["Metadata"] == {"k": "v"} and d1["ContentType"] == "text/x"
    s3.copy_object(Bucket=bucket, Key="dst2", CopySource=f"{bucket}/src", MetadataDirective="REPLACE",
                   Metadata={"n": "2"}, ContentType="text/y")
    d2 = s3.get_object(Bucket=bucket, Key="dst2")
    assert d2["Body"].read() == data and d2["Metadata"] == {"n": "2"} and d2["ContentType"] == "text/y"
    s3.delete_object(Bucket=bucket, Key="src")
    assert s3.get_object(Bucket=bucket, Key="dst1")["Body"].read() == data


def test_copy_source_plus_is_a_space(s3, bucket):
    """In ``x-amz-copy-source`` a raw ``+`` is a space and ``%2B`` a plus,
    as S3 decodes it (a form-encoded source, as Java's URLEncoder writes,
    finds its key; a raw plus sent for a plus does not, as on AWS).  The
    header is sent as given (botocore would encode it)."""
    s3.put_object(Bucket=bucket, Key="my file.txt", Body=b"space")
    s3.put_object(Bucket=bucket, Key="my+file.txt", Body=b"plus")
    sent = {}

    def header_as_given(request, **kwargs):
        request.headers.replace_header("x-amz-copy-source", sent["source"])

    s3.meta.events.register("before-sign.s3.CopyObject", header_as_given)
    try:
        for source, body in ((f"{bucket}/my+file.txt", b"space"), (f"{bucket}%2Fmy+file.txt", b"space"),
                             (f"/{bucket}/my%2Bfile.txt", b"plus"), (f"{bucket}/my%20file.txt", b"space")):  # fmt: skip
            sent["source"] = source
            s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "unused"})
            assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == body, source
    finally:
        s3.meta.events.unregister("before-sign.s3.CopyObject", header_as_given)
    # The SDK's own encoding (%2B for a plus) copies the plus key.
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "my+file.txt"})
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"plus"


def test_copy_object_result_checksum_and_type(c, bkt):
    """CopyObjectResult has the copy's checksum with its ChecksumType, as
    HeadObject gives them: the source's algorithm (CRC32), or SHA256 when
    x-amz-checksum-algorithm asks for it, computed over the whole copy
    (FULL_OBJECT, a COMPOSITE multipart source too); a source without one
    gives the copy the default CRC64NVME."""
    data = os.urandom(200_000)
    c.put_object(Bucket=bkt, Key="src", Body=data, ChecksumAlgorithm="CRC32")
    kept = c.copy_object(Bucket=bkt, Key="dst", CopySource={"Bucket": bkt, "Key": "src"})["CopyObjectResult"]
    assert (kept["ChecksumCRC32"], kept["ChecksumType"]) == (compute("crc32", data), "FULL_OBJECT")
    new = c.copy_object(Bucket=bkt, Key="dst2", CopySource={"Bucket": bkt, "Key": "src"},
                        ChecksumAlgorithm="SHA256")["CopyObjectResult"]
    assert (new["ChecksumSHA256"], new["ChecksumType"]) == (compute("sha256", data), "FULL_OBJECT")
    uid = c.create_multipart_upload(Bucket=bkt, Key="mp", ChecksumAlgorithm="CRC32")["UploadId"]
    part = c.upload_part(Bucket=bkt, Key="mp", UploadId=uid, PartNumber=1, Body=data, ChecksumAlgorithm="CRC32")
    c.complete_multipart_upload(Bucket=bkt, Key="mp", UploadId=uid, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": part["ETag"], "ChecksumCRC32": part["ChecksumCRC32"]}]})
    assert c.head_object(Bucket=bkt, Key="mp", ChecksumMode="ENABLED")["ChecksumType"] == "COMPOSITE"
    whole = c.copy_object(Bucket=bkt, Key="mp2", CopySource={"Bucket": bkt, "Key": "mp"})["CopyObjectResult"]
    head = c.head_object(Bucket=bkt, Key="mp2", ChecksumMode="ENABLED")
    assert (whole["ChecksumCRC32"], whole["ChecksumType"]) == (compute("crc32", data), "FULL_OBJECT")
    assert (head["ChecksumCRC32"], head["ChecksumType"]) == (compute("crc32", data), "FULL_OBJECT")
    # A source without checksums (a multipart upload created without an
    # algorithm) gives a copy the default CRC64NVME: the copy is a new
    # object written without a chosen checksum, as AWS.
    uid = c.create_multipart_upload(Bucket=bkt, Key="mp-plain")["UploadId"]
    part = c.upload_part(Bucket=bkt, Key="mp-plain", UploadId=uid, PartNumber=1, Body=data)
    c.complete_multipart_upload(Bucket=bkt, Key="mp-plain", UploadId=uid, MultipartUpload={"Parts": [
        {"PartNumber": 1, "ETag": part["ETag"]}]})
    assert not [k for k in c.head_object(Bucket=bkt, Key="mp-plain", ChecksumMode="ENABLED") if k.startswith("Checksum")]
    plain = c.copy_object(Bucket=bkt, Key="plain2", CopySource={"Bucket": bkt, "Key": "mp-plain"})["CopyObjectResult"]
    assert (plain["ChecksumCRC64NVME"], plain["ChecksumType"]) == (compute("crc64nvme", data), "FULL_OBJECT")


def test_copy_onto_itself(s3, bucket):
    """Copy onto itself needs REPLACE (rclone's mtime update); COPY is InvalidRequest."""
    s3.put_object(Bucket=bucket, Key="self", Body=b"same", Metadata={"mtime": "1"})
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="self", CopySource={"Bucket": bucket, "Key": "self"})
    assert _code(e) == "InvalidRequest"
    s3.copy_object(Bucket=bucket, Key="self", CopySource={"Bucket": bucket, "Key": "self"},
                   MetadataDirective="REPLACE", Metadata={"mtime": "2"})
    got = s3.get_object(Bucket=bucket, Key="self")
    assert got["Body"].read() == b"same" and got["Metadata"] == {"mtime": "2"}


def test_copy_conditions_and_cross_bucket(s3, bucket):
    """x-amz-copy-source-if-match failing is 412; copying into another bucket of the tenant works."""
    put = s3.put_object(Bucket=bucket, Key="s", Body=b"data")
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="t", CopySource={"Bucket": bucket, "Key": "s"}, CopySourceIfMatch='"nope"')
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    other = bucket + "-2"
    s3.create_bucket(Bucket=other)
    try:
        s3.copy_object(Bucket=other, Key="t", CopySource={"Bucket": bucket, "Key": "s"}, CopySourceIfMatch=put["ETag"])
        assert s3.get_object(Bucket=other, Key="t")["Body"].read() == b"data"
    finally:
        s3.delete_object(Bucket=other, Key="t")
        s3.delete_bucket(Bucket=other)


def test_object_acl_and_canned_acl_header(s3, bucket):
    """x-amz-acl: private is accepted (and ignored); GetObjectAcl shows the owner."""
    s3.put_object(Bucket=bucket, Key="acl", Body=b"x", ACL="private")
    acl = s3.get_object_acl(Bucket=bucket, Key="acl")
    assert acl["Grants"][0]["Permission"] == "FULL_CONTROL"


def test_version_id_null_on_unversioned(s3, bucket):
    """HEAD with versionId=null (rclone) finds the object in an unversioned bucket."""
    s3.put_object(Bucket=bucket, Key="v", Body=b"x")
    assert s3.head_object(Bucket=bucket, Key="v", VersionId="null")["ContentLength"] == 1


@pytest.mark.parametrize(("extra", "code"), [
    # SSE-S3 (AES256) is served (test_sse.py), SSE-C over TLS only (test_ssec.py:
    # this server is plain HTTP, AWS's 400 InvalidRequest); KMS is not.
    ({"ServerSideEncryption": "aws:kms"}, "NotImplemented"),
    ({"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32}, "InvalidRequest"),
    # Object Lock is served, but only in a bucket created with it (test_object_lock.py).
    ({"ObjectLockMode": "GOVERNANCE",
      "ObjectLockRetainUntilDate": datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)}, "InvalidRequest"),
])
def test_unkeepable_promises_refused(s3, bucket, extra, code):
    """KMS requests are 501 NotImplemented, SSE-C over plain HTTP and Object Lock
    requests in a bucket without it 400 InvalidRequest: never stored unencrypted or
    unlocked."""
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="sse", Body=b"secret", **extra)
    assert _code(e) == code
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="sse")


def test_checksum_headers_that_disagree_or_do_not_decode_are_refused(server, s3, bucket):
    """``x-amz-sdk-checksum-algorithm`` naming another algorithm than the
    value sent, and a value that is not the base64 of a digest of its
    algorithm's size, are 400 InvalidRequest before the body is read, and
    nothing is stored (the first stored the object with two whole-object
    checksums, the second answered BadDigest once the body was stored)."""
    body = b"checksummed body"
    crc32 = base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    cases = [
        ({"x-amz-sdk-checksum-algorithm": "CRC32C", "x-amz-checksum-crc32": crc32}, "x-amz-sdk-checksum-algorithm"),
        ({"x-amz-checksum-crc32": "!!!"}, "x-amz-checksum-crc32"),
        ({"x-amz-checksum-crc32": base64.b64encode(b"12345").decode()}, "x-amz-checksum-crc32"),
        ({"x-amz-checksum-sha256": crc32}, "x-amz-checksum-sha256"),
    ]
    for headers, named in cases:
        status, answer = signed(server, "PUT", f"/{bucket}/bad", body, headers)
        assert status == 400 and b"<Code>InvalidRequest</Code>" in answer, (headers, answer)
        assert f"Value for {named} header is invalid.".encode() in answer, answer
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="bad")
    status, _ = signed(server, "PUT", f"/{bucket}/good", body,
                       {"x-amz-sdk-checksum-algorithm": "CRC32", "x-amz-checksum-crc32": crc32})  # fmt: skip
    assert status == 200
    head = s3.head_object(Bucket=bucket, Key="good", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == crc32 and "ChecksumCRC32C" not in head


def test_a_suffix_range_of_an_empty_object_is_200(s3, bucket):
    """AWS answers a suffix range of a 0-byte object with 200 and no body
    (tail readers rely on it); a start position stays 416."""
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = s3.get_object(Bucket=bucket, Key="empty", Range="bytes=-524288")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200 and got["Body"].read() == b""
    with pytest.raises(ClientError) as info:
        s3.get_object(Bucket=bucket, Key="empty", Range="bytes=0-")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416


def test_an_empty_if_match_is_no_condition(server, s3, bucket):
    """An ``If-Match`` header present but empty (left by a proxy) is absent,
    as for every conditional header: PutObject to a new key is stored (it
    was 404 NoSuchKey, and 412 over an existing key)."""
    for key in ("new-key", "new-key"):  # a new key, then the same one existing
        status, answer = signed(server, "PUT", f"/{bucket}/{key}", b"data", {"If-Match": ""})
        assert status == 200, answer


def test_max_object_size_binds_every_way_of_writing(tmp_path):
    """``[limits] max_object_size_bytes`` refuses larger objects however they
    are written: a PutObject (before its body), a CopyObject, an upload
    whose length is not declared, a gRPC PutObject.  It used to bind
    CompleteMultipartUpload only."""
    from lightningstor.client import LightningStorClient
    from lightningstor.client import errors as client_errors
    from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess

    config = tmp_path / "c.toml"
    config.write_text("[limits]\nmax_object_size_bytes = 1000\n")
    (tmp_path / "data").mkdir()
    server = ServerProcess(tmp_path / "data", config=str(config)).start()
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="limited")
        s3.put_object(Bucket="limited", Key="fits", Body=b"x" * 1000)
        with pytest.raises(ClientError) as info:
            s3.put_object(Bucket="limited", Key="big", Body=b"x" * 1001)
        assert info.value.response["Error"]["Code"] == "EntityTooLarge"
        s3.put_object(Bucket="limited", Key="small", Body=b"x" * 600)
        s3.copy_object(Bucket="limited", Key="copy", CopySource={"Bucket": "limited", "Key": "small"})
        with LightningStorClient.connect(
            f"grpc://{server.grpc_endpoint}", access_key=ROOT_ACCESS_KEY, secret_key=ROOT_SECRET_KEY, timeout=30
        ) as client:
            with pytest.raises(client_errors.LightningStorError) as grpc_info:
                client.put_object("limited", "grpc-big", b"y" * 1001)
            assert grpc_info.value.code == "EntityTooLarge"
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="limited")["Contents"]]
        assert keys == ["copy", "fits", "small"]
    finally:
        server.stop()

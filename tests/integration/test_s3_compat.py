"""AWS S3 behaviours found by running the ceph/s3-tests suite against the server.

Each test names the s3-tests case it stands for; they drive the real server
process with boto3, like the rest of tests/integration.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import make_client

KEYS = ["bar", "baz", "foo", "quxx"]


def _put_keys(s3: Any, bucket: str, keys: list[str]) -> None:
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())


@pytest.mark.parametrize("delimiter", [None, "/"])
def test_max_keys_zero_is_an_empty_page_not_truncated(s3: Any, bucket: str, delimiter: str | None) -> None:
    """max-keys=0 answers no keys and IsTruncated false, in v1 and v2, as AWS
    (s3-tests test_bucket_list_maxkeys_zero, test_bucket_listv2_maxkeys_zero):
    a truncated page without NextMarker or NextContinuationToken cannot be
    continued."""
    _put_keys(s3, bucket, KEYS)
    extra = {"Delimiter": delimiter} if delimiter else {}
    v1 = s3.list_objects(Bucket=bucket, MaxKeys=0, **extra)
    v2 = s3.list_objects_v2(Bucket=bucket, MaxKeys=0, **extra)
    for page in (v1, v2):
        assert page["IsTruncated"] is False
        assert page["MaxKeys"] == 0
        assert "Contents" not in page and "CommonPrefixes" not in page
        assert "NextMarker" not in page and "NextContinuationToken" not in page
    assert v2["KeyCount"] == 0


def test_max_keys_zero_echoes_the_request(s3: Any, bucket: str) -> None:
    """The empty max-keys=0 page still echoes what was asked: Prefix,
    Delimiter, MaxKeys, Marker / StartAfter / ContinuationToken, EncodingType."""
    _put_keys(s3, bucket, KEYS)
    common = {"Bucket": bucket, "MaxKeys": 0, "Prefix": "b", "Delimiter": "/", "EncodingType": "url"}
    v1 = s3.list_objects(Marker="bar", **common)
    token = s3.list_objects_v2(Bucket=bucket, MaxKeys=1)["NextContinuationToken"]
    v2 = s3.list_objects_v2(StartAfter="bar", ContinuationToken=token, **common)
    for page in (v1, v2):
        assert (page["Prefix"], page["Delimiter"], page["MaxKeys"], page["EncodingType"]) == ("b", "/", 0, "url")
        assert page["IsTruncated"] is False and "Contents" not in page
    assert v1["Marker"] == "bar" and "NextMarker" not in v1
    assert (v2["StartAfter"], v2["ContinuationToken"], v2["KeyCount"]) == ("bar", token, 0)
    assert "NextContinuationToken" not in v2


def test_max_keys_zero_on_versions_is_an_empty_page_not_truncated(s3: Any, bucket: str) -> None:
    """ListObjectVersions with max-keys=0 answers as ListObjects does: no
    entries and IsTruncated false (a truncated page must carry NextKeyMarker,
    and there is nothing to put in it); a bad version-id-marker is still
    refused."""
    _put_keys(s3, bucket, KEYS)
    page = s3.list_object_versions(Bucket=bucket, MaxKeys=0)
    assert page["IsTruncated"] is False and page["MaxKeys"] == 0
    assert "Versions" not in page and "DeleteMarkers" not in page
    assert "NextKeyMarker" not in page and "NextVersionIdMarker" not in page
    page = s3.list_object_versions(Bucket=bucket, MaxKeys=0, Prefix="b", Delimiter="/", KeyMarker="bar")
    assert (page["Prefix"], page["Delimiter"], page["KeyMarker"], page["IsTruncated"]) == ("b", "/", "bar", False)
    with pytest.raises(ClientError) as bad:
        s3.list_object_versions(Bucket=bucket, MaxKeys=0, VersionIdMarker="v")
    assert bad.value.response["Error"]["Code"] == "InvalidArgument"


# -- ListMultipartUploads max-uploads / ListParts max-parts --------------------------------

UPLOAD_KEYS = ["a", "b", "b", "dir/c", "dir/d"]


def _uploads(s3: Any, bucket: str) -> list[tuple[str, str]]:
    """Uploads in progress on UPLOAD_KEYS, in ListMultipartUploads order."""
    made = [(key, s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]) for key in UPLOAD_KEYS]
    listed = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert sorted(made) == sorted((u["Key"], u["UploadId"]) for u in listed)
    return [(u["Key"], u["UploadId"]) for u in listed]


def _parts(s3: Any, bucket: str, numbers: list[int]) -> str:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="parts")["UploadId"]
    for number in numbers:
        s3.upload_part(Bucket=bucket, Key="parts", UploadId=upload_id, PartNumber=number, Body=b"x" * number)
    return str(upload_id)


@pytest.mark.parametrize("delimiter", [None, "/"])
def test_max_uploads_zero_is_an_empty_page_not_truncated(s3: Any, bucket: str, delimiter: str | None) -> None:
    """max-uploads=0 while uploads are in progress: no uploads and IsTruncated
    false, as max-keys=0 (AWS; MinIO answers the same).  It was a truncated
    page with empty NextKeyMarker/NextUploadIdMarker, which a client that
    follows IsTruncated asks again from the same place forever."""
    _uploads(s3, bucket)
    extra = {"Delimiter": delimiter} if delimiter else {}
    page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=0, **extra)
    assert page["IsTruncated"] is False and page["MaxUploads"] == 0
    assert "Uploads" not in page and "CommonPrefixes" not in page
    assert not page.get("NextKeyMarker") and not page.get("NextUploadIdMarker")


def test_max_parts_zero_is_an_empty_page_not_truncated(s3: Any, bucket: str) -> None:
    """max-parts=0 while parts exist: no parts and IsTruncated false, the
    upload still described; an unknown upload is still NoSuchUpload."""
    upload_id = _parts(s3, bucket, [1, 2, 3])
    for marker in (0, 1):
        page = s3.list_parts(Bucket=bucket, Key="parts", UploadId=upload_id, MaxParts=0, PartNumberMarker=marker)
        assert page["IsTruncated"] is False and page["MaxParts"] == 0 and "Parts" not in page
        assert (page["UploadId"], page["Key"], page["PartNumberMarker"]) == (upload_id, "parts", marker)
    with pytest.raises(ClientError) as missing:
        s3.list_parts(Bucket=bucket, Key="parts", UploadId="no-such-upload", MaxParts=0)
    assert missing.value.response["Error"]["Code"] == "NoSuchUpload"


@pytest.mark.parametrize("page_size", [1, 2, 1000])
def test_paginators_over_uploads_and_parts_list_everything_once(s3: Any, bucket: str, page_size: int) -> None:
    """boto3's paginators (they follow IsTruncated and the Next*Marker fields)
    end, and return every upload and every part exactly once."""
    uploads = _uploads(s3, bucket)
    pages = s3.get_paginator("list_multipart_uploads").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": page_size}
    )
    assert [(u["Key"], u["UploadId"]) for page in pages for u in page.get("Uploads", [])] == uploads
    numbers = [1, 2, 3, 5, 8, 13]
    upload_id = _parts(s3, bucket, numbers)
    pages = s3.get_paginator("list_parts").paginate(
        Bucket=bucket, Key="parts", UploadId=upload_id, PaginationConfig={"PageSize": page_size}
    )
    assert [p["PartNumber"] for page in pages for p in page.get("Parts", [])] == numbers


def test_paginators_with_page_size_zero_end(s3: Any, bucket: str) -> None:
    """A page size of 0 is one empty, untruncated page: the paginators stop
    (they used to get the same empty markers back and raise PaginationError)."""
    _uploads(s3, bucket)
    upload_id = _parts(s3, bucket, [1, 2])
    zero = {"PaginationConfig": {"PageSize": 0}}
    uploads = list(s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, **zero))
    parts = list(s3.get_paginator("list_parts").paginate(Bucket=bucket, Key="parts", UploadId=upload_id, **zero))
    objects = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, **zero))
    versions = list(s3.get_paginator("list_object_versions").paginate(Bucket=bucket, **zero))
    for pages in (uploads, parts, objects, versions):
        assert len(pages) == 1 and pages[0]["IsTruncated"] is False


def test_page_sizes_above_1000_are_capped(s3: Any, bucket: str) -> None:
    """AWS serves at most 1000 entries a page: max-keys is echoed as sent,
    max-uploads and max-parts as capped."""
    _put_keys(s3, bucket, KEYS)
    upload_id = _parts(s3, bucket, [1])
    assert s3.list_objects_v2(Bucket=bucket, MaxKeys=5000)["MaxKeys"] == 5000
    assert s3.list_multipart_uploads(Bucket=bucket, MaxUploads=5000)["MaxUploads"] == 1000
    assert s3.list_parts(Bucket=bucket, Key="parts", UploadId=upload_id, MaxParts=5000)["MaxParts"] == 1000


def _with_raw_query(client: Any, operation: str, param: str, raw: str) -> None:
    """Have ``client`` send ``param=raw`` for ``operation`` (boto3 only sends
    integers): the query is rewritten before the request is signed."""

    def rewrite(request: Any, **_: Any) -> None:
        parts = urlsplit(request.url)
        query = [(k, raw if k == param else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        request.url = urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))

    client.meta.events.register(f"before-sign.s3.{operation}", rewrite)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("-1", "must be an integer between 0 and 2147483647"),
        ("abc", "not an integer or within integer range"),
        ("1.5", "not an integer or within integer range"),
        ("+5", "not an integer or within integer range"),
        ("2147483648", "not an integer or within integer range"),
    ],
)
def test_bad_page_sizes_are_invalid_argument(server: Any, bucket: str, raw: str, message: str) -> None:
    """A negative or non-integer max-keys, max-uploads, max-parts or
    part-number-marker is a 400 InvalidArgument naming the parameter, as AWS."""
    setup = make_client(server.endpoint)
    upload_id = _parts(setup, bucket, [1])
    calls: list[tuple[str, str, str, dict[str, Any]]] = [
        ("list_objects", "ListObjects", "max-keys", {}),
        ("list_objects_v2", "ListObjectsV2", "max-keys", {}),
        ("list_object_versions", "ListObjectVersions", "max-keys", {}),
        ("list_multipart_uploads", "ListMultipartUploads", "max-uploads", {}),
        ("list_parts", "ListParts", "max-parts", {"Key": "parts", "UploadId": upload_id}),
        ("list_parts", "ListParts", "part-number-marker", {"Key": "parts", "UploadId": upload_id}),
    ]
    limit = {"max-keys": "MaxKeys", "max-uploads": "MaxUploads", "max-parts": "MaxParts",
             "part-number-marker": "PartNumberMarker"}
    for method, operation, param, extra in calls:
        client = make_client(server.endpoint)
        _with_raw_query(client, operation, param, raw)
        with pytest.raises(ClientError) as refused:
            getattr(client, method)(Bucket=bucket, **{limit[param]: 7}, **extra)
        error = refused.value.response["Error"]
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400, (operation, error)
        assert error["Code"] == "InvalidArgument" and message in error["Message"], (operation, error)
        assert error.get("ArgumentName") == param and error.get("ArgumentValue") == raw, (operation, error)


def test_empty_continuation_token_is_echoed(s3: Any, bucket: str) -> None:
    """An empty continuation-token lists from the start and is echoed back as
    an empty ContinuationToken (s3-tests test_bucket_listv2_continuationtoken_empty)."""
    _put_keys(s3, bucket, KEYS)
    page = s3.list_objects_v2(Bucket=bucket, ContinuationToken="")
    assert page["ContinuationToken"] == ""
    assert page["IsTruncated"] is False
    assert [o["Key"] for o in page["Contents"]] == KEYS


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("gzip", "gzip"),
        ("deflate, gzip", "deflate, gzip"),
        ("gzip, aws-chunked", "gzip"),
        ("aws-chunked, gzip", "gzip"),
        ("aws-chunked, deflate, gzip", "deflate, gzip"),
        ("aws-chunked", None),
        ("aws-chunked, aws-chunked", None),
    ],
)
def test_content_encoding_is_kept_as_sent_without_aws_chunked(
    s3: Any, bucket: str, sent: str, stored: str | None
) -> None:
    """Content-Encoding comes back exactly as sent, minus its aws-chunked
    tokens (s3-tests test_object_content_encoding_aws_chunked): a value
    with several codings keeps its ", " separators."""
    s3.put_object(Bucket=bucket, Key="enc", Body=b"data", ContentEncoding=sent)
    for resp in (s3.head_object(Bucket=bucket, Key="enc"), s3.get_object(Bucket=bucket, Key="enc")):
        assert resp.get("ContentEncoding") == stored

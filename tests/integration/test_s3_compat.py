"""AWS S3 behaviours found by running the ceph/s3-tests suite against the server.

Each test names the s3-tests case it stands for; they drive the real server
process with boto3, like the rest of tests/integration.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

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


def test_max_keys_zero_on_versions_is_an_empty_page_not_truncated(s3: Any, bucket: str) -> None:
    """ListObjectVersions with max-keys=0 answers as ListObjects does: no
    entries and IsTruncated false (a truncated page must carry NextKeyMarker,
    and there is nothing to put in it); a bad version-id-marker is still
    refused."""
    _put_keys(s3, bucket, KEYS)
    page = s3.list_object_versions(Bucket=bucket, MaxKeys=0)
    assert page["IsTruncated"] is False
    assert "Versions" not in page and "DeleteMarkers" not in page
    assert "NextKeyMarker" not in page and "NextVersionIdMarker" not in page
    with pytest.raises(ClientError) as bad:
        s3.list_object_versions(Bucket=bucket, MaxKeys=0, VersionIdMarker="v")
    assert bad.value.response["Error"]["Code"] == "InvalidArgument"


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

"""Conditional deletes and the copy headers AWS applies whatever the
metadata directive, through boto3 against the real server.

AWS supports ``If-Match`` on DeleteObject and an ``<ETag>`` per DeleteObjects
entry on general purpose buckets: a client doing optimistic concurrency
("delete only the version I read") must never see its condition dropped and
the newer data deleted.  CopyObject's destination ``If-Match`` is the same
promise for a server-side copy.  And ``x-amz-storage-class``, the website
redirect and ``x-amz-checksum-algorithm`` describe the *copy*, so they count
under the default ``COPY`` directive too.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError


def _error(e: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = e.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def _keys(c: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in c.list_objects_v2(Bucket=bucket).get("Contents", [])]


# -- DeleteObject If-Match ------------------------------------------------------------


def test_delete_if_match_stale_etag_is_412_and_keeps_the_object(c: Any, bkt: str) -> None:
    old = c.put_object(Bucket=bkt, Key="k", Body=b"one")["ETag"]
    new = c.put_object(Bucket=bkt, Key="k", Body=b"two")["ETag"]
    with pytest.raises(ClientError) as e:
        c.delete_object(Bucket=bkt, Key="k", IfMatch=old)
    assert _error(e) == (412, "PreconditionFailed")
    assert c.get_object(Bucket=bkt, Key="k")["Body"].read() == b"two"
    assert c.delete_object(Bucket=bkt, Key="k", IfMatch=new)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert _keys(c, bkt) == []


def test_directory_bucket_delete_conditions_are_not_implemented_and_delete_nothing(c: Any, bkt: str) -> None:
    """x-amz-if-match-size / -last-modified-time (DeleteObject) and an
    entry's Size / LastModifiedTime (DeleteObjects), which AWS supports for
    directory buckets only: 501 NotImplemented, nothing deleted.  They were
    ignored, so a "delete only if still 3 bytes" deleted the newer object."""
    from datetime import UTC, datetime

    c.put_object(Bucket=bkt, Key="k", Body=b"newer and longer")
    when = datetime(2020, 1, 1, tzinfo=UTC)
    for condition in ({"IfMatchSize": 3}, {"IfMatchLastModifiedTime": when}):
        with pytest.raises(ClientError) as e:
            c.delete_object(Bucket=bkt, Key="k", **condition)
        assert _error(e) == (501, "NotImplemented")
    for entry in ({"Key": "k", "Size": 3}, {"Key": "k", "LastModifiedTime": when}):
        with pytest.raises(ClientError) as e:
            c.delete_objects(Bucket=bkt, Delete={"Objects": [entry]})
        assert _error(e) == (501, "NotImplemented")
    assert c.get_object(Bucket=bkt, Key="k")["Body"].read() == b"newer and longer"


def test_delete_if_match_star_needs_an_object(c: Any, bkt: str) -> None:
    with pytest.raises(ClientError) as e:
        c.delete_object(Bucket=bkt, Key="absent", IfMatch="*")
    assert _error(e) == (404, "NoSuchKey")
    c.put_object(Bucket=bkt, Key="here", Body=b"x")
    c.delete_object(Bucket=bkt, Key="here", IfMatch="*")
    assert _keys(c, bkt) == []


def test_delete_if_match_in_a_versioned_bucket(c: Any, bkt: str) -> None:
    """A failed condition writes no delete marker; a met one does; a current
    delete marker is no object (404)."""
    c.put_bucket_versioning(Bucket=bkt, VersioningConfiguration={"Status": "Enabled"})
    etag = c.put_object(Bucket=bkt, Key="v", Body=b"data")["ETag"]
    with pytest.raises(ClientError) as e:
        c.delete_object(Bucket=bkt, Key="v", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert _error(e) == (412, "PreconditionFailed")
    assert "DeleteMarkers" not in c.list_object_versions(Bucket=bkt)
    deleted = c.delete_object(Bucket=bkt, Key="v", IfMatch=etag)
    assert deleted["DeleteMarker"] is True
    with pytest.raises(ClientError) as e:
        c.delete_object(Bucket=bkt, Key="v", IfMatch="*")
    assert _error(e) == (404, "NoSuchKey")
    versions = c.list_object_versions(Bucket=bkt)
    assert (len(versions["Versions"]), len(versions["DeleteMarkers"])) == (1, 1)
    # The condition is evaluated against the current version only; naming a
    # version as well is refused rather than guessed at.
    version_id = versions["Versions"][0]["VersionId"]
    with pytest.raises(ClientError) as e:
        c.delete_object(Bucket=bkt, Key="v", VersionId=version_id, IfMatch=etag)
    assert _error(e) == (501, "NotImplemented")
    assert len(c.list_object_versions(Bucket=bkt)["Versions"]) == 1


def test_delete_if_match_etag_needs_read_permission(c: Any, bkt: str) -> None:
    """Matching an ETag reveals something about the object: AWS asks for
    s3:GetObject too.  ``*`` only needs the delete permission."""
    etag = c.put_object(Bucket=bkt, Key="secret", Body=b"s")["ETag"]
    c.put_object(Bucket=bkt, Key="other", Body=b"o")
    deny_read = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bkt}/*"}]}
    c.put_bucket_policy(Bucket=bkt, Policy=json.dumps(deny_read))
    try:
        with pytest.raises(ClientError) as e:
            c.delete_object(Bucket=bkt, Key="secret", IfMatch=etag)
        assert _error(e) == (403, "AccessDenied")
        result = c.delete_objects(Bucket=bkt, Delete={"Objects": [{"Key": "secret", "ETag": etag}]})
        assert [err["Code"] for err in result["Errors"]] == ["AccessDenied"]
        assert sorted(_keys(c, bkt)) == ["other", "secret"]
        c.delete_object(Bucket=bkt, Key="other", IfMatch="*")
        assert _keys(c, bkt) == ["secret"]
    finally:
        c.delete_bucket_policy(Bucket=bkt)


# -- DeleteObjects <ETag> -------------------------------------------------------------


def test_delete_objects_entry_etags_are_conditions(c: Any, bkt: str) -> None:
    a = c.put_object(Bucket=bkt, Key="a", Body=b"a")["ETag"]
    c.put_object(Bucket=bkt, Key="b", Body=b"b")
    c.put_object(Bucket=bkt, Key="c", Body=b"c")
    result = c.delete_objects(Bucket=bkt, Delete={"Objects": [
        {"Key": "a", "ETag": a},
        {"Key": "b", "ETag": a},  # a's ETag: stale for b
        {"Key": "c"},
        {"Key": "missing", "ETag": "*"},
    ]})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["a", "c"]
    assert sorted((err["Key"], err["Code"]) for err in result["Errors"]) == [
        ("b", "PreconditionFailed"), ("missing", "NoSuchKey")]
    assert _keys(c, bkt) == ["b"]


# -- CopyObject ---------------------------------------------------------------------


def test_copy_if_match_guards_the_destination(c: Any, bkt: str) -> None:
    c.put_object(Bucket=bkt, Key="src", Body=b"source")
    stale = c.put_object(Bucket=bkt, Key="dst", Body=b"first")["ETag"]
    live = c.put_object(Bucket=bkt, Key="dst", Body=b"second")["ETag"]
    source = {"Bucket": bkt, "Key": "src"}
    with pytest.raises(ClientError) as e:
        c.copy_object(Bucket=bkt, Key="dst", CopySource=source, IfMatch=stale)
    assert _error(e) == (412, "PreconditionFailed")
    assert c.get_object(Bucket=bkt, Key="dst")["Body"].read() == b"second"
    with pytest.raises(ClientError) as e:
        c.copy_object(Bucket=bkt, Key="nothing-here", CopySource=source, IfMatch="*")
    assert _error(e) == (404, "NoSuchKey")
    assert "nothing-here" not in _keys(c, bkt)
    c.copy_object(Bucket=bkt, Key="dst", CopySource=source, IfMatch=live)
    assert c.get_object(Bucket=bkt, Key="dst")["Body"].read() == b"source"


@pytest.mark.parametrize("storage_class", ["GLACIER", "STANDARD_IA", "NO_SUCH_CLASS"])
def test_copy_storage_class_is_checked_under_copy(c: Any, bkt: str, storage_class: str) -> None:
    c.put_object(Bucket=bkt, Key="src", Body=b"x")
    with pytest.raises(ClientError) as e:
        c.copy_object(Bucket=bkt, Key="dst", CopySource={"Bucket": bkt, "Key": "src"},
                      StorageClass=storage_class)  # fmt: skip
    assert _error(e) == (400, "InvalidStorageClass")
    assert _keys(c, bkt) == ["src"]
    c.copy_object(Bucket=bkt, Key="dst", CopySource={"Bucket": bkt, "Key": "src"}, StorageClass="STANDARD")
    assert sorted(_keys(c, bkt)) == ["dst", "src"]


def test_copy_never_takes_the_source_website_redirect(c: Any, bkt: str) -> None:
    c.put_object(Bucket=bkt, Key="page", Body=b"<p>", WebsiteRedirectLocation="/old.html", CacheControl="max-age=5")
    source = {"Bucket": bkt, "Key": "page"}
    c.copy_object(Bucket=bkt, Key="plain", CopySource=source)
    plain = c.head_object(Bucket=bkt, Key="plain")
    assert ("WebsiteRedirectLocation" not in plain, plain["CacheControl"]) == (True, "max-age=5")
    c.copy_object(Bucket=bkt, Key="moved", CopySource=source, WebsiteRedirectLocation="/new.html")
    assert c.head_object(Bucket=bkt, Key="moved")["WebsiteRedirectLocation"] == "/new.html"
    # Changing only the redirect is a valid copy onto itself.
    c.copy_object(Bucket=bkt, Key="page", CopySource=source, WebsiteRedirectLocation="/newer.html")
    assert c.head_object(Bucket=bkt, Key="page")["WebsiteRedirectLocation"] == "/newer.html"
    with pytest.raises(ClientError) as e:
        c.copy_object(Bucket=bkt, Key="bad", CopySource=source, WebsiteRedirectLocation="javascript:x")
    assert _error(e)[0] == 400


@pytest.mark.parametrize("directive", ["COPY", "REPLACE"])
def test_copy_checksum_algorithm_replaces_the_source_one(c: Any, bkt: str, directive: str) -> None:
    c.put_object(Bucket=bkt, Key="src", Body=b"checksummed", ChecksumAlgorithm="CRC32")
    source = {"Bucket": bkt, "Key": "src"}
    c.copy_object(Bucket=bkt, Key="same", CopySource=source, MetadataDirective=directive)
    c.copy_object(Bucket=bkt, Key="sha", CopySource=source, MetadataDirective=directive, ChecksumAlgorithm="SHA256")

    def checksums(key: str) -> set[str]:
        head = c.head_object(Bucket=bkt, Key=key, ChecksumMode="ENABLED")
        return {name for name in head if name.startswith("Checksum") and name != "ChecksumType"}

    assert checksums("same") == {"ChecksumCRC32"}
    assert checksums("sha") == {"ChecksumSHA256"}


def test_a_policy_can_require_conditional_deletes(c: Any, bkt: str) -> None:
    """AWS's policy enforcing conditional deletes (``s3:if-match`` must be
    there) is accepted and applies to DeleteObject and each DeleteObjects
    entry (its ``ETag``)."""
    etags = {k: c.put_object(Bucket=bkt, Key=k, Body=k.encode())["ETag"] for k in ("a", "b", "c", "d")}
    require = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject", "Resource": f"arn:aws:s3:::{bkt}/*",
        "Condition": {"Null": {"s3:if-match": "true"}}}]}
    c.put_bucket_policy(Bucket=bkt, Policy=json.dumps(require))
    try:
        with pytest.raises(ClientError) as e:
            c.delete_object(Bucket=bkt, Key="a")
        assert _error(e) == (403, "AccessDenied")
        c.delete_object(Bucket=bkt, Key="a", IfMatch=etags["a"])
        result = c.delete_objects(Bucket=bkt, Delete={"Objects": [{"Key": "b", "ETag": etags["b"]}, {"Key": "c"}]})
        assert [d["Key"] for d in result["Deleted"]] == ["b"]
        assert [(err["Key"], err["Code"]) for err in result["Errors"]] == [("c", "AccessDenied")]
        assert _keys(c, bkt) == ["c", "d"]
    finally:
        c.delete_bucket_policy(Bucket=bkt)

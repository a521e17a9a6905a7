"""Object and bucket tagging through boto3 against the real server process."""

from __future__ import annotations

import uuid
from typing import Any, Iterator

import pytest
from botocore.exceptions import ClientError

from tests.integration.test_versioning import enable, purge


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def _tagset(tags: dict[str, str]) -> dict[str, Any]:
    return {"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}


def _tags(resp: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resp["TagSet"]}


@pytest.fixture
def tbucket(s3: Any) -> Iterator[str]:
    name = f"tag-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    yield name
    purge(s3, name)


def test_object_tagging_roundtrip(s3, tbucket):
    """Put/Get/DeleteObjectTagging, x-amz-tagging on PUT and the tag count on GET/HEAD."""
    s3.put_object(Bucket=tbucket, Key="k", Body=b"data", Tagging="project=apollo&stage=")
    assert _tags(s3.get_object_tagging(Bucket=tbucket, Key="k")) == {"project": "apollo", "stage": ""}
    assert s3.get_object(Bucket=tbucket, Key="k")["TagCount"] == 2
    s3.put_object_tagging(Bucket=tbucket, Key="k", Tagging=_tagset({"zeta": "1", "alpha": "2", "mid": "3"}))
    # A set without order in S3: always answered sorted by key.
    assert [t["Key"] for t in s3.get_object_tagging(Bucket=tbucket, Key="k")["TagSet"]] == ["alpha", "mid", "zeta"]
    s3.put_object_tagging(Bucket=tbucket, Key="k", Tagging=_tagset({"only": "one"}))
    assert _tags(s3.get_object_tagging(Bucket=tbucket, Key="k")) == {"only": "one"}
    assert s3.head_object(Bucket=tbucket, Key="k")["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "1"
    resp = s3.delete_object_tagging(Bucket=tbucket, Key="k")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_object_tagging(Bucket=tbucket, Key="k")["TagSet"] == []
    assert "TagCount" not in s3.get_object(Bucket=tbucket, Key="k")
    with pytest.raises(ClientError) as e:
        s3.put_object_tagging(Bucket=tbucket, Key="missing", Tagging=_tagset({"a": "b"}))
    assert _code(e) == "NoSuchKey"


def test_tagging_does_not_touch_the_data(s3, tbucket):
    """Tagging is metadata-only: bytes, ETag and Last-Modified are unchanged."""
    s3.put_object(Bucket=tbucket, Key="k", Body=b"x" * 100_000)
    before = s3.head_object(Bucket=tbucket, Key="k")
    s3.put_object_tagging(Bucket=tbucket, Key="k", Tagging=_tagset({"a": "1"}))
    after = s3.get_object(Bucket=tbucket, Key="k")
    assert after["Body"].read() == b"x" * 100_000
    assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])


@pytest.mark.parametrize("tags, ok", [
    ({str(i): str(i) for i in range(10)}, True),
    ({str(i): str(i) for i in range(11)}, False),
    ({"k" * 128: "v" * 256}, True),
    ({"k" * 129: "v"}, False),
    ({"k": "v" * 257}, False),
    ({"aws:reserved": "v"}, False),
    # AWS's characters: letters, digits and spaces of any script, and _ . : / = + - @
    ({"ключ": "значение 1+1=2 a@b.c/d:e_f-g"}, True),
    ({"platform": "metal,openstack"}, False),
    ({"note": "a;b!"}, False),
    ({"name (csv)": "api"}, False),
    ({"tab": "a\tb"}, False),
])
def test_object_tag_limits(s3, tbucket, tags, ok):
    """AWS limits: 10 tags, keys 1-128 and values 0-256 characters, no aws: keys; a refused set changes nothing."""
    s3.put_object(Bucket=tbucket, Key="k", Body=b"x")
    if ok:
        s3.put_object_tagging(Bucket=tbucket, Key="k", Tagging=_tagset(tags))
        assert _tags(s3.get_object_tagging(Bucket=tbucket, Key="k")) == tags
        return
    with pytest.raises(ClientError) as e:
        s3.put_object_tagging(Bucket=tbucket, Key="k", Tagging=_tagset(tags))
    assert _code(e) == "InvalidTag"
    assert s3.get_object_tagging(Bucket=tbucket, Key="k")["TagSet"] == []


def test_duplicate_tag_keys_and_header_limits(s3, tbucket):
    """Repeated keys are InvalidTag in the body and InvalidArgument in
    x-amz-tagging (AWS's codes); 11 tags in the header are InvalidTag."""
    s3.put_object(Bucket=tbucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.put_object_tagging(Bucket=tbucket, Key="k", Tagging={"TagSet": [
            {"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]})
    assert _code(e) == "InvalidTag"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=tbucket, Key="h", Body=b"x", Tagging="a=1&a=2")
    assert _code(e) == "InvalidArgument"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=tbucket, Key="h", Body=b"x", Tagging="&".join(f"t{i}=v" for i in range(11)))
    assert _code(e) == "InvalidTag"


def test_copy_tagging_directive(s3, tbucket):
    """CopyObject copies the source's tags by default and replaces them with x-amz-tagging-directive REPLACE."""
    s3.put_object(Bucket=tbucket, Key="src", Body=b"x", Tagging="a=1")
    s3.copy_object(Bucket=tbucket, Key="copy", CopySource={"Bucket": tbucket, "Key": "src"})
    assert _tags(s3.get_object_tagging(Bucket=tbucket, Key="copy")) == {"a": "1"}
    s3.copy_object(Bucket=tbucket, Key="replaced", CopySource={"Bucket": tbucket, "Key": "src"},
                   TaggingDirective="REPLACE", Tagging="b=2")
    assert _tags(s3.get_object_tagging(Bucket=tbucket, Key="replaced")) == {"b": "2"}


def test_tags_per_version(s3, tbucket):
    """Each version has its own tags, addressed with versionId; responses carry x-amz-version-id."""
    enable(s3, tbucket)
    v1 = s3.put_object(Bucket=tbucket, Key="k", Body=b"1", Tagging="gen=1")["VersionId"]
    v2 = s3.put_object(Bucket=tbucket, Key="k", Body=b"2")["VersionId"]
    put = s3.put_object_tagging(Bucket=tbucket, Key="k", VersionId=v1, Tagging=_tagset({"gen": "one"}))
    assert put["VersionId"] == v1
    got = s3.get_object_tagging(Bucket=tbucket, Key="k", VersionId=v1)
    assert got["VersionId"] == v1 and _tags(got) == {"gen": "one"}
    current = s3.get_object_tagging(Bucket=tbucket, Key="k")
    assert current["VersionId"] == v2 and current["TagSet"] == []
    deleted = s3.delete_object_tagging(Bucket=tbucket, Key="k", VersionId=v1)
    assert deleted["VersionId"] == v1
    assert s3.get_object_tagging(Bucket=tbucket, Key="k", VersionId=v1)["TagSet"] == []
    marker = s3.delete_object(Bucket=tbucket, Key="k")["VersionId"]
    with pytest.raises(ClientError) as e:
        s3.put_object_tagging(Bucket=tbucket, Key="k", VersionId=marker, Tagging=_tagset({"a": "b"}))
    assert _code(e) == "MethodNotAllowed"
    with pytest.raises(ClientError) as e:
        s3.get_object_tagging(Bucket=tbucket, Key="k")
    assert _code(e) == "NoSuchKey"


def test_bucket_tagging(s3, tbucket):
    """Get with none is NoSuchTagSet; Put replaces, Delete removes; 50 tags allowed, 51 refused."""
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=tbucket)
    assert _code(e) == "NoSuchTagSet"
    s3.put_bucket_tagging(Bucket=tbucket, Tagging=_tagset({"team": "storage", "cost": "42"}))
    assert _tags(s3.get_bucket_tagging(Bucket=tbucket)) == {"team": "storage", "cost": "42"}
    fifty = {f"k{i}": f"v{i}" for i in range(50)}
    s3.put_bucket_tagging(Bucket=tbucket, Tagging=_tagset(fifty))
    assert _tags(s3.get_bucket_tagging(Bucket=tbucket)) == fifty
    with pytest.raises(ClientError) as e:
        s3.put_bucket_tagging(Bucket=tbucket, Tagging=_tagset({**fifty, "extra": "x"}))
    assert _code(e) == "InvalidTag"
    with pytest.raises(ClientError) as e:
        s3.put_bucket_tagging(Bucket=tbucket, Tagging=_tagset({"k" * 129: "v"}))
    assert _code(e) == "InvalidTag"
    assert _tags(s3.get_bucket_tagging(Bucket=tbucket)) == fifty
    # Tagging and versioning are both on the bucket record: neither loses the other.
    enable(s3, tbucket)
    assert _tags(s3.get_bucket_tagging(Bucket=tbucket)) == fifty
    assert s3.delete_bucket_tagging(Bucket=tbucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=tbucket)
    assert _code(e) == "NoSuchTagSet"
    assert s3.get_bucket_versioning(Bucket=tbucket)["Status"] == "Enabled"

"""Bucket operations through boto3 against the real server process."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from tests.integration.raw import signed


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def test_create_head_list_delete_bucket(s3):
    """A created bucket is listed and HEAD-able; after delete it is gone."""
    name = f"b-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.head_bucket(Bucket=name)
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert name in names
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=name)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


@pytest.mark.parametrize("name", ["ab", "UPPER", "-lead", "trail-", "has_underscore", "a" * 64, "dots.not.allowed", "health",
                                  # AWS's reserved prefixes and suffixes
                                  "xn--abc", "sthree-abc", "amzn-s3-demo-abc", "abc-s3alias", "abc--ol-s3",
                                  "abc--x-s3", "abc--table-s3"])
def test_invalid_bucket_names(s3, name):
    """SPEC §3.1 naming rules answer InvalidBucketName and create nothing."""
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=name)
    assert _code(e) == "InvalidBucketName"


@pytest.mark.parametrize("encoded", ["nlbucket%0A", "nl-other%0A", "%0Anlbucket"])
def test_a_newline_in_a_bucket_name_is_invalid(server, s3, encoded):
    """A name ending in a newline used to pass the naming rule (a ``$`` that
    also matches before a final newline): CreateBucket answered 200 and
    ListBuckets showed the name with its newline."""
    status, body = signed(server, "PUT", f"/{encoded}")
    assert (status, b"<Code>InvalidBucketName</Code>" in body) == (400, True), body
    assert all("\n" not in b["Name"] for b in s3.list_buckets()["Buckets"])


def test_create_twice_is_already_owned(s3, bucket):
    """Re-creating one's own bucket is BucketAlreadyOwnedByYou (409)."""
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=bucket)
    assert _code(e) == "BucketAlreadyOwnedByYou"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409


def test_delete_non_empty_bucket(s3, bucket):
    """DeleteBucket on a bucket with objects is BucketNotEmpty and keeps them."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=bucket)
    assert _code(e) == "BucketNotEmpty"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_missing_bucket_errors(s3):
    """Operations on a missing bucket answer NoSuchBucket with the XML fields."""
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket="no-such-bucket-here")
    assert _code(e) == "NoSuchBucket"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert e.value.response["ResponseMetadata"]["RequestId"]
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket="no-such-bucket-here")
    assert _code(e) == "NoSuchBucket"


def test_location_and_versioning_and_acl(s3, bucket):
    """GetBucketLocation (us-east-1 is empty), versioning never set, owner ACL."""
    assert s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") in (None, "")
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    acl = s3.get_bucket_acl(Bucket=bucket)
    assert acl["Grants"][0]["Permission"] == "FULL_CONTROL"


def test_create_with_location_constraint(s3):
    """A LocationConstraint other than the server's region is refused."""
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=f"b-{uuid.uuid4().hex[:12]}",
                         CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert _code(e) == "InvalidLocationConstraint"


@pytest.mark.parametrize("call,code", [
    ("get_bucket_policy", "NoSuchBucketPolicy"),
    ("get_bucket_cors", "NoSuchCORSConfiguration"),
    ("get_bucket_lifecycle_configuration", "NoSuchLifecycleConfiguration"),
    ("get_bucket_website", "NoSuchWebsiteConfiguration"),
    ("get_bucket_encryption", "ServerSideEncryptionConfigurationNotFoundError"),
])
def test_absent_configurations(s3, bucket, call, code):
    """Reading configurations we never hold answers AWS's 'not found' code."""
    with pytest.raises(ClientError) as e:
        getattr(s3, call)(Bucket=bucket)
    assert _code(e) == code


def test_configurations_never_held_read_as_aws_reads_them_when_absent(s3, bucket):
    """Logging, notifications, request payment and transfer acceleration read
    as AWS answers for a bucket without them (empty documents, the bucket
    owner pays); replication is AWS's 404."""
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=bucket)
    notification = s3.get_bucket_notification_configuration(Bucket=bucket)
    assert not {"TopicConfigurations", "QueueConfigurations", "LambdaFunctionConfigurations"} & set(notification)
    assert s3.get_bucket_request_payment(Bucket=bucket)["Payer"] == "BucketOwner"
    assert "Status" not in s3.get_bucket_accelerate_configuration(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_replication(Bucket=bucket)
    assert _code(e) == "ReplicationConfigurationNotFoundError"
    with pytest.raises(ClientError) as e:
        s3.get_bucket_logging(Bucket=f"missing-{uuid.uuid4().hex[:8]}")
    assert _code(e) == "NoSuchBucket"


def test_unsupported_writes_are_not_implemented(s3, bucket):
    """Changing an unsupported configuration is 501 NotImplemented, never a silent OK."""
    with pytest.raises(ClientError) as e:
        s3.put_bucket_request_payment(Bucket=bucket, RequestPaymentConfiguration={"Payer": "Requester"})
    assert _code(e) == "NotImplemented"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501


def test_list_buckets_pages_with_max_buckets_and_prefix(s3):
    """ListBuckets honours max-buckets (with a continuation token to resume)
    and prefix, as AWS does since 2024; a bad max-buckets is InvalidArgument."""
    tag = uuid.uuid4().hex[:8]
    names = sorted(f"page-{tag}-{i}" for i in range(5))
    for name in names:
        s3.create_bucket(Bucket=name)
    try:
        seen, token, pages = [], None, 0
        while True:
            kwargs = {"MaxBuckets": 2, "Prefix": f"page-{tag}-"}
            if token:
                kwargs["ContinuationToken"] = token
            reply = s3.list_buckets(**kwargs)
            pages += 1
            assert len(reply["Buckets"]) <= 2
            # With any parameter AWS names each bucket's region.
            assert {b.get("BucketRegion") for b in reply["Buckets"]} <= {"us-east-1"}
            assert all("BucketRegion" in b for b in reply["Buckets"])
            assert reply["Prefix"] == f"page-{tag}-"
            seen += [b["Name"] for b in reply["Buckets"]]
            token = reply.get("ContinuationToken")
            if not token:
                break
        assert seen == names and pages == 3
        plain = s3.list_buckets()["Buckets"]
        assert not any("BucketRegion" in b for b in plain)  # no parameter: as AWS, none
        everything = [b["Name"] for b in plain]
        assert set(names) <= set(everything) and "ContinuationToken" not in s3.list_buckets()
        for bad in (10001, 99999):
            with pytest.raises(ClientError) as e:
                s3.list_buckets(MaxBuckets=bad)
            assert e.value.response["Error"]["Code"] == "InvalidArgument"
    finally:
        for name in names:
            s3.delete_bucket(Bucket=name)


def test_list_buckets_filters_by_region_and_checks_its_parameters(server, s3):
    """``bucket-region`` limits the list to buckets of that region (AWS's
    reference), so another region's list is empty; a continuation token that
    is not ours and a max-buckets that is not plain digits are
    InvalidArgument, as the object listings' are (they listed from the start,
    and took "+2", " 2" and "1_0")."""
    tag = uuid.uuid4().hex[:8]
    names = sorted(f"region-{tag}-{i}" for i in range(3))
    for name in names:
        s3.create_bucket(Bucket=name)
    try:
        here = s3.list_buckets(BucketRegion="us-east-1", Prefix=f"region-{tag}-")["Buckets"]
        assert [b["Name"] for b in here] == names
        assert s3.list_buckets(BucketRegion="eu-west-1", Prefix=f"region-{tag}-").get("Buckets", []) == []
        for query in ("continuation-token=!!!", "continuation-token=", "max-buckets=%2B2", "max-buckets=%202",
                      "max-buckets=1_0", "max-buckets=0"):
            status, body = signed(server, "GET", f"/?{query}")
            if query == "continuation-token=":
                assert status == 200, body  # empty: absent, as AWS
                continue
            assert status == 400 and b"<Code>InvalidArgument</Code>" in body, (query, body)
        status, body = signed(server, "GET", "/?max-buckets=0002")
        assert status == 200 and body.count(b"<Bucket>") == 2, body
    finally:
        for name in names:
            s3.delete_bucket(Bucket=name)

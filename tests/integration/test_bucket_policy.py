"""Bucket policies end to end: boto3, unsigned requests, MinIO's SDK and the
gRPC client against one real server with several tenants.

What is pinned:

* Put/Get/DeleteBucketPolicy and GetBucketPolicyStatus, the document
  returned as sent, a malformed one refused with nothing changed;
* anonymous requests: AccessDenied without a policy, NoSuchBucket for no
  bucket, and exactly what a public policy allows (MinIO's "download"
  policy, a write-only upload prefix);
* a Deny beats the owner and every role, except on the policy itself, so
  the owner can always undo it;
* an Allow reaches a principal without roles, and a principal of another
  tenant (which without a policy still gets NoSuchBucket);
* conditions on the source address, the transport, the listing prefix and
  the object's existing tags;
* DeleteObjects, CopyObject's source and the gRPC API obey the same policy.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
import requests
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from lightningstor.client.errors import PermissionDeniedError
from tests.integration.tenants import Identity, Spec, Tenancy, s3_clients
from tests.integration.tools import minio_client

# The server runs one worker, and a policy change clears that worker's
# bucket cache at once; other workers would see it within the cache's second.
SETTLE = 0.0


@pytest.fixture(scope="module")
def tenancy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenancy]:
    t = Tenancy.start(tmp_path_factory.mktemp("policy"), cache_seconds=0.5)
    yield t
    t.stop()


@pytest.fixture(scope="module")
def ids(tenancy: Tenancy) -> dict[str, Identity]:
    return tenancy.provision([
        Spec("acme-admin", "acme", roles=("admin",)),
        Spec("acme-nobody", "acme"),
        Spec("web-rw", "acme", "web", roles=("read-write",)),
        Spec("web-admin", "acme", "web", roles=("admin",)),
        Spec("globex-admin", "globex", roles=("admin",)),
    ])


@pytest.fixture(scope="module")
def s3(tenancy: Tenancy, ids: dict[str, Identity]) -> Callable[[str], Any]:
    """``s3(principal_id)``: that principal's boto3 client (cached)."""
    return s3_clients(tenancy, ids)


@pytest.fixture(scope="module")
def anonymous(tenancy: Tenancy) -> Any:
    """boto3 sending unsigned requests, as a browser or curl would."""
    return boto3.client(
        "s3", endpoint_url=tenancy.server.endpoint, region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"},
                      retries={"max_attempts": 1, "mode": "standard"}),
    )  # fmt: skip


@pytest.fixture
def bucket(s3: Callable[[str], Any]) -> Iterator[str]:
    """A bucket of acme (org level), owned by acme-admin, holding ``a.txt``."""
    name = f"pol-{uuid.uuid4().hex[:12]}"
    admin = s3("acme-admin")
    admin.create_bucket(Bucket=name)
    admin.put_object(Bucket=name, Key="a.txt", Body=b"alpha")
    yield name
    try:
        admin.delete_bucket_policy(Bucket=name)
        for page in admin.get_paginator("list_objects_v2").paginate(Bucket=name):
            for obj in page.get("Contents", []):
                admin.delete_object(Bucket=name, Key=obj["Key"])
        admin.delete_bucket(Bucket=name)
    except ClientError:
        pass


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def statement(effect: str, principal: Any, action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": effect, "Principal": principal, "Action": action, "Resource": resource, **extra}


def code_of(call: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(ClientError) as info:
        call()
    err = info.value.response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"]


def fetch(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, data=data)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def put_policy(s3: Callable[[str], Any], bucket: str, text: str) -> None:
    s3("acme-admin").put_bucket_policy(Bucket=bucket, Policy=text)
    time.sleep(SETTLE)


# -- the configuration -------------------------------------------------------------


def test_put_get_delete_policy_and_status(s3: Callable[[str], Any], bucket: str) -> None:
    admin = s3("acme-admin")
    assert code_of(lambda: admin.get_bucket_policy(Bucket=bucket)) == (404, "NoSuchBucketPolicy")
    assert code_of(lambda: admin.get_bucket_policy_status(Bucket=bucket)) == (404, "NoSuchBucketPolicy")
    # Sent with its own spacing and key order: returned byte for byte.
    text = ('{ "Statement": [ {"Effect":"Allow", "Principal":"*", "Action":"s3:GetObject",\n'
            ' "Resource":"arn:aws:s3:::BUCKET/*"} ], "Version":"2012-10-17" }').replace("BUCKET", bucket)
    put = admin.put_bucket_policy(Bucket=bucket, Policy=text)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert admin.get_bucket_policy(Bucket=bucket)["Policy"] == text
    assert admin.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is True
    private = policy(statement("Allow", {"AWS": "arn:aws:iam::acme:root"}, "s3:GetObject", f"arn:aws:s3:::{bucket}/*"))
    admin.put_bucket_policy(Bucket=bucket, Policy=private)
    assert admin.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is False
    deleted = admin.delete_bucket_policy(Bucket=bucket)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert code_of(lambda: admin.get_bucket_policy(Bucket=bucket)) == (404, "NoSuchBucketPolicy")
    # Deleting an absent policy is no error, as in AWS.
    assert admin.delete_bucket_policy(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204


@pytest.mark.parametrize("text", [
    "not json",
    "[]",
    '{"Version":"2012-10-17"}',
    '{"Version":"2012-10-17","Statement":[{"Effect":"Maybe","Principal":"*","Action":"s3:GetObject",'
    '"Resource":"arn:aws:s3:::BUCKET/*"}]}',
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:Fly",'
    '"Resource":"arn:aws:s3:::BUCKET/*"}]}',
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject",'
    '"Resource":"arn:aws:s3:::some-other-bucket/*"}]}',
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject",'
    '"Resource":"arn:aws:s3:::BUCKET/*"}]}',
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject",'
    '"Resource":"arn:aws:s3:::BUCKET/*","Condition":{"StringEqualz":{"s3:prefix":"x"}}}]}',
    # NotPrincipal goes with Deny only (AWS); with Allow it opened the bucket to every other tenant.
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotPrincipal":{"AWS":"arn:aws:iam::globex:root"},'
    '"Action":"s3:ListBucket","Resource":"arn:aws:s3:::BUCKET"}]}',
])  # fmt: skip
def test_malformed_policy_is_refused_and_changes_nothing(
    s3: Callable[[str], Any], bucket: str, text: str
) -> None:
    admin = s3("acme-admin")
    kept = policy(statement("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/*"))
    admin.put_bucket_policy(Bucket=bucket, Policy=kept)
    assert code_of(lambda: admin.put_bucket_policy(Bucket=bucket, Policy=text.replace("BUCKET", bucket))) == (
        400, "MalformedPolicy",
    )
    assert admin.get_bucket_policy(Bucket=bucket)["Policy"] == kept


def test_oversized_policy_is_refused(s3: Callable[[str], Any], bucket: str) -> None:
    admin = s3("acme-admin")
    big = policy(*[
        statement("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/prefix-{i:05d}-{'x' * 40}/*", Sid=f"s{i}")
        for i in range(400)
    ])  # fmt: skip
    assert len(big) > 20 * 1024
    status, code = code_of(lambda: admin.put_bucket_policy(Bucket=bucket, Policy=big))
    assert status == 400
    assert code_of(lambda: admin.get_bucket_policy(Bucket=bucket)) == (404, "NoSuchBucketPolicy")


def test_only_administrators_change_the_policy(s3: Callable[[str], Any], bucket: str) -> None:
    text = policy(statement("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/*"))
    assert code_of(lambda: s3("web-rw").put_bucket_policy(Bucket=bucket, Policy=text)) == (403, "AccessDenied")
    assert code_of(lambda: s3("acme-nobody").get_bucket_policy(Bucket=bucket)) == (403, "AccessDenied")
    assert code_of(lambda: s3("globex-admin").get_bucket_policy(Bucket=bucket)) == (404, "NoSuchBucket")


# -- anonymous requests ------------------------------------------------------------------


def test_anonymous_without_policy_is_denied(tenancy: Tenancy, anonymous: Any, bucket: str) -> None:
    assert code_of(lambda: anonymous.get_object(Bucket=bucket, Key="a.txt")) == (403, "AccessDenied")
    assert code_of(lambda: anonymous.list_objects_v2(Bucket=bucket)) == (403, "AccessDenied")
    assert code_of(lambda: anonymous.put_object(Bucket=bucket, Key="b", Body=b"x")) == (403, "AccessDenied")
    assert code_of(lambda: anonymous.list_buckets()) == (403, "AccessDenied")
    assert code_of(lambda: anonymous.create_bucket(Bucket=f"anon-{uuid.uuid4().hex[:8]}")) == (403, "AccessDenied")
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    assert code_of(lambda: anonymous.get_object(Bucket=missing, Key="a.txt")) == (404, "NoSuchBucket")
    status, body = fetch(f"{tenancy.server.endpoint}/{bucket}/a.txt")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body


def test_many_wildcards_and_a_long_key_answer_at_once(
    tenancy: Tenancy, s3: Callable[[str], Any], bucket: str
) -> None:
    """A public-read pattern with several stars, and an anonymous GET of a
    1,000-byte key made of the character between them: the pattern was a
    backtracking regex, and the request held the server's one reactor for
    minutes (every client waited, /health included).  A refusal now, at once,
    and the matching keys are still read."""
    put_policy(s3, bucket, policy(
        statement("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/*/*/*/*/*/*.jpg"),
    ))
    s3("acme-admin").put_object(Bucket=bucket, Key="a/b/c/d/e/f.jpg", Body=b"jpeg")
    started = time.monotonic()
    status, _ = fetch(f"{tenancy.server.endpoint}/{bucket}/{'a/' * 500}")
    assert status == 403
    assert fetch(f"{tenancy.server.endpoint}/{bucket}/a/b/c/d/e/f.jpg") == (200, b"jpeg")
    assert time.monotonic() - started < 10


def test_minio_download_policy_opens_reads_only(
    tenancy: Tenancy, s3: Callable[[str], Any], anonymous: Any, bucket: str
) -> None:
    """The document ``mc anonymous set download`` writes."""
    download = policy(
        statement("Allow", {"AWS": ["*"]}, ["s3:GetBucketLocation", "s3:ListBucket"], [f"arn:aws:s3:::{bucket}"]),
        statement("Allow", {"AWS": ["*"]}, ["s3:GetObject"], [f"arn:aws:s3:::{bucket}/*"]),
    )
    put_policy(s3, bucket, download)
    assert anonymous.get_object(Bucket=bucket, Key="a.txt")["Body"].read() == b"alpha"
    assert anonymous.head_object(Bucket=bucket, Key="a.txt")["ContentLength"] == 5
    assert [o["Key"] for o in anonymous.list_objects_v2(Bucket=bucket)["Contents"]] == ["a.txt"]
    status, body = fetch(f"{tenancy.server.endpoint}/{bucket}/a.txt")
    assert (status, body) == (200, b"alpha")
    assert code_of(lambda: anonymous.get_object(Bucket=bucket, Key="nope")) == (404, "NoSuchKey")
    assert code_of(lambda: anonymous.put_object(Bucket=bucket, Key="b", Body=b"x")) == (403, "AccessDenied")
    assert code_of(lambda: anonymous.delete_object(Bucket=bucket, Key="a.txt")) == (403, "AccessDenied")
    assert code_of(lambda: anonymous.get_bucket_policy(Bucket=bucket)) == (403, "AccessDenied")
    assert code_of(lambda: anonymous.list_object_versions(Bucket=bucket)) == (403, "AccessDenied")
    s3("acme-admin").delete_bucket_policy(Bucket=bucket)
    time.sleep(SETTLE)
    assert code_of(lambda: anonymous.get_object(Bucket=bucket, Key="a.txt")) == (403, "AccessDenied")


def test_anonymous_reads_take_no_response_overrides(
    tenancy: Tenancy, s3: Callable[[str], Any], anonymous: Any, bucket: str
) -> None:
    """``response-*`` parameters on an unsigned GET are AWS's 400
    InvalidRequest: otherwise anyone could have a public text upload served
    as an HTML page of the storage origin.  Signed callers keep them."""
    admin = s3("acme-admin")
    admin.put_object(Bucket=bucket, Key="upload.txt", Body=b"<script>alert(1)</script>", ContentType="text/plain")
    put_policy(s3, bucket, policy(statement("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/*")))
    assert anonymous.get_object(Bucket=bucket, Key="upload.txt")["ContentType"] == "text/plain"
    assert code_of(lambda: anonymous.get_object(
        Bucket=bucket, Key="upload.txt", ResponseContentType="text/html")) == (400, "InvalidRequest")
    status, body = fetch(
        f"{tenancy.server.endpoint}/{bucket}/upload.txt?response-content-type=text/html&response-content-disposition=inline")
    assert status == 400 and b"<Code>InvalidRequest</Code>" in body
    signed = admin.get_object(Bucket=bucket, Key="upload.txt", ResponseContentType="text/html")
    assert signed["ContentType"] == "text/html"


def test_lock_headers_need_the_retention_and_legal_hold_permissions(s3: Callable[[str], Any]) -> None:
    """Object Lock headers on PutObject, CopyObject and CreateMultipartUpload
    are also s3:PutObjectRetention / s3:PutObjectLegalHold, as in AWS: a
    policy denying those cannot be bypassed by writing a locked version
    outright (which nobody could then delete)."""
    import datetime

    admin = s3("acme-admin")
    name = f"lock-{uuid.uuid4().hex[:12]}"
    admin.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    admin.put_object(Bucket=name, Key="src", Body=b"s")
    put_policy(s3, name, policy(
        statement("Deny", "*", ["s3:PutObjectRetention", "s3:PutObjectLegalHold"], f"arn:aws:s3:::{name}/*"),
    ))  # fmt: skip
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    retention = {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": until}
    hold = {"ObjectLockLegalHoldStatus": "ON"}
    for lock in (retention, hold):
        assert code_of(lambda lock=lock: admin.put_object(Bucket=name, Key="k", Body=b"x", **lock)) == (403, "AccessDenied")
        assert code_of(lambda lock=lock: admin.copy_object(
            Bucket=name, Key="k", CopySource={"Bucket": name, "Key": "src"}, **lock)) == (403, "AccessDenied")
        assert code_of(lambda lock=lock: admin.create_multipart_upload(Bucket=name, Key="k", **lock)) == (403, "AccessDenied")
    assert code_of(lambda: admin.head_object(Bucket=name, Key="k"))[0] == 404  # nothing was written
    assert "Uploads" not in admin.list_multipart_uploads(Bucket=name)
    admin.put_object(Bucket=name, Key="k", Body=b"plain")  # a write without lock headers is allowed
    admin.delete_bucket_policy(Bucket=name)
    locked = admin.put_object(Bucket=name, Key="k2", Body=b"x", **hold)  # and with them once allowed
    assert admin.get_object_legal_hold(Bucket=name, Key="k2", VersionId=locked["VersionId"])["LegalHold"]["Status"] == "ON"
    admin.put_object_legal_hold(Bucket=name, Key="k2", VersionId=locked["VersionId"], LegalHold={"Status": "OFF"})


def test_missing_keys_are_404_only_for_callers_who_may_list(
    s3: Callable[[str], Any], anonymous: Any, bucket: str
) -> None:
    """Read-only without s3:ListBucket: a missing key is 403, as from AWS, so
    the keys that exist cannot be probed one by one."""
    put_policy(s3, bucket, policy(statement("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/*")))
    assert anonymous.get_object(Bucket=bucket, Key="a.txt")["Body"].read() == b"alpha"
    assert code_of(lambda: anonymous.get_object(Bucket=bucket, Key="nope")) == (403, "AccessDenied")
    assert code_of(lambda: anonymous.head_object(Bucket=bucket, Key="nope"))[0] == 403
    # The owner may list: 404.
    assert code_of(lambda: s3("acme-admin").get_object(Bucket=bucket, Key="nope")) == (404, "NoSuchKey")


def test_anonymous_uploads_to_one_prefix(s3: Callable[[str], Any], anonymous: Any, bucket: str) -> None:
    put_policy(s3, bucket, policy(statement("Allow", "*", "s3:PutObject", f"arn:aws:s3:::{bucket}/drop/*")))
    anonymous.put_object(Bucket=bucket, Key="drop/1.txt", Body=b"dropped")
    assert s3("acme-admin").get_object(Bucket=bucket, Key="drop/1.txt")["Body"].read() == b"dropped"
    assert code_of(lambda: anonymous.put_object(Bucket=bucket, Key="other.txt", Body=b"x")) == (403, "AccessDenied")
    assert code_of(lambda: anonymous.get_object(Bucket=bucket, Key="drop/1.txt")) == (403, "AccessDenied")
    # A multipart upload is s3:PutObject too.
    upload = anonymous.create_multipart_upload(Bucket=bucket, Key="drop/big")
    part = anonymous.upload_part(Bucket=bucket, Key="drop/big", UploadId=upload["UploadId"], PartNumber=1,
                                 Body=b"p" * 1024)
    anonymous.complete_multipart_upload(Bucket=bucket, Key="drop/big", UploadId=upload["UploadId"],
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert s3("acme-admin").head_object(Bucket=bucket, Key="drop/big")["ContentLength"] == 1024


def test_anonymous_form_upload_needs_a_policy(tenancy: Tenancy, s3: Callable[[str], Any], bucket: str) -> None:
    """A browser form without policy or signature fields (PostObject)."""
    url = f"{tenancy.server.endpoint}/{bucket}"

    def form(key: str) -> Any:
        return requests.post(url, data={"key": key}, files={"file": ("f.txt", b"form")}, timeout=30)

    refused = form("drop/form.txt")
    assert refused.status_code == 403 and b"<Code>AccessDenied</Code>" in refused.content
    put_policy(s3, bucket, policy(statement("Allow", "*", "s3:PutObject", f"arn:aws:s3:::{bucket}/drop/*")))
    assert form("drop/form.txt").status_code == 204
    assert s3("acme-admin").get_object(Bucket=bucket, Key="drop/form.txt")["Body"].read() == b"form"
    assert form("elsewhere.txt").status_code == 403


def test_anonymous_listing_limited_to_a_prefix(s3: Callable[[str], Any], anonymous: Any, bucket: str) -> None:
    s3("acme-admin").put_object(Bucket=bucket, Key="pub/x", Body=b"x")
    put_policy(s3, bucket, policy(statement(
        "Allow", "*", "s3:ListBucket", f"arn:aws:s3:::{bucket}", Condition={"StringLike": {"s3:prefix": "pub/*"}},
    )))  # fmt: skip
    listed = anonymous.list_objects_v2(Bucket=bucket, Prefix="pub/")
    assert [o["Key"] for o in listed["Contents"]] == ["pub/x"]
    assert code_of(lambda: anonymous.list_objects_v2(Bucket=bucket)) == (403, "AccessDenied")
    assert code_of(lambda: anonymous.list_objects_v2(Bucket=bucket, Prefix="a")) == (403, "AccessDenied")


# -- principals ------------------------------------------------------------------------


def test_deny_beats_the_owner_but_not_on_the_policy_itself(s3: Callable[[str], Any], bucket: str) -> None:
    admin = s3("acme-admin")
    put_policy(s3, bucket, policy(statement(
        "Deny", "*", ["s3:DeleteObject", "s3:*Policy"], [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
    )))  # fmt: skip
    assert code_of(lambda: admin.delete_object(Bucket=bucket, Key="a.txt")) == (403, "AccessDenied")
    assert admin.get_object(Bucket=bucket, Key="a.txt")["Body"].read() == b"alpha"
    # The owner's side can always read, replace and remove the policy.
    assert "Deny" in admin.get_bucket_policy(Bucket=bucket)["Policy"]
    admin.delete_bucket_policy(Bucket=bucket)
    time.sleep(SETTLE)
    admin.delete_object(Bucket=bucket, Key="a.txt")


def test_allow_reaches_a_principal_without_roles(s3: Callable[[str], Any], bucket: str) -> None:
    nobody = s3("acme-nobody")
    assert code_of(lambda: nobody.get_object(Bucket=bucket, Key="a.txt")) == (403, "AccessDenied")
    put_policy(s3, bucket, policy(statement(
        "Allow", {"AWS": "arn:aws:iam::acme:user/acme-nobody"}, "s3:GetObject", f"arn:aws:s3:::{bucket}/*",
    )))  # fmt: skip
    assert nobody.get_object(Bucket=bucket, Key="a.txt")["Body"].read() == b"alpha"
    assert code_of(lambda: nobody.put_object(Bucket=bucket, Key="n", Body=b"n")) == (403, "AccessDenied")
    assert code_of(lambda: s3("acme-nobody").list_objects_v2(Bucket=bucket)) == (403, "AccessDenied")


def test_another_tenant_only_through_the_policy(s3: Callable[[str], Any], bucket: str) -> None:
    globex = s3("globex-admin")
    assert code_of(lambda: globex.get_object(Bucket=bucket, Key="a.txt")) == (404, "NoSuchBucket")
    put_policy(s3, bucket, policy(statement(
        "Allow", {"AWS": "arn:aws:iam::globex:root"}, "s3:GetObject", f"arn:aws:s3:::{bucket}/*",
    )))  # fmt: skip
    assert globex.get_object(Bucket=bucket, Key="a.txt")["Body"].read() == b"alpha"
    assert code_of(lambda: globex.put_object(Bucket=bucket, Key="g", Body=b"g")) == (403, "AccessDenied")
    assert code_of(lambda: globex.delete_bucket(Bucket=bucket)) == (403, "AccessDenied")
    assert code_of(lambda: globex.get_bucket_policy(Bucket=bucket)) == (403, "AccessDenied")
    assert bucket not in [b["Name"] for b in globex.list_buckets()["Buckets"]]


def test_a_policy_written_for_aws_services_installs_and_grants_them_nothing(
    s3: Callable[[str], Any], anonymous: Any, bucket: str
) -> None:
    """AWS's own recipes name its services (here the server access log
    delivery, as AWS's documentation writes it): the policy installs, its
    other statements apply, and the service statement lets no caller in."""
    text = policy(
        statement("Allow", {"Service": "logging.s3.amazonaws.com"}, "s3:PutObject", f"arn:aws:s3:::{bucket}/*"),
        statement("Allow", {"AWS": "arn:aws:iam::acme:user/acme-nobody", "Service": "cloudtrail.amazonaws.com"},
                  "s3:GetObject", f"arn:aws:s3:::{bucket}/*"),
    )  # fmt: skip
    put_policy(s3, bucket, text)
    assert s3("acme-admin").get_bucket_policy(Bucket=bucket)["Policy"] == text
    assert s3("acme-nobody").get_object(Bucket=bucket, Key="a.txt")["Body"].read() == b"alpha"
    assert code_of(lambda: s3("acme-nobody").put_object(Bucket=bucket, Key="n", Body=b"n")) == (403, "AccessDenied")
    assert code_of(lambda: anonymous.put_object(Bucket=bucket, Key="n", Body=b"n")) == (403, "AccessDenied")
    assert code_of(lambda: s3("globex-admin").put_object(Bucket=bucket, Key="n", Body=b"n"))[0] in (403, 404)
    assert not s3("acme-admin").get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"]
    # A name that is no AWS service is still refused, and changes nothing.
    bad = policy(statement("Allow", {"Service": "*"}, "s3:PutObject", f"arn:aws:s3:::{bucket}/*"))
    assert code_of(lambda: put_policy(s3, bucket, bad)) == (400, "MalformedPolicy")
    assert s3("acme-admin").get_bucket_policy(Bucket=bucket)["Policy"] == text


def test_configurations_never_held_are_read_under_their_aws_actions(s3: Callable[[str], Any], bucket: str) -> None:
    """GetBucketLogging and GetBucketNotificationConfiguration are the
    policy actions ``s3:GetBucketLogging`` and ``s3:GetBucketNotification``,
    as on AWS: an Allow naming them lets a principal read the (empty)
    configurations, and grants nothing else."""
    nobody = s3("acme-nobody")
    assert code_of(lambda: nobody.get_bucket_logging(Bucket=bucket)) == (403, "AccessDenied")
    put_policy(s3, bucket, policy(statement(
        "Allow", {"AWS": "arn:aws:iam::acme:user/acme-nobody"}, ["s3:GetBucketLogging", "s3:GetBucketNotification"],
        f"arn:aws:s3:::{bucket}",
    )))  # fmt: skip
    assert "LoggingEnabled" not in nobody.get_bucket_logging(Bucket=bucket)
    assert "TopicConfigurations" not in nobody.get_bucket_notification_configuration(Bucket=bucket)
    assert code_of(lambda: nobody.get_bucket_request_payment(Bucket=bucket)) == (403, "AccessDenied")
    assert code_of(lambda: nobody.get_bucket_replication(Bucket=bucket)) == (403, "AccessDenied")


def test_a_policy_on_a_project_bucket_opens_nothing_to_the_orgs_other_principals(
    s3: Callable[[str], Any],
) -> None:
    """A project bucket is outside the scope of the org's org-level
    principals (their names never resolve to it).  A policy makes it
    reachable by name, and they then come in as any outsider does, with what
    the policy grants them: a policy naming another tenant gives the org's
    admin and read-write principals nothing (their roles once applied)."""
    name = f"proj-{uuid.uuid4().hex[:10]}"
    project = s3("web-admin")
    project.create_bucket(Bucket=name)
    project.put_object(Bucket=name, Key="p.txt", Body=b"project data")
    org_admin, org_rw = s3("acme-admin"), s3("acme-nobody")
    assert code_of(lambda: org_admin.get_object(Bucket=name, Key="p.txt")) == (404, "NoSuchBucket")
    project.put_bucket_policy(Bucket=name, Policy=policy(statement(
        "Allow", {"AWS": "arn:aws:iam::globex:user/globex-admin"}, "s3:GetObject", f"arn:aws:s3:::{name}/*",
    )))  # fmt: skip
    time.sleep(SETTLE)
    assert s3("globex-admin").get_object(Bucket=name, Key="p.txt")["Body"].read() == b"project data"
    assert code_of(lambda: org_admin.get_object(Bucket=name, Key="p.txt")) == (403, "AccessDenied")
    assert code_of(lambda: org_admin.put_object(Bucket=name, Key="x", Body=b"x")) == (403, "AccessDenied")
    assert code_of(lambda: org_admin.get_bucket_policy(Bucket=name)) == (403, "AccessDenied")
    assert code_of(lambda: org_admin.put_bucket_versioning(
        Bucket=name, VersioningConfiguration={"Status": "Enabled"})) == (403, "AccessDenied")  # fmt: skip
    assert code_of(lambda: org_rw.get_object(Bucket=name, Key="p.txt")) == (403, "AccessDenied")
    assert "Status" not in project.get_bucket_versioning(Bucket=name)
    assert [o["Key"] for o in project.list_objects_v2(Bucket=name)["Contents"]] == ["p.txt"]
    project.delete_bucket_policy(Bucket=name)
    project.delete_object(Bucket=name, Key="p.txt")
    project.delete_bucket(Bucket=name)


def test_no_policy_hands_the_configuration_to_outsiders(
    s3: Callable[[str], Any], anonymous: Any, bucket: str
) -> None:
    """A policy granting another tenant (or everyone) ``s3:*`` lets them at
    the objects, never at the bucket's configuration or its policy: with
    them, an outsider could delete the owner's Deny statements and Block
    Public Access, or lock every future object for a century."""
    admin = s3("acme-admin")
    admin.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={"BlockPublicAcls": True})
    put_policy(s3, bucket, policy(
        statement("Allow", {"AWS": "arn:aws:iam::globex:root"}, "s3:*",
                  [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]),
        statement("Allow", "*", "s3:*", [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]),
    ))  # fmt: skip
    for outsider in (s3("globex-admin"), anonymous):
        assert outsider.get_object(Bucket=bucket, Key="a.txt")["Body"].read() == b"alpha"
        attempts: list[Callable[[], Any]] = [
            lambda o=outsider: o.get_bucket_policy(Bucket=bucket),
            lambda o=outsider: o.put_bucket_policy(Bucket=bucket, Policy=policy(
                statement("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/*"))),
            lambda o=outsider: o.delete_bucket_policy(Bucket=bucket),
            lambda o=outsider: o.delete_public_access_block(Bucket=bucket),
            lambda o=outsider: o.put_bucket_versioning(
                Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}),
            lambda o=outsider: o.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={
                "Rules": [{"ID": "all", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 1}}]}),
            lambda o=outsider: o.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "k", "Value": "v"}]}),
            lambda o=outsider: o.put_bucket_cors(Bucket=bucket, CORSConfiguration={
                "CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]}),
        ]
        for attempt in attempts:
            assert code_of(attempt) == (403, "AccessDenied")
    assert json.loads(admin.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"][0]["Action"] == "s3:*"
    assert admin.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]["BlockPublicAcls"]
    assert "Status" not in admin.get_bucket_versioning(Bucket=bucket)
    assert code_of(lambda: admin.get_bucket_lifecycle_configuration(Bucket=bucket))[0] == 404
    assert code_of(lambda: admin.get_bucket_tagging(Bucket=bucket))[0] == 404
    assert code_of(lambda: admin.get_bucket_cors(Bucket=bucket))[0] == 404


def test_a_shared_bucket_name_cannot_be_taken_by_another_tenant(
    s3: Callable[[str], Any], anonymous: Any, bucket: str
) -> None:
    """Names are per tenant, and anonymous callers reach a bucket by its
    name alone: a second tenant's bucket of the same name would cut them
    off.  So while a bucket has a policy (or a website), its name is
    refused to other tenants; without one it is free, as before."""
    globex = s3("globex-admin")
    put_policy(s3, bucket, policy(statement("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/*")))
    assert code_of(lambda: globex.create_bucket(Bucket=bucket)) == (409, "BucketAlreadyExists")
    assert anonymous.get_object(Bucket=bucket, Key="a.txt")["Body"].read() == b"alpha"
    s3("acme-admin").delete_bucket_policy(Bucket=bucket)
    globex.create_bucket(Bucket=bucket)
    globex.delete_bucket(Bucket=bucket)


# -- conditions -----------------------------------------------------------------------


def test_source_ip_condition(s3: Callable[[str], Any], anonymous: Any, bucket: str) -> None:
    put_policy(s3, bucket, policy(statement(
        "Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/*",
        Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    )))  # fmt: skip
    assert code_of(lambda: anonymous.get_object(Bucket=bucket, Key="a.txt")) == (403, "AccessDenied")
    put_policy(s3, bucket, policy(statement(
        "Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/*",
        Condition={"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "127.0.0.0/8"]}},
    )))  # fmt: skip
    assert anonymous.get_object(Bucket=bucket, Key="a.txt")["Body"].read() == b"alpha"


def test_signature_age_condition(tenancy: Tenancy, s3: Callable[[str], Any], ids: dict[str, Identity],
                                 bucket: str) -> None:
    """s3:signatureAge: a policy can refuse presigned URLs signed too long ago,
    whatever their X-Amz-Expires allows."""
    from lightningstor.auth.presign import presign_v4

    put_policy(s3, bucket, policy(statement(
        "Deny", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/*",
        Condition={"NumericGreaterThan": {"s3:signatureAge": "300000"}},
    )))  # fmt: skip
    me = ids["acme-admin"]
    url = f"{tenancy.server.endpoint}/{bucket}/a.txt"

    def signed(now: float) -> str:
        return presign_v4("GET", url, me.access_key, me.secret_key, expires=3600, now=now)

    assert fetch(signed(time.time())) == (200, b"alpha")
    status, body = fetch(signed(time.time() - 600))  # valid for another 50 minutes
    assert status == 403 and b"<Code>AccessDenied</Code>" in body


def test_resource_account_and_region_conditions(s3: Callable[[str], Any], bucket: str) -> None:
    """aws:ResourceAccount is the bucket's org and aws:RequestedRegion its
    region, so the usual "only our own account" Deny lets our requests by."""
    put_policy(s3, bucket, policy(statement(
        "Deny", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/*",
        Condition={"StringNotEquals": {"aws:ResourceAccount": "acme", "aws:RequestedRegion": "us-east-1"}},
    )))  # fmt: skip
    assert s3("acme-admin").get_object(Bucket=bucket, Key="a.txt")["Body"].read() == b"alpha"
    put_policy(s3, bucket, policy(statement(
        "Deny", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/*",
        Condition={"StringEquals": {"s3:ResourceAccount": "acme"}},
    )))  # fmt: skip
    assert code_of(lambda: s3("acme-admin").get_object(Bucket=bucket, Key="a.txt")) == (403, "AccessDenied")


def test_deny_without_tls(s3: Callable[[str], Any], bucket: str) -> None:
    """The usual "TLS only" policy: this server speaks plain HTTP here."""
    put_policy(s3, bucket, policy(statement(
        "Deny", "*", "s3:*", [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
        Condition={"Bool": {"aws:SecureTransport": "false"}},
    )))  # fmt: skip
    admin = s3("acme-admin")
    assert code_of(lambda: admin.get_object(Bucket=bucket, Key="a.txt")) == (403, "AccessDenied")
    assert code_of(lambda: admin.list_objects_v2(Bucket=bucket)) == (403, "AccessDenied")
    admin.delete_bucket_policy(Bucket=bucket)


def test_existing_object_tag_condition(s3: Callable[[str], Any], anonymous: Any, bucket: str) -> None:
    admin = s3("acme-admin")
    admin.put_object(Bucket=bucket, Key="tagged", Body=b"t", Tagging="visibility=public")
    admin.put_object(Bucket=bucket, Key="untagged", Body=b"u")
    put_policy(s3, bucket, policy(statement(
        "Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/*",
        Condition={"StringEquals": {"s3:ExistingObjectTag/visibility": "public"}},
    )))  # fmt: skip
    assert anonymous.get_object(Bucket=bucket, Key="tagged")["Body"].read() == b"t"
    assert code_of(lambda: anonymous.get_object(Bucket=bucket, Key="untagged")) == (403, "AccessDenied")
    admin.put_object_tagging(Bucket=bucket, Key="tagged", Tagging={"TagSet": []})
    assert code_of(lambda: anonymous.get_object(Bucket=bucket, Key="tagged")) == (403, "AccessDenied")


def test_request_object_tag_condition(s3: Callable[[str], Any], anonymous: Any, bucket: str) -> None:
    put_policy(s3, bucket, policy(statement(
        "Allow", "*", "s3:PutObject", f"arn:aws:s3:::{bucket}/*",
        Condition={"StringEquals": {"s3:RequestObjectTag/source": "web"}},
    )))  # fmt: skip
    anonymous.put_object(Bucket=bucket, Key="w", Body=b"w", Tagging="source=web")
    assert code_of(lambda: anonymous.put_object(Bucket=bucket, Key="v", Body=b"v", Tagging="source=cli")) == (
        403, "AccessDenied",
    )
    assert code_of(lambda: anonymous.put_object(Bucket=bucket, Key="v", Body=b"v")) == (403, "AccessDenied")


# -- other paths through the gate ------------------------------------------------------


def test_delete_objects_key_by_key(s3: Callable[[str], Any], bucket: str) -> None:
    admin = s3("acme-admin")
    admin.put_object(Bucket=bucket, Key="keep/1", Body=b"1")
    admin.put_object(Bucket=bucket, Key="tmp/1", Body=b"1")
    put_policy(s3, bucket, policy(statement("Deny", "*", "s3:DeleteObject", f"arn:aws:s3:::{bucket}/keep/*")))
    result = admin.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "keep/1"}, {"Key": "tmp/1"}]})
    assert [d["Key"] for d in result["Deleted"]] == ["tmp/1"]
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("keep/1", "AccessDenied")]
    assert admin.head_object(Bucket=bucket, Key="keep/1")["ContentLength"] == 1


def test_protected_versions_stay_protected_in_bulk(s3: Callable[[str], Any], bucket: str) -> None:
    """Deny s3:DeleteObjectVersion (keep history): DeleteObject with a
    versionId and DeleteObjects entries naming a version are both refused;
    a plain delete still writes a delete marker."""
    admin = s3("acme-admin")
    admin.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    version = admin.put_object(Bucket=bucket, Key="kept", Body=b"v1")["VersionId"]
    put_policy(s3, bucket, policy(statement("Deny", "*", "s3:DeleteObjectVersion", f"arn:aws:s3:::{bucket}/*")))
    assert code_of(lambda: admin.delete_object(Bucket=bucket, Key="kept", VersionId=version)) == (
        403, "AccessDenied",
    )
    result = admin.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "kept", "VersionId": version}]})
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("kept", "AccessDenied")]
    marker = admin.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "kept"}]})
    assert marker["Deleted"][0]["DeleteMarker"] is True
    assert admin.get_object(Bucket=bucket, Key="kept", VersionId=version)["Body"].read() == b"v1"
    admin.delete_bucket_policy(Bucket=bucket)
    for v in admin.list_object_versions(Bucket=bucket).get("Versions", []) + \
            admin.list_object_versions(Bucket=bucket).get("DeleteMarkers", []):
        admin.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])


def test_copy_source_is_read_through_its_policy(s3: Callable[[str], Any], bucket: str) -> None:
    admin = s3("acme-admin")
    admin.put_object(Bucket=bucket, Key="secret", Body=b"s")
    put_policy(s3, bucket, policy(statement("Deny", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/secret")))
    source = {"Bucket": bucket, "Key": "secret"}
    assert code_of(lambda: admin.copy_object(Bucket=bucket, Key="copy", CopySource=source)) == (403, "AccessDenied")
    admin.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "a.txt"})
    assert admin.get_object(Bucket=bucket, Key="copy")["Body"].read() == b"alpha"


def test_copy_source_version_is_the_version_action_with_its_tags(s3: Callable[[str], Any], bucket: str) -> None:
    """A copy whose source names a version is s3:GetObjectVersion on that
    version, with its s3:VersionId and its own tags (CopyObject and
    UploadPartCopy), as a GET of that version is."""
    admin = s3("acme-admin")
    admin.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    old = admin.put_object(Bucket=bucket, Key="doc", Body=b"old secret", Tagging="class=secret")["VersionId"]
    admin.put_object(Bucket=bucket, Key="doc", Body=b"new", Tagging="class=public")
    put_policy(s3, bucket, policy(
        statement("Deny", "*", "s3:GetObjectVersion", f"arn:aws:s3:::{bucket}/doc",
                  Condition={"StringEquals": {"s3:VersionId": old}}),
    ))  # fmt: skip
    named = {"Bucket": bucket, "Key": "doc", "VersionId": old}
    assert code_of(lambda: admin.get_object(Bucket=bucket, Key="doc", VersionId=old)) == (403, "AccessDenied")
    assert code_of(lambda: admin.copy_object(Bucket=bucket, Key="c1", CopySource=named)) == (403, "AccessDenied")
    upload = admin.create_multipart_upload(Bucket=bucket, Key="c2")["UploadId"]
    assert code_of(lambda: admin.upload_part_copy(
        Bucket=bucket, Key="c2", UploadId=upload, PartNumber=1, CopySource=named)) == (403, "AccessDenied")
    admin.abort_multipart_upload(Bucket=bucket, Key="c2", UploadId=upload)
    # The current version (no version named) is s3:GetObject: copied.
    admin.copy_object(Bucket=bucket, Key="c3", CopySource={"Bucket": bucket, "Key": "doc"})
    assert admin.get_object(Bucket=bucket, Key="c3")["Body"].read() == b"new"
    # A condition on the named version's own tags.
    put_policy(s3, bucket, policy(
        statement("Deny", "*", ["s3:GetObject", "s3:GetObjectVersion"], f"arn:aws:s3:::{bucket}/*",
                  Condition={"StringEquals": {"s3:ExistingObjectTag/class": "secret"}}),
    ))  # fmt: skip
    assert code_of(lambda: admin.copy_object(
        Bucket=bucket, Key="c4", CopySource=named, TaggingDirective="REPLACE")) == (403, "AccessDenied")
    admin.copy_object(Bucket=bucket, Key="c5", CopySource={"Bucket": bucket, "Key": "doc"})
    assert code_of(lambda: admin.get_object(Bucket=bucket, Key="c4"))[0] == 404


def test_grpc_names_the_version_to_the_policy(tenancy: Tenancy, ids: dict[str, Identity],
                                              s3: Callable[[str], Any], bucket: str) -> None:
    """Over gRPC a call naming a version gives the policy s3:VersionId and
    that version's tags, as over S3: a Deny on an old version's tag holds
    for reads and permanent deletes."""
    admin = s3("acme-admin")
    admin.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    old = admin.put_object(Bucket=bucket, Key="v", Body=b"classified", Tagging="class=secret")["VersionId"]
    admin.put_object(Bucket=bucket, Key="v", Body=b"open", Tagging="class=public")
    put_policy(s3, bucket, policy(
        statement("Deny", "*", ["s3:GetObjectVersion", "s3:DeleteObjectVersion"], f"arn:aws:s3:::{bucket}/*",
                  Condition={"StringEquals": {"s3:ExistingObjectTag/class": "secret"}}),
    ))  # fmt: skip
    client = ids["acme-admin"].grpc(tenancy.server.grpc_endpoint)
    try:
        assert b"".join(client.get_object(bucket, "v")) == b"open"
        with pytest.raises(PermissionDeniedError):
            b"".join(client.get_object(bucket, "v", version_id=old))
        with pytest.raises(PermissionDeniedError):
            client.delete_object(bucket, "v", version_id=old)
        put_policy(s3, bucket, policy(statement(
            "Deny", "*", "s3:GetObjectVersion", f"arn:aws:s3:::{bucket}/*",
            Condition={"StringEquals": {"s3:VersionId": old}},
        )))  # fmt: skip
        with pytest.raises(PermissionDeniedError):
            b"".join(client.get_object(bucket, "v", version_id=old))
    finally:
        client.close()
    versions = admin.list_object_versions(Bucket=bucket, Prefix="v")["Versions"]
    assert old in [v["VersionId"] for v in versions]  # the denied delete deleted nothing


def test_outsiders_reading_an_object_do_not_see_its_lock(
    s3: Callable[[str], Any], anonymous: Any
) -> None:
    """GET/HEAD show the Object Lock headers only inside the bucket's scope:
    a reader let in by a policy has no right to the retention or legal hold
    (AWS asks for s3:GetObjectRetention / s3:GetObjectLegalHold besides)."""
    admin = s3("acme-admin")
    name = f"lockread-{uuid.uuid4().hex[:10]}"
    admin.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    version = admin.put_object(Bucket=name, Key="held", Body=b"h", ObjectLockLegalHoldStatus="ON")["VersionId"]
    put_policy(s3, name, policy(statement("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{name}/*")))
    assert admin.head_object(Bucket=name, Key="held")["ObjectLockLegalHoldStatus"] == "ON"
    seen = anonymous.head_object(Bucket=name, Key="held")
    assert "ObjectLockLegalHoldStatus" not in seen and seen["ContentLength"] == 1
    assert "ObjectLockLegalHoldStatus" not in anonymous.get_object(Bucket=name, Key="held")
    admin.put_object_legal_hold(Bucket=name, Key="held", VersionId=version, LegalHold={"Status": "OFF"})


def test_grpc_obeys_the_policy(tenancy: Tenancy, ids: dict[str, Identity], s3: Callable[[str], Any],
                               bucket: str) -> None:
    client = ids["acme-admin"].grpc(tenancy.server.grpc_endpoint)
    try:
        assert b"".join(client.get_object(bucket, "a.txt")) == b"alpha"
        put_policy(s3, bucket, policy(statement("Deny", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/a.txt")))
        with pytest.raises(PermissionDeniedError):
            b"".join(client.get_object(bucket, "a.txt"))
        client.put_object(bucket, "g.txt", b"grpc")
    finally:
        client.close()
    nobody = ids["globex-admin"].grpc(tenancy.server.grpc_endpoint)
    try:
        put_policy(s3, bucket, policy(statement(
            "Allow", {"AWS": "arn:aws:iam::globex:root"}, "s3:GetObject", f"arn:aws:s3:::{bucket}/*",
        )))  # fmt: skip
        assert b"".join(nobody.get_object(bucket, "g.txt")) == b"grpc"
    finally:
        nobody.close()


def test_grpc_tells_outsiders_no_configuration_or_tags(tenancy: Tenancy, ids: dict[str, Identity],
                                                       s3: Callable[[str], Any], bucket: str) -> None:
    """A tenant a policy lets read objects learns over gRPC what S3 would
    tell it: not the bucket's tags, metadata, creator or versioning, nor
    the objects' tags (GetObjectTagging is a permission of its own)."""
    admin = s3("acme-admin")
    admin.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "cost-centre", "Value": "secret-project"}]})
    admin.put_object(Bucket=bucket, Key="t.txt", Body=b"t", Tagging="class=confidential")
    put_policy(s3, bucket, policy(statement(
        "Allow", {"AWS": "arn:aws:iam::globex:root"}, ["s3:GetObject", "s3:ListBucket"],
        [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
    )))  # fmt: skip
    outsider = ids["globex-admin"].grpc(tenancy.server.grpc_endpoint)
    owner = ids["acme-admin"].grpc(tenancy.server.grpc_endpoint)
    try:
        seen = outsider.head_bucket(bucket)
        assert (seen.name, dict(seen.tags), seen.created_by) == (bucket, {}, "")
        assert dict(outsider.head_object(bucket, "t.txt").tags) == {}
        assert dict(owner.head_bucket(bucket).tags) == {"cost-centre": "secret-project"}
        assert dict(owner.head_object(bucket, "t.txt").tags) == {"class": "confidential"}
    finally:
        outsider.close()
        owner.close()


def test_grpc_version_reads_are_version_actions(tenancy: Tenancy, ids: dict[str, Identity],
                                                s3: Callable[[str], Any], bucket: str) -> None:
    """Over gRPC too, reading a named version is s3:GetObjectVersion."""
    admin = s3("acme-admin")
    admin.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    version = admin.put_object(Bucket=bucket, Key="v.txt", Body=b"first")["VersionId"]
    put_policy(s3, bucket, policy(statement("Deny", "*", "s3:GetObjectVersion", f"arn:aws:s3:::{bucket}/*")))
    client = ids["acme-admin"].grpc(tenancy.server.grpc_endpoint)
    try:
        assert b"".join(client.get_object(bucket, "v.txt")) == b"first"
        with pytest.raises(PermissionDeniedError):
            b"".join(client.get_object(bucket, "v.txt", version_id=version))
    finally:
        client.close()
    assert code_of(lambda: admin.get_object(Bucket=bucket, Key="v.txt", VersionId=version)) == (403, "AccessDenied")


def test_minio_sdk_sets_and_reads_a_policy(tenancy: Tenancy, ids: dict[str, Identity], bucket: str) -> None:
    me = ids["acme-admin"]
    client = minio_client(tenancy.server.endpoint, me.access_key, me.secret_key)
    text = policy(statement("Allow", {"AWS": ["*"]}, ["s3:GetObject"], [f"arn:aws:s3:::{bucket}/*"]))
    client.set_bucket_policy(bucket, text)
    assert json.loads(client.get_bucket_policy(bucket)) == json.loads(text)
    time.sleep(SETTLE)
    status, body = fetch(f"{tenancy.server.endpoint}/{bucket}/a.txt")
    assert (status, body) == (200, b"alpha")
    client.delete_bucket_policy(bucket)
    time.sleep(SETTLE)
    assert fetch(f"{tenancy.server.endpoint}/{bucket}/a.txt")[0] == 403


# -- Block Public Access --------------------------------------------------------------


def test_public_access_block_round_trip(s3: Callable[[str], Any], bucket: str) -> None:
    admin = s3("acme-admin")
    assert code_of(lambda: admin.get_public_access_block(Bucket=bucket)) == (
        404, "NoSuchPublicAccessBlockConfiguration",
    )
    settings = {"BlockPublicAcls": True, "IgnorePublicAcls": False, "BlockPublicPolicy": True,
                "RestrictPublicBuckets": False}
    admin.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=settings)
    assert admin.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == settings
    assert admin.delete_public_access_block(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert code_of(lambda: admin.get_public_access_block(Bucket=bucket))[0] == 404
    assert code_of(lambda: s3("web-rw").put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration=settings)) == (403, "AccessDenied")


def test_public_access_block_refuses_malformed_documents(tenancy: Tenancy) -> None:
    from tests.integration.conftest import make_client
    from tests.integration.raw import signed

    name = f"pab-{uuid.uuid4().hex[:12]}"
    make_client(tenancy.server.endpoint).create_bucket(Bucket=name)  # the root credential's
    for body in (b"<PublicAccessBlockConfiguration><BlockPublicAcls>yes</BlockPublicAcls>"
                 b"</PublicAccessBlockConfiguration>",
                 b"<PublicAccessBlockConfiguration><Block>true</Block></PublicAccessBlockConfiguration>",
                 b"<Nope/>", b"not xml"):
        status, response = signed(tenancy.server, "PUT", f"/{name}?publicAccessBlock", body)
        assert status == 400 and b"<Code>MalformedXML</Code>" in response, body
    status, response = signed(tenancy.server, "GET", f"/{name}?publicAccessBlock")
    assert status == 404 and b"NoSuchPublicAccessBlockConfiguration" in response


def test_block_public_policy(s3: Callable[[str], Any], bucket: str) -> None:
    admin = s3("acme-admin")
    admin.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={"BlockPublicPolicy": True})
    public = policy(statement("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/*"))
    assert code_of(lambda: admin.put_bucket_policy(Bucket=bucket, Policy=public)) == (403, "AccessDenied")
    assert code_of(lambda: admin.get_bucket_policy(Bucket=bucket)) == (404, "NoSuchBucketPolicy")
    # Pinned to one network, or to one tenant: not public, so allowed.
    pinned = policy(statement("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/*",
                              Condition={"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}))
    admin.put_bucket_policy(Bucket=bucket, Policy=pinned)
    assert admin.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is False


def test_restrict_public_buckets(s3: Callable[[str], Any], anonymous: Any, bucket: str) -> None:
    admin = s3("acme-admin")
    put_policy(s3, bucket, policy(
        statement("Allow", "*", "s3:GetObject", f"arn:aws:s3:::{bucket}/*"),
        statement("Allow", {"AWS": "arn:aws:iam::globex:root"}, "s3:ListBucket", f"arn:aws:s3:::{bucket}"),
    ))  # fmt: skip
    assert anonymous.get_object(Bucket=bucket, Key="a.txt")["Body"].read() == b"alpha"
    s3("globex-admin").list_objects_v2(Bucket=bucket)
    admin.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={"RestrictPublicBuckets": True})
    assert code_of(lambda: anonymous.get_object(Bucket=bucket, Key="a.txt")) == (403, "AccessDenied")
    # The whole public policy stops letting outsiders in, its non-public statements too.
    assert code_of(lambda: s3("globex-admin").list_objects_v2(Bucket=bucket)) == (403, "AccessDenied")
    # Inside the tenant the policy still counts.
    assert s3("acme-nobody").get_object(Bucket=bucket, Key="a.txt")["Body"].read() == b"alpha"
    admin.delete_public_access_block(Bucket=bucket)
    assert anonymous.get_object(Bucket=bucket, Key="a.txt")["Body"].read() == b"alpha"


def test_server_wide_block_public_access(tmp_path: Any) -> None:
    """[s3] block_public_access = true: no bucket can be made public."""
    from tests.integration.conftest import make_client
    from tests.integration.server import ServerProcess

    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "server.toml"
    config.write_text("[s3]\nblock_public_access = true\n")
    server = ServerProcess(data, config=str(config)).start()
    try:
        root = make_client(server.endpoint)
        root.create_bucket(Bucket="shut")
        root.put_object(Bucket="shut", Key="k", Body=b"v")
        public = policy(statement("Allow", "*", "s3:GetObject", "arn:aws:s3:::shut/*"))
        assert code_of(lambda: root.put_bucket_policy(Bucket="shut", Policy=public)) == (403, "AccessDenied")
        assert fetch(f"{server.endpoint}/shut/k")[0] == 403
    finally:
        server.stop()


def test_expected_bucket_owner(s3: Callable[[str], Any], anonymous: Any, bucket: str) -> None:
    """x-amz-expected-bucket-owner names the tenant (org) a request means;
    any other is 403, also for a caller the policy lets in."""
    admin = s3("acme-admin")
    assert [o["Key"] for o in admin.list_objects_v2(Bucket=bucket, ExpectedBucketOwner="acme")["Contents"]] == [
        "a.txt"
    ]
    assert code_of(lambda: admin.list_objects_v2(Bucket=bucket, ExpectedBucketOwner="globex")) == (
        403, "AccessDenied",
    )
    assert code_of(lambda: admin.put_object(Bucket=bucket, Key="x", Body=b"x", ExpectedBucketOwner="globex")) == (
        403, "AccessDenied",
    )
    source = {"Bucket": bucket, "Key": "a.txt"}
    assert code_of(lambda: admin.copy_object(Bucket=bucket, Key="c", CopySource=source,
                                             ExpectedSourceBucketOwner="globex")) == (403, "AccessDenied")
    admin.copy_object(Bucket=bucket, Key="c", CopySource=source, ExpectedSourceBucketOwner="acme")
    assert code_of(lambda: admin.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "c"}]},
                                                ExpectedBucketOwner="globex")) == (403, "AccessDenied")
    put_policy(s3, bucket, policy(statement("Allow", "*", "s3:ListBucket", f"arn:aws:s3:::{bucket}")))
    anonymous.list_objects_v2(Bucket=bucket, ExpectedBucketOwner="acme")
    assert code_of(lambda: anonymous.list_objects_v2(Bucket=bucket, ExpectedBucketOwner="globex")) == (
        403, "AccessDenied",
    )

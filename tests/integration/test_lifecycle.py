"""Bucket lifecycle rules against the real server: the configuration through
boto3 and the aws cli, AWS's errors, and expiration applied by the
background service with a short day (``[lifecycle] day_seconds = 1``, a run
every 0.3 s) in unversioned, versioned and suspended buckets, with filters,
and for incomplete multipart uploads.

Expiry is awaited by polling with a deadline, never by fixed sleeps.
"""

from __future__ import annotations

import email.utils
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.conftest import make_client
from tests.integration.raw import client_error as error_of
from tests.integration.raw import md5_header, signed
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess
from tests.integration.tools import run_tool, tool

DEADLINE = 15.0  # seconds an expiry may take (a day is 1 s, a run every 0.3 s)
FAR = 100000  # days that never pass during a test


@pytest.fixture(scope="module")
def lc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("lifecycle")
    data = root / "data"
    data.mkdir()
    config = root / "lightningstor.toml"
    config.write_text("[lifecycle]\ninterval_seconds = 0.3\nday_seconds = 1\n")
    server = ServerProcess(data, config=str(config)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3(lc_server: ServerProcess) -> Any:
    return make_client(lc_server.endpoint)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"lc-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def wait_for(what: str, check: Callable[[], Any]) -> Any:
    """Poll ``check`` until it returns something true; fail after DEADLINE."""
    deadline = time.monotonic() + DEADLINE
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; last: {result!r}")
        time.sleep(0.1)


def keys_of(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def versions_of(s3: Any, bucket: str, key: str) -> list[tuple[str, bool, bool]]:
    """[(version id, is a delete marker, is latest)] of ``key``, newest first."""
    page = s3.list_object_versions(Bucket=bucket, Prefix=key)
    entries = [(v["VersionId"], False, v["IsLatest"], v["LastModified"]) for v in page.get("Versions", []) if v["Key"] == key]
    entries += [(m["VersionId"], True, m["IsLatest"], m["LastModified"]) for m in page.get("DeleteMarkers", []) if m["Key"] == key]
    entries.sort(key=lambda e: (not e[2], -e[3].timestamp()))
    return [(vid, marker, latest) for vid, marker, latest, _ in entries]


# -- the configuration ----------------------------------------------------------------

CONFIG = {
    "Rules": [
        {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled",
         "Expiration": {"Days": FAR},
         "NoncurrentVersionExpiration": {"NoncurrentDays": FAR, "NewerNoncurrentVersions": 2},
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": FAR}},
        {"ID": "tmp", "Filter": {"And": {"Prefix": "tmp/", "Tags": [{"Key": "a", "Value": "1"}],
                                         "ObjectSizeGreaterThan": 10, "ObjectSizeLessThan": 1000}},
         "Status": "Disabled", "Expiration": {"Days": FAR}},
        {"ID": "markers", "Filter": {"Prefix": ""}, "Status": "Enabled",
         "Expiration": {"ExpiredObjectDeleteMarker": False}},
        {"ID": "tagged", "Filter": {"Tag": {"Key": "k", "Value": "v"}}, "Status": "Enabled",
         "Expiration": {"Days": FAR}},
    ]
}  # fmt: skip


@pytest.mark.parametrize("checksums", ["when_supported", "when_required"])
def test_put_get_delete_round_trip(lc_server: ServerProcess, bucket: str, checksums: str) -> None:
    """PutBucketLifecycleConfiguration stores the rules (boto3 sending its
    CRC32 header or Content-MD5), Get gives them back as sent,
    DeleteBucketLifecycle answers 204, and then Get is 404
    NoSuchLifecycleConfiguration.  A rule without an ID gets one."""
    s3 = make_client(lc_server.endpoint, request_checksum_calculation=checksums)
    with pytest.raises(ClientError) as info:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert error_of(info)[:2] == (404, "NoSuchLifecycleConfiguration")
    put = s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=CONFIG)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == CONFIG["Rules"]
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={
        "Rules": [{"Filter": {}, "Status": "Enabled", "Expiration": {"Days": FAR}}]})
    rule = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"][0]
    assert rule["ID"] and rule["Filter"] == {} and rule["Expiration"] == {"Days": FAR}
    deleted = s3.delete_bucket_lifecycle(Bucket=bucket)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as info:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert error_of(info)[:2] == (404, "NoSuchLifecycleConfiguration")


def test_aws_cli_put(lc_server: ServerProcess, s3: Any, bucket: str, tmp_path: Path) -> None:
    """``aws s3api put-bucket-lifecycle-configuration`` (the cli's own
    checksum handling) stores the configuration boto3 then reads."""
    aws = tool("aws")
    env = {"AWS_ACCESS_KEY_ID": ROOT_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": ROOT_SECRET_KEY,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}  # fmt: skip
    doc = tmp_path / "lifecycle.json"
    rules = [{"ID": "cli", "Filter": {"Prefix": "cli/"}, "Status": "Enabled", "Expiration": {"Days": FAR}}]
    doc.write_text(json.dumps({"Rules": rules}))
    run_tool([aws, "--endpoint-url", lc_server.endpoint, "s3api", "put-bucket-lifecycle-configuration",
              "--bucket", bucket, "--lifecycle-configuration", f"file://{doc}"], env)  # fmt: skip
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"] == rules


@pytest.mark.parametrize(
    ("rules", "status", "code", "message"),
    [
        ([{"Filter": {}, "Status": "Enabled", "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]}],
         501, "NotImplemented", "Transition"),
        ([{"Filter": {}, "Status": "Enabled", "Expiration": {"Days": 0}}],
         400, "InvalidArgument", "'Days' for Expiration action must be a positive integer"),
        ([{"ID": "same", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 1}},
          {"ID": "same", "Filter": {"Prefix": "x"}, "Status": "Enabled", "Expiration": {"Days": 2}}],
         400, "InvalidArgument", "Rule ID must be unique. Found same ID for more than one rule"),
        ([{"Filter": {"Tag": {"Key": "k", "Value": "v"}}, "Status": "Enabled",
           "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}],
         400, "InvalidRequest", "AbortIncompleteMultipartUpload cannot be specified with Tags."),
        ([{"Filter": {}, "Status": "Enabled"}],
         400, "InvalidRequest", "At least one action needs to be specified in a rule"),
        ([{"Filter": {}, "Status": "Enabled",
           "NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 101}}],
         400, "InvalidArgument", "'NewerNoncurrentVersions' must not exceed 100"),
    ],
)  # fmt: skip
def test_refused_configurations(s3: Any, bucket: str, rules: Any, status: int, code: str, message: str) -> None:
    """AWS's status, code and message for configurations it refuses; a
    transition (no storage tiers here) is 501, never silently accepted;
    nothing is stored."""
    with pytest.raises(ClientError) as info:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
    got_status, got_code, got_message = error_of(info)
    assert (got_status, got_code) == (status, code)
    assert message in got_message
    with pytest.raises(ClientError) as info:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert error_of(info)[1] == "NoSuchLifecycleConfiguration"


def test_malformed_xml_and_missing_digest(lc_server: ServerProcess, bucket: str) -> None:
    """A body that is not XML is 400 MalformedXML; a body without
    Content-MD5 or an x-amz-checksum-* header is 400 InvalidRequest."""
    path = f"/{bucket}?lifecycle"
    body = b"<LifecycleConfiguration><Rule>"
    status, answer = signed(lc_server, "PUT", path, body, md5_header(body))
    assert status == 400 and b"<Code>MalformedXML</Code>" in answer
    good = (b"<LifecycleConfiguration><Rule><Filter/><Status>Enabled</Status>"
            b"<Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>")  # fmt: skip
    status, answer = signed(lc_server, "PUT", path, good, {})
    assert status == 400 and b"<Code>InvalidRequest</Code>" in answer and b"Content-MD5" in answer
    # No rule at all: refused, and the rules stored stay (it used to be
    # taken for a DeleteBucketLifecycle: 200 and the rules gone).
    assert signed(lc_server, "PUT", path, good, md5_header(good))[0] == 200
    empty = b"<LifecycleConfiguration/>"
    status, answer = signed(lc_server, "PUT", path, empty, md5_header(empty))
    assert status == 400 and b"<Code>InvalidRequest</Code>" in answer and b"At least one lifecycle rule" in answer
    status, answer = signed(lc_server, "GET", path, b"", {})
    assert status == 200 and b"<Days>1</Days>" in answer


# -- expiration ------------------------------------------------------------------------


def test_unversioned_expiry_honours_filters(lc_server: ServerProcess, s3: Any, bucket: str) -> None:
    """Unversioned: matching objects are deleted once a (1 s) day old;
    objects outside the prefix, without the tag or of the wrong size stay,
    although they are older than the ones that went.  The server logs each
    deletion with its bucket, key and rule."""
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "exp", "Filter": {"Prefix": "exp/"}, "Status": "Enabled", "Expiration": {"Days": 1}},
        {"ID": "tag", "Filter": {"Tag": {"Key": "gone", "Value": "yes"}}, "Status": "Enabled", "Expiration": {"Days": 1}},
        {"ID": "size", "Filter": {"And": {"Prefix": "size/", "ObjectSizeGreaterThan": 100}}, "Status": "Enabled",
         "Expiration": {"Days": 1}},
    ]})  # fmt: skip
    # The survivors first, so they are the older ones.
    s3.put_object(Bucket=bucket, Key="keep/plain", Body=b"k")
    s3.put_object(Bucket=bucket, Key="keep/other-tag", Body=b"k", Tagging="gone=no")
    s3.put_object(Bucket=bucket, Key="size/small", Body=b"k" * 100)
    s3.put_object(Bucket=bucket, Key="exp/a", Body=b"x")
    s3.put_object(Bucket=bucket, Key="exp/b", Body=b"x")
    s3.put_object(Bucket=bucket, Key="keep/tagged", Body=b"x", Tagging="gone=yes&other=1")
    s3.put_object(Bucket=bucket, Key="size/large", Body=b"x" * 101)
    survivors = ["keep/other-tag", "keep/plain", "size/small"]
    assert wait_for("the matching objects to expire", lambda: keys_of(s3, bucket) == survivors)
    logged = [line for line in list(lc_server.output) if f"bucket {bucket} " in line and "Lifecycle" in line]
    assert any("expired the current version" in line and "key 'exp/a' version null by rule exp" in line
               for line in logged), logged
    assert any("key 'keep/tagged'" in line and "by rule tag" in line for line in logged), logged


def test_versioned_expiry(s3: Any, bucket: str) -> None:
    """Versioning Enabled: an expired current version gets a delete marker
    (its data stays as a noncurrent version); noncurrent versions go once
    noncurrent a day, keeping NewerNoncurrentVersions; a lone delete marker
    is removed (ExpiredObjectDeleteMarker) while one with a version behind
    it stays."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "cur", "Filter": {"Prefix": "cur/"}, "Status": "Enabled", "Expiration": {"Days": 1}},
        {"ID": "nc", "Filter": {"Prefix": "nc/"}, "Status": "Enabled",
         "NoncurrentVersionExpiration": {"NoncurrentDays": 1, "NewerNoncurrentVersions": 1}},
        {"ID": "dm", "Filter": {"Prefix": "dm/"}, "Status": "Enabled",
         "Expiration": {"ExpiredObjectDeleteMarker": True}},
    ]})  # fmt: skip
    original = s3.put_object(Bucket=bucket, Key="cur/a", Body=b"data")["VersionId"]
    ids = [s3.put_object(Bucket=bucket, Key="nc/k", Body=f"v{i}".encode())["VersionId"] for i in range(3)]
    s3.delete_object(Bucket=bucket, Key="dm/lone")
    kept = s3.put_object(Bucket=bucket, Key="dm/kept", Body=b"x")["VersionId"]
    s3.delete_object(Bucket=bucket, Key="dm/kept")

    def cur_marked() -> bool:
        got = versions_of(s3, bucket, "cur/a")
        return [(m, latest) for _v, m, latest in got] == [(True, True), (False, False)] and got[1][0] == original

    wait_for("a delete marker on the expired current version", cur_marked)
    wait_for("the oldest noncurrent version to go",
             lambda: [v for v, _m, _l in versions_of(s3, bucket, "nc/k")] == [ids[2], ids[1]])
    wait_for("the lone delete marker to go", lambda: versions_of(s3, bucket, "dm/lone") == [])
    got = versions_of(s3, bucket, "dm/kept")
    assert [(m, latest) for _v, m, latest in got] == [(True, True), (False, False)] and got[1][0] == kept
    assert s3.get_object(Bucket=bucket, Key="cur/a", VersionId=original)["Body"].read() == b"data"


def test_suspended_expiry_writes_the_null_marker(s3: Any, bucket: str) -> None:
    """Versioning Suspended: expiry replaces the null version with the null
    delete marker, as a DeleteObject would."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={
        "Rules": [{"ID": "all", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 1}}]})
    wait_for("the null delete marker", lambda: versions_of(s3, bucket, "k") == [("null", True, True)])


def test_incomplete_uploads_are_aborted(s3: Any, bucket: str) -> None:
    """Uploads under the rule's prefix are aborted a (1 s) day after they
    were initiated; another upload stays."""
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "mpu", "Filter": {"Prefix": "mp/"}, "Status": "Enabled",
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]})  # fmt: skip
    keep = s3.create_multipart_upload(Bucket=bucket, Key="other/a")["UploadId"]
    gone = s3.create_multipart_upload(Bucket=bucket, Key="mp/a")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="mp/a", UploadId=gone, PartNumber=1, Body=b"part")

    def only_keep() -> bool:
        uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return [(u["Key"], u["UploadId"]) for u in uploads] == [("other/a", keep)]

    wait_for("the upload under mp/ to be aborted", only_keep)
    with pytest.raises(ClientError) as info:
        s3.list_parts(Bucket=bucket, Key="mp/a", UploadId=gone)
    assert error_of(info)[1] == "NoSuchUpload"
    s3.abort_multipart_upload(Bucket=bucket, Key="other/a", UploadId=keep)


def test_uploads_report_the_rule_that_will_abort_them(s3: Any, bucket: str) -> None:
    """CreateMultipartUpload and ListParts name the earliest rule that aborts
    the upload and when (x-amz-abort-date / x-amz-abort-rule-id), as AWS;
    an upload no rule covers has neither."""
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "slow", "Filter": {"Prefix": "later/"}, "Status": "Enabled",
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1000}},
        {"ID": "sooner", "Filter": {"Prefix": "later/x"}, "Status": "Enabled",
         "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 500}}]})  # fmt: skip
    before = time.time()
    created = s3.create_multipart_upload(Bucket=bucket, Key="later/x1")
    assert created["AbortRuleId"] == "sooner"
    # One day is one second on this server: 500 days after initiation.
    assert before + 498 <= created["AbortDate"].timestamp() <= time.time() + 502
    upload = created["UploadId"]
    parts = s3.list_parts(Bucket=bucket, Key="later/x1", UploadId=upload)
    assert (parts["AbortRuleId"], parts["AbortDate"]) == ("sooner", created["AbortDate"])
    plain = s3.create_multipart_upload(Bucket=bucket, Key="elsewhere")
    assert "AbortRuleId" not in plain and "AbortDate" not in plain
    for key, upload_id in (("later/x1", upload), ("elsewhere", plain["UploadId"])):
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def test_rules_and_expiry_on_etcd(tmp_path: Path) -> None:
    """On the etcd metadata store: the configuration is stored with the
    bucket record and read back, and the service expires objects (and
    writes delete markers in a versioned bucket) through it."""
    from tests.etcd_cluster import EtcdCluster, etcd_binary
    from tests.integration.test_etcd_server import config, start_server

    etcd_binary()
    etcd = EtcdCluster(tmp_path / "etcd").start()
    server: ServerProcess | None = None
    try:
        lifecycle = "[lifecycle]\ninterval_seconds = 0.3\nday_seconds = 1\n"
        server = start_server(tmp_path, "a", config(tmp_path / "server.toml", etcd.endpoints, "lc/", storage=lifecycle))
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="lc-etcd")
        s3.put_bucket_versioning(Bucket="lc-etcd", VersioningConfiguration={"Status": "Enabled"})
        rules = [{"ID": "exp", "Filter": {"Prefix": "exp/"}, "Status": "Enabled", "Expiration": {"Days": 1}}]
        s3.put_bucket_lifecycle_configuration(Bucket="lc-etcd", LifecycleConfiguration={"Rules": rules})
        assert s3.get_bucket_lifecycle_configuration(Bucket="lc-etcd")["Rules"] == rules
        s3.put_object(Bucket="lc-etcd", Key="keep", Body=b"k")
        s3.put_object(Bucket="lc-etcd", Key="exp/a", Body=b"x")
        wait_for("the object to expire", lambda: keys_of(s3, "lc-etcd") == ["keep"])
        assert [m for _v, m, _l in versions_of(s3, "lc-etcd", "exp/a")] == [True, False]
    finally:
        if server is not None:
            server.stop()
        etcd.stop()


# -- x-amz-expiration ---------------------------------------------------------------


def test_expiration_header_on_put_head_and_get(lc_server: ServerProcess, s3: Any, bucket: str) -> None:
    """PUT, HEAD and GET of a current version a rule expires report when
    and by which rule (its ID URL-encoded, as AWS sends it); the earliest
    of two matching rules decides; objects no rule expires, reads of a
    given version, and buckets without rules get no header."""
    plain = f"lc-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=plain)
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "late", "Filter": {"Prefix": "exp/"}, "Status": "Enabled", "Expiration": {"Days": 2 * FAR}},
        {"ID": "r 1/x", "Filter": {"Prefix": "exp/"}, "Status": "Enabled", "Expiration": {"Days": FAR}},
        {"ID": "off", "Filter": {"Prefix": "exp/"}, "Status": "Disabled", "Expiration": {"Days": 1}},
        {"ID": "date", "Filter": {"Prefix": "date/"}, "Status": "Enabled", "Expiration": {"Date": "2100-01-01T00:00:00Z"}},
    ]})  # fmt: skip

    def expiration(response: Any) -> str | None:
        value: str | None = response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-expiration")
        return value

    before = time.time()
    put = s3.put_object(Bucket=bucket, Key="exp/k", Body=b"data")
    after = time.time()
    header = expiration(put)
    assert header is not None and header.endswith(', rule-id="r%201%2Fx"'), header
    due = email.utils.parsedate_to_datetime(header.split('"')[1]).timestamp()
    assert before + FAR - 1 <= due <= after + FAR + 1  # a day is 1 s on this server
    assert expiration(s3.head_object(Bucket=bucket, Key="exp/k")) == header
    assert expiration(s3.get_object(Bucket=bucket, Key="exp/k")) == header
    assert expiration(s3.head_object(Bucket=bucket, Key="exp/k", VersionId="null")) is None
    copied = expiration(s3.copy_object(Bucket=bucket, Key="exp/copy", CopySource={"Bucket": bucket, "Key": "exp/k"}))
    assert copied is not None and copied.endswith(', rule-id="r%201%2Fx"')
    upload = s3.create_multipart_upload(Bucket=bucket, Key="exp/mp")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="exp/mp", UploadId=upload, PartNumber=1, Body=b"p")
    completed = s3.complete_multipart_upload(Bucket=bucket, Key="exp/mp", UploadId=upload, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})  # fmt: skip
    assert (expiration(completed) or "").endswith(', rule-id="r%201%2Fx"')
    dated = expiration(s3.put_object(Bucket=bucket, Key="date/k", Body=b"x"))
    assert dated == 'expiry-date="Fri, 01 Jan 2100 00:00:00 GMT", rule-id="date"'
    assert expiration(s3.put_object(Bucket=bucket, Key="other/k", Body=b"x")) is None
    assert expiration(s3.head_object(Bucket=bucket, Key="other/k")) is None
    assert expiration(s3.put_object(Bucket=plain, Key="exp/k", Body=b"x")) is None

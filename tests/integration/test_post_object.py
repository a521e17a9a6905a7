"""PostObject (browser form uploads) against the real server.

Forms come from boto3's ``generate_presigned_post`` (what web applications
hand to browsers) or from a small SigV4/SigV2 policy signer written here
from the AWS documentation ("Creating a POST Policy"), and go out with
``requests`` or, to stream large bodies or cut them short, as hand-built
``multipart/form-data`` over ``http.client``.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import socket
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from botocore.exceptions import ClientError

from bench.multipart_memory import RssSampler, status_kib
from lightningstor.checksums import compute
from tests.integration.conftest import make_client
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess
from tests.integration.tenants import Spec, Tenancy

MiB = 1 << 20
REGION = "us-east-1"


# -- forms -------------------------------------------------------------------
def _expiration(seconds: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def v4_form(
    conditions: list[Any],
    fields: dict[str, str],
    *,
    access_key: str = ROOT_ACCESS_KEY,
    secret_key: str = ROOT_SECRET_KEY,
    expires_in: float = 3600,
) -> dict[str, str]:
    """``fields`` plus a SigV4-signed policy of ``conditions``, and the
    signature fields themselves (covered by the policy, as boto3 does)."""
    now = datetime.datetime.now(datetime.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    credential = f"{access_key}/{amz_date[:8]}/{REGION}/s3/aws4_request"
    signed = {"x-amz-algorithm": "AWS4-HMAC-SHA256", "x-amz-credential": credential, "x-amz-date": amz_date}
    document = {"expiration": _expiration(expires_in), "conditions": [*conditions, *({k: v} for k, v in signed.items())]}
    policy = base64.b64encode(json.dumps(document).encode()).decode()
    key = f"AWS4{secret_key}".encode()
    for part in (amz_date[:8], REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, policy.encode(), hashlib.sha256).hexdigest()
    return {**fields, **signed, "policy": policy, "x-amz-signature": signature}


def v2_form(conditions: list[Any], fields: dict[str, str], *, expires_in: float = 3600) -> dict[str, str]:
    """``fields`` plus a SigV2-signed policy (``AWSAccessKeyId``/``signature``)."""
    document = {"expiration": _expiration(expires_in), "conditions": conditions}
    policy = base64.b64encode(json.dumps(document).encode()).decode()
    signature = base64.b64encode(hmac.new(ROOT_SECRET_KEY.encode(), policy.encode(), hashlib.sha1).digest()).decode()
    return {**fields, "AWSAccessKeyId": ROOT_ACCESS_KEY, "policy": policy, "signature": signature}


def post(url: str, fields: dict[str, str], data: bytes = b"hello", filename: str = "hello.txt", **kw: Any) -> Any:
    """The form as a browser sends it: fields first, the file last."""
    return requests.post(url, data=fields, files={"file": (filename, data)}, timeout=60, **kw)


def quoted_md5(data: bytes) -> str:
    """The ETag of a single-part upload of ``data``."""
    return '"' + hashlib.md5(data).hexdigest() + '"'


def error_of(response: Any) -> tuple[int, str, str]:
    root = ET.fromstring(response.content)
    return response.status_code, root.findtext("Code") or "", root.findtext("Message") or ""


def head_status(s3: Any, bucket: str, key: str) -> int:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        return int(e.response["ResponseMetadata"]["HTTPStatusCode"])
    return 200


def encode_form(fields: dict[str, str], filename: str, boundary: str) -> tuple[bytes, bytes]:
    """(everything before the file's bytes, everything after them)."""
    head = b""
    for name, value in fields.items():
        head += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head, f"\r\n--{boundary}--\r\n".encode()


def stream_post(url: str, fields: dict[str, str], blocks: list[bytes], *, cut_after: int | None = None) -> Any:
    """POST the form over ``http.client``, the file sent one block at a
    time; with ``cut_after``, the connection is closed after that many
    blocks (the body cut short) and None is returned."""
    boundary = uuid.uuid4().hex
    head, tail = encode_form(fields, "big.bin", boundary)
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
    try:
        conn.putrequest("POST", parts.path, skip_accept_encoding=True)
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(len(head) + sum(map(len, blocks)) + len(tail)))
        conn.endheaders()
        conn.send(head)
        for index, data in enumerate(blocks):
            if cut_after is not None and index == cut_after:
                assert conn.sock is not None
                conn.sock.shutdown(socket.SHUT_RDWR)
                return None
            conn.send(data)
        conn.send(tail)
        response = conn.getresponse()
        response.body = response.read()
        return response
    finally:
        conn.close()


@pytest.fixture
def url(server: ServerProcess, bucket: str) -> str:
    return f"{server.endpoint}/{bucket}"


# -- uploads that succeed ----------------------------------------------------
def test_presigned_post_uploads_a_small_file(s3: Any, bucket: str) -> None:
    """boto3's generate_presigned_post form stores the file: 204 with the
    ETag and Location headers, and GetObject returns the bytes."""
    form = s3.generate_presigned_post(bucket, "greeting.txt", ExpiresIn=600)
    r = post(form["url"], form["fields"], b"hello, browser")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert r.headers["ETag"] == quoted_md5(b"hello, browser")
    assert r.headers["Location"].endswith(f"/{bucket}/greeting.txt")
    assert s3.get_object(Bucket=bucket, Key="greeting.txt")["Body"].read() == b"hello, browser"


def test_posted_file_gets_the_default_crc64nvme(s3: Any, bucket: str) -> None:
    """A browser's form sends no checksum: the object gets the default
    CRC64NVME (FULL_OBJECT) every upload without one gets, as on AWS, and
    GetObject's checksum mode returns it."""
    data = os.urandom(70_000)
    form = s3.generate_presigned_post(bucket, "form.bin", ExpiresIn=600)
    r = post(form["url"], form["fields"], data)
    assert r.status_code == 204, r.text
    head = s3.head_object(Bucket=bucket, Key="form.bin", ChecksumMode="ENABLED")
    assert (head["ChecksumCRC64NVME"], head["ChecksumType"]) == (compute("crc64nvme", data), "FULL_OBJECT")


def test_acl_field_sets_the_objects_acl(server: ServerProcess, s3: Any, bucket: str) -> None:
    """The form's ``acl`` is PutObject's x-amz-acl: refused in a bucket with
    ACLs disabled (the default), public once the bucket is ObjectWriter."""
    fields = {"acl": "public-read"}
    conditions: list[Any] = [{"acl": "public-read"}]
    form = s3.generate_presigned_post(bucket, "pub.txt", Fields=fields, Conditions=conditions, ExpiresIn=600)
    r = post(form["url"], form["fields"], b"public form")
    assert r.status_code == 400 and b"AccessControlListNotSupported" in r.content
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]})
    r = post(form["url"], form["fields"], b"public form")
    assert r.status_code == 204, r.text
    assert requests.get(f"{server.endpoint}/{bucket}/pub.txt", timeout=30).content == b"public form"


def test_filename_placeholder_names_the_object(s3: Any, bucket: str) -> None:
    """``${filename}`` in the key is replaced by the file part's filename."""
    form = s3.generate_presigned_post(bucket, "uploads/${filename}", ExpiresIn=600)
    r = post(form["url"], form["fields"], b"photo", filename="cat.jpg")
    assert r.status_code == 204, r.text
    assert s3.get_object(Bucket=bucket, Key="uploads/cat.jpg")["Body"].read() == b"photo"


def test_filename_placeholder_in_every_field_and_only_the_last_path_component(s3: Any, bucket: str) -> None:
    """As AWS: ``${filename}`` is expanded in every form field (here
    Content-Disposition, a metadata field and the redirect), before the
    policy is checked, and of a path only what follows the last ``/`` or
    ``\\`` counts (a Windows path's backslashes arrive unescaped)."""
    fields = {"Content-Disposition": 'attachment; filename="${filename}"', "x-amz-meta-original": "${filename}",
              "success_action_redirect": "http://example.com/done?name=${filename}"}
    conditions: list[Any] = [["starts-with", "$Content-Disposition", "attachment"],
                             ["starts-with", "$x-amz-meta-original", ""],
                             ["starts-with", "$success_action_redirect", "http://example.com/done?name=report"]]
    form = s3.generate_presigned_post(bucket, "up/${filename}", Fields=fields, Conditions=conditions, ExpiresIn=600)
    boundary = uuid.uuid4().hex
    for sent, stored in (("report.pdf", "report.pdf"), ("dir/sub/report-2.pdf", "report-2.pdf"),
                         ("C:\\Users\\me\\report-3.pdf", "report-3.pdf")):
        head, tail = encode_form(form["fields"], sent, boundary)
        r = requests.post(form["url"], data=head + b"pdf" + tail, allow_redirects=False, timeout=60,
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert r.status_code == 303, r.text
        assert r.headers["Location"].startswith(f"http://example.com/done?name={stored}&"), r.headers["Location"]
        got = s3.get_object(Bucket=bucket, Key=f"up/{stored}")
        assert got["ContentDisposition"] == f'attachment; filename="{stored}"'
        assert got["Metadata"] == {"original": stored}


def test_success_action_status_201_answers_post_response(s3: Any, bucket: str) -> None:
    """``success_action_status=201``: a PostResponse document naming the
    bucket, key, ETag and location."""
    form = s3.generate_presigned_post(
        bucket, "k201", Fields={"success_action_status": "201"}, Conditions=[{"success_action_status": "201"}]
    )
    r = post(form["url"], form["fields"], b"x")
    assert r.status_code == 201, r.text
    root = ET.fromstring(r.content)
    assert root.tag == "PostResponse"
    assert (root.findtext("Bucket"), root.findtext("Key")) == (bucket, "k201")
    assert root.findtext("ETag") == quoted_md5(b"x")
    assert (root.findtext("Location") or "").endswith(f"/{bucket}/k201")


def test_success_action_redirect_answers_303(s3: Any, bucket: str) -> None:
    """``success_action_redirect``: 303 to that URL with bucket, key and the
    quoted ETag in its query."""
    target = "http://app.example/done?from=upload"
    form = s3.generate_presigned_post(
        bucket, "redir", Fields={"success_action_redirect": target},
        Conditions=[{"success_action_redirect": target}],
    )  # fmt: skip
    r = post(form["url"], form["fields"], b"r", allow_redirects=False)
    assert r.status_code == 303, r.text
    location = urlsplit(r.headers["Location"])
    assert location.netloc == "app.example" and location.path == "/done"
    query = parse_qs(location.query)
    assert query["from"] == ["upload"]
    assert query["bucket"] == [bucket] and query["key"] == ["redir"]
    assert query["etag"] == [quoted_md5(b"r")]


def test_content_type_and_metadata_are_stored(s3: Any, bucket: str) -> None:
    """Content-Type, Cache-Control, x-amz-meta-* and tagging from the form
    are stored as PutObject stores their headers."""
    fields = {
        "Content-Type": "image/png", "Cache-Control": "max-age=60", "x-amz-meta-color": "blue",
        "tagging": "<Tagging><TagSet><Tag><Key>kind</Key><Value>pic</Value></Tag></TagSet></Tagging>",
    }  # fmt: skip
    conditions: list[Any] = [{"bucket": bucket}, ["eq", "$key", "pic.png"], ["starts-with", "$Content-Type", "image/"],
                             {"Cache-Control": "max-age=60"}, {"x-amz-meta-color": "blue"},
                             ["starts-with", "$tagging", ""]]
    r = post(f"{s3.meta.endpoint_url}/{bucket}", v4_form(conditions, {"key": "pic.png", **fields}), b"\x89PNG")
    assert r.status_code == 204, r.text
    head = s3.head_object(Bucket=bucket, Key="pic.png")
    assert head["ContentType"] == "image/png"
    assert head["CacheControl"] == "max-age=60"
    assert head["Metadata"] == {"color": "blue"}
    assert s3.get_object_tagging(Bucket=bucket, Key="pic.png")["TagSet"] == [{"Key": "kind", "Value": "pic"}]


def test_non_ascii_form_metadata_is_returned_rfc2047_encoded(s3: Any, bucket: str) -> None:
    """A form field is UTF-8 text; its value is returned the way AWS returns
    any non-ASCII metadata, as an RFC 2047 encoded-word (not as raw bytes)."""
    fields = {"x-amz-meta-name": "caf\u00e9 \u2615"}
    conditions: list[Any] = [{"bucket": bucket}, ["eq", "$key", "cafe.txt"], {"x-amz-meta-name": "caf\u00e9 \u2615"}]
    r = post(f"{s3.meta.endpoint_url}/{bucket}", v4_form(conditions, {"key": "cafe.txt", **fields}))
    assert r.status_code == 204, r.text
    head = s3.head_object(Bucket=bucket, Key="cafe.txt")
    encoded = "=?UTF-8?B?" + base64.b64encode("caf\u00e9 \u2615".encode()).decode() + "?="
    assert head["Metadata"] == {"name": encoded}


def test_sigv2_policy_signature_is_accepted(url: str, s3: Any, bucket: str) -> None:
    """A SigV2 form (``AWSAccessKeyId`` + base64 HMAC-SHA1 ``signature``), as
    the server accepts SigV2 elsewhere."""
    form = v2_form([{"bucket": bucket}, ["starts-with", "$key", "v2/"]], {"key": "v2/file"})
    r = post(url, form, b"two")
    assert r.status_code == 204, r.text
    assert s3.get_object(Bucket=bucket, Key="v2/file")["Body"].read() == b"two"


def test_versioned_bucket_keeps_every_post(s3: Any, bucket: str) -> None:
    """In a versioned bucket each upload is a new version, reported in
    x-amz-version-id, both readable."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    form = s3.generate_presigned_post(bucket, "v", ExpiresIn=600)
    first = post(form["url"], form["fields"], b"one")
    second = post(form["url"], form["fields"], b"two")
    assert first.status_code == second.status_code == 204
    ids = [first.headers["x-amz-version-id"], second.headers["x-amz-version-id"]]
    assert ids[0] != ids[1]
    versions = s3.list_object_versions(Bucket=bucket, Prefix="v")["Versions"]
    assert sorted(v["VersionId"] for v in versions) == sorted(ids)
    assert s3.get_object(Bucket=bucket, Key="v", VersionId=ids[0])["Body"].read() == b"one"


# -- refused uploads (nothing stored) ------------------------------------------
def test_content_length_range_is_enforced(s3: Any, bucket: str) -> None:
    """A file outside content-length-range: 400 EntityTooLarge /
    EntityTooSmall, and nothing stored; inside, stored."""
    form = s3.generate_presigned_post(bucket, "sized", Conditions=[["content-length-range", 5, 10]])
    assert error_of(post(form["url"], form["fields"], b"x" * 11))[:2] == (400, "EntityTooLarge")
    assert error_of(post(form["url"], form["fields"], b"x" * 4))[:2] == (400, "EntityTooSmall")
    assert head_status(s3, bucket, "sized") == 404
    assert post(form["url"], form["fields"], b"x" * 10).status_code == 204


def test_expired_policy_is_denied(url: str, s3: Any, bucket: str) -> None:
    """A policy past its expiration: 403 AccessDenied "Policy expired."."""
    form = v4_form([{"bucket": bucket}, {"key": "late"}], {"key": "late"}, expires_in=-5)
    assert error_of(post(url, form)) == (403, "AccessDenied", "Invalid according to Policy: Policy expired.")
    assert head_status(s3, bucket, "late") == 404


def test_wrong_signature_and_unknown_key_are_refused(url: str, s3: Any, bucket: str) -> None:
    """A policy signed with another secret: 403 SignatureDoesNotMatch; an
    access key that does not exist: 403 InvalidAccessKeyId."""
    wrong = v4_form([{"bucket": bucket}, {"key": "sig"}], {"key": "sig"}, secret_key="not-the-secret")
    assert error_of(post(url, wrong))[:2] == (403, "SignatureDoesNotMatch")
    unknown = v4_form([{"bucket": bucket}, {"key": "sig"}], {"key": "sig"}, access_key="NOSUCHKEY0000000")
    assert error_of(post(url, unknown))[:2] == (403, "InvalidAccessKeyId")
    assert head_status(s3, bucket, "sig") == 404


def test_field_not_in_policy_is_refused(s3: Any, bucket: str) -> None:
    """A form field no condition covers: 403 "Extra input fields"."""
    form = s3.generate_presigned_post(bucket, "extra")
    fields = {**form["fields"], "x-amz-meta-sneaky": "1"}
    assert error_of(post(form["url"], fields)) == (
        403, "AccessDenied", "Invalid according to Policy: Extra input fields: x-amz-meta-sneaky"
    )
    assert head_status(s3, bucket, "extra") == 404


def test_key_outside_starts_with_is_refused(url: str, s3: Any, bucket: str) -> None:
    """A key the policy's starts-with does not allow: 403 Policy Condition failed."""
    form = v4_form([{"bucket": bucket}, ["starts-with", "$key", "user/"]], {"key": "admin/x"})
    status, code, message = error_of(post(url, form))
    assert (status, code) == (403, "AccessDenied")
    assert message.startswith("Invalid according to Policy: Policy Condition failed:") and "$key" in message
    assert head_status(s3, bucket, "admin/x") == 404


def test_policy_for_another_bucket_is_refused(server: ServerProcess, s3: Any, bucket: str) -> None:
    """A form signed for bucket A posted to bucket B: 403, nothing in B."""
    form = s3.generate_presigned_post("some-other-bucket", "k")
    r = post(f"{server.endpoint}/{bucket}", form["fields"])
    status, code, message = error_of(r)
    assert (status, code) == (403, "AccessDenied")
    assert message == 'Invalid according to Policy: Policy Condition failed: {"bucket": "some-other-bucket"}'
    assert head_status(s3, bucket, "k") == 404


def test_missing_key_and_missing_file_are_bad_requests(url: str, s3: Any, bucket: str) -> None:
    """No ``key`` field: 400 InvalidArgument in AWS's words; no file part:
    400 too."""
    form = v4_form([{"bucket": bucket}], {})
    status, code, message = error_of(post(url, form))
    assert (status, code) == (400, "InvalidArgument")
    assert message.startswith("Bucket POST must contain a field named 'key'.")
    form = v4_form([{"bucket": bucket}, {"key": "nofile"}], {"key": "nofile"})
    r = requests.post(url, files={k: (None, v) for k, v in form.items()}, timeout=30)
    assert r.status_code == 400
    assert head_status(s3, bucket, "nofile") == 404


def test_post_without_a_form_is_precondition_failed(url: str) -> None:
    """``POST /bucket`` whose body is not multipart/form-data: 412, as AWS."""
    r = requests.post(url, data=b"<x/>", headers={"Content-Type": "application/xml"}, timeout=30)
    assert error_of(r)[:2] == (412, "PreconditionFailed")


def test_unsupported_object_options_are_refused(s3: Any, bucket: str) -> None:
    """A form asking for KMS server-side encryption gets PutObject's 501,
    even when its policy allows the field: nothing is stored unencrypted
    (AES256 is served: test_sse.py)."""
    sse = {"x-amz-server-side-encryption": "aws:kms"}
    form = s3.generate_presigned_post(bucket, "sse", Fields=sse, Conditions=[sse])
    assert error_of(post(form["url"], form["fields"]))[:2] == (501, "NotImplemented")
    assert head_status(s3, bucket, "sse") == 404


def test_body_larger_than_any_object_is_refused_at_once(url: str) -> None:
    """A Content-Length no form and object can add up to: 400 EntityTooLarge
    before any of the body is sent."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.putrequest("POST", parts.path, skip_accept_encoding=True)
        conn.putheader("Content-Type", "multipart/form-data; boundary=x")
        conn.putheader("Content-Length", str(6 << 30))
        conn.endheaders()
        response = conn.getresponse()
        root = ET.fromstring(response.read())
        assert (response.status, root.findtext("Code")) == (400, "EntityTooLarge")
    finally:
        conn.close()


def test_truncated_form_is_malformed(url: str, s3: Any, bucket: str) -> None:
    """A complete HTTP body whose form has no closing boundary: 400
    MalformedPOSTRequest and nothing stored."""
    fields = v4_form([{"bucket": bucket}, {"key": "trunc"}], {"key": "trunc"})
    head, _tail = encode_form(fields, "f", "BOUNDARY")
    r = requests.post(url, data=head + b"data without an end",
                      headers={"Content-Type": "multipart/form-data; boundary=BOUNDARY"}, timeout=30)
    assert error_of(r)[:2] == (400, "MalformedPOSTRequest")
    assert head_status(s3, bucket, "trunc") == 404


# -- large and broken bodies ------------------------------------------------------
def test_large_upload_streams_and_reads_back(server: ServerProcess, s3: Any, bucket: str) -> None:
    """A 20 MiB file, sent 1 MiB at a time, reads back byte-identical with
    the right ETag, and the server's RSS grows by less than the file:
    it was streamed into chunks, not held."""
    assert server.proc is not None
    blocks = [os.urandom(MiB) for _ in range(20)]
    form = s3.generate_presigned_post(bucket, "big.bin", ExpiresIn=600)
    warm = stream_post(form["url"], form["fields"], blocks[:2])  # allocator warm-up: a small upload first
    assert warm.status == 204
    base = status_kib(server.proc.pid, "VmRSS") * 1024
    sampler = RssSampler(server.proc.pid, interval=0.01)
    sampler.start()
    response = stream_post(form["url"], form["fields"], blocks)
    sampler.stop()
    growth = sampler.peak_kib * 1024 - base
    assert response.status == 204, response.body
    whole = b"".join(blocks)
    assert response.getheader("ETag") == quoted_md5(whole)
    got = s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(whole).digest()
    assert growth < len(whole), f"server RSS grew by {growth / MiB:.1f} MiB"


def test_connection_dropped_mid_file_stores_nothing(server: ServerProcess, s3: Any, bucket: str) -> None:
    """The client goes away after 3 of 8 MiB: no object, and the server
    still answers."""
    blocks = [os.urandom(MiB) for _ in range(8)]
    form = s3.generate_presigned_post(bucket, "cut.bin", ExpiresIn=600)
    assert stream_post(form["url"], form["fields"], blocks, cut_after=3) is None
    time.sleep(0.5)
    assert head_status(s3, bucket, "cut.bin") == 404
    assert post(form["url"], form["fields"], b"after").status_code == 204


# -- permissions --------------------------------------------------------------------
@pytest.fixture(scope="module")
def tenancy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenancy]:
    t = Tenancy.start(tmp_path_factory.mktemp("post-tenancy"))
    yield t
    t.stop()


def test_signer_without_write_permission_is_denied(tenancy: Tenancy, tmp_path: Path) -> None:
    """A policy signed by a read-only principal: 403 AccessDenied and
    nothing stored; the same form signed by a read-write one is stored
    (the same objects:put check as PutObject)."""
    ids = tenancy.provision([
        Spec("post-admin", "postorg", roles=("admin",)),
        Spec("post-ro", "postorg", roles=("read-only",)),
        Spec("post-rw", "postorg", roles=("read-write",)),
    ])  # fmt: skip
    endpoint = tenancy.server.endpoint
    admin = ids["post-admin"].s3(endpoint)
    admin.create_bucket(Bucket="forms")
    for who, expected in (("post-ro", 403), ("post-rw", 204)):
        client = ids[who].s3(endpoint)
        form = client.generate_presigned_post("forms", f"by-{who}")
        r = post(form["url"], form["fields"], who.encode())
        assert r.status_code == expected, r.text
        if expected == 403:
            assert error_of(r)[1] == "AccessDenied"
    assert head_status(admin, "forms", "by-post-ro") == 404
    assert admin.get_object(Bucket="forms", Key="by-post-rw")["Body"].read() == b"post-rw"


def test_a_forms_public_acl_takes_the_right_to_change_acls(tenancy: Tenancy) -> None:
    """A form with ``acl=public-read``, into a bucket with ACLs enabled,
    signed by a read-write principal (objects:put, not objects:put-acl):
    403 AccessDenied and nothing stored, as PutObject with x-amz-acl; a
    private form of the same signer, and the admin's public one, are stored."""
    ids = tenancy.provision([
        Spec("share-admin", "shareorg", roles=("admin",)),
        Spec("share-rw", "shareorg", roles=("read-write",)),
    ])  # fmt: skip
    endpoint = tenancy.server.endpoint
    admin = ids["share-admin"].s3(endpoint)
    admin.create_bucket(Bucket="share-forms")
    admin.put_bucket_ownership_controls(
        Bucket="share-forms", OwnershipControls={"Rules": [{"ObjectOwnership": "ObjectWriter"}]}
    )
    for who, acl, expected in (("share-rw", "public-read", 403), ("share-rw", "private", 204),
                               ("share-admin", "public-read", 204)):
        form = ids[who].s3(endpoint).generate_presigned_post(
            "share-forms", f"{who}-{acl}", Fields={"acl": acl}, Conditions=[{"acl": acl}]
        )
        r = post(form["url"], form["fields"], b"form")
        assert r.status_code == expected, r.text
        if expected == 403:
            assert error_of(r)[1] == "AccessDenied"
    assert head_status(admin, "share-forms", "share-rw-public-read") == 404
    assert head_status(admin, "share-forms", "share-rw-private") == 200
    assert requests.get(f"{endpoint}/share-forms/share-admin-public-read", timeout=30).content == b"form"


def test_virtual_hosted_post(tmp_path: Path) -> None:
    """With ``[s3] domain``, ``POST /`` to ``Host: bucket.domain`` is the
    bucket's form upload; the 201 document's Location has no bucket in the
    path (it is in the host)."""
    (tmp_path / "data").mkdir()
    config = tmp_path / "vhost.toml"
    config.write_text('[s3]\ndomain = "s3.test"\n')
    server = ServerProcess(tmp_path / "data", config=str(config)).start()
    try:
        s3: Any = make_client(server.endpoint)
        s3.create_bucket(Bucket="vpost")
        form = v4_form([{"bucket": "vpost"}, {"key": "hosted"}, {"success_action_status": "201"}],
                       {"key": "hosted", "success_action_status": "201"})
        host = f"vpost.s3.test:{server.port}"
        r = post(f"{server.endpoint}/", form, b"vh", headers={"Host": host})
        assert r.status_code == 201, r.text
        assert ET.fromstring(r.content).findtext("Location") == f"http://{host}/hosted"
        assert s3.get_object(Bucket="vpost", Key="hosted")["Body"].read() == b"vh"
    finally:
        server.stop()


def test_bucket_policy_conditions_read_the_form_not_unsigned_headers(url: str, s3: Any, bucket: str) -> None:
    """A form upload states in its fields what PutObject states in headers,
    so a bucket policy's s3:x-amz-* and s3:RequestObjectTag keys are the
    fields': HTTP headers added to the POST (signed by nothing) neither
    satisfy a "require SSE" Deny nor hide a tag the form sets."""
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "RequireSSE", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": f"arn:aws:s3:::{bucket}/*",
         "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}}},
        {"Sid": "NoForbiddenTag", "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
         "Resource": f"arn:aws:s3:::{bucket}/*",
         "Condition": {"StringEquals": {"s3:RequestObjectTag/class": "forbidden"}}},
    ]}))
    sse = {"x-amz-server-side-encryption": "AES256"}
    plain = v4_form([{"bucket": bucket}, ["starts-with", "$key", ""]], {"key": "plain"})
    assert error_of(post(url, plain, headers=sse))[:2] == (403, "AccessDenied")
    assert head_status(s3, bucket, "plain") == 404
    encrypted = v4_form([{"bucket": bucket}, ["starts-with", "$key", ""], sse], {"key": "encrypted", **sse})
    assert post(url, encrypted).status_code == 204
    assert s3.head_object(Bucket=bucket, Key="encrypted")["ServerSideEncryption"] == "AES256"
    tagging = "<Tagging><TagSet><Tag><Key>class</Key><Value>forbidden</Value></Tag></TagSet></Tagging>"
    tagged = v4_form([{"bucket": bucket}, ["starts-with", "$key", ""], ["starts-with", "$tagging", ""], sse],
                     {"key": "tagged", "tagging": tagging, **sse})
    assert error_of(post(url, tagged, headers=sse))[:2] == (403, "AccessDenied")
    assert head_status(s3, bucket, "tagged") == 404


@pytest.mark.parametrize(
    ("statements", "field"),
    [
        # AWS's "enforce conditional writes": Deny when the write states no If-None-Match
        ([{"Effect": "Allow"}, {"Effect": "Deny", "Condition": {"Null": {"s3:if-none-match": "true"}}}],
         {"if-none-match": "*"}),
        ([{"Effect": "Allow", "Condition": {"StringEquals": {"s3:x-amz-grant-full-control": "id=someone-else"}}}],
         {"x-amz-grant-full-control": "id=someone-else"}),
    ],
    ids=["if-none-match", "grant"],
)
def test_a_form_field_the_upload_ignores_satisfies_no_policy_condition(
    url: str, s3: Any, bucket: str, statements: list[dict[str, Any]], field: dict[str, str]
) -> None:
    """A form upload applies neither an if-none-match nor a grant field, so
    neither may satisfy a condition about them: an anonymous form carrying
    one overwrote an object under an "enforce conditional writes" policy,
    and was let in by a policy requiring a grant it never stored."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"original")
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{bucket}/*", **s}
        for s in statements
    ]}))
    assert error_of(post(url, {"key": "k", **field}, b"OVERWRITTEN"))[:2] == (403, "AccessDenied")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"original"


def test_the_file_parts_own_content_type_is_not_stored(s3: Any, bucket: str) -> None:
    """As AWS: Content-Type comes from the form field only (default
    binary/octet-stream).  A policy saying nothing of Content-Type let the
    uploader store text/html through the file part's header, served back
    from the storage origin."""
    form = s3.generate_presigned_post(bucket, "avatar.png")
    page = b"<script>alert(1)</script>"
    r = requests.post(form["url"], data=form["fields"], files={"file": ("a.png", page, "text/html")}, timeout=60)
    assert r.status_code == 204, r.text
    got = s3.get_object(Bucket=bucket, Key="avatar.png")
    assert got["ContentType"] == "binary/octet-stream" and got["Body"].read() == page
    typed = v4_form([{"bucket": bucket}, ["eq", "$key", "typed"], {"Content-Type": "image/png"}],
                    {"key": "typed", "Content-Type": "image/png"})  # fmt: skip
    r = requests.post(f"{s3.meta.endpoint_url}/{bucket}", data=typed, files={"file": ("t", b"x", "text/html")}, timeout=60)
    assert r.status_code == 204, r.text
    assert s3.head_object(Bucket=bucket, Key="typed")["ContentType"] == "image/png"


def test_a_redirect_gets_its_query_before_the_fragment_and_ascii_only(s3: Any, bucket: str) -> None:
    """RFC 3986: the query goes before ``#fragment`` (after it, a browser
    never sends bucket, key and etag); characters outside ASCII are
    percent-encoded as UTF-8, whichever they are (é went out as one Latin-1
    byte, ☃ as UTF-8)."""
    target = "https://app.example/dön€?from=é#top"
    form = s3.generate_presigned_post(
        bucket, "frag", Fields={"success_action_redirect": target}, Conditions=[{"success_action_redirect": target}]
    )
    r = post(form["url"], form["fields"], b"f", allow_redirects=False)
    assert r.status_code == 303, r.text
    raw = r.raw.headers["Location"]
    assert raw.isascii(), raw
    location = urlsplit(raw)
    assert location.fragment == "top" and location.path == "/d%C3%B6n%E2%82%AC"
    query = parse_qs(location.query)
    assert query["from"] == ["é"] and query["key"] == ["frag"] and query["etag"] == [quoted_md5(b"f")]


def test_field_names_fold_ascii_case_only(url: str, s3: Any, bucket: str) -> None:
    """``\\u212Aey`` (KELVIN SIGN) is not ``key``: str.lower() folded it to
    "k" and the upload went through; AWS refuses the unknown field."""
    fields = v4_form([{"bucket": bucket}, ["starts-with", "$key", ""]], {"key": "real"})
    fields["\u212aey"] = "other"
    status, code, message = error_of(post(url, fields))
    assert (status, code) == (403, "AccessDenied") and "Extra input fields" in message, message
    assert head_status(s3, bucket, "real") == 404


@pytest.mark.parametrize("signed", ["v2", "v4"])
def test_a_bucket_policy_on_the_signature_version_applies_to_forms(
    url: str, s3: Any, bucket: str, signed: str
) -> None:
    """AWS's "deny SigV2" policy (``s3:signatureversion`` = ``AWS``): a SigV2
    form is refused like SigV2 headers, a SigV4 form goes through.  Forms
    had no ``s3:signatureversion``: the SigV2 form passed."""
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "NoSigV2", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
         "Condition": {"StringEquals": {"s3:signatureversion": "AWS"}}},
    ]}))  # fmt: skip
    conditions: list[Any] = [{"bucket": bucket}, ["starts-with", "$key", ""]]
    form = v2_form(conditions, {"key": "sig"}) if signed == "v2" else v4_form(conditions, {"key": "sig"})
    r = post(url, form)
    if signed == "v2":
        assert error_of(r)[:2] == (403, "AccessDenied")
        assert head_status(s3, bucket, "sig") == 404
    else:
        assert r.status_code == 204, r.text

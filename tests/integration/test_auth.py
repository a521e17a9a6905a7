"""Authentication against the real server: SigV4/V2 headers, presigned URLs, failures."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lightningstor.auth.presign import presign_v4
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY


def _client(server, *, key=ROOT_ACCESS_KEY, secret=ROOT_SECRET_KEY, sig="s3v4", region="us-east-1"):
    return boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
        region_name=region, config=Config(signature_version=sig, s3={"addressing_style": "path"},
                                          retries={"max_attempts": 1}))


def _fetch(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method, data=data)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_wrong_secret_is_signature_mismatch(server, s3, bucket):
    """A request signed with the wrong secret is 403 SignatureDoesNotMatch."""
    bad = _client(server, secret="wrong-secret")
    with pytest.raises(ClientError) as e:
        bad.list_objects_v2(Bucket=bucket)
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_unknown_key_is_invalid_access_key(server):
    """An unknown access key is 403 InvalidAccessKeyId."""
    with pytest.raises(ClientError) as e:
        _client(server, key="NOSUCHKEY").list_buckets()
    assert e.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_wrong_region_refused(server):
    """A credential scope for another region is refused (AuthorizationHeaderMalformed)."""
    with pytest.raises(ClientError) as e:
        _client(server, region="eu-central-1").list_buckets()
    assert e.value.response["Error"]["Code"] == "AuthorizationHeaderMalformed"


def test_sigv2_client_works(server, bucket, s3):
    """Old-style SigV2 header signing (s3 signature_version) is accepted."""
    v2 = _client(server, sig="s3")
    v2.put_object(Bucket=bucket, Key="v2", Body=b"old")
    assert v2.get_object(Bucket=bucket, Key="v2")["Body"].read() == b"old"


def test_sigv2_bucket_level_calls_work(server):
    """SigV2 bucket-level requests (no key): botocore signs the resource
    ``/bucket/`` while the path it sends is ``/bucket``; both name the
    bucket.  Create, list (v1 and v2), head, delete, and the bucket's
    subresources all verify."""
    v2 = _client(server, sig="s3")
    name = f"v2-{uuid.uuid4().hex[:8]}"
    v2.create_bucket(Bucket=name)
    v2.head_bucket(Bucket=name)
    v2.put_object(Bucket=name, Key="k", Body=b"x")
    assert [o["Key"] for o in v2.list_objects(Bucket=name)["Contents"]] == ["k"]
    assert v2.list_objects_v2(Bucket=name, Prefix="k")["KeyCount"] == 1
    assert v2.get_bucket_versioning(Bucket=name).get("Status") is None
    assert name in [b["Name"] for b in v2.list_buckets()["Buckets"]]
    v2.delete_object(Bucket=name, Key="k")
    v2.delete_bucket(Bucket=name)


def test_presigned_get_and_put_v4(server, s3, bucket):
    """boto3 SigV4 presigned GET and PUT URLs work without any other credentials."""
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=300)
    status, _ = _fetch(put_url, "PUT", b"presigned body")
    assert status == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p"}, ExpiresIn=300)
    assert _fetch(get_url) == (200, b"presigned body")


def test_presigned_v2_from_default_boto3(server, bucket, s3):
    """boto3's default presigner for us-east-1 emits SigV2 query auth; it works."""
    s3.put_object(Bucket=bucket, Key="p2", Body=b"v2 url")
    v2 = _client(server, sig="s3")
    url = v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p2"}, ExpiresIn=300)
    assert "Signature=" in url and "AWSAccessKeyId=" in url
    assert _fetch(url) == (200, b"v2 url")


def test_presigned_tampered_and_expired(server, s3, bucket):
    """A presigned URL with a changed parameter or past its expiry is refused with 403."""
    s3.put_object(Bucket=bucket, Key="t", Body=b"x")
    s3.put_object(Bucket=bucket, Key="u", Body=b"y")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "t"}, ExpiresIn=300)
    status, body = _fetch(url.replace("/t?", "/u?"))
    assert status == 403 and b"SignatureDoesNotMatch" in body
    old = presign_v4("GET", f"{server.endpoint}/{bucket}/t", ROOT_ACCESS_KEY, ROOT_SECRET_KEY,
                     expires=60, now=time.time() - 3600)
    status, body = _fetch(old)
    assert status == 403 and b"AccessDenied" in body
    fresh = presign_v4("GET", f"{server.endpoint}/{bucket}/t", ROOT_ACCESS_KEY, ROOT_SECRET_KEY, expires=60)
    assert _fetch(fresh) == (200, b"x")


def test_presign_over_seven_days_refused(server, s3, bucket):
    """X-Amz-Expires beyond 7 days is refused by the server (and by our presign helper)."""
    s3.put_object(Bucket=bucket, Key="t", Body=b"x")
    with pytest.raises(ValueError):
        presign_v4("GET", f"{server.endpoint}/{bucket}/t", ROOT_ACCESS_KEY, ROOT_SECRET_KEY,
                   expires=8 * 24 * 3600)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "t"},
                                    ExpiresIn=8 * 24 * 3600)
    status, body = _fetch(url)
    assert status in (400, 403) and b"<Error>" in body


def test_anonymous_denied(server, bucket):
    """Unsigned requests are AccessDenied with an S3 XML error."""
    status, body = _fetch(f"{server.endpoint}/{bucket}")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body and b"<RequestId>" in body


def test_admin_presign_command(server, s3, bucket):
    """`lightningstor-admin presign` prints a URL the server accepts (credential from the environment),
    for a URL written with raw non-ASCII characters too (é was encoded as latin-1: InvalidURI)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    admin = str(Path(sys.executable).with_name("lightningstor-admin"))
    env = {**os.environ, "LIGHTNINGSTOR_ACCESS_KEY": ROOT_ACCESS_KEY, "LIGHTNINGSTOR_SECRET_KEY": ROOT_SECRET_KEY}
    for key in ("cmd", "café ü.txt"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"from the command")
        out = subprocess.run([admin, "presign", f"{server.endpoint}/{bucket}/{key}", "--expires", "120"],
                             env=env, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert ROOT_SECRET_KEY not in out.stdout
        assert _fetch(out.stdout.strip()) == (200, b"from the command")


def test_signatures_and_secrets_never_logged(server, s3, bucket):
    """The server's log holds neither presigned signatures nor credentials nor the secret."""
    s3.put_object(Bucket=bucket, Key="logged", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "logged"}, ExpiresIn=60)
    assert _fetch(url)[0] == 200
    signature = url.rsplit("X-Amz-Signature=", 1)[1].split("&")[0]
    time.sleep(0.2)
    log = "".join(server.output)
    assert f"/{bucket}/logged?" in log  # the request is logged...
    assert signature not in log  # ...without its signature
    assert ROOT_SECRET_KEY not in log
    assert "X-Amz-Credential=" not in log


@pytest.mark.parametrize("text", ["café", "voilà", "Škoda", "Ågesen", "ąb", "中文", " à  trim "])
def test_utf8_header_values_signed_as_bytes(server, s3, bucket, text):
    """A client that signs header values as the UTF-8 bytes it sends, trimming
    and collapsing spaces only (AWS's Trimall, the Go SDKs under rclone,
    restic and mc), is verified whatever the characters: the UTF-8 bytes of
    "à", "Š" or "Å" include 0x85 or 0xA0, which are not spaces."""
    import base64
    import hashlib
    import hmac
    import http.client

    from tests.integration.test_input_properties import host_of, signing_key

    raw = text.encode("utf-8").decode("latin-1")  # the header as the wire carries it
    key, body = f"meta-{uuid.uuid4().hex[:8]}", b"x"
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    payload = hashlib.sha256(body).hexdigest()
    headers = {"host": host_of(server), "x-amz-content-sha256": payload, "x-amz-date": amz_date,
               "x-amz-meta-note": raw}  # fmt: skip
    signed = sorted(headers)
    block = "".join(f"{name}:{' '.join(p for p in headers[name].split(' ') if p)}\n" for name in signed)
    canonical = "\n".join(["PUT", f"/{bucket}/{key}", "", block, ";".join(signed), payload])
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    digest = hashlib.sha256(canonical.encode("latin-1")).hexdigest()
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, digest])
    signature = hmac.new(signing_key(ROOT_SECRET_KEY, amz_date[:8]), to_sign.encode(), hashlib.sha256).hexdigest()
    headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={ROOT_ACCESS_KEY}/{scope}, SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    conn = http.client.HTTPConnection(host_of(server), timeout=10)
    try:
        conn.request("PUT", f"/{bucket}/{key}", body=body, headers=headers)
        reply = conn.getresponse()
        assert (reply.status, reply.read()) == (200, b"")
    finally:
        conn.close()
    stored = s3.head_object(Bucket=bucket, Key=key)["ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-note"]
    # Returned as AWS returns non-ASCII metadata: RFC 2047, UTF-8, base64.
    assert stored == f"=?UTF-8?B?{base64.b64encode(text.strip(' ').encode()).decode()}?="


def _post_form_v2(server, bucket: str, key: str) -> tuple[int, bytes]:
    """A browser-form upload (PostObject) signed with SigV2: the policy's
    HMAC-SHA1 under the root secret."""
    import base64
    import hashlib
    import hmac
    import json

    import requests

    expiration = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
    policy = base64.b64encode(json.dumps({"expiration": expiration, "conditions": [
        {"bucket": bucket}, ["starts-with", "$key", ""]]}).encode()).decode()
    signature = base64.b64encode(hmac.new(ROOT_SECRET_KEY.encode(), policy.encode(), hashlib.sha1).digest()).decode()
    fields = {"key": key, "AWSAccessKeyId": ROOT_ACCESS_KEY, "policy": policy, "signature": signature}
    r = requests.post(f"{server.endpoint}/{bucket}", data=fields, files={"file": ("f", b"form body")}, timeout=30)
    return r.status_code, r.content


@pytest.mark.parametrize("allowed", ["v4", "v2"])
def test_signature_version_setting_refuses_the_other_signatures(tmp_path, allowed):
    """``[s3] signature_version = "v4"`` takes SigV4 only: a SigV2 request,
    header or presigned URL or browser form, is 400 InvalidRequest "The
    authorization mechanism you have provided is not supported. Please use
    AWS4-HMAC-SHA256." (AWS's answer where SigV2 is off) and changes nothing;
    ``"v2"`` is the mirror image.  ``presigned_url_ttl_seconds`` caps a
    presigned URL's lifetime: SigV4's X-Amz-Expires above it, or a SigV2
    Expires further ahead, is refused (both were accepted up to any value
    the signer chose, the setting read and unused)."""
    from tests.integration.server import ServerProcess

    config = tmp_path / "config.toml"
    config.write_text(f'[storage]\nmin_free_bytes = 0\n[s3]\nsignature_version = "{allowed}"\n'
                      "presigned_url_ttl_seconds = 60\n")
    server = ServerProcess(tmp_path / "data", config=str(config)).start()
    try:
        good, bad = ("s3v4", "s3") if allowed == "v4" else ("s3", "s3v4")
        wanted = b"Please use AWS4-HMAC-SHA256." if allowed == "v4" else b"Please use AWS."
        ok = _client(server, sig=good)
        ok.create_bucket(Bucket="sigs")
        ok.put_object(Bucket="sigs", Key="k", Body=b"kept")
        with pytest.raises(ClientError) as e:
            _client(server, sig=bad).put_object(Bucket="sigs", Key="k", Body=b"refused")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert e.value.response["Error"]["Code"] == "InvalidRequest"
        assert e.value.response["Error"]["Message"].encode().endswith(wanted)
        url = _client(server, sig=bad).generate_presigned_url(
            "get_object", Params={"Bucket": "sigs", "Key": "k"}, ExpiresIn=30)
        status, body = _fetch(url)
        assert status == 400 and b"<Code>InvalidRequest</Code>" in body and wanted in body
        status, body = _post_form_v2(server, "sigs", "form")
        if allowed == "v4":
            assert status == 400 and b"<Code>InvalidRequest</Code>" in body and wanted in body, body
            assert "Contents" not in ok.list_objects_v2(Bucket="sigs", Prefix="form")
        else:  # a SigV2 form where SigV2 is what is taken
            assert status == 204, body
            assert ok.get_object(Bucket="sigs", Key="form")["Body"].read() == b"form body"
        assert ok.get_object(Bucket="sigs", Key="k")["Body"].read() == b"kept"
        within = ok.generate_presigned_url("get_object", Params={"Bucket": "sigs", "Key": "k"}, ExpiresIn=60)
        assert _fetch(within) == (200, b"kept")
        beyond = ok.generate_presigned_url("get_object", Params={"Bucket": "sigs", "Key": "k"}, ExpiresIn=61)
        status, body = _fetch(beyond)
        assert status == 400 and b"AuthorizationQueryParametersError" in body, body
    finally:
        server.stop()

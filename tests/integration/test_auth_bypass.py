"""Auth bypass attempts against the real server (issue #9): every one is refused and changes nothing.

The attacks: a request whose Host is not signed or differs from the signed
one; ``x-amz-*`` headers added after signing (header auth and presigned);
presigned URLs with any parameter (or the method) changed; expired and
future-dated signatures; a valid signature from another tenant's key; replayed
or spliced aws-chunked chunks (a wrong chain signature); tampered SigV2
requests.  After each refusal the legitimate owner's view of the store (its
buckets, every object version and its bytes, tags, versioning, uploads and
parts) is exactly what it was.

Decisions, following AWS:

* ``host`` and every ``x-amz-*`` header present must be signed: anything else
  is 403 ``AccessDenied`` ("There were headers present in the request which
  were not signed"), never silently ignored, because ``x-amz-*`` headers
  change what a request does (``x-amz-copy-source`` turns a PUT into a copy).
* Buckets are scoped to an organisation (SPEC: "Unique within org"): another
  tenant's bucket does not exist in the caller's scope, so every request for
  it is 404 ``NoSuchBucket`` and a same-named bucket the other tenant creates
  is its own, separate bucket.
* Header signatures more than 15 minutes off are 403 ``RequestTimeTooSkewed``;
  presigned URLs past their expiry or dated in the future are 403
  ``AccessDenied``.

The second tenant (an admin of another organisation) is created with the real
``lightningstor-admin principal create`` and ``key create`` commands.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from botocore import auth as botocore_auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.integration.conftest import make_client
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess

# Signing and framing helpers shared with the property tests (no tests are imported).
from tests.integration.test_input_properties import (
    ROOT,
    SIGNED,
    Chunked,
    ChunkSigning,
    Reply,
    chunked,
    hmac_sha256,
    host_of,
    object_path,
    other_hex,
    presign,
    send,
    sign,
    signing_key,
)

VICTIM = "victim"
VICTIM_2 = "victim-2"
SECRET_BODY = b"tenant A's private bytes"
EMPTY_SHA = hashlib.sha256(b"").hexdigest()

def create_tenant(data_dir: Path, org: str, principal: str) -> Credentials:
    """An admin principal of another org and its access key, made with the real
    ``lightningstor-admin principal create`` / ``key create`` against the running
    server's data dir, as an operator would.  The role is admin so that every
    refusal below is the tenant boundary's doing, not a missing permission."""
    admin = str(Path(sys.executable).with_name("lightningstor-admin"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTNINGSTOR_")}
    where = ["--data-dir", str(data_dir)]
    for argv in (["principal", "create", principal, "--org", org, "--role", "admin"],
                 ["key", "create", principal, "--json"]):
        out = subprocess.run([admin, *argv, *where], capture_output=True, text=True, timeout=120, env=env)
        assert out.returncode == 0, (argv, out.stderr)
    made = json.loads(out.stdout)
    return Credentials(made["access_key_id"], made["secret_access_key"])


@dataclass
class Env:
    server: ServerProcess
    s3: Any  # tenant A (root, org "default")
    other: Credentials  # tenant B (org "tenant-b")
    other_s3: Any
    upload_id: str


def _client(server: ServerProcess, creds: Credentials, signature_version: str = "s3v4") -> Any:
    return boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key, region_name="us-east-1",
        config=Config(signature_version=signature_version, s3={"addressing_style": "path"},
                      retries={"max_attempts": 1}))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("bypass")
    data = base / "data"
    data.mkdir()
    server = ServerProcess(data).start()
    s3: Any = make_client(server.endpoint)
    for name in (VICTIM, VICTIM_2):
        s3.create_bucket(Bucket=name)
        s3.put_object(Bucket=name, Key="secret", Body=SECRET_BODY)
    s3.put_object_tagging(Bucket=VICTIM, Key="secret", Tagging={"TagSet": [{"Key": "owner", "Value": "a"}]})
    s3.put_bucket_tagging(Bucket=VICTIM, Tagging={"TagSet": [{"Key": "team", "Value": "a"}]})
    upload = s3.create_multipart_upload(Bucket=VICTIM, Key="in-progress")["UploadId"]
    s3.upload_part(Bucket=VICTIM, Key="in-progress", UploadId=upload, PartNumber=1, Body=b"part")
    other = create_tenant(data, "tenant-b", "mallory")
    yield Env(server, make_client(server.endpoint), other, _client(server, other), upload)
    server.stop()


def snapshot(env: Env) -> dict[str, Any]:
    """Everything tenant A can see: buckets, versions with bytes, tags, versioning, uploads, parts."""
    s3 = env.s3
    state: dict[str, Any] = {"buckets": sorted(b["Name"] for b in s3.list_buckets()["Buckets"])}
    for bucket in state["buckets"]:
        versions = s3.list_object_versions(Bucket=bucket)
        entries = []
        for v in versions.get("Versions", []):
            obj = s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
            tags = s3.get_object_tagging(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["TagSet"]
            entries.append((v["Key"], v["VersionId"], v["ETag"], obj["Body"].read(), obj.get("Metadata"),
                            obj.get("ContentType"), tags))
        markers = [(m["Key"], m["VersionId"]) for m in versions.get("DeleteMarkers", [])]
        try:
            bucket_tags = s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
        except ClientError:
            bucket_tags = None
        uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        parts = {
            u["UploadId"]: [(p["PartNumber"], p["ETag"], p["Size"])
                            for p in s3.list_parts(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"]).get("Parts", [])]
            for u in uploads
        }
        state[bucket] = {
            "objects": entries, "markers": markers, "tags": bucket_tags,
            "versioning": s3.get_bucket_versioning(Bucket=bucket).get("Status"), "parts": parts,
        }
    return state


@pytest.fixture
def unchanged(env: Env) -> Iterator[None]:
    """Asserts, after the test, that tenant A's store is exactly as before it."""
    before = snapshot(env)
    yield
    assert snapshot(env) == before


def refused(reply: Reply, status: int, code: str) -> None:
    assert (reply.status, reply.code) == (status, code), reply
    assert SECRET_BODY not in reply.body


# ---------------------------------------------------------------------------
# An independent SigV4 signer, for requests botocore will not produce
# (SignedHeaders without host)
# ---------------------------------------------------------------------------


def manual_authorization(method: str, path: str, query: str, headers: dict[str, str], signed: list[str],
                         amz_date: str, payload: str = EMPTY_SHA) -> str:
    """An Authorization header over exactly the ``signed`` headers (AWS SigV4 documentation, step by step)."""
    lower = {k.lower(): v for k, v in headers.items()}
    block = "".join(f"{name}:{' '.join(lower[name].split())}\n" for name in signed)
    canonical = "\n".join([method, path, query, block, ";".join(signed), payload])
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac_sha256(signing_key(ROOT_SECRET_KEY, amz_date[:8]), to_sign).hex()
    return f"AWS4-HMAC-SHA256 Credential={ROOT_ACCESS_KEY}/{scope}, SignedHeaders={';'.join(signed)}, Signature={signature}"


def _amz_now() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_unsigned_host_is_refused(env: Env, unchanged: None, method: str) -> None:
    """A correct signature that leaves ``host`` out of SignedHeaders is 403 AccessDenied;
    the same signer with host included is accepted (so the refusal is about host alone)."""
    key = "secret" if method == "GET" else "host-unsigned"
    path = object_path(VICTIM, key)
    body = b"" if method == "GET" else b"planted"
    payload = hashlib.sha256(body).hexdigest()
    headers = {"Host": host_of(env.server), "x-amz-date": _amz_now(), "x-amz-content-sha256": payload}
    without = ["x-amz-content-sha256", "x-amz-date"]
    auth = manual_authorization(method, path, "", headers, without, headers["x-amz-date"], payload)
    refused(send(env.server, method, path, {**headers, "Authorization": auth}, body), 403, "AccessDenied")
    if method == "GET":
        with_host = ["host", *without]
        auth = manual_authorization(method, path, "", headers, with_host, headers["x-amz-date"], payload)
        reply = send(env.server, method, path, {**headers, "Authorization": auth})
        assert (reply.status, reply.body) == (200, SECRET_BODY)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_host_changed_after_signing_is_refused(env: Env, unchanged: None, method: str) -> None:
    """Sending another Host than the one signed is 403 SignatureDoesNotMatch."""
    path = object_path(VICTIM, "secret")
    body = b"overwrite" if method == "PUT" else b""
    headers = sign(env.server, method, path, body=body)
    headers["Host"] = f"localhost:{env.server.port}"
    refused(send(env.server, method, path, headers, body), 403, "SignatureDoesNotMatch")


# Each of these would change what the request does if it were honoured.
INJECTED = [
    ("x-amz-copy-source", f"/{VICTIM}/secret"),
    ("x-amz-meta-injected", "evil"),
    ("x-amz-tagging", "owner=mallory"),
    ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
    ("x-amz-acl", "public-read"),
    ("x-amz-metadata-directive", "REPLACE"),
    ("x-amz-website-redirect-location", "http://evil.example/"),
    ("x-amz-checksum-crc32", "AAAAAA=="),
]


@pytest.mark.parametrize(("name", "value"), INJECTED)
@pytest.mark.parametrize("presigned", [False, True])
def test_amz_header_added_after_signing_is_refused(
    env: Env, unchanged: None, name: str, value: str, presigned: bool
) -> None:
    """An ``x-amz-*`` header added to a signed PUT (header auth or a presigned URL)
    is 403 AccessDenied and nothing is written; the untouched request is accepted."""
    key = f"injected-{presigned}-{name}"
    path = object_path(VICTIM_2, key)
    if presigned:
        target, headers = presign(env.server, "PUT", path), {"Host": host_of(env.server)}
    else:
        target, headers = path, sign(env.server, "PUT", path, body=b"legit")
    reply = send(env.server, "PUT", target, {**headers, name: value}, b"legit")
    refused(reply, 403, "AccessDenied")
    assert name in reply.body.decode()  # HeadersNotSigned names it
    with pytest.raises(ClientError):
        env.s3.head_object(Bucket=VICTIM_2, Key=key)
    assert send(env.server, "PUT", target, headers, b"legit").status == 200
    env.s3.delete_object(Bucket=VICTIM_2, Key=key)


def _content_md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


@pytest.mark.parametrize("operation", ["delete-objects", "bucket-tagging", "object-tagging"])
def test_a_signed_request_carries_only_the_body_it_was_signed_for(
    env: Env, unchanged: None, operation: str
) -> None:
    """A header-signed request whose x-amz-content-sha256 covers one XML body
    but arrives with another (Content-MD5 recomputed: it is not keyed) is 400
    XAmzContentSHA256Mismatch and acts on neither: a captured DeleteObjects
    cannot be replayed to delete other keys, nor a tagging request to set
    other tags.  The body it was signed for is accepted."""
    if operation == "delete-objects":
        target = f"/{VICTIM_2}?delete"
        signed = b"<Delete><Object><Key>never-there</Key></Object></Delete>"
        sent = b"<Delete><Object><Key>secret</Key></Object></Delete>"
        method = "POST"
    else:
        target = f"/{VICTIM}?tagging" if operation == "bucket-tagging" else f"/{VICTIM}/secret?tagging"
        signed = b"<Tagging><TagSet><Tag><Key>team</Key><Value>a</Value></Tag></TagSet></Tagging>"
        sent = b"<Tagging><TagSet><Tag><Key>team</Key><Value>mallory</Value></Tag></TagSet></Tagging>"
        method = "PUT"
    headers = sign(env.server, method, target, body=signed)
    assert {k.lower(): v for k, v in headers.items()}["x-amz-content-sha256"] == hashlib.sha256(signed).hexdigest()
    swapped = {**headers, "Content-MD5": _content_md5(sent)}
    refused(send(env.server, method, target, swapped, sent), 400, "XAmzContentSHA256Mismatch")
    if operation == "delete-objects":  # the signed body names no object of the store
        reply = send(env.server, method, target, {**headers, "Content-MD5": _content_md5(signed)}, signed)
        assert reply.status == 200 and b"never-there" in reply.body


def test_amz_header_added_to_a_signed_delete_is_refused(env: Env, unchanged: None) -> None:
    """DELETE with an unsigned x-amz-* header (bypass-governance, mfa) is 403 and the object stays."""
    path = object_path(VICTIM, "secret")
    headers = sign(env.server, "DELETE", path)
    for name, value in (("x-amz-bypass-governance-retention", "true"), ("x-amz-mfa", "123 456")):
        refused(send(env.server, "DELETE", path, {**headers, name: value}), 403, "AccessDenied")


# ---------------------------------------------------------------------------
# Presigned URLs with a parameter changed
# ---------------------------------------------------------------------------


def _replace_param(url: str, name: str, value: str | None) -> str:
    """``url`` with query parameter ``name`` set to ``value`` (appended if absent, removed if None)."""
    path, _, query = url.partition("?")
    pairs = [p for p in query.split("&") if p]
    out, found = [], False
    for pair in pairs:
        if pair.split("=", 1)[0] == name:
            found = True
            if value is not None:
                out.append(f"{name}={value}")
        else:
            out.append(pair)
    if not found and value is not None:
        out.append(f"{name}={value}")
    return f"{path}?{'&'.join(out)}"


def _param(url: str, name: str) -> str:
    for pair in url.partition("?")[2].split("&"):
        if pair.split("=", 1)[0] == name:
            return pair.split("=", 1)[1]
    raise KeyError(name)


def _bump(amz_date: str) -> str:
    s = int(amz_date[13:15])
    return f"{amz_date[:13]}{s + 1 if s < 59 else s - 1:02d}Z"


PRESIGNED_CHANGES: list[tuple[str, Callable[[str, Env], str], int, str]] = [
    ("expires", lambda u, e: _replace_param(u, "X-Amz-Expires", "600"), 403, "SignatureDoesNotMatch"),
    ("date", lambda u, e: _replace_param(u, "X-Amz-Date", _bump(_param(u, "X-Amz-Date"))),
     403, "SignatureDoesNotMatch"),
    ("signed-headers-added", lambda u, e: _replace_param(u, "X-Amz-SignedHeaders", "host%3Bx-amz-meta-a"),
     403, "SignatureDoesNotMatch"),
    ("signed-headers-without-host", lambda u, e: _replace_param(u, "X-Amz-SignedHeaders", "x-amz-date"),
     403, "AccessDenied"),
    ("signature", lambda u, e: _replace_param(
        u, "X-Amz-Signature", other_hex(_param(u, "X-Amz-Signature")[0], 3) + _param(u, "X-Amz-Signature")[1:]),
     403, "SignatureDoesNotMatch"),
    ("signature-removed", lambda u, e: _replace_param(u, "X-Amz-Signature", None),
     400, "AuthorizationQueryParametersError"),
    ("credential-other-tenant", lambda u, e: _replace_param(
        u, "X-Amz-Credential", _param(u, "X-Amz-Credential").replace(ROOT_ACCESS_KEY, e.other.access_key)),
     403, "SignatureDoesNotMatch"),
    ("credential-region", lambda u, e: _replace_param(
        u, "X-Amz-Credential", _param(u, "X-Amz-Credential").replace("us-east-1", "eu-west-1")),
     400, "AuthorizationQueryParametersError"),
    ("algorithm", lambda u, e: _replace_param(u, "X-Amz-Algorithm", "AWS4-HMAC-SHA1"),
     400, "AuthorizationQueryParametersError"),
    ("response-override-added", lambda u, e: _replace_param(u, "response-content-type", "text%2Fhtml"),
     403, "SignatureDoesNotMatch"),
    ("security-token-added", lambda u, e: _replace_param(u, "X-Amz-Security-Token", "token"),
     403, "SignatureDoesNotMatch"),
    ("expires-repeated", lambda u, e: u + "&X-Amz-Expires=604800", 400, "AuthorizationQueryParametersError"),
    ("date-repeated", lambda u, e: u + "&X-Amz-Date=" + _param(u, "X-Amz-Date"), 400,
     "AuthorizationQueryParametersError"),
    ("lower-case-expires-added", lambda u, e: u + "&x-amz-expires=604800", 403, "SignatureDoesNotMatch"),
    ("key", lambda u, e: u.replace(f"/{VICTIM}/secret?", f"/{VICTIM}/secreT?"), 403, "SignatureDoesNotMatch"),
    ("bucket", lambda u, e: u.replace(f"/{VICTIM}/", f"/{VICTIM_2}/"), 403, "SignatureDoesNotMatch"),
]


@pytest.mark.parametrize(("change", "status", "code"), [(c[1], c[2], c[3]) for c in PRESIGNED_CHANGES],
                         ids=[c[0] for c in PRESIGNED_CHANGES])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_presigned_url_with_a_changed_parameter_is_refused(
    env: Env, unchanged: None, method: str, change: Callable[[str, Env], str], status: int, code: str
) -> None:
    """A presigned GET, PUT or DELETE of an existing object with one parameter changed
    (expiry, date, signed headers, signature, credential, algorithm, an added response
    override or token, the key, the bucket) is refused; the unchanged URL works."""
    url = presign(env.server, method, object_path(VICTIM, "secret"))
    host = {"Host": host_of(env.server)}
    body = b"overwritten" if method == "PUT" else b""
    refused(send(env.server, method, change(url, env), host, body), status, code)
    if method == "GET":  # the control: the URL itself is good (PUT/DELETE would change the state)
        assert send(env.server, "GET", url, host).body == SECRET_BODY


def test_presigned_url_with_an_authorization_header_too_is_refused(env: Env, unchanged: None) -> None:
    """Query and header credentials together are 400 InvalidArgument ("Only one auth
    mechanism allowed"), even when both are valid on their own."""
    path = object_path(VICTIM, "secret")
    url = presign(env.server, "PUT", path)
    headers = sign(env.server, "PUT", path, body=b"both")
    refused(send(env.server, "PUT", url, headers, b"both"), 400, "InvalidArgument")


def test_repeated_host_header_is_refused(env: Env, unchanged: None) -> None:
    """A second Host header next to the signed one does not slip through: the
    request is refused as malformed (RFC 9112 §3.2: 400, and the connection
    closed) before any signature is checked, and nothing changes."""
    path = object_path(VICTIM, "secret")
    headers = sign(env.server, "PUT", path, body=b"two hosts")
    conn = http.client.HTTPConnection("127.0.0.1", env.server.port, timeout=30)
    try:
        conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.putheader("Host", "evil.example")
        conn.putheader("Content-Length", "9")
        conn.endheaders(b"two hosts")
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 400, body


@pytest.mark.parametrize(("signed_as", "sent_as"), [("GET", "PUT"), ("GET", "DELETE"), ("PUT", "POST"),
                                                    ("GET", "HEAD")])
def test_presigned_url_used_with_another_method_is_refused(
    env: Env, unchanged: None, signed_as: str, sent_as: str
) -> None:
    """A presigned GET cannot overwrite or delete the object: the method is signed."""
    url = presign(env.server, signed_as, object_path(VICTIM, "secret"))
    reply = send(env.server, sent_as, url, {"Host": host_of(env.server)}, b"x" if sent_as == "PUT" else b"")
    assert reply.status == 403
    if sent_as != "HEAD":
        assert reply.code == "SignatureDoesNotMatch", reply


# ---------------------------------------------------------------------------
# Expired and future-dated signatures
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-16 * 60, 16 * 60, -86400, 86400 * 30])
@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_header_signature_out_of_the_skew_window_is_refused(
    env: Env, unchanged: None, offset: int, method: str
) -> None:
    """Header-signed requests dated more than 15 minutes away (past or future) are
    403 RequestTimeTooSkewed, even with a fresh Date header added."""
    path = object_path(VICTIM, "secret")
    body = b"replayed" if method == "PUT" else b""
    headers = sign(env.server, method, path, body=body, when=time.time() + offset)
    refused(send(env.server, method, path, headers, body), 403, "RequestTimeTooSkewed")
    fresh_date = {**headers, "Date": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())}
    refused(send(env.server, method, path, fresh_date, body), 403, "RequestTimeTooSkewed")


@pytest.mark.parametrize(("offset", "expires", "status", "code"), [
    (-7200, 3600, 403, "AccessDenied"),  # expired an hour ago
    (-61, 60, 403, "AccessDenied"),  # expired a second ago
    (3600, 3600, 403, "AccessDenied"),  # not valid yet
    (-8 * 86400, 604800, 403, "AccessDenied"),  # the longest expiry, long gone
    (0, 604801, 400, "AuthorizationQueryParametersError"),  # over seven days
    (0, 0, 400, "AuthorizationQueryParametersError"),
    (0, "-60", 400, "AuthorizationQueryParametersError"),
    # Signed, but not the decimal number AWS requires (Python's int() would take them all).
    (0, "1_000", 400, "AuthorizationQueryParametersError"),
    (0, "+60", 400, "AuthorizationQueryParametersError"),
    (0, " 60", 400, "AuthorizationQueryParametersError"),
    (0, "\u0666\u0660", 400, "AuthorizationQueryParametersError"),  # Arabic-Indic "60"
    (0, "60.0", 400, "AuthorizationQueryParametersError"),
])
@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_presigned_url_outside_its_validity_is_refused(
    env: Env, unchanged: None, offset: int, expires: int | str, status: int, code: str, method: str
) -> None:
    """Presigned URLs past their expiry or dated in the future are 403 AccessDenied;
    X-Amz-Expires outside 1..604800, or not a plain decimal number, is 400."""
    url = presign(env.server, method, object_path(VICTIM, "secret"), expires=expires, when=time.time() + offset)
    refused(send(env.server, method, url, {"Host": host_of(env.server)}, b"late" if method == "PUT" else b""),
            status, code)


def manual_presigned_path(env: Env, path: str, amz_date: str, expires: str = "300") -> str:
    """A presigned GET of ``path`` computed by hand over exactly the strings given
    (text hashed and keyed as UTF-8), for dates botocore would never write."""
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    params = sorted([
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("X-Amz-Credential", f"{ROOT_ACCESS_KEY}/{scope}"),
        ("X-Amz-Date", amz_date), ("X-Amz-Expires", expires), ("X-Amz-SignedHeaders", "host"),
    ])
    query = "&".join(f"{quote(n, safe='-_.~')}={quote(v, safe='-_.~')}" for n, v in params)
    canonical = "\n".join(["GET", path, query, f"host:{host_of(env.server)}\n", "host", "UNSIGNED-PAYLOAD"])
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = hmac_sha256(("AWS4" + ROOT_SECRET_KEY).encode(), amz_date[:8])
    for part in ("us-east-1", "s3", "aws4_request"):
        key = hmac_sha256(key, part)
    return f"{path}?{query}&X-Amz-Signature={hmac_sha256(key, to_sign).hex()}"


def test_presigned_date_in_non_ascii_digits_is_refused(env: Env, unchanged: None) -> None:
    """X-Amz-Date (and the credential date) written in Arabic-Indic digits is not the
    ISO 8601 basic format, however consistently it is signed: 400."""
    path = object_path(VICTIM, "secret")
    now = _amz_now()
    control = manual_presigned_path(env, path, now)
    assert send(env.server, "GET", control, {"Host": host_of(env.server)}).body == SECRET_BODY
    arabic = now.translate({ord(d): 0x0660 + int(d) for d in "0123456789"})
    reply = send(env.server, "GET", manual_presigned_path(env, path, arabic), {"Host": host_of(env.server)})
    refused(reply, 400, "AuthorizationQueryParametersError")


# ---------------------------------------------------------------------------
# Another tenant's valid signature
# ---------------------------------------------------------------------------


def _b_requests(env: Env) -> list[tuple[str, str, dict[str, str], bytes]]:
    upload = env.upload_id
    delete_body = b"<Delete><Object><Key>secret</Key></Object></Delete>"
    md5 = base64.b64encode(hashlib.md5(delete_body).digest()).decode()
    tags = b"<Tagging><TagSet><Tag><Key>owner</Key><Value>mallory</Value></Tag></TagSet></Tagging>"
    versioning = b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"
    return [
        ("GET", f"/{VICTIM}/secret", {}, b""),
        ("HEAD", f"/{VICTIM}/secret", {}, b""),
        ("GET", f"/{VICTIM}/secret?tagging", {}, b""),
        ("GET", f"/{VICTIM}/secret?uploadId={upload}", {}, b""),
        ("GET", f"/{VICTIM}", {}, b""),
        ("GET", f"/{VICTIM}?list-type=2", {}, b""),
        ("GET", f"/{VICTIM}?versions", {}, b""),
        ("GET", f"/{VICTIM}?uploads", {}, b""),
        ("GET", f"/{VICTIM}?versioning", {}, b""),
        ("GET", f"/{VICTIM}?tagging", {}, b""),
        ("GET", f"/{VICTIM}?location", {}, b""),
        ("HEAD", f"/{VICTIM}", {}, b""),
        ("PUT", f"/{VICTIM}/secret", {}, b"overwritten by tenant B"),
        ("PUT", f"/{VICTIM}/planted", {}, b"planted by tenant B"),
        ("PUT", f"/{VICTIM}/secret?tagging", {}, tags),
        ("DELETE", f"/{VICTIM}/secret?tagging", {}, b""),
        ("PUT", f"/{VICTIM}?tagging", {}, tags),
        ("DELETE", f"/{VICTIM}?tagging", {}, b""),
        ("PUT", f"/{VICTIM}?versioning", {}, versioning),
        ("DELETE", f"/{VICTIM}/secret", {}, b""),
        ("POST", f"/{VICTIM}?delete", {"Content-MD5": md5}, delete_body),
        ("DELETE", f"/{VICTIM}", {}, b""),
        ("POST", f"/{VICTIM}/planted?uploads", {}, b""),
        ("PUT", f"/{VICTIM}/in-progress?partNumber=2&uploadId={upload}", {}, b"tenant B part"),
        ("POST", f"/{VICTIM}/in-progress?uploadId={upload}", {},
         b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>"),
        ("DELETE", f"/{VICTIM}/in-progress?uploadId={upload}", {}, b""),
        ("PUT", f"/{VICTIM}/copied", {"x-amz-copy-source": f"/{VICTIM}/secret"}, b""),
    ]


def test_another_tenants_signature_reaches_nothing(env: Env, unchanged: None) -> None:
    """Tenant B's valid signatures for every read, write and delete of tenant A's bucket
    (objects, tags, versioning, listings, uploads, copies) are 404 NoSuchBucket: the
    bucket is not in B's scope, and nothing of A's is read or changed."""
    for method, target, headers, body in _b_requests(env):
        reply = send(env.server, method, target, sign(env.server, method, target, headers, body, creds=env.other),
                     body)
        assert reply.status == 404, (method, target, reply)
        if method != "HEAD":
            assert reply.code == "NoSuchBucket", (method, target, reply)
        assert SECRET_BODY not in reply.body
    assert VICTIM not in [b["Name"] for b in env.other_s3.list_buckets().get("Buckets", [])]


def test_another_tenants_presigned_urls_reach_nothing(env: Env, unchanged: None) -> None:
    """Presigned URLs signed by tenant B for tenant A's objects are 404 NoSuchBucket."""
    for method in ("GET", "PUT", "DELETE"):
        url = presign(env.server, method, object_path(VICTIM, "secret"), creds=env.other)
        reply = send(env.server, method, url, {"Host": host_of(env.server)}, b"x" if method == "PUT" else b"")
        refused(reply, 404, "NoSuchBucket")


def test_another_tenant_cannot_copy_out_of_this_tenants_bucket(env: Env, unchanged: None) -> None:
    """CopyObject and UploadPartCopy from A's bucket into B's own are NoSuchBucket; B's bucket stays empty."""
    b = env.other_s3
    b.create_bucket(Bucket="mallory-own")
    try:
        with pytest.raises(ClientError) as info:
            b.copy_object(Bucket="mallory-own", Key="loot", CopySource={"Bucket": VICTIM, "Key": "secret"})
        assert info.value.response["Error"]["Code"] == "NoSuchBucket"
        upload = b.create_multipart_upload(Bucket="mallory-own", Key="loot")["UploadId"]
        with pytest.raises(ClientError) as info:
            b.upload_part_copy(Bucket="mallory-own", Key="loot", UploadId=upload, PartNumber=1,
                               CopySource={"Bucket": VICTIM, "Key": "secret"})
        assert info.value.response["Error"]["Code"] == "NoSuchBucket"
        assert b.list_parts(Bucket="mallory-own", Key="loot", UploadId=upload).get("Parts", []) == []
        b.abort_multipart_upload(Bucket="mallory-own", Key="loot", UploadId=upload)
        assert b.list_objects_v2(Bucket="mallory-own")["KeyCount"] == 0
    finally:
        b.delete_bucket(Bucket="mallory-own")


def test_same_bucket_name_in_another_tenant_is_a_separate_bucket(env: Env, unchanged: None) -> None:
    """Tenant B may create its own bucket called "victim" (names are unique per org);
    it is empty, B's writes land there, and A's bucket is untouched."""
    b = env.other_s3
    b.create_bucket(Bucket=VICTIM)
    try:
        assert b.list_objects_v2(Bucket=VICTIM)["KeyCount"] == 0
        b.put_object(Bucket=VICTIM, Key="secret", Body=b"B's own")
        assert b.get_object(Bucket=VICTIM, Key="secret")["Body"].read() == b"B's own"
        assert env.s3.get_object(Bucket=VICTIM, Key="secret")["Body"].read() == SECRET_BODY
        b.delete_object(Bucket=VICTIM, Key="secret")
    finally:
        b.delete_bucket(Bucket=VICTIM)


def test_another_tenants_secret_with_this_tenants_access_key_is_refused(env: Env, unchanged: None) -> None:
    """Claiming A's access key but signing with B's secret is 403 SignatureDoesNotMatch."""
    forged = Credentials(ROOT_ACCESS_KEY, env.other.secret_key)
    for method in ("GET", "PUT", "DELETE"):
        path = object_path(VICTIM, "secret")
        body = b"forged" if method == "PUT" else b""
        refused(send(env.server, method, path, sign(env.server, method, path, body=body, creds=forged), body),
                403, "SignatureDoesNotMatch")


# ---------------------------------------------------------------------------
# Streaming chunks replayed or spliced (a wrong chain signature)
# ---------------------------------------------------------------------------


def _streaming_request(env: Env, target: str, data: bytes, when: float) -> tuple[dict[str, str], ChunkSigning]:
    """Headers of a signed-chunks PUT of ``target`` signed at ``when``, and the chain they seed."""
    headers = sign(env.server, "PUT", target,
                   {"x-amz-decoded-content-length": str(len(data)), "Content-Encoding": "aws-chunked"},
                   payload=SIGNED, when=when)
    seed = headers["Authorization"].rsplit("Signature=", 1)[1]
    return headers, ChunkSigning(ROOT_SECRET_KEY, headers["X-Amz-Date"], seed)


STREAM_ATTACKS: list[tuple[str, Callable[[Chunked, Chunked], bytes]]] = [
    # chunk 0 sent again in place of chunk 1 (same size, its own valid signature)
    ("replay-chunk", lambda good, _old: b"".join([good.frames[0], good.frames[0], *good.frames[2:]]) + good.trailer),
    # a whole valid body from an earlier request with the same data, under a new request
    ("replay-body", lambda _good, old: old.body()),
    # one chunk taken from the earlier request
    ("splice-chunk", lambda good, old: b"".join([good.frames[0], old.frames[1], *good.frames[2:]]) + good.trailer),
    # the final (empty) chunk taken from the earlier request
    ("splice-final", lambda good, old: b"".join([*good.frames[:-1], old.frames[-1]]) + good.trailer),
    # chunks in the wrong order, each with its own valid signature
    ("swap", lambda good, _old: b"".join([good.frames[1], good.frames[0], *good.frames[2:]]) + good.trailer),
]


@pytest.mark.parametrize("attack", [a[1] for a in STREAM_ATTACKS], ids=[a[0] for a in STREAM_ATTACKS])
def test_replayed_streaming_chunks_are_refused(env: Env, unchanged: None, attack: Callable[[Chunked, Chunked], bytes]) -> None:
    """aws-chunked bodies whose chunk chain does not start at this request's own signature
    (replayed, spliced or reordered chunks) are 403 SignatureDoesNotMatch; the object keeps
    its content.  The honest body is then accepted."""
    data = b"A" * 1000 + b"B" * 1000 + b"C" * 1000
    pieces = [data[:1000], data[1000:2000], data[2000:]]
    now = time.time()
    target = object_path(VICTIM, "secret")
    _old_headers, old_signing = _streaming_request(env, target, data, now - 5)
    headers, signing = _streaming_request(env, target, data, now)
    assert old_signing.seed != signing.seed
    good, old = chunked(pieces, signing), chunked(pieces, old_signing)
    refused(send(env.server, "PUT", target, headers, attack(good, old)), 403, "SignatureDoesNotMatch")
    # The control, on another key: the honest body under such headers is accepted.
    control = object_path(VICTIM_2, "streamed-ok")
    control_headers, control_signing = _streaming_request(env, control, data, now)
    assert send(env.server, "PUT", control, control_headers, chunked(pieces, control_signing).body()).status == 200
    env.s3.delete_object(Bucket=VICTIM_2, Key="streamed-ok")


# ---------------------------------------------------------------------------
# SigV2 tampering
# ---------------------------------------------------------------------------


def _v2_headers(env: Env, method: str, path: str, headers: dict[str, str] | None = None,
                creds: Credentials = ROOT) -> dict[str, str]:
    req = AWSRequest(method, env.server.endpoint + path, headers={"Host": host_of(env.server), **(headers or {})})
    req.auth_path = None
    botocore_auth.HmacV1Auth(creds).add_auth(req)
    return {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in req.headers.items()}


def _v2_url(env: Env, method: str, path: str, expires: int = 300) -> str:
    req = AWSRequest(method, env.server.endpoint + path, headers={"Host": host_of(env.server)})
    req.auth_path = None
    botocore_auth.HmacV1QueryAuth(ROOT, expires=expires).add_auth(req)
    parts = req.url.split(env.server.endpoint, 1)[1]
    return parts


def _v2_tampered_signature(headers: dict[str, str]) -> dict[str, str]:
    head, signature = headers["Authorization"].rsplit(":", 1)
    flipped = ("B" if signature[0] != "B" else "C") + signature[1:]
    return {**headers, "Authorization": f"{head}:{flipped}"}


def _v2_shift_date(headers: dict[str, str]) -> dict[str, str]:
    stamp = time.time() + 2
    return {**headers, "Date": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(stamp))}


V2_HEADER_TAMPERING: list[tuple[str, Callable[[str, dict[str, str]], tuple[str, dict[str, str]]]]] = [
    ("signature", lambda p, h: (p, _v2_tampered_signature(h))),
    ("path", lambda p, h: (p.replace("secret", "secreT"), h)),
    ("bucket", lambda p, h: (p.replace(f"/{VICTIM}/", f"/{VICTIM_2}/"), h)),
    ("content-type", lambda p, h: (p, {**h, "Content-Type": "text/html"})),
    ("date", lambda p, h: (p, _v2_shift_date(h))),
    ("amz-header-added", lambda p, h: (p, {**h, "x-amz-meta-injected": "evil"})),
    ("subresource-added", lambda p, h: (p + "?tagging", h)),
]


@pytest.mark.parametrize("tamper", [t[1] for t in V2_HEADER_TAMPERING], ids=[t[0] for t in V2_HEADER_TAMPERING])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_sigv2_header_tampering_is_refused(
    env: Env, unchanged: None, method: str, tamper: Callable[[str, dict[str, str]], tuple[str, dict[str, str]]]
) -> None:
    """A SigV2 (HmacV1) request changed after signing (signature, path, bucket, Content-Type,
    Date, an added x-amz-* header or sub-resource) is 403 SignatureDoesNotMatch."""
    path = object_path(VICTIM, "secret")
    headers = _v2_headers(env, method, path, {"Content-Type": "application/octet-stream"})
    body = b"v2 overwrite" if method == "PUT" else b""
    bad_path, bad_headers = tamper(path, headers)
    refused(send(env.server, method, bad_path, bad_headers, body), 403, "SignatureDoesNotMatch")
    if method == "GET":
        assert send(env.server, "GET", path, headers).body == SECRET_BODY


V2_QUERY_TAMPERING: list[tuple[str, Callable[[str, Env], str], int, str]] = [
    ("expires", lambda u, e: _replace_param(u, "Expires", str(int(_param(u, "Expires")) + 3600)),
     403, "SignatureDoesNotMatch"),
    ("key", lambda u, e: u.replace("/secret?", "/secreT?"), 403, "SignatureDoesNotMatch"),
    ("bucket", lambda u, e: u.replace(f"/{VICTIM}/", f"/{VICTIM_2}/"), 403, "SignatureDoesNotMatch"),
    ("response-override-added", lambda u, e: _replace_param(u, "response-content-type", "text%2Fhtml"),
     403, "SignatureDoesNotMatch"),
    ("access-key-other-tenant", lambda u, e: _replace_param(u, "AWSAccessKeyId", e.other.access_key),
     403, "SignatureDoesNotMatch"),
]


@pytest.mark.parametrize(("change", "status", "code"), [(c[1], c[2], c[3]) for c in V2_QUERY_TAMPERING],
                         ids=[c[0] for c in V2_QUERY_TAMPERING])
@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_sigv2_presigned_tampering_is_refused(
    env: Env, unchanged: None, method: str, change: Callable[[str, Env], str], status: int, code: str
) -> None:
    """A SigV2 presigned URL with Expires, the key, the bucket, the access key changed or
    a response override added is 403 SignatureDoesNotMatch."""
    url = _v2_url(env, method, object_path(VICTIM, "secret"))
    refused(send(env.server, method, change(url, env), {"Host": host_of(env.server)},
                 b"v2" if method == "PUT" else b""), status, code)
    if method == "GET":
        assert send(env.server, "GET", url, {"Host": host_of(env.server)}).body == SECRET_BODY


def test_sigv2_upload_part_url_cannot_be_turned_into_a_put_object(env: Env, unchanged: None) -> None:
    """A SigV2 presigned UploadPart URL re-sent with the upload id folded into
    the part number (``partNumber=1%26uploadId%3DU``, which decodes to the
    signed resource) would be a PutObject of the whole key: 403
    SignatureDoesNotMatch, and no object appears."""
    url = _v2_url(env, "PUT", object_path(VICTIM, "in-progress") + f"?partNumber=1&uploadId={env.upload_id}")
    folded = quote(f"1&uploadId={env.upload_id}", safe="")
    smuggled = _replace_param(_replace_param(url, "uploadId", None), "partNumber", folded)
    assert "uploadId%3D" in smuggled and "&uploadId=" not in smuggled
    refused(send(env.server, "PUT", smuggled, {"Host": host_of(env.server)}, b"HIJACKED"), 403, "SignatureDoesNotMatch")


def test_sigv2_expired_is_refused(env: Env, unchanged: None) -> None:
    """SigV2: an expired presigned URL is 403 AccessDenied; a header Date 16 minutes
    old is 403 RequestTimeTooSkewed."""
    path = object_path(VICTIM, "secret")
    url = _v2_url(env, "GET", path)
    expired = _replace_param(url, "Expires", str(int(time.time()) - 10))
    # The signature no longer matches either; the expiry is checked first, as AWS does.
    refused(send(env.server, "GET", expired, {"Host": host_of(env.server)}), 403, "AccessDenied")
    req = AWSRequest("GET", env.server.endpoint + path, headers={"Host": host_of(env.server)})
    req.auth_path = None
    old = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() - 16 * 60))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(botocore_auth.HmacV1Auth, "_get_date", lambda self: old)
        botocore_auth.HmacV1Auth(ROOT).add_auth(req)
    headers = {k: str(v) for k, v in req.headers.items()}
    refused(send(env.server, "GET", path, headers), 403, "RequestTimeTooSkewed")

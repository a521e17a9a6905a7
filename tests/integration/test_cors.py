"""Bucket CORS against the real server: the configuration through boto3, the
browser's preflight (``OPTIONS``) and the headers of actual cross-origin
requests through raw HTTP, the tenant a preflight resolves its bucket in,
a restart, and the etcd metadata store.
"""

from __future__ import annotations

import http.client
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.integration.conftest import make_client
from tests.integration.raw import CREDS, md5_header
from tests.integration.raw import client_error as error_code
from tests.integration.server import ROOT_ACCESS_KEY, ServerProcess
from tests.integration.tenants import Identity, Spec, Tenancy

VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
UPLOAD_RULES = {
    "CORSRules": [
        {"ID": "uploads", "AllowedMethods": ["PUT", "GET"], "AllowedOrigins": ["https://*.example.com"],
         "AllowedHeaders": ["content-type", "x-amz-meta-*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600},
        {"AllowedMethods": ["GET", "HEAD"], "AllowedOrigins": ["*"]},
    ]
}  # fmt: skip


class Answer:
    """A raw HTTP answer: status, headers (lower-case names) and body."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.getheaders()}
        self.body = response.read()

    def cors(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items() if k.startswith("access-control-") or k == "vary"}


def send(port: int, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"") -> Answer:
    """One raw request (``target``: path and query as sent)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        return Answer(conn.getresponse())
    finally:
        conn.close()


def target_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def preflight(port: int, target: str, origin: str | None, method: str | None, headers: str | None = None) -> Answer:
    sent = {}
    if origin is not None:
        sent["Origin"] = origin
    if method is not None:
        sent["Access-Control-Request-Method"] = method
    if headers is not None:
        sent["Access-Control-Request-Headers"] = headers
    return send(port, "OPTIONS", target, sent)


def signed_put_cors(server: ServerProcess, bucket: str, body: bytes, headers: dict[str, str]) -> Answer:
    """PutBucketCors signed by root with exactly ``body`` and ``headers``."""
    path = f"/{bucket}?cors"
    req = AWSRequest("PUT", f"{server.endpoint}{path}", data=body, headers=headers)
    S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(req)
    assert server.port is not None
    return send(server.port, "PUT", path, dict(req.headers.items()), body)


# -- the configuration ----------------------------------------------------------


def test_put_get_delete_round_trip(s3: Any, bucket: str) -> None:
    """PutBucketCors stores the rules (boto3 in both checksum modes: MD5 or
    CRC32 header), GetBucketCors gives them back as sent, DeleteBucketCors
    answers 204 and the bucket is back to 404 NoSuchCORSConfiguration."""
    with pytest.raises(ClientError) as info:
        s3.get_bucket_cors(Bucket=bucket)
    assert error_code(info)[:2] == (404, "NoSuchCORSConfiguration")
    put = s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=UPLOAD_RULES)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"] == UPLOAD_RULES["CORSRules"]
    deleted = s3.delete_bucket_cors(Bucket=bucket)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as info:
        s3.get_bucket_cors(Bucket=bucket)
    assert error_code(info)[:2] == (404, "NoSuchCORSConfiguration")


@pytest.mark.parametrize(
    ("rules", "code", "message"),
    [
        ([{"AllowedMethods": ["PATCH"], "AllowedOrigins": ["*"]}], "InvalidRequest",
         "Found unsupported HTTP method in CORS config. Unsupported method is PATCH"),
        ([{"AllowedMethods": ["GET"], "AllowedOrigins": ["*.a.*"]}], "InvalidRequest",
         'AllowedOrigin "*.a.*" can not have more than one wildcard.'),
        ([{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"], "ExposeHeaders": ["x-*"]}], "InvalidRequest", ""),
        ([{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"], "MaxAgeSeconds": -1}], "MalformedXML", ""),
        ([{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}] * 101, "MalformedXML", ""),
    ],
)  # fmt: skip
def test_configurations_aws_refuses(
    s3: Any, bucket: str, rules: list[dict[str, Any]], code: str, message: str
) -> None:
    """400 with AWS's code (and message), and nothing is stored."""
    with pytest.raises(ClientError) as info:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    status, got_code, got_message = error_code(info)
    assert (status, got_code) == (400, code)
    if message:
        assert got_message == message
    with pytest.raises(ClientError):
        s3.get_bucket_cors(Bucket=bucket)


def test_raw_bodies_malformed_oversized_and_undigested(server: ServerProcess, bucket: str, s3: Any) -> None:
    """Not XML: MalformedXML; over 64 KiB: MaxMessageLengthExceeded; no
    Content-MD5 nor x-amz-checksum-*: InvalidRequest (AWS requires one); a
    wrong MD5: BadDigest.  A valid body with its MD5 is stored."""
    bad = b"<CORSConfiguration><CORSRule>"
    answer = signed_put_cors(server, bucket, bad, md5_header(bad))
    assert (answer.status, b"<Code>MalformedXML</Code>" in answer.body) == (400, True)
    rule = b"<CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>" + b"o" * 1000 + b"</AllowedOrigin></CORSRule>"
    huge = b"<CORSConfiguration>" + rule * 70 + b"</CORSConfiguration>"
    answer = signed_put_cors(server, bucket, huge, md5_header(huge))
    assert (answer.status, b"<Code>MaxMessageLengthExceeded</Code>" in answer.body) == (400, True)
    good = b"<CORSConfiguration>" + rule + b"</CORSConfiguration>"
    answer = signed_put_cors(server, bucket, good, {})
    assert (answer.status, b"<Code>InvalidRequest</Code>" in answer.body) == (400, True)
    assert b"Content-MD5" in answer.body
    answer = signed_put_cors(server, bucket, good, md5_header(b"other"))
    assert (answer.status, b"<Code>BadDigest</Code>" in answer.body) == (400, True)
    with pytest.raises(ClientError):
        s3.get_bucket_cors(Bucket=bucket)
    assert signed_put_cors(server, bucket, good, md5_header(good)).status == 200
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"][0]["AllowedOrigins"] == ["o" * 1000]

    # No rule at all is malformed too, and deletes nothing (it used to be
    # taken for a DeleteBucketCors: 200 and the rules gone).
    for empty in (b"<CORSConfiguration/>", b'<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></CORSConfiguration>'):
        answer = signed_put_cors(server, bucket, empty, md5_header(empty))
        assert (answer.status, b"<Code>MalformedXML</Code>" in answer.body) == (400, True)
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"][0]["AllowedOrigins"] == ["o" * 1000]


# -- the preflight ----------------------------------------------------------------


@pytest.fixture
def cors_bucket(s3: Any, bucket: str) -> str:
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=UPLOAD_RULES)
    return bucket


def test_preflight_allowed(server: ServerProcess, cors_bucket: str) -> None:
    """The first matching rule's headers, without credentials: the origin
    echoed, its methods, the requested headers, max age, exposed headers,
    credentials allowed, Vary; no body."""
    assert server.port is not None
    answer = preflight(server.port, f"/{cors_bucket}/photo.jpg", "https://app.example.com", "PUT",
                       "Content-Type, X-Amz-Meta-Owner")
    assert answer.status == 200 and answer.body == b""
    assert answer.cors() == {
        "access-control-allow-origin": "https://app.example.com",
        "access-control-allow-methods": "PUT, GET",
        "access-control-allow-headers": "Content-Type, X-Amz-Meta-Owner",
        "access-control-expose-headers": "ETag",
        "access-control-max-age": "600",
        "access-control-allow-credentials": "true",
        "vary": VARY,
    }
    # The bucket itself, and a wildcard rule: "*", without credentials.
    answer = preflight(server.port, f"/{cors_bucket}", "http://anywhere.test", "HEAD")
    assert answer.status == 200
    assert answer.cors() == {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "GET, HEAD",
        "vary": VARY,
    }


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [
        ("https://evil.test", "PUT", None),  # no rule's origin
        ("https://app.example.com", "DELETE", None),  # no rule's method
        ("https://app.example.com", "PUT", "content-type, x-amz-date"),  # a header not allowed
        ("HTTPS://app.example.com", "PUT", None),  # origins are case-sensitive
        ("http://anywhere.test", "GET", "x-amz-meta-a"),  # the "*" rule allows no header
    ],
)
def test_preflight_denied(server: ServerProcess, cors_bucket: str, origin: str, method: str,
                          headers: str | None) -> None:
    """403 AccessForbidden with AWS's message, and no CORS header."""
    assert server.port is not None
    answer = preflight(server.port, f"/{cors_bucket}/k", origin, method, headers)
    assert answer.status == 403
    assert b"<Code>AccessForbidden</Code>" in answer.body
    assert b"CORSResponse: This CORS request is not allowed." in answer.body
    assert f"<Method>{method}</Method>".encode() in answer.body
    assert answer.cors() == {}


def test_preflight_needs_origin_and_method(server: ServerProcess, cors_bucket: str) -> None:
    """Without Origin, or without Access-Control-Request-Method: 400 BadRequest."""
    assert server.port is not None
    answer = preflight(server.port, f"/{cors_bucket}/k", None, "GET")
    assert answer.status == 400 and b"<Code>BadRequest</Code>" in answer.body
    assert b"Insufficient information. Origin request header needed." in answer.body
    answer = preflight(server.port, f"/{cors_bucket}/k", "https://app.example.com", None)
    assert answer.status == 400 and b"<Code>BadRequest</Code>" in answer.body


def test_preflight_without_configuration_or_bucket(server: ServerProcess, bucket: str) -> None:
    """A bucket without CORS, and a bucket that does not exist: 403
    AccessForbidden alike (a preflight never tells whether a bucket exists)."""
    assert server.port is not None
    for name in (bucket, f"missing-{uuid.uuid4().hex[:12]}"):
        answer = preflight(server.port, f"/{name}/k", "https://app.example.com", "GET")
        assert answer.status == 403 and b"<Code>AccessForbidden</Code>" in answer.body


def test_preflight_is_never_authenticated(server: ServerProcess, cors_bucket: str) -> None:
    """No credential check runs for a preflight: one that waits for "100
    Continue" (the moment a request whose credentials failed is refused)
    is answered by its bucket's rules, not with AccessDenied."""
    assert server.port is not None
    answer = send(server.port, "OPTIONS", f"/{cors_bucket}/k", {
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT",
        "Expect": "100-continue", "Content-Length": "2"}, b"{}")
    assert answer.status == 200 and answer.headers["access-control-allow-origin"] == "https://app.example.com"


def test_preflight_of_presigned_multipart_part(server: ServerProcess, s3: Any, cors_bucket: str) -> None:
    """The preflight of a presigned UploadPart URL (its query holds uploadId
    and partNumber) is a preflight too, resolved by the URL's credential."""
    assert server.port is not None
    url = s3.generate_presigned_url("upload_part", Params={"Bucket": cors_bucket, "Key": "big", "UploadId": "u",
                                                           "PartNumber": 1})  # fmt: skip
    answer = preflight(server.port, target_of(url), "https://app.example.com", "PUT")
    assert answer.status == 200 and answer.headers["access-control-allow-origin"] == "https://app.example.com"


# -- actual requests ----------------------------------------------------------------


def test_actual_requests_get_cors_headers_only_with_an_origin(server: ServerProcess, s3: Any,
                                                              cors_bucket: str) -> None:
    """A presigned GET and PUT with an allowed Origin get the rule's headers;
    the same without Origin, or with an origin no rule allows, get none;
    an error answer (NoSuchKey) keeps them, as from AWS."""
    assert server.port is not None
    s3.put_object(Bucket=cors_bucket, Key="k", Body=b"data")
    get_url = target_of(s3.generate_presigned_url("get_object", Params={"Bucket": cors_bucket, "Key": "k"}))
    origin = {"Origin": "https://app.example.com"}
    answer = send(server.port, "GET", get_url, origin)
    assert (answer.status, answer.body) == (200, b"data")
    assert answer.cors() == {
        "access-control-allow-origin": "https://app.example.com",
        "access-control-allow-methods": "PUT, GET",
        "access-control-expose-headers": "ETag",
        "access-control-max-age": "600",
        "access-control-allow-credentials": "true",
        "vary": VARY,
    }
    plain = send(server.port, "GET", get_url)
    assert (plain.status, plain.body, plain.cors()) == (200, b"data", {})
    other = send(server.port, "GET", get_url, {"Origin": "https://evil.test"})
    assert other.status == 200
    assert other.headers.get("access-control-allow-origin") == "*"  # the "*" rule allows GET from anyone
    put_url = target_of(s3.generate_presigned_url("put_object", Params={"Bucket": cors_bucket, "Key": "up"}))
    denied = send(server.port, "PUT", put_url, {"Origin": "https://evil.test"}, b"x")
    assert (denied.status, denied.cors()) == (200, {})  # stored, but no rule lets that page read the answer
    put = send(server.port, "PUT", put_url, origin, b"uploaded")
    assert put.status == 200 and put.headers["access-control-allow-origin"] == "https://app.example.com"
    assert s3.get_object(Bucket=cors_bucket, Key="up")["Body"].read() == b"uploaded"
    missing = target_of(s3.generate_presigned_url("get_object", Params={"Bucket": cors_bucket, "Key": "nope"}))
    answer = send(server.port, "GET", missing, origin)
    assert answer.status == 404 and answer.headers["access-control-allow-origin"] == "https://app.example.com"


def test_errors_before_authorization_get_cors_headers(server: ServerProcess, s3: Any, cors_bucket: str) -> None:
    """A presigned URL whose signature fails, and a header-signed GET with
    a wrong secret, are answered 403 with the bucket's CORS headers
    (the page can read its error, as from AWS); an origin no rule allows,
    a key that does not exist, and a bucket that does not exist get none."""
    assert server.port is not None
    s3.put_object(Bucket=cors_bucket, Key="k", Body=b"data")
    url = target_of(s3.generate_presigned_url("get_object", Params={"Bucket": cors_bucket, "Key": "k"}))
    signature = url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
    tampered = url[:signature] + ("1" if url[signature] == "0" else "0") + url[signature + 1:]
    origin = {"Origin": "https://app.example.com"}
    answer = send(server.port, "GET", tampered, origin)
    assert answer.status == 403 and b"<Code>SignatureDoesNotMatch</Code>" in answer.body
    assert answer.cors()["access-control-allow-origin"] == "https://app.example.com"
    assert answer.cors()["access-control-allow-methods"] == "PUT, GET"
    denied = send(server.port, "GET", tampered, {"Origin": "https://evil.test", "Access-Control-Request-Method": "PUT"})
    assert (denied.status, denied.cors()) == (403, {})
    unknown_key = url.replace(f"X-Amz-Credential={ROOT_ACCESS_KEY}", "X-Amz-Credential=NOSUCHKEY")
    assert unknown_key != url
    answer = send(server.port, "GET", unknown_key, origin)
    assert (answer.status, answer.cors()) == (403, {})
    missing = target_of(s3.generate_presigned_url("get_object", Params={"Bucket": f"missing-{uuid.uuid4().hex[:8]}",
                                                                        "Key": "k"}))  # fmt: skip
    answer = send(server.port, "GET", missing, origin)
    assert (answer.status, answer.cors()) == (404, {})
    # Unsigned (no bucket policy lets it in): the 403 is readable too.
    answer = send(server.port, "GET", f"/{cors_bucket}/k", origin)
    assert answer.status == 403 and b"<Code>AccessDenied</Code>" in answer.body
    assert answer.cors()["access-control-allow-origin"] == "https://app.example.com"

    seen: dict[str, str] = {}

    def add_origin(request: Any, **_: Any) -> None:
        request.headers["Origin"] = "https://app.example.com"

    def keep_headers(http_response: Any, **_: Any) -> None:
        seen.update({k.lower(): v for k, v in http_response.headers.items()})

    wrong: Any = boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=ROOT_ACCESS_KEY, aws_secret_access_key="wrong",
        region_name="us-east-1", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )  # fmt: skip
    # A browser never sends "Expect: 100-continue" (boto3's PutObject does,
    # and is refused before its body, without a bucket lookup): a GET.
    wrong.meta.events.register("before-sign.s3.GetObject", add_origin)
    wrong.meta.events.register("after-call.s3.GetObject", keep_headers)
    with pytest.raises(ClientError) as info:
        wrong.get_object(Bucket=cors_bucket, Key="k")
    assert error_code(info)[:2] == (403, "SignatureDoesNotMatch")
    assert seen.get("access-control-allow-origin") == "https://app.example.com"


def test_delete_objects_with_an_origin_gets_cors_headers(server: ServerProcess, s3: Any, bucket: str) -> None:
    """DeleteObjects authorizes each key alone rather than the bucket, and
    still answers a cross-origin page that a rule allows (POST) with the
    rule's headers."""
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedMethods": ["POST"], "AllowedOrigins": ["https://app.example.com"], "ExposeHeaders": ["ETag"]}]})
    s3.put_object(Bucket=bucket, Key="d", Body=b"x")
    seen: dict[str, str] = {}

    def add_origin(request: Any, **_: Any) -> None:
        request.headers["Origin"] = "https://app.example.com"

    def keep_headers(http_response: Any, **_: Any) -> None:
        seen.update({k.lower(): v for k, v in http_response.headers.items()})

    client: Any = make_client(server.endpoint)
    client.meta.events.register("before-sign.s3.DeleteObjects", add_origin)
    client.meta.events.register("after-call.s3.DeleteObjects", keep_headers)
    result = client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "d"}]})
    assert [d["Key"] for d in result["Deleted"]] == ["d"]
    assert seen.get("access-control-allow-origin") == "https://app.example.com"
    assert seen.get("access-control-allow-methods") == "POST"


def test_a_bucket_without_configuration_sends_no_cors_headers(server: ServerProcess, s3: Any, bucket: str) -> None:
    """Origin on a request to a bucket without CORS: an ordinary answer."""
    assert server.port is not None
    s3.put_object(Bucket=bucket, Key="k", Body=b"d")
    url = target_of(s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}))
    answer = send(server.port, "GET", url, {"Origin": "https://app.example.com"})
    assert (answer.status, answer.cors()) == (200, {})


# -- tenants ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Tenancy, dict[str, Identity]]]:
    tenancy = Tenancy.start(tmp_path_factory.mktemp("cors-tenancy"), cache_seconds=0.5)
    try:
        ids = tenancy.provision([
            Spec("acme-admin", "acme", roles=("admin",)),
            Spec("globex-admin", "globex", roles=("admin",)),
        ])
        yield tenancy, ids
    finally:
        tenancy.stop()


def test_preflight_resolves_the_bucket_in_the_presigned_urls_tenant(
    tenants: tuple[Tenancy, dict[str, Identity]],
) -> None:
    """Two orgs own a bucket of the same name, each with its own rules.  A
    preflight to a presigned URL (SigV4 or SigV2) is answered by the rules
    of the bucket its key's tenant owns; without a credential the name is
    ambiguous: 403.  A name only one tenant owns resolves without one; an
    unknown key resolves nothing."""
    tenancy, ids = tenants
    port = tenancy.server.port
    assert port is not None
    endpoint = tenancy.server.endpoint
    name = f"shared-{uuid.uuid4().hex[:10]}"
    acme, globex = ids["acme-admin"].s3(endpoint), ids["globex-admin"].s3(endpoint)
    for client, origin in ((acme, "https://acme.test"), (globex, "https://globex.test")):
        client.create_bucket(Bucket=name)
        client.put_bucket_cors(Bucket=name, CORSConfiguration={
            "CORSRules": [{"AllowedMethods": ["PUT"], "AllowedOrigins": [origin]}]})
    acme_v2 = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ids["acme-admin"].access_key,
        aws_secret_access_key=ids["acme-admin"].secret_key, region_name="us-east-1",
        config=Config(signature_version="s3", s3={"addressing_style": "path"}),
    )
    urls = {
        "acme": acme.generate_presigned_url("put_object", Params={"Bucket": name, "Key": "f"}),
        "acme-v2": acme_v2.generate_presigned_url("put_object", Params={"Bucket": name, "Key": "f"}),
        "globex": globex.generate_presigned_url("put_object", Params={"Bucket": name, "Key": "f"}),
    }
    assert "AWSAccessKeyId=" in urls["acme-v2"]
    for who, origin, status in (
        ("acme", "https://acme.test", 200), ("acme", "https://globex.test", 403),
        ("acme-v2", "https://acme.test", 200), ("acme-v2", "https://globex.test", 403),
        ("globex", "https://globex.test", 200), ("globex", "https://acme.test", 403),
    ):  # fmt: skip
        answer = preflight(port, target_of(urls[who]), origin, "PUT")
        assert answer.status == status, (who, origin)
    # No credential: two buckets of that name, so neither is chosen.
    for origin in ("https://acme.test", "https://globex.test"):
        assert preflight(port, f"/{name}/f", origin, "PUT").status == 403
    # An unknown key in the query resolves nothing (no fallback to the name).
    unknown = urls["acme"].replace(ids["acme-admin"].access_key, "AKIDUNKNOWNKEY0000000")
    assert preflight(port, target_of(unknown), "https://acme.test", "PUT").status == 403
    # A name only acme owns resolves without a credential.
    only = f"only-{uuid.uuid4().hex[:10]}"
    acme.create_bucket(Bucket=only)
    acme.put_bucket_cors(Bucket=only, CORSConfiguration={
        "CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["https://acme.test"]}]})
    answer = preflight(port, f"/{only}/f", "https://acme.test", "GET")
    assert answer.status == 200 and answer.headers["access-control-allow-origin"] == "https://acme.test"
    # globex cannot read or change acme's configuration (its own scope has no such bucket).
    with pytest.raises(ClientError) as info:
        globex.get_bucket_cors(Bucket=only)
    assert error_code(info)[:2] == (404, "NoSuchBucket")


# -- persistence ----------------------------------------------------------------


def test_configuration_survives_a_restart(tmp_data: Path) -> None:
    """The rules live in the bucket record: after a restart GetBucketCors and
    the preflight answer as before."""
    server = ServerProcess(tmp_data).start()
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="kept")
        s3.put_bucket_cors(Bucket="kept", CORSConfiguration=UPLOAD_RULES)
        server.restart()
        s3 = make_client(server.endpoint)
        assert s3.get_bucket_cors(Bucket="kept")["CORSRules"] == UPLOAD_RULES["CORSRules"]
        assert server.port is not None
        answer = preflight(server.port, "/kept/k", "https://app.example.com", "PUT")
        assert answer.status == 200
    finally:
        server.stop()


def test_round_trip_and_preflight_on_etcd(tmp_path: Path) -> None:
    """On the etcd metadata store: the configuration one API server writes,
    another reads and answers preflights with; deleting it there ends them."""
    from tests.etcd_cluster import EtcdCluster, etcd_binary
    from tests.integration.test_etcd_server import config, start_server

    etcd_binary()
    etcd = EtcdCluster(tmp_path / "etcd").start()
    servers: list[ServerProcess] = []
    try:
        cfg = config(tmp_path / "server.toml", etcd.endpoints, "cors/")
        servers = [start_server(tmp_path, "a", cfg), start_server(tmp_path, "b", cfg)]
        first, second = (make_client(s.endpoint) for s in servers)
        first.create_bucket(Bucket="on-etcd")
        first.put_bucket_cors(Bucket="on-etcd", CORSConfiguration=UPLOAD_RULES)
        assert second.get_bucket_cors(Bucket="on-etcd")["CORSRules"] == UPLOAD_RULES["CORSRules"]
        port = servers[1].port
        assert port is not None
        assert preflight(port, "/on-etcd/k", "https://app.example.com", "PUT").status == 200
        second.delete_bucket_cors(Bucket="on-etcd")
        with pytest.raises(ClientError):
            first.get_bucket_cors(Bucket="on-etcd")
        assert preflight(servers[0].port or 0, "/on-etcd/k", "https://app.example.com", "PUT").status == 403
    finally:
        for s in servers:
            s.stop()
        etcd.stop()

"""No control characters into stored header fields, response headers or log lines.

The S3 request headers with a control character other than HTAB get a 400
at the framing layer (test_http_framing.py).  These are the other ways in,
against a real server: gRPC object attributes, PostObject form fields and
a GET's ``response-*`` query overrides are refused with InvalidArgument
and store nothing (a NUL or ``\\x01`` sent back in a GET's headers made the
object unreadable to strict HTTP parsers, Node's among them), and query
parameter names, decoded for the text access log, are escaped there so one
request stays one line.
"""

from __future__ import annotations

import socket
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import grpc
import pytest
import requests
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from lightningstor.grpc.errors import CODE_KEY
from lightningstor.grpc.gen import lightningstor_pb2 as pb
from lightningstor.grpc.gen import lightningstor_pb2_grpc as pb_grpc
from lightningstor.grpc.token import make_token
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess

BAD_VALUES = ["a\x00b", "a\r\nX-Evil: 1", "a\x01b", "a\x1b[31mb", "a\x7fb"]
ATTRIBUTE_FIELDS = ["content_type", "content_encoding", "content_disposition", "content_language", "cache_control", "expires"]


@pytest.fixture(scope="module")
def objects(server: ServerProcess) -> Iterator[pb_grpc.ObjectServiceStub]:
    channel = grpc.insecure_channel(server.grpc_endpoint)
    yield pb_grpc.ObjectServiceStub(channel)
    channel.close()


def _auth() -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {make_token(ROOT_ACCESS_KEY, ROOT_SECRET_KEY)}"),)


def _refused(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    error = info.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert dict(error.trailing_metadata() or ()).get(CODE_KEY) == "InvalidArgument"
    return error


def _missing(c: Any, bucket: str, key: str) -> bool:
    try:
        c.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        return int(e.response["ResponseMetadata"]["HTTPStatusCode"]) == 404
    return False


# -- gRPC -------------------------------------------------------------------
@pytest.mark.parametrize("value", BAD_VALUES[:3])
def test_grpc_put_object_content_type_with_control_character_is_refused(
    objects: pb_grpc.ObjectServiceStub, c: Any, bkt: str, value: str
) -> None:
    """PutObject's own ``content_type`` with a NUL, CR LF or \\x01: INVALID_ARGUMENT
    (S3 code InvalidArgument) naming the field, and nothing is stored."""
    request = pb.PutObjectRequest(bucket=bkt, key="ct", content=b"x", content_type=value)
    error = _refused(lambda: objects.PutObject(request, metadata=_auth()))
    assert "content_type" in (error.details() or "")
    assert _missing(c, bkt, "ct")


@pytest.mark.parametrize("field", ATTRIBUTE_FIELDS)
def test_grpc_put_object_attributes_with_control_characters_are_refused(
    objects: pb_grpc.ObjectServiceStub, c: Any, bkt: str, field: str
) -> None:
    """Every ObjectAttributes field that GET/HEAD send back as a header is
    refused with a control character, naming the field; nothing is stored.
    A tab stays allowed, as in a request header."""
    for value in BAD_VALUES:
        attributes = pb.ObjectAttributes(**{field: value})
        request = pb.PutObjectRequest(bucket=bkt, key=f"attr-{field}", content=b"x", attributes=attributes)
        error = _refused(lambda: objects.PutObject(request, metadata=_auth()))  # noqa: B023
        assert f"attributes.{field}" in (error.details() or "")
        assert _missing(c, bkt, f"attr-{field}")
    good = pb.PutObjectRequest(bucket=bkt, key=f"attr-{field}", content=b"x",
                               attributes=pb.ObjectAttributes(**{field: "a\tb"}))  # fmt: skip
    objects.PutObject(good, metadata=_auth())


def test_grpc_create_multipart_upload_attributes_with_control_characters_are_refused(
    objects: pb_grpc.ObjectServiceStub, c: Any, bkt: str
) -> None:
    """CreateMultipartUpload takes the same attributes: refused, and no upload is created."""
    for field in ATTRIBUTE_FIELDS:
        request = pb.CreateMultipartUploadRequest(bucket=bkt, key="mpu", attributes=pb.ObjectAttributes(**{field: "a\r\nb"}))
        _refused(lambda: objects.CreateMultipartUpload(request, metadata=_auth()))  # noqa: B023
    assert c.list_multipart_uploads(Bucket=bkt).get("Uploads", []) == []


def test_grpc_copy_object_replacing_attributes_with_control_characters_is_refused(
    objects: pb_grpc.ObjectServiceStub, c: Any, bkt: str
) -> None:
    """CopyObject with METADATA_DIRECTIVE_REPLACE takes new attributes: refused
    with a control character, and the copy is not made."""
    c.put_object(Bucket=bkt, Key="src", Body=b"source")
    for field in ATTRIBUTE_FIELDS:
        request = pb.CopyObjectRequest(
            source_bucket=bkt, source_key="src", bucket=bkt, key="dest",
            metadata_directive=pb.METADATA_DIRECTIVE_REPLACE, attributes=pb.ObjectAttributes(**{field: "a\x00b"}),
        )  # fmt: skip
        _refused(lambda: objects.CopyObject(request, metadata=_auth()))  # noqa: B023
    assert _missing(c, bkt, "dest")


# -- PostObject ---------------------------------------------------------------
def _post(c: Any, bucket: str, key: str, fields: dict[str, str]) -> requests.Response:
    form = c.generate_presigned_post(bucket, key, Fields=fields, Conditions=[{k: v} for k, v in fields.items()])
    return requests.post(form["url"], data=form["fields"], files={"file": ("f.txt", b"postdata")}, timeout=30,
                         allow_redirects=False)


def _error(response: requests.Response) -> tuple[int, str, str]:
    if not response.content.startswith(b"<"):
        return response.status_code, "", ""
    root = ET.fromstring(response.content)
    return response.status_code, root.findtext("Code") or "", root.findtext("ArgumentName") or ""


@pytest.mark.parametrize(
    "field",
    [
        "Content-Type", "Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language",
        "Expires", "x-amz-meta-m", "x-amz-website-redirect-location", "success_action_redirect",
    ],
)  # fmt: skip
def test_post_object_field_with_control_character_is_refused(c: Any, bkt: str, field: str) -> None:
    """A form field that becomes a stored header (or the redirect's Location)
    with a control character: 400 InvalidArgument naming the field, and
    nothing is stored.  The same form without it is stored."""
    good = "/ok" if field == "x-amz-website-redirect-location" else "http://127.0.0.1/ok"
    for bad in ("x\x01y", "x\r\nX-Evil: 1", "x\x00y"):
        value = good + bad if field in ("x-amz-website-redirect-location", "success_action_redirect") else bad
        response = _post(c, bkt, "posted", {field: value})
        assert _error(response) == (400, "InvalidArgument", field), response.text
        assert _missing(c, bkt, "posted")
    assert _post(c, bkt, "posted", {field: good}).status_code in (204, 303)
    assert not _missing(c, bkt, "posted")


def test_post_object_metadata_name_must_be_a_header_name(c: Any, bkt: str) -> None:
    """An ``x-amz-meta-*`` form field whose name is no HTTP header name (a
    space, a control character) is refused as the gRPC API refuses it:
    GET/HEAD would send it as a header name."""
    for name in ("x-amz-meta-a b", "x-amz-meta-a\x01b"):
        response = _post(c, bkt, "posted", {name: "v"})
        assert response.status_code == 400 and _error(response)[1] == "InvalidArgument", response.text
        assert _missing(c, bkt, "posted")


# -- response-* overrides -------------------------------------------------------
def _presigned_get(c: Any, target: str) -> str:
    """A SigV4 presigned GET of ``target`` (path and query, as sent): boto3
    would not presign ``ResponseExpires`` text that is no date."""
    request = AWSRequest(method="GET", url=c.meta.endpoint_url + target)
    S3SigV4QueryAuth(Credentials(ROOT_ACCESS_KEY, ROOT_SECRET_KEY), "s3", "us-east-1", expires=300).add_auth(request)
    return str(request.url)


OVERRIDES = {
    "ResponseContentType": "response-content-type",
    "ResponseContentLanguage": "response-content-language",
    "ResponseExpires": "response-expires",
    "ResponseCacheControl": "response-cache-control",
    "ResponseContentDisposition": "response-content-disposition",
    "ResponseContentEncoding": "response-content-encoding",
}


@pytest.mark.parametrize("param", sorted(OVERRIDES))
def test_response_override_with_control_character_is_refused(c: Any, bkt: str, param: str) -> None:
    """A signed GET whose ``response-*`` override holds a control character:
    400 InvalidArgument naming the parameter, before any header is sent;
    a tab is allowed, as in a header."""
    c.put_object(Bucket=bkt, Key="k", Body=b"data")
    for value in ("a\x01b", "text/plain\r\nX-Evil: 1", "a\x00b"):
        url = _presigned_get(c, f"/{bkt}/k?{OVERRIDES[param]}={quote(value, safe='')}")
        response = requests.get(url, timeout=30)
        assert _error(response) == (400, "InvalidArgument", OVERRIDES[param]), response.text
        assert "X-Evil" not in response.headers
    if param != "ResponseExpires":  # boto3 sends a datetime there
        ok = c.get_object(Bucket=bkt, Key="k", **{param: "a\tb"})
        assert ok["Body"].read() == b"data"


def test_response_override_through_boto3_is_refused(c: Any, bkt: str) -> None:
    """boto3's own GetObject(ResponseContentType=...) gets the InvalidArgument error."""
    c.put_object(Bucket=bkt, Key="k", Body=b"data")
    with pytest.raises(ClientError) as info:
        c.get_object(Bucket=bkt, Key="k", ResponseContentType="a\x01b")
    assert info.value.response["Error"]["Code"] == "InvalidArgument"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


# -- the text access log --------------------------------------------------------
def _raw_get(server: ServerProcess, target: str) -> str:
    """Send ``GET target`` as is (unsigned); the response's request id."""
    with socket.create_connection(("127.0.0.1", server.port or 0), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode("latin-1"))
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    for line in head.split("\r\n"):
        name, _, value = line.partition(":")
        if name.lower() == "x-amz-request-id":
            return value.strip()
    raise AssertionError(head)


def _lines_with(server: ServerProcess, text: str, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while not (lines := [line for line in server.output if text in line]):
        assert time.monotonic() < deadline, f"no log line with {text!r}"
        time.sleep(0.02)
    return lines


def test_access_log_escapes_control_characters_in_query_names(server: ServerProcess) -> None:
    """A query parameter name is decoded for the access line: a CR LF in it
    must not start a forged log line, nor an ESC, NUL or DEL reach the log
    raw.  Each is written as \\xNN, and the request is one line."""
    u = uuid.uuid4().hex[:12]
    query = (
        f"%0A2026-11-27T19:04:00%2B0000%20[lightningstor.access%23info]%20FORGED-{u}%0D=1"
        f"&%1B[31mESC-{u}=1&%00NUL-{u}=1&%7FDEL-{u}=1&tab%09{u}=1"
    )
    rid = _raw_get(server, f"/ctl-{u}?{query}")
    lines = _lines_with(server, rid)
    assert len(lines) == 1
    line = lines[0]
    assert "[lightningstor.access#info]" in line and f"/ctl-{u}?" in line
    assert f"\\x0a2026-11-27T19:04:00+0000 [lightningstor.access#info] FORGED-{u}\\x0d" in line
    assert f"\\x1b[31mESC-{u}" in line and f"\\x00NUL-{u}" in line and f"\\x7fDEL-{u}" in line
    assert f"tab\\x09{u}" in line
    for raw in ("\x1b", "\x00", "\x7f", "\r", "\t"):
        assert raw not in line
    # The marker is on the request's own line only, never on a line of its own.
    assert [other for other in server.output if u in other] == [line]


def test_access_log_escapes_quotes_and_backslashes_in_the_path(server: ServerProcess) -> None:
    """The path is logged as sent (its escapes not decoded; raw control
    characters in the request line get a 400 first), but a raw double quote
    or backslash in it is escaped, so the quoted request stays one field
    and a logged ``\\x0a`` can only be an escape."""
    u = uuid.uuid4().hex[:12]
    rid = _raw_get(server, f'/ctl-{u}/a"b\\x0ac%0Ad')
    line = _lines_with(server, rid)[0]
    assert f'"GET /ctl-{u}/a\\"b\\\\x0ac%0Ad" ' in line


# -- bucket configurations sent back in response headers -------------------
def _put_config(c: Any, bucket: str, sub: str, body: str) -> requests.Response:
    """PUT ``?sub`` with ``body`` through boto3's raw request machinery
    (boto3's own serializers would not write a control character)."""
    from botocore.awsrequest import AWSRequest as Raw

    url = f"{c.meta.endpoint_url}/{bucket}?{sub}"
    raw = Raw(method="PUT", url=url, data=body.encode(), headers={"Content-MD5": _md5(body)})
    c._request_signer.sign("PutBucketCors", raw)
    prepared = raw.prepare()
    answer = requests.put(prepared.url, data=body.encode(), headers=dict(prepared.headers), timeout=30)
    return answer


def _md5(body: str) -> str:
    import base64
    import hashlib

    return base64.b64encode(hashlib.md5(body.encode()).digest()).decode()


_CONFIGS_WITH_CONTROL_CHARACTERS = {
    # ExposeHeader values are sent in Access-Control-* headers: a CR LF in one
    # would split the answer of every preflight.
    "cors": (
        "<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>*</AllowedOrigin>"
        "<ExposeHeader>x-ok&#13;&#10;X-Evil: 1</ExposeHeader></CORSRule></CORSConfiguration>"
    ),
    # A redirect's HostName goes into the Location header as it is.
    "website": (
        "<WebsiteConfiguration><RedirectAllRequestsTo><HostName>example.com&#10;X-Evil: 1</HostName>"
        "</RedirectAllRequestsTo></WebsiteConfiguration>"
    ),
}


@pytest.mark.parametrize("sub", sorted(_CONFIGS_WITH_CONTROL_CHARACTERS))
def test_bucket_configurations_with_control_characters_are_refused(c: Any, bkt: str, sub: str) -> None:
    """Configuration values sent back in response headers: refused, and
    nothing is stored."""
    answer = _put_config(c, bkt, sub, _CONFIGS_WITH_CONTROL_CHARACTERS[sub])
    assert answer.status_code == 400 and b"<Code>InvalidArgument</Code>" in answer.content, answer.content
    read = {"cors": c.get_bucket_cors, "website": c.get_bucket_website}[sub]
    with pytest.raises(ClientError):
        read(Bucket=bkt)

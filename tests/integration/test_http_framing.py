"""HTTP/1.1 request framing at the real server's edge, over raw sockets:
what RFC 9112 requires a server to refuse (and a front proxy might read
differently) is answered 400 and the connection closed; request heads over
the size limits get AWS's 400 RequestHeaderSectionTooLarge (or 414) instead
of a silent close or a bare 400; any request
target, absolute form included, is answered without a 500."""

from __future__ import annotations

import base64
import re
import socket
import time
import uuid
from typing import Any

import pytest

from tests.integration.raw import CREDS
from tests.integration.server import ServerProcess
from tests.integration.test_boto3_objects import _put_raw_metadata
from tests.integration.test_input_properties import sign

# Sent behind every case on the same connection: answered only if the
# server stayed in step with the client (and did not close); the server
# closes once it has answered it.
PROBE = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
CLOSE = b"Connection: close\r\n"


def _exchange(server: ServerProcess, data: bytes, wait: float = 3.0) -> tuple[bytes, bool]:
    """Send ``data``; (everything received, whether the server closed)
    once it closes or ``wait`` seconds pass without a byte."""
    assert server.port is not None
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=wait)
    received = b""
    try:
        sock.sendall(data)
        while True:
            try:
                piece = sock.recv(65536)
            except TimeoutError:
                return received, False
            except ConnectionResetError:
                return received, True
            if not piece:
                return received, True
            received += piece
    finally:
        sock.close()


def _statuses(received: bytes) -> list[int]:
    return [int(m) for m in re.findall(rb"^HTTP/1\.[01] (\d{3}) ", received, re.M)]


def _host(server: ServerProcess) -> bytes:
    return b"Host: 127.0.0.1:%d\r\n" % server.port


def _refused(server: ServerProcess, request: bytes) -> None:
    """``request`` (followed by a pipelined probe) gets 400 and a close, and
    the probe is never answered."""
    received, closed = _exchange(server, request + PROBE)
    assert _statuses(received) == [400], received[:300]
    assert closed


@pytest.mark.parametrize(
    "framing",
    [
        b"Transfer-Encoding: identity\r\n",
        b"Transfer-Encoding: identity\r\nContent-Length: 0\r\n",
        b"Content-Length: 0\r\nTransfer-Encoding: identity\r\n",
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        b"Transfer-Encoding: IDENTITY\r\nTransfer-Encoding: chunked\r\n",
    ],
    ids=["identity", "identity-then-length", "length-then-identity", "chunked-then-identity", "identity-then-chunked"],
)
def test_a_transfer_encoding_not_ending_in_chunked_is_refused(server: ServerProcess, framing: bytes) -> None:
    """``Transfer-Encoding: identity``, alone, beside ``Content-Length``, or
    making the coding list end in something other than ``chunked``: RFC
    9112 §6.3 requires 400 and a close (twisted.web ignored ``identity``)."""
    _refused(server, b"POST /framing-bucket/k HTTP/1.1\r\n" + _host(server) + framing + b"\r\n0\r\n\r\n")


def test_a_plain_chunked_body_is_still_read(server: ServerProcess, s3: Any) -> None:
    """A single ``Transfer-Encoding: chunked`` stays what it was: a signed
    PutObject framed by its chunks is stored and the pipelined probe is
    answered."""
    bucket = f"chunked-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    request = (
        f"PUT /{bucket}/k HTTP/1.1\r\n".encode() + _host(server) + _signed_head(server, "PUT", f"/{bucket}/k")
        + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    )
    received, _ = _exchange(server, request + PROBE)
    assert _statuses(received) == [200, 200], received[:500]
    assert s3.head_object(Bucket=bucket, Key="k")["ContentLength"] == 0


@pytest.mark.parametrize("query", ["", "?partNumber=1&uploadId=UPLOAD"], ids=["PutObject", "UploadPart"])
def test_a_put_without_content_length_or_chunked_is_411_and_stores_nothing(
    server: ServerProcess, s3: Any, query: str
) -> None:
    """A PUT saying nothing of its body's length (no Content-Length, no
    chunked Transfer-Encoding) is 411 MissingContentLength, as AWS answers:
    twisted.web reports such a request as length 0, and it replaced the
    object with 0 bytes (its body then read as the next request)."""
    bucket = f"nolen-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"precious data")
    if query:
        upload = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
        query = query.replace("UPLOAD", upload)
    path = f"/{bucket}/k{query}"
    request = f"PUT {path} HTTP/1.1\r\n".encode() + _host(server) + _signed_head(server, "PUT", path) + b"\r\n"
    received, _ = _exchange(server, request + PROBE)
    assert _statuses(received)[:1] == [411], received[:500]
    assert b"<Code>MissingContentLength</Code>" in received
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"precious data"
    if query:
        assert s3.list_parts(Bucket=bucket, Key="k", UploadId=upload).get("Parts", []) == []


@pytest.mark.parametrize("mode", ["STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
                                  "STREAMING-UNSIGNED-PAYLOAD-TRAILER"])
def test_an_aws_chunked_payload_mode_on_a_buffered_operation_is_refused(server: ServerProcess, s3: Any, mode: str) -> None:
    """PutObjectTagging (any operation with an XML or JSON body) under a
    STREAMING-* payload mode: nothing decoded the body or checked chunk
    signatures, so a plain body sent that way was applied with no signature
    over it. Refused now, the tags unchanged."""
    bucket = f"stream-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="keep=yes")
    body = b"<Tagging><TagSet><Tag><Key>evil</Key><Value>unsigned</Value></Tag></TagSet></Tagging>"
    path = f"/{bucket}/k?tagging"
    headers = sign(server, "PUT", path, body=body, payload=mode)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode()
    request = f"PUT {path} HTTP/1.1\r\n".encode() + head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    received, _ = _exchange(server, request + PROBE)
    assert _statuses(received)[:1] == [400], received[:500]
    assert b"<Code>InvalidRequest</Code>" in received, received[:800].decode("latin-1")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [{"Key": "keep", "Value": "yes"}]


@pytest.mark.parametrize(
    "trailer",
    [b"X: y\n", b"no-colon", b"X: esc\x1bape", b"X: nul\x00", b"bad name: v", b"(x): v"],
    ids=["bare-lf", "no-colon", "esc", "nul", "space-in-name", "separator-in-name"],
)
def test_a_malformed_trailer_field_is_refused_and_stores_nothing(
    server: ServerProcess, s3: Any, trailer: bytes
) -> None:
    """A chunked body's trailer fields are held to the header field syntax:
    a bad one is 400, the connection closes, and nothing is stored.  A bare
    LF used to pass, so the request pipelined behind it (a DELETE here) was
    read as trailers by this server and as a request by a front end that
    ends lines at a bare LF: the two no longer agreed which response
    answered which request."""
    bucket = f"trailer-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="victim", Body=b"still here")
    delete = f"DELETE /{bucket}/victim HTTP/1.1\r\n".encode() + _host(server) + _signed_head(
        server, "DELETE", f"/{bucket}/victim"
    ) + b"\r\n"
    request = (
        f"PUT /{bucket}/k HTTP/1.1\r\n".encode() + _host(server) + _signed_head(server, "PUT", f"/{bucket}/k")
        + b"Transfer-Encoding: chunked\r\n\r\n0\r\n" + trailer + b"\r\n" + delete
    )  # fmt: skip
    received, closed = _exchange(server, request + PROBE)
    assert _statuses(received) == [400] and closed, received[:300]
    assert s3.get_object(Bucket=bucket, Key="victim")["Body"].read() == b"still here"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="k")


def test_well_formed_trailer_fields_are_accepted(server: ServerProcess, s3: Any) -> None:
    """Trailer fields in the header syntax (ignored) leave the body and the
    pipelined probe alone."""
    bucket = f"trailer-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    request = (
        f"PUT /{bucket}/k HTTP/1.1\r\n".encode() + _host(server) + _signed_head(server, "PUT", f"/{bucket}/k")
        + b"Transfer-Encoding: chunked\r\n\r\n0\r\nX-Note: a\tb\r\nOther:\r\n\r\n"
    )  # fmt: skip
    received, _ = _exchange(server, request + PROBE)
    assert _statuses(received) == [200, 200], received[:500]


@pytest.mark.parametrize(
    "connection",
    [[b"close"], [b"Close"], [b"keep-alive, close"], [b"close, TE"], [b"TE,close"], [b"TE", b"close"]],
    ids=["close", "Close", "last", "first", "no-space", "second-line"],
)
def test_connection_close_anywhere_in_the_options_closes(server: ServerProcess, connection: list[bytes]) -> None:
    """``close`` among the ``Connection`` options, wherever it stands and on
    whichever line, gets ``Connection: close`` and a close after the
    response; the pipelined probe is never answered (``close, TE`` and
    ``TE,close`` used to keep the connection open)."""
    lines = b"".join(b"Connection: " + value + b"\r\n" for value in connection)
    received, closed = _exchange(server, b"GET /health HTTP/1.1\r\n" + _host(server) + lines + b"\r\n" + PROBE)
    assert _statuses(received) == [200] and closed, received[:300]
    assert b"\r\nConnection: close\r\n" in received


@pytest.mark.parametrize(
    "head",
    [
        b"GET /health HTTP/1.1\r\n",
        b"GET /health HTTP/1.1\r\nHost: a\r\nHost: a\r\n",
        b"GET /health HTTP/1.1\r\nHost: a\r\nX-Other: 1\r\nhost: b\r\n",
        b"GET /health HTTP/1.1\r\nHost: a, b\r\n",
        b"GET /health HTTP/1.0\r\nHost: a\r\nHost: b\r\n",
    ],
    ids=["http11-without-host", "two-hosts", "two-hosts-apart", "host-list", "http10-two-hosts"],
)
def test_a_missing_or_repeated_host_is_refused(server: ServerProcess, head: bytes) -> None:
    """RFC 9112 §3.2: 400 for an HTTP/1.1 request without ``Host`` and for
    any request with more than one (twisted.web served both)."""
    _refused(server, head + b"\r\n")


def test_host_rules_leave_ordinary_requests_alone(server: ServerProcess) -> None:
    """HTTP/1.0 without ``Host`` (simple health checkers) is served, and so
    is a ``Host`` sent as the last header line or with an empty value."""
    received, closed = _exchange(server, b"GET /health HTTP/1.0\r\n\r\n")
    assert _statuses(received) == [200], received
    assert received.endswith(b'{"status":"ok"}\n') and closed
    for head in (b"GET /health HTTP/1.1\r\nX-A: 1\r\nHost: a\r\n\r\n", b"GET /health HTTP/1.1\r\nHost:\r\n\r\n"):
        received, _ = _exchange(server, head + PROBE)
        assert _statuses(received) == [200, 200], received


@pytest.mark.parametrize(
    "head",
    [
        b"GET /health HTTP/1.1\r\nHost: a\r\nX-A: a\r\n b\r\n",
        b"GET /health HTTP/1.1\r\nHost: a\r\nX-A: a\r\n\tb\r\n",
        b"POST /framing-bucket/k HTTP/1.1\r\nHost: a\r\nX-A: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
    ],
    ids=["space", "tab", "folded-transfer-encoding"],
)
def test_obs_fold_is_refused(server: ServerProcess, head: bytes) -> None:
    """A header line starting with a space or tab (obs-fold) is refused (RFC
    9112 §5.2 allows it), not joined to the line before: a proxy that does
    not fold would read a different header set."""
    _refused(server, head + b"\r\n")


@pytest.mark.parametrize(
    "line",
    [b"X-A: a\x01b", b"X-A: \x1b[31mred", b"X-A: a\x7f", b"X-Amz-Meta-Note: a\x0bb", b"X-A: a\x0c", b"X-A:\x01"],
    ids=["soh", "escape", "del", "vt-in-metadata", "ff-at-end", "only-ctl"],
)
def test_a_control_character_in_a_header_value_is_refused(server: ServerProcess, line: bytes) -> None:
    """RFC 9110 §5.5: a field value holds no control character but HTAB.
    twisted.web refused only NUL, CR and LF; the others reached stored
    metadata and logs.  Now 400 and a close, like the other framing errors."""
    _refused(server, b"GET /health HTTP/1.1\r\n" + _host(server) + line + b"\r\n\r\n")


def test_htab_and_obs_text_in_header_values_are_still_accepted(server: ServerProcess, s3: Any) -> None:
    """HTAB inside a value and bytes 0x80-0xFF (UTF-8 metadata, as clients
    send it) are not control characters: the request is served and the
    metadata stored as sent."""
    received, _ = _exchange(server, b"GET /health HTTP/1.1\r\n" + _host(server) + b"X-A: a\tb\r\n\r\n" + PROBE)
    assert _statuses(received) == [200, 200], received[:300]
    bucket = f"ctl-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    try:
        value = "caf\u00e9\t\u00fcber"
        _put_raw_metadata(s3, bucket, "k", {"note": value})
        stored = s3.head_object(Bucket=bucket, Key="k")["Metadata"]["note"]
        assert stored == "=?UTF-8?B?" + base64.b64encode(value.encode()).decode() + "?="  # AWS's answer to non-ASCII
    finally:
        s3.delete_object(Bucket=bucket, Key="k")
        s3.delete_bucket(Bucket=bucket)


def test_a_header_section_over_the_limit_gets_the_s3_error(server: ServerProcess) -> None:
    """One header line over 16 KiB (which closed the connection without a
    word), a header section over 16 KiB in total, and more than 500 header
    lines (both a bare 400): each gets AWS's ``400`` with the S3 error
    ``RequestHeaderSectionTooLarge``, and a close.
    A request line over the limit gets ``414 URI Too Long``."""
    host = _host(server)
    heads = {
        "one long line": b"GET /health HTTP/1.1\r\n" + host + b"X-A: " + b"a" * 17000 + b"\r\n\r\n",
        "many lines": b"GET /health HTTP/1.1\r\n" + host + (b"X-A: " + b"a" * 1000 + b"\r\n") * 17 + b"\r\n",
        "too many headers": b"GET /health HTTP/1.1\r\n" + host + b"X-A: a\r\n" * 501 + b"\r\n",
    }
    for name, head in heads.items():
        received, closed = _exchange(server, head + PROBE)
        assert _statuses(received) == [400], (name, received[:300])
        assert b"<Code>RequestHeaderSectionTooLarge</Code>" in received, name
        assert closed, name
        # The size limit is named where the size was over it; the count where the count was.
        assert (b"more than 500 header fields" in received) == (name == "too many headers"), name
        assert (b"<MaxSizeAllowed>" in received) == (name != "too many headers"), name
    received, closed = _exchange(server, b"GET /" + b"a" * 17000 + b" HTTP/1.1\r\n" + host + b"\r\n" + PROBE)
    assert _statuses(received) == [414], received[:300]
    assert closed



def test_max_header_bytes_sets_the_limit(tmp_path: Any) -> None:
    """``[limits] max_header_bytes`` is the limit: with 4096, a 5,000-byte
    header is refused with the limit named, a 3,000-byte one is served."""
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "lightningstor.toml"
    config.write_text("[limits]\nmax_header_bytes = 4096\n")
    server = ServerProcess(data, config=str(config)).start()
    try:
        host = _host(server)
        big = b"GET /health HTTP/1.1\r\n" + host + b"X-A: " + b"a" * 5000 + b"\r\n\r\n"
        received, closed = _exchange(server, big + PROBE)
        assert (_statuses(received), closed) == ([400], True), received[:300]
        assert b"<MaxSizeAllowed>4096</MaxSizeAllowed>" in received
        fits = b"GET /health HTTP/1.1\r\n" + host + b"X-A: " + b"a" * 3000 + b"\r\n" + CLOSE + b"\r\n"
        received, closed = _exchange(server, fits)
        assert _statuses(received) == [200], received[:300]
    finally:
        server.stop()


def test_a_header_section_within_the_limit_is_served(server: ServerProcess) -> None:
    """Just under the limits (a 16000-byte header, 499 more header lines)
    the request is served as before."""
    host = _host(server)
    for head in (
        b"GET /health HTTP/1.1\r\n" + host + b"X-A: " + b"a" * 16000 + b"\r\n\r\n",
        b"GET /health HTTP/1.1\r\n" + host + b"X-A: a\r\n" * 499 + b"\r\n",
    ):
        received, _ = _exchange(server, head + PROBE)
        assert _statuses(received) == [200, 200], received[:300]


def _signed_head(server: ServerProcess, method: str, path: str, origin: str | None = None) -> bytes:
    """SigV4 headers (all but Host) for ``path`` on ``origin`` (default:
    the server's endpoint), whose host the signature covers."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest

    url = f"{origin or server.endpoint}{path}"
    req = AWSRequest(method, url, headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(req)
    return "".join(f"{k}: {v}\r\n" for k, v in req.headers.items() if k.lower() != "host").encode()


def _body(received: bytes) -> bytes:
    """The body of a single chunked or Content-Length response."""
    head, _, body = received.partition(b"\r\n\r\n")
    if b"Transfer-Encoding: chunked" in head:
        size, _, rest = body.partition(b"\r\n")
        return rest[: int(size, 16)]
    return body


def test_probes_answer_a_target_in_absolute_form(server: ServerProcess) -> None:
    """``GET http://host/health`` (absolute form, which every HTTP/1.1
    server must accept) was routed to the S3 catch-all and answered 500
    with a logged traceback; /health, /ready and /metrics now answer as in
    origin form, and nothing is logged as an error."""
    logged = len(server.output)
    host = _host(server)
    for path in (b"/health", b"/ready", b"/metrics"):
        for method in (b"GET", b"HEAD"):
            origin, _ = _exchange(server, b"%s %s HTTP/1.1\r\n%s%s\r\n" % (method, path, host, CLOSE))
            for target in (b"http://evil" + path, b"HTTP://127.0.0.1" + path + b"?x=1", b"https://a@b:443" + path):
                received, _ = _exchange(server, b"%s %s HTTP/1.1\r\n%s%s\r\n" % (method, target, host, CLOSE))
                assert _statuses(received) == [200], (method, target, received[:300])
                if path != b"/metrics":  # whose numbers move between two scrapes
                    assert _body(received) == _body(origin), (method, target)
    errors = [line for line in server.output[logged:] if "#critical" in line or "#error" in line]
    assert not errors, errors


def test_an_s3_request_in_absolute_form_is_served_like_origin_form(server: ServerProcess, s3: Any) -> None:
    """AWS accepts an absolute-form target: a signed GET of an object in
    absolute form gets the object, as in origin form."""
    bucket = f"abs-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"absolute")
    signed = _signed_head(server, "GET", f"/{bucket}/k")
    host = _host(server)
    for target in (f"/{bucket}/k", f"http://127.0.0.1:{server.port}/{bucket}/k"):
        received, _ = _exchange(server, f"GET {target} HTTP/1.1\r\n".encode() + host + signed + CLOSE + b"\r\n")
        assert _statuses(received) == [200], received[:400]
        assert _body(received) == b"absolute"


@pytest.mark.parametrize("method", [b"GET", b"HEAD", b"PUT", b"POST", b"DELETE", b"OPTIONS"])
def test_no_request_target_gets_a_500(server: ServerProcess, method: bytes) -> None:
    """Odd request targets (absolute form on every probe path, no leading
    slash, authority form, ``*``, an empty authority) are answered, none
    with a 5xx, and none logs an error."""
    logged = len(server.output)
    targets = [
        b"http://evil/health", b"http://evil/ready", b"http://evil/metrics", b"ftp://x/health", b"http://evil",
        b"http://", b"http:///", b"health", b"ready", b"*", b"evil:443", b"//health", b"http://evil//ready",
        b"http://evil/%ff", b"http://evil?x", b"/health/",
    ]
    host = _host(server)
    for target in targets:
        received, _ = _exchange(server, b"%s %s HTTP/1.1\r\n%s%sContent-Length: 0\r\n\r\n" % (method, target, host, CLOSE))
        statuses = _statuses(received)
        assert statuses and all(s < 500 for s in statuses), (target, received[:300])
    time.sleep(0.2)
    errors = [line for line in server.output[logged:] if "#critical" in line or "#error" in line]
    assert not errors, errors


@pytest.fixture(scope="module")
def vhosted(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server with ``[s3] domain = "s3.test"`` and buckets ``alpha`` and
    ``beta``, each holding ``k`` with its own name as the body."""
    from tests.integration.conftest import make_client

    root = tmp_path_factory.mktemp("vhosted")
    (root / "data").mkdir()
    (root / "vhost.toml").write_text('[s3]\ndomain = "s3.test"\n')
    server = ServerProcess(root / "data", config=str(root / "vhost.toml")).start()
    s3: Any = make_client(server.endpoint)
    for name in ("alpha", "beta"):
        s3.create_bucket(Bucket=name)
        s3.put_object(Bucket=name, Key="k", Body=name.encode())
    yield server, s3
    server.stop()


def _absolute_get(server: ServerProcess, target: str, host: str, signed: bytes) -> bytes:
    head = f"GET {target} HTTP/1.1\r\nHost: {host}\r\n".encode()
    received, _ = _exchange(server, head + signed + CLOSE + b"\r\n")
    return received


def test_an_absolute_form_target_decides_the_bucket_not_host(vhosted: Any) -> None:
    """RFC 9112 §3.2.2: with an absolute-form target the server MUST ignore
    Host and use the target's authority.  ``GET http://alpha.s3.test/k``
    with ``Host: beta.s3.test`` is alpha's object (Host picked beta, and
    the signature, over alpha's host, then failed); a path-style absolute
    target is not turned virtual-hosted by a bucket Host."""
    server, _s3 = vhosted
    alpha = f"http://alpha.s3.test:{server.port}"
    received = _absolute_get(server, f"{alpha}/k", f"beta.s3.test:{server.port}",
                             _signed_head(server, "GET", "/k", origin=alpha))
    assert _statuses(received) == [200], received[:400]
    assert _body(received) == b"alpha"
    path_style = f"http://127.0.0.1:{server.port}"
    received = _absolute_get(server, f"{path_style}/alpha/k", f"beta.s3.test:{server.port}",
                             _signed_head(server, "GET", "/alpha/k", origin=path_style))
    assert _statuses(received) == [200], received[:400]
    assert _body(received) == b"alpha"


def test_an_absolute_form_presigned_url_is_addressed_by_its_authority(vhosted: Any) -> None:
    """A presigned URL sent as an absolute-form target is checked against
    and addressed by its own authority, whatever the Host header says."""
    server, s3 = vhosted
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "alpha", "Key": "k"}, ExpiresIn=300)
    assert url.startswith(f"http://127.0.0.1:{server.port}/alpha/k?")
    received = _absolute_get(server, url, f"beta.s3.test:{server.port}", b"")
    assert _statuses(received) == [200], received[:400]
    assert _body(received) == b"alpha"


def test_a_signature_over_one_host_does_not_open_another_bucket(vhosted: Any) -> None:
    """A request signed for ``beta.s3.test`` (Host says beta) but addressed
    in absolute form to alpha is checked against alpha's host: 403
    SignatureDoesNotMatch, and neither bucket's object is answered."""
    server, _s3 = vhosted
    beta = f"http://beta.s3.test:{server.port}"
    received = _absolute_get(server, f"http://alpha.s3.test:{server.port}/k", f"beta.s3.test:{server.port}",
                             _signed_head(server, "GET", "/k", origin=beta))
    assert _statuses(received) == [403], received[:400]
    assert b"<Code>SignatureDoesNotMatch</Code>" in received
    assert _body(received) not in (b"alpha", b"beta")


def test_methods_are_case_sensitive(server: ServerProcess) -> None:
    """``get`` is not GET (RFC 9110 §9.1: methods are case-sensitive): it
    gets S3's 405 MethodNotAllowed, as any method S3 does not have, where
    it was served as a GET; the same request as GET is served."""
    host = _host(server)
    for target in (b"/", b"/some-bucket/some-key", b"/health"):
        received, _closed = _exchange(server, b"get " + target + b" HTTP/1.1\r\n" + host + CLOSE + b"\r\n")
        assert _statuses(received) == [405], (target, received[:300])
    received, _closed = _exchange(server, b"GET /health HTTP/1.1\r\n" + host + CLOSE + b"\r\n")
    assert _statuses(received) == [200]

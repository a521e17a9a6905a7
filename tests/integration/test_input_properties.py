"""Hostile and malformed input against the real server, property-based (issue #9).

Every property drives one module-scoped server process over raw HTTP on
loopback, signs with botocore's own signers (the reference implementation of
SigV4 that AWS ships), and checks two things: the answer (exact status and S3
error code, or exact bytes) and that the store is unchanged by every refused
request.  The properties:

* SigV4, header and presigned: generated keys (unicode, reserved characters,
  ``..``, ``//``), query parameters and header sets signed by botocore are
  accepted; one mutation of the signed request (a signature digit, a signed
  header's value, the path, a query parameter, the date) is 403
  ``SignatureDoesNotMatch`` and stores nothing.
* aws-chunked bodies (signed chunks, signed trailer, unsigned trailer) with
  generated chunk sizes round-trip byte-identical; truncation, a wrong chunk
  signature, reordered or replayed chunks, bad chunk sizes and a wrong trailer
  checksum are 4xx and leave the key as it was (previous content, or absent).
* Every XML body the server parses answers garbage, truncated, poisoned and
  semantically invalid documents with a 400 S3 error, never a 5xx, and the
  object, tags, versioning, upload or bucket are as before.
* Range and conditional GET/HEAD agree with a reference model written here
  from RFC 7232/7233 and the S3 documentation.
* Random query strings on GET object / list never get a 5xx (except 501
  NotImplemented for sub-resources S3 has and we do not serve).

The budget is fixed and deterministic (``derandomize``), so CI runs the same
cases every time; the whole module takes well under a minute and a half.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import email.utils
import hashlib
import hmac
import http.client
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock
from urllib.parse import quote, urlsplit

import pytest
from botocore import auth as botocore_auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import make_client
from tests.integration.server import ROOT_ACCESS_KEY, ROOT_SECRET_KEY, ServerProcess

ROOT = Credentials(ROOT_ACCESS_KEY, ROOT_SECRET_KEY)
REGION = "us-east-1"
EMPTY_SHA = hashlib.sha256(b"").hexdigest()
HEX = "0123456789abcdef"


# LIGHTNINGSTOR_PROPERTY_SCALE=N runs N times the examples with fresh random
# seeds: the long, exploratory mode.  Unset, every run is the same CI run.
SCALE = float(os.environ.get("LIGHTNINGSTOR_PROPERTY_SCALE", "1"))


def budget(examples: int) -> settings:
    """A fixed, deterministic example budget (the server is shared, so no health check on speed)."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        derandomize=SCALE == 1,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ---------------------------------------------------------------------------
# Raw HTTP and botocore signing (also used by test_auth_bypass)
# ---------------------------------------------------------------------------


@dataclass
class Reply:
    """One HTTP answer: status, lower-case headers, body."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> str | None:
        """The S3 error code of an error document, if any."""
        m = re.search(rb"<Code>([^<]*)</Code>", self.body)
        return m.group(1).decode() if m else None


def host_of(server: ServerProcess) -> str:
    return f"127.0.0.1:{server.port}"


def send(server: ServerProcess, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> Reply:
    """Send exactly these headers (Host included) and a Content-Length matching ``body``."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            if name.lower() != "content-length":
                conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body if body else None)
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


class _S3Signer(botocore_auth.S3SigV4Auth):
    """botocore's S3 header signer, with a chosen x-amz-content-sha256 for streaming bodies."""

    def __init__(self, credentials: Credentials, payload: str | None) -> None:
        super().__init__(credentials, "s3", REGION)
        self._payload = payload

    def payload(self, request: Any) -> str:
        return self._payload if self._payload is not None else str(super().payload(request))


@contextlib.contextmanager
def signing_time(when: float | None) -> Iterator[None]:
    """Make botocore sign at ``when`` (epoch seconds); ``None`` is now."""
    if when is None:
        yield
        return
    fixed = datetime.datetime.fromtimestamp(when, datetime.UTC).replace(tzinfo=None)
    with mock.patch.object(botocore_auth, "get_current_datetime", lambda *a, **k: fixed):
        yield


def sign(
    server: ServerProcess,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    *,
    creds: Credentials = ROOT,
    payload: str | None = None,
    when: float | None = None,
) -> dict[str, str]:
    """The headers of ``target`` (path + query, already encoded) header-signed by botocore."""
    req = AWSRequest(method, server.endpoint + target, data=body, headers={"Host": host_of(server), **(headers or {})})
    with signing_time(when):
        _S3Signer(creds, payload).add_auth(req)
    return {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in req.headers.items()}


def presign(
    server: ServerProcess,
    method: str,
    target: str,
    headers: dict[str, str] | None = None,
    *,
    expires: int | str = 300,
    creds: Credentials = ROOT,
    when: float | None = None,
) -> str:
    """``target`` presigned by botocore's S3 query signer (``headers`` are signed too)."""
    req = AWSRequest(method, server.endpoint + target, headers={"Host": host_of(server), **(headers or {})})
    with signing_time(when):
        botocore_auth.S3SigV4QueryAuth(creds, "s3", REGION, expires=expires).add_auth(req)
    parts = urlsplit(req.url)
    return f"{parts.path}?{parts.query}"


def object_path(bucket: str, key: str) -> str:
    """The path botocore's serializer sends for a path-style object request."""
    return f"/{bucket}/{quote(key, safe='/~')}"


def encode_query(params: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(n, safe='-_.~')}={quote(v, safe='-_.~')}" for n, v in params)


def other_hex(digit: str, k: int) -> str:
    """A hex digit different from ``digit`` (case-insensitively: the server compares in lower case)."""
    choices = [c for c in HEX if c != digit.lower()]
    return choices[k % len(choices)]


def hmac_sha256(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str) -> bytes:
    k = hmac_sha256(("AWS4" + secret).encode(), date)
    for part in (REGION, "s3", "aws4_request"):
        k = hmac_sha256(k, part)
    return k


# ---------------------------------------------------------------------------
# aws-chunked framing, written here from the AWS documentation
# ("Signature Calculations for the Authorization Header: Transferring Payload
# in Multiple Chunks" and "... Including Trailing Headers")
# ---------------------------------------------------------------------------

SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


def checksum_b64(algorithm: str, data: bytes) -> str:
    """The base64 value of an x-amz-checksum-* header, computed independently of the server."""
    if algorithm == "crc32":
        raw = zlib.crc32(data).to_bytes(4, "big")
    else:
        raw = hashlib.new(algorithm, data).digest()
    return base64.b64encode(raw).decode()


@dataclass
class Chunked:
    """An aws-chunked body as frames, so tests can cut, swap and replay them.

    ``frames`` holds one frame per chunk, the final zero-size chunk last;
    ``trailer`` is everything after it (trailer lines, trailer signature and
    the closing empty line).
    """

    frames: list[bytes]
    trailer: bytes
    signatures: list[str] = field(default_factory=list)

    def body(self) -> bytes:
        return b"".join(self.frames) + self.trailer


@dataclass(frozen=True)
class ChunkSigning:
    secret: str
    amz_date: str
    seed: str

    @property
    def scope(self) -> str:
        return f"{self.amz_date[:8]}/{REGION}/s3/aws4_request"

    def chunk(self, previous: str, data: bytes) -> str:
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", self.amz_date, self.scope, previous, EMPTY_SHA,
                         hashlib.sha256(data).hexdigest()])
        return hmac.new(signing_key(self.secret, self.amz_date[:8]), sts.encode(), hashlib.sha256).hexdigest()

    def trailer(self, previous: str, lines: bytes) -> str:
        sts = "\n".join(["AWS4-HMAC-SHA256-TRAILER", self.amz_date, self.scope, previous,
                         hashlib.sha256(lines).hexdigest()])
        return hmac.new(signing_key(self.secret, self.amz_date[:8]), sts.encode(), hashlib.sha256).hexdigest()


def frame(data: bytes, signature: str | None, size_text: str | None = None) -> bytes:
    size = size_text if size_text is not None else f"{len(data):x}"
    head = f"{size};chunk-signature={signature}" if signature is not None else size
    return head.encode() + b"\r\n" + (data + b"\r\n" if data else b"")


def chunked(
    pieces: list[bytes],
    signing: ChunkSigning | None,
    *,
    trailer: tuple[str, str] | None = None,
    trailer_signed: bool = False,
) -> Chunked:
    """Frame ``pieces`` (then the final empty chunk) with a valid signature chain when ``signing``."""
    frames: list[bytes] = []
    signatures: list[str] = []
    previous = signing.seed if signing else ""
    for piece in [*pieces, b""]:
        sig = signing.chunk(previous, piece) if signing else None
        if sig is not None:
            signatures.append(sig)
            previous = sig
        frames.append(frame(piece, sig))
    tail = b""
    if trailer is not None:
        line = f"{trailer[0]}:{trailer[1]}"
        tail += line.encode() + b"\r\n"
        if trailer_signed:
            assert signing is not None
            signature = signing.trailer(previous, line.encode() + b"\n")
            tail += f"x-amz-trailer-signature:{signature}\r\n".encode()
    return Chunked(frames, tail + b"\r\n", signatures)


def split(data: bytes, sizes: list[int]) -> list[bytes]:
    """``data`` cut into pieces of the given sizes (repeating the last one); never an empty piece."""
    pieces, pos, i = [], 0, 0
    while pos < len(data):
        size = sizes[min(i, len(sizes) - 1)] if sizes else len(data)
        pieces.append(data[pos:pos + size])
        pos += size
        i += 1
    return pieces


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------

BUCKET = "props"
XML_BUCKET = "props-xml"


@dataclass
class Env:
    server: ServerProcess
    s3: Any
    upload_id: str = ""
    part_etag: str = ""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("inputprops")
    (base / "data").mkdir()
    server = ServerProcess(base / "data").start()
    s3: Any = make_client(server.endpoint)
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket=XML_BUCKET)
    for n in range(3):
        s3.put_object(Bucket=XML_BUCKET, Key=f"keep-{n}", Body=f"keep {n}".encode())
    s3.put_object_tagging(Bucket=XML_BUCKET, Key="keep-0", Tagging={"TagSet": [{"Key": "a", "Value": "1"}]})
    s3.put_bucket_tagging(Bucket=XML_BUCKET, Tagging={"TagSet": [{"Key": "team", "Value": "x"}]})
    upload = s3.create_multipart_upload(Bucket=XML_BUCKET, Key="mpu")["UploadId"]
    etag = s3.upload_part(Bucket=XML_BUCKET, Key="mpu", UploadId=upload, PartNumber=1, Body=b"part one")["ETag"]
    yield Env(server, s3, upload, etag.strip('"'))
    server.stop()


def head_status(env: Env, bucket: str, key: str) -> int:
    try:
        env.s3.head_object(Bucket=bucket, Key=key)
    except ClientError as e:
        return int(e.response["ResponseMetadata"]["HTTPStatusCode"])
    return 200


def content(env: Env, bucket: str, key: str) -> bytes | None:
    """The object's bytes, or None when it does not exist."""
    try:
        return bytes(env.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as e:
        assert e.response["Error"]["Code"] == "NoSuchKey", e.response
        return None


# ---------------------------------------------------------------------------
# SigV4: accepted when botocore signed it, refused after any one mutation
# ---------------------------------------------------------------------------

_KEY_CHARS = st.characters(exclude_characters="\x00", exclude_categories=["Cs"])
KEYS = st.one_of(
    st.text(_KEY_CHARS, min_size=1, max_size=30),
    st.lists(st.sampled_from(["..", ".", "", "a", "é", "日本", "%2F", "+", " ", "&", "=", "?", "#", ";", "~", "*"]),
             min_size=1, max_size=6).map("/".join),
).filter(lambda k: 0 < len(k.encode()) <= 1000)
PARAMS = st.lists(
    st.tuples(st.text(_KEY_CHARS, max_size=8).map(lambda s: "q" + s), st.text(_KEY_CHARS, max_size=12)),
    max_size=4,
)
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)
META = st.dictionaries(st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True), HEADER_TEXT, max_size=3)
MUTATIONS = ("signature", "header", "path", "query", "date")


def _mutate_query(target: str, k: int) -> str:
    """Change one non-auth query parameter's value, or add a parameter when there is none."""
    path, _, query = target.partition("?")
    pairs = query.split("&") if query else []
    own = [i for i, p in enumerate(pairs) if not p.startswith("X-Amz-")]
    if not own:
        return f"{path}?{query + '&' if query else ''}qz=z"
    i = own[k % len(own)]
    pairs[i] = pairs[i] + ("z" if "=" in pairs[i] else "=z")
    return f"{path}?{'&'.join(pairs)}"


def _bump_seconds(amz_date: str) -> str:
    """The same day, one second apart (so only the signature, not the credential scope, is wrong)."""
    seconds = int(amz_date[13:15])
    return f"{amz_date[:13]}{seconds + 1 if seconds < 59 else seconds - 1:02d}Z"


def _mutate_signed_header(headers: dict[str, str], k: int) -> dict[str, str]:
    names = sorted(n for n in headers if n.lower().startswith("x-amz-meta-") or n.lower() == "content-type")
    name = names[k % len(names)]
    return {**headers, name: headers[name] + "Z"}


@budget(30)
@given(
    key=KEYS,
    params=PARAMS,
    meta=META,
    content_type=HEADER_TEXT.map(lambda s: "text/" + s.strip()),
    body=st.binary(max_size=3000),
    mutation=st.sampled_from(MUTATIONS),
    presigned=st.booleans(),
    k=st.integers(0, 10_000),
)
def test_sigv4_signed_requests_are_accepted_and_any_mutation_is_refused(
    env: Env, key: str, params: list[tuple[str, str]], meta: dict[str, str], content_type: str, body: bytes,
    mutation: str, presigned: bool, k: int,
) -> None:
    """A PUT signed by botocore (header or presigned) stores exactly its body; the
    same request with one mutation is 403 SignatureDoesNotMatch and stores nothing."""
    server = env.server
    path = object_path(BUCKET, key)
    target = path + ("?" + encode_query(params) if params else "")
    headers = {"Content-Type": content_type, **{f"x-amz-meta-{n}": v for n, v in meta.items()}}
    if presigned:
        target = presign(server, "PUT", target, headers)
        sent = {"Host": host_of(server), **headers}
    else:
        sent = sign(server, "PUT", target, headers, body)

    bad_target, bad_headers, bad_key = target, dict(sent), key
    if mutation == "signature":
        if presigned:
            head, sig = target.rsplit("X-Amz-Signature=", 1)
            i = k % 64
            bad_target = f"{head}X-Amz-Signature={sig[:i]}{other_hex(sig[i], k)}{sig[i + 1:]}"
        else:
            head, sig = sent["Authorization"].rsplit("Signature=", 1)
            i = k % 64
            bad_headers["Authorization"] = f"{head}Signature={sig[:i]}{other_hex(sig[i], k)}{sig[i + 1:]}"
    elif mutation == "header":
        bad_headers = _mutate_signed_header(sent, k)
    elif mutation == "path":
        bad_key = key + "x"
        bad_target = object_path(BUCKET, bad_key) + target[len(path):]
    elif mutation == "query":
        bad_target = _mutate_query(target, k)
    else:
        if presigned:
            date = re.search(r"X-Amz-Date=(\d{8}T\d{6}Z)", target)
            assert date is not None
            bad_target = target.replace(date.group(0), "X-Amz-Date=" + _bump_seconds(date.group(1)))
        else:
            bad_headers["X-Amz-Date"] = _bump_seconds(sent["X-Amz-Date"])

    refused = send(server, "PUT", bad_target, bad_headers, body)
    assert (refused.status, refused.code) == (403, "SignatureDoesNotMatch"), (mutation, refused)
    assert head_status(env, BUCKET, key) == 404
    assert head_status(env, BUCKET, bad_key) == 404

    accepted = send(server, "PUT", target, sent, body)
    assert accepted.status == 200, accepted
    got = env.s3.get_object(Bucket=BUCKET, Key=key)
    assert got["Body"].read() == body
    assert {n: " ".join(v.split()) for n, v in got["Metadata"].items()} == {
        n: " ".join(v.split()) for n, v in meta.items()
    }
    env.s3.delete_object(Bucket=BUCKET, Key=key)


# ---------------------------------------------------------------------------
# aws-chunked: round trip, and every broken body refused without a trace
# ---------------------------------------------------------------------------

STREAM_MODES = (SIGNED, SIGNED_TRAILER, UNSIGNED_TRAILER)
STREAM_KEY = "streamed"
# What a broken aws-chunked body may be answered with (all 4xx): AWS's codes
# for a bad signature, bad framing, a short body and a wrong checksum.
STREAM_ERRORS = {
    403: {"SignatureDoesNotMatch"},
    400: {"InvalidArgument", "IncompleteBody", "BadDigest", "InvalidChunkSizeError", "MalformedTrailerError"},
}


def _stream_headers(env: Env, mode: str, data: bytes, algorithm: str) -> dict[str, str]:
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
    }
    if mode != SIGNED:
        headers["x-amz-trailer"] = f"x-amz-checksum-{algorithm}"
    return sign(env.server, "PUT", object_path(BUCKET, STREAM_KEY), headers, creds=ROOT, payload=mode)


def _frame_body(mode: str, sent: dict[str, str], pieces: list[bytes], data: bytes, algorithm: str,
                checksum_of: bytes | None = None, trailer_algorithm: str | None = None) -> Chunked:
    """The aws-chunked body of ``pieces`` for ``mode``, chained on the signature in ``sent``;
    the trailer checksum may cover other bytes or name another algorithm than declared."""
    signing = None
    if mode != UNSIGNED_TRAILER:
        signing = ChunkSigning(ROOT_SECRET_KEY, sent["X-Amz-Date"], sent["Authorization"].rsplit("Signature=", 1)[1])
    trailer = None
    if mode != SIGNED:
        named = trailer_algorithm or algorithm
        trailer = (f"x-amz-checksum-{named}", checksum_b64(named, data if checksum_of is None else checksum_of))
    return chunked(pieces, signing, trailer=trailer, trailer_signed=mode == SIGNED_TRAILER)


@budget(40)
@given(
    mode=st.sampled_from(STREAM_MODES),
    data=st.binary(max_size=6000),
    sizes=st.lists(st.integers(1, 2500), max_size=5),
    algorithm=st.sampled_from(["crc32", "sha1", "sha256"]),
    previous=st.one_of(st.none(), st.binary(max_size=64)),
    mutation=st.sampled_from(["truncate", "signature", "reorder", "replay", "size", "checksum", "trailer-name"]),
    k=st.integers(0, 10_000),
)
def test_aws_chunked_round_trips_and_broken_bodies_change_nothing(
    env: Env, mode: str, data: bytes, sizes: list[int], algorithm: str, previous: bytes | None,
    mutation: str, k: int,
) -> None:
    """A valid aws-chunked PUT stores exactly the decoded bytes; a broken one is a 4xx
    S3 error and the key keeps its previous content (or stays absent)."""
    if previous is None:
        env.s3.delete_object(Bucket=BUCKET, Key=STREAM_KEY)
    else:
        env.s3.put_object(Bucket=BUCKET, Key=STREAM_KEY, Body=previous)
    pieces = split(data, sizes)
    sent = _stream_headers(env, mode, data, algorithm)
    good = _frame_body(mode, sent, pieces, data, algorithm)
    target = object_path(BUCKET, STREAM_KEY)

    bad = Chunked(list(good.frames), good.trailer)
    expect: set[tuple[int, str]] | None = None  # None: any of STREAM_ERRORS
    if mutation == "truncate":
        whole = good.body()
        broken = whole[: k % len(whole)]
    elif mutation == "signature":
        assume(mode != UNSIGNED_TRAILER)  # nothing signed to break
        if mode == SIGNED_TRAILER and k % 3 == 0:
            head, tail = good.trailer.rsplit(b"x-amz-trailer-signature:", 1)
            bad.trailer = head + b"x-amz-trailer-signature:" + other_hex(chr(tail[0]), k).encode() + tail[1:]
        else:
            i = k % len(good.frames)
            sig = good.signatures[i]
            j = (k // 7) % 64
            wrong = sig[:j] + other_hex(sig[j], k) + sig[j + 1:]
            bad.frames[i] = good.frames[i].replace(sig.encode(), wrong.encode(), 1)
        broken = bad.body()
        expect = {(403, "SignatureDoesNotMatch")}
    elif mutation == "reorder":
        assume(len(pieces) >= 2)
        i, j = k % len(pieces), (k // 7) % len(pieces)
        assume(pieces[i] != pieces[j])
        bad.frames[i], bad.frames[j] = good.frames[j], good.frames[i]
        broken = bad.body()
        expect = {(403, "SignatureDoesNotMatch")} if mode != UNSIGNED_TRAILER else {(400, "BadDigest")}
    elif mutation == "replay":
        assume(pieces)
        i = k % len(pieces)
        bad.frames.insert(i + 1, good.frames[i])
        broken = bad.body()
    elif mutation == "size":
        assume(pieces)
        i = k % len(pieces)
        size = len(pieces[i])
        wrong_size = ["zz", "", "-1", f"{size + 1 + k % 5:x}", f"{max(size - 1, 0):x}", f"0x{size:x}", " "][k % 7]
        assume(wrong_size != f"{size:x}")
        bad.frames[i] = frame(pieces[i], good.signatures[i] if good.signatures else None, wrong_size)
        broken = bad.body()
    elif mutation == "checksum":
        assume(mode != SIGNED)  # no trailer to carry a checksum
        bad = _frame_body(mode, sent, pieces, data, algorithm, checksum_of=data + b"!")
        broken = bad.body()
        expect = {(400, "BadDigest")}
    else:
        # A correct checksum, but under a trailer name x-amz-trailer did not announce.
        assume(mode != SIGNED)
        other = next(a for a in ("crc32", "sha1", "sha256") if a != algorithm)
        broken = _frame_body(mode, sent, pieces, data, algorithm, trailer_algorithm=other).body()

    refused = send(env.server, "PUT", target, sent, broken)
    if expect is not None:
        assert (refused.status, refused.code) in expect, (mutation, refused)
    else:
        assert refused.code in STREAM_ERRORS.get(refused.status, set()), (mutation, refused)
    assert content(env, BUCKET, STREAM_KEY) == previous

    accepted = send(env.server, "PUT", target, sent, good.body())
    assert accepted.status == 200, accepted
    assert content(env, BUCKET, STREAM_KEY) == data


# ---------------------------------------------------------------------------
# XML bodies: refused with a 400 S3 error, state untouched
# ---------------------------------------------------------------------------

# The nastiest things to splice into a well-formed document: each one makes
# it malformed wherever it lands (outside comments and CDATA, which the base
# documents do not have).
POISON = [b"<", b"&", b"&;", b"&xxe;", b"&#0;", b"]]>", b"\x00", b"\xff", b"\xc3\x28", b"<!DOCTYPE d []>",
          b'<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>', b"<![CDATA[", b"</", b"<?", b"<a b>"]


def _doc(root: str, inner: str, *, ns: bool = False) -> bytes:
    xmlns = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"' if ns else ""
    return f"<{root}{xmlns}>{inner}</{root}>".encode()


def _tags_doc(pairs: list[tuple[str, str]]) -> bytes:
    tags = "".join(f"<Tag><Key>{k}</Key><Value>{v}</Value></Tag>" for k, v in pairs)
    return _doc("Tagging", f"<TagSet>{tags}</TagSet>")


def _part(number: str, etag: str) -> str:
    return f"<Part><PartNumber>{number}</PartNumber><ETag>&quot;{etag}&quot;</ETag></Part>"


# Documents every parser must refuse whatever the body around them; the
# well-formed but wrong ones (wrong root, bad values, limits) are per body.
COMMON_INVALID = [
    b'<?xml version="1.0" encoding="bogus"?><Root/>',
    b'<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><Root>&b;</Root>',
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><Root>&x;</Root>',
    b'<!DOCTYPE r SYSTEM "http://127.0.0.1:1/evil.dtd"><Root/>',
    b"<x:Root/>",  # an undeclared namespace prefix
    b"<Root></Root><Root/>",
]
TAGGING_INVALID = [
    _doc("Tagging", ""),
    _tags_doc([("k", "v"), ("k", "w")]),
    _tags_doc([("k" * 129, "v")]),
    _tags_doc([("k", "v" * 257)]),
    _tags_doc([("", "v")]),
    _tags_doc([("aws:reserved", "v")]),
    _tags_doc([(f"k{n}", "v") for n in range(51)]),
    _doc("Tagging", "<TagSet><Tag><Key>k</Key></Tag></TagSet>"),
    _doc("Tagging", "<TagSet><Tag><Key>k<x/></Key><Value>v</Value></Tag></TagSet>"),
    _doc("Tags", "<TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet>"),
]


@dataclass(frozen=True)
class XmlBody:
    """One request body the server parses: how to send it, what may answer, what must not change."""

    name: str
    method: str
    target: str  # {upload} is replaced by the fixture's upload id
    valid: bytes  # accepted as is (test_xml_valid_bases_are_accepted)
    invalid: tuple[bytes, ...]
    codes: frozenset[str]
    md5: bool = False


XML_BODIES = [
    XmlBody(
        "DeleteObjects", "POST", f"/{XML_BUCKET}?delete",
        _doc("Delete", "<Object><Key>keep-0</Key></Object><Object><Key>keep-1</Key></Object>"),
        (
            _doc("Delete", ""),
            _doc("Delete", "<Quiet>maybe</Quiet><Object><Key>keep-0</Key></Object>"),
            _doc("Delete", "<Object><Key></Key></Object>"),
            _doc("Delete", "<Object><VersionId>x</VersionId></Object>"),
            _doc("Delete", "<Object><Key><b>keep-0</b></Key></Object>"),
            _doc("Delete", "<Object><Key>keep-0</Key></Object>" * 1001),
            _doc("Remove", "<Object><Key>keep-0</Key></Object>"),
            b"<Delete><Object><Key>keep-0</Key></Object></Delete><Delete/>",
        ),
        frozenset({"MalformedXML", "MaxMessageLengthExceeded"}),
        md5=True,
    ),
    XmlBody(
        "PutObjectTagging", "PUT", f"/{XML_BUCKET}/keep-0?tagging", _tags_doc([("k", "v"), ("k2", "v2")]),
        (*TAGGING_INVALID, _tags_doc([(f"k{n}", "v") for n in range(11)])),
        frozenset({"MalformedXML", "InvalidTag", "BadRequest"}),
    ),
    XmlBody(
        "PutBucketTagging", "PUT", f"/{XML_BUCKET}?tagging", _tags_doc([("k", "v"), ("k2", "v2")]),
        tuple(TAGGING_INVALID), frozenset({"MalformedXML", "InvalidTag", "BadRequest"}),
    ),
    XmlBody(
        "PutBucketVersioning", "PUT", f"/{XML_BUCKET}?versioning",
        _doc("VersioningConfiguration", "<Status>Enabled</Status>", ns=True),
        (
            _doc("VersioningConfiguration", ""),
            _doc("VersioningConfiguration", "<Status></Status>"),
            _doc("VersioningConfiguration", "<Status>enabled</Status>"),
            _doc("VersioningConfiguration", "<Status>Disabled</Status>"),
            _doc("VersioningConfiguration", "<Status>Enabled<x/></Status>"),
            _doc("VersioningConfiguration", "<Status>Enabled</Status><MfaDelete>Sometimes</MfaDelete>"),
            _doc("Versioning", "<Status>Enabled</Status>"),
        ),
        frozenset({"MalformedXML", "IllegalVersioningConfigurationException"}),
    ),
    XmlBody(
        "CompleteMultipartUpload", "POST", f"/{XML_BUCKET}/mpu?uploadId={{upload}}",
        _doc("CompleteMultipartUpload", _part("1", "{etag}"), ns=True),
        (
            _doc("CompleteMultipartUpload", ""),
            _doc("CompleteMultipartUpload", _part("one", "{etag}")),
            _doc("CompleteMultipartUpload", _part("-1", "{etag}")),
            _doc("CompleteMultipartUpload", _part("1.0", "{etag}")),
            _doc("CompleteMultipartUpload", _part("0", "{etag}")),
            _doc("CompleteMultipartUpload", _part("10001", "{etag}")),
            _doc("CompleteMultipartUpload", _part("99999999999999999999", "{etag}")),
            _doc("CompleteMultipartUpload", _part("1", "0" * 32)),
            _doc("CompleteMultipartUpload", _part("2", "{etag}")),
            _doc("CompleteMultipartUpload", _part("1", "{etag}") * 2),
            _doc("CompleteMultipartUpload", "<Part><ETag>x</ETag></Part>"),
            _doc("CompleteMultipartUpload", "<Part><PartNumber>1</PartNumber></Part>"),
            _doc("Complete", _part("1", "{etag}")),
        ),
        frozenset({"MalformedXML", "InvalidPart", "InvalidPartOrder", "InvalidArgument"}),
    ),
    XmlBody(
        "CreateBucket", "PUT", "/props-new-bucket",
        _doc("CreateBucketConfiguration", f"<LocationConstraint>{REGION}</LocationConstraint>", ns=True),
        (
            _doc("CreateBucketConfiguration", "<LocationConstraint>eu-west-1</LocationConstraint>"),
            _doc("CreateBucketConfiguration", "<LocationConstraint>nowhere at all</LocationConstraint>"),
            _doc("CreateBucketConfiguration", "<LocationConstraint><x/></LocationConstraint>"),
            _doc("BucketConfiguration", f"<LocationConstraint>{REGION}</LocationConstraint>"),
        ),
        frozenset({"MalformedXML", "InvalidLocationConstraint"}),
    ),
]


def _fill(env: Env, body: bytes) -> bytes:
    return body.replace(b"{etag}", env.part_etag.encode())


def _send_xml(env: Env, spec: XmlBody, body: bytes, *, target: str | None = None) -> Reply:
    target = (target or spec.target).replace("{upload}", env.upload_id)
    headers = {}
    if spec.md5:
        headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
    return send(env.server, spec.method, target, sign(env.server, spec.method, target, headers, body), body)


def _xml_state(env: Env) -> dict[str, Any]:
    """Everything an XML body could change: objects, tags, versioning, the upload, the buckets."""
    s3 = env.s3
    try:
        bucket_tags: Any = s3.get_bucket_tagging(Bucket=XML_BUCKET)["TagSet"]
    except ClientError as e:
        bucket_tags = e.response["Error"]["Code"]
    parts = s3.list_parts(Bucket=XML_BUCKET, Key="mpu", UploadId=env.upload_id).get("Parts", [])
    return {
        "objects": [(o["Key"], o["ETag"]) for o in s3.list_objects_v2(Bucket=XML_BUCKET).get("Contents", [])],
        "object_tags": s3.get_object_tagging(Bucket=XML_BUCKET, Key="keep-0")["TagSet"],
        "bucket_tags": bucket_tags,
        "versioning": s3.get_bucket_versioning(Bucket=XML_BUCKET).get("Status"),
        "parts": [(p["PartNumber"], p["ETag"]) for p in parts],
        "buckets": sorted(b["Name"] for b in s3.list_buckets()["Buckets"]),
    }


def _assert_refused(spec: XmlBody, reply: Reply, body: bytes) -> None:
    assert reply.status == 400, (spec.name, body, reply)
    assert reply.code in spec.codes | {"MalformedXML"}, (spec.name, body, reply)


def test_xml_valid_bases_are_accepted(env: Env) -> None:
    """The documents the mutations start from are themselves accepted, so a refusal is the
    mutation's doing.  Sent to scratch resources: the shared state stays as set up."""
    s3 = env.s3
    s3.create_bucket(Bucket="props-scratch")
    for key in ("keep-0", "keep-1", "tagged"):
        s3.put_object(Bucket="props-scratch", Key=key, Body=b"x")
    upload = s3.create_multipart_upload(Bucket="props-scratch", Key="mpu")["UploadId"]
    etag = s3.upload_part(Bucket="props-scratch", Key="mpu", UploadId=upload, PartNumber=1, Body=b"p")["ETag"]
    scratch = {"DeleteObjects": "/props-scratch?delete", "PutObjectTagging": "/props-scratch/tagged?tagging",
               "PutBucketTagging": "/props-scratch?tagging", "PutBucketVersioning": "/props-scratch?versioning",
               "CompleteMultipartUpload": f"/props-scratch/mpu?uploadId={upload}", "CreateBucket": "/props-located"}
    for spec in XML_BODIES:
        body = spec.valid.replace(b"{etag}", etag.strip('"').encode())
        reply = _send_xml(env, spec, body, target=scratch[spec.name])
        assert reply.status in (200, 204), (spec.name, reply)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="props-scratch")["Contents"]] == ["mpu", "tagged"]
    assert s3.get_object_tagging(Bucket="props-scratch", Key="tagged")["TagSet"] == [
        {"Key": "k", "Value": "v"}, {"Key": "k2", "Value": "v2"}]
    assert s3.get_bucket_versioning(Bucket="props-scratch")["Status"] == "Enabled"
    assert s3.get_bucket_tagging(Bucket="props-scratch")["TagSet"] == [{"Key": "k", "Value": "v"},
                                                                       {"Key": "k2", "Value": "v2"}]
    s3.delete_bucket(Bucket="props-located")


@pytest.mark.parametrize("spec", XML_BODIES, ids=[s.name for s in XML_BODIES])
def test_every_known_bad_document_is_refused(env: Env, spec: XmlBody) -> None:
    """Each hand-written bad document (entity tricks, XXE, wrong roots, bad values,
    limits) for each body is a 400 with the body's error code, changing nothing."""
    for body in [*COMMON_INVALID, *spec.invalid]:
        body = _fill(env, body)
        before = _xml_state(env)
        _assert_refused(spec, _send_xml(env, spec, body), body)
        assert _xml_state(env) == before, (spec.name, body)


def _mutants(valid: bytes) -> st.SearchStrategy[bytes]:
    """Documents that must be refused: garbage, a proper prefix of ``valid``, or
    ``valid`` with a poison token spliced in anywhere."""
    garbage = st.one_of(st.binary(min_size=1, max_size=200), st.text(min_size=1, max_size=200).map(str.encode))
    return st.one_of(
        garbage.filter(lambda b: b.strip() != b""),
        st.integers(1, len(valid) - 1).map(lambda n: valid[:n]),
        st.tuples(st.integers(0, len(valid)), st.sampled_from(POISON)).map(lambda t: valid[:t[0]] + t[1] + valid[t[0]:]),
    )


@budget(60)
@given(spec=st.sampled_from(XML_BODIES), data=st.data())
def test_mutated_xml_bodies_are_refused_and_change_nothing(env: Env, spec: XmlBody, data: st.DataObject) -> None:
    """Garbage, truncated and poisoned versions of every XML body the server parses
    are 400 (never a 5xx) and leave objects, tags, versioning, the upload and the
    bucket list exactly as they were."""
    body = data.draw(_mutants(_fill(env, spec.valid)))
    before = _xml_state(env)
    _assert_refused(spec, _send_xml(env, spec, body), body)
    assert _xml_state(env) == before


# ---------------------------------------------------------------------------
# Range and conditional headers against a reference model
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RangeSpec:
    """A Range header and what it means: kind is closed, open, suffix or ignored."""

    header: str
    kind: str
    first: int = 0
    last: int = 0


RANGES = st.one_of(
    st.builds(lambda a, b: RangeSpec(f"bytes={a}-{b}", "closed", a, b), st.integers(0, 400), st.integers(0, 400)),
    st.builds(lambda a: RangeSpec(f"bytes={a}-", "open", a), st.integers(0, 400)),
    st.builds(lambda n: RangeSpec(f"bytes=-{n}", "suffix", 0, n), st.integers(0, 400)),
    st.builds(lambda a: RangeSpec(f"bytes={a}-99999999999999999999999", "open", a), st.integers(0, 400)),
    st.builds(lambda n: RangeSpec(f"bytes=-{n}", "suffix", 0, n), st.just(10**30)),
    st.builds(lambda a, b, c, d: RangeSpec(f"bytes={a}-{b},{c}-{d}", "ignored"),
              st.integers(0, 50), st.integers(0, 50), st.integers(0, 50), st.integers(0, 50)),
    st.sampled_from(["items=0-1", "bytes=abc", "bytes", "0-1", "bytes=--1", "bytes=1-2-3", "bytes=-", "bytes=x-1",
                     "bytes=1-x", "bytes=0x1-2", "bytes=+1-2", "bytes=\u00b2-3",
                     # An Arabic-Indic one as UTF-8 on the wire (header text is latin-1).
                     "bytes=" + "\u0661".encode().decode("latin-1") + "-2", "bytes=1_0-20"]).map(lambda h: RangeSpec(h, "ignored")),
)


def expected_range(spec: RangeSpec, size: int) -> tuple[int, int] | str | None:
    """RFC 7233 as S3 applies it: (first, last) for a 206, "416", or None for the whole object.

    S3 serves one range; a header it cannot use (another unit, several ranges,
    a closed range whose last byte precedes its first) is ignored (RFC 7233
    §3.1: a server MAY ignore Range).  A syntactically valid range is
    unsatisfiable (416) when its first byte is at or past the end (of an
    empty object too) or for a zero-length suffix; a suffix of an empty
    object is the whole (empty) object, as AWS answers.
    """
    if spec.kind == "ignored" or (spec.kind == "closed" and spec.last < spec.first):
        return None
    if spec.kind == "suffix":
        if spec.last == 0:
            return "416"
        if size == 0:
            return None
        return max(0, size - spec.last), size - 1
    if spec.first >= size:
        return "416"
    last = size - 1 if spec.kind == "open" else min(spec.last, size - 1)
    return spec.first, last


def _http_date(epoch: int, form: int) -> str:
    """``epoch`` in one of the three HTTP-date forms RFC 7231 §7.1.1.1 obliges servers to accept."""
    t = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    if form == 0:
        return email.utils.formatdate(epoch, usegmt=True)
    if form == 1:
        return t.strftime("%A, %d-%b-%y %H:%M:%S GMT")
    return t.strftime("%a %b ") + f"{t.day:2d}" + t.strftime(" %H:%M:%S %Y")


@dataclass(frozen=True)
class DateSpec:
    """A conditional date: an offset from Last-Modified in one form, or junk (ignored)."""

    offset: int | None
    form: int = 0
    junk: str = ""

    def header(self, last_modified: int) -> str:
        return self.junk if self.offset is None else _http_date(last_modified + self.offset, self.form)


DATES = st.one_of(
    st.builds(DateSpec, st.sampled_from([-400 * 86400, -3600, -1, 0, 1, 3600, 400 * 86400]), st.integers(0, 2)),
    st.sampled_from(["yesterday", "2024-01-01T00:00:00Z", "Mon, 99 Foo 2020 00:00:00 GMT", "0", "-1",
                     "Tue, 30 Feb 2021 00:00:00 GMT"]).map(lambda j: DateSpec(None, junk=j)),
)


@dataclass(frozen=True)
class TagSpec:
    """An If-Match / If-None-Match value: which ETags it lists and how they are written."""

    kind: str  # star, same, other, list-with, list-without
    quoted: bool = True
    weak: bool = False

    def header(self, etag: str) -> str:
        def write(tag: str) -> str:
            text = f'"{tag}"' if self.quoted else tag
            return "W/" + text if self.weak else text

        other = "0" * 32
        return {
            "star": "*",
            "same": write(etag),
            "other": write(other),
            "list-with": f"{write(other)}, {write(etag)}",
            "list-without": f"{write(other)},{write('1' * 32)}",
        }[self.kind]

    def matches(self) -> bool:
        return self.kind in ("star", "same", "list-with")


KINDS = st.sampled_from(["star", "same", "other", "list-with", "list-without"])
STRONG_TAGS = st.builds(TagSpec, KINDS, st.booleans())
ANY_TAGS = st.builds(TagSpec, KINDS, st.booleans(), st.booleans())


def expected_status(size: int, conditions: dict[str, Any], rng: RangeSpec | None) -> tuple[int, tuple[int, int] | None]:
    """The reference model: RFC 7232 §6 precedence, which the S3 documentation restates.

    1. If-Match present: 412 unless it matches (If-Unmodified-Since is then ignored);
       otherwise If-Unmodified-Since earlier than Last-Modified is 412.
    2. If-None-Match present: 304 if it matches (If-Modified-Since is then ignored);
       otherwise If-Modified-Since at or after Last-Modified is 304.
    3. Only then the Range header (a 304/412 never carries a range).
    Dates compare in whole seconds; a date that does not parse is ignored.
    """
    if_match, unmodified = conditions.get("if-match"), conditions.get("if-unmodified-since")
    if_none, modified = conditions.get("if-none-match"), conditions.get("if-modified-since")
    if if_match is not None:
        if not if_match.matches():
            return 412, None
    elif unmodified is not None and unmodified.offset is not None and unmodified.offset < 0:
        return 412, None
    if if_none is not None:
        if if_none.matches():
            return 304, None
    elif modified is not None and modified.offset is not None and modified.offset >= 0:
        return 304, None
    if rng is None:
        return 200, None
    span = expected_range(rng, size)
    if span is None:
        return 200, None
    if span == "416":
        return 416, None
    assert isinstance(span, tuple)
    return 206, span


@budget(60)
@given(
    data=st.binary(max_size=300),
    rng=st.one_of(st.none(), RANGES),
    if_match=st.one_of(st.none(), STRONG_TAGS),
    if_none_match=st.one_of(st.none(), ANY_TAGS),
    if_modified=st.one_of(st.none(), DATES),
    if_unmodified=st.one_of(st.none(), DATES),
    method=st.sampled_from(["GET", "HEAD"]),
)
def test_range_and_conditions_follow_the_reference_model(
    env: Env, data: bytes, rng: RangeSpec | None, if_match: TagSpec | None, if_none_match: TagSpec | None,
    if_modified: DateSpec | None, if_unmodified: DateSpec | None, method: str,
) -> None:
    """GET/HEAD with any mix of Range, If-Match, If-None-Match, If-Modified-Since and
    If-Unmodified-Since answers what the model says, with the exact bytes for a 206."""
    conditions = {"if-match": if_match, "if-none-match": if_none_match,
                  "if-modified-since": if_modified, "if-unmodified-since": if_unmodified}
    check_against_model(env, data, conditions, rng, method)


EDGE_RANGES = [
    RangeSpec("bytes=0-0", "closed", 0, 0), RangeSpec("bytes=0-10", "closed", 0, 10),
    RangeSpec("bytes=10-10", "closed", 10, 10), RangeSpec("bytes=11-11", "closed", 11, 11),
    RangeSpec("bytes=5-2", "closed", 5, 2), RangeSpec("bytes=0-", "open", 0), RangeSpec("bytes=10-", "open", 10),
    RangeSpec("bytes=11-", "open", 11), RangeSpec("bytes=-0", "suffix", 0, 0), RangeSpec("bytes=-1", "suffix", 0, 1),
    RangeSpec("bytes=-11", "suffix", 0, 11), RangeSpec("bytes=-12", "suffix", 0, 12),
    RangeSpec("bytes=0-1,5-6", "ignored"), RangeSpec("items=0-1", "ignored"), RangeSpec("bytes=1-2,", "ignored"),
]


@pytest.mark.parametrize("rng", EDGE_RANGES, ids=[r.header for r in EDGE_RANGES])
@pytest.mark.parametrize("size", [0, 1, 11])
def test_range_edges_follow_the_reference_model(env: Env, rng: RangeSpec, size: int) -> None:
    """The boundaries of every range form (first/last byte, past the end, zero suffix,
    empty object) on GET and HEAD, each run every time."""
    if rng.header == "bytes=1-2,":
        # RFC 7230 §7: an empty list element is not a range; one range remains.
        rng = RangeSpec(rng.header, "closed", 1, 2)
    for method in ("GET", "HEAD"):
        check_against_model(env, bytes(range(65, 65 + size)), {}, rng, method)


EDGE_CONDITIONS: list[dict[str, Any]] = [
    {"if-match": TagSpec("other"), "if-unmodified-since": DateSpec(3600)},  # If-Match decides: 412
    {"if-match": TagSpec("same"), "if-unmodified-since": DateSpec(-3600)},  # If-Match true wins: 200
    {"if-match": TagSpec("star")},
    {"if-match": TagSpec("same", quoted=False)},
    {"if-none-match": TagSpec("other"), "if-modified-since": DateSpec(3600)},  # If-None-Match decides: 200
    {"if-none-match": TagSpec("same"), "if-modified-since": DateSpec(-3600)},  # 304
    {"if-none-match": TagSpec("star")},
    {"if-none-match": TagSpec("same", weak=True)},
    {"if-modified-since": DateSpec(0)}, {"if-modified-since": DateSpec(-1)}, {"if-modified-since": DateSpec(1)},
    {"if-unmodified-since": DateSpec(0)}, {"if-unmodified-since": DateSpec(-1)},
    {"if-unmodified-since": DateSpec(1, form=1)}, {"if-modified-since": DateSpec(0, form=2)},
    {"if-unmodified-since": DateSpec(-1), "if-none-match": TagSpec("same")},  # 412 before 304
    {"if-match": TagSpec("other"), "if-none-match": TagSpec("same")},
    {"if-unmodified-since": DateSpec(None, junk="Tue, 30 Feb 2021 00:00:00 GMT")},
]


@pytest.mark.parametrize("conditions", EDGE_CONDITIONS)
@pytest.mark.parametrize("rng", [None, RangeSpec("bytes=2-4", "closed", 2, 4), RangeSpec("bytes=50-", "open", 50)],
                         ids=["whole", "range", "unsatisfiable"])
def test_condition_edges_follow_the_reference_model(
    env: Env, conditions: dict[str, Any], rng: RangeSpec | None
) -> None:
    """The precedence rules and date boundaries (equal, one second either side), each run every time."""
    for method in ("GET", "HEAD"):
        check_against_model(env, b"conditional body", conditions, rng, method)


def check_against_model(
    env: Env, data: bytes, conditions: dict[str, Any], rng: RangeSpec | None, method: str
) -> None:
    """Store ``data``, send the conditional/ranged request, compare with :func:`expected_status`."""
    key = "ranged"
    env.s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    head = env.s3.head_object(Bucket=BUCKET, Key=key)
    etag = head["ETag"].strip('"')
    last_modified = int(head["LastModified"].timestamp())
    headers: dict[str, str] = {}
    for name, spec in conditions.items():
        if isinstance(spec, TagSpec):
            headers[name] = spec.header(etag)
        elif isinstance(spec, DateSpec):
            headers[name] = spec.header(last_modified)
    if rng is not None and rng.header.isascii():
        headers["Range"] = rng.header
    target = object_path(BUCKET, key)
    sent = sign(env.server, method, target, headers)
    if rng is not None and not rng.header.isascii():
        # botocore hashes header text as UTF-8 while the wire carries latin-1,
        # so it cannot sign a non-ASCII value (AWS refuses those signatures
        # too); Range need not be signed, so it goes unsigned.
        sent["Range"] = rng.header
    reply = send(env.server, method, target, sent)

    status, span = expected_status(len(data), conditions, rng)
    assert reply.status == status, (headers, reply)
    if method == "HEAD":
        assert reply.body == b""
    if status == 200:
        assert int(reply.headers["content-length"]) == len(data)
        assert method == "HEAD" or reply.body == data
    elif status == 206:
        assert span is not None
        first, last = span
        assert reply.headers["content-range"] == f"bytes {first}-{last}/{len(data)}"
        assert int(reply.headers["content-length"]) == last - first + 1
        assert method == "HEAD" or reply.body == data[first:last + 1]
    elif status == 304:
        assert reply.body == b"" and reply.headers["etag"].strip('"') == etag
    elif method == "GET":
        assert reply.code == {412: "PreconditionFailed", 416: "InvalidRange"}[status], reply
    if status == 416:
        assert reply.headers["content-range"] == f"bytes */{len(data)}"
    assert content(env, BUCKET, key) == data


# ---------------------------------------------------------------------------
# Query strings: never a 5xx
# ---------------------------------------------------------------------------

KNOWN_PARAMS = [
    "list-type", "max-keys", "marker", "prefix", "delimiter", "encoding-type", "continuation-token", "start-after",
    "fetch-owner", "versionId", "partNumber", "uploadId", "versions", "uploads", "tagging", "acl", "location",
    "versioning", "attributes", "response-content-type", "response-content-disposition", "response-cache-control",
    "response-expires", "response-content-language", "response-content-encoding", "key-marker",
    "version-id-marker", "max-uploads", "max-parts", "part-number-marker", "x-id", "delete", "select", "torrent",
    "X-Amz-Expires", "X-Amz-Date", "Signature", "Expires",
]
HUGE = "9" * 5000  # int() refuses more than 4300 digits: a ValueError, not a number
QUERY_VALUES = st.one_of(
    st.text(_KEY_CHARS, max_size=20),
    st.sampled_from(["", "-1", "0", "1", "2", "1001", "99999999999999999999", "abc", "url", "true", "\x01",
                     "%", "null", "\r\n", "1e3", " 1", HUGE, "0" * 4400 + "7"]),
)


@budget(60)
@given(
    params=st.lists(st.tuples(st.one_of(st.sampled_from(KNOWN_PARAMS), st.text(_KEY_CHARS, min_size=1, max_size=10)),
                              QUERY_VALUES), min_size=1, max_size=4),
    on_object=st.booleans(),
)
def test_query_strings_never_get_a_5xx(env: Env, params: list[tuple[str, str]], on_object: bool) -> None:
    """Signed GETs of an object or a bucket listing with any query parameters answer
    2xx/3xx/4xx (or 501 NotImplemented for an S3 sub-resource not served), never
    another 5xx, and a 4xx is an S3 error document."""
    if on_object:
        env.s3.put_object(Bucket=BUCKET, Key="queried", Body=b"queried body")
    path = object_path(BUCKET, "queried") if on_object else f"/{BUCKET}"
    target = f"{path}?{encode_query(params)}"
    reply = send(env.server, "GET", target, sign(env.server, "GET", target))
    assert reply.status < 500 or (reply.status, reply.code) == (501, "NotImplemented"), (params, reply)
    if reply.status >= 400:
        assert reply.code is not None, reply
    if on_object:
        assert content(env, BUCKET, "queried") == b"queried body"


def test_huge_numbers_anywhere_never_get_a_5xx(env: Env) -> None:
    """A 5000-digit number in every numeric query parameter and header is a 4xx (or
    a capped answer; a Range answers as the number's size says), never a 500 from int()."""
    s3 = env.s3
    s3.put_object(Bucket=BUCKET, Key="numbers", Body=b"0123456789")
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="numbers-mpu")["UploadId"]
    etag = s3.upload_part(Bucket=BUCKET, Key="numbers-mpu", UploadId=upload, PartNumber=1, Body=b"p")["ETag"]
    complete = f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part>" \
               "</CompleteMultipartUpload>".encode()
    mpu = f"/{BUCKET}/numbers-mpu?uploadId={upload}"
    ranged = [(f"bytes={HUGE}-", 416), (f"bytes=0-{HUGE}", 206), (f"bytes=-{HUGE}", 206),
              (f"bytes={HUGE}-{HUGE}", 416), (f"bytes={HUGE}-1", 200), (f"bytes={'0' * 4400}3-4", 206)]
    for header, status in ranged:
        target = f"/{BUCKET}/numbers"
        reply = send(env.server, "GET", target, sign(env.server, "GET", target, {"Range": header}))
        assert reply.status == status, (header[:20], reply)
    cases: list[tuple[str, str, dict[str, str], bytes]] = [
        ("GET", f"/{BUCKET}?max-keys={HUGE}", {}, b""),
        ("GET", f"/{BUCKET}?list-type=2&max-keys={HUGE}", {}, b""),
        ("GET", f"/{BUCKET}?versions&max-keys={HUGE}", {}, b""),
        ("GET", f"/{BUCKET}?uploads&max-uploads={HUGE}", {}, b""),
        ("GET", f"/?max-buckets={HUGE}", {}, b""),
        ("GET", f"/{BUCKET}/numbers?partNumber={HUGE}", {}, b""),
        ("GET", f"{mpu}&max-parts={HUGE}", {}, b""),
        ("GET", f"{mpu}&part-number-marker={HUGE}", {}, b""),
        ("PUT", f"/{BUCKET}/numbers-mpu?partNumber={HUGE}&uploadId={upload}", {}, b"x"),
        ("PUT", f"/{BUCKET}/numbers-mpu?partNumber=2&uploadId={upload}",
         {"x-amz-copy-source": f"/{BUCKET}/numbers", "x-amz-copy-source-range": f"bytes={HUGE}-{HUGE}"}, b""),
        ("PUT", f"/{BUCKET}/numbers-2", {"x-amz-decoded-content-length": HUGE,
                                          "x-amz-content-sha256": UNSIGNED_TRAILER}, b"0\r\n\r\n"),
        ("POST", mpu, {"x-amz-mp-object-size": HUGE}, complete),
    ]
    for method, target, headers, body in cases:
        reply = send(env.server, method, target, sign(env.server, method, target, headers, body), body)
        # An error, or (max-uploads, max-parts: AWS caps them at 1000) an answer; never a 5xx.
        assert reply.status < 300 or (400 <= reply.status < 500 and reply.code), (method, target[:60], reply)
    assert content(env, BUCKET, "numbers") == b"0123456789"
    assert head_status(env, BUCKET, "numbers-2") == 404
    assert [p["PartNumber"] for p in s3.list_parts(Bucket=BUCKET, Key="numbers-mpu", UploadId=upload)["Parts"]] == [1]
    s3.abort_multipart_upload(Bucket=BUCKET, Key="numbers-mpu", UploadId=upload)

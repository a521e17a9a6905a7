"""Authenticate an S3 request: classify, parse and verify its credentials.

Two steps, because the secret lives behind the ``IAuthorizer`` plugin:

1. :func:`parse_auth` reads a :class:`RequestView` and says which scheme the
   request uses and which access key it claims, raising S3 errors on malformed
   credentials.  It needs no secret.
2. :func:`verify` checks the signature with the caller's secret and the clock,
   and says what the body must satisfy (:class:`VerifiedAuth`).

Decisions (where AWS leaves room):

* SigV4 header auth without ``x-amz-content-sha256``: botocore and every AWS
  SDK send it for S3, and AWS itself refuses requests without it.  We accept
  two readings instead, so generic SigV4 signers (``curl --aws-sigv4``, other
  services' signers) work: the hash of an empty body (then the body must be
  empty: payload ``SIGNED``) or ``UNSIGNED-PAYLOAD``.
* Every ``x-amz-*`` header present must be signed, and so must ``host``
  (AWS's "There were headers present in the request which were not signed").
* Header and query credentials together are refused with AWS's
  ``InvalidArgument`` "Only one auth mechanism allowed".
* Presigned V4 requests dated more than the allowed skew in the future are
  refused with ``AccessDenied`` "Request is not valid yet".
* Nothing here logs; error messages carry the string to sign (as AWS does, to
  help client authors) but never a secret or a signing key.
"""

from __future__ import annotations

import datetime
import email.utils
import functools
import hmac
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from lightningstor import errors
from lightningstor.auth import sigv2, sigv4

V4_HEADER = "v4-header"
V4_QUERY = "v4-query"
V2_HEADER = "v2-header"
V2_QUERY = "v2-query"
ANONYMOUS = "anonymous"

SIGNATURE_VERSION = {V4_HEADER: "v4", V4_QUERY: "v4", V2_HEADER: "v2", V2_QUERY: "v2"}
"""The signature version of each signed scheme (``[s3] signature_version``)."""


def check_signature_version(version: str, allowed: frozenset[str]) -> None:
    """InvalidRequest, AWS's answer to a SigV2 request where only SigV4 is
    taken, when ``version`` ("v2"/"v4") is not in ``allowed``."""
    if version not in allowed:
        wanted = "AWS4-HMAC-SHA256" if "v4" in allowed else "AWS"
        raise errors.InvalidRequest(
            f"The authorization mechanism you have provided is not supported. Please use {wanted}."
        )

PAYLOAD_UNSIGNED = "UNSIGNED"
PAYLOAD_SIGNED = "SIGNED"
PAYLOAD_STREAMING_SIGNED = "STREAMING-SIGNED"
PAYLOAD_STREAMING_SIGNED_TRAILER = "STREAMING-SIGNED-TRAILER"
PAYLOAD_STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-TRAILER"

_STREAMING_MODES = {
    sigv4.STREAMING_SIGNED: PAYLOAD_STREAMING_SIGNED,
    sigv4.STREAMING_SIGNED_TRAILER: PAYLOAD_STREAMING_SIGNED_TRAILER,
    sigv4.STREAMING_UNSIGNED_TRAILER: PAYLOAD_STREAMING_UNSIGNED_TRAILER,
}
STREAMING_PAYLOADS = frozenset(_STREAMING_MODES.values())
"""The aws-chunked payload kinds of a verified request (``VerifiedAuth.payload``)."""

_V4_QUERY_PARAMS = frozenset(
    {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature"}
)
_ONE_MECHANISM = (
    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string "
    "parameter or the Authorization header should be specified"
)
_NEED_DATE = "AWS authentication requires a valid Date or x-amz-date header"
_CREDENTIAL_FORM = 'expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".'
_V4_QUERY_REQUIRED = (
    "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, "
    "X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
)
_V2_QUERY_REQUIRED = "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters"
# X-Amz-Expires and SigV2's Expires are plain decimal numbers.  int() alone
# would also take "+60", " 60", "1_000" and non-ASCII digits ("\u0666\u0660"),
# none of which AWS accepts; the digit cap keeps int() cheap.
_DECIMAL = re.compile(r"-?[0-9]{1,19}", re.ASCII)


# RequestView, ParsedAuth, StreamingContext and VerifiedAuth are not frozen: a
# frozen dataclass sets each field through object.__setattr__, six times slower,
# and these are built for every request.  Treat them as read-only.
@dataclass(slots=True)
class RequestView:
    """What auth needs from an HTTP request, independent of Twisted.

    ``raw_path`` and ``raw_query`` are the latin-1 decoding of the bytes on the
    wire (percent-encoding intact), like the header values: latin-1 maps bytes
    to characters one to one, so the exact bytes the client signed can be
    recovered.  Header names are lower case.
    """

    method: str
    raw_path: str
    raw_query: str
    headers: Mapping[str, list[str]]

    def header(self, name: str) -> str | None:
        """The first value of a header (``name`` lower case), or ``None``."""
        values = self.headers.get(name)
        return values[0] if values else None


@dataclass(slots=True)
class ParsedAuth:
    """The credentials a request carries, parsed but not yet verified."""

    scheme: str
    access_key: str
    signature: str = ""
    #: SigV4: the credential scope (date, region, service).
    credential: sigv4.Credential | None = None
    #: SigV4: signed header names, lower case and sorted.
    signed_headers: tuple[str, ...] = ()
    #: SigV4: the request timestamp as signed (``yyyymmddThhmmssZ``).
    amz_date: str = ""
    #: The request's own time (epoch seconds) for skew checks; ``None`` for query auth V2.
    request_time: float | None = None
    #: SigV4 query: X-Amz-Expires (seconds); SigV2 query: Expires (absolute epoch).
    expires: int | None = None
    #: The x-amz-content-sha256 header as received (already checked to be acceptable).
    content_sha256: str | None = None
    #: x-amz-security-token (header or query), for the authorizer to judge.
    security_token: str | None = None
    #: SigV2: values the client may have put on the Date line of its string to sign.
    v2_dates: tuple[str, ...] = field(default=(), repr=False)


@dataclass(slots=True)
class StreamingContext:
    """For STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER): everything needed to verify chunk signatures."""

    signing_key: bytes = field(repr=False)
    amz_date: str
    scope: str
    seed_signature: str


@dataclass(slots=True)
class VerifiedAuth:
    """A verified request: who signed it and what its body must satisfy.

    ``payload`` is ``UNSIGNED``, ``SIGNED`` (the body must hash to
    ``payload_sha256``), ``STREAMING-SIGNED``, ``STREAMING-SIGNED-TRAILER`` or
    ``STREAMING-UNSIGNED-TRAILER`` (decode with
    :class:`lightningstor.auth.chunked.AwsChunkedDecoder`, using ``streaming``
    for the signed kinds).
    """

    access_key: str
    scheme: str
    payload: str
    payload_sha256: str | None
    streaming: StreamingContext | None
    security_token: str | None = None


# --------------------------------------------------------------------------- parsing


def parse_auth(view: RequestView) -> ParsedAuth:
    """Classify and parse the credentials of a request without any secret.

    Raises ``AuthorizationHeaderMalformed``, ``AuthorizationQueryParametersError``,
    ``InvalidArgument`` (unsupported or doubled auth, a bad
    ``x-amz-content-sha256``) or ``AccessDenied`` (no usable date).
    """
    content_sha256 = _content_sha256(view)
    authorization = view.headers.get("authorization") or []
    raw_query = view.raw_query
    # Decoding the query costs more than the rest of parsing; skip it when no
    # auth parameter can be in it (an escaped name always contains '%').
    might_hold_auth = "X-Amz-" in raw_query or "Signature" in raw_query or "AWSAccessKeyId" in raw_query
    query = sigv4.decoded_query(raw_query) if might_hold_auth or "%" in raw_query else []
    names = {name for name, _ in query}
    v4_query = bool(names & {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"})
    v2_query = bool(names & {"AWSAccessKeyId", "Signature"})
    if int(bool(authorization)) + int(v4_query) + int(v2_query) > 1:
        raise errors.InvalidArgument(_ONE_MECHANISM, ArgumentName="Authorization")
    if authorization:
        if len(authorization) > 1:
            raise errors.InvalidArgument("Only one Authorization header is allowed", ArgumentName="Authorization")
        value = authorization[0].strip()
        if value.startswith(sigv4.ALGORITHM + " "):
            return _parse_v4_header(view, value, content_sha256)
        if value.startswith("AWS "):
            return _parse_v2_header(view, value, content_sha256)
        raise errors.InvalidArgument(
            "Unsupported Authorization Type", ArgumentName="Authorization", ArgumentValue=value.split(" ", 1)[0]
        )
    if v4_query:
        return _parse_v4_query(view, query, content_sha256)
    if v2_query:
        return _parse_v2_query(view, query, content_sha256)
    return ParsedAuth(scheme=ANONYMOUS, access_key="", content_sha256=content_sha256)


def _content_sha256(view: RequestView) -> str | None:
    values = view.headers.get("x-amz-content-sha256")
    if not values:
        return None
    # HTTP's own whitespace only (as the S3 layer reads the header): str.strip()
    # also took U+00A0, so auth verified a STREAMING mode that the body
    # handling, reading the raw header, did not see, and checked no chunk.
    value = values[0].strip(" \t")
    if len(values) > 1 or not (value in sigv4.CONTENT_SHA256_LITERALS or sigv4.is_hex64(value)):
        raise errors.InvalidArgument(
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid sha256 value.",
            ArgumentName="x-amz-content-sha256",
            ArgumentValue=values[0],
        )
    return value


def _parse_v4_header(view: RequestView, value: str, content_sha256: str | None) -> ParsedAuth:
    def malformed(detail: str) -> errors.S3Error:
        return errors.AuthorizationHeaderMalformed(f"The authorization header is malformed; {detail}")

    try:
        fields = sigv4.split_authorization(value)
    except sigv4.MalformedAuthorization as exc:
        raise errors.AuthorizationHeaderMalformed(str(exc)[0].upper() + str(exc)[1:]) from None
    credential = _check_credential(fields.credential, malformed)
    signed = sigv4.split_signed_headers(fields.signed_headers)
    if signed is None:
        raise malformed("the SignedHeaders component is malformed.")
    if not sigv4.is_hex64(fields.signature):
        raise malformed("the Signature component must be 64 hexadecimal characters.")
    amz_date_header = view.header("x-amz-date")
    if amz_date_header is not None:
        amz_date = amz_date_header.strip()
        request_time = _parse_amz_date(amz_date)
    else:
        date_header = view.header("date")
        request_time = _parse_http_date(date_header) if date_header else None
        amz_date = _format_amz_date(request_time) if request_time is not None else ""
    if request_time is None:
        raise errors.AccessDenied(_NEED_DATE)
    if credential.date != amz_date[:8]:
        raise malformed("Invalid credential date. Date is not the same as X-Amz-Date.")
    return ParsedAuth(
        scheme=V4_HEADER,
        access_key=credential.access_key,
        signature=fields.signature.lower(),
        credential=credential,
        signed_headers=signed,
        amz_date=amz_date,
        request_time=request_time,
        content_sha256=content_sha256,
        security_token=view.header("x-amz-security-token"),
    )


def _parse_v4_query(view: RequestView, query: list[tuple[str, str]], content_sha256: str | None) -> ParsedAuth:
    def malformed(detail: str) -> errors.S3Error:
        return errors.AuthorizationQueryParametersError(f"Error parsing the X-Amz-Credential parameter; {detail}")

    params: dict[str, str] = {}
    for name, value in query:
        if name in _V4_QUERY_PARAMS or name == "X-Amz-Security-Token":
            if name in params:
                raise errors.AuthorizationQueryParametersError(f"{name} must appear only once")
            params[name] = value
    if any(not params.get(name) for name in _V4_QUERY_PARAMS):
        raise errors.AuthorizationQueryParametersError(_V4_QUERY_REQUIRED)
    if params["X-Amz-Algorithm"] != sigv4.ALGORITHM:
        raise errors.AuthorizationQueryParametersError('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    credential = _check_credential(params["X-Amz-Credential"], malformed)
    amz_date = params["X-Amz-Date"]
    request_time = _parse_amz_date(amz_date)
    if request_time is None:
        raise errors.AuthorizationQueryParametersError(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\""
        )
    if credential.date != amz_date[:8]:
        raise malformed("Invalid credential date. Date is not the same as X-Amz-Date.")
    expires = _decimal(params["X-Amz-Expires"])
    if expires is None:
        raise errors.AuthorizationQueryParametersError("X-Amz-Expires should be a number")
    signed = sigv4.split_signed_headers(params["X-Amz-SignedHeaders"])
    if signed is None:
        raise errors.AuthorizationQueryParametersError("X-Amz-SignedHeaders is malformed")
    signature = params["X-Amz-Signature"]
    if not sigv4.is_hex64(signature):
        raise errors.AuthorizationQueryParametersError("X-Amz-Signature must be 64 hexadecimal characters")
    return ParsedAuth(
        scheme=V4_QUERY,
        access_key=credential.access_key,
        signature=signature.lower(),
        credential=credential,
        signed_headers=signed,
        amz_date=amz_date,
        request_time=request_time,
        expires=expires,
        content_sha256=content_sha256,
        security_token=params.get("X-Amz-Security-Token") or view.header("x-amz-security-token"),
    )


def _check_credential(value: str, malformed: Callable[[str], errors.S3Error]) -> sigv4.Credential:
    """Split and check a credential; ``malformed`` builds the scheme's error from a detail."""
    credential = sigv4.split_credential(value)
    if credential is None or not _is_yyyymmdd(credential.date) or not credential.region:
        raise malformed(f"the Credential is mal-formed; {_CREDENTIAL_FORM}")
    if credential.service != sigv4.SERVICE:
        raise malformed(f'incorrect service "{credential.service}". This endpoint belongs to "{sigv4.SERVICE}".')
    if credential.terminator != sigv4.TERMINATOR:
        raise malformed(f'incorrect terminal "{credential.terminator}". This endpoint uses "{sigv4.TERMINATOR}".')
    return credential


def _parse_v2_header(view: RequestView, value: str, content_sha256: str | None) -> ParsedAuth:
    parts = sigv2.split_authorization(value)
    if parts is None:
        raise errors.InvalidArgument(
            "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
            ArgumentName="Authorization",
            ArgumentValue=value,
        )
    access_key, signature = parts
    amz_date = view.header("x-amz-date")
    date = view.header("date")
    if amz_date is not None:
        request_time = _parse_http_date(amz_date)
        if request_time is None:
            request_time = _parse_amz_date(amz_date.strip())
        # AWS leaves the Date line empty when x-amz-date is used; botocore's
        # HmacV1Auth puts the Date header there anyway.
        dates: tuple[str, ...] = ("",) if date is None else ("", date.strip())
    else:
        request_time = _parse_http_date(date) if date else None
        dates = (date.strip(),) if date else ()
    if request_time is None:
        raise errors.AccessDenied(_NEED_DATE)
    return ParsedAuth(
        scheme=V2_HEADER,
        access_key=access_key,
        signature=signature,
        request_time=request_time,
        content_sha256=content_sha256,
        security_token=view.header("x-amz-security-token"),
        v2_dates=dates,
    )


def _parse_v2_query(view: RequestView, query: list[tuple[str, str]], content_sha256: str | None) -> ParsedAuth:
    params: dict[str, str] = {}
    for name, value in query:
        if name in sigv2.QUERY_AUTH_PARAMS:
            if name in params:
                raise errors.AccessDenied(f"{name} must appear only once")
            params[name] = value
    if any(not params.get(name) for name in sigv2.QUERY_AUTH_PARAMS):
        raise errors.AccessDenied(_V2_QUERY_REQUIRED)
    expires = _decimal(params["Expires"])
    if expires is None:
        raise errors.AccessDenied(f"Invalid date (should be seconds since epoch): {params['Expires']}")
    token = next((value for name, value in query if name.lower() == "x-amz-security-token"), None)
    return ParsedAuth(
        scheme=V2_QUERY,
        access_key=params["AWSAccessKeyId"],
        # Base64 never holds a space: a space is a '+' the client left unescaped.
        signature=params["Signature"].replace(" ", "+"),
        expires=expires,
        content_sha256=content_sha256,
        security_token=token or view.header("x-amz-security-token"),
        v2_dates=(params["Expires"],),
    )


# --------------------------------------------------------------------------- dates


def _is_yyyymmdd(value: str) -> bool:
    """Eight ASCII digits (``str.isdigit`` alone also takes other scripts' digits)."""
    return len(value) == 8 and value.isascii() and value.isdigit()


def _decimal(value: str) -> int | None:
    """An optionally negative ASCII decimal number, or ``None`` for anything else."""
    return int(value) if _DECIMAL.fullmatch(value) else None


@functools.lru_cache(maxsize=256)
def _parse_amz_date(value: str) -> float | None:
    """``yyyymmddThhmmssZ`` -> epoch seconds (strptime is ten times slower).

    Remembered for a few values: concurrent requests signed in the same
    second carry the same date."""
    if not sigv4.is_amz_date(value):
        return None
    try:
        parsed = datetime.datetime(
            int(value[0:4]),
            int(value[4:6]),
            int(value[6:8]),
            int(value[9:11]),
            int(value[11:13]),
            int(value[13:15]),
            tzinfo=datetime.UTC,
        )
    except ValueError:
        return None
    return parsed.timestamp()


def _parse_http_date(value: str) -> float | None:
    """Epoch seconds of an HTTP date; None for one that does not parse or
    lies outside years 1-9999 in UTC (a huge day overflowed, a date late on
    9999-12-31 east of UTC became year 10000 when formatted: both were 500s
    with a traceback, before any credential was looked up)."""
    try:
        parsed = email.utils.parsedate_to_datetime(value.strip())
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=datetime.UTC)
        parsed.astimezone(datetime.UTC)  # OverflowError past year 9999 in UTC
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed.timestamp()


def _format_amz_date(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y%m%dT%H%M%SZ")


def _iso(epoch: float) -> str:
    """``epoch`` as ISO 8601; a time outside years 1-9999 (a SigV2 ``Expires``
    of a huge negative number) is shown as the number itself, not a 500."""
    try:
        return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return f"{epoch:.0f}"


# --------------------------------------------------------------------------- verification


def verify(
    parsed: ParsedAuth,
    secret_key: str,
    view: RequestView,
    *,
    now: float,
    region: str,
    max_skew_seconds: int = 900,
    max_presign_seconds: int = 7 * 24 * 3600,
    virtual_host_bucket: str | None = None,
) -> VerifiedAuth:
    """Verify the signature of ``parsed`` with the caller's secret.

    ``region`` is the region this server answers for; ``""`` accepts any
    credential scope region.  ``virtual_host_bucket`` names the bucket when it
    came from the Host header (virtual-hosted style): SigV2 signs ``/bucket``
    in front of the path, SigV4 does not care.

    Raises ``SignatureDoesNotMatch``, ``RequestTimeTooSkewed`` (header auth
    too far from ``now`` either way), ``AccessDenied`` (expired or not yet
    valid presigned URL, unsigned ``host`` or ``x-amz-*`` headers),
    ``AuthorizationHeaderMalformed`` / ``AuthorizationQueryParametersError``
    (wrong region, X-Amz-Expires out of range).
    """
    if parsed.scheme == ANONYMOUS:
        payload, sha = _payload_mode(parsed.content_sha256, streaming_signed_ok=False)
        return VerifiedAuth("", ANONYMOUS, payload, sha, None, parsed.security_token)
    if parsed.scheme in (V4_HEADER, V4_QUERY):
        return _verify_v4(
            parsed, secret_key, view, now=now, region=region, max_skew=max_skew_seconds, max_presign=max_presign_seconds
        )
    if parsed.scheme in (V2_HEADER, V2_QUERY):
        return _verify_v2(
            parsed, secret_key, view, now=now, max_skew=max_skew_seconds, max_presign=max_presign_seconds,
            bucket=virtual_host_bucket,
        )  # fmt: skip
    raise errors.AccessDenied(f"Unsupported authentication scheme {parsed.scheme!r}")


def _payload_mode(content_sha256: str | None, *, streaming_signed_ok: bool) -> tuple[str, str | None]:
    if content_sha256 is None or content_sha256 == sigv4.UNSIGNED_PAYLOAD:
        return PAYLOAD_UNSIGNED, None
    mode = _STREAMING_MODES.get(content_sha256)
    if mode is None:
        return PAYLOAD_SIGNED, content_sha256.lower()
    if mode != PAYLOAD_STREAMING_UNSIGNED_TRAILER and not streaming_signed_ok:
        raise errors.InvalidArgument(
            f"{content_sha256} requires a request signed with Signature Version 4",
            ArgumentName="x-amz-content-sha256",
            ArgumentValue=content_sha256,
        )
    return mode, None


def _check_skew(request_time: float, now: float, max_skew: int, shown: str) -> None:
    if abs(now - request_time) > max_skew:
        raise errors.RequestTimeTooSkewed(
            "The difference between the request time and the current time is too large.",
            RequestTime=shown,
            ServerTime=_iso(now),
            MaxAllowedSkewMilliseconds=str(max_skew * 1000),
        )


def _check_signed_headers(view: RequestView, signed: tuple[str, ...]) -> None:
    """``host`` and every ``x-amz-*`` header present must be signed (AWS's HeadersNotSigned)."""
    present = set(signed)
    missing = sorted(
        name
        for name in view.headers
        if (name == "host" or name.startswith("x-amz-")) and name not in present
    )
    if "host" not in present and "host" not in missing:
        missing.insert(0, "host")
    if missing:
        raise errors.AccessDenied(
            "There were headers present in the request which were not signed", HeadersNotSigned=", ".join(missing)
        )


def _verify_v4(
    parsed: ParsedAuth,
    secret_key: str,
    view: RequestView,
    *,
    now: float,
    region: str,
    max_skew: int,
    max_presign: int,
) -> VerifiedAuth:
    credential = parsed.credential
    assert credential is not None and parsed.request_time is not None  # guaranteed by parse_auth
    query_auth = parsed.scheme == V4_QUERY
    if region and credential.region != region:
        detail = f"the region '{credential.region}' is wrong; expecting '{region}'"
        if query_auth:
            raise errors.AuthorizationQueryParametersError(
                f"Error parsing the X-Amz-Credential parameter; {detail}", Region=region
            )
        raise errors.AuthorizationHeaderMalformed(f"The authorization header is malformed; {detail}", Region=region)
    if query_auth:
        expires = parsed.expires if parsed.expires is not None else 0
        if expires < 0:
            raise errors.AuthorizationQueryParametersError("X-Amz-Expires must be non-negative")
        if expires == 0:
            # A URL that expires the moment it is made: refused outright.
            raise errors.AuthorizationQueryParametersError("X-Amz-Expires must be at least one second")
        if expires > max_presign:
            if max_presign == 7 * 24 * 3600:  # AWS's own limit, in AWS's words
                message = ("X-Amz-Expires must be less than a week (in seconds); that is, the given X-Amz-Expires "
                           f"must be less than {max_presign} seconds")
            else:  # lowered by [s3] presigned_url_ttl_seconds
                message = f"X-Amz-Expires must be at most {max_presign} seconds on this server"
            raise errors.AuthorizationQueryParametersError(message)
        if parsed.request_time - now > max_skew:
            raise errors.AccessDenied("Request is not valid yet")
        if now > parsed.request_time + expires:
            expired = errors.AccessDenied("Request has expired")
            expired.fields.update(
                {"X-Amz-Expires": str(expires), "Expires": _iso(parsed.request_time + expires), "ServerTime": _iso(now)}
            )
            raise expired
    else:
        _check_skew(parsed.request_time, now, max_skew, parsed.amz_date)
    _check_signed_headers(view, parsed.signed_headers)

    if query_auth:
        payloads = [parsed.content_sha256 or sigv4.UNSIGNED_PAYLOAD]
    elif parsed.content_sha256 is not None:
        payloads = [parsed.content_sha256]
    else:
        payloads = [sigv4.EMPTY_SHA256, sigv4.UNSIGNED_PAYLOAD]

    key = sigv4.signing_key(secret_key, credential.date, credential.region, credential.service)
    scope = credential.scope
    headers_block = sigv4.canonical_headers(view.headers, parsed.signed_headers)
    first: tuple[str, str] | None = None
    for canonical in _v4_canonical_requests(view, parsed, headers_block, payloads, query_auth):
        to_sign = sigv4.string_to_sign(parsed.amz_date, scope, canonical)
        if first is None:
            first = (canonical, to_sign)
        if hmac.compare_digest(sigv4.sign_hex(key, to_sign).encode(), parsed.signature.encode()):
            payload_hash = canonical.rsplit("\n", 1)[1]
            payload, sha = _payload_mode(payload_hash, streaming_signed_ok=True)
            streaming = None
            if payload in (PAYLOAD_STREAMING_SIGNED, PAYLOAD_STREAMING_SIGNED_TRAILER):
                streaming = StreamingContext(key, parsed.amz_date, scope, parsed.signature)
            return VerifiedAuth(parsed.access_key, parsed.scheme, payload, sha, streaming, parsed.security_token)
    assert first is not None
    raise errors.SignatureDoesNotMatch(
        AWSAccessKeyId=parsed.access_key,
        StringToSign=first[1],
        SignatureProvided=parsed.signature,
        CanonicalRequest=first[0],
    )


def _v4_canonical_requests(
    view: RequestView, parsed: ParsedAuth, headers_block: str, payloads: list[str], query_auth: bool
) -> Iterator[str]:
    """Distinct canonical requests a correct client may have signed, most likely first.

    Lazy, so a request that verifies on the first try pays for one.
    """
    method = view.method.upper()
    exclude = frozenset({"X-Amz-Signature"}) if query_auth else frozenset()
    queries = [
        sigv4.canonical_query(sigv4.parse_query(view.raw_query), exclude=frozenset(n.encode() for n in exclude))
    ]
    raw_checked = False
    seen: set[str] = set()
    for payload in payloads:
        for uri in sigv4.canonical_uri_candidates(view.raw_path):
            for index in (0, 1):
                if index == 1 and not raw_checked:
                    raw_checked = True
                    raw = sigv4.raw_sorted_query(view.raw_query, exclude=exclude)
                    if raw != queries[0]:
                        queries.append(raw)
                if index == len(queries):
                    break
                canonical = sigv4.canonical_request(
                    method, uri, queries[index], headers_block, parsed.signed_headers, payload
                )
                if canonical not in seen:
                    seen.add(canonical)
                    yield canonical


def _verify_v2(
    parsed: ParsedAuth, secret_key: str, view: RequestView, *, now: float, max_skew: int, max_presign: int,
    bucket: str | None,
) -> VerifiedAuth:
    if parsed.scheme == V2_QUERY:
        assert parsed.expires is not None
        if now > parsed.expires:
            raise errors.AccessDenied(
                "Request has expired", Expires=_iso(parsed.expires), ServerTime=_iso(now)
            )
        if parsed.expires - now > max_presign:
            # SigV2 names an end, not a lifetime: one further ahead than the
            # longest lifetime allowed (``presigned_url_ttl_seconds``) cannot
            # have been made within it.
            raise errors.AuthorizationQueryParametersError(
                f"Expires must be at most {max_presign} seconds ahead of the server's time",
                Expires=_iso(parsed.expires), ServerTime=_iso(now),
            )  # fmt: skip
    else:
        assert parsed.request_time is not None
        shown = view.header("x-amz-date") or view.header("date") or ""
        _check_skew(parsed.request_time, now, max_skew, shown)
    payload, sha = _payload_mode(parsed.content_sha256, streaming_signed_ok=False)

    amz: dict[str, list[str]] = {name: list(values) for name, values in view.headers.items() if name.startswith("x-amz-")}
    if parsed.scheme == V2_QUERY:
        # botocore's HmacV1QueryAuth moves signed x-amz-* headers into the query.
        for name, value in sigv4.decoded_query(view.raw_query):
            lname = name.lower()
            if lname.startswith("x-amz-") and lname not in amz:
                amz[lname] = [value]
    content_md5 = ",".join(v.strip(" \t") for v in view.headers.get("content-md5", ()))
    content_type = ",".join(v.strip(" \t") for v in view.headers.get("content-type", ()))
    first: str | None = None
    for candidate in sigv2.strings_to_sign(
        method=view.method.upper(),
        content_md5=content_md5,
        content_type=content_type,
        date_candidates=parsed.v2_dates,
        amz_headers=amz,
        raw_path=view.raw_path,
        raw_query=view.raw_query,
        bucket_prefix=f"/{bucket}" if bucket else "",
    ):
        if first is None:
            first = candidate
        if hmac.compare_digest(sigv2.sign(secret_key, candidate).encode(), sigv4.wire_bytes(parsed.signature)):
            return VerifiedAuth(parsed.access_key, parsed.scheme, payload, sha, None, parsed.security_token)
    raise errors.SignatureDoesNotMatch(
        AWSAccessKeyId=parsed.access_key, StringToSign=first or "", SignatureProvided=parsed.signature
    )

"""The pieces of AWS Signature Version 4 as S3 uses it.

Pure functions over strings and bytes: canonical URI, canonical query,
canonical headers, string to sign, signing key, and the chunk/trailer strings
of streaming uploads.  :mod:`lightningstor.auth.request` puts them together
to verify a request; :mod:`lightningstor.auth.presign` uses them to sign one.

How the wire form becomes canonical
-----------------------------------
S3 does not normalise paths (no ``.``/``..`` or ``//`` removal) and does not
double-encode them.  Every mainstream client (botocore, the Go/Java/JS SDKs,
minio-go) sends the path already encoded with AWS's unreserved set
(``A-Za-z0-9-_.~`` plus ``/``) and signs exactly that.  The server therefore
decodes the path and re-encodes it the same way, which also accepts clients
that send some characters raw (a space, ``!``, non-ASCII bytes) or escape with
lower-case hex.  An escaped slash (``%2F``) stays escaped: it decodes to the same
key either way, but a client that sent it most likely signed it.

Query strings are decoded the way S3 reads them (``+`` is a space, as in
MinIO and AWS) and re-encoded pair by pair, sorted by encoded name then value.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_from_bytes, unquote_to_bytes

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
SERVICE = "s3"

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
CHUNK_ALGORITHM = "AWS4-HMAC-SHA256-PAYLOAD"
TRAILER_ALGORITHM = "AWS4-HMAC-SHA256-TRAILER"

#: Every literal value of x-amz-content-sha256 we accept besides 64 hex digits.
CONTENT_SHA256_LITERALS = frozenset(
    {UNSIGNED_PAYLOAD, STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER}
)

_ESCAPED_SLASH = re.compile(rb"%2[fF]")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
# ASCII digits only: without re.ASCII, \d also matches other scripts' digits
# ("\u0662\u0660..."), which int() then reads as a valid date.
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z", re.ASCII)
# Already canonical: only unreserved characters and '/', nothing to re-encode.
_CANONICAL_PATH = re.compile(r"[A-Za-z0-9\-_.~/]*")
_SIGNED_HEADERS = re.compile(r"[^;\s:,]+(?:;[^;\s:,]+)*")
# AWS's unreserved set (bytes that encode to themselves) and '/'.
_UNRESERVED_OR_SLASH = re.compile(rb"[A-Za-z0-9\-_.~/]*")


def uri_encode(data: bytes, *, keep_slash: bool = False) -> str:
    """Percent-encode ``data`` with AWS's unreserved set (upper-case hex).

    ``keep_slash`` leaves ``/`` alone, as in the canonical URI.  (Python's
    ``quote`` has exactly AWS's unreserved set, ``A-Za-z0-9-_.~``, and a fast
    path for strings that need no escaping.)  Most names and values of a
    signed query need none; the regex check spares them ``quote``'s own
    type checks and safe-set lookups.
    """
    if _UNRESERVED_OR_SLASH.fullmatch(data):
        # Also the credential of every presigned URL (``AKID/date/region/
        # s3/aws4_request``): ``quote`` would escape it a byte at a time.
        text = data.decode("ascii")
        return text if keep_slash else text.replace("/", "%2F")
    return quote_from_bytes(data, safe="/" if keep_slash else "")


def wire_bytes(text: str) -> bytes:
    """The bytes a wire string stands for.

    The S3 layer hands us paths and queries as the latin-1 decoding of the raw
    bytes (as Twisted exposes them), so latin-1 gives the bytes back exactly.
    A string holding characters beyond U+00FF cannot have come from that and is
    taken as text, in UTF-8.
    """
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


def canonical_uri(raw_path: str, *, keep_encoded_slash: bool = True) -> str:
    """The canonical URI of a raw (still percent-encoded) request path.

    Decodes every escape and re-encodes with the unreserved set, keeping ``/``
    (and, by default, escaped slashes as ``%2F``).  A ``%`` not followed by two
    hex digits is a literal ``%``, as ``urllib.parse.unquote`` reads it, so the
    verifier and the code that turns the path into a key agree.  An empty path
    is ``/``.
    """
    if not raw_path:
        return "/"
    if _CANONICAL_PATH.fullmatch(raw_path):
        return raw_path
    raw = wire_bytes(raw_path)
    segments = _ESCAPED_SLASH.split(raw) if keep_encoded_slash else [raw]
    return "%2F".join(uri_encode(unquote_to_bytes(segment), keep_slash=True) for segment in segments)


def canonical_uri_candidates(raw_path: str) -> Iterator[str]:
    """Canonical URIs a well-meaning client may have signed for ``raw_path``, best first.

    All of them decode to the same key, so accepting any of them cannot let a
    signature for one object authorise another: the primary form (escaped
    slashes kept), the form with escaped slashes decoded, and the raw path
    itself for clients that sign exactly what they send (lower-case hex escapes,
    unescaped sub-delimiters).  Lazy: the fallbacks cost nothing unless the
    primary form fails.
    """
    primary = canonical_uri(raw_path)
    yield primary
    seen = {primary}
    if "%" in raw_path:
        decoded_slash = canonical_uri(raw_path, keep_encoded_slash=False)
        if decoded_slash not in seen:
            seen.add(decoded_slash)
            yield decoded_slash
    raw = raw_path or "/"
    if raw not in seen and raw.isascii():
        yield raw


def parse_query(raw_query: str) -> list[tuple[bytes, bytes]]:
    """Decode a raw query string into (name, value) byte pairs, in wire order.

    ``+`` decodes to a space (S3's reading); a parameter without ``=`` has an
    empty value; empty segments (``a&&b``) are skipped.
    """
    if not raw_query:
        return []
    return list(_parse_query(raw_query))


@functools.lru_cache(maxsize=64)
def _parse_query(raw_query: str) -> tuple[tuple[bytes, bytes], ...]:
    """:func:`parse_query`, remembered for a few queries: verifying one
    request decodes its query twice (classifying the credentials, then the
    canonical query), and a presigned query is mostly escaped credential
    and signature.  The result depends on the string alone."""
    pairs = []
    for segment in wire_bytes(raw_query).split(b"&"):
        if not segment:
            continue
        name, _, value = segment.partition(b"=")
        pairs.append((_unescape(name), _unescape(value)))
    return tuple(pairs)


def _unescape(part: bytes) -> bytes:
    """One query name or value decoded: ``+`` is a space, ``%XX`` a byte."""
    if b"%" in part:
        return unquote_to_bytes(part.replace(b"+", b" "))
    return part.replace(b"+", b" ") if b"+" in part else part


def decoded_query(raw_query: str) -> list[tuple[str, str]]:
    """:func:`parse_query` as text (UTF-8, undecodable bytes replaced)."""
    return list(_decoded_query(raw_query)) if raw_query else []


@functools.lru_cache(maxsize=64)
def _decoded_query(raw_query: str) -> tuple[tuple[str, str], ...]:
    """:func:`decoded_query`, remembered like :func:`_parse_query`: the S3
    layer reads the request's parameters from it, then the credential
    parsing reads it again."""
    return tuple(
        (name.decode("utf-8", "replace"), value.decode("utf-8", "replace")) for name, value in _parse_query(raw_query)
    )


def canonical_query(pairs: list[tuple[bytes, bytes]], *, exclude: frozenset[bytes] = frozenset()) -> str:
    """The canonical query string of decoded pairs, minus the names in ``exclude``."""
    encoded = sorted((uri_encode(name), uri_encode(value)) for name, value in pairs if name not in exclude)
    return "&".join(f"{name}={value}" for name, value in encoded)


def raw_sorted_query(raw_query: str, *, exclude: frozenset[str] = frozenset()) -> str:
    """The query as botocore canonicalises a URL it was given: raw pairs, sorted.

    Only a fallback for clients that sign the wire form of their query as-is;
    it compares the exact bytes that were sent, so it cannot widen what a
    signature covers.
    """
    pairs = []
    for segment in raw_query.split("&"):
        if not segment:
            continue
        name, _, value = segment.partition("=")
        if name not in exclude:
            pairs.append((name, value))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


# ASCII whitespace only: header values are the wire bytes decoded as
# latin-1, where str.split() would also split at 0x85 and 0xA0, which are
# continuation bytes of UTF-8 characters (the "à" of x-amz-meta-note: voilà).
_ASCII_SPACES = re.compile(r"[ \t\n\r\f\v]+")


def canonical_header_value(values: Sequence[str]) -> str:
    """Trim each value, collapse inner whitespace runs, join repeats with ``,``
    (AWS's Trimall: spaces, not the bytes of UTF-8 text)."""
    return ",".join(
        " ".join(value.split()) if value.isascii() else _ASCII_SPACES.sub(" ", value).strip(" ")
        for value in values
    )


def canonical_headers(headers: Mapping[str, Sequence[str]], signed_headers: tuple[str, ...]) -> str:
    """``name:value\\n`` for each signed header (absent headers give an empty value)."""
    return "".join(f"{name}:{canonical_header_value(headers.get(name, ()))}\n" for name in signed_headers)


def canonical_request(
    method: str,
    uri: str,
    query: str,
    headers_block: str,
    signed_headers: tuple[str, ...],
    payload_hash: str,
) -> str:
    """Join the six parts of a canonical request (``headers_block`` ends in a newline)."""
    return "\n".join((method, uri, query, headers_block, ";".join(signed_headers), payload_hash))


def scope_string(date: str, region: str, service: str = SERVICE) -> str:
    """``yyyymmdd/region/service/aws4_request``."""
    return f"{date}/{region}/{service}/{TERMINATOR}"


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    """The string to sign of a request, from its canonical request."""
    digest = hashlib.sha256(wire_bytes(canonical)).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


@functools.lru_cache(maxsize=1024)
def signing_key(secret_key: str, date: str, region: str, service: str = SERVICE) -> bytes:
    """The derived signing key; cached because the four HMACs cost more than the signature.

    The cache holds secrets in process memory only, never logs them, and is
    keyed on the secret itself so a rotated secret can never hit a stale key.
    """
    key = hmac.digest(f"AWS4{secret_key}".encode(), date.encode(), "sha256")
    for part in (region, service, TERMINATOR):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


@functools.lru_cache(maxsize=1024)
def _hmac_pads(key: bytes) -> tuple[Any, Any]:
    """SHA-256 states with HMAC's inner and outer key pads already hashed.

    A signing key signs many strings (every request of a client on one day,
    every chunk of a streamed upload), so the two pad blocks are hashed once
    per key instead of per signature.  Bounded like :func:`signing_key`, and
    holding nothing more secret than it does.
    """
    block = key if len(key) <= 64 else hashlib.sha256(key).digest()
    block = block.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
    return inner, outer


def sign_hex(key: bytes, message: str) -> str:
    """Hex HMAC-SHA256 of ``message`` under ``key`` (RFC 2104).

    Not ``hmac.digest``: its one-shot C implementation releases the GIL for
    every call, however small the message, so on the reactor thread each
    signature check gave the turn away to a waiting pool thread.  Copying
    the pre-hashed pads (:func:`_hmac_pads`) is also cheaper, and hashlib
    keeps the GIL for small inputs.
    """
    inner_pad, outer_pad = _hmac_pads(key)
    inner = inner_pad.copy()
    inner.update(wire_bytes(message))
    outer = outer_pad.copy()
    outer.update(inner.digest())
    return outer.hexdigest()


def chunk_string_to_sign(amz_date: str, scope: str, previous_signature: str, chunk_sha256: str) -> str:
    """String to sign of one aws-chunked chunk (AWS "Transferring Payload in Multiple Chunks")."""
    return f"{CHUNK_ALGORITHM}\n{amz_date}\n{scope}\n{previous_signature}\n{EMPTY_SHA256}\n{chunk_sha256}"


def trailer_string_to_sign(amz_date: str, scope: str, previous_signature: str, trailer_sha256: str) -> str:
    """String to sign of the trailer section; ``trailer_sha256`` hashes ``name:value\\n`` lines."""
    return f"{TRAILER_ALGORITHM}\n{amz_date}\n{scope}\n{previous_signature}\n{trailer_sha256}"


def is_hex64(value: str) -> bool:
    """True for exactly 64 hex digits (a SHA-256 or a SigV4 signature)."""
    return _HEX64.fullmatch(value) is not None


def is_amz_date(value: str) -> bool:
    """True for the ISO 8601 basic form ``yyyymmddThhmmssZ`` (not a calendar check)."""
    return _AMZ_DATE.fullmatch(value) is not None


# Not frozen, for speed (why: above RequestView in auth/request.py).  Treat as read-only.
@dataclass(slots=True)
class Credential:
    """The parts of ``AKID/yyyymmdd/region/service/aws4_request``."""

    access_key: str
    date: str
    region: str
    service: str
    terminator: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{self.terminator}"


def split_credential(value: str) -> Credential | None:
    """Split a credential; the access key may itself contain ``/`` (MinIO allows it).

    Returns ``None`` when there are too few parts; the caller chooses the error.
    """
    parts = value.rsplit("/", 4)
    if len(parts) != 5 or not parts[0]:
        return None
    return Credential(*parts)


@dataclass(frozen=True)
class AuthorizationFields:
    """The three components of a SigV4 ``Authorization`` header."""

    credential: str
    signed_headers: str
    signature: str


class MalformedAuthorization(ValueError):
    """Raised by :func:`split_authorization`; the message is safe to show a client."""


def split_authorization(value: str) -> AuthorizationFields:
    """Parse ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...``.

    Tolerant the way AWS is: components in any order, separated by commas with
    or without spaces.  Strict otherwise: each component exactly once, nothing
    unknown.
    """
    scheme, _, rest = value.strip().partition(" ")
    if scheme != ALGORITHM:
        raise MalformedAuthorization(f"the authorization header is malformed; unsupported algorithm {scheme!r}")
    fields: dict[str, str] = {}
    for component in rest.split(","):
        component = component.strip()
        if not component:
            continue
        name, sep, val = component.partition("=")
        name = name.strip()
        if not sep or name not in ("Credential", "SignedHeaders", "Signature"):
            raise MalformedAuthorization(f"the authorization header is malformed; unexpected component {name!r}")
        if name in fields:
            raise MalformedAuthorization(f"the authorization header is malformed; duplicate component {name}")
        fields[name] = val.strip()
    for required in ("Credential", "SignedHeaders", "Signature"):
        if not fields.get(required):
            raise MalformedAuthorization(f"the authorization header is malformed; missing {required}")
    return AuthorizationFields(fields["Credential"], fields["SignedHeaders"], fields["Signature"])


def split_signed_headers(value: str) -> tuple[str, ...] | None:
    """Lower-cased, de-duplicated, sorted header names; ``None`` when malformed."""
    if not _SIGNED_HEADERS.fullmatch(value):
        return None
    return tuple(sorted(set(value.lower().split(";"))))

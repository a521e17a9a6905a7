"""Object headers on the wire <-> core values.

Which request headers become stored attributes (Content-Type, the
``SYSTEM_HEADERS``, x-amz-meta-*, checksums, tagging), and which response
headers an object record produces.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from urllib.parse import parse_qsl

from lightningstor import errors
from lightningstor.checksums import ALGORITHMS, is_digest_value
from lightningstor.core.attributes import (
    check_field_value,
    is_header_name,
    validate_storage_class,
    validate_tags,
)
from lightningstor.core.multipart import checksum_type_of
from lightningstor.core.objects import PutAttrs
from lightningstor.core.sse import AES256
from lightningstor.core.types import Bucket, Encryption, ObjectRecord
from lightningstor.core.website import REDIRECT_HEADER, simple_redirect_location
from lightningstor.s3 import ssec
from lightningstor.s3.conditions import write_if_match, write_if_none_match_any
from lightningstor.s3.dates import http_date
from lightningstor.s3.objectlockxml import lock_headers, lock_response_headers

# Stored as sent and returned on GET/HEAD.  Canonical spelling is the key.
SYSTEM_HEADERS = (
    "Content-Encoding",
    "Content-Disposition",
    "Content-Language",
    "Cache-Control",
    "Expires",
    # Sent as a 301 by the website endpoint (handlers/website.py); stored
    # and returned like the others, as AWS does (HeadObject shows it).
    REDIRECT_HEADER,
)
WEBSITE_REDIRECT_HEADER = REDIRECT_HEADER
META_PREFIX = "x-amz-meta-"
# A browser form upload's fields that become object headers, as PutObject's
# request headers (besides x-amz-meta-*): the only fields, with ``acl``,
# ``tagging`` and the signature's, that the upload applies.
FORM_HEADER_FIELDS = frozenset(
    {"content-type", "content-md5", "x-amz-storage-class", "x-amz-server-side-encryption"}
    | {name.lower() for name in SYSTEM_HEADERS}
    | {f"x-amz-checksum-{algorithm}" for algorithm in ALGORITHMS}
)

# response-* query parameters that override a GET's response headers.
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


def checksum_algorithms(headers: Mapping[str, str]) -> tuple[dict[str, str], tuple[str, ...], str | None]:
    """(expected values from x-amz-checksum-* headers, algorithms to compute
    and keep, the algorithm whose value arrives in a trailer or None)."""
    expected = checksum_values(headers)
    trailer = checksum_trailer(headers)
    if expected and trailer:
        # A header value and a trailing one: two checksums, one of which the
        # trailer's verification alone would silently set aside.
        raise errors.InvalidRequest("Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.")
    keep = set(expected)
    sdk_header = "x-amz-sdk-checksum-algorithm" if headers.get("x-amz-sdk-checksum-algorithm") else "x-amz-checksum-algorithm"
    sdk = headers.get(sdk_header)
    if sdk:
        alg = sdk.strip().lower()
        if alg not in ALGORITHMS:
            raise errors.InvalidRequest(f"Checksum algorithm provided is unsupported: {sdk}")
        if (expected or trailer) and alg not in (*expected, trailer):
            # The value sent is another algorithm's: AWS refuses the request
            # (stored, the object would carry two whole-object checksums).
            raise errors.InvalidRequest(f"Value for {sdk_header} header is invalid.")
        keep.add(alg)
    if trailer:
        keep.add(trailer)
    return expected, tuple(sorted(keep)), trailer


def checksum_values(headers: Mapping[str, str], *, complete: bool = False) -> dict[str, str]:
    """The whole-object checksum a request states in its ``x-amz-checksum-*``
    headers: at most one (else InvalidRequest).  PutObject and UploadPart
    check their body against it, and a value that is not a digest of its
    algorithm is InvalidRequest before the body is read.  For
    CompleteMultipartUpload (``complete``) the value is compared with the
    object it makes as sent: a composite one ends in its part count
    (``...-3``), and one that is no digest at all cannot match (BadDigest,
    what ceph/s3-tests expects of a complete)."""
    expected: dict[str, str] = {}
    for algorithm in ALGORITHMS:
        value = headers.get(f"x-amz-checksum-{algorithm}")
        if value is not None:
            value = value.strip()
            expected[algorithm] = value if complete else checksum_value(algorithm, value)
    if len(expected) > 1:
        raise errors.InvalidRequest("Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.")
    return expected


def checksum_value(algorithm: str, value: str, where: str = "header") -> str:
    """``value`` if it is the base64 of a digest of ``algorithm``'s size;
    else InvalidRequest, as AWS answers: for a header before any byte of the
    body is read (it was a BadDigest once the whole body had been stored),
    for a trailer (``where="trailing header"``) as soon as it arrives."""
    if not is_digest_value(algorithm, value):
        raise errors.InvalidRequest(f"Value for x-amz-checksum-{algorithm} {where} is invalid.")
    return value


def checksum_trailer(headers: Mapping[str, str]) -> str | None:
    """The algorithm whose value arrives in a trailer (``x-amz-trailer``), or None."""
    declared = headers.get("x-amz-trailer")
    if not declared:
        return None
    name = declared.strip().lower()
    if not name.startswith("x-amz-checksum-") or name[len("x-amz-checksum-"):] not in ALGORITHMS:
        raise errors.InvalidRequest(f"The value specified in the x-amz-trailer header is not supported: {declared}")
    return name[len("x-amz-checksum-"):]


def parse_tagging_header(value: str) -> dict[str, str]:
    """x-amz-tagging: a URL-encoded query string of tags."""
    tags: dict[str, str] = {}
    for k, v in parse_qsl(value, keep_blank_values=True):
        if k in tags:
            raise errors.InvalidArgument(
                "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters "
                "without tag name duplicates.",
                ArgumentName="x-amz-tagging",
                ArgumentValue=value,
            )
        tags[k] = v
    validate_tags(tags, limit=10)
    return tags


# Headers that ask for something we would silently not do: storing an object
# "encrypted" while it is not is worse than refusing.  (SSE-S3,
# ``x-amz-server-side-encryption: AES256``, is implemented: see sse_request;
# SSE-C, ``x-amz-server-side-encryption-customer-*``, too: s3/ssec.py.)
UNSUPPORTED_WRITE_HEADERS = {
    "x-amz-server-side-encryption-aws-kms-key-id": "Server-side encryption with KMS",
    "x-amz-server-side-encryption-context": "Server-side encryption with KMS",
}

SSE_HEADER = "x-amz-server-side-encryption"
# x-amz-server-side-encryption values AWS knows but this server does not keep.
_SSE_UNSUPPORTED = {"aws:kms": "Server-side encryption with KMS", "aws:kms:dsse": "Dual-layer server-side encryption with KMS"}


def refuse_unsupported(headers: Mapping[str, str]) -> None:
    """501 NotImplemented for write headers whose promise we cannot keep
    (SSE-KMS, DSSE-KMS); 400 for an
    ``x-amz-server-side-encryption`` value AWS does not know either."""
    for name, what in UNSUPPORTED_WRITE_HEADERS.items():
        if name in headers:
            raise errors.NotImplementedS3(f"{what} is not supported by LightningStor ({name})")
    sse_request(headers)


def sse_request(headers: Mapping[str, str]) -> str | None:
    """The SSE-S3 a write asks for: ``AES256``, or None when the header is
    absent (the bucket's default encryption then decides, in the core).

    ``aws:kms`` / ``aws:kms:dsse`` are AWS's but need a KMS: 501
    NotImplemented, never stored unencrypted.  Anything else is AWS's 400
    InvalidArgument naming the header and value.
    """
    value = headers.get(SSE_HEADER)
    if value is None:
        return None
    if value == AES256:
        return AES256
    if value in _SSE_UNSUPPORTED:
        what = _SSE_UNSUPPORTED[value]
        raise errors.NotImplementedS3(f"{what} is not supported by LightningStor ({SSE_HEADER}: {value})")
    raise errors.InvalidArgument(
        "The encryption method specified is not supported", ArgumentName=SSE_HEADER, ArgumentValue=value
    )


def refuse_sse_header(headers: Mapping[str, str]) -> None:
    """AWS's 400 for ``x-amz-server-side-encryption`` on an operation that
    cannot choose encryption (GetObject, HeadObject, UploadPart: an object's
    or upload's encryption is fixed when it is written or created)."""
    value = headers.get(SSE_HEADER)
    if value is not None:
        raise errors.InvalidArgument(
            "x-amz-server-side-encryption header is not supported for this operation.",
            ArgumentName=SSE_HEADER,
            ArgumentValue=value,
        )


def sse_response_headers(encryption: Encryption | None) -> list[tuple[str, str]]:
    """The encryption headers every response that describes an object or
    upload carries, as on AWS: ``x-amz-server-side-encryption: AES256`` for
    SSE-S3; for SSE-C, instead, the customer algorithm and key MD5."""
    if encryption is None:
        return []
    if encryption.customer is not None:
        return ssec.response_headers(encryption)
    return [(SSE_HEADER, AES256)]


def put_attrs(headers: Mapping[str, str], *, max_metadata_bytes: int) -> PutAttrs:
    """PutAttrs from PutObject-style request headers (lower-case names).

    The values that are stored and sent back as response headers are
    checked for control characters (core/attributes.py): request headers
    with one never get here (s3/framing.py answers 400 first), but
    PostObject's form fields do.
    """
    from lightningstor.core.objects import validate_metadata

    refuse_unsupported(headers)
    attrs = PutAttrs()
    ctype = headers.get("content-type")
    if ctype:
        check_field_value(ctype, "Content-Type", "Content-Type")
        attrs.content_type = ctype
    for name in SYSTEM_HEADERS:
        value = headers.get(name.lower())
        if value is not None:
            check_field_value(value, name, name)
            attrs.system_headers[name] = value
    if WEBSITE_REDIRECT_HEADER in attrs.system_headers:
        check_website_redirect(attrs.system_headers[WEBSITE_REDIRECT_HEADER])
    for name, value in headers.items():
        if name.startswith(META_PREFIX):
            if not is_header_name(name):  # a form field's name may be anything
                raise errors.InvalidArgument(f"{name!r} is not a valid HTTP header name", ArgumentName=name)
            check_field_value(value, name, name)
            attrs.metadata[name[len(META_PREFIX):]] = metadata_text(value)
    validate_metadata(attrs.metadata, max_metadata_bytes)
    attrs.content_md5 = headers.get("content-md5")
    expected, keep, _trailer = checksum_algorithms(headers)
    attrs.expected_checksums = expected
    attrs.store_checksums = keep
    storage_class = headers.get("x-amz-storage-class")
    if storage_class:
        validate_storage_class(storage_class)
        attrs.storage_class = storage_class
    tagging = headers.get("x-amz-tagging")
    if tagging:
        attrs.tags = parse_tagging_header(tagging)
    attrs.if_none_match_any = write_if_none_match_any(headers)
    attrs.if_match = write_if_match(headers)
    lock = lock_headers(headers)
    attrs.lock_mode, attrs.lock_until, attrs.legal_hold = lock.mode, lock.until, lock.legal_hold
    attrs.encryption = sse_request(headers)
    return attrs


def check_website_redirect(location: str) -> None:
    """AWS keeps an object's website redirect only if it is a path on the
    same site or an absolute http(s) URL, at most 2 KB."""
    if not simple_redirect_location(location) or len(location.encode("utf-8")) > 2048:
        raise errors.S3Error(code="InvalidRedirectLocation")


def object_headers(record: ObjectRecord, *, checksum_mode: bool, lock: bool = True) -> list[tuple[str, str]]:
    """Headers describing ``record`` on GET/HEAD (not Content-Length/Range).
    Without ``lock`` (a reader from outside the bucket's scope, let in by a
    policy or an ACL to read the object: AWS asks for the retention and
    legal-hold read permissions besides) the Object Lock headers are left out."""
    out = [
        ("ETag", record.quoted_etag),
        ("Last-Modified", http_date(record.created_at)),
        ("Content-Type", record.content_type),
        ("Accept-Ranges", "bytes"),
    ]
    for name, value in record.system_headers.items():
        out.append((name, value))
    for name, value in record.metadata.items():
        out.append((META_PREFIX + name, metadata_header_value(value)))
    if record.storage_class != "STANDARD":
        out.append(("x-amz-storage-class", record.storage_class))
    if record.version_id is not None:
        out.append(("x-amz-version-id", record.version_id))
    if record.tags:
        out.append(("x-amz-tagging-count", str(len(record.tags))))
    if lock and (record.lock_mode is not None or record.legal_hold is not None):
        out += lock_response_headers(record)
    out += sse_response_headers(record.encryption)
    if checksum_mode and record.checksums:
        for algorithm, value in record.checksums.items():
            out.append((f"x-amz-checksum-{algorithm}", value))
        out.append(("x-amz-checksum-type", checksum_type_of(record.checksums)))
    return out


def metadata_text(value: str) -> str:
    """The text of an ``x-amz-meta-*`` value as the client meant it.

    Request headers reach the handlers decoded as latin-1 (one character per
    wire byte, which SigV4 needs), but SDKs send non-ASCII metadata as UTF-8
    bytes: "é" arrives as "Ã©".  AWS stores the characters ("the sum of the
    number of bytes in the UTF-8 encoding of each key and value" is what the
    2 KiB limit counts), so the bytes are read as UTF-8 when they are valid
    UTF-8.  Anything else (real text from a POST form, raw latin-1 bytes) is
    already its own text.  Records written before this normalisation hold the
    latin-1 form; reading them through here too gives the same text.
    """
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def metadata_header_value(value: str) -> str:
    """A stored metadata value as AWS sends it in a response header.

    AWS: "If the string contains only US-ASCII characters, it is presented
    as is"; otherwise the value is "encoded as per RFC 2047 to make them
    mail-safe before returning" (UsingMetadata.html), as one UTF-8 base64
    encoded-word.  Sending the raw UTF-8 bytes instead is what this replaces:
    HTTP clients read header bytes as latin-1 (botocore gave "Ã©"), and
    strict ones (hyper's ``HeaderValue::to_str``) refuse them as text.
    """
    text = metadata_text(value)
    if text.isascii():
        return text
    return "=?UTF-8?B?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def check_expected_owner(bucket: Bucket, expected: str) -> Bucket:
    """``bucket`` if its tenant is the one the request expects
    (``x-amz-expected-bucket-owner``: an AWS account id, here the org id);
    ``403 AccessDenied`` otherwise, as from AWS.  It guards a client against
    writing into a bucket that changed hands or was never the one meant."""
    if bucket.org_id != expected:
        raise errors.AccessDenied(resource=f"/{bucket.name}")
    return bucket


def declares_length(headers: Mapping[str, str]) -> bool:
    """Whether a request says how long its body is: a Content-Length, or a
    chunked Transfer-Encoding.  Not the length twisted.web reports, which is
    0 for a request with neither: a PUT without either stored (or replaced
    an object with) 0 bytes, and its body was read as the next request."""
    return "content-length" in headers or "chunked" in headers.get("transfer-encoding", "").lower()

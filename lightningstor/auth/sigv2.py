"""The pieces of AWS Signature Version 2 (``AWS AKID:signature``, HMAC-SHA1).

Deprecated by AWS but still what s3cmd (``signature_v2 = True``), old backup
tools and many presigned links use.  The string to sign is::

    METHOD \\n Content-MD5 \\n Content-Type \\n Date-or-Expires \\n
    CanonicalizedAmzHeaders CanonicalizedResource

Clients disagree on a few details, so the verifier tries a handful of
variants, every one of them computed from the bytes actually received (none
lets a signature cover a request it was not made for):

* the sub-resources named in the resource: AWS's documented list, or the wider
  list botocore and MinIO use (``object-lock``, ``restore``, ``select``...),
  but only a list that names every sub-resource the request carries
  (:data:`SELECTING`), so that no signature covers another operation;
* sub-resource values decoded (AWS, botocore) or as sent (s3cmd);
* the path as sent, or re-encoded canonically;
* with ``x-amz-date`` present, an empty Date line (AWS, s3cmd) or the Date
  header's value (botocore's HmacV1Auth).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
from collections.abc import Iterator, Mapping, Sequence
from urllib.parse import unquote_to_bytes

from lightningstor.auth.sigv4 import canonical_uri, wire_bytes

#: Sub-resources of AWS's SigV2 documentation (plus cors, delete, tagging and
#: the response-* overrides, which AWS also signs).
AWS_SUBRESOURCES = frozenset(
    {
        "acl",
        "cors",
        "delete",
        "lifecycle",
        "location",
        "logging",
        "notification",
        "partNumber",
        "policy",
        "requestPayment",
        "tagging",
        "torrent",
        "uploadId",
        "uploads",
        "versionId",
        "versioning",
        "versions",
        "website",
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
    }
)

#: The wider list of botocore's ``HmacV1Auth`` and MinIO.
WIDE_SUBRESOURCES = AWS_SUBRESOURCES | frozenset(
    {
        "accelerate",
        "analytics",
        "defaultObjectAcl",
        "encryption",
        "inventory",
        "legal-hold",
        "metrics",
        "object-lock",
        "replication",
        "restore",
        "retention",
        "select",
        "select-type",
        "storageClass",
    }
)

#: Every query name that selects an operation or the object it acts on
#: (the S3 layer's sub-resources, s3/operations.py, plus ``versionId`` and
#: ``partNumber``; a unit test keeps the two lists together).  A V2 signature
#: must cover each one present, or a signature made for one operation would
#: also sign another: a DeleteBucket link with ``?publicAccessBlock`` added.
SELECTING = WIDE_SUBRESOURCES | frozenset(
    {"attributes", "intelligent-tiering", "ownershipControls", "policyStatus", "publicAccessBlock"}
)

#: Query parameters that carry V2 query authentication itself.
QUERY_AUTH_PARAMS = frozenset({"AWSAccessKeyId", "Signature", "Expires"})


def sign(secret_key: str, string_to_sign: str) -> str:
    """Base64 HMAC-SHA1 of the string to sign."""
    digest = hmac.new(secret_key.encode("utf-8"), wire_bytes(string_to_sign), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


_SPACES = " \t"


def canonical_amz_headers(amz: Mapping[str, Sequence[str]]) -> str:
    """``name:value\\n`` for each ``x-amz-*`` header, sorted; repeats joined with ``,``.

    ``amz`` maps lower-case names to values; names not starting with
    ``x-amz-`` are ignored.
    """
    lines = []
    for name in sorted(amz):
        if name.startswith("x-amz-"):
            # ASCII spaces only: 0x85 and 0xA0 of these latin-1 strings are
            # bytes of UTF-8 text (sigv4.canonical_header_value).
            value = ",".join(v.strip(_SPACES) for v in amz[name])
            lines.append(f"{name}:{value}\n")
    return "".join(lines)


def _split_raw_query(raw_query: str) -> list[tuple[str, str | None]]:
    """(name, raw value or ``None`` when there was no ``=``), names decoded."""
    pairs: list[tuple[str, str | None]] = []
    for segment in raw_query.split("&"):
        if not segment:
            continue
        name, sep, value = segment.partition("=")
        decoded_name = unquote_to_bytes(wire_bytes(name)).decode("utf-8", "replace")
        pairs.append((decoded_name, value if sep else None))
    return pairs


def canonical_resource(
    path: str, raw_query: str, *, subresources: frozenset[str], decode_values: bool
) -> str | None:
    """``path`` plus ``?`` and the sub-resources of the query, sorted by name.

    ``decode_values`` percent-decodes values as AWS specifies; otherwise they
    are used as sent.  A sub-resource sent without ``=`` appears bare.

    ``None`` when a decoded value would read as more sub-resources
    (``partNumber=1%26uploadId%3DU`` decodes to ``partNumber=1&uploadId=U``):
    that resource is also the one signed for a request that *has* the
    second sub-resource, so the signature of an UploadPart would cover a
    PutObject of the whole key.  A decoded ``&`` followed by anything else
    (a file name in ``response-content-disposition``) stays.
    """
    chosen: list[tuple[str, str | None]] = []
    for name, value in _split_raw_query(raw_query):
        if name not in subresources:
            continue
        if value is not None and decode_values:
            value = unquote_to_bytes(wire_bytes(value)).decode("latin-1")
            if any(piece.partition("=")[0] in SELECTING for piece in value.split("&")[1:]):
                return None
        chosen.append((name, value))
    if not chosen:
        return path
    chosen.sort(key=lambda pair: pair[0])
    return path + "?" + "&".join(name if value is None else f"{name}={value}" for name, value in chosen)


def string_to_sign(
    method: str, content_md5: str, content_type: str, date: str, amz_headers: str, resource: str
) -> str:
    """Assemble the V2 string to sign."""
    return f"{method}\n{content_md5}\n{content_type}\n{date}\n{amz_headers}{resource}"


def strings_to_sign(
    *,
    method: str,
    content_md5: str,
    content_type: str,
    date_candidates: Sequence[str],
    amz_headers: Mapping[str, Sequence[str]],
    raw_path: str,
    raw_query: str,
    bucket_prefix: str = "",
) -> Iterator[str]:
    """Every distinct string to sign a client may have used, most likely first."""
    amz = canonical_amz_headers(amz_headers)
    paths = [raw_path or "/"]
    normal = canonical_uri(raw_path)
    if normal not in paths:
        paths.append(normal)
    if not bucket_prefix and len(raw_path) > 1 and raw_path.count("/") == 1:
        # A bucket-level request sent path-style as ``/bucket``: botocore
        # signs ``/bucket/`` (its auth path), which names the same bucket.
        paths.append(raw_path + "/")
    # Only the lists that cover every selecting name the request carries; a
    # name neither list has (no V2 client signs it) must be signed all the
    # same, so the one candidate then includes it.
    present = {name for name, _ in _split_raw_query(raw_query)} & SELECTING
    lists = [names for names in (WIDE_SUBRESOURCES, AWS_SUBRESOURCES) if present <= names]
    if not lists:
        lists = [WIDE_SUBRESOURCES | present]
    seen: set[str] = set()
    for date, path, subresources, decode in itertools.product(date_candidates, paths, lists, (True, False)):
        resource = canonical_resource(
            bucket_prefix + path, raw_query, subresources=subresources, decode_values=decode
        )
        if resource is None:
            continue
        candidate = string_to_sign(method, content_md5, content_type, date, amz, resource)
        if candidate not in seen:
            seen.add(candidate)
            yield candidate


def split_authorization(value: str) -> tuple[str, str] | None:
    """``AWS AKID:signature`` -> (access key, signature); ``None`` when malformed."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme != "AWS":
        return None
    access_key, sep, signature = rest.strip().rpartition(":")
    if not sep or not access_key or not signature:
        return None
    return access_key, signature

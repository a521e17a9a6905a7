"""ListObjects (v1), ListObjectsV2 and ListObjectVersions.

A page of max-keys=0 needs nothing here: the core answers it (empty, not
truncated; :func:`lightningstor.core.listing.asks_nothing`), and the echo
fields (Prefix, Delimiter, MaxKeys, StartAfter, ContinuationToken, ...) come
from the request as for any page.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from twisted.internet.defer import inlineCallbacks

from lightningstor import errors
from lightningstor.digits import clamped_int
from lightningstor.s3 import xmlio

INT32_MAX = 2**31 - 1


def page_limit(query: dict[str, str], name: str, default: int, *, label: str | None = None) -> int:
    """A listing's page size (``max-keys``, ``max-uploads``, ``max-parts``) as AWS parses it.

    Absent or empty is ``default``.  A run of ASCII digits with an optional
    leading ``-`` that fits a signed 32-bit integer is its value; a negative
    one is InvalidArgument "Argument <label> must be an integer between 0 and
    2147483647", anything else (a word, ``+5``, `` 5``, ``1_000``, a number
    beyond 32 bits) InvalidArgument "Provided <name> not an integer or within
    integer range" (AWS's messages; ``int()`` would accept the middle three
    and has no ceiling).  0 is a valid size: the core answers it with an empty
    page that is not truncated (:func:`lightningstor.core.listing.asks_nothing`).
    Values above 1000 are the caller's to cap (the core caps what it lists).
    """
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    negative = raw.startswith("-")
    digits = raw[1:] if negative else raw
    value = clamped_int(digits) if digits.isascii() and digits.isdigit() else None
    if value is None or value > (INT32_MAX + 1 if negative else INT32_MAX):
        raise errors.InvalidArgument(
            f"Provided {name} not an integer or within integer range", ArgumentName=name, ArgumentValue=raw
        )
    if negative and value:
        raise errors.InvalidArgument(
            f"Argument {label or name} must be an integer between 0 and {INT32_MAX}",
            ArgumentName=name,
            ArgumentValue=raw,
        )
    return value


def _encoding(query: dict[str, str]) -> str | None:
    enc = query.get("encoding-type")
    if enc is None or enc == "":
        return None
    if enc.lower() != "url":
        raise errors.InvalidArgument("Invalid Encoding Method specified in Request", ArgumentName="encoding-type", ArgumentValue=enc)
    return "url"


def encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii")


def decode_token(token: str) -> str:
    """The key a continuation token stands for; garbage is InvalidArgument."""
    try:
        key = base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        key = ""
    if not key:
        raise errors.InvalidArgument("The continuation token provided is incorrect", ArgumentName="continuation-token")
    return key


@inlineCallbacks
def list_objects(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    q = call.target.query
    v2 = call.op == "ListObjectsV2"
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter") or None
    max_keys = page_limit(q, "max-keys", 1000, label="maxKeys")
    encoding = _encoding(q)
    token = q.get("continuation-token") if v2 else None
    start_after = q.get("start-after") if v2 else None
    marker = q.get("marker", "") if not v2 else ""
    if v2:
        after = decode_token(token) if token else (start_after or None)
    else:
        after = marker or None
    result = yield api.core.list_objects(bucket, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys)
    next_token = encode_token(result.next_marker) if (v2 and result.is_truncated and result.next_marker) else None
    body = xmlio.list_objects_xml(
        result,
        version=2 if v2 else 1,
        bucket=bucket.name,
        prefix=prefix,
        delimiter=delimiter,
        max_keys=max_keys,
        encoding_type=encoding,
        marker=marker,
        continuation_token=token,
        next_continuation_token=next_token,
        start_after=start_after,
        fetch_owner=q.get("fetch-owner", "").lower() == "true",
    )
    return api.send_xml(call, body)


@inlineCallbacks
def list_object_versions(api: Any, call: Any) -> Any:
    """Every version and delete marker, paged by key-marker + version-id-marker."""
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    q = call.target.query
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter") or None
    max_keys = page_limit(q, "max-keys", 1000, label="maxKeys")
    encoding = _encoding(q)
    key_marker = q.get("key-marker", "")
    version_id_marker = q.get("version-id-marker", "")
    result = yield api.core.list_object_versions(
        bucket,
        prefix=prefix,
        delimiter=delimiter,
        key_marker=key_marker or None,
        version_id_marker=version_id_marker or None,
        max_keys=max_keys,
    )
    body = xmlio.list_object_versions_xml(
        result,
        bucket=bucket.name,
        prefix=prefix,
        delimiter=delimiter,
        max_keys=max_keys,
        encoding_type=encoding,
        key_marker=key_marker,
        version_id_marker=version_id_marker,
        next_version_id_marker=result.next_version_id_marker,
    )
    return api.send_xml(call, body)

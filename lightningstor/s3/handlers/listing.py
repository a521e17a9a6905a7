"""ListObjects (v1), ListObjectsV2 and ListObjectVersions."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks, succeed

from lightningstor import errors
from lightningstor.core.listing import VersionListResult
from lightningstor.core.types import ListResult
from lightningstor.s3 import xmlio


def _max_keys(query: dict[str, str]) -> int:
    raw = query.get("max-keys")
    if raw is None or raw == "":
        return 1000
    try:
        value = int(raw)
    except ValueError:
        raise errors.InvalidArgument("Provided max-keys not an integer or within integer range", ArgumentName="max-keys", ArgumentValue=raw) from None
    if value < 0:
        raise errors.InvalidArgument("Argument maxKeys must be an integer between 0 and 2147483647", ArgumentName="max-keys", ArgumentValue=raw)
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


def _list_page(api: Any, bucket: Any, *, max_keys: int, **kwargs: Any) -> Deferred[ListResult]:
    """Deferred[ListResult]: one page of the bucket's keys.

    ``max-keys=0`` asks for no keys: AWS answers an empty page that is not
    truncated.  The scan would report a truncated page with nothing to
    continue from (no marker, no continuation token), which a client that
    follows ``IsTruncated`` cannot page through.
    """
    if max_keys == 0:
        return succeed(ListResult([], [], False, None))
    d: Deferred[ListResult] = api.core.list_objects(bucket, max_keys=max_keys, **kwargs)
    return d


@inlineCallbacks
def list_objects(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    q = call.target.query
    v2 = call.op == "ListObjectsV2"
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter") or None
    max_keys = _max_keys(q)
    encoding = _encoding(q)
    token = q.get("continuation-token") if v2 else None
    start_after = q.get("start-after") if v2 else None
    marker = q.get("marker", "") if not v2 else ""
    if v2:
        after = decode_token(token) if token else (start_after or None)
    else:
        after = marker or None
    result = yield _list_page(api, bucket, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys)
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
    max_keys = _max_keys(q)
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
    if max_keys == 0:
        # As ListObjects (see _list_page): an empty page, not truncated.  The
        # core still ran, so a bad version-id-marker is refused as before.
        result = VersionListResult([], [], False, None)
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

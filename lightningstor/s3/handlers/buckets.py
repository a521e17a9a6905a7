"""Bucket operations: create, head, delete, list buckets, location, versioning, tagging.
(ACLs and Object Ownership: handlers/acl.py.)"""

from __future__ import annotations

import base64
from typing import Any

from twisted.internet.defer import inlineCallbacks

from lightningstor import errors
from lightningstor.core.acl import check_ownership
from lightningstor.core.attributes import check_bucket_tags
from lightningstor.core.types import Versioning
from lightningstor.digits import clamped_int
from lightningstor.s3 import xmlio
from lightningstor.s3.handlers.acl import bucket_acl_for_create, checked_grantees
from lightningstor.s3.handlers.listing import decode_token


@inlineCallbacks
def list_buckets(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    query = call.target.query
    limit = _max_buckets(query.get("max-buckets"))
    token = query.get("continuation-token")
    prefix = query.get("prefix")
    yield api.authorize_scope(call, principal)
    buckets = yield api.core.buckets.list(
        principal, name_prefix=prefix or "", after=decode_token(token) if token else ""
    )
    region = query.get("bucket-region")
    if region:
        # AWS: "limits the response to buckets that are located in the
        # specified Region" (one region per server: all of them or none).
        buckets = [b for b in buckets if b.region == region]
    next_token = None
    if limit is not None and len(buckets) > limit:
        buckets = buckets[:limit]
        next_token = base64.urlsafe_b64encode(buckets[-1].name.encode()).decode("ascii")
    body = xmlio.list_buckets_xml(
        principal.principal_id,
        principal.display_name or principal.principal_id,
        [(b.name, b.created_at) for b in buckets],
        continuation_token=next_token,
        prefix=prefix,
        # As AWS: each bucket's region once the request has any parameter.
        regions=[b.region for b in buckets] if _LIST_PARAMETERS & query.keys() else None,
    )
    return api.send_xml(call, body)


_LIST_PARAMETERS = frozenset({"max-buckets", "continuation-token", "prefix", "bucket-region"})


def _max_buckets(value: str | None) -> int | None:
    """ListBuckets' ``max-buckets``: 1..10000 (AWS), None when absent."""
    if value is None:
        return None
    # ASCII digits only, as the object listings' page sizes (``int()`` would
    # take " 2", "+2" and "1_0").
    limit = clamped_int(value) if value.isascii() and value.isdigit() else 0
    if not 1 <= limit <= 10000:
        raise errors.InvalidArgument(
            "max-buckets must be an integer from 1 to 10000", ArgumentName="max-buckets", ArgumentValue=value
        )
    return limit


@inlineCallbacks
def create_bucket(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    body = call.sink.content()
    location = xmlio.parse_create_bucket_configuration(body) if body.strip() else None
    # Object Lock at creation also turns versioning on (core.buckets.create).
    object_lock = call.headers.get("x-amz-bucket-object-lock-enabled", "").strip().lower() == "true"
    ownership = call.headers.get("x-amz-object-ownership")
    if ownership is not None:
        check_ownership(ownership.strip())
    acl = bucket_acl_for_create(api, principal.principal_id, call.headers)
    yield api.authorize_scope(call, principal, bucket=call.bucket)
    yield checked_grantees(api, acl)
    yield api.core.buckets.create(
        principal,
        call.bucket,
        location=location,
        object_lock=object_lock,
        object_ownership=ownership.strip() if ownership is not None else None,
        acl=acl,
    )
    return api.send(call, 200, headers=[("Location", f"/{call.bucket}")], content_type=None)


@inlineCallbacks
def head_bucket(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    return api.send(call, 200, headers=[("x-amz-bucket-region", bucket.region)], content_type=None)


@inlineCallbacks
def delete_bucket(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    yield api.bucket(call, principal)
    yield api.core.buckets.delete(principal, call.bucket)
    return api.send(call, 204, content_type=None)


@inlineCallbacks
def get_bucket_location(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    return api.send_xml(call, xmlio.location_xml(bucket.region))


@inlineCallbacks
def get_bucket_versioning(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    status = None if bucket.versioning is Versioning.DISABLED else bucket.versioning.value
    return api.send_xml(call, xmlio.versioning_xml(status))


@inlineCallbacks
def put_bucket_versioning(api: Any, call: Any) -> Any:
    """Enabled or Suspended; a bucket never goes back to "never versioned"
    (``Disabled`` is not a status S3 accepts: MalformedXML).  MFA delete is
    not supported, so asking for it is NotImplemented, never ignored; so
    are MinIO's ``ExcludedPrefixes`` and ``ExcludeFolders`` (``mc version
    enable --excluded-prefixes``), which S3 does not have."""
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    body = call.sink.content()
    status = xmlio.parse_versioning_configuration(body)
    root = xmlio.parse_xml(body)
    excluded = root.find("ExcludeFolders")
    if root.find("ExcludedPrefixes") is not None or (excluded is not None and (excluded.text or "").strip() != "false"):
        raise errors.NotImplementedS3("Versioning exclusions (ExcludedPrefixes, ExcludeFolders) are not supported")
    mfa = root.find("MfaDelete")
    mfa_status = (mfa.text or "").strip() if mfa is not None else "Disabled"
    if mfa_status not in ("Enabled", "Disabled"):
        raise errors.MalformedXML()
    if mfa_status == "Enabled" or "x-amz-mfa" in call.headers:
        raise errors.NotImplementedS3("MFA delete is not supported")
    yield api.core.set_bucket_versioning(bucket, status)
    return api.send(call, 200, content_type=None)


@inlineCallbacks
def get_bucket_tagging(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    if not bucket.tags:
        raise errors.S3Error(code="NoSuchTagSet", BucketName=bucket.name)
    return api.send_xml(call, xmlio.tagging_xml(bucket.tags))


@inlineCallbacks
def put_bucket_tagging(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    tags = xmlio.parse_tagging(call.sink.content())
    check_bucket_tags(tags)
    yield api.core.set_bucket_tags(bucket, tags)
    return api.send(call, 204, content_type=None)


@inlineCallbacks
def delete_bucket_tagging(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    yield api.core.set_bucket_tags(bucket, {})
    return api.send(call, 204, content_type=None)

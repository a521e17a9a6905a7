"""Bucket operations: create, head, delete, list buckets, location, versioning, tagging."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks

from lightningstor import errors
from lightningstor.core.attributes import check_bucket_tags
from lightningstor.core.types import Versioning
from lightningstor.s3 import xmlio


@inlineCallbacks
def list_buckets(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    yield api.authorize_scope(call, principal)
    buckets = yield api.core.buckets.list(principal)
    body = xmlio.list_buckets_xml(
        principal.principal_id,
        principal.display_name or principal.principal_id,
        [(b.name, b.created_at) for b in buckets],
    )
    return api.send_xml(call, body)


@inlineCallbacks
def create_bucket(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    body = call.sink.content()
    location = xmlio.parse_create_bucket_configuration(body) if body.strip() else None
    if call.headers.get("x-amz-bucket-object-lock-enabled", "").lower() == "true":
        raise errors.NotImplementedS3("Object Lock is not supported")
    yield api.authorize_scope(call, principal, bucket=call.bucket)
    yield api.core.buckets.create(principal, call.bucket, location=location)
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
    not supported, so asking for it is NotImplemented, never ignored."""
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    body = call.sink.content()
    status = xmlio.parse_versioning_configuration(body)
    mfa = xmlio.parse_xml(body).find("MfaDelete")
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


@inlineCallbacks
def get_bucket_acl(api: Any, call: Any) -> Any:
    """Access is decided by the authorizer, not ACLs; clients that read the
    ACL (s3cmd info) get the truthful answer: the owner has full control."""
    principal, _ = yield call.auth.get()
    yield api.bucket(call, principal)
    return api.send_xml(call, xmlio.acl_xml(principal.principal_id, principal.display_name or principal.principal_id))


@inlineCallbacks
def put_acl(api: Any, call: Any) -> Any:
    """Canned ``private`` is what every bucket and object already is; any
    other ACL would be a promise we do not keep, so it is refused."""
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    if call.target.key is not None:
        yield api.core.objects.head(bucket, call.key)
    canned = call.headers.get("x-amz-acl")
    if canned == "private" and not call.sink.content().strip():
        return api.send(call, 200, content_type=None)
    raise errors.NotImplementedS3("ACLs are not supported; access is controlled by the authorizer")

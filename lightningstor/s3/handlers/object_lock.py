"""Object Lock: PutObjectLockConfiguration / GetObjectLockConfiguration on
buckets, PutObjectRetention / GetObjectRetention and PutObjectLegalHold /
GetObjectLegalHold on object versions.

Only the wire format is handled here (:mod:`lightningstor.s3.objectlockxml`);
what may be set, shortened or removed is the core's decision
(:mod:`lightningstor.core.objectlock`), as is refusing to delete a locked
version (:meth:`lightningstor.core.objects.ObjectManager.delete`).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks

from lightningstor import errors
from lightningstor.core.objectlock import missing_configuration
from lightningstor.s3.handlers.objects import check_body_digest
from lightningstor.s3.objectlockxml import (
    bypass_requested,
    legal_hold_xml,
    lock_configuration_xml,
    parse_legal_hold,
    parse_lock_configuration,
    parse_retention,
    retention_xml,
)


@inlineCallbacks
def get_object_lock_configuration(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    if not bucket.object_lock:
        raise errors.S3Error(code="ObjectLockConfigurationNotFoundError", BucketName=bucket.name)
    return api.send_xml(call, lock_configuration_xml(bucket.default_retention))


@inlineCallbacks
def put_object_lock_configuration(api: Any, call: Any) -> Any:
    """AWS requires an integrity check of the body (``Content-MD5`` or an
    ``x-amz-checksum-*`` header), as for the other Object Lock documents;
    boto3 sends one."""
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    body = call.sink.content()
    check_body_digest(call, body)
    rule = parse_lock_configuration(body)
    yield api.core.buckets.set_object_lock(bucket, rule)
    return api.send(call, 200, content_type=None)


@inlineCallbacks
def _locked_version(api: Any, call: Any) -> Any:
    """Deferred[(principal, bucket, record)] of the version a retention or
    legal-hold read names; InvalidRequest for a bucket without Object Lock
    (AWS answers that before looking at the object)."""
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    if not bucket.object_lock:
        raise missing_configuration()
    record = yield api.core.objects.head(bucket, call.key, call.target.query.get("versionId"))
    return principal, bucket, record


@inlineCallbacks
def get_object_retention(api: Any, call: Any) -> Any:
    _principal, _bucket, record = yield _locked_version(api, call)
    if record.lock_mode is None:
        raise errors.S3Error(
            "The specified object does not have a ObjectLock configuration", code="NoSuchObjectLockConfiguration"
        )
    return api.send_xml(call, retention_xml(record))


@inlineCallbacks
def put_object_retention(api: Any, call: Any) -> Any:
    """Set, extend, shorten or remove one version's retention; the core
    decides which of those this caller may do (``bypass`` only if asked for
    and allowed: core.service.Core.may_bypass_governance)."""
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    body = call.sink.content()
    check_body_digest(call, body)
    mode, until = parse_retention(body)
    bypass = False
    if bypass_requested(call.headers):
        bypass = yield api.core.may_bypass_governance(principal, bucket, call.key, call.decisions.append, call)
    yield api.core.objects.set_retention(
        bucket, call.key, call.target.query.get("versionId"), mode, until, bypass_governance=bypass
    )
    return api.send(call, 200, content_type=None)


@inlineCallbacks
def get_object_legal_hold(api: Any, call: Any) -> Any:
    _principal, _bucket, record = yield _locked_version(api, call)
    if record.legal_hold is None:
        raise errors.S3Error(
            "The specified object does not have a ObjectLock configuration", code="NoSuchObjectLockConfiguration"
        )
    return api.send_xml(call, legal_hold_xml(record.legal_hold))


@inlineCallbacks
def put_object_legal_hold(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    body = call.sink.content()
    check_body_digest(call, body)
    on = parse_legal_hold(body)
    yield api.core.objects.set_legal_hold(bucket, call.key, call.target.query.get("versionId"), on)
    return api.send(call, 200, content_type=None)

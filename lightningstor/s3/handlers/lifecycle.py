"""Bucket lifecycle configuration: PutBucketLifecycleConfiguration,
GetBucketLifecycleConfiguration and DeleteBucketLifecycle.

The rules are stored in the bucket record (as the CORS rules are) and
applied by :mod:`lightningstor.core.lifecycle_service`; this module only
translates the wire format.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks

from lightningstor import errors
from lightningstor.s3.handlers.objects import check_body_digest
from lightningstor.s3.lifecyclexml import lifecycle_configuration_xml, parse_lifecycle_configuration


@inlineCallbacks
def get_bucket_lifecycle(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    if not bucket.lifecycle:
        raise errors.S3Error(code="NoSuchLifecycleConfiguration", BucketName=bucket.name)
    return api.send_xml(call, lifecycle_configuration_xml(bucket.lifecycle))


@inlineCallbacks
def put_bucket_lifecycle(api: Any, call: Any) -> Any:
    """AWS requires an integrity check of the body (``Content-MD5`` or an
    ``x-amz-checksum-*`` header), as for PutBucketCors; boto3 sends one."""
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    body = call.sink.content()
    check_body_digest(call, body)
    parsed = parse_lifecycle_configuration(body)
    yield api.core.buckets.set_lifecycle(bucket, parsed.rules, transitions=parsed.transitions)
    return api.send(call, 200, content_type=None)


@inlineCallbacks
def delete_bucket_lifecycle(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    yield api.core.buckets.delete_lifecycle(bucket)
    return api.send(call, 204, content_type=None)

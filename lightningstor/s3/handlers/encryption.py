"""Bucket default encryption: PutBucketEncryption, GetBucketEncryption and
DeleteBucketEncryption (SSE-S3 only).

The configuration is stored in the bucket record (as the lifecycle rules
are); the core applies it to writes that ask for no encryption
(core/sse.py ``sse_applies``).  This module only translates the wire format.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks

from lightningstor import errors
from lightningstor.s3.encryptionxml import encryption_configuration_xml, parse_encryption_configuration
from lightningstor.s3.handlers.objects import check_body_digest


@inlineCallbacks
def get_bucket_encryption(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    if bucket.encryption is None:
        raise errors.S3Error(code="ServerSideEncryptionConfigurationNotFoundError", BucketName=bucket.name)
    return api.send_xml(call, encryption_configuration_xml(bucket.encryption))


@inlineCallbacks
def put_bucket_encryption(api: Any, call: Any) -> Any:
    """AWS requires an integrity check of the body (``Content-MD5`` or an
    ``x-amz-checksum-*`` header), as for PutBucketLifecycleConfiguration."""
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    body = call.sink.content()
    check_body_digest(call, body)
    config = parse_encryption_configuration(body)
    yield api.core.buckets.set_encryption(bucket, config)
    return api.send(call, 200, content_type=None)


@inlineCallbacks
def delete_bucket_encryption(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    yield api.core.buckets.set_encryption(bucket, None)
    return api.send(call, 204, content_type=None)

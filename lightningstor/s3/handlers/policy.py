"""Bucket policies: PutBucketPolicy, GetBucketPolicy, DeleteBucketPolicy and
GetBucketPolicyStatus.

The document is validated by :mod:`lightningstor.core.policy`, stored in
the bucket record as the client sent it (GetBucketPolicy returns it
unchanged, as AWS does) and evaluated by the gate (core/access.py) on every
request to the bucket; this module only translates the wire format.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks

from lightningstor import errors
from lightningstor.core.access import bucket_policy
from lightningstor.core.policy import parse_policy
from lightningstor.s3.xmlio import policy_status_xml


@inlineCallbacks
def get_bucket_policy(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    if not bucket.policy:
        raise errors.NoSuchBucketPolicy(BucketName=bucket.name)
    return api.send(call, 200, bucket.policy.encode("utf-8"), content_type="application/json")


@inlineCallbacks
def put_bucket_policy(api: Any, call: Any) -> Any:
    """204 once stored.  An integrity header is optional here (unlike
    PutBucketCors); one that was sent is checked with the body."""
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    body = call.sink.content()
    if call.headers.get("x-amz-confirm-remove-self-bucket-access", "").lower() == "true":
        raise errors.NotImplementedS3("x-amz-confirm-remove-self-bucket-access is not implemented")
    policy = parse_policy(body, bucket.name)
    if policy.is_public() and api.core.access.public_access_block(bucket).block_public_policy:
        # AWS's answer while BlockPublicPolicy is on (handlers/public_access.py).
        raise errors.AccessDenied(resource=f"/{bucket.name}")
    yield api.core.buckets.set_policy(bucket, policy.text)
    return api.send(call, 204, content_type=None)


@inlineCallbacks
def delete_bucket_policy(api: Any, call: Any) -> Any:
    """204 whether or not the bucket had a policy, as in AWS."""
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    if bucket.policy:
        yield api.core.buckets.set_policy(bucket, "")
    return api.send(call, 204, content_type=None)


@inlineCallbacks
def get_bucket_policy_status(api: Any, call: Any) -> Any:
    """Whether the policy makes the bucket public, by AWS's definition
    (core/policy.py, ``BucketPolicy.is_public``)."""
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    policy = bucket_policy(bucket)
    if policy is None:
        raise errors.NoSuchBucketPolicy(BucketName=bucket.name)
    return api.send_xml(call, policy_status_xml(policy.is_public()))

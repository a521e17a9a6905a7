"""Block Public Access: GetPublicAccessBlock, PutPublicAccessBlock and
DeletePublicAccessBlock.

The settings live in the bucket record and act in four places: PutBucketPolicy
refuses a public policy while ``BlockPublicPolicy`` is set
(handlers/policy.py), the gate lets no caller outside the bucket's scope
in through a public policy while ``RestrictPublicBuckets`` is set
(core/access.py), every write carrying a public ACL is refused while
``BlockPublicAcls`` is set (handlers/acl.py), and public ACL grants count
for nothing while ``IgnorePublicAcls`` is set (core/access.py).  ``[s3] block_public_access`` sets all four on every
bucket, whatever the bucket's own settings say.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks

from lightningstor import errors
from lightningstor.core.types import PublicAccessBlock
from lightningstor.s3 import xmlio


@inlineCallbacks
def get_public_access_block(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    settings = bucket.public_access_block
    if settings is None:
        raise errors.S3Error(code="NoSuchPublicAccessBlockConfiguration", BucketName=bucket.name)
    return api.send_xml(call, xmlio.public_access_block_xml(
        (settings.block_public_acls, settings.ignore_public_acls,
         settings.block_public_policy, settings.restrict_public_buckets)
    ))  # fmt: skip


@inlineCallbacks
def put_public_access_block(api: Any, call: Any) -> Any:
    """200 once stored; an integrity header is optional, checked when sent."""
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    body = call.sink.content()
    settings = PublicAccessBlock(*xmlio.parse_public_access_block(body))
    yield api.core.buckets.set_public_access_block(bucket, settings)
    return api.send(call, 200, content_type=None)


@inlineCallbacks
def delete_public_access_block(api: Any, call: Any) -> Any:
    principal, _ = yield call.auth.get()
    bucket = yield api.bucket(call, principal)
    if bucket.public_access_block is not None:
        yield api.core.buckets.set_public_access_block(bucket, None)
    return api.send(call, 204, content_type=None)

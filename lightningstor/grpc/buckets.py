"""``lightningstor.v1.BucketService``: buckets, their versioning and tags."""

from __future__ import annotations

from typing import Any

import grpc

from lightningstor import errors
from lightningstor.core.access import in_scope
from lightningstor.core.buckets import check_scope
from lightningstor.core.types import Principal, Versioning
from lightningstor.grpc import convert
from lightningstor.grpc.base import Rpc, optional, require, unary
from lightningstor.grpc.gen import lightningstor_pb2 as pb
from lightningstor.grpc.gen import lightningstor_pb2_grpc as pb_grpc

# CreateBucket: UNSPECIFIED and DISABLED both mean "never versioned".
_CREATE_VERSIONING = {
    pb.VERSIONING_STATUS_UNSPECIFIED: Versioning.DISABLED,
    pb.VERSIONING_STATUS_DISABLED: Versioning.DISABLED,
    pb.VERSIONING_STATUS_ENABLED: Versioning.ENABLED,
    pb.VERSIONING_STATUS_SUSPENDED: Versioning.SUSPENDED,
}


def _create_versioning(status: int) -> Versioning:
    """The versioning a new bucket starts with; a status number the enum
    does not define (a newer client's) is refused, never taken for DISABLED."""
    if status not in _CREATE_VERSIONING:
        raise errors.InvalidArgument(f"Unknown versioning status {status}", ArgumentName="versioning.status")
    return _CREATE_VERSIONING[status]  # type: ignore[index]


# PutBucketVersioning: the two states a request can move a bucket to.
_PUT_VERSIONING = {
    pb.VERSIONING_STATUS_ENABLED: Versioning.ENABLED.value,
    pb.VERSIONING_STATUS_SUSPENDED: Versioning.SUSPENDED.value,
}


class BucketServicer(pb_grpc.BucketServiceServicer):
    """Each handler resolves the bucket in the caller's scope through the core."""

    SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BucketService"].full_name  # access log paths

    def __init__(self, rpc: Rpc) -> None:
        self.rpc = rpc

    def _bucket(self, principal: Principal, name: str, field: str = "bucket") -> Any:
        """The bucket, resolved in the caller's scope and authorized for this RPC."""
        return self.rpc.bucket(principal, require(name, field))

    @unary
    def CreateBucket(self, principal: Principal, request: pb.CreateBucketRequest, context: grpc.ServicerContext) -> pb.Bucket:
        name = require(request.name, "name")
        org_id, project_id = request.org_id or None, optional(request, "project_id")
        # Another tenant's scope is refused before the gate asks about the
        # caller's own: the audit record must not show an allowed decision
        # on a scope the request did not name.
        check_scope(principal, org_id, project_id)
        self.rpc.call(self.rpc.gate(principal).scope, name)
        bucket = self.rpc.call(
            self.rpc.core.buckets.create,
            principal,
            name,
            org_id=org_id,
            project_id=project_id,
            versioning=_create_versioning(request.versioning.status),
            tags=dict(request.tags),
            storage_class=convert.storage_class_name(request.storage_class),
        )
        return convert.bucket_message(bucket)

    @unary
    def HeadBucket(self, principal: Principal, request: pb.HeadBucketRequest, context: grpc.ServicerContext) -> pb.HeadBucketResponse:
        bucket = self._bucket(principal, request.name, "name")
        return pb.HeadBucketResponse(bucket=convert.bucket_message(bucket, outsider=not in_scope(principal, bucket)))

    @unary
    def DeleteBucket(self, principal: Principal, request: pb.DeleteBucketRequest, context: grpc.ServicerContext) -> pb.DeleteBucketResponse:
        self._bucket(principal, request.name, "name")
        self.rpc.call(self.rpc.core.buckets.delete, principal, request.name)
        return pb.DeleteBucketResponse()

    @unary
    def ListBuckets(self, principal: Principal, request: pb.ListBucketsRequest, context: grpc.ServicerContext) -> pb.ListBucketsResponse:
        self.rpc.call(self.rpc.gate(principal).scope)
        buckets = self.rpc.call(self.rpc.core.buckets.list, principal)
        owner = pb.Owner(id=principal.principal_id, display_name=principal.display_name or principal.principal_id)
        return pb.ListBucketsResponse(buckets=[convert.bucket_message(b) for b in buckets], owner=owner)

    @unary
    def GetBucketVersioning(self, principal: Principal, request: pb.GetBucketVersioningRequest, context: grpc.ServicerContext) -> pb.VersioningConfig:
        bucket = self._bucket(principal, request.bucket)
        return pb.VersioningConfig(status=convert.VERSIONING_ENUMS[bucket.versioning])

    @unary
    def PutBucketVersioning(self, principal: Principal, request: pb.PutBucketVersioningRequest, context: grpc.ServicerContext) -> pb.VersioningConfig:
        status = _PUT_VERSIONING.get(request.versioning.status)
        if status is None:
            raise errors.InvalidArgument(
                "versioning.status must be ENABLED or SUSPENDED (a bucket never returns to never-versioned)",
                ArgumentName="versioning",
            )
        bucket = self._bucket(principal, request.bucket)
        updated = self.rpc.call(self.rpc.core.set_bucket_versioning, bucket, status)
        return pb.VersioningConfig(status=convert.VERSIONING_ENUMS[updated.versioning])

    @unary
    def GetBucketTagging(self, principal: Principal, request: pb.GetBucketTaggingRequest, context: grpc.ServicerContext) -> pb.BucketTagging:
        bucket = self._bucket(principal, request.bucket)
        return pb.BucketTagging(tags=bucket.tags)

    @unary
    def PutBucketTagging(self, principal: Principal, request: pb.PutBucketTaggingRequest, context: grpc.ServicerContext) -> pb.BucketTagging:
        bucket = self._bucket(principal, request.bucket)
        updated = self.rpc.call(self.rpc.core.set_bucket_tags, bucket, dict(request.tags))
        return pb.BucketTagging(tags=updated.tags)

    @unary
    def DeleteBucketTagging(self, principal: Principal, request: pb.DeleteBucketTaggingRequest, context: grpc.ServicerContext) -> pb.Empty:
        bucket = self._bucket(principal, request.bucket)
        self.rpc.call(self.rpc.core.set_bucket_tags, bucket, {})
        return pb.Empty()

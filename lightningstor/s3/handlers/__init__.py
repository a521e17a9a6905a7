"""S3 operation name -> handler.  Names come from :mod:`lightningstor.s3.operations`.

Operations without an entry are answered by :func:`misc.unsupported`
(501 NotImplemented, or the 404 AWS gives for an absent configuration).
"""

from __future__ import annotations

from typing import Any, Callable

from lightningstor.s3.handlers import (
    attributes,
    buckets,
    cors,
    lifecycle,
    listing,
    multipart,
    objects,
    policy,
    post_object,
    public_access,
)

HANDLERS: dict[str, Callable[[Any, Any], Any]] = {
    "ListBuckets": buckets.list_buckets,
    "CreateBucket": buckets.create_bucket,
    "HeadBucket": buckets.head_bucket,
    "DeleteBucket": buckets.delete_bucket,
    "GetBucketLocation": buckets.get_bucket_location,
    "GetBucketVersioning": buckets.get_bucket_versioning,
    "GetBucketAcl": buckets.get_bucket_acl,
    "PutBucketAcl": buckets.put_acl,
    "PutObjectAcl": buckets.put_acl,
    "ListObjects": listing.list_objects,
    "ListObjectsV2": listing.list_objects,
    "PutObject": objects.put_object,
    "PostObject": post_object.post_object,
    "GetObject": objects.get_object,
    "HeadObject": objects.get_object,
    "DeleteObject": objects.delete_object,
    "DeleteObjects": objects.delete_objects,
    "CopyObject": objects.copy_object,
    "GetObjectAcl": objects.get_object_acl,
    "GetObjectAttributes": attributes.get_object_attributes,
    "GetObjectTagging": objects.get_object_tagging,
    "PutObjectTagging": objects.put_object_tagging,
    "DeleteObjectTagging": objects.delete_object_tagging,
    "PutBucketVersioning": buckets.put_bucket_versioning,
    "ListObjectVersions": listing.list_object_versions,
    "GetBucketTagging": buckets.get_bucket_tagging,
    "PutBucketTagging": buckets.put_bucket_tagging,
    "DeleteBucketTagging": buckets.delete_bucket_tagging,
    "GetBucketCors": cors.get_bucket_cors,
    "PutBucketCors": cors.put_bucket_cors,
    "DeleteBucketCors": cors.delete_bucket_cors,
    "PreflightCors": cors.preflight,
    "GetBucketLifecycleConfiguration": lifecycle.get_bucket_lifecycle,
    "PutBucketLifecycleConfiguration": lifecycle.put_bucket_lifecycle,
    "DeleteBucketLifecycle": lifecycle.delete_bucket_lifecycle,
    "GetBucketPolicy": policy.get_bucket_policy,
    "PutBucketPolicy": policy.put_bucket_policy,
    "DeleteBucketPolicy": policy.delete_bucket_policy,
    "GetBucketPolicyStatus": policy.get_bucket_policy_status,
    "GetPublicAccessBlock": public_access.get_public_access_block,
    "PutPublicAccessBlock": public_access.put_public_access_block,
    "DeletePublicAccessBlock": public_access.delete_public_access_block,
    "CreateMultipartUpload": multipart.create_multipart_upload,
    "UploadPart": multipart.upload_part,
    "UploadPartCopy": multipart.upload_part_copy,
    "CompleteMultipartUpload": multipart.complete_multipart_upload,
    "AbortMultipartUpload": multipart.abort_multipart_upload,
    "ListMultipartUploads": multipart.list_multipart_uploads,
    "ListParts": multipart.list_parts,
}

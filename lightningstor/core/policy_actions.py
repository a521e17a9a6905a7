"""Which AWS action a bucket policy sees for each operation.

Bucket policies name AWS's actions (``s3:GetObject``), which are finer than
LightningStor's own (``lightningstor:objects:get``, core/access.py): reading
a version is ``s3:GetObjectVersion``, changing a bucket's CORS rules is
``s3:PutBucketCORS``.  The names follow AWS's "Actions, resources, and
condition keys for Amazon S3" table; the S3 and gRPC layers share the
operation names, so one table serves both.
"""

from __future__ import annotations

# Operation -> (action, action when the request names a version).
POLICY_ACTIONS: dict[str, tuple[str, str]] = {
    "ListBuckets": ("s3:ListAllMyBuckets", "s3:ListAllMyBuckets"),
    "CreateBucket": ("s3:CreateBucket", "s3:CreateBucket"),
    "HeadBucket": ("s3:ListBucket", "s3:ListBucket"),
    "DeleteBucket": ("s3:DeleteBucket", "s3:DeleteBucket"),
    "GetBucketLocation": ("s3:GetBucketLocation", "s3:GetBucketLocation"),
    "GetBucketNotificationConfiguration": ("s3:GetBucketNotification", "s3:GetBucketNotification"),
    "GetBucketLogging": ("s3:GetBucketLogging", "s3:GetBucketLogging"),
    "GetBucketRequestPayment": ("s3:GetBucketRequestPayment", "s3:GetBucketRequestPayment"),
    "GetBucketAccelerateConfiguration": ("s3:GetAccelerateConfiguration", "s3:GetAccelerateConfiguration"),
    "GetBucketReplication": ("s3:GetReplicationConfiguration", "s3:GetReplicationConfiguration"),
    "GetBucketAcl": ("s3:GetBucketAcl", "s3:GetBucketAcl"),
    "PutBucketAcl": ("s3:PutBucketAcl", "s3:PutBucketAcl"),
    "GetBucketVersioning": ("s3:GetBucketVersioning", "s3:GetBucketVersioning"),
    "PutBucketVersioning": ("s3:PutBucketVersioning", "s3:PutBucketVersioning"),
    "GetBucketTagging": ("s3:GetBucketTagging", "s3:GetBucketTagging"),
    "PutBucketTagging": ("s3:PutBucketTagging", "s3:PutBucketTagging"),
    "DeleteBucketTagging": ("s3:PutBucketTagging", "s3:PutBucketTagging"),
    "GetBucketCors": ("s3:GetBucketCORS", "s3:GetBucketCORS"),
    "PutBucketCors": ("s3:PutBucketCORS", "s3:PutBucketCORS"),
    "DeleteBucketCors": ("s3:PutBucketCORS", "s3:PutBucketCORS"),
    "GetBucketWebsite": ("s3:GetBucketWebsite", "s3:GetBucketWebsite"),
    "PutBucketWebsite": ("s3:PutBucketWebsite", "s3:PutBucketWebsite"),
    "DeleteBucketWebsite": ("s3:DeleteBucketWebsite", "s3:DeleteBucketWebsite"),
    "GetBucketEncryption": ("s3:GetEncryptionConfiguration", "s3:GetEncryptionConfiguration"),
    "PutBucketEncryption": ("s3:PutEncryptionConfiguration", "s3:PutEncryptionConfiguration"),
    "DeleteBucketEncryption": ("s3:PutEncryptionConfiguration", "s3:PutEncryptionConfiguration"),
    "GetBucketLifecycleConfiguration": ("s3:GetLifecycleConfiguration", "s3:GetLifecycleConfiguration"),
    "PutBucketLifecycleConfiguration": ("s3:PutLifecycleConfiguration", "s3:PutLifecycleConfiguration"),
    "DeleteBucketLifecycle": ("s3:PutLifecycleConfiguration", "s3:PutLifecycleConfiguration"),
    "GetBucketPolicy": ("s3:GetBucketPolicy", "s3:GetBucketPolicy"),
    "PutBucketPolicy": ("s3:PutBucketPolicy", "s3:PutBucketPolicy"),
    "DeleteBucketPolicy": ("s3:DeleteBucketPolicy", "s3:DeleteBucketPolicy"),
    "GetBucketPolicyStatus": ("s3:GetBucketPolicyStatus", "s3:GetBucketPolicyStatus"),
    "GetPublicAccessBlock": ("s3:GetBucketPublicAccessBlock", "s3:GetBucketPublicAccessBlock"),
    "PutPublicAccessBlock": ("s3:PutBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock"),
    "DeletePublicAccessBlock": ("s3:PutBucketPublicAccessBlock", "s3:PutBucketPublicAccessBlock"),
    "GetObjectLockConfiguration": ("s3:GetBucketObjectLockConfiguration", "s3:GetBucketObjectLockConfiguration"),
    "PutObjectLockConfiguration": ("s3:PutBucketObjectLockConfiguration", "s3:PutBucketObjectLockConfiguration"),
    "GetBucketOwnershipControls": ("s3:GetBucketOwnershipControls", "s3:GetBucketOwnershipControls"),
    "PutBucketOwnershipControls": ("s3:PutBucketOwnershipControls", "s3:PutBucketOwnershipControls"),
    "DeleteBucketOwnershipControls": ("s3:PutBucketOwnershipControls", "s3:PutBucketOwnershipControls"),
    "ListObjects": ("s3:ListBucket", "s3:ListBucket"),
    "ListObjectsV2": ("s3:ListBucket", "s3:ListBucket"),
    "ListObjectVersions": ("s3:ListBucketVersions", "s3:ListBucketVersions"),
    "ListMultipartUploads": ("s3:ListBucketMultipartUploads", "s3:ListBucketMultipartUploads"),
    "PutObject": ("s3:PutObject", "s3:PutObject"),
    "PostObject": ("s3:PutObject", "s3:PutObject"),
    "CopyObject": ("s3:PutObject", "s3:PutObject"),
    "CreateMultipartUpload": ("s3:PutObject", "s3:PutObject"),
    "UploadPart": ("s3:PutObject", "s3:PutObject"),
    "UploadPartCopy": ("s3:PutObject", "s3:PutObject"),
    "CompleteMultipartUpload": ("s3:PutObject", "s3:PutObject"),
    "AbortMultipartUpload": ("s3:AbortMultipartUpload", "s3:AbortMultipartUpload"),
    "ListParts": ("s3:ListMultipartUploadParts", "s3:ListMultipartUploadParts"),
    "GetObject": ("s3:GetObject", "s3:GetObjectVersion"),
    "HeadObject": ("s3:GetObject", "s3:GetObjectVersion"),
    "GetObjectAttributes": ("s3:GetObjectAttributes", "s3:GetObjectVersionAttributes"),
    "DeleteObject": ("s3:DeleteObject", "s3:DeleteObjectVersion"),
    "DeleteObjects": ("s3:DeleteObject", "s3:DeleteObjectVersion"),
    "GetObjectAcl": ("s3:GetObjectAcl", "s3:GetObjectVersionAcl"),
    "PutObjectAcl": ("s3:PutObjectAcl", "s3:PutObjectVersionAcl"),
    "GetObjectTagging": ("s3:GetObjectTagging", "s3:GetObjectVersionTagging"),
    "PutObjectTagging": ("s3:PutObjectTagging", "s3:PutObjectVersionTagging"),
    "DeleteObjectTagging": ("s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"),
    "RestoreObject": ("s3:RestoreObject", "s3:RestoreObject"),
    "GetObjectRetention": ("s3:GetObjectRetention", "s3:GetObjectRetention"),
    "PutObjectRetention": ("s3:PutObjectRetention", "s3:PutObjectRetention"),
    "GetObjectLegalHold": ("s3:GetObjectLegalHold", "s3:GetObjectLegalHold"),
    "PutObjectLegalHold": ("s3:PutObjectLegalHold", "s3:PutObjectLegalHold"),
    "SelectObjectContent": ("s3:GetObject", "s3:GetObject"),
}

# Reading the source of a copy (CopyObject, UploadPartCopy).
COPY_SOURCE = ("s3:GetObject", "s3:GetObjectVersion")

# What a bucket's owner side may always do, whatever its policy denies: AWS
# lets the account that owns a bucket read, replace and delete its policy,
# so a mistaken Deny cannot lock the bucket for good.
OWNER_ALWAYS = frozenset({"GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy"})


def policy_action(op: str, versioned: bool = False) -> str:
    """The action a policy sees for operation ``op``.  Operations this server
    does not serve (they only ever answer an error) get a name no policy
    lists, which only ``s3:*`` or ``*`` matches."""
    pair = POLICY_ACTIONS.get(op)
    if pair is None:
        return f"s3:{op.rsplit(':', 1)[-1]}"
    return pair[1] if versioned else pair[0]

"""Which S3 operation a request is: (method, level, sub-resource) -> name.

A table, not an if-chain (STYLE.md): the handler map in ``app.py`` is keyed
by the names returned here, and the request class uses the same
classification before the body arrives to decide whether to stream it.
"""

from __future__ import annotations

from lightningstor.s3.addressing import Target

# Query names that select a sub-resource (the rest are plain parameters).
SUBRESOURCES = (
    "accelerate", "acl", "analytics", "attributes", "cors", "delete", "encryption",
    "intelligent-tiering", "inventory", "legal-hold", "lifecycle", "location", "logging",
    "metrics", "notification", "object-lock", "ownershipControls", "policy", "policyStatus",
    "publicAccessBlock", "replication", "requestPayment", "restore", "retention", "select",
    "tagging", "torrent", "uploadId", "uploads", "versioning", "versions", "website",
)  # fmt: skip

_SERVICE = {("GET", None): "ListBuckets"}

_BUCKET = {
    ("PUT", None): "CreateBucket",
    ("HEAD", None): "HeadBucket",
    ("DELETE", None): "DeleteBucket",
    ("GET", None): "ListObjects",
    ("POST", "delete"): "DeleteObjects",
    ("POST", None): "PostObject",  # a browser form upload (handlers/post_object.py)
    ("GET", "location"): "GetBucketLocation",
    ("GET", "acl"): "GetBucketAcl",
    ("PUT", "acl"): "PutBucketAcl",
    ("GET", "versioning"): "GetBucketVersioning",
    ("PUT", "versioning"): "PutBucketVersioning",
    ("GET", "versions"): "ListObjectVersions",
    ("GET", "uploads"): "ListMultipartUploads",
    ("GET", "tagging"): "GetBucketTagging",
    ("PUT", "tagging"): "PutBucketTagging",
    ("DELETE", "tagging"): "DeleteBucketTagging",
    ("GET", "cors"): "GetBucketCors",
    ("PUT", "cors"): "PutBucketCors",
    ("DELETE", "cors"): "DeleteBucketCors",
    ("GET", "website"): "GetBucketWebsite",
    ("PUT", "website"): "PutBucketWebsite",
    ("DELETE", "website"): "DeleteBucketWebsite",
    ("GET", "encryption"): "GetBucketEncryption",
    ("PUT", "encryption"): "PutBucketEncryption",
    ("DELETE", "encryption"): "DeleteBucketEncryption",
    ("GET", "lifecycle"): "GetBucketLifecycleConfiguration",
    ("PUT", "lifecycle"): "PutBucketLifecycleConfiguration",
    ("DELETE", "lifecycle"): "DeleteBucketLifecycle",
    ("GET", "policy"): "GetBucketPolicy",
    ("PUT", "policy"): "PutBucketPolicy",
    ("DELETE", "policy"): "DeleteBucketPolicy",
    ("GET", "policyStatus"): "GetBucketPolicyStatus",
    ("GET", "publicAccessBlock"): "GetPublicAccessBlock",
    ("PUT", "publicAccessBlock"): "PutPublicAccessBlock",
    ("DELETE", "publicAccessBlock"): "DeletePublicAccessBlock",
    ("GET", "object-lock"): "GetObjectLockConfiguration",
    ("PUT", "object-lock"): "PutObjectLockConfiguration",
    ("GET", "ownershipControls"): "GetBucketOwnershipControls",
    ("PUT", "ownershipControls"): "PutBucketOwnershipControls",
    ("DELETE", "ownershipControls"): "DeleteBucketOwnershipControls",
    ("OPTIONS", None): "PreflightCors",
    # Configurations this server never holds: read as absent (handlers/misc.py).
    ("GET", "notification"): "GetBucketNotificationConfiguration",
    ("GET", "logging"): "GetBucketLogging",
    ("GET", "requestPayment"): "GetBucketRequestPayment",
    ("GET", "accelerate"): "GetBucketAccelerateConfiguration",
    ("GET", "replication"): "GetBucketReplication",
}

_OBJECT = {
    ("PUT", None): "PutObject",
    ("GET", None): "GetObject",
    ("HEAD", None): "HeadObject",
    ("DELETE", None): "DeleteObject",
    ("GET", "acl"): "GetObjectAcl",
    ("PUT", "acl"): "PutObjectAcl",
    ("GET", "tagging"): "GetObjectTagging",
    ("PUT", "tagging"): "PutObjectTagging",
    ("DELETE", "tagging"): "DeleteObjectTagging",
    ("POST", "uploads"): "CreateMultipartUpload",
    ("PUT", "uploadId"): "UploadPart",
    ("POST", "uploadId"): "CompleteMultipartUpload",
    ("DELETE", "uploadId"): "AbortMultipartUpload",
    ("GET", "uploadId"): "ListParts",
    ("GET", "attributes"): "GetObjectAttributes",
    ("GET", "retention"): "GetObjectRetention",
    ("PUT", "retention"): "PutObjectRetention",
    ("GET", "legal-hold"): "GetObjectLegalHold",
    ("PUT", "legal-hold"): "PutObjectLegalHold",
    ("POST", "restore"): "RestoreObject",
    ("POST", "select"): "SelectObjectContent",
    ("OPTIONS", None): "PreflightCors",
}

# A browser's CORS preflight ("OPTIONS object"): any OPTIONS request on a
# bucket or an object, whatever its query holds (the preflight of a
# presigned UploadPart carries ``uploadId``).  Never signed, so it is
# answered without credentials (S3Api.begin, handlers/cors.py).
PREFLIGHT = "PreflightCors"
# A request to the static website endpoint (Host: bucket.<website_domain>):
# never authenticated, served by handlers/website.py.
WEBSITE = "Website"

# A browser's form upload: credentials in the body, not the headers, so it
# gets its own sink (S3Api.begin, handlers/post_object.py).
POST_OBJECT = "PostObject"

# Operations whose request body is object data, streamed into chunks as it
# arrives; every other body is small and buffered (bounded).
STREAMING = frozenset({"PutObject", "UploadPart"})


def subresource(target: Target) -> str | None:
    for name in SUBRESOURCES:
        if name in target.query:
            return name
    return None


# The methods an S3 call uses: only these name an unsupported call.  The
# operation is a metric label, and a method is any token a client makes up:
# ``Unsupported:<anything>:acl`` made one series per invented method, without
# credentials and without bound (each kept in memory and in every scrape).
_S3_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "HEAD"})


def classify(method: str, target: Target, has_copy_source: bool = False) -> str:
    """The operation name; ``Unsupported:<METHOD>:<sub>`` for known S3 calls we
    do not serve and ``MethodNotAllowed`` for nonsense."""
    sub = subresource(target)
    if target.bucket is None:
        return _SERVICE.get((method, None), "MethodNotAllowed")
    if target.key is None:
        table = _BUCKET
    else:
        table = _OBJECT
    name = table.get((method, sub))
    if name is None:
        if method == "OPTIONS":
            return PREFLIGHT
        if sub is not None and method in _S3_METHODS:
            return f"Unsupported:{method}:{sub}"
        return "MethodNotAllowed"
    if name == "ListObjects" and target.query.get("list-type") == "2":
        return "ListObjectsV2"
    if name == "PutObject" and has_copy_source:
        return "CopyObject"
    if name == "UploadPart" and has_copy_source:
        return "UploadPartCopy"
    return name

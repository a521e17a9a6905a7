"""The one set of error types every layer shares.

The core raises :class:`S3Error` subclasses carrying an S3 error code; each
protocol layer maps them to its wire form in exactly one place (the S3 layer
to an XML error document plus HTTP status, the gRPC layer to a status code).
Keeping code, status and default message in one table means the S3 layer can
never answer a ``NoSuchKey`` with a 500 because somebody forgot a mapping.
"""

from __future__ import annotations

from typing import ClassVar

# code -> (HTTP status, default message).  The codes of SPEC Appendix A plus
# the standard AWS codes the supported operations need.
ERROR_TABLE: dict[str, tuple[int, str]] = {
    "AccessDenied": (403, "Access Denied"),
    # A CORS preflight no rule allows (AWS's code for it, not AccessDenied).
    "AccessForbidden": (
        403,
        "CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, "
        "request method / Access-Control-Request-Method or Access-Control-Request-Headers are not "
        "whitelisted by the resource's CORS spec.",
    ),
    "BadRequest": (400, "Bad Request"),
    "AccountProblem": (403, "There is a problem with your account."),
    "BadDigest": (400, "The Content-MD5 or checksum you specified did not match what we received."),
    "BucketAlreadyExists": (409, "The requested bucket name is not available."),
    "BucketAlreadyOwnedByYou": (409, "Your previous request to create the named bucket succeeded and you already own it."),
    "BucketNotEmpty": (409, "The bucket you tried to delete is not empty."),
    "EntityTooLarge": (400, "Your proposed upload exceeds the maximum allowed object size."),
    "EntityTooSmall": (400, "Your proposed upload is smaller than the minimum allowed object size."),
    "ExpiredToken": (400, "The provided token has expired."),
    "InvalidToken": (400, "The provided token is malformed or otherwise invalid."),
    "IllegalLocationConstraintException": (400, "The specified location constraint is not valid."),
    "IncompleteBody": (400, "You did not provide the number of bytes specified by the Content-Length HTTP header."),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "InvalidAccessKeyId": (403, "The AWS access key ID you provided does not exist in our records."),
    "InvalidArgument": (400, "Invalid Argument"),
    "InvalidRedirectLocation": (
        400, "The website redirect location must have a prefix of 'http://' or 'https://' or '/'."
    ),
    "InvalidBucketName": (400, "The specified bucket is not valid."),
    "InvalidDigest": (400, "The Content-MD5 you specified is not valid."),
    "InvalidLocationConstraint": (400, "The specified location constraint is not valid."),
    "InvalidObjectState": (403, "The operation is not valid for the current state of the object."),
    "InvalidPart": (400, "One or more of the specified parts could not be found."),
    "InvalidPartOrder": (400, "The list of parts was not in ascending order. Parts must be ordered by part number."),
    # GetObject/HeadObject ?partNumber= past the object's last part.
    "InvalidPartNumber": (416, "The requested partnumber is not satisfiable"),
    "InvalidRange": (416, "The requested range is not satisfiable"),
    "InvalidRequest": (400, "Invalid Request"),
    "InvalidStorageClass": (400, "The storage class you specified is not valid."),
    "InvalidTag": (400, "The tag provided was not a valid tag."),
    "InvalidURI": (400, "Couldn't parse the specified URI."),
    "KeyTooLongError": (400, "Your key is too long."),
    "MalformedXML": (400, "The XML you provided was not well-formed or did not validate against our published schema."),
    "MaxMessageLengthExceeded": (400, "Your request was too big."),
    # PostObject (browser form uploads, lightningstor.s3.handlers.post_object).
    "MalformedPOSTRequest": (400, "The body of your POST request is not well-formed multipart/form-data."),
    "MaxPostPreDataLengthExceeded": (400, "Your POST request fields preceding the upload file were too large."),
    "InvalidPolicyDocument": (400, "The content of the form does not meet the conditions specified in the policy document."),
    "MetadataTooLarge": (400, "Your metadata headers exceed the maximum allowed metadata size."),
    "MethodNotAllowed": (405, "The specified method is not allowed against this resource."),
    "MissingContentLength": (411, "You must provide the Content-Length HTTP header."),
    "MissingSecurityHeader": (400, "Your request is missing a required header."),
    "NoSuchBucket": (404, "The specified bucket does not exist."),
    "NoSuchKey": (404, "The specified key does not exist."),
    "NoSuchTagSet": (404, "The TagSet does not exist."),
    "NoSuchUpload": (404, "The specified multipart upload does not exist."),
    "NoSuchVersion": (404, "The specified version does not exist."),
    "NotImplemented": (501, "A header or query you provided implies functionality that is not implemented."),
    "NotModified": (304, "Not Modified"),
    "PreconditionFailed": (412, "At least one of the preconditions you specified did not hold."),
    "QuotaExceeded": (403, "Storage quota exceeded."),
    "RequestTimeTooSkewed": (403, "The difference between the request time and the server's time is too large."),
    "RequestTimeout": (400, "Your socket connection to the server was not read from or written to within the timeout period."),
    "ServiceUnavailable": (503, "Please reduce your request rate."),
    "SignatureDoesNotMatch": (403, "The request signature we calculated does not match the signature you provided."),
    "SlowDown": (503, "Please reduce your request rate."),
    "XAmzContentSHA256Mismatch": (400, "The provided 'x-amz-content-sha256' header does not match what was computed."),
    # Not an AWS code (AWS never runs out of space): what MinIO and Ceph answer
    # in spirit, HTTP 507, which SDKs do not retry (a full disk stays full).
    "InsufficientStorage": (507, "There is not enough storage space left to store this data."),
    "InvalidEncryptionAlgorithmError": (400, "The encryption request you specified is not valid."),
    "AuthorizationHeaderMalformed": (400, "The authorization header is malformed."),
    "AuthorizationQueryParametersError": (400, "Error parsing the X-Amz-Credential parameter."),
    "UnexpectedContent": (400, "This request does not support content."),
    "InvalidBucketState": (409, "The request is not valid with the current state of the bucket."),
    "NoSuchBucketPolicy": (404, "The bucket policy does not exist"),
    # PutBucketPolicy of a document that does not parse or validate (the
    # message says what, in AWS's words: lightningstor.core.policy).
    "MalformedPolicy": (400, "Policies must be valid JSON and the first byte must be '{'"),
    "NoSuchLifecycleConfiguration": (404, "The lifecycle configuration does not exist."),
    "NoSuchCORSConfiguration": (404, "The CORS configuration does not exist."),
    "NoSuchWebsiteConfiguration": (404, "The specified bucket does not have a website configuration."),
    "ServerSideEncryptionConfigurationNotFoundError": (404, "The server side encryption configuration was not found."),
    "ObjectLockConfigurationNotFoundError": (404, "Object Lock configuration does not exist for this bucket"),
    # GetObjectRetention / GetObjectLegalHold of a version that has none.
    "NoSuchObjectLockConfiguration": (404, "The specified object does not have a ObjectLock configuration"),
    # PutObjectLockConfiguration with a period that is not positive.
    "InvalidRetentionPeriod": (400, "Default retention period must be a positive integer value."),
    "OwnershipControlsNotFoundError": (404, "The bucket ownership controls were not found."),
    # ACLs (core/acl.py, s3/aclxml.py): AWS's codes and messages.
    "MalformedACLError": (400, "The XML you provided was not well-formed or did not validate against our published schema."),
    "AccessControlListNotSupported": (400, "The bucket does not allow ACLs"),
    "InvalidBucketAclWithObjectOwnership": (
        400, "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting"
    ),
    "UnresolvableGrantByEmailAddress": (400, "The email address you provided does not match any account on record."),
    # A metadata change that found the object changed under it (PutObjectAcl
    # racing an overwrite by another owner): the client may retry.
    "OperationAborted": (409, "A conflicting conditional operation is currently in progress against this resource. Please try again."),
    "NoSuchPublicAccessBlockConfiguration": (404, "The public access block configuration was not found."),
    "ReplicationConfigurationNotFoundError": (404, "The replication configuration was not found."),
}


class S3Error(Exception):
    """An error with an S3 error code; the status comes from :data:`ERROR_TABLE`.

    ``headers`` are extra response headers the S3 layer must send with the
    error (for example ``x-amz-delete-marker`` on a 404 for a delete marker),
    ``fields`` extra XML elements of the error document (``Key``,
    ``BucketName``, ``ArgumentName``...).
    """

    code: ClassVar[str] = "InternalError"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        resource: str | None = None,
        headers: dict[str, str] | None = None,
        **fields: str,
    ) -> None:
        if code is not None:
            self.code = code  # type: ignore[misc]
        status, default = ERROR_TABLE[self.code]
        self.status: int = status
        self.message: str = message or default
        self.resource = resource
        self.headers: dict[str, str] = dict(headers or {})
        self.fields: dict[str, str] = dict(fields)
        super().__init__(f"{self.code}: {self.message}")


def _make(code: str) -> type[S3Error]:
    return type(code if code != "NotImplemented" else "NotImplementedS3", (S3Error,), {"code": code})


# One subclass per code so callers can ``raise NoSuchKey(...)`` and tests can
# ``pytest.raises(NoSuchKey)``.  Generated from the table so the two never
# disagree.
AccessDenied = _make("AccessDenied")
AccessForbidden = _make("AccessForbidden")
MalformedPOSTRequest = _make("MalformedPOSTRequest")
MaxPostPreDataLengthExceeded = _make("MaxPostPreDataLengthExceeded")
InvalidPolicyDocument = _make("InvalidPolicyDocument")
MalformedPolicy = _make("MalformedPolicy")
NoSuchBucketPolicy = _make("NoSuchBucketPolicy")
BadRequest = _make("BadRequest")
BadDigest = _make("BadDigest")
BucketAlreadyExists = _make("BucketAlreadyExists")
BucketAlreadyOwnedByYou = _make("BucketAlreadyOwnedByYou")
BucketNotEmpty = _make("BucketNotEmpty")
EntityTooLarge = _make("EntityTooLarge")
EntityTooSmall = _make("EntityTooSmall")
IncompleteBody = _make("IncompleteBody")
InternalError = _make("InternalError")
InvalidAccessKeyId = _make("InvalidAccessKeyId")
InvalidArgument = _make("InvalidArgument")
InvalidBucketName = _make("InvalidBucketName")
InvalidDigest = _make("InvalidDigest")
InvalidPart = _make("InvalidPart")
InvalidPartOrder = _make("InvalidPartOrder")
InvalidPartNumber = _make("InvalidPartNumber")
InvalidRange = _make("InvalidRange")
InvalidRequest = _make("InvalidRequest")
InvalidTag = _make("InvalidTag")
InvalidURI = _make("InvalidURI")
KeyTooLongError = _make("KeyTooLongError")
MalformedXML = _make("MalformedXML")
MetadataTooLarge = _make("MetadataTooLarge")
MethodNotAllowed = _make("MethodNotAllowed")
MissingContentLength = _make("MissingContentLength")
NoSuchBucket = _make("NoSuchBucket")
NoSuchKey = _make("NoSuchKey")
NoSuchUpload = _make("NoSuchUpload")
NoSuchVersion = _make("NoSuchVersion")
NotImplementedS3 = _make("NotImplemented")
NotModified = _make("NotModified")
PreconditionFailed = _make("PreconditionFailed")
QuotaExceeded = _make("QuotaExceeded")
RequestTimeTooSkewed = _make("RequestTimeTooSkewed")
RequestTimeout = _make("RequestTimeout")
ServiceUnavailable = _make("ServiceUnavailable")
SignatureDoesNotMatch = _make("SignatureDoesNotMatch")
SlowDown = _make("SlowDown")
XAmzContentSHA256Mismatch = _make("XAmzContentSHA256Mismatch")
AuthorizationHeaderMalformed = _make("AuthorizationHeaderMalformed")
AuthorizationQueryParametersError = _make("AuthorizationQueryParametersError")
InsufficientStorage = _make("InsufficientStorage")
MalformedACLError = _make("MalformedACLError")
AccessControlListNotSupported = _make("AccessControlListNotSupported")
InvalidBucketAclWithObjectOwnership = _make("InvalidBucketAclWithObjectOwnership")


class StorageError(Exception):
    """A storage backend failed (I/O error, node unreachable).

    Protocol layers answer it with a 503 ``ServiceUnavailable`` (retryable) rather
    than a 500, because SDKs retry 503s with backoff.
    """


class StorageFull(StorageError):
    """The backend has no space left (ENOSPC, or the disk quota, EDQUOT).

    Answered as ``InsufficientStorage`` (507), which clients do not retry:
    space comes back when objects are deleted (after the superseded-chunk
    grace period) or capacity is added, not by asking again at once.
    """


class StorageBelowReserve(StorageFull):
    """Free space on the backend's volume is below ``min_free_bytes``
    (lightningstor/diskspace.py): the chunk write is refused before the disk
    is really full, so deletes still have room.  Answered like StorageFull,
    with a message that says why."""


class ChunkCorrupted(StorageError):
    """A chunk's bytes do not match its recorded checksum: never serve them."""


class ChunkNotFound(StorageError):
    """A chunk that metadata references is missing from the backend."""


class ChunkExists(StorageError):
    """A write of a chunk id that already holds other, intact bytes: chunk
    ids name immutable content, so the stored copy is kept and the write
    refused (a storage node answers ALREADY_EXISTS).  Never a client's
    doing (ids are drawn by the server): answered like any StorageError."""


class MetadataUnavailable(Exception):
    """The metadata store cannot be reached; answered as 503.

    ``not_applied``: the store knows the write was not applied (etcd's
    NOSPACE refusal, checked against the write's marker; a SQLite
    transaction rolled back to its savepoint), so its caller may delete the
    chunks it wrote (``core.objects.may_have_committed``); by default a
    store error leaves the outcome unknown."""

    not_applied = False


class MetadataFull(MetadataUnavailable):
    """The metadata store has no space left to commit (SQLite's disk is
    full); answered as 507 ``InsufficientStorage``, like :class:`StorageFull`."""

    @classmethod
    def refused(cls, message: str) -> MetadataFull:
        """One whose write is known not to have been applied."""
        error = cls(message)
        error.not_applied = True
        return error


class MetadataBelowReserve(MetadataFull):
    """Free space on the metadata database's volume is below
    ``min_free_bytes``: a transaction that would add object data (a small
    object stored inline) is refused; deletes still commit."""


RESERVE_MESSAGE = (
    "The server's free space is below its configured reserve (min_free_bytes): "
    "writes that add data are refused until objects are deleted or capacity is added."
)
"""What clients hear for a refusal by the free-space reserve (the server's
paths and figures go to its log, not to clients)."""


class ConfigError(Exception):
    """A configuration value is missing, unknown or invalid; names the key."""


def below_core(exc: BaseException) -> S3Error | None:
    """The S3 error that answers a failure below the core (a storage backend
    or the metadata store), for both protocol layers; None for anything else
    (a bug: each layer answers InternalError and logs it)."""
    if isinstance(exc, S3Error):
        return exc
    if isinstance(exc, ChunkCorrupted):
        return InternalError("The object's stored data failed its integrity check")
    if isinstance(exc, ChunkNotFound):
        return InternalError("The object's stored data is missing")
    if isinstance(exc, (StorageBelowReserve, MetadataBelowReserve)):
        return InsufficientStorage(RESERVE_MESSAGE)
    if isinstance(exc, (StorageFull, MetadataFull)):
        return InsufficientStorage()
    if isinstance(exc, StorageError):
        return ServiceUnavailable("The storage backend is unavailable")
    if isinstance(exc, MetadataUnavailable):
        return ServiceUnavailable("The metadata store is unavailable")
    return None

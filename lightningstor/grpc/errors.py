"""S3 error codes <-> gRPC status codes: the one mapping of the gRPC layer.

Every code of :data:`lightningstor.errors.ERROR_TABLE` has an entry in
:data:`GRPC_STATUS` (a unit test keeps the two, and the table in
``docs/grpc.md``, in step).  The server sends the status with the S3 code in
trailing metadata, so clients get both the coarse gRPC class and the exact
code (:mod:`lightningstor.client.errors` turns them into typed exceptions).

Choices worth knowing:

* Authentication failures (unknown key, bad or expired token, missing
  token) are ``UNAUTHENTICATED``; a known principal that may not do
  something is ``PERMISSION_DENIED``.
* Client mistakes that S3 answers with 400 are ``INVALID_ARGUMENT``, also
  ``EntityTooLarge``: retrying cannot help (``RESOURCE_EXHAUSTED`` is what
  retry policies treat as "try later"; it is kept for quotas).
* ``PreconditionFailed`` and ``NotModified`` (If-Match / If-None-Match) are
  ``FAILED_PRECONDITION``; the trailing code tells them apart.
* Retryable server conditions (``SlowDown``, ``ServiceUnavailable``, a
  storage backend that is down) are ``UNAVAILABLE``; stored data that fails
  its checksum is ``DATA_LOSS``.
"""

from __future__ import annotations

import grpc

from lightningstor import errors
from lightningstor.grpc.gen import lightningstor_pb2 as pb

# Trailing metadata keys of every error the server sends.
CODE_KEY = "lightningstor-error-code"
DETAIL_KEY = "lightningstor-error-bin"  # a serialized ErrorDetail (-bin: binary metadata)

S = grpc.StatusCode

GRPC_STATUS: dict[str, grpc.StatusCode] = {
    "AccessDenied": S.PERMISSION_DENIED,
    "AccessForbidden": S.PERMISSION_DENIED,  # S3 CORS preflights only
    "BadRequest": S.INVALID_ARGUMENT,  # S3 CORS preflights only
    "AccountProblem": S.PERMISSION_DENIED,
    "BadDigest": S.INVALID_ARGUMENT,
    "BucketAlreadyExists": S.ALREADY_EXISTS,
    "BucketAlreadyOwnedByYou": S.ALREADY_EXISTS,
    "BucketNotEmpty": S.FAILED_PRECONDITION,
    "EntityTooLarge": S.INVALID_ARGUMENT,
    "EntityTooSmall": S.INVALID_ARGUMENT,
    "ExpiredToken": S.UNAUTHENTICATED,
    "IllegalLocationConstraintException": S.INVALID_ARGUMENT,
    "IncompleteBody": S.INVALID_ARGUMENT,
    "InternalError": S.INTERNAL,
    "InvalidAccessKeyId": S.UNAUTHENTICATED,
    "InvalidToken": S.UNAUTHENTICATED,
    "InvalidArgument": S.INVALID_ARGUMENT,
    "InvalidRedirectLocation": S.INVALID_ARGUMENT,
    "InvalidBucketName": S.INVALID_ARGUMENT,
    "InvalidDigest": S.INVALID_ARGUMENT,
    "InvalidLocationConstraint": S.INVALID_ARGUMENT,
    "InvalidObjectState": S.FAILED_PRECONDITION,
    "InvalidPart": S.INVALID_ARGUMENT,
    "InvalidPartOrder": S.INVALID_ARGUMENT,
    "InvalidPartNumber": S.OUT_OF_RANGE,
    "InvalidRange": S.OUT_OF_RANGE,
    "InvalidRequest": S.INVALID_ARGUMENT,
    "InvalidStorageClass": S.INVALID_ARGUMENT,
    "InvalidTag": S.INVALID_ARGUMENT,
    "InvalidURI": S.INVALID_ARGUMENT,
    "KeyTooLongError": S.INVALID_ARGUMENT,
    "MalformedXML": S.INVALID_ARGUMENT,
    "MaxMessageLengthExceeded": S.INVALID_ARGUMENT,
    # S3 PostObject (browser form uploads) only.
    "MalformedPOSTRequest": S.INVALID_ARGUMENT,
    "MaxPostPreDataLengthExceeded": S.INVALID_ARGUMENT,
    "InvalidPolicyDocument": S.INVALID_ARGUMENT,
    "MalformedPolicy": S.INVALID_ARGUMENT,
    "MetadataTooLarge": S.INVALID_ARGUMENT,
    "MethodNotAllowed": S.FAILED_PRECONDITION,
    "MissingContentLength": S.INVALID_ARGUMENT,
    "MissingSecurityHeader": S.UNAUTHENTICATED,
    "NoSuchBucket": S.NOT_FOUND,
    "NoSuchKey": S.NOT_FOUND,
    "NoSuchTagSet": S.NOT_FOUND,
    "NoSuchUpload": S.NOT_FOUND,
    "NoSuchVersion": S.NOT_FOUND,
    "NotImplemented": S.UNIMPLEMENTED,
    "NotModified": S.FAILED_PRECONDITION,
    "PreconditionFailed": S.FAILED_PRECONDITION,
    "QuotaExceeded": S.RESOURCE_EXHAUSTED,
    "InsufficientStorage": S.RESOURCE_EXHAUSTED,
    "RequestTimeTooSkewed": S.UNAUTHENTICATED,
    "RequestTimeout": S.DEADLINE_EXCEEDED,
    "ServiceUnavailable": S.UNAVAILABLE,
    "SignatureDoesNotMatch": S.UNAUTHENTICATED,
    "SlowDown": S.UNAVAILABLE,
    "XAmzContentSHA256Mismatch": S.INVALID_ARGUMENT,
    "InvalidEncryptionAlgorithmError": S.INVALID_ARGUMENT,
    "AuthorizationHeaderMalformed": S.UNAUTHENTICATED,
    "AuthorizationQueryParametersError": S.UNAUTHENTICATED,
    "UnexpectedContent": S.INVALID_ARGUMENT,
    "InvalidBucketState": S.FAILED_PRECONDITION,
    "NoSuchBucketPolicy": S.NOT_FOUND,
    "NoSuchLifecycleConfiguration": S.NOT_FOUND,
    "NoSuchCORSConfiguration": S.NOT_FOUND,
    "NoSuchWebsiteConfiguration": S.NOT_FOUND,
    "ServerSideEncryptionConfigurationNotFoundError": S.NOT_FOUND,
    "ObjectLockConfigurationNotFoundError": S.NOT_FOUND,
    "NoSuchObjectLockConfiguration": S.NOT_FOUND,
    "InvalidRetentionPeriod": S.INVALID_ARGUMENT,
    "OwnershipControlsNotFoundError": S.NOT_FOUND,
    "OperationAborted": S.ABORTED,
    # S3 ACLs only (gRPC has no ACL API).
    "MalformedACLError": S.INVALID_ARGUMENT,
    "AccessControlListNotSupported": S.INVALID_ARGUMENT,
    "InvalidBucketAclWithObjectOwnership": S.INVALID_ARGUMENT,
    "UnresolvableGrantByEmailAddress": S.INVALID_ARGUMENT,
    "NoSuchPublicAccessBlockConfiguration": S.NOT_FOUND,
    "ReplicationConfigurationNotFoundError": S.NOT_FOUND,
}

# A code added to the shared table later still gets a sensible status (its
# HTTP class) until it is given a row above.
_BY_HTTP_STATUS: dict[int, grpc.StatusCode] = {
    304: S.FAILED_PRECONDITION,
    400: S.INVALID_ARGUMENT,
    401: S.UNAUTHENTICATED,
    403: S.PERMISSION_DENIED,
    404: S.NOT_FOUND,
    405: S.FAILED_PRECONDITION,
    409: S.ABORTED,
    411: S.INVALID_ARGUMENT,
    412: S.FAILED_PRECONDITION,
    416: S.OUT_OF_RANGE,
    500: S.INTERNAL,
    501: S.UNIMPLEMENTED,
    503: S.UNAVAILABLE,
}

# Status of an error that came with no S3 code (transport failures, errors
# from a proxy or an older server): the code a client reports for it.
DEFAULT_CODES: dict[grpc.StatusCode, str] = {
    S.UNAUTHENTICATED: "InvalidAccessKeyId",
    S.PERMISSION_DENIED: "AccessDenied",
    S.NOT_FOUND: "NoSuchKey",
    S.INVALID_ARGUMENT: "InvalidArgument",
    S.RESOURCE_EXHAUSTED: "EntityTooLarge",
    S.UNAVAILABLE: "ServiceUnavailable",
    S.DEADLINE_EXCEEDED: "RequestTimeout",
    S.UNIMPLEMENTED: "NotImplemented",
    S.DATA_LOSS: "InternalError",
}


def status_for(code: str) -> grpc.StatusCode:
    """The gRPC status for an S3 error code."""
    status = GRPC_STATUS.get(code)
    if status is not None:
        return status
    http = errors.ERROR_TABLE.get(code, (500, ""))[0]
    return _BY_HTTP_STATUS.get(http, S.INTERNAL if http >= 500 else S.INVALID_ARGUMENT)


def as_s3_error(exc: BaseException) -> tuple[errors.S3Error, grpc.StatusCode]:
    """The S3 error and status to answer ``exc`` with.

    Failures below the core become the errors the S3 layer answers them with
    (a backend or metadata store that is down: ServiceUnavailable), except
    unreadable stored data, which gRPC can name exactly: DATA_LOSS.
    """
    answer = errors.below_core(exc)
    if answer is None:
        return errors.InternalError(), S.INTERNAL
    if isinstance(exc, (errors.ChunkCorrupted, errors.ChunkNotFound)):
        return answer, S.DATA_LOSS
    # An error may name its own status where gRPC has a better one than its
    # S3 code's (a principal over its call cap: SlowDown, RESOURCE_EXHAUSTED).
    override = getattr(exc, "grpc_status", None)
    if isinstance(override, grpc.StatusCode):
        return answer, override
    return answer, status_for(answer.code)


def error_detail(err: errors.S3Error) -> pb.ErrorDetail:
    return pb.ErrorDetail(code=err.code, message=err.message, resource=err.resource or "", fields=err.fields)


def trailing_metadata(err: errors.S3Error) -> tuple[tuple[str, str | bytes], ...]:
    return ((CODE_KEY, err.code), (DETAIL_KEY, error_detail(err).SerializeToString()))

"""Typed exceptions of the client library, carrying the server's S3 error code.

Two levels, so callers catch what they care about::

    try:
        client.head_object("photos", "cat.jpg")
    except errors.NoSuchKey:          # exactly this S3 code
        ...
    except errors.NotFoundError:      # any NOT_FOUND (NoSuchBucket, NoSuchVersion...)
        ...

Every class derives from :class:`LightningStorError` (``.code``: the S3 code,
``.status``: the gRPC status, ``.message``, ``.fields``).  The per-code
classes are generated from the server's mapping table
(:data:`lightningstor.grpc.errors.GRPC_STATUS`), so client and server never
disagree on which status a code has.
"""

from __future__ import annotations

from typing import Any

import grpc

from lightningstor.grpc.errors import CODE_KEY, DEFAULT_CODES, DETAIL_KEY, GRPC_STATUS
from lightningstor.grpc.gen import lightningstor_pb2 as pb


class LightningStorError(Exception):
    """A call failed; ``code`` is the S3 error code (``NoSuchKey``...)."""

    status: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: grpc.StatusCode | None = None,
        resource: str = "",
        fields: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        if status is not None:
            self.status = status
        self.resource = resource
        self.fields = dict(fields or {})


class UnauthenticatedError(LightningStorError):
    status = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(LightningStorError):
    status = grpc.StatusCode.PERMISSION_DENIED


class NotFoundError(LightningStorError):
    status = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(LightningStorError):
    status = grpc.StatusCode.ALREADY_EXISTS


class InvalidArgumentError(LightningStorError):
    status = grpc.StatusCode.INVALID_ARGUMENT


class FailedPreconditionError(LightningStorError):
    status = grpc.StatusCode.FAILED_PRECONDITION


class OutOfRangeError(LightningStorError):
    status = grpc.StatusCode.OUT_OF_RANGE


class ResourceExhaustedError(LightningStorError):
    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnavailableError(LightningStorError):
    status = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(LightningStorError):
    status = grpc.StatusCode.DEADLINE_EXCEEDED


class UnimplementedError(LightningStorError):
    status = grpc.StatusCode.UNIMPLEMENTED


class AbortedError(LightningStorError):
    status = grpc.StatusCode.ABORTED


class CancelledError(LightningStorError):
    status = grpc.StatusCode.CANCELLED


class InternalServerError(LightningStorError):
    status = grpc.StatusCode.INTERNAL


class DataLossError(LightningStorError):
    status = grpc.StatusCode.DATA_LOSS


STATUS_CLASSES: dict[grpc.StatusCode, type[LightningStorError]] = {
    cls.status: cls
    for cls in (
        UnauthenticatedError, PermissionDeniedError, NotFoundError, AlreadyExistsError,
        InvalidArgumentError, FailedPreconditionError, OutOfRangeError, ResourceExhaustedError,
        UnavailableError, DeadlineExceededError, UnimplementedError, AbortedError, CancelledError,
        InternalServerError, DataLossError,
    )
}  # fmt: skip


def _code_class(code: str, status: grpc.StatusCode) -> type[LightningStorError]:
    base = STATUS_CLASSES.get(status, LightningStorError)
    name = "NotImplementedS3" if code == "NotImplemented" else code
    return type(name, (base,), {"__doc__": f"The server answered {code} ({status.name}).", "__module__": __name__})


# One class per S3 code: ``errors.NoSuchKey``, ``errors.BucketNotEmpty``...
CODE_CLASSES: dict[str, type[LightningStorError]] = {
    code: _code_class(code, status) for code, status in GRPC_STATUS.items()
}
globals().update({cls.__name__: cls for cls in CODE_CLASSES.values()})


def __getattr__(name: str) -> Any:  # for type checkers: the generated classes
    raise AttributeError(name)


def _bare_code(status: grpc.StatusCode | None, message: str) -> str:
    """The S3 code for a status that came without one.  A bare
    ``RESOURCE_EXHAUSTED`` is either gRPC's "message larger than max"
    (``EntityTooLarge``) or a refusal by the server's whole-server call limit
    ("Concurrent RPC limit exceeded!"): the second (and anything else) is
    ``SlowDown``, a reason to retry later, not to shrink the request."""
    if status == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return "EntityTooLarge" if "larger than max" in message.lower() else "SlowDown"
    return DEFAULT_CODES.get(status, status.name) if status is not None else "Unknown"


def from_rpc_error(error: grpc.RpcError) -> LightningStorError:
    """The typed exception for a failed call (``grpc.RpcError`` is also a ``grpc.Call``)."""
    call: Any = error
    status = call.code() if hasattr(call, "code") else grpc.StatusCode.UNKNOWN
    message = (call.details() if hasattr(call, "details") else None) or str(status)
    code, resource, fields = "", "", {}
    trailing = call.trailing_metadata() if hasattr(call, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == CODE_KEY:
            code = value.decode() if isinstance(value, bytes) else value
        elif key == DETAIL_KEY and isinstance(value, bytes):
            detail = pb.ErrorDetail.FromString(value)
            code, resource, fields = detail.code or code, detail.resource, dict(detail.fields)
    if not code:
        code = _bare_code(status, message)
        # A bare status has its status class, but the two codes read from a bare
        # RESOURCE_EXHAUSTED's message are caught as ``errors.SlowDown`` and
        # ``errors.EntityTooLarge``, like the server's coded ones.
        if code in ("SlowDown", "EntityTooLarge"):
            cls = CODE_CLASSES[code]
        else:
            cls = STATUS_CLASSES.get(status, LightningStorError)
    else:
        cls = CODE_CLASSES.get(code) or STATUS_CLASSES.get(status, LightningStorError)
    return cls(message, code=code, status=status, resource=resource, fields=fields)

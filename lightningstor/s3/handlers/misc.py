"""Sub-resources we do not serve, answered the way clients can live with.

Reading a configuration that does not exist gets the same 404 AWS sends for
a bucket without one (true: we never have one); changing it gets 501
NotImplemented, never a silent success.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks

from lightningstor import errors

# Operation -> the 404 error code AWS sends for a bucket without the configuration.
_ABSENT = {
    "GetBucketReplication": "ReplicationConfigurationNotFoundError",
}

# Operation -> the document AWS sends for a bucket without the configuration.
_EMPTY_DOCS = {
    "GetBucketLogging": b'<BucketLoggingStatus xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>',
    "GetBucketNotificationConfiguration": b'<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>',
    "GetBucketRequestPayment": b'<RequestPaymentConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Payer>BucketOwner</Payer></RequestPaymentConfiguration>',
    "GetBucketAccelerateConfiguration": b'<AccelerateConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>',
}

# The operations :func:`absent_configuration` answers.
ABSENT_CONFIGURATIONS = frozenset(_ABSENT) | frozenset(_EMPTY_DOCS)


@inlineCallbacks
def absent_configuration(api: Any, call: Any) -> Any:
    """Read a bucket configuration this server never holds: AWS's answer for
    a bucket without one (an empty document, or its 404), after the same
    authorization as any read of the bucket's configuration."""
    principal, _ = yield call.auth.get()
    yield api.bucket(call, principal)
    if call.op in _ABSENT:
        raise errors.S3Error(code=_ABSENT[call.op], BucketName=call.bucket)
    return api.send_xml(call, b'<?xml version="1.0" encoding="UTF-8"?>\n' + _EMPTY_DOCS[call.op])


@inlineCallbacks
def unsupported(api: Any, call: Any) -> Any:
    """Answer an operation that has no handler (auth already checked)."""
    if call.op == "MethodNotAllowed":
        raise errors.MethodNotAllowed(Method=call.method, ResourceType="OBJECT" if call.target.key else "BUCKET")
    sub = call.op.split(":", 2)[2] if call.op.startswith("Unsupported:") else ""
    principal, _ = yield call.auth.get()
    if call.target.bucket is not None:
        yield api.bucket(call, principal)
    what = sub or call.op
    raise errors.NotImplementedS3(f"{call.method} ?{what} is not implemented by LightningStor")

"""Sub-resources we do not serve, answered the way clients can live with.

Reading a configuration that does not exist gets the same 404 AWS sends for
a bucket without one (true: we never have one); changing it gets 501
NotImplemented, never a silent success.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks

from lightningstor import errors

_ABSENT = {
    "replication": "ReplicationConfigurationNotFoundError",
}

_EMPTY_DOCS = {
    "logging": b'<BucketLoggingStatus xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>',
    "notification": b'<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>',
    "requestPayment": b'<RequestPaymentConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Payer>BucketOwner</Payer></RequestPaymentConfiguration>',
    "accelerate": b'<AccelerateConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>',
}


@inlineCallbacks
def unsupported(api: Any, call: Any) -> Any:
    """Answer an operation that has no handler (auth already checked)."""
    if call.op == "MethodNotAllowed":
        raise errors.MethodNotAllowed(Method=call.method, ResourceType="OBJECT" if call.target.key else "BUCKET")
    _, method, sub = call.op.split(":", 2) if call.op.startswith("Unsupported:") else ("", call.method, "")
    principal, _ = yield call.auth.get()
    if call.target.bucket is not None:
        yield api.bucket(call, principal)
    if method == "GET" and call.target.key is None:
        if sub in _ABSENT:
            raise errors.S3Error(code=_ABSENT[sub], BucketName=call.bucket)
        if sub in _EMPTY_DOCS:
            return api.send_xml(call, b'<?xml version="1.0" encoding="UTF-8"?>\n' + _EMPTY_DOCS[sub])
    what = sub or call.op
    raise errors.NotImplementedS3(f"{call.method} ?{what} is not implemented by LightningStor")

"""The access log: one structured event per S3 request, without credentials.

Twisted's own access log (``Site.log``, the combined log format) prints the
whole request URI, which for a presigned URL includes ``X-Amz-Signature``
and the credential, is written only for requests that finished (not for
those whose client went away), and is a flat string.  Instead, the S3 layer
emits one ``twisted.logger`` event per request from its finish hook
(:class:`~lightningstor.s3.summary.RequestSummary`): the text log shows a
combined-log-like line, and the JSON log (``[logging] format = "json"``) gets
every field separately.

The event's namespace is ``lightningstor.access`` so log pipelines can route
access lines apart from the server's own messages.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.logger import Logger, LogLevel

from lightningstor.logs import escape_log_text
from lightningstor.s3.summary import RequestSummary

__all__ = ["ACCESS_FORMAT", "AccessLog", "access_line"]

ACCESS_FORMAT = (
    '{remote} {principal} "{method} {uri}" {status} {bytes_in} {bytes_out} '
    "{duration:.3f}s {request_id} {operation}"
)


def access_line(summary: RequestSummary) -> str:
    """The text of the access event (:data:`ACCESS_FORMAT` applied).

    The URI is escaped (:func:`~lightningstor.logs.escape_log_text`): its
    query parameter names are decoded, so ``?%0A...=1`` would otherwise put
    a line feed, and a forged line after it, into the log.  The event's
    ``uri`` field keeps the text as it is (the JSON log escapes it).  The
    other fields are the server's own or checked already: the method is an
    HTTP token, the principal a known access key id."""
    s = summary
    return (
        f'{s.remote} {s.principal} "{s.method} {escape_log_text(s.uri)}" {s.status} {s.bytes_in} {s.bytes_out} '
        f"{s.duration:.3f}s {s.request_id} {s.operation}"
    )


class AccessLog:
    """Emits the access event; register :meth:`emit` as an S3Api finish hook."""

    def __init__(self, logger: Logger | None = None) -> None:
        self.log = logger or Logger(namespace="lightningstor.access")

    def emit(self, summary: RequestSummary) -> None:
        # The line is formatted here and handed over as a format string with
        # no replacement fields (braces escaped): twisted.logger's
        # string.Formatter would otherwise look up ten fields per request in
        # pure Python, a third of the event's cost.  Our own observers
        # (lightningstor.logs) take the finished line from ``log_text`` and
        # skip the formatter altogether.
        s = summary
        line = access_line(s)
        logger = self.log
        event: dict[str, Any] = {
            "log_text": line,
            "protocol": "s3",  # the gRPC API's events say "grpc" (lightningstor.grpc.accesslog)
            "request_id": s.request_id,
            "principal": s.principal,
            "operation": s.operation,
            "method": s.method,
            "uri": s.uri,
            "bucket": s.bucket,
            "key": s.key,
            "status": s.status,
            "completed": s.completed,
            "error_code": s.error_code,
            "bytes_in": s.bytes_in,
            "bytes_out": s.bytes_out,
            "duration": round(s.duration, 6),
            "remote": s.remote,
        }
        log_format = line.replace("{", "{{").replace("}", "}}")
        if logger.__class__ is not Logger:  # a subclass may log its own way
            logger.info(log_format, **event)
            return
        # What Logger.info(format, **fields) hands its observer, built here:
        # the same event, key for key and in the same order, without
        # Logger.emit's check that ``info`` is a log level (it sorts the
        # five levels on every call).
        event["log_logger"] = logger
        event["log_level"] = LogLevel.info
        event["log_namespace"] = logger.namespace
        event["log_source"] = logger.source
        event["log_format"] = log_format
        event["log_time"] = time.time()
        logger.observer(event)

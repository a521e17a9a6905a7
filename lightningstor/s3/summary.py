"""What one finished S3 request was, for the access log and the metrics.

:class:`~lightningstor.s3.app.S3Api` builds one :class:`RequestSummary`
when a request ends (its ``notifyFinish`` fires: the response was sent or
the connection was lost) and hands it to every finish hook, so each request
is counted and logged exactly once, including requests whose client went
away.

Nothing here may carry a credential: the URI keeps query parameter *names*
only (a presigned URL's ``X-Amz-Signature`` and ``X-Amz-Credential`` values
are dropped), the principal is the access key id (public, like a user
name), and no header is copied.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

__all__ = ["CLIENT_CLOSED", "RequestSummary", "redacted_uri", "summarize"]

# The status recorded for a request whose connection closed before any
# response was sent (nginx's "client closed request").
CLIENT_CLOSED = 499

# Requests answered without credentials (S3Api._probe): their path is not a bucket.
_PROBES = frozenset({"Health", "Ready", "Metrics"})


# Not frozen: a frozen dataclass sets each field through object.__setattr__,
# six times slower, and these are built for every request.  Treat as read-only.
@dataclass(slots=True)
class RequestSummary:
    """One request, after the fact.  ``status`` is the HTTP status sent; for
    a request that ended early it is the status already on the wire, or
    :data:`CLIENT_CLOSED` when nothing was sent (``completed`` is then
    False).  ``object_size`` is set for successful writes whose size is
    known; ``duration`` is in seconds."""

    request_id: str
    principal: str
    operation: str
    method: str
    uri: str
    bucket: str | None
    key: str | None
    status: int
    completed: bool
    error_code: str | None
    bytes_in: int
    bytes_out: int
    duration: float
    remote: str
    object_size: int | None


def redacted_uri(uri: bytes) -> str:
    """The request path with query *values* removed (``/b/k?uploadId&partNumber``)."""
    path, _, query = uri.partition(b"?")
    text = path.decode("latin-1")
    if query:
        text += "?" + _query_text(query.decode("latin-1"))
    return text


def _query_names(query: str) -> list[str]:
    """The names ``parse_qsl(query, keep_blank_values=True)`` gives, without
    decoding the values it would throw away (a presigned URL's credential
    and signature are most of its query)."""
    return [unquote(segment.partition("=")[0].replace("+", " ")) for segment in query.split("&") if segment]


# A query value: from a segment's first ``=`` to the next ``&``.
_QUERY_VALUE = re.compile(r"=[^&]*")


def _query_text(query: str) -> str:
    """``"&".join(_query_names(query))``, the redacted query of the access
    log, in one regular-expression pass for the usual query (every request
    presigned or with a subresource has one): when no name needs decoding
    (no ``%`` or ``+``) and no segment is empty or only a value (which
    :func:`_query_names` would drop, or keep as an empty name), cutting the
    values out of the text gives exactly the joined names."""
    names = _QUERY_VALUE.sub("", query) if "=" in query else query
    if not names or names[0] == "&" or names[-1] == "&" or "&&" in names or "%" in names or "+" in names:
        return "&".join(_query_names(query))
    return names


def _object_size(call: Any, status: int) -> int | None:
    """What the write handlers report they stored (``S3Call.object_size``):
    a request's headers do not always state it (a plain chunked body)."""
    return getattr(call, "object_size", None) if 200 <= status < 300 else None


def _uri(request: Any, call: Any) -> str:
    """From the call's target when there is one: ``request.uri`` is only set
    once the whole body has arrived, so an upload cut short would show
    twisted's placeholder."""
    if call is not None and call.op != "Invalid":
        target = call.target
        path, query = target.raw_path, target.raw_query
        # The target's text is the wire's bytes read as latin-1, and the
        # path holds no "?": what redacted_uri() makes of them re-encoded,
        # without the round trip.  Anything else takes that path.
        if path.isascii() and query.isascii() and "?" not in path:
            return path + "?" + _query_text(query) if query else path
        raw = path
        if query:
            raw += "?" + query
        return redacted_uri(raw.encode("latin-1"))
    return redacted_uri(request.uri)


def summarize(request: Any, completed: bool, bytes_in: int, now: float | None = None) -> RequestSummary:
    """Describe ``request`` (an :class:`~lightningstor.s3.request.S3Request`).

    ``bytes_in`` is the request body size as received (twisted.web drops
    ``request.content``, which counts it, before ``notifyFinish`` fires, so
    the caller keeps the counter).  ``now`` is a ``time.monotonic()``
    reading (the clock ``S3Call.started`` uses); it defaults to the current
    one.
    """
    now = time.monotonic() if now is None else now
    call = getattr(request, "s3call", None)
    error_code = getattr(call, "error_code", None)
    early = getattr(request, "answered_early", None)
    if completed or request.startedWriting:
        status = int(request.code)
    elif early is not None:
        status, error_code = early[0], error_code or early[1]
    else:
        status = CLIENT_CLOSED
    address = request.getClientAddress()
    principal = getattr(call, "principal", None)
    target = call.target if call is not None and call.op not in _PROBES else None
    return RequestSummary(
        request_id=call.request_id if call is not None else "-",
        principal=getattr(principal, "access_key_id", None) or "-",
        operation=call.op if call is not None else "Invalid",
        method=call.method if call is not None else request.method.decode("latin-1"),
        uri=_uri(request, call),
        bucket=target.bucket if target is not None else None,
        key=target.key if target is not None else None,
        status=status,
        completed=completed,
        error_code=error_code,
        bytes_in=bytes_in,
        bytes_out=int(request.sentLength),
        duration=max(0.0, now - call.started) if call is not None else 0.0,
        remote=str(getattr(address, "host", "-")),
        object_size=_object_size(call, status) if call is not None else None,
    )

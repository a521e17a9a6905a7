"""The access log of the gRPC API: one event per call, like the S3 API's.

An operator tails one log for both APIs: the event has the S3 access
event's namespace (``lightningstor.access``), fields and line shape
(:mod:`lightningstor.s3.accesslog`), plus ``protocol`` to tell them apart.
What differs is what gRPC has in their place: the method is ``POST`` and
the path the RPC's (``/lightningstor.v1.ObjectService/PutObject``), as on
the wire; ``status`` is the gRPC status name (``OK``, ``NOT_FOUND``); and
``bytes_in``/``bytes_out`` count the serialized protobuf messages (gRPC's
5-byte message framing is not counted).

Like the S3 event, it carries no credentials: the caller is named by access
key id, never by its bearer token; a caller whose token the IAM service
vouched for (aegis) has no access key and is named ``principal:<id>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

from lightningstor.audit import grpc_peer_host
from lightningstor.logs import escape_log_text

__all__ = ["GrpcAccessLog", "GrpcCall", "access_line"]


@dataclass(frozen=True, slots=True)
class GrpcCall:
    """What the access event says about one finished call."""

    request_id: str
    access_key_id: str | None
    operation: str  # the RPC's name, as the metrics' ``operation`` label
    path: str  # /package.Service/Method
    status: str  # gRPC status name
    completed: bool  # False when the client went away (CANCELLED)
    error_code: str | None  # the S3 code sent in trailing metadata
    bucket: str | None
    key: str | None
    bytes_in: int
    bytes_out: int
    duration: float
    peer: str | None  # context.peer(): "ipv4:10.1.2.3:51234"
    principal_id: str | None = None  # who the call acted as, when authenticated

    @property
    def caller(self) -> str:
        """The access key, or ``principal:<id>`` for a caller without one."""
        if self.access_key_id:
            return self.access_key_id
        return f"principal:{self.principal_id}" if self.principal_id else "-"


def access_line(call: GrpcCall, remote: str | None = None) -> str:
    """The text line, in the S3 access line's shape (``remote``: the peer's
    address when the caller has it already)."""
    c = call
    if remote is None:
        remote = grpc_peer_host(c.peer) or "-"
    return (
        f'{remote} {c.caller} "POST {escape_log_text(c.path)}" {c.status} {c.bytes_in} {c.bytes_out} '
        f"{c.duration:.3f}s {c.request_id} {c.operation}"
    )


class GrpcAccessLog:
    """Emits the access event of a finished call.

    Called on the gRPC handler thread; the log observers take lines from
    any thread (:class:`lightningstor.logs.BatchingFileLogObserver` writes
    another thread's line at once).
    """

    def __init__(self, logger: Logger | None = None) -> None:
        self.log = logger or Logger(namespace="lightningstor.access")

    def emit(self, call: GrpcCall) -> None:
        remote = grpc_peer_host(call.peer) or "-"
        line = access_line(call, remote)
        fields: dict[str, Any] = {
            "log_text": line,  # our observers print it without reformatting
            "protocol": "grpc",
            "request_id": call.request_id,
            "principal": call.caller,
            "operation": call.operation,
            "method": "POST",
            "uri": call.path,
            "bucket": call.bucket,
            "key": call.key,
            "status": call.status,
            "completed": call.completed,
            "error_code": call.error_code,
            "bytes_in": call.bytes_in,
            "bytes_out": call.bytes_out,
            "duration": round(call.duration, 6),
            "remote": remote,
        }
        self.log.info(line.replace("{", "{{").replace("}", "}}"), **fields)

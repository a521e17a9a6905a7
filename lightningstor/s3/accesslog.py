"""The access log line, without credentials.

Twisted's combined log format prints the whole request URI, which for a
presigned URL includes ``X-Amz-Signature``/``Signature`` and the credential.
This formatter keeps the path and the query parameter *names* only, and
adds the S3 request id so a log line can be matched to an error document.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from twisted.web.http import combinedLogFormatter


class _Redacted:
    """A request proxy whose ``uri`` has its query values removed."""

    def __init__(self, request: Any) -> None:
        self._request = request
        path, _, query = request.uri.partition(b"?")
        if query:
            names = [name for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)]
            path += b"?" + "&".join(names).encode("latin-1", "replace")
        self.uri = path

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


def access_log_formatter(timestamp: str, request: Any) -> str:
    line = combinedLogFormatter(timestamp, _Redacted(request))
    call = getattr(request, "s3call", None)
    if call is not None:
        line += f" {call.request_id} {call.op}"
    return line

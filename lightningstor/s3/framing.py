"""HTTP/1.1 request framing held to RFC 9112 where twisted.web's parser is lax.

A server behind a proxy (a load balancer, a TLS terminator) must read each
request exactly as the proxy did, or bytes one of them takes for a body the
other takes for the next request (request smuggling).  twisted.web's
``HTTPChannel`` accepts a few framings that RFC 9112 refuses, each a known
way for two parsers to disagree; :class:`StrictHTTPChannel` (the base of the
S3 port's :class:`~lightningstor.s3.channel.S3Channel`) refuses them with
twisted.web's own answer to a malformed request, ``400 Bad Request`` and a
closed connection:

- ``Transfer-Encoding: identity``.  twisted.web ignored it, so ``identity``
  with ``Content-Length`` was framed by the length, and ``chunked`` followed
  by a second header ``identity`` (the coding list ``chunked, identity``,
  whose final coding is not chunked: RFC 9112 §6.3 requires 400 and a
  close) as chunked.  ``identity`` is not a transfer coding any more (RFC
  7230 removed it).  twisted.web already refuses every other coding and a
  second ``chunked``, so a single ``chunked`` is all that is accepted.
- An HTTP/1.1 request without ``Host``, and any request with more than one
  ``Host`` line or a comma in it (§3.2: "MUST respond with a 400").  An
  HTTP/1.0 request may leave it out (simple health checkers do).
- obs-fold: a header line that starts with a space or a tab, which
  twisted.web joined to the line before.  §5.2 lets a server refuse it; a
  proxy that does not fold would read ``X-A: a`` then `` Transfer-Encoding:
  chunked`` as a different header set than this server does.
- A control character in a header line other than HTAB (RFC 9110 §5.5:
  field values are visible characters, SP, HTAB and obs-text).
  twisted.web refuses only NUL, CR and LF; the others (0x01, ESC 0x1b,
  DEL 0x7f...) reached the request, and from there stored
  ``x-amz-meta-*`` values (echoed back to every reader) and log lines (a
  terminal escape sequence in an operator's log).  Bytes 0x80-0xFF
  (obs-text: UTF-8 in ``x-amz-meta-*`` as clients send it) are accepted.

A request head over twisted.web's size limits (a line over 16 KiB, request
line and headers over 16 KiB together, more than 500 header lines) was
dropped without an answer or got a bare 400.  It gets AWS's answer instead,
``400`` with the S3 error ``RequestHeaderSectionTooLarge`` (RFC 6585's 431
would say the same, but S3 clients know AWS's status), or ``414 URI Too
Long`` for a request line too long on its own (RFC 9112 §3), and the
connection is closed: the client learns why.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.web import http


def headers_too_large_response(limit: int) -> bytes:
    """AWS's answer to a request head over ``limit`` bytes."""
    return _too_large(
        b"<Message>Your request header section exceeds the maximum allowed size.</Message>"
        b"<MaxSizeAllowed>%d</MaxSizeAllowed>" % limit
    )


def too_many_headers_response(limit: int) -> bytes:
    """The same error for more than ``limit`` header lines (twisted.web's
    count limit, which AWS does not have): the message names the count, not
    a size the request may be under."""
    return _too_large(b"<Message>Your request has more than %d header fields.</Message>" % limit)


def _too_large(details: bytes) -> bytes:
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b"<Error><Code>RequestHeaderSectionTooLarge</Code>" + details + b"</Error>"
    )
    return (
        b"HTTP/1.1 400 Bad Request\r\n"
        b"Content-Type: application/xml\r\n"
        b"Connection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )


# Every CTL but HTAB (0x09); NUL, CR and LF included, though twisted.web
# refuses those itself and LF/CR never reach a header line.
_CTL_BUT_HTAB = bytes(range(0x09)) + bytes(range(0x0A, 0x20)) + b"\x7f"
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field-name

URI_TOO_LONG_RESPONSE = b"HTTP/1.1 414 URI Too Long\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class StrictHTTPChannel(http.HTTPChannel):
    """``HTTPChannel`` refusing what the module docstring lists.

    It reads two of ``HTTPChannel``'s private fields, which its own parser
    keeps between lines: ``__first_line`` (non-zero while the request line
    is awaited) and ``__header`` (the last header line, held back in case
    the next line folds onto it).
    """

    def _in_request_line(self) -> bool:
        return bool(self._HTTPChannel__first_line)  # type: ignore[attr-defined]

    def lineReceived(self, line: bytes) -> None:
        if self._HTTPChannel__first_line:  # type: ignore[attr-defined]  # (inlined: once per line)
            super().lineReceived(line)
            return
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._refuse(headers_too_large_response(self.totalHeadersSize))
            return
        if line[:1] in (b" ", b"\t"):  # obs-fold
            self._respondToBadRequestAndDisconnect()
            return
        if not line:  # the end of the header section
            pending: bytes = self._HTTPChannel__header  # type: ignore[has-type]
            if pending:
                # Handled here rather than by HTTPChannel, so that the Host
                # check below sees every header.
                self._HTTPChannel__header = b""
                if not self.headerReceived(pending):
                    return
            if not self._host_ok():
                self._respondToBadRequestAndDisconnect()
                return
        super().lineReceived(line)

    def _host_ok(self) -> bool:
        hosts = self.requests[-1].requestHeaders.getRawHeaders(b"host") or []
        if len(hosts) > 1 or (hosts and b"," in hosts[0]):
            return False
        return bool(hosts) or self._version != b"HTTP/1.1"

    def headerReceived(self, line: bytes) -> bool:
        if self._receivedHeaderCount >= self.maxHeaders:  # HTTPChannel would answer a bare 400
            self._refuse(too_many_headers_response(self.maxHeaders))
            return False
        if len(line.translate(None, _CTL_BUT_HTAB)) != len(line):  # one C pass, no regex per line
            self._respondToBadRequestAndDisconnect()
            return False
        return super().headerReceived(line)  # type: ignore[no-any-return]

    def checkPersistence(self, request: Any, version: bytes) -> bool:
        """Twisted's rule, with the ``Connection`` options read as RFC 9110
        lists them: every ``Connection`` line, split at commas.  Twisted
        read only the first line, split at spaces, so ``close, TE`` or
        ``TE,close`` kept the connection open, where RFC 9112 §9.6 says a
        server that receives ``close`` closes after its response."""
        lines = request.requestHeaders.getRawHeaders(b"Connection") or []
        tokens = {token.strip().lower() for line in lines for token in line.split(b",")}
        if version != b"HTTP/1.1":
            return False  # as Twisted: no persistent HTTP/1.0 connections
        if b"close" in tokens:
            request.responseHeaders.setRawHeaders(b"Connection", [b"close"])
            return False
        return True

    def _finishRequestBody(self, data: bytes) -> None:
        """The end of a chunked body: its trailer fields (which this server
        never uses) are held to the syntax of header fields, a token, a
        colon, no control character but HTAB, as ``headerReceived`` holds
        header lines.  Twisted takes any bytes up to CRLF, so a bare LF
        passed, and a front end that ends lines at a bare LF (RFC 9112
        allows it) read the next request out of what this server took for
        trailers: the two then paired responses with different requests.
        A bad trailer is a 400 and the connection closes (the request body
        never completes, so nothing is stored)."""
        decoder: Any = self._transferDecoder
        for line in getattr(decoder, "_trailerHeaders", ()):
            name, colon, _value = bytes(line).partition(b":")
            if not colon or not _TOKEN.fullmatch(name) or len(line.translate(None, _CTL_BUT_HTAB)) != len(line):
                raise http._MalformedChunkedDataError("malformed trailer field")  # type: ignore[attr-defined]
        super()._finishRequestBody(data)

    def lineLengthExceeded(self, line: bytes) -> None:
        # LineReceiver's own answer is to close without a word.
        if self._in_request_line():
            self._refuse(URI_TOO_LONG_RESPONSE)
        else:
            self._refuse(headers_too_large_response(self.totalHeadersSize))

    def _maybeChooseTransferDecoder(self, header: bytes, data: bytes) -> bool:
        if header == b"Transfer-Encoding" and data.lower() == b"identity":
            return self._failChooseTransferDecoder()  # type: ignore[no-any-return]
        return super()._maybeChooseTransferDecoder(header, data)  # type: ignore[no-any-return]

    def _refuse(self, response: bytes) -> None:
        """Answer ``response`` and close, as ``_respondToBadRequestAndDisconnect`` does."""
        self.transport.write(response)  # type: ignore[union-attr]
        self.loseConnection()

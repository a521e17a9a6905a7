"""The HTTP/1.1 connection of the S3 port: twisted.web's ``HTTPChannel``,
built directly and trimmed where S3 traffic showed a cost or a gap.

Why a subclass, and why built directly:

- ``twisted.web.server.Site`` wraps every channel in a proxy that would
  switch it to HTTP/2 after an ``h2`` ALPN.  The S3 layer streams request
  bodies through ``HTTPChannel``'s HTTP/1.1 hooks (``gotLength``,
  ``handleContentChunk``), which HTTP/2 does not call the same way, and S3
  clients speak HTTP/1.1; so the S3 port offers ``http/1.1`` only
  (``S3Site.acceptableProtocols``) and builds this channel without the
  proxy, which also saves a forwarding call on every read and write.
- ``writeHeaders`` sends the status line and headers as one ``bytes``
  instead of a list of four pieces per header: the transport checks each
  piece of a ``writeSequence``, about 40 calls for a GET's headers.  For a
  small response the head waits for the body and both go out in one write,
  which the transport (lightningstor.tcp) can send at once: one system call.
- The local address is asked of the socket once per connection, not once
  per request.
- A ``Content-Length`` of more than 4300 digits makes ``int()`` raise in
  the parser, which dropped the connection without an answer; it is read
  as the (huge) number it is, so the S3 layer answers it like any length
  too large for an upload or a request body.
- Bytes a client pipelines behind a request are kept until that request
  is done.  ``HTTPChannel`` stops reading once they pass a small limit,
  except while the response waits for the client (the transport's buffer
  is full): then it read on without bound, so one connection could leave a
  large GET unread and send gigabytes behind it, all kept in memory and
  re-parsed (in quadratic time) when the request ended.  Here reading
  stops at :data:`PIPELINED_LIMIT` in that state too; ``requestDone`` and
  ``resumeProducing`` read on as twisted.web does otherwise.
- The transport pausing and resuming the channel (its send buffer full,
  then drained) is told to the connection limits, whose send deadline cuts
  off a client that stops reading a response (s3/limits.py).
- Framings that RFC 9112 refuses, and request heads over the size limits,
  get an answer (:class:`~lightningstor.s3.framing.StrictHTTPChannel`).
- When the server stops, keep-alive ends (:meth:`S3Channel.end_keep_alive`):
  an idle connection closes at once, a busy one after its answer, which
  says ``Connection: close`` if its head is not sent yet.  Kept alive, a
  client with steady traffic was served new requests for the whole drain,
  which then ran to its timeout and cut whatever was in flight then.
"""

from __future__ import annotations

from typing import Any

from twisted.web.http_headers import Headers

from lightningstor.s3.framing import StrictHTTPChannel
from lightningstor.s3.limits import LimitedConnection

PIPELINED_LIMIT = 64 * 1024
"""Bytes kept from a client ahead of the request being answered before the
connection stops reading while the response waits (twisted.web's own limit,
16 KiB, does not apply then)."""

# Longer than any length anything accepts, and short enough for int().
_MAX_LENGTH_DIGITS = 40
_HUGE_LENGTH = b"9" * _MAX_LENGTH_DIGITS


class S3Channel(StrictHTTPChannel):
    """One HTTP/1.1 connection to the S3 port (see the module docstring).

    While ``hold_head`` is set, the response head waits for the first body
    bytes and goes out with them in one write (:meth:`S3Request.write
    <lightningstor.s3.request.S3Request.write>` sets it around a small
    response's first write, and releases the head in any case).
    """

    hold_head = False
    _held_head: bytes | None = None
    _host: Any = None
    _keep_alive_ended = False

    def end_keep_alive(self) -> None:
        """The server is stopping: serve no further request here.  Idle,
        the connection closes now; otherwise after the answers to what it
        has received, which say ``Connection: close`` where their heads are
        not written yet (a request still arriving says it when its body is
        in, :meth:`checkPersistence`)."""
        self._keep_alive_ended = True
        self.persistent = False
        if not self.requests:
            self.loseConnection()
            return
        for request in self.requests:
            if not request.startedWriting:
                request.responseHeaders.setRawHeaders(b"connection", [b"close"])

    def checkPersistence(self, request: Any, version: bytes) -> bool:
        if self._keep_alive_ended:
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
            return False
        return super().checkPersistence(request, version)  # type: ignore[no-any-return]

    def getHost(self) -> Any:
        """The local address, asked of the socket once per connection:
        every request wants it (``Request.host``), and ``getsockname`` is a
        system call that releases the GIL."""
        host = self._host
        if host is None:
            host = self._host = self.transport.getHost()  # type: ignore[union-attr]
        return host

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        if not isinstance(headers, Headers):
            self.release_head()
            super().writeHeaders(version, code, reason, headers)
            return
        lines = [b"%s %s %s" % (version, code, reason)]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                lines.append(b"%s: %s" % (name, value))
        lines.append(b"\r\n")
        head = b"\r\n".join(lines)
        if self.hold_head:
            self._held_head = head
        else:
            self.transport.write(head)  # type: ignore[union-attr]

    def release_head(self) -> None:
        """Write a held response head now (if one is held)."""
        head = self._held_head
        if head is not None:
            self._held_head = None
            self.transport.write(head)  # type: ignore[union-attr]

    def write(self, data: bytes) -> None:
        head = self._held_head
        if head is not None:
            self._held_head = None
            data = head + data
        self.transport.write(data)  # type: ignore[union-attr]

    def writeSequence(self, iovec: Any) -> None:
        self.release_head()
        self.transport.writeSequence(iovec)  # type: ignore[union-attr]

    def rawDataReceived(self, data: bytes) -> None:
        super().rawDataReceived(data)
        if self._handlingRequest and self._waitingForTransport and self._dataBuffer:
            if sum(map(len, self._dataBuffer)) > PIPELINED_LIMIT:
                self._networkProducer.pauseProducing()  # see the module docstring

    def pauseProducing(self) -> None:
        super().pauseProducing()
        if isinstance(self.transport, LimitedConnection):
            self.transport.send_blocked()  # the response waits for the client

    def resumeProducing(self) -> None:
        if isinstance(self.transport, LimitedConnection):
            self.transport.send_unblocked()
        super().resumeProducing()

    def _maybeChooseTransferDecoder(self, header: bytes, data: bytes) -> bool:
        if header == b"Content-Length" and len(data) > _MAX_LENGTH_DIGITS and data.isdigit():
            data = data.lstrip(b"0") or b"0"
            if len(data) > _MAX_LENGTH_DIGITS:
                data = _HUGE_LENGTH
        return super()._maybeChooseTransferDecoder(header, data)  # type: ignore[no-any-return]

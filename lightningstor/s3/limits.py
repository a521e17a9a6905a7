"""Connection limits for the S3 listener: a header deadline and a connection cap.

twisted.web's ``Site(timeout=...)`` closes a connection only after that many
seconds *without any byte*: a client that sends its request headers one byte
every few seconds (slowloris) resets the timer forever and holds a
connection, and enough of them hold every file descriptor.  Two defences,
in one ``WrappingFactory`` around the site (the Twisted way to add
connection policy, as ``policies.TimeoutFactory`` does):

* **Header deadline.** From the first byte of a request until its last
  header line, at most ``header_timeout`` seconds may pass, however steadily
  the bytes trickle in; then the connection is aborted.  The HTTP parser
  tells the wrapper where a request's headers end (``S3Request.gotLength``
  calls :meth:`LimitedConnection.headers_received`) and when its response is
  done (:meth:`LimitedConnection.request_finished`), so nothing is parsed
  twice.  A slow *body* is still governed by the idle timeout and by
  backpressure, not by this deadline.
* **Connection cap.** Above ``max_connections`` open connections, a new one
  gets ``503 SlowDown`` (``Connection: close``) at once and is closed, so
  clients back off and retry instead of queueing on a server that would
  run out of descriptors.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer

log = Logger()

_SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Too many open connections; reduce your request rate."
    b"</Message></Error>"
)
SLOW_DOWN_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/xml\r\n"
    b"Connection: close\r\n"
    b"Retry-After: 1\r\n"
    b"Content-Length: " + str(len(_SLOW_DOWN_BODY)).encode() + b"\r\n\r\n" + _SLOW_DOWN_BODY
)


class LimitedConnection(ProtocolWrapper):
    """One connection: arms the header deadline when a request starts."""

    factory: ConnectionLimits

    def __init__(self, factory: ConnectionLimits, wrappedProtocol: Any) -> None:
        super().__init__(factory, wrappedProtocol)
        self._between_requests = True
        self._deadline: Any = None

    def dataReceived(self, data: bytes) -> None:
        if self._between_requests and data and self._deadline is None and self.factory.header_timeout:
            # HTTP/2 (should the site ever negotiate it) multiplexes streams
            # and never reports header ends here: no deadline for it.
            if getattr(self.transport, "negotiatedProtocol", None) != b"h2":
                self._deadline = self.factory.reactor.callLater(self.factory.header_timeout, self._too_slow)
        super().dataReceived(data)

    def headers_received(self) -> None:
        """The parser has every header of the current request."""
        self._between_requests = False
        self._cancel()

    def request_finished(self) -> None:
        """The response is done; the next bytes start a new request."""
        self._between_requests = True

    def _too_slow(self) -> None:
        self._deadline = None
        self.factory.headers_timed_out += 1
        log.info(
            "Closing {peer}: request headers not complete after {seconds} s",
            peer=str(self.getPeer()), seconds=self.factory.header_timeout,
        )  # fmt: skip
        transport: Any = self.transport
        transport.abortConnection()

    def _cancel(self) -> None:
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel()
        super().connectionLost(reason)


class _SlowDown(Protocol):
    """Answers 503 SlowDown without reading anything, then closes."""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(SLOW_DOWN_RESPONSE)
        self.transport.loseConnection()


@implementer(IProtocolNegotiationFactory)
class ConnectionLimits(WrappingFactory[LimitedConnection]):
    """Wraps the S3 site (inside TLS, so the deadline also covers a slow
    handshake's aftermath but never decrypts twice).  ``max_connections``
    0 and ``header_timeout`` 0 switch each limit off.  ``refused`` and
    ``headers_timed_out`` count what the limits did."""

    protocol = LimitedConnection

    def __init__(self, wrapped: Any, reactor: Any, *, max_connections: int, header_timeout: float) -> None:
        super().__init__(wrapped)
        self.reactor = reactor
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.refused = 0
        self.headers_timed_out = 0

    def acceptableProtocols(self) -> list[bytes]:
        """The site's ALPN protocols: TLS asks the factory it wraps (this
        one), and a TLS handshake offering ALPN fails without an overlap."""
        site = IProtocolNegotiationFactory(self.wrappedFactory, None)
        return list(site.acceptableProtocols()) if site is not None else [b"http/1.1"]

    def buildProtocol(self, addr: Any) -> Any:
        if self.max_connections and len(self.protocols) >= self.max_connections:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warn(
                    "Refusing connections above limits.max_connections={n} ({refused} so far)",
                    n=self.max_connections, refused=self.refused,
                )  # fmt: skip
            return _SlowDown()
        return super().buildProtocol(addr)


def connection_of(request: Any) -> LimitedConnection | None:
    """The :class:`LimitedConnection` carrying ``request``, if any."""
    transport = getattr(getattr(request, "channel", None), "transport", None)
    return transport if isinstance(transport, LimitedConnection) else None

"""Connection limits for the S3 listener: header, body and send deadlines, a connection cap.

twisted.web's ``Site(timeout=...)`` closes a connection only after that many
seconds *without any byte*: a client that sends its request headers one byte
every few seconds (slowloris) resets the timer forever and holds a
connection, and enough of them hold every file descriptor.  The defences,
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
* **Body progress.** While a request body is coming in *and the server is
  reading it*, every ``body_timeout`` seconds must bring at least
  :data:`MIN_BODY_BYTES` (or the rest of the body).  A client that trickles
  a body a byte at a time (slow POST, "R.U.D.Y.") gets ``400
  RequestTimeout`` and the connection is closed; nothing is stored.  Periods
  in which the server itself paused the transport (backpressure: the
  storage writer or the in-flight byte budget is behind) are never held
  against the client: :meth:`LimitedConnection.pauseProducing` marks them.
* **Send progress.** twisted.web switches its idle timeout off while a
  request is handled, so a client that asks for a large object and never
  reads it held its connection, a connection slot and an open object reader
  for ever.  While the transport's send buffer is full (the response waits
  for the client: the transport paused the HTTP channel, which tells
  :meth:`LimitedConnection.send_blocked`), the client must receive at least
  one byte every ``send_timeout`` seconds (``limits.idle_timeout_seconds``: a
  response nobody reads is a connection without traffic); otherwise the
  connection is aborted, which stops the response and closes its reader.  A
  client that reads slowly keeps it open: any byte it receives
  (:func:`lightningstor.tcp.bytes_delivered`) restarts the period.
* **Connection cap.** Above ``max_connections`` open connections, a new one
  gets ``503 SlowDown`` (``Connection: close``) at once and is closed, so
  clients back off and retry instead of queueing on a server that would
  run out of descriptors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from lightningstor.tcp import bytes_delivered

log = Logger()

_SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Too many open connections; reduce your request rate."
    b"</Message></Error>"
)
# The least a body must bring per ``body_timeout`` while the server reads.
MIN_BODY_BYTES = 1024
# While the server holds a body back, the site's idle timer is reset this often.
IDLE_TOUCH_SECONDS = 5.0
# A blocked send is checked this many times per ``send_timeout``: a stalled
# client is cut at most a quarter of the period late.
SEND_CHECKS = 4

_REQUEST_TIMEOUT_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>RequestTimeout</Code><Message>Your socket connection to the server was not read from "
    b"or written to within the timeout period. Idle connections will be closed.</Message></Error>"
)
REQUEST_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: application/xml\r\n"
    b"Connection: close\r\n"
    b"Content-Length: " + str(len(_REQUEST_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _REQUEST_TIMEOUT_BODY
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
        # Body progress (see the module docstring).
        self._body_timer: Any = None
        self._body_left: int | None = None  # bytes still expected; None: unknown (chunked)
        self._window_bytes = 0
        self._paused = False
        self._paused_in_window = False
        self._idle_touch: Any = None
        self._in_body = False
        self._holding = False
        self._channel: Any = None
        # Send progress (see the module docstring).
        self._send_timer: Any = None
        self._delivered_mark: int | None = None
        self._delivered_at = 0.0

    def dataReceived(self, data: bytes) -> None:
        if self._between_requests and data and self._deadline is None and self.factory.header_timeout:
            # HTTP/2 (should the site ever negotiate it) multiplexes streams
            # and never reports header ends here: no deadline for it.
            if getattr(self.transport, "negotiatedProtocol", None) != b"h2":
                self._deadline = self.factory.reactor.callLater(self.factory.header_timeout, self._too_slow)
        if self._body_timer is not None:
            self._window_bytes += len(data)
        super().dataReceived(data)

    # -- body progress ------------------------------------------------------
    def body_expected(self, length: int | None, channel: Any = None) -> None:
        """A request body follows (``length`` bytes; None: chunked) on the
        HTTP ``channel`` (whose idle timer a server-side pause keeps fresh)."""
        if length == 0:
            return
        self._in_body = True
        self._channel = channel
        self._keep_fresh()  # a pause begun before (during a held "100 Continue")
        if not self.factory.body_timeout:
            return
        self._body_left = length
        self._window_bytes = 0
        self._paused_in_window = self._paused
        self._cancel_body()
        self._body_timer = self.factory.reactor.callLater(self.factory.body_timeout, self._check_body)

    def body_received(self) -> None:
        """The whole body has arrived: no more body deadline."""
        self._in_body = False
        self._cancel_body()
        self._keep_fresh()

    def _check_body(self) -> None:
        self._body_timer = None
        needed = MIN_BODY_BYTES if self._body_left is None else min(MIN_BODY_BYTES, self._body_left)
        if self._paused_in_window or self._window_bytes >= needed:
            if self._body_left is not None:
                self._body_left = max(0, self._body_left - self._window_bytes)
            self._window_bytes = 0
            self._paused_in_window = self._paused
            self._body_timer = self.factory.reactor.callLater(self.factory.body_timeout, self._check_body)
            return
        self.factory.limited("body_timeout")
        requests = getattr(self._channel, "requests", None)
        if requests:  # the request whose body stopped: its summary says 400 RequestTimeout
            requests[-1].answered_early = (400, "RequestTimeout")
        log.info(
            "Closing {peer}: request body brought {n} bytes in {seconds} s",
            peer=str(self.getPeer()), n=self._window_bytes, seconds=self.factory.body_timeout,
        )  # fmt: skip
        transport: Any = self.transport
        transport.write(REQUEST_TIMEOUT_RESPONSE)
        transport.loseConnection()

    def pauseProducing(self) -> None:
        # The server stops reading (backpressure): not the client's delay.
        self._paused = True
        self._paused_in_window = True
        self._keep_fresh()
        transport: Any = self.transport
        transport.pauseProducing()

    def resumeProducing(self) -> None:
        self._paused = False
        self._keep_fresh()
        transport: Any = self.transport
        transport.resumeProducing()

    # -- send progress ------------------------------------------------------
    def send_blocked(self) -> None:
        """The transport's send buffer is full: from now on the response
        waits for the client to read (the transport paused the channel)."""
        if self._send_timer is not None or not self.factory.send_timeout:
            return
        self._delivered_mark = bytes_delivered(self.transport)
        self._delivered_at = self.factory.reactor.seconds()
        self._send_timer = self.factory.reactor.callLater(
            self.factory.send_timeout / SEND_CHECKS, self._check_send
        )

    def send_unblocked(self) -> None:
        """The transport sent what it held and resumed the channel."""
        self._cancel_send()

    def _check_send(self) -> None:
        self._send_timer = None
        reactor = self.factory.reactor
        now = reactor.seconds()
        delivered = bytes_delivered(self.transport)
        if delivered is not None and delivered != self._delivered_mark:
            self._delivered_mark, self._delivered_at = delivered, now  # the client read something
        elif now - self._delivered_at >= self.factory.send_timeout:
            self.factory.limited("send_timeout")
            log.info(
                "Closing {peer}: the client read nothing of the response for {seconds} s",
                peer=str(self.getPeer()), seconds=self.factory.send_timeout,
            )  # fmt: skip
            transport: Any = self.transport
            transport.abortConnection()
            return
        self._send_timer = reactor.callLater(self.factory.send_timeout / SEND_CHECKS, self._check_send)

    def _cancel_send(self) -> None:
        if self._send_timer is not None:
            if self._send_timer.active():
                self._send_timer.cancel()
            self._send_timer = None

    # -- the server, not the client, is the one waiting ----------------------
    def hold(self, channel: Any) -> None:
        """The server holds the client back on ``channel`` (a "100 Continue"
        not answered yet): until :meth:`unhold`, the idle timer stays fresh."""
        self._holding = True
        self._channel = channel
        self._keep_fresh()

    def unhold(self) -> None:
        self._holding = False
        self._keep_fresh()

    def _server_waits(self) -> bool:
        """The site's idle timeout counts time without a byte; while the
        server itself holds a body back (storage writer or in-flight budget
        behind) or has not answered "100 Continue" yet, that time is not the
        client's."""
        return self._holding or (self._paused and self._in_body)

    def _keep_fresh(self) -> None:
        """Start or stop keeping the idle timer fresh, as :meth:`_server_waits` says."""
        if not self._server_waits():
            self._cancel_touch()
        elif self._idle_touch is None:
            self._touch_idle(reset=False)

    def _touch_idle(self, reset: bool = True) -> None:
        self._idle_touch = None
        if not self._server_waits():
            return
        if reset:
            channel_reset = getattr(self._channel, "resetTimeout", None)  # TimeoutMixin
            if channel_reset is not None:
                channel_reset()
        self._idle_touch = self.factory.reactor.callLater(IDLE_TOUCH_SECONDS, self._touch_idle)

    def _cancel_touch(self) -> None:
        if self._idle_touch is not None:
            if self._idle_touch.active():
                self._idle_touch.cancel()
            self._idle_touch = None

    def _cancel_body(self) -> None:
        if self._body_timer is not None:
            if self._body_timer.active():
                self._body_timer.cancel()
            self._body_timer = None

    def headers_received(self) -> None:
        """The parser has every header of the current request."""
        self._between_requests = False
        self._cancel()

    def request_finished(self) -> None:
        """The response is done; the next bytes start a new request."""
        self._between_requests = True

    def _too_slow(self) -> None:
        self._deadline = None
        self.factory.limited("header_timeout")
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
        self._cancel_body()
        self._cancel_touch()
        self._cancel_send()
        super().connectionLost(reason)


SLOW_DOWN_LINGER_SECONDS = 5.0
"""How long a connection refused above the cap may take to close before it
is aborted: over TLS a close waits for the handshake (or the peer's
close_notify), which a client may never send, and such connections are not
counted against the cap: without this bound each one held a descriptor for
ever, what the cap is there to prevent."""


class _SlowDown(Protocol):
    """Answers 503 SlowDown without reading anything, then closes; aborts
    the connection if it is still open :data:`SLOW_DOWN_LINGER_SECONDS` later."""

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._abort: Any = None

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(SLOW_DOWN_RESPONSE)
        self.transport.loseConnection()
        self._abort = self._reactor.callLater(SLOW_DOWN_LINGER_SECONDS, self._abort_now)

    def _abort_now(self) -> None:
        self._abort = None
        transport: Any = self.transport
        transport.abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        self._abort = None


@implementer(IProtocolNegotiationFactory)
class ConnectionLimits(WrappingFactory[LimitedConnection]):
    """Wraps the S3 site (inside TLS, so the deadline also covers a slow
    handshake's aftermath but never decrypts twice).  ``max_connections``,
    ``header_timeout``, ``body_timeout`` and ``send_timeout`` 0 switch each
    limit off.  ``refused``, ``headers_timed_out``, ``bodies_timed_out`` and
    ``sends_timed_out`` count what the limits did, and ``on_limit`` (the
    metrics) is told each time: ``max_connections``, ``header_timeout``,
    ``body_timeout`` or ``send_timeout``."""

    _COUNTERS = {
        "max_connections": "refused", "header_timeout": "headers_timed_out",
        "body_timeout": "bodies_timed_out", "send_timeout": "sends_timed_out",
    }  # fmt: skip

    protocol = LimitedConnection

    def __init__(
        self,
        wrapped: Any,
        reactor: Any,
        *,
        max_connections: int,
        header_timeout: float,
        body_timeout: float = 0,
        send_timeout: float = 0,
        on_limit: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(wrapped)
        self.reactor = reactor
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.send_timeout = send_timeout
        self.refused = 0
        self.headers_timed_out = 0
        self.bodies_timed_out = 0
        self.sends_timed_out = 0
        self.on_limit = on_limit

    def limited(self, limit: str) -> None:
        """One connection closed (or refused) by ``limit``."""
        attribute = self._COUNTERS[limit]
        setattr(self, attribute, getattr(self, attribute) + 1)
        if self.on_limit is not None:
            self.on_limit(limit)

    def acceptableProtocols(self) -> list[bytes]:
        """The site's ALPN protocols: TLS asks the factory it wraps (this
        one), and a TLS handshake offering ALPN fails without an overlap."""
        site = IProtocolNegotiationFactory(self.wrappedFactory, None)
        return list(site.acceptableProtocols()) if site is not None else [b"http/1.1"]

    def buildProtocol(self, addr: Any) -> Any:
        if self.max_connections and len(self.protocols) >= self.max_connections:
            self.limited("max_connections")
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warn(
                    "Refusing connections above limits.max_connections={n} ({refused} so far)",
                    n=self.max_connections, refused=self.refused,
                )  # fmt: skip
            return _SlowDown(self.reactor)
        return super().buildProtocol(addr)


def connection_of(request: Any) -> LimitedConnection | None:
    """The :class:`LimitedConnection` carrying ``request``, if any."""
    transport = getattr(getattr(request, "channel", None), "transport", None)
    return transport if isinstance(transport, LimitedConnection) else None

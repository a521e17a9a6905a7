"""A ``twisted.web`` Request that streams its body instead of spooling it.

``HTTPChannel`` calls ``gotLength`` as soon as the headers are parsed; that
is where we classify the S3 operation, start authentication and choose a body
sink (see :mod:`lightningstor.s3.body`).  ``handleContentChunk`` then feeds
the sink piece by piece, and the resource sees the request (``process``) only
when the body has ended, with the sink's result waiting for it.

An upload whose client sends ``Expect: 100-continue`` may be *held*
(:meth:`S3Request.hold_continue`): twisted.web then sends no "100 Continue"
of its own, and the S3 layer answers when the upload's checks are over,
with the 100 (:meth:`S3Request.release_continue`) or with the error
(``S3Api._refuse_now``, :meth:`S3Request.refuse_body`).  While held, the
body-progress deadline (s3/limits.py) has not started (the client waits for
the server, not the other way round) and the connection keeps its idle
timer fresh (``LimitedConnection.hold``); the deadline starts, with a full window, when the hold ends.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.http_headers import Headers, _nameEncoder

from lightningstor.s3.channel import S3Channel
from lightningstor.s3.dates import http_date
from lightningstor.s3.limits import connection_of
from lightningstor.s3.wire import header_value

log = Logger()

# A response's first write up to this size goes out with the response head.
COALESCE_LIMIT = 64 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_canonical_name = _nameEncoder.encode


class _NoContent:
    """Stands in for ``request.content``: the body went to the sink.

    ``Request.requestReceived`` calls ``tell``/``seek`` on it; handlers never
    read it (they ask the sink).
    """

    def __init__(self) -> None:
        self.received = 0

    def tell(self) -> int:
        return self.received

    def seek(self, offset: int, whence: int = 0) -> int:
        return 0

    def read(self, size: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        return None


class S3ResponseHeaders(Headers):
    """Response headers that keep ``x-amz-*`` names in lower case.

    Twisted title-cases every header name; S3 sends ``x-amz-meta-*`` in lower
    case and SDKs take the user-metadata key from the name as received
    (botocore would turn ``mtime`` into ``Mtime``).

    :meth:`put` and :meth:`set_pairs` are the S3 layer's own way in: a
    GET sets about ten headers, and ``Request.setHeader`` costs six calls
    for each (name encoding and checks, value sanitizing) where a dict
    store will do.
    """

    def put(self, wire_name: bytes, value: bytes) -> None:
        """Set one header whose name is already in its wire spelling and
        whose value the server formatted itself (no line breaks)."""
        self._rawHeaders[wire_name] = [value]

    def snapshot(self) -> dict[bytes, list[bytes]]:
        """What is set now, to :meth:`restore` later (a GET that reads its
        object again: s3/handlers/objects.py ``read_again_if_replaced``)."""
        return {name: list(values) for name, values in self._rawHeaders.items()}

    def restore(self, snapshot: dict[bytes, list[bytes]]) -> None:
        self._rawHeaders.clear()
        self._rawHeaders.update({name: list(values) for name, values in snapshot.items()})

    def set_pairs(self, pairs: Any) -> None:
        """Set ``(name, value)`` str pairs: values in latin-1 (or UTF-8, see
        :func:`~lightningstor.s3.wire.header_value`), line breaks folded into
        spaces as ``setRawHeaders`` does (a header cannot be split or
        injected by a stored value)."""
        raw = self._rawHeaders
        for name, value in pairs:
            wire = _WIRE_NAMES.get(name)
            if wire is None:
                wire = _wire_name(name)
            data = header_value(value)
            if b"\r" in data or b"\n" in data:
                data = b" ".join(data.splitlines())
            raw[wire] = [data]

    def setRawHeaders(self, name: Any, values: Any) -> None:
        raw = name.encode("latin-1") if isinstance(name, str) else name
        if raw[:6].lower() == b"x-amz-":
            self._rawHeaders[raw.lower()] = [
                v.encode("latin-1") if isinstance(v, str) else v for v in values
            ]
            return
        super().setRawHeaders(name, values)

    def removeHeader(self, name: Any) -> None:
        raw = name.encode("latin-1") if isinstance(name, str) else name
        if raw[:6].lower() == b"x-amz-":
            self._rawHeaders.pop(raw.lower(), None)
            return
        super().removeHeader(name)


# Wire spellings of the header names set through ``set_pairs`` (bounded: a
# stored object's metadata names come from clients).
_WIRE_NAMES: dict[str, bytes] = {}
_MAX_WIRE_NAMES = 4096


def _wire_name(name: str) -> bytes:
    """``x-amz-*`` in lower case, any other name in Twisted's canonical
    case (which also checks that it is a token)."""
    raw = name.encode("latin-1")
    wire = raw.lower() if raw[:6].lower() == b"x-amz-" else _canonical_name(raw)
    if len(_WIRE_NAMES) < _MAX_WIRE_NAMES:
        _WIRE_NAMES[name] = wire
    return wire


class S3Request(server.Request):
    """Request whose body streams into ``self.body_sink``.

    ``self.s3call`` is the :class:`~lightningstor.s3.app.S3Call` built from
    the headers (operation, target, authentication in flight).
    """

    _parsePOSTFormSubmission = False  # S3 POST bodies are XML, never forms

    # "100 Continue" held back by the S3 layer (hold_continue) and not yet
    # answered either way.
    continue_held = False
    # A body-progress deadline is due and not started (gotLength), and the
    # body's length for it (None: chunked).
    _body_due = False
    _body_length: int | None = None
    # The whole body has arrived (requestReceived ran).
    _body_in = False
    # (status, S3 code) of a response the connection layer wrote itself
    # before closing (s3/limits.py: a body that stopped coming), which the
    # request's summary reports instead of "client closed".
    answered_early: tuple[int, str] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.responseHeaders = self.s3_headers = S3ResponseHeaders()
        self.s3call: Any = None
        self.body_sink: Any = None
        # Set by S3Api.begin for an S3 operation (not a probe): rendered by
        # the S3 leaf resource, so requestReceived can skip twisted.web's
        # query and path parsing.
        self.s3_leaf = False
        # The S3 resource's render state, told by S3Api's notifyFinish hook
        # when the request ends.
        self.s3_render: Any = None
        # Answered before its body (refuse_body): never rendered.
        self.refused = False

    def gotLength(self, length: int | None) -> None:
        self.content = _NoContent()  # type: ignore[assignment]
        connection = connection_of(self)
        if connection is not None:
            connection.headers_received()  # stops the header deadline (s3/limits.py)
            # Any Transfer-Encoding header naming chunked (not only the first:
            # "identity" then "chunked" is a chunked body as well).
            chunked = any(b"chunked" in v.lower() for v in self.requestHeaders.getRawHeaders(b"transfer-encoding") or ())
            if length or chunked:
                body_length = length if not chunked else None
                if self.expects_continue():
                    # S3Api.begin may hold the 100 back: then the deadline
                    # waits for the hold to end (release_continue).
                    self._body_due, self._body_length = True, body_length
                else:
                    connection.body_expected(body_length, self.channel)
        self._begin(length)
        if not self.continue_held:
            self._start_body_deadline()

    def _begin(self, length: int | None) -> None:
        begin = getattr(getattr(self.channel, "site", None), "begin_request", None)
        command = getattr(self.channel, "_command", None)
        path = getattr(self.channel, "_path", None)
        if begin is None or command is None or path is None:
            return
        try:
            begin(self, command, path, length)
        except Exception:
            log.failure("Could not set up request handling")
            self.s3call = None
            self.body_sink = None

    # -- Expect: 100-continue, answered by the S3 layer ---------------------
    def expects_continue(self) -> bool:
        """Whether twisted.web would answer "100 Continue" to this request:
        ``HTTPChannel.allHeadersReceived``'s own test (the first ``Expect``
        value, HTTP/1.1 only; an HTTP/1.0 client gets no 1xx answer)."""
        values = self.requestHeaders.getRawHeaders(b"expect")
        if not values or values[0].lower() != b"100-continue":
            return False
        return getattr(self.channel, "_version", None) == b"HTTP/1.1"

    def hold_continue(self) -> None:
        """Hold "100 Continue" back until :meth:`release_continue` (or
        :meth:`refuse_body`).  Called from ``gotLength`` (``S3Api.begin``):
        twisted.web sends its own 100 right after that, for a request that
        still has the ``Expect`` header then, so the header goes."""
        self.requestHeaders.removeHeader(b"expect")
        self.continue_held = True
        connection = connection_of(self)
        if connection is not None:
            connection.hold(self.channel)  # the client waits for us: not idle

    def awaits_continue(self) -> bool:
        """The client may still be waiting for "100 Continue": held, still
        connected, nothing answered, and not one body byte received (a
        client whose own wait ran out sends its body without the 100)."""
        return (
            self.continue_held
            and getattr(self, "channel", None) is not None
            and not self.finished
            and not self.startedWriting
            and not self._body_in
            and self.content.received == 0  # type: ignore[union-attr,attr-defined]
        )

    def release_continue(self, send: bool) -> None:
        """End the hold: the body may come.  ``send`` (the checks passed):
        answer "100 Continue" if the client still waits for it.  The
        body-progress deadline starts now, so its first window is the
        client's whole."""
        if not self.continue_held:
            return
        if send and self.awaits_continue():
            self.channel.transport.write(CONTINUE)  # type: ignore[union-attr]
        self._end_hold()
        if getattr(self, "channel", None) is not None and not self.finished:
            self._start_body_deadline()

    def refuse_body(self) -> None:
        """The request is answered before its body and the connection
        closes (``S3Api._refuse_now``): no "100 Continue" (twisted.web's
        neither), no body deadline."""
        self.requestHeaders.removeHeader(b"expect")
        self._body_due = False
        self.refused = True
        self._end_hold()
        # A deadline already running (armed when the length was read, before
        # the refusal) is stopped too: over TLS the close waits for the
        # peer, and the deadline then fired on a request long answered.
        connection = connection_of(self)
        if connection is not None:
            connection.body_received()

    def _end_hold(self) -> None:
        if not self.continue_held:
            return
        self.continue_held = False
        connection = connection_of(self)
        if connection is not None:
            connection.unhold()

    def _start_body_deadline(self) -> None:
        """Arm the body-progress deadline (s3/limits.py), once, if a body is
        due and has not already arrived in full."""
        if not self._body_due:
            return
        self._body_due = False
        connection = connection_of(self)
        if connection is not None and not self._body_in:
            connection.body_expected(self._body_length, self.channel)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self._body_in = True
        # The whole body is in: the body progress deadline ends here.
        connection = connection_of(self)
        if connection is not None:
            connection.body_received()
        ended = getattr(self.body_sink, "body_ended", None)
        if ended is not None:
            ended()  # a buffered body reads no more (s3/body.py)
        if self.refused:
            # Answered already, and the connection is closing; a client that
            # sent its body anyway can finish it before the close does (over
            # TLS the close waits for the TLS shutdown).  The handler must
            # not run: its checks failed.  The request ends with the
            # connection (S3Api._refuse_now).
            return
        if not self.s3_leaf or path == b"*":
            super().requestReceived(command, path, version)
            return
        # An S3 operation: twisted.web's own version would also parse the
        # query into ``self.args`` (the S3 layer parsed it already, from the
        # raw request line, and nothing reads ``args``) and, in ``process``,
        # unquote every path segment into ``postpath`` (the S3 resource is a
        # leaf that reads its target from the call).  The rest is the same.
        self.args = {}
        self.method, self.uri = command, path
        self.clientproto = version
        self.path = path.split(b"?", 1)[0]
        self.site = self.channel.site  # type: ignore[attr-defined]
        self.s3_headers.put(b"Date", _now_http_date())
        self.prepath = []
        self.postpath = []
        try:
            self.render(self.site.getResourceFor(self))
        except BaseException:
            self.processingFailed(Failure())

    def finish(self) -> None:
        # Before Request.finish: that may already parse a pipelined next
        # request, whose headers must be timed from here (s3/limits.py).
        connection = connection_of(self)
        if connection is not None:
            connection.request_finished()
        super().finish()

    def render(self, resrc: Any) -> None:
        if not self.s3_leaf:
            # Request.process stamped Twisted's own Server header just before
            # this (an S3 operation skips process; S3Api.begin set it).
            self.setHeader(b"server", b"LightningStor")
        super().render(resrc)

    def write(self, data: bytes) -> None:
        channel = getattr(self, "channel", None)  # gone once finished
        if self.startedWriting or len(data) > COALESCE_LIMIT or not isinstance(channel, S3Channel):
            super().write(data)
            return
        # The first write of a response: its head and these (few) body bytes
        # leave in one transport write (S3Channel.hold_head).
        channel.hold_head = True
        try:
            super().write(data)
        finally:
            channel.hold_head = False
            channel.release_head()

    def handleContentChunk(self, data: bytes) -> None:
        self.content.received += len(data)  # type: ignore[union-attr,attr-defined]
        sink = self.body_sink
        if sink is not None:
            sink.receive(data)

    def connectionLost(self, reason: Any) -> None:
        self._end_hold()
        sink = self.body_sink
        if sink is not None and not self.finished:
            sink.connection_lost()
        super().connectionLost(reason)


_date_cache: tuple[int, bytes] = (-1, b"")


def _now_http_date() -> bytes:
    """The ``Date`` header for now, formatted once per second."""
    global _date_cache
    second = int(time.time())
    if _date_cache[0] != second:
        _date_cache = (second, http_date(second * 1000).encode("ascii"))
    return _date_cache[1]

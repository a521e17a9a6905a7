"""Streaming an object's bytes to the client with backpressure.

A push producer registered on the request.  It keeps a small, bounded
read-ahead: while the transport is busy sending one piece, the next pieces
(at most ``READ_AHEAD`` of them) are already being read, so the socket never
waits for the disk and the disk never waits for the socket.  A slow client
therefore holds at most ``READ_AHEAD`` pieces plus the one being sent in
memory, never the object.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from lightningstor.tcp import tcp_transport

READ_AHEAD = 2
"""Pieces read ahead of the one the transport is sending (1 MiB each by
default).  Two kept a 256 MiB GET as fast as three did; one was slower."""

SEND_LIMIT = 1 << 20
"""The most one ``send()`` of the response's TCP transport may take (Twisted's
default, 128 KiB, costs eight reactor turns per MiB piece)."""


def _raise_send_limit(request: Any, limit: int) -> None:
    """Let the request's TCP connection send up to ``limit`` bytes a call.

    A TCP transport sends at most ``SEND_LIMIT`` bytes per ``doWrite`` (one
    reactor turn each); the kernel still takes only what fits in the socket
    buffer.  Kept for the connection's later responses (harmless).
    """
    tcp = tcp_transport(getattr(getattr(request, "channel", None), "transport", None))
    if tcp is not None and tcp.SEND_LIMIT < limit:
        tcp.SEND_LIMIT = limit


@implementer(IPushProducer)
class ObjectProducer:
    """Writes ``reader``'s pieces to ``request``; ``done`` fires at the end
    (or fails if reading failed mid-stream, after aborting the connection).

    ``read_ahead`` bounds the pieces held that the transport has not taken
    yet (read and queued, or being read): the memory this response holds is
    at most ``read_ahead`` pieces plus what the transport buffers.
    """

    def __init__(self, request: Any, reader: Any, *, read_ahead: int = READ_AHEAD) -> None:
        if read_ahead < 1:
            raise ValueError("read_ahead must be >= 1")
        self._request = request
        self._reader = reader
        self._read_ahead = read_ahead
        self._ready: deque[bytes] = deque()  # read, not yet written
        self._paused = False
        self._reading = False
        self._eof = False
        self._stopped = False
        self.done: Deferred[None] = Deferred()

    @property
    def held_pieces(self) -> int:
        """Pieces read (or being read) and not yet handed to the transport."""
        return len(self._ready) + self._reading

    def start(self) -> Deferred[None]:
        whole = getattr(self._reader, "whole_inline", None)
        data = whole() if whole is not None else None
        if data is not None:
            # A small object stored inline, already in memory: one write, no
            # producer to register (a backpressure round trip would buy
            # nothing for at most one piece).
            self._stopped = True
            if data:
                self._request.write(data)
            self._request.finish()
            self.done.callback(None)
            return self.done
        _raise_send_limit(self._request, SEND_LIMIT)
        self._request.registerProducer(self, True)
        self._fill()
        return self.done

    def _fill(self) -> None:
        """Start the next read if the read-ahead has room (one read at a time:
        the reader hands out its pieces in order)."""
        if self._stopped or self._reading or self._eof:
            return
        if len(self._ready) >= self._read_ahead:
            return
        self._reading = True
        d = self._reader.next_piece()
        d.addCallbacks(self._got, self._failed)

    def _got(self, piece: bytes | None) -> None:
        self._reading = False
        if self._stopped:
            return
        if piece is None:
            self._eof = True
        elif piece:
            self._ready.append(piece)
        self._flush()
        self._fill()

    def _flush(self) -> None:
        """Hand queued pieces to the transport while it takes them; finish
        the response once everything was handed over."""
        ready = self._ready
        while ready and not self._paused and not self._stopped:
            # The transport pauses us (synchronously) once it buffers more
            # than its limit, which a piece usually exceeds: one piece per
            # resume, so its buffer is never concatenated.
            self._request.write(ready.popleft())
        if self._eof and not ready and not self._stopped:
            self._stopped = True
            self._request.unregisterProducer()
            self._request.finish()
            self.done.callback(None)

    def _failed(self, failure: Failure) -> None:
        self._reading = False
        if self._stopped:
            return
        self._stopped = True
        self._ready.clear()
        self._request.unregisterProducer()
        self.done.errback(failure)

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._flush()
        self._fill()

    def stopProducing(self) -> None:
        """The client went away: stop reading, and unregister, so that
        twisted.web's clean-up does not log the request (whose URI holds a
        presigned URL's signature) as "Producer was not unregistered"."""
        if not self._stopped:
            self._stopped = True
            self._ready.clear()
            self._request.unregisterProducer()
            self.done.callback(None)

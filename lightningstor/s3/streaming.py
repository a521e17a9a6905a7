"""Streaming an object's bytes to the client with backpressure.

A push producer registered on the request: it reads the next piece from the
ChunkManager reader only while the transport is not paused, so a slow client
holds at most one piece in memory, not the object.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer


@implementer(IPushProducer)
class ObjectProducer:
    """Writes ``reader``'s pieces to ``request``; ``done`` fires at the end
    (or fails if reading failed mid-stream, after aborting the connection)."""

    def __init__(self, request: Any, reader: Any) -> None:
        self._request = request
        self._reader = reader
        self._paused = False
        self._reading = False
        self._stopped = False
        self.done: Deferred[None] = Deferred()

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
        self._request.registerProducer(self, True)
        self._next()
        return self.done

    def _next(self) -> None:
        if self._paused or self._reading or self._stopped:
            return
        self._reading = True
        d = self._reader.next_piece()
        d.addCallbacks(self._got, self._failed)

    def _got(self, piece: bytes | None) -> None:
        self._reading = False
        if self._stopped:
            return
        if piece is None:
            self._stopped = True
            self._request.unregisterProducer()
            self._request.finish()
            self.done.callback(None)
            return
        self._request.write(piece)
        self._next()

    def _failed(self, failure: Failure) -> None:
        self._reading = False
        if self._stopped:
            return
        self._stopped = True
        self._request.unregisterProducer()
        self.done.errback(failure)

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._next()

    def stopProducing(self) -> None:
        """The client went away: stop reading; nothing to clean up."""
        if not self._stopped:
            self._stopped = True
            self.done.callback(None)

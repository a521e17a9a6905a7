"""A TCP server transport that sends at once when nothing is queued.

Twisted's TCP transport never sends from ``write``: it queues the data,
asks the reactor to watch the socket for writability (``epoll_ctl``), sends
on the reactor's next turn, and stops watching (``epoll_ctl`` again).  For
a small response, whose bytes fit the socket's send buffer anyway, that is
three system calls and an extra reactor turn where one ``send`` would do.
Each of those calls also releases the GIL, and the reactor thread may then
wait for a pool thread to give it back.

:class:`EagerServer` sends straight from ``write`` when the transport has
nothing queued (what asyncio's transports do); whatever the socket does not
take is queued and sent the usual way, so ordering, backpressure on
producers and error reporting (a failed ``send`` is retried by the usual
path, which reports the lost connection) are Twisted's own.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp


class EagerServer(tcp.Server):
    """A server-side TCP connection whose ``write`` sends at once if it can
    (see the module docstring)."""

    def write(self, data: bytes) -> None:
        if (
            data
            and type(data) is bytes
            and not self._tempDataBuffer
            and self.offset == len(self.dataBuffer)
            and self.connected
            and not self.disconnecting
            and not self._writeDisconnected
            and not self.TLS  # startTLS: the bytes must go through the TLS layer
            # A pull producer is asked for more only when doWrite empties the
            # buffer: its writes keep to the usual path.
            and (self.producer is None or self.streamingProducer)
        ):
            try:
                sent = self.socket.send(data)
            except OSError:  # EAGAIN, or an error the usual path will report
                sent = 0
            if sent == len(data):
                return
            # The rest waits in the (empty) buffer, as if doWrite had sent
            # ``sent`` bytes of it: no copy of the remainder.
            self.dataBuffer, self.offset = data, sent
            self._maybePauseProducer()
            self.startWriting()
            return
        super().write(data)


def send_eagerly(port: Any) -> None:
    """Make ``port`` (a listening ``tcp.Port``) give its connections
    :class:`EagerServer` transports."""
    if isinstance(port, tcp.Port) and port.transport is tcp.Server:
        port.transport = EagerServer

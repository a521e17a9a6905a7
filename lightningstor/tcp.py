"""How the S3 port accepts connections, and the TCP connections it makes.

Everything that changes a listening ``tcp.Port`` of this server, or reaches
down to the TCP connection under a request, is here, so that the port is
hooked once, in one order, instead of by several modules each wrapping what
the previous one left:

* :func:`prepare_s3_port` gives the S3 port its connection class
  (:class:`EagerServer`) and, for a port shared by worker processes, the
  accept rule: one connection per wake-up (:func:`accept_one_at_a_time`,
  also used by the metrics port) and, when the workers balance their
  connections, the :class:`~lightningstor.worker_balance.AcceptBalancer`'s
  say on whether to accept at all;
* :func:`tcp_transport` finds the TCP connection under a request's transport,
  for the code that tunes its read and send sizes (s3/body.py,
  s3/streaming.py);
* :func:`bytes_delivered` reads how many bytes of a connection the client
  has received, through TLS too: the send deadline (s3/limits.py) tells a
  client that reads slowly from one that stopped reading by whether this
  moves.

Eager sending: Twisted's TCP transport never sends from ``write``: it queues
the data, asks the reactor to watch the socket for writability
(``epoll_ctl``), sends on the reactor's next turn, and stops watching
(``epoll_ctl`` again).  For a small response, whose bytes fit the socket's
send buffer anyway, that is three system calls and an extra reactor turn
where one ``send`` would do.  Each of those calls also releases the GIL, and
the reactor thread may then wait for a pool thread to give it back.

:class:`EagerServer` sends straight from ``write`` when the transport has
nothing queued (what asyncio's transports do); whatever the socket does not
take is queued and sent the usual way, so ordering, backpressure on
producers and error reporting (a failed ``send`` is retried by the usual
path, which reports the lost connection) are Twisted's own.
"""

from __future__ import annotations

import struct
import sys
from typing import TYPE_CHECKING, Any

from twisted.internet import tcp
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import TLSMemoryBIOProtocol

if TYPE_CHECKING:
    from lightningstor.worker_balance import AcceptBalancer

try:
    import fcntl
    import termios

    # Linux's SIOCOUTQ is TIOCOUTQ.
    _OUTQ: int | None = termios.TIOCOUTQ if sys.platform.startswith("linux") else None
except ImportError:  # not a POSIX system
    _OUTQ = None

__all__ = ["EagerServer", "accept_one_at_a_time", "bytes_delivered", "prepare_s3_port", "tcp_transport"]


class EagerServer(tcp.Server):
    """A server-side TCP connection whose ``write`` sends at once if it can
    (see the module docstring).

    It also reports its opening and closing to the balancer of the port that
    accepted it, if that port has one (:func:`prepare_s3_port`): the
    connections a worker holds are what the balancing evens out.

    ``sent`` counts the bytes the socket took (:func:`bytes_delivered`).
    """

    sent = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Set by prepare_s3_port: None unless the workers balance; absent
        # on a port it did not prepare.
        self._balancer: AcceptBalancer | None = getattr(self.server, "balancer", None)
        if self._balancer is not None:
            self._balancer.opened()

    def connectionLost(self, reason: Any) -> None:
        try:
            super().connectionLost(reason)
        finally:
            if self._balancer is not None:
                self._balancer.closed()

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
            self.sent += sent
            if sent == len(data):
                return
            # The rest waits in the (empty) buffer, as if doWrite had sent
            # ``sent`` bytes of it: no copy of the remainder.
            self.dataBuffer, self.offset = data, sent
            self._maybePauseProducer()
            self.startWriting()
            return
        super().write(data)

    def writeSomeData(self, data: Any) -> Any:
        result = super().writeSomeData(data)
        if type(result) is int:  # else the connection is lost (an exception)
            self.sent += result
        return result


def listen_now(reactor: Any, description: str, factory: Any, *, key: str = "server.s3_addr") -> Any:
    """The listening port of ``description`` (a Twisted server endpoint
    string), bound at once: TCP endpoints listen synchronously, so a port in
    use fails start-up here, in whichever start phase the caller binds (the
    S3 and metrics services, before twistd switches user): with one line
    naming ``key`` and exit status 1, as a multi-worker server's start-up
    says it, where twistd would print a traceback."""
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.error import CannotListenError
    from twisted.python.failure import Failure

    result: list[Any] = []
    serverFromString(reactor, description).listen(factory).addBoth(result.append)
    if result and isinstance(result[0], Failure):
        error = result[0].value
        if isinstance(error, CannotListenError):
            cause = getattr(error.socketError, "strerror", None) or error.socketError
            where = f"{error.interface or '0.0.0.0'}:{error.port}"
            raise SystemExit(f"twistd lightningstor: {key}: cannot listen on {where}: {cause}")
        result[0].raiseException()
    return result[0] if result else None


def prepare_s3_port(port: tcp.Port, *, one_accept: bool, balancer: AcceptBalancer | None = None) -> None:
    """Set up the listening S3 port (TLS or not: TLS is a protocol wrapper
    above the connection, which then writes ciphertext, eagerly too).

    Its connections become :class:`EagerServer`; ``one_accept`` (a port
    shared by worker processes) takes one connection per wake-up
    (:func:`accept_one_at_a_time`); ``balancer`` (that worker's share of the
    connection table) counts the connections, decides whether a wake-up
    accepts at all, and is stopped when the port closes.  A single process
    passes neither: it only gets the eager connections.
    """
    if not isinstance(port, tcp.Port) or port.transport is not tcp.Server:
        # Both are set by lightningstor (a TCP endpoint, or an adopted TCP
        # socket); anything else would lose its own connection class.
        raise TypeError(f"not a plain TCP port: {port!r}")
    port.transport = EagerServer
    port.balancer = balancer  # type: ignore[attr-defined]  # what each EagerServer reports to
    _hook_accepts(port, one_accept=one_accept, balancer=balancer)


def accept_one_at_a_time(port: tcp.Port) -> None:
    """Make a listening port shared by workers take one connection per wake-up.

    Every worker's reactor is woken when a connection arrives on the shared
    socket.  Twisted's ``Port.doRead`` then accepts as many as are queued
    (up to ``numberAccepts``, which it raises under load), so a burst of
    keep-alive connections (a client's connection pool, a benchmark's
    sixteen) all went to whichever worker woke first: measured, 16 of 16 in
    three bursts of five.  A connection stays with its worker, so that
    worker did all the work while the other idled.  Taking one at a time
    (nginx's ``multi_accept off``) lets the workers alternate, and a worker
    busy with a long reactor turn leaves the next connection to an idle one.
    How many each worker ends up holding is evened out by
    :mod:`lightningstor.worker_balance` (the S3 port's ``balancer``).
    """
    _hook_accepts(port, one_accept=True, balancer=None)


def _hook_accepts(port: tcp.Port, *, one_accept: bool, balancer: AcceptBalancer | None) -> None:
    """Wrap ``port.doRead`` once for both accept rules, and its closing for
    the balancer; a port with neither rule is left as Twisted made it."""
    if balancer is not None:
        balancer.attach(port)
        close = port.loseConnection

        def stop(*args: Any, **kwargs: Any) -> Any:
            balancer.stop()
            return close(*args, **kwargs)

        port.loseConnection = port.stopListening = stop  # type: ignore[method-assign]
    if not one_accept and balancer is None:
        return
    read = port.doRead

    def do_read() -> Any:
        if balancer is not None and not balancer.before_accept():
            return None
        if one_accept:
            port.numberAccepts = 1
        result = read()
        if balancer is not None:
            balancer.after_accept()
        return result

    port.doRead = do_read  # type: ignore[method-assign]


def bytes_delivered(transport: Any) -> int | None:
    """How many bytes of the :class:`EagerServer` under ``transport``
    (through protocol wrappers, TLS included) the peer has acknowledged so
    far; None if there is none (another kind of transport).

    What the socket took is not enough: the kernel's send buffer holds
    megabytes, and Linux reports the socket writable again only once about a
    third of it has drained, so a client reading 64 KiB a second left the
    socket unwritable for many seconds.  The bytes still in the kernel's
    send queue (``SIOCOUTQ``: unsent or not yet acknowledged) are taken off;
    a peer acknowledges data as its receive window opens, that is as the
    client reads.  Where the queue cannot be asked, what the socket took is
    the answer.
    """
    for _ in range(4):
        if isinstance(transport, EagerServer):
            return transport.sent - _queued(transport)
        if not isinstance(transport, ProtocolWrapper):
            return None
        transport = transport.transport
    return None


def _queued(connection: tcp.Connection) -> int:
    """Bytes in the kernel's send queue of ``connection``'s socket (0 if
    the platform cannot tell)."""
    if _OUTQ is None:
        return 0
    try:
        raw = fcntl.ioctl(connection.socket.fileno(), _OUTQ, b"\0\0\0\0")
    except (OSError, ValueError):  # closed meanwhile
        return 0
    return int(struct.unpack("i", raw)[0])


def tcp_transport(transport: Any) -> tcp.Connection | None:
    """The plain TCP connection under ``transport``, through wrappers such as
    the connection limits' (``ProtocolWrapper``); None under TLS (its own
    buffering decides how the bytes move) or for anything else."""
    for _ in range(4):
        if isinstance(transport, tcp.Connection):
            return transport
        if isinstance(transport, TLSMemoryBIOProtocol) or not isinstance(transport, ProtocolWrapper):
            return None
        transport = transport.transport
    return None

"""Spreading keep-alive connections evenly over worker processes.

The workers of :mod:`lightningstor.workers` accept from one shared listening
socket.  A keep-alive connection stays with the worker that accepted it for
its whole life, so *who accepts* decides how the load of a connection pool
is split.  Left to the kernel, every worker is woken for every pending
connection and whichever gets to ``accept()`` first wins: even taking one
connection per wake-up, two workers split a burst of 16 connections 9.8/6.2
on average, 14/2 at worst, and a benchmark's c=16 figures moved by about
30% from run to run with that split.

The fix is a table of open connections per worker in shared memory
(:class:`ConnectionTable`, one 16-byte slot per worker, created by the
supervisor and inherited by every worker) and an accept rule
(:class:`AcceptBalancer`): a worker woken by a pending connection accepts it
only if, afterwards, it holds no more than its fair share
``ceil(open connections of all live workers / live workers)``.  Otherwise
it stops reading the listening socket for a millisecond (``_TICK``) and
looks again, so the worker with fewer connections - which the rule always
lets accept - takes it.  A burst of 16 then splits 8/8.  Open connections
are what is balanced, idle keep-alive ones included: they are what a
client will send its next requests on.

Why it cannot starve a connection:

* the rule always lets the worker with the fewest connections accept, so
  with accurate counts some worker is always willing;
* a dead worker's slot is cleared by the supervisor (it no longer counts as
  live), and a stopping worker clears its own when its port closes, so the
  survivors' fair share is computed over the workers that still accept;
* counts can still be wrong, or the worker that should accept be busy (a
  long reactor turn, descheduled) or stuck (SIGSTOP): during such a *stall*
  - connections pending, the others accepting nothing - the worker above
  its share takes one connection per ``_PATIENCE`` (5 ms), and every
  pending connection once the stall has lasted ``_STUCK`` (50 ms).  The
  stall ends as soon as another worker accepts or the queue is empty.  So
  the balancing delays a connection by at most 5 ms while the other worker
  is busy, and a worker that stops accepting altogether costs 50 ms once.

Cost: nothing per request.  Per connection, one counter update at accept and
at close, and one read of the table (a few slots) per accept decision; a
worker above its share re-registers the socket each millisecond while a
connection waits for another worker.  An idle worker above its share costs
nothing: it is only woken when a connection is pending.

Alternatives (measured with two processes holding the connections they
accept, 16-connection bursts): ``SO_REUSEPORT`` with one socket per worker
hashes each connection to a worker independently - a binomial split,
9.4/16 for the busier worker on average, up to 11 - and the connections
queued on a worker's socket are lost when it dies; ``EPOLLEXCLUSIVE``
(8.7/16, up to 10) wakes one waiting worker, which spreads by idleness, not
by connections held, and Twisted's reactor cannot register a socket with
it.
"""

from __future__ import annotations

import mmap
import os
import select
import struct
import tempfile

# The supervisor program imports this module: no typing at run time there.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["AcceptBalancer", "ConnectionTable"]

# One slot per worker: pid (0 = no live worker in this slot), open
# connections, connections accepted so far (wraps; only compared for change).
_SLOT = struct.Struct("<iII4x")
# How long an over-share worker stops reading before looking again: short,
# since connections may be pending that the worker will be allowed to take
# once another worker has accepted.
_TICK = 0.001
# How long an over-share worker leaves pending connections to the others,
# when none of them accepts anything meanwhile, before it takes one itself
# (and then one per ``_PATIENCE``): the most a connection waits because of
# the balancing when the worker that should take it is busy.
_PATIENCE = 0.005
# After this long without the others accepting anything while connections
# stay pending, they are taken as stuck: the worker takes every connection.
_STUCK = 0.05


class ConnectionTable:
    """Per-worker counts of open and accepted connections in shared memory.

    The supervisor creates it (an anonymous memory file, :meth:`create`);
    each worker maps the inherited descriptor (:meth:`attach`).  Each slot
    has one writer at a time - its worker, or the supervisor once that
    worker has died - so plain stores suffice; a reader seeing a count a
    moment late only makes the balancing briefly less exact.
    """

    def __init__(self, fd: int, slots: int) -> None:
        self.fd = fd
        self.slots = slots
        self._map = mmap.mmap(fd, slots * _SLOT.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._all = struct.Struct("<" + "iII4x" * slots)

    @classmethod
    def create(cls, slots: int) -> ConnectionTable:
        """A zeroed table in a file with no name (memfd on Linux), to be
        inherited by the workers as a descriptor."""
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("lightningstor-connections", os.MFD_CLOEXEC)
        else:  # pragma: no cover - other POSIX systems
            fd, path = tempfile.mkstemp(prefix="lightningstor-connections-")
            os.unlink(path)
        os.ftruncate(fd, slots * _SLOT.size)
        return cls(fd, slots)

    @classmethod
    def attach(cls, fd: int) -> ConnectionTable:
        """Map an inherited table; the descriptor is closed (the mapping stays)."""
        slots = os.fstat(fd).st_size // _SLOT.size
        table = cls(fd, slots)
        os.close(fd)
        table.fd = -1
        return table

    def read(self) -> list[tuple[int, int, int]]:
        """``[(pid, open, accepted)]`` for every slot."""
        values = self._all.unpack_from(self._map)
        return [values[i : i + 3] for i in range(0, len(values), 3)]

    def write(self, index: int, pid: int, open_: int, accepted: int) -> None:
        _SLOT.pack_into(self._map, index * _SLOT.size, pid, open_, accepted & 0xFFFFFFFF)

    def clear(self, index: int, pid: int | None = None) -> None:
        """Mark slot ``index`` as having no live worker (only if it still
        belongs to ``pid`` when given: a restarted worker may own it)."""
        if 0 <= index < self.slots and (pid is None or self.read()[index][0] == pid):
            self.write(index, 0, 0, 0)

    def close(self) -> None:
        self._map.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class AcceptBalancer:
    """Decides, on each wake-up of a worker's listening port, whether this
    worker accepts the pending connection (see the module docstring).

    It does not touch the port's methods itself: the S3 port is hooked once,
    for all its rules, by :func:`lightningstor.tcp.prepare_s3_port`, which
    calls :meth:`attach` when the port is set up, :meth:`before_accept` and
    :meth:`after_accept` around each wake-up and :meth:`stop` when the port
    closes; the port's connections report :meth:`opened` and :meth:`closed`.
    """

    def __init__(
        self,
        table: ConnectionTable,
        index: int,
        reactor: Any,
        *,
        pid: int | None = None,
        tick: float = _TICK,
        patience: float = _PATIENCE,
        stuck: float = _STUCK,
    ) -> None:
        self.table = table
        self.index = index
        self.reactor = reactor
        self.pid = os.getpid() if pid is None else pid
        self.tick = tick
        self.patience = patience
        self.stuck = stuck
        self.open = 0
        self.accepted = 0
        self.port: Any = None
        self._resume_call: Any = None
        self._stopped = False
        # A stall: connections stay pending while this worker is over its
        # share and the others accept nothing.  Since when, their accepted
        # total then, and when this worker last took one regardless.
        self._stall_since: float | None = None
        self._others_accepted = 0
        self._took_at = 0.0
        self._fallback = False
        self._poll: Any = None

    # -- counting ----------------------------------------------------------

    def register(self) -> None:
        self.table.write(self.index, self.pid, self.open, self.accepted)

    def opened(self) -> None:
        self.open += 1
        self.accepted += 1
        if not self._stopped:
            self.table.write(self.index, self.pid, self.open, self.accepted)

    def closed(self) -> None:
        self.open -= 1
        if not self._stopped:
            self.table.write(self.index, self.pid, self.open, self.accepted)

    # -- the rule ------------------------------------------------------------

    def may_accept(self) -> bool:
        """Whether to accept the pending connection now: if this worker is
        within its fair share afterwards, or during a stall (the others
        accept nothing) once per ``patience``, and always once the stall has
        lasted ``stuck``."""
        self._fallback = False
        others = 0
        live = 1
        others_accepted = 0
        for index, (pid, open_, accepted) in enumerate(self.table.read()):
            if index != self.index and pid != 0:
                live += 1
                others += open_
                others_accepted += accepted
        if live == 1 or self.open + 1 <= -(-(self.open + others + 1) // live):
            self._stall_since = None
            return True
        now = self.reactor.seconds()
        if self._stall_since is None or others_accepted != self._others_accepted:
            self._stall_since = self._took_at = now
            self._others_accepted = others_accepted
            return False
        if now - self._stall_since < self.stuck and now - self._took_at < self.patience:
            return False
        self._took_at = now
        self._fallback = True
        return True

    def _pending(self) -> bool:
        """Whether a connection is waiting on the listening socket (a poll
        with no timeout; only called during a stall)."""
        if self._poll is None:
            self._poll = select.poll()
            self._poll.register(self.port.fileno(), select.POLLIN)
        try:
            return bool(self._poll.poll(0))
        except OSError:
            return False

    # -- the port ------------------------------------------------------------

    def attach(self, port: Any) -> None:
        """``port`` (a listening ``tcp.Port``) is the one this worker accepts
        from: claim the slot."""
        self.port = port
        self.register()

    def before_accept(self) -> bool:
        """Whether this wake-up of the port may accept.  Not after
        :meth:`stop`; not above the fair share (:meth:`may_accept`), and then
        the port stops reading for a tick, so the reactor does not wake this
        worker again and again for a connection left to the others."""
        if self._stopped:
            return False
        if not self.may_accept():
            self._pause()
            return False
        return True

    def after_accept(self) -> None:
        """The port has accepted: a stall taken over by this worker (the
        fallback) is over once nothing is left pending."""
        if self._fallback and not self._pending():
            self._stall_since = None  # the queue is empty: the stall is over

    def _pause(self) -> None:
        if self._resume_call is None:
            self.port.stopReading()
            self._resume_call = self.reactor.callLater(self.tick, self._resume)

    def _resume(self) -> None:
        self._resume_call = None
        if not self._stopped and self.port.connected and not self.port.disconnecting:
            if not self._pending():
                self._stall_since = None  # taken by another worker meanwhile
            self.port.startReading()

    def stop(self) -> None:
        """The port is closing: no more accepts here, and the slot is freed
        so the other workers stop counting this one as live."""
        if self._stopped:
            return
        self._stopped = True
        if self._resume_call is not None and self._resume_call.active():
            self._resume_call.cancel()
        self._resume_call = None
        try:
            self.table.clear(self.index, self.pid)
        except ValueError:  # the mapping is closed already
            pass

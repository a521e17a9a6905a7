"""Per-node health and call admission for the ``distributed`` backend.

Why: node calls are blocking gRPC calls that hold a thread of the server's
shared io pool until they answer or hit their deadline (30 s for chunk
transfers).  A node that accepts connections but never answers (a hung
process, a stalled disk: a gray failure) would otherwise hold every thread
of that pool within a few writes, and every read whose placement starts
with it would wait the full deadline, piece after piece.  The approach is
the one Cassandra, Swift and MinIO take with a slow peer:

* **Bounded calls per node.**  At most ``limit`` calls to one node run at
  once (half the io pool when there are several nodes); further calls wait
  for one of that node's slots, never for another node's.  A hung node can
  therefore hold only its own slots.
* **Suspect nodes.**  A node whose call failed as unavailable (refused,
  timed out, overloaded) is *suspect* until a call to it, or a ``Health``
  probe, succeeds.  Probes run in the background, first ``backoff`` seconds
  after the failure, then at doubling intervals up to ``max_backoff`` while
  the node keeps failing.  Reads ask suspect nodes last (:meth:`order`).
* **Stalled nodes.**  A node whose slots have all been busy for ``stall``
  seconds is asked last by reads too, and a read with other replicas left
  waits at most its short deadline for a slot (:class:`NodeBusy`).
* **Fail fast instead of queueing on a stuck node.**  A suspect node gets
  one call at a time (a hung node then holds one thread, not ``limit``,
  once its earlier calls have ended); a call to it that would have to wait
  fails at once with :class:`NodeSuspect` (waiting calls too, the moment
  the node turns suspect).  When a node's
  slots have been busy for ``stall`` seconds and calls are waiting, a probe
  is sent at once: a node that does not answer it turns suspect within
  seconds, long before the stuck calls' own deadlines; a node that is only
  busy answers and its callers keep waiting their turn.

A node's suspect state is reported to ``on_suspect`` (node, suspect) when
it changes, which the server turns into the gauge
``lightningstor_storage_node_suspect{node}`` (lightningstor.metrics).

A call refused here is a failed replica operation like any other: a write
counts only the copies that succeeded toward its quorum, so refusing a
straggler never acknowledges a write with fewer copies; repair restores
the missing copy later.  Everything here runs on the reactor thread.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from lightningstor.storage.nodeclient import NodeTimeout, NodeUnavailable
from lightningstor.storage.placement import NodeAddress

log = Logger()

DEFAULT_BACKOFF = 10.0
"""Seconds from a node's failure to its first probe."""
MAX_BACKOFF = 60.0
"""The longest interval between probes of a node that keeps failing."""


class NodeSuspect(NodeUnavailable):
    """A call not sent: its node is suspect and all its call slots are busy."""


class NodeBusy(NodeTimeout):
    """A call not sent: it waited ``wait`` seconds for one of its node's
    slots (a read that has other replicas to ask).  Says nothing about the
    node's health."""


class _State:
    """One node: the calls running (token: start time), the calls waiting
    for a slot, and its health."""

    __slots__ = ("backoff", "probe_call", "probing", "running", "suspect", "waiting", "watch_call")

    def __init__(self) -> None:
        self.running: dict[int, float] = {}
        self.waiting: deque[defer.Deferred[None]] = deque()
        self.suspect = False
        self.backoff = 0.0
        self.probing = False
        self.probe_call: Any = None  # the scheduled back-off probe
        self.watch_call: Any = None  # the scheduled stall check


class NodeHealth:
    """Admission of calls to each node and its suspect state (module doc).

    ``probe(node)`` sends one cheap call (``Health``) and returns its
    Deferred; it is not subject to the slot limit, and one runs per node at
    a time.
    """

    def __init__(
        self,
        reactor: Any,
        nodes: Sequence[NodeAddress],
        probe: Callable[[NodeAddress], defer.Deferred[Any]],
        *,
        limit: int,
        stall: float,
        backoff: float = DEFAULT_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._reactor = reactor
        self._probe = probe
        self.limit = limit
        self.stall = stall
        self.base_backoff = backoff
        self.max_backoff = max_backoff
        self._nodes = {node: _State() for node in nodes}
        self._tokens = itertools.count()
        self._closed = False
        # Told (node, suspect) at each change of a node's suspect state.
        self.on_suspect: Callable[[NodeAddress, bool], None] | None = None

    # -- queries -------------------------------------------------------------

    def suspect(self, node: NodeAddress) -> bool:
        return self._nodes[node].suspect

    def stalled(self, node: NodeAddress) -> bool:
        """All of ``node``'s slots busy, the oldest call for ``stall`` seconds."""
        state = self._nodes[node]
        if len(state.running) < self.limit:
            return False
        return self._reactor.seconds() - min(state.running.values()) >= self.stall

    def order(self, nodes: Sequence[NodeAddress]) -> list[NodeAddress]:
        """``nodes`` with the suspect and stalled ones moved to the end,
        order kept otherwise."""
        late = {n for n in nodes if self._nodes[n].suspect or self.stalled(n)}
        return [n for n in nodes if n not in late] + [n for n in nodes if n in late]

    def running(self, node: NodeAddress) -> int:
        return len(self._nodes[node].running)

    # -- calls ---------------------------------------------------------------

    def run(
        self, node: NodeAddress, start: Callable[[], defer.Deferred[Any]], wait: float | None = None
    ) -> defer.Deferred[Any]:
        """``start()`` once ``node`` has a free slot; its result, recorded as
        a sign of the node's health (``NodeUnavailable``: down, anything
        else: it answered).  A call that waits longer than ``wait`` seconds
        for a slot fails with :class:`NodeBusy`."""
        state = self._nodes[node]
        if len(state.running) < (1 if state.suspect else self.limit):
            return self._start(node, state, start)
        if state.suspect:
            return defer.fail(NodeSuspect(
                f"node {node.address}: not answering, {len(state.running)} calls to it still pending"
            ))
        def leave(cancelled: defer.Deferred[None]) -> None:
            # A caller gone (its client went away): its place in the queue
            # goes, so the next freed slot wakes a caller still waiting.
            if cancelled in state.waiting:
                state.waiting.remove(cancelled)

        waiter: defer.Deferred[None] = defer.Deferred(leave)
        state.waiting.append(waiter)
        self._watch(node, state)
        if wait is not None:
            def give_up() -> None:
                state.waiting.remove(waiter)
                waiter.errback(NodeBusy(f"node {node.address}: no free call slot within {wait:g} s"))

            timer = self._reactor.callLater(wait, give_up)
            waiter.addBoth(lambda result: (timer.cancel() if timer.active() else None, result)[1])
        return waiter.addCallback(lambda _: self._start(node, state, start))

    def _start(self, node: NodeAddress, state: _State, start: Callable[[], defer.Deferred[Any]]) -> Any:
        """The call, in a slot held until the call itself ends.  Its caller
        gets a Deferred of its own: cancelling it (the caller went away)
        fails it at once, but the call runs on in its thread (a thread is
        not stopped), so its slot stays taken and its outcome still counts
        for the node's health until then; otherwise a node could be sent
        more calls than its slots while cancelled ones still ran."""
        token = next(self._tokens)
        state.running[token] = self._reactor.seconds()
        try:
            call = start()
        except Exception:
            call = defer.fail()
        answer: defer.Deferred[Any] = defer.Deferred()

        def done(result: Any) -> None:
            del state.running[token]
            if isinstance(result, Failure) and result.check(NodeUnavailable) and not result.check(NodeSuspect):
                self.failed(node, result.value)
            elif not (isinstance(result, Failure) and result.check(defer.CancelledError)):
                self.answered(node)
            while state.waiting and len(state.running) < self.limit:
                waiter = state.waiting.popleft()
                if not waiter.called:
                    waiter.callback(None)
                    break
            if not answer.called:
                answer.callback(result) if not isinstance(result, Failure) else answer.errback(result)
            elif isinstance(result, Failure):
                result.trap(Exception)  # the caller is gone: nobody to tell

        call.addBoth(done)
        return answer

    # -- health --------------------------------------------------------------

    def failed(self, node: NodeAddress, error: object) -> None:
        """``node`` did not answer a call: suspect until it answers again."""
        state = self._nodes[node]
        if state.suspect:
            return
        state.suspect = True
        state.backoff = self.base_backoff
        log.warn("Storage node {node} is not answering ({error}); reads ask it last, probing it in {delay:.0f} s",
                 node=node.address, error=error, delay=state.backoff)
        self._report(node, True)
        waiting, state.waiting = state.waiting, deque()
        for waiter in waiting:
            waiter.errback(NodeSuspect(f"node {node.address}: not answering ({error})"))
        self._schedule_probe(node, state)

    def answered(self, node: NodeAddress) -> None:
        state = self._nodes[node]
        if not state.suspect:
            return
        state.suspect = False
        state.backoff = 0.0
        if state.probe_call is not None and state.probe_call.active():
            state.probe_call.cancel()
        state.probe_call = None
        log.info("Storage node {node} answers again", node=node.address)
        self._report(node, False)

    def _report(self, node: NodeAddress, suspect: bool) -> None:
        if self.on_suspect is not None:
            try:
                self.on_suspect(node, suspect)
            except Exception:
                log.failure("Reporting the state of storage node {node} failed", node=node.address)

    def _schedule_probe(self, node: NodeAddress, state: _State) -> None:
        if self._closed or (state.probe_call is not None and state.probe_call.active()):
            return
        state.probe_call = self._reactor.callLater(state.backoff, self._send_probe, node, True)

    def _send_probe(self, node: NodeAddress, backoff: bool) -> None:
        """Probe ``node``; ``backoff``: this is a suspect node's scheduled
        probe, whose failure doubles the interval to the next one."""
        state = self._nodes[node]
        if self._closed or state.probing:
            return
        state.probing = True
        try:
            d = self._probe(node)
        except Exception:
            d = defer.fail()

        def done(result: Any) -> None:
            state.probing = False
            if not isinstance(result, Failure):
                self.answered(node)
            elif not state.suspect:
                self.failed(node, result.value)
            elif backoff:
                state.backoff = min(self.max_backoff, state.backoff * 2)
                self._schedule_probe(node, state)

        d.addBoth(done)

    def _watch(self, node: NodeAddress, state: _State) -> None:
        """Calls wait for ``node``: probe it once its slots have all been
        busy for ``stall`` seconds (see the module doc)."""
        if self._closed or state.suspect or (state.watch_call is not None and state.watch_call.active()):
            return
        oldest = min(state.running.values(), default=self._reactor.seconds())
        delay = max(0.0, oldest + self.stall - self._reactor.seconds())
        state.watch_call = self._reactor.callLater(delay, self._check_stall, node)

    def _check_stall(self, node: NodeAddress) -> None:
        state = self._nodes[node]
        state.watch_call = None
        if self._closed or state.suspect or not state.waiting or len(state.running) < self.limit:
            return
        oldest = min(state.running.values())
        if self._reactor.seconds() - oldest >= self.stall:
            self._send_probe(node, False)
        else:
            self._watch(node, state)

    def close(self) -> None:
        """Stop scheduling probes (calls already running finish)."""
        self._closed = True
        for state in self._nodes.values():
            for call in (state.probe_call, state.watch_call):
                if call is not None and call.active():
                    call.cancel()
            state.probe_call = state.watch_call = None

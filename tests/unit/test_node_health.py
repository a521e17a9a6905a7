"""``NodeHealth`` on a fake clock: per-node call slots, suspect nodes,
probes with a doubling back-off, and calls that fail at once instead of
queueing behind a node that does not answer."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from lightningstor.storage.distributed import parse_node
from lightningstor.storage.health import NodeBusy, NodeHealth, NodeSuspect
from lightningstor.storage.nodeclient import NodeTimeout, NodeUnavailable
from lightningstor.storage.placement import NodeAddress

A, B, C = (parse_node(f"http://node-{i}:9002") for i in range(3))


class Probes:
    """The probes sent, each answered by the test."""

    def __init__(self) -> None:
        self.sent: list[tuple[NodeAddress, defer.Deferred[None]]] = []

    def __call__(self, node: NodeAddress) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self.sent.append((node, d))
        return d


def make(limit: int = 2) -> tuple[NodeHealth, Clock, Probes]:
    clock, probes = Clock(), Probes()
    return NodeHealth(clock, [A, B, C], probes, limit=limit, stall=2.0, backoff=10.0, max_backoff=40.0), clock, probes


def outcome(d: defer.Deferred[Any]) -> Any:
    """The Deferred's result or Failure, which must be there already."""
    found: list[Any] = []
    d.addBoth(found.append)
    assert found, "not fired"
    return found[0]


def test_a_failed_node_is_read_last_until_it_answers() -> None:
    health, _, _ = make()
    assert health.order([A, B, C]) == [A, B, C]
    call: defer.Deferred[Any] = defer.Deferred()
    d = health.run(A, lambda: call)
    call.errback(NodeTimeout("node A: DEADLINE_EXCEEDED"))
    assert outcome(d).check(NodeTimeout)
    assert health.suspect(A) and health.order([A, B, C]) == [B, C, A]
    # A suspect node with a free slot is still called; its answer clears it.
    # (Errors that are answers, such as a missing chunk, count as answers.)
    assert outcome(health.run(A, lambda: defer.fail(KeyError("missing")))).check(KeyError)
    assert not health.suspect(A) and health.order([A, B, C]) == [A, B, C]


def test_calls_wait_for_their_own_nodes_slots_and_fail_at_once_when_it_is_suspect() -> None:
    health, _, _ = make(limit=2)
    stuck = [defer.Deferred() for _ in range(2)]
    for d in stuck:
        health.run(A, lambda d=d: d).addErrback(lambda _: None)  # type: ignore[misc]
    assert health.running(A) == 2
    waiting = health.run(A, lambda: defer.succeed("late"))
    assert not waiting.called
    assert outcome(health.run(B, lambda: defer.succeed("b"))) == "b"  # other nodes are not held up
    stuck[0].errback(NodeUnavailable("node A: UNAVAILABLE"))
    # The node turned suspect: the waiting call fails instead of taking the slot.
    assert outcome(waiting).check(NodeSuspect)
    refused = health.run(A, lambda: defer.succeed("y"))
    assert outcome(refused).check(NodeSuspect), "suspect, a call still pending: refused at once"
    stuck[1].errback(NodeTimeout("node A: DEADLINE_EXCEEDED"))
    # A suspect node gets one call at a time: a hung one holds one thread.
    sent: defer.Deferred[Any] = defer.Deferred()
    health.run(A, lambda: sent)
    assert health.running(A) == 1
    assert outcome(health.run(A, lambda: defer.succeed("z"))).check(NodeSuspect)
    sent.callback("x")  # it answered: no longer suspect, every slot usable again
    assert not health.suspect(A)
    both = [defer.Deferred(), defer.Deferred()]
    for d in both:
        health.run(A, lambda d=d: d)  # type: ignore[misc]
    assert health.running(A) == 2
    for d in both:
        d.callback(None)


def test_probes_back_off_while_the_node_keeps_failing_and_clear_it() -> None:
    health, clock, probes = make()
    health.failed(A, "timed out")
    clock.advance(9.9)
    assert probes.sent == []
    clock.advance(0.1)
    assert [node for node, _ in probes.sent] == [A]
    probes.sent[0][1].errback(NodeUnavailable("still down"))
    clock.advance(19.9)
    assert len(probes.sent) == 1
    clock.advance(0.1)
    assert len(probes.sent) == 2  # 20 s later: doubled
    probes.sent[1][1].errback(NodeUnavailable("still down"))
    clock.advance(40)
    probes.sent[2][1].errback(NodeUnavailable("still down"))
    clock.advance(40)  # at most max_backoff
    assert len(probes.sent) == 4 and health.suspect(A)
    probes.sent[3][1].callback(None)
    assert not health.suspect(A)
    clock.advance(100)
    assert len(probes.sent) == 4  # no more probes once it answers


def test_a_node_whose_slots_stay_busy_is_probed_and_read_last() -> None:
    """No call has failed yet (the stuck ones wait for their 30 s
    deadline): after ``stall`` seconds with every slot busy the node is read
    last, a waiting call triggers a probe, and the probe's failure makes the
    node suspect, failing the waiting calls."""
    health, clock, probes = make(limit=1)
    stuck: defer.Deferred[Any] = defer.Deferred()
    health.run(A, lambda: stuck).addErrback(lambda _: None)
    waiting = health.run(A, lambda: defer.succeed("late"))
    clock.advance(1.9)
    assert probes.sent == [] and health.order([A, B]) == [A, B]
    clock.advance(0.1)
    assert health.order([A, B]) == [B, A] and not health.suspect(A)
    assert [node for node, _ in probes.sent] == [A]
    probes.sent[0][1].errback(NodeTimeout("no answer"))
    assert health.suspect(A)
    assert outcome(waiting).check(NodeSuspect)
    stuck.errback(NodeTimeout("deadline"))


def test_a_busy_node_that_answers_its_probe_keeps_its_queue() -> None:
    health, clock, probes = make(limit=1)
    first: defer.Deferred[Any] = defer.Deferred()
    health.run(A, lambda: first)
    waiting = health.run(A, lambda: defer.succeed("second"))
    clock.advance(2)
    probes.sent[0][1].callback(None)
    assert not health.suspect(A) and not waiting.called
    first.callback("first")
    assert outcome(waiting) == "second"


def test_a_read_waits_for_a_slot_no_longer_than_its_deadline() -> None:
    health, clock, _ = make(limit=1)
    stuck: defer.Deferred[Any] = defer.Deferred()
    health.run(A, lambda: stuck)
    read = health.run(A, lambda: defer.succeed("data"), 1.5)
    clock.advance(1.5)
    result = outcome(read)
    assert isinstance(result, Failure) and result.check(NodeBusy) and result.check(NodeTimeout)
    assert not health.suspect(A), "waiting says nothing about the node"
    stuck.callback(None)
    assert health.running(A) == 0


def test_close_stops_the_probes() -> None:
    health, clock, probes = make()
    health.failed(A, "down")
    health.close()
    clock.advance(100)
    assert probes.sent == [] and clock.getDelayedCalls() == []


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        NodeHealth(Clock(), [A], Probes(), limit=0, stall=1.0)


def test_a_cancelled_waiter_leaves_the_queue_and_the_freed_slot_wakes_the_next() -> None:
    """A call waiting for a slot whose caller went away (a copy whose client
    disconnected) is cancelled: it stayed in the queue, the next freed slot
    was handed to it and lost, and a write queued behind it never started
    although the node was idle."""
    health, clock, _ = make(limit=1)
    gate: defer.Deferred[str] = defer.Deferred()
    running = health.run(A, lambda: gate)
    gone = health.run(A, lambda: defer.succeed("read"), wait=2.0)
    queued = health.run(A, lambda: defer.succeed("write"))
    gone.cancel()
    assert outcome(gone).check(defer.CancelledError)
    gate.callback("done")
    assert outcome(running) == "done"
    assert outcome(queued) == "write"
    assert health.running(A) == 0
    clock.advance(60)  # the cancelled call's give-up timer does nothing either


def test_a_cancelled_call_keeps_its_slot_until_it_ends_and_its_outcome_counts() -> None:
    """Cancelling a running call fails its caller at once, but the call runs
    on in its thread: its slot stayed free for another call meanwhile (a
    node got more calls than its slots), and the cancellation cleared a
    suspect node as if it had answered.  Now the slot is held until the
    call ends, and what the node then answers is what counts."""
    health, _, _ = make(limit=1)
    failing: defer.Deferred[Any] = defer.Deferred()
    d = health.run(A, lambda: failing)
    failing.errback(NodeTimeout("node A: DEADLINE_EXCEEDED"))
    assert outcome(d).check(NodeTimeout) and health.suspect(A)
    thread: defer.Deferred[Any] = defer.Deferred()  # a call on a pool thread: not cancellable
    call = health.run(A, lambda: thread)
    call.cancel()
    assert outcome(call).check(defer.CancelledError)
    assert health.suspect(A) and health.running(A) == 1  # still running, on its thread
    assert outcome(health.run(A, lambda: defer.succeed("x"))).check(NodeSuspect)  # no slot for another
    thread.callback("late answer")
    assert health.running(A) == 0 and not health.suspect(A)  # the node did answer

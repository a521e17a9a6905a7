"""lightningstor.deferreds.Running and settled: waiting at close for the
Deferreds a component started, without taking their outcomes."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from lightningstor.deferreds import Running, settled


def test_settled_waits_for_every_running_deferred() -> None:
    running = Running()
    first: Deferred[int] = running.track(Deferred())
    second: Deferred[int] = running.track(Deferred())
    assert len(running) == 2
    waited: list[Any] = []
    running.settled().addCallback(waited.append)
    first.callback(1)
    assert waited == [] and len(running) == 1
    second.callback(2)
    assert waited == [None] and len(running) == 0
    done: list[Any] = []
    running.settled().addCallback(done.append)  # nothing running: at once
    assert done == [None]


def test_waiting_leaves_each_outcome_to_its_own_chain() -> None:
    """A failure reaches the errback its owner adds later, and a result is
    unchanged: the close only watched."""
    running = Running()
    failing: Deferred[int] = running.track(Deferred())
    ok: Deferred[int] = running.track(Deferred())
    waited: list[Any] = []
    running.settled().addCallback(waited.append)
    failing.errback(ValueError("lost"))
    ok.callback(7)
    assert waited == [None]
    seen: list[Any] = []
    failing.addErrback(seen.append)
    ok.addCallback(seen.append)
    assert isinstance(seen[0], Failure) and seen[0].check(ValueError) and seen[1] == 7


def test_settled_of_one_deferred() -> None:
    d: Deferred[str] = Deferred()
    fired: list[Any] = []
    settled(d).addCallback(fired.append)
    d.callback("x")
    assert fired == [None] and d.result == "x"

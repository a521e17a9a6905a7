"""Core.readiness: a component that never answers makes the probe say so in time."""

from __future__ import annotations

import time
from typing import Any

import pytest_twisted
from twisted.internet.defer import Deferred


class _Hung:
    """Wraps a store or backend whose check() never fires (a store without quorum)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.pending: list[Deferred[None]] = []

    def check(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.pending.append(d)
        return d

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest_twisted.inlineCallbacks
def test_hung_component_is_reported_within_the_timeout(make_core: Any) -> None:
    core = make_core()
    healthy = yield core.readiness(timeout=2.0)
    assert healthy == {"metadata": None, "storage": None}
    hung = _Hung(core.store)
    core.store = hung
    started = time.monotonic()
    status = yield core.readiness(timeout=0.3)
    elapsed = time.monotonic() - started
    assert status["storage"] is None
    assert status["metadata"] == "no answer within 0.3 s"
    assert 0.25 <= elapsed < 2.0
    assert hung.pending and hung.pending[0].called  # cancelled by the timeout
    core.store = hung.inner

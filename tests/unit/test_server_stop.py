"""server.py ``CoreService``: what a clean stop does with the freed chunks
still waiting out ``[storage] free_delay_seconds`` (storage/retired.py).

Alone on its store (SQLite) the server deletes them at once: its own
requests have drained.  On a store other API servers may share (any other,
as for the job leases, ``JobLeases.shared``) their GETs may still stream
those chunks, so the queue is left to the orphan collector.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from lightningstor.config import Settings
from lightningstor.server import FLUSH_SECONDS, CoreService, JobLeases


class Chunks:
    """The ChunkManager calls a stop makes, recorded."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def flush_retired(self, timeout_seconds: float) -> Deferred[int]:
        self.calls.append(("flush", timeout_seconds))
        return succeed(0)

    def leave_retired(self) -> int:
        self.calls.append("leave")
        return 0


def _closable() -> Any:
    return SimpleNamespace(close=lambda: succeed(None))


@pytest.mark.parametrize(("store", "expected"), [("sqlite", [("flush", FLUSH_SECONDS)]), ("etcd", ["leave"])])
def test_a_stop_flushes_freed_chunks_only_when_alone_on_the_store(store: str, expected: list[Any]) -> None:
    chunks = Chunks()
    core: Any = SimpleNamespace(
        chunks=chunks, access=SimpleNamespace(authorizer=_closable()), backend=_closable(), store=_closable()
    )
    leases = JobLeases(SimpleNamespace(name=store), "127.0.0.1:9000", Clock())
    service = CoreService(core, Settings(), Clock(), {}, shared_store=leases.shared)  # as server.build does
    service.running = True
    done: list[Any] = []
    service.stopService().addBoth(done.append)
    assert done == [None]
    assert chunks.calls == expected

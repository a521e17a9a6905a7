"""server.py ``CoreService``: what a clean stop does with the freed chunks
still waiting out ``[storage] free_delay_seconds`` (storage/retired.py).

Alone on its store (SQLite) the server deletes them at once: its own
requests have drained.  On a store other API servers may share (any other,
as for the job leases, ``JobLeases.shared``), or between worker processes,
their GETs may still stream those chunks, so the queue is recorded in the
store with each batch's due time (core/freedchunks.py) for a running server
to delete.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from lightningstor.config import Settings
from lightningstor.core import keys
from lightningstor.server import FLUSH_SECONDS, RECORD_ROUNDS, CoreService, JobLeases


class Chunks:
    """The ChunkManager calls a stop makes, recorded."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def flush_retired(self, timeout_seconds: float) -> Deferred[int]:
        self.calls.append(("flush", timeout_seconds))
        return succeed(0)

    def take_retired(self) -> list[tuple[float, list[str]]]:
        """One batch the first time; the queue is empty after."""
        self.calls.append("take")
        return [] if self.calls.count("take") > 1 else [(30.0, ["a", "b"])]


class Store:
    """The metadata store: transactions recorded."""

    def __init__(self) -> None:
        self.txns: list[Any] = []

    def txn(self, compares: Any, operations: Any) -> Deferred[None]:
        self.txns.append(list(operations))
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)


def _closable() -> Any:
    return SimpleNamespace(close=lambda: succeed(None))


@pytest.mark.parametrize(("store", "expected"), [("sqlite", [("flush", FLUSH_SECONDS)]), ("etcd", ["take", "take"])])
def test_a_stop_flushes_freed_chunks_only_when_alone_on_the_store(store: str, expected: list[Any]) -> None:
    chunks = Chunks()
    metadata = Store()
    core: Any = SimpleNamespace(
        chunks=chunks, access=SimpleNamespace(authorizer=_closable()), backend=_closable(), store=metadata
    )
    leases = JobLeases(SimpleNamespace(name=store), "127.0.0.1:9000", Clock())
    service = CoreService(core, Settings(), Clock(), {}, shared_store=leases.shared)  # as server.build does
    service.running = True
    done: list[Any] = []
    service.stopService().addBoth(done.append)
    assert done == [None]
    assert chunks.calls == expected
    if store == "sqlite":
        assert metadata.txns == []
    else:
        # The waiting batch, recorded with its due time for a running server.
        [[put]] = metadata.txns
        assert put.key.startswith(keys.FREED_CHUNKS) and json.loads(put.value) == ["a", "b"]
        due_ms = int(put.key[len(keys.FREED_CHUNKS) :].split(b"/")[0], 16)
        assert abs(due_ms / 1000 - (time.time() + 30.0)) < 5.0


def test_a_stop_records_what_was_freed_meanwhile_in_a_few_rounds_at_most() -> None:
    """Chunks freed while the first batches are written (a background pass
    finishing) are taken and recorded too; a queue that never empties
    costs a bounded number of rounds, not an endless stop."""
    chunks = Chunks()
    chunks.take_retired = lambda: [(30.0, ["again"])]  # type: ignore[method-assign]
    metadata = Store()
    core: Any = SimpleNamespace(
        chunks=chunks, access=SimpleNamespace(authorizer=_closable()), backend=_closable(), store=metadata
    )
    service = CoreService(core, Settings(), Clock(), {}, shared_store=True)
    service.running = True
    done: list[Any] = []
    service.stopService().addBoth(done.append)
    assert done == [None]
    assert len(metadata.txns) == RECORD_ROUNDS

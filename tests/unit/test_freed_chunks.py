"""core/freedchunks.py: the freed chunks a stopping server records, and the
sweep that deletes each row once due, against a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from lightningstor.core import freedchunks, keys
from lightningstor.core.freedchunks import FreedChunksService, record, sweep
from lightningstor.metadata.sqlite import SqliteMetadataStore


class Deleter:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    def __call__(self, ids: list[str]) -> Any:
        self.deleted += ids
        return succeed(None)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = SqliteMetadataStore(str(tmp_path / "meta.db"), reactor)
    yield s
    s.close()


@pytest_twisted.ensureDeferred
async def test_rows_are_deleted_only_once_due(store: Any) -> None:
    """Each batch keeps its due time: a sweep before it deletes nothing, one
    after deletes that batch's chunks and its rows, and no other."""
    ids = [f"c{i:04d}" for i in range(1200)]  # three rows for the first batch
    written = await record(store, [(1000.0, ids), (1010.0, ["late"])], now=990.0, deadline=10.0, reactor=Clock())
    assert written == 1201
    rows = await store.scan(keys.FREED_CHUNKS, keys.freed_chunks_key(1 << 60, ""))
    assert len(rows) == 4
    deleter = Deleter()
    assert await sweep(store, deleter, 999.9) == 0 and deleter.deleted == []
    assert await sweep(store, deleter, 1000.0) == 1200
    assert sorted(deleter.deleted) == ids
    assert await sweep(store, deleter, 1009.0) == 0
    assert await sweep(store, deleter, 2000.0) == 1
    assert deleter.deleted[-1] == "late"
    assert await store.scan(keys.FREED_CHUNKS, keys.freed_chunks_key(1 << 60, "")) == []


@pytest_twisted.ensureDeferred
async def test_a_batch_already_due_is_due_now_and_the_deadline_bounds_the_writes(store: Any) -> None:
    """A batch whose delay is over is recorded as due at once; past the
    deadline nothing more is written (those ids are the collector's)."""
    written = await record(store, [(5.0, ["a"])], now=100.0, deadline=10.0, reactor=Clock())
    assert written == 1
    [row] = await store.scan(keys.FREED_CHUNKS, keys.freed_chunks_key(1 << 60, ""))
    assert row.key.startswith(keys.freed_chunks_key(100_000, ""))
    assert json.loads(row.value) == ["a"]
    many = [f"x{i}" for i in range(freedchunks.ROW_IDS * freedchunks.ROWS_PER_TXN * 2)]
    clock = Clock()

    class Slow:
        """Each transaction takes 11 s of the clock."""

        def txn(self, compares: Any, operations: Any) -> Any:
            clock.advance(11.0)
            return store.txn(compares, operations)

    assert await record(Slow(), [(200.0, many)], now=100.0, deadline=10.0, reactor=clock) == (
        freedchunks.ROW_IDS * freedchunks.ROWS_PER_TXN
    )


def test_a_store_that_does_not_answer_is_given_up_at_the_deadline() -> None:
    """A write still unanswered at the deadline (a store that hangs) is
    given up: the stop goes on, those ids are the collector's."""
    clock = Clock()
    hanging = SimpleNamespace(txn=lambda compares, operations: Deferred())
    result: list[Any] = []
    record(hanging, [(200.0, ["a", "b"])], now=100.0, deadline=10.0, reactor=clock).addBoth(result.append)
    assert result == []
    clock.advance(10.5)
    assert result == [0]


@pytest_twisted.ensureDeferred
async def test_an_unreadable_row_is_dropped_and_the_next_ones_are_swept(store: Any) -> None:
    """A row that is not a JSON list of ids is dropped with a warning, and
    the rows after it are swept (a row of ``5`` raised TypeError and stopped
    every sweep at that row for good)."""
    from lightningstor.interfaces.metadata import Put

    bad = [b"{not json", b"5", b'{"a": 1}', b'["a", 1]', b'"ab"']
    await store.txn([], [Put(keys.freed_chunks_key(1, f"bad{i}"), v) for i, v in enumerate(bad)])
    await store.txn([], [Put(keys.freed_chunks_key(2, "good"), b'["c1", "c2"]')])
    deleter = Deleter()
    assert await sweep(store, deleter, 10.0) == 2
    assert deleter.deleted == ["c1", "c2"]
    assert await store.scan(keys.FREED_CHUNKS, keys.freed_chunks_key(1 << 60, "")) == []


@pytest.mark.parametrize(("delay", "interval"), [(300.0, 60.0), (10.0, 10.0), (0.2, 1.0), (0.0, 60.0)])
def test_the_sweep_runs_about_once_per_delay(delay: float, interval: float) -> None:
    service = FreedChunksService(None, Deleter(), Clock(), free_delay_seconds=delay, clock=lambda: 0.0)
    assert service.interval_seconds == interval

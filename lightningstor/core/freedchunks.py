"""Freed chunks a stopping server hands to the servers that keep running.

A server keeps the chunks of overwritten and deleted versions for
``[storage] free_delay_seconds`` (storage/retired.py), so GETs that read the
old record just before can finish.  When it stops, a server alone on its
store deletes what is still waiting at once: its own requests have drained.
But worker processes share one store and one chunk directory, and so do API
servers on a shared store: a sibling's GET may still be streaming a chunk
this one freed.  Leaving those chunks to the orphan collector (as was done)
kept their space for at least its grace, 24 hours by default, counted only
while a server runs; a restart, which the operations guide offers to get
space back sooner, got it back a day later on the default, several-worker
server.

So a stopping server that shares its store records what is waiting, with
the time each batch is due, in the metadata store (:data:`keys.FREED_CHUNKS`,
rows sorted by due time), and :class:`FreedChunksService` (one per
deployment, leased where the store is shared) deletes the chunks of every
row that is due, then the row.  The delay is kept exactly: a row is never
deleted before its batch would have been by the server that freed it.

Why this is safe: the chunks were unreferenced before they were queued
(their index entries removed by ``chunkindex.release``), and chunk ids are
never reused, so deleting them later can only hit those chunks; a chunk
deleted twice (two sweeps, or the collector first) is deleted once and
missed once, which the backends treat as done.  A row lost (the stop cut
short, the store unavailable) leaves its chunks to the orphan collector, as
before.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from lightningstor.core import keys
from lightningstor.interfaces.metadata import Delete, Put
from lightningstor.periodic import PeriodicService

log = Logger()

ROW_IDS = 500
"""Chunk ids per row (about 20 KB of JSON)."""

ROWS_PER_TXN = 16
"""Rows written per transaction: about 320 KB, well within etcd's request
limit (1.5 MiB) and its default of 128 operations per transaction."""

SCAN_ROWS = 64
"""Rows read per scan of a sweep."""


@inlineCallbacks
def record(store: Any, batches: Sequence[tuple[float, Sequence[str]]], *, now: float, deadline: float,
           reactor: Any) -> Any:
    """Deferred[int]: write ``batches`` (wall-clock due time, chunk ids) as
    rows; the number of ids whose rows were written.  A stop is bounded:
    nothing more is written once ``reactor.seconds()`` passes ``deadline``,
    and a write still unanswered then is given up (a store that hangs;
    it may still land, and its row is then swept as any other).  What is
    not written, or fails, is left to the collector.  A batch already due is
    recorded as due ``now``."""
    rows: list[tuple[Put, int]] = []  # and the number of ids in each
    for due, ids in batches:
        due_ms = int(max(due, now) * 1000)
        for start in range(0, len(ids), ROW_IDS):
            part = list(ids[start : start + ROW_IDS])
            rows.append((Put(keys.freed_chunks_key(due_ms, secrets.token_hex(8)), json.dumps(part).encode()), len(part)))
    written = 0
    for start in range(0, len(rows), ROWS_PER_TXN):
        left = deadline - reactor.seconds()
        if left <= 0:
            break
        group = rows[start : start + ROWS_PER_TXN]
        try:
            yield store.txn([], [put for put, _n in group]).addTimeout(left, reactor)
        except Exception as exc:
            log.warn("Could not record freed chunks ({why})", why=exc)
            break
        written += sum(n for _put, n in group)
    return written


def _chunk_ids(value: bytes) -> list[str] | None:
    """The ids of a row, or None if it is not a JSON list of strings."""
    try:
        ids = json.loads(value)
    except ValueError:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return None
    return ids


@inlineCallbacks
def sweep(store: Any, delete_chunks: Callable[[list[str]], Deferred[None]], now: float) -> Any:
    """Deferred[int]: delete the chunks of every row due at ``now`` (wall
    clock, seconds), then the row; the number of chunk ids handled."""
    end = keys.freed_chunks_key(int(now * 1000) + 1, "")
    handled = 0
    while True:
        rows = yield store.scan(keys.FREED_CHUNKS, end, SCAN_ROWS)
        for kv in rows:
            ids = _chunk_ids(kv.value)
            if ids is None:
                # Dropped, not skipped: a row left in place would stop every
                # later one (each sweep starts again from the first).
                log.warn("Dropping an unreadable freed-chunks row {key!r}", key=kv.key)
                ids = []
            if ids:
                # Best effort: failures are logged by delete_chunks, and what
                # it missed has no reference, so the collector takes it.
                yield delete_chunks(ids)
            yield store.txn([], [Delete(kv.key)])
            handled += len(ids)
        if len(rows) < SCAN_ROWS:
            return handled


class FreedChunksService(PeriodicService):
    """Deletes the chunks stopped servers recorded, as each row falls due.

    Runs every ``free_delay_seconds`` (at least every second, at most every
    minute): a row is due at most that long after its server stopped, so
    after a restart the space comes back about one delay and one interval
    later, instead of after the collector's grace.
    """

    description = "Freed chunk deletion"

    def __init__(
        self,
        store: Any,
        delete_chunks: Callable[[list[str]], Deferred[None]],
        reactor: Any,
        *,
        free_delay_seconds: float,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(reactor, min(60.0, max(1.0, free_delay_seconds)) if free_delay_seconds > 0 else 60.0)
        self.store = store
        self.delete_chunks = delete_chunks
        self.clock = clock

    @inlineCallbacks
    def run_once(self) -> Any:
        handled = yield sweep(self.store, self.delete_chunks, self.clock())
        if handled:
            log.info("Deleted {n} freed chunks a stopped server had recorded", n=handled)
        return handled

"""Deleting the chunks of versions gone for good after a delay.

An overwrite or a delete commits first and frees the old version's chunks
after (core/objects.py, core/chunkindex.py ``release``).  A GET that read
the old record just before that commit is still streaming those chunks, and
deleting them at once would cut it: with the distributed backend at the
next read, with the local one when it opens the next chunk file.  So, as
RGW's deferred garbage collection does, freed chunks are kept for
``[storage] free_delay_seconds`` (long enough for reads in flight to
finish) and deleted after that.

Why nothing is lost or leaked:

* the chunks' index entries are removed *before* they are queued here
  (``chunkindex.release``), so a chunk waiting here is unreferenced and has
  no entry: exactly what the orphan collector (core/collector.py) deletes
  after its grace.  A crash during the delay therefore only postpones the
  deletion to the collector;
* chunk ids are fresh random ids (``uuid4``, storage/chunks.py) that no
  write ever reuses, so a queued deletion can never hit a chunk written
  again after it was freed.

Memory is bounded: one timer for the whole queue, and ids grouped in
batches of one second each (a burst of deletes appends to the current
batch), so the queue holds at most ``delay / BATCH_SECONDS + 1`` batches.
Beyond ``max_pending`` ids the oldest batches are deleted early (they have
waited longest): space is never held back by a burst, only the protection of
the oldest readers shrinks, and those still fail loudly, never silently
short (s3/handlers/objects.py retries a GET whose first chunk is gone;
a later failure aborts the connection).

At shutdown (:meth:`flush`) the queue is deleted at once rather than left
to the collector: the server's own requests have drained by then, and the
collector would keep the space for at least its grace (24 h) after the
restart.  The flush is bounded in time; what it does not get to stays
unreferenced for the collector.  That holds only while this server is the
only reader: on a metadata store shared by several API servers (over
shared or distributed storage), and between the worker processes of one
server, the others' GETs may still be streaming the chunks this one freed,
so a stop there takes the queue with each batch's remaining delay
(:meth:`take_pending`) and records it in the metadata store, where a
running server deletes each batch when it falls due (core/freedchunks.py,
server.py ``CoreService``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

log = Logger()

BATCH_SECONDS = 1.0
"""Ids freed within this long of each other share one batch (one queue entry)."""

MAX_PENDING = 250_000
"""Ids held at most (about 25 MB); beyond it the oldest are deleted early."""

FLUSH_SLICE = 512
"""Ids deleted per step of a shutdown flush (its deadline is checked between steps)."""


@dataclass
class _Batch:
    opened: float  # reactor time of its first id
    due: float  # when it is deleted: every id in it has waited the delay
    ids: list[str] = field(default_factory=list)


class RetiredChunks:
    """Freed chunk ids waiting out ``delay_seconds`` before ``delete`` removes them.

    ``delete`` takes a list of ids and never fails (ChunkManager.delete_chunks
    logs its own failures).  ``delay_seconds <= 0`` deletes at once.
    """

    def __init__(
        self,
        reactor: Any,
        delete: Callable[[list[str]], Deferred[None]],
        delay_seconds: float,
        *,
        max_pending: int = MAX_PENDING,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self._reactor = reactor
        self._delete = delete
        self.delay_seconds = delay_seconds
        self.max_pending = max_pending
        self._queue: deque[_Batch] = deque()
        self._pending = 0
        self._call: Any = None
        self._flushed = False
        # Ids deleted before their delay because the queue was full (metrics, logs).
        self.deleted_early = 0
        self._warned_at = -math.inf

    def __len__(self) -> int:
        """Ids waiting."""
        return self._pending

    @property
    def batches(self) -> int:
        return len(self._queue)

    def retire(self, chunk_ids: Iterable[str]) -> None:
        """Delete ``chunk_ids`` once the delay has passed (at once if it is 0
        or the server is stopping)."""
        ids = list(chunk_ids)
        if not ids:
            return
        if self.delay_seconds <= 0 or self._flushed:
            self._delete(ids)
            return
        now = self._reactor.seconds()
        last = self._queue[-1] if self._queue else None
        if last is not None and last.opened <= now < last.opened + BATCH_SECONDS:
            last.ids += ids
        else:
            # max(): a wall clock stepping back must not put a batch before
            # an earlier one (the queue is kept in due order).
            due = now + self.delay_seconds + BATCH_SECONDS
            self._queue.append(_Batch(now, due if last is None else max(due, last.due), ids))
        self._pending += len(ids)
        if self._pending > self.max_pending:
            self._overflow(now)
        self._schedule()

    def _overflow(self, now: float) -> None:
        """Delete the oldest ids early until at most ``max_pending`` wait."""
        early: list[str] = []
        while self._pending > self.max_pending:
            head = self._queue[0]
            take = min(len(head.ids), self._pending - self.max_pending)
            early += head.ids[:take]
            del head.ids[:take]
            self._pending -= take
            if not head.ids:
                self._queue.popleft()
        self.deleted_early += len(early)
        if now - self._warned_at >= 60.0:
            self._warned_at = now
            log.warn(
                "More than {max} freed chunks are waiting for deletion: deleting the oldest "
                "before free_delay_seconds ({total} so far); a read of them still in flight fails",
                max=self.max_pending, total=self.deleted_early,
            )  # fmt: skip
        self._delete(early)

    def _schedule(self) -> None:
        """One timer, for the head of the queue."""
        if not self._queue:
            if self._call is not None and self._call.active():
                self._call.cancel()
            self._call = None
            return
        if self._call is not None and self._call.active():
            return  # already set for the head (the head only gets later)
        wait = max(0.0, self._queue[0].due - self._reactor.seconds())
        self._call = self._reactor.callLater(wait, self._fire)

    def _fire(self) -> None:
        self._call = None
        now = self._reactor.seconds()
        ids: list[str] = []
        while self._queue and self._queue[0].due <= now:
            ids += self._queue.popleft().ids
        self._pending -= len(ids)
        if ids:
            self._delete(ids)
        self._schedule()

    def _take_batches(self) -> list[_Batch]:
        """Stop the timer and empty the queue: the batches that were waiting."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        batches = list(self._queue)
        self._queue.clear()
        self._pending = 0
        return batches

    def take_pending(self) -> list[tuple[float, list[str]]]:
        """Stop the timer and empty the queue, deleting nothing: each
        waiting batch as (seconds until it is due, ids), oldest first.  For a
        stop while other servers may still read them."""
        now = self._reactor.seconds()
        return [(max(0.0, batch.due - now), batch.ids) for batch in self._take_batches()]

    @inlineCallbacks
    def flush(self, timeout_seconds: float) -> Any:
        """Deferred[int]: stop delaying and delete every queued id now, for at
        most about ``timeout_seconds``; the number left to the collector.

        Later :meth:`retire` calls delete at once (requests have drained).
        """
        self._flushed = True
        ids = [i for batch in self._take_batches() for i in batch.ids]
        deadline = self._reactor.seconds() + timeout_seconds
        done = 0
        while done < len(ids) and self._reactor.seconds() < deadline:
            yield self._delete(ids[done : done + FLUSH_SLICE])
            done += FLUSH_SLICE
        left = max(0, len(ids) - done)
        if left:
            log.warn(
                "Shutdown left {n} freed chunks undeleted; the orphan collector removes them after its grace",
                n=left,
            )
        return left

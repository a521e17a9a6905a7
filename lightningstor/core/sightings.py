"""How long the orphan collector has seen each thing unreferenced.

The collector (core/collector.py) deletes a chunk, index entry or manifest
only once it has seen it unreferenced for the grace period, measured on a
clock of its own, never by comparing file or record times with a wall clock
(a write in flight would be deleted whenever clocks disagree).

:class:`Sightings` keeps this in memory, on one process's monotonic clock:
enough for ``lightningstor-admin collect``, which looks twice and exits.
The server's collector uses :class:`SharedSightings`, which keeps it in the
metadata store instead: held only in memory, a server restarted more often
than the grace period (rolling deploys, nightly restarts, a crash loop), or a
collector lease moving between servers, would start afresh every time and
never collect anything.

**The shared clock counts only observed time.**  No two processes' clocks
can be compared, so the store holds one *logical* clock
(:data:`~lightningstor.core.keys.COLLECTOR_CLOCK`): each pass advances it by
the monotonic time since the previous pass *of the same process*, and only
when the record proves that no other pass came in between (it names the
process and its pass number).  The first pass of a process, or one after
another server's pass, adds nothing, so downtime and time on another clock
are never counted; age can only be under-counted, which only delays
deletion.  Each thing seen unreferenced has a record (under
:data:`~lightningstor.core.keys.SIGHTINGS`) with the logical clock's value
at the start of the pass that first saw it so, written once; its age is the
clock now minus that, never more than the real time since that start.  A
thing not seen unreferenced by a pass (referenced again, or gone) loses
its record at the end of the pass, so it starts afresh if it is ever
unreferenced again, and the records never outnumber what the last pass saw
unreferenced.

**A pass writes at its end, the clock first.**  Its first transaction
writes the advanced clock, guarded by the clock record's revision as read
at the pass's start: it *claims* the clock.  The records follow (batches of
:data:`~lightningstor.core.chunkindex.BATCH` operations, under etcd's limit
on a transaction's size), each guarded by the revision the claim produced.
Should two collectors overlap (a lease taken over from a stalled server,
or the rare double pass the leases allow), whichever claims second fails
at its claim if it began before the other's claim, and otherwise the one
that claimed first fails at its next batch: records are only ever written
under the clock that stands, never on one clock and read on another.  (A
guard on the revision read at the start alone is not enough: writing
records does not change the clock record, so two passes' records could
both pass it and be read against the other pass's clock, dating a fresh
sighting a whole pass gap too early.)  Every record a pass writes is dated
at most the clock it claimed, which corresponds to the pass's start,
before its listing: a crash or an overtaken pass part-way leaves records
whose age is under-counted, never over-counted.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from lightningstor.core import chunkindex, keys, scans
from lightningstor.interfaces.metadata import Compare, Delete, IMetadataStore, KeyValue, Operation, Put

log = Logger()

_PAGE = 500
Thing = tuple[str, str]  # (kind, name): ("chunk", id), ("entry", id), ("manifest", id)


class Sightings:
    """When the collector first saw each chunk, entry and manifest
    unreferenced, on its own clock (in memory).

    A pass calls :meth:`begin`, reports each unreferenced thing it meets
    (:meth:`aged`) and calls :meth:`end`; what it did not report (it is
    referenced now, or gone) is forgotten then, so the state never holds
    more than the last pass saw unreferenced.  :meth:`begin` and :meth:`end`
    may return a Deferred (:class:`SharedSightings`); callers wait for it.
    """

    def __init__(self) -> None:
        self._seen: dict[Thing, float] = {}
        self._now = 0.0
        self._grace = 0.0
        self._next: dict[Thing, float] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def begin(self, now: float, grace_seconds: float) -> Any:
        self._now, self._grace = now, grace_seconds
        self._next = {}
        return None

    def aged(self, kind: str, name: str) -> bool:
        """Record that ``name`` (of ``kind``: chunk, entry, manifest) is
        unreferenced now; whether it has been so for the grace period."""
        first = self._seen.get((kind, name), self._now)
        self._next[(kind, name)] = first
        return self._now - first >= self._grace

    def removed(self, kind: str, name: str) -> None:
        """``name`` was removed: nothing to remember."""
        self._next.pop((kind, name), None)

    def end(self) -> Any:
        self._seen, self._next = self._next, {}
        return None


def _clock_value(clock: float, run: str, pass_no: int) -> bytes:
    return json.dumps({"clock": clock, "run": run, "pass": pass_no}).encode()


def _read_clock(kv: KeyValue | None) -> tuple[float, str | None, int | None]:
    """``(clock, run, pass)`` of the clock record; a missing or unreadable
    one reads as a clock at 0 that no process advanced."""
    if kv is None:
        return 0.0, None, None
    try:
        state = json.loads(kv.value)
        return float(state["clock"]), str(state["run"]), int(state["pass"])
    except (ValueError, TypeError, KeyError):
        log.warn("Unreadable collector clock record; starting it at 0")
        return 0.0, None, None


class SharedSightings(Sightings):
    """:class:`Sightings` kept in the metadata store, on the shared logical
    clock (module doc), so that observed age adds up across restarts and
    servers.

    ``now`` given to :meth:`begin` is this process's monotonic clock; one
    instance per collector process (its ``run`` id names it in the clock
    record), kept from pass to pass.
    """

    def __init__(self, store: IMetadataStore, run: str | None = None) -> None:
        super().__init__()
        self.store = store
        self.run = run or uuid.uuid4().hex
        # (pass number, monotonic time) of this process's last pass whose
        # clock write succeeded; None before the first.
        self._last: tuple[int, float] | None = None
        self._pending: tuple[int, float] = (0, 0.0)
        self._revision = 0
        self._stored: set[Thing] = set()

    @inlineCallbacks
    def begin(self, now: float, grace_seconds: float) -> Any:
        """Deferred: read the clock, advance it (module doc) and load every record."""
        kv = yield self.store.get(keys.COLLECTOR_CLOCK)
        clock, run, pass_no = _read_clock(kv)
        last = self._last
        if last is not None and run == self.run and pass_no == last[0]:
            clock += max(0.0, now - last[1])
        self._revision = kv.mod_revision if kv is not None else 0
        self._pending = ((last[0] if last else 0) + 1, now)
        seen: dict[Thing, float] = {}
        stored: set[Thing] = set()

        def visit(row: KeyValue) -> None:
            kind, _, name = row.key[len(keys.SIGHTINGS) :].decode("utf-8", "replace").partition("/")
            stored.add((kind, name))
            try:
                seen[(kind, name)] = float(json.loads(row.value)["first"])
            except (ValueError, TypeError, KeyError):
                pass  # unreadable: seen afresh, and rewritten or dropped at the end

        yield scans.scan_prefix(self.store, keys.SIGHTINGS, _PAGE, visit)
        super().begin(clock, grace_seconds)
        self._seen, self._stored = seen, stored

    @inlineCallbacks
    def end(self) -> Any:
        """Deferred: claim the clock (write its new value, guarded by the
        revision read at :meth:`begin`), then write new records and drop
        those of what this pass did not report, guarded by the claim's
        revision (module doc)."""
        # Dropped records first: a pass stopped part-way then leaves new
        # sightings unsaved (seen afresh later) rather than stale ones.
        ops: list[Operation] = [
            Delete(keys.sighting_key(kind, name)) for kind, name in self._stored - self._next.keys()
        ]
        ops += [
            Put(keys.sighting_key(kind, name), json.dumps({"first": first}).encode())
            for (kind, name), first in self._next.items()
            if self._seen.get((kind, name)) != first
        ]
        super().end()
        self._stored = set()
        pass_no, now = self._pending
        clock = _clock_value(self._now, self.run, pass_no)
        claim = yield self.store.txn(
            [Compare(keys.COLLECTOR_CLOCK, self._revision)], [Put(keys.COLLECTOR_CLOCK, clock)]
        )
        if not claim.succeeded:
            return self._overtaken()
        # The clock now stands for this pass: the next one measures from it,
        # even if a batch below fails (records not yet written are seen
        # afresh by a later pass, which only delays deletion).
        self._last = (pass_no, now)
        guard = [Compare(keys.COLLECTOR_CLOCK, claim.revision)]
        for start in range(0, len(ops), chunkindex.BATCH):
            result = yield self.store.txn(guard, ops[start : start + chunkindex.BATCH])
            if not result.succeeded:
                return self._overtaken()
        return None

    def _overtaken(self) -> None:
        """Another collector's pass claimed the clock during this one: its
        records stand, this pass saves nothing more, and this process's
        next pass adds no time."""
        self._last = None
        log.warn(
            "Another orphan collector pass ran at the same time; the rest of this pass's sightings were not saved"
        )

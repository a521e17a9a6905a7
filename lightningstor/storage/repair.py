"""Restoring the replica count of the distributed backend's chunks, and
reclaiming the copies that are no longer needed.

Every ``interval`` seconds (a ``LoopingCall`` on the injected reactor) the
repairer lists the chunks of every node that answers, and for each chunk
makes sure every node of its current placement holds a copy, copying from a
node that has it.  That covers a node that was down during a write, a node
that came back empty (disk replaced), and nodes added to the cluster (the
chunk's new placement gets its copy).  With ``random`` placement there is no
fixed placement, so a chunk with fewer than N copies gets new ones on random
nodes.

Nodes that do not answer the listing are left alone: they may come back with
their data.  A run copies at most ``max_copies`` chunks, so one run is
bounded and the next picks up where this one stopped.  Copies read the whole
chunk through the source node (which verifies its block CRCs) before writing.

Copies are verified, not just listed
------------------------------------
A listing only says that a file exists; a copy may be rotten (its block
CRCs fail) or divergent (other bytes with self-consistent CRCs).  So before
a chunk is copied, every node listing it is asked to verify its copy
(``VerifyChunk``: the node reads it and checks every block, answering the
length and whole-chunk CRC32C), and the copies are compared:

* when the copies that passed hold different bytes, the chunk's record
  decides: the server gives the repairer ``recorded`` (the chunk index's
  :func:`~lightningstor.core.chunkindex.recorded`), which reads the length
  and CRC32C the object's ChunkRef lists, and the copy matching it is the
  good one whatever the count (``disputes_resolved``); if no copy matches
  the record, nothing is copied or trimmed (``copies_disputed``: every copy
  is wrong, which scrub reports);
* without a record (no index entry, an orphan, or no ``recorded`` at all)
  the copies that passed must agree: one (length, CRC32C) held by a strict
  majority of them.  Without one (two copies, two different CRCs) nothing
  is copied and nothing trimmed (``copies_disputed``), which reads and
  scrub settle (they check each copy against its object's ChunkRef and
  rewrite the wrong one, see ``DistributedBackend.get_chunk_range_checked``);
* only a copy with the agreed CRC is a source, and its bytes are checked
  against it again when read (``NodeClient.get_checked``) and by the target
  node when written (the CRC travels with ``PutChunk``);
* a placement copy that failed its check, or disagrees with the agreed
  copy, is rewritten from a good source like a missing one (a node keeps
  an intact copy against other bytes unless the write names that copy's
  CRC32C, which repair does for the divergent copies it found).

Chunks whose copies are all present are not verified by repair (that would
read every chunk every run): rot there is found by reads (read repair) and
by scrub (``lightningstor-admin scrub`` or ``scrub_interval_seconds``).

A node whose disk is full answers the listing (it is not down) but refuses
copies with ``StorageFull``.  After its first refusal the run sends it no
more copies (each would read the chunk from a source only to be refused);
those chunks are counted as ``copies_deferred``, outside ``max_copies``, so
a full node cannot use up a run that other nodes' repairs need.  The next
run tries the node again, so repair resumes by itself once space is freed.

Trimming extra copies
---------------------
Two things leave a copy on a node outside the chunk's current placement:
nodes added to the cluster (the chunk moved to its new placement, the old
copy is still there) and a full placement node (the write spilled that copy
to a spare; repair later copied the chunk to the placement node once it had
room).  Kept forever, such copies use the space twice and the old nodes of
an expanded cluster never get emptier, so after its copies a run deletes
them ("trims"), but only when the copy is provably redundant:

* the placement is fixed: never with ``random`` placement (a chunk has no
  home there, so no copy is "extra");
* every node of the cluster answered this run's listing: a node that is
  down may hold, or lack, anything, so a run with one missing trims nothing;
* every node of the chunk's placement holds the chunk, by this run's
  listing or because this run copied it there, and those are at least
  ``replication_factor`` distinct nodes, so at least N copies remain;
* the same copy was found extra by the previous run as well (two
  consecutive runs of this process; see below);
* right before the delete, every copy of the chunk is verified (see above)
  and every placement copy must have passed and hold the agreed CRC32C,
  a strict majority of the verified copies: a rotten or divergent placement
  copy is rewritten from a good one instead, and the extra copy waits (the
  listing may be minutes old, and existence is not a good copy);
* at most ``max_trims`` deletions per run; the rest waits for the next run.

A run that cannot trim (a node down, trimming off, ``random``) forgets the
copies it had seen extra, so after an outage two clean runs are needed again.
The copies awaiting their second run are remembered in memory, at most
``10 * max_trims`` of them; a copy not remembered is simply seen again later.

Several API servers, different node lists
-----------------------------------------
Every API server has a repairer (on a shared metadata store one of them
runs at a time, the holder of the ``repair`` lease, lightningstor.core.leases;
but the lease moves between servers), and each judges "extra" by its own
node list.  During a rolling configuration change (a node added on some
servers but not yet on others) one server's placement differs from
another's: server B (with the new node) trims the copy that server A's
placement wants, A copies it back, B trims it again...  The confirmation
keeps this from deleting every copy of a chunk as long as every server
names each node by the *same URL* (the rendezvous score is computed from
the URL).  Take the node ranked first for the chunk among all the nodes any
server lists: it is in the placement of every server that lists it (both
strategies take the top-ranked node first), so none of them ever trims it;
if one of them trims at all, it first confirmed that node's copy, which
then survives.  If none of them trims, the same holds for the node ranked
first among the remaining servers' nodes, and so on.  What disagreement
still costs is churn (copies made and deleted again every run) and, with
``zone_aware`` placement or different ``zones``, a chunk may briefly keep
fewer than N copies (with ``consistent_hash`` it keeps N: no server trims
a node ranked above its own placement's last node, so the placement of the
trimming server whose last node ranks highest stays whole).  Two mitigations limit that: a copy is trimmed
only when seen extra in two consecutive runs (so a server restarted with a
new node list trims nothing before its second run, two intervals after the
start: a rolling restart finished within that window causes no churn at
all), and ``trim_extra_copies = false`` turns trimming off, for a
configuration change that cannot be rolled out quickly.  The rule remains:
every API server must list the same nodes, spelled the same, with the same
zones, ``replication_factor`` and ``placement_strategy``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from lightningstor.core.leases import Lease, release_quietly, run_leased
from lightningstor.errors import ChunkCorrupted, ChunkNotFound, StorageFull
from lightningstor.storage.placement import NodeAddress

log = Logger()

# How many copies seen extra (awaiting their second run) are remembered, per
# allowed trim: bounds the memory after a large expansion.
_REMEMBER_PER_TRIM = 10


@dataclass
class RepairReport:
    """What one repair run did (for logs and tests)."""

    chunks_seen: int = 0
    copies_made: int = 0
    copies_failed: int = 0
    copies_deferred: int = 0  # not sent to a node found full earlier in the run
    nodes_skipped: list[str] = field(default_factory=list)
    nodes_full: list[str] = field(default_factory=list)
    truncated: bool = False
    # Trimming (see the module docstring).
    copies_trimmed: int = 0  # extra copies deleted
    trims_failed: int = 0  # deletes of extra copies that failed
    trims_pending: int = 0  # extra copies seen for the first time: trimmed by a later run
    trims_unconfirmed: int = 0  # chunks not trimmed: a placement copy was missing, corrupt or divergent
    copies_damaged: int = 0  # copies found corrupt or divergent (then rewritten when a good source exists)
    copies_disputed: int = 0  # chunks whose copies disagree without a majority: neither copied nor trimmed
    disputes_resolved: int = 0  # chunks whose copies disagree, settled by the CRC32C their record lists
    trims_truncated: bool = False  # max_trims reached
    trim_skipped: str | None = None  # why this run trimmed nothing at all, if it could not


class Repairer:
    """Periodic re-replication (and trimming of extra copies) for a
    :class:`DistributedBackend`; see the module docstring."""

    def __init__(
        self,
        backend: Any,
        reactor: Any,
        *,
        interval: float = 60.0,
        max_copies: int = 1000,
        max_trims: int = 1000,
        trim: bool = True,
    ) -> None:
        self.backend = backend
        self.reactor = reactor
        self.interval = interval
        self.max_copies = max_copies
        self.max_trims = max_trims
        self.trim = trim
        self.last_report: RepairReport | None = None
        # Copies found extra by the previous run: (chunk id, node).
        self._extra_seen: set[tuple[str, NodeAddress]] = set()
        self._loop = LoopingCall(self._tick)
        self._loop.clock = reactor
        self._running: defer.Deferred[Any] | None = None
        # Set by the server when several may share the store: only the
        # holder of this deployment-wide lease repairs (lightningstor.core.leases).
        self.lease: Lease | None = None
        # Set by the server: Deferred[(length, CRC32C) | None] that a record
        # lists for a chunk id (lightningstor.core.chunkindex.recorded).
        self.recorded: Callable[[str], defer.Deferred[Any]] | None = None

    def start(self) -> None:
        if not self._loop.running:
            # First run after one interval: let the nodes come up.
            self._loop.start(self.interval, now=False).addErrback(
                lambda f: log.failure("chunk repair loop stopped", f)
            )

    @defer.inlineCallbacks
    def stop(self) -> Any:
        """Stop the loop, wait for a run in progress, then give the lease up
        (the next server repairs at its next run, not after the expiry)."""
        if self._loop.running:
            self._loop.stop()
        if self._running is not None:
            yield self._running
        yield release_quietly(self.lease)

    def _tick(self) -> defer.Deferred[Any]:
        # A failed run is logged, never fatal: the loop keeps going.  Without
        # the lease (another server holds it) the run is skipped.
        d = run_leased(self.lease, self.reactor, self.run_once, "Chunk repair")
        d.addCallback(self._skipped)
        d.addErrback(lambda f: log.failure("chunk repair run failed", f))
        self._running = d
        return d

    def _skipped(self, report: RepairReport | None) -> RepairReport | None:
        """After a run skipped for another server's lease (``None``), forget
        the copies seen extra: when the lease comes back, hours later, the
        next run is not "consecutive" to the one that saw them."""
        if report is None:
            self._extra_seen = set()
        return report

    @defer.inlineCallbacks
    def run_once(self) -> Any:
        """One pass over every listed chunk; Deferred[RepairReport]."""
        backend = self.backend
        report = RepairReport()
        by_node: dict[NodeAddress, Any] = yield backend.list_chunks_by_node()
        report.nodes_skipped = [node.address for node in backend.nodes if node not in by_node]
        holders: dict[str, set[NodeAddress]] = {}
        for node, infos in by_node.items():
            for info in infos:
                holders.setdefault(info.chunk_id, set()).add(node)
        report.chunks_seen = len(holders)
        full: set[NodeAddress] = set()
        received: dict[str, set[NodeAddress]] = {}
        answering = set(by_node)
        fixed = backend.placement_strategy != "random"
        # Chunks with a copy outside their placement, and that placement:
        # what _trim looks at (placement is computed once per chunk).
        extras: list[tuple[str, list[NodeAddress]]] = []
        for chunk_id in sorted(holders):
            have = holders[chunk_id]
            home = backend.placement(chunk_id) if fixed else None
            if home is not None and not have.issubset(home):
                extras.append((chunk_id, home))
            if report.truncated:
                continue  # no more copies this run; the extras are still wanted
            missing = self._missing(chunk_id, have, answering, home)
            if not missing:
                continue
            targets = [node for node in missing if node not in full]
            if len(targets) < len(missing):
                report.copies_deferred += 1  # the next run tries the full node again
            if not targets:
                continue
            if report.copies_made + report.copies_failed >= self.max_copies:
                report.truncated = True
                continue
            survey = yield self._survey(chunk_id, have)
            agreed = yield self._agree(chunk_id, survey, report)
            if agreed is None:
                self._disputed(chunk_id, survey, report)
                continue
            damaged = [n for n in _by_address(have) if _damaged(survey[n], agreed)]
            report.copies_damaged += len(damaged)
            # A damaged copy where one is wanted is rewritten like a missing one.
            targets += [n for n in damaged if (home is None or n in home) and n not in full]
            sources = {n for n in have if survey[n] == agreed}
            done = yield self._copy(chunk_id, sources, targets, full, agreed, _divergent(survey))
            if done:
                received[chunk_id] = done
            if len(done) == len(targets):
                report.copies_made += 1
            else:
                report.copies_failed += 1
        report.nodes_full = sorted(node.address for node in full)
        if full:
            log.warn("Chunk repair: node(s) {nodes} refused copies, disk full", nodes=", ".join(report.nodes_full))
        yield self._trim(report, holders, received, extras)
        self.last_report = report
        if report.copies_made or report.copies_failed:
            log.info(
                "Chunk repair: {made} chunks re-replicated, {failed} failed, {seen} chunks seen",
                made=report.copies_made,
                failed=report.copies_failed,
                seen=report.chunks_seen,
            )
        if report.copies_damaged or report.copies_disputed:
            log.warn(
                "Chunk repair: {damaged} corrupt or divergent copies found, {disputed} chunks whose copies "
                "disagree without a majority or record to settle it (left to reads and scrub)",
                damaged=report.copies_damaged,
                disputed=report.copies_disputed,
            )
        if report.copies_trimmed or report.trims_failed or report.trims_unconfirmed:
            log.info(
                "Chunk repair: {trimmed} extra copies trimmed, {failed} failed, {unconfirmed} chunks kept "
                "(a placement copy was missing or failed its check), {pending} more extra copies pending",
                trimmed=report.copies_trimmed,
                failed=report.trims_failed,
                unconfirmed=report.trims_unconfirmed,
                pending=report.trims_pending,
            )
        return report

    def _missing(
        self, chunk_id: str, have: set[NodeAddress], answering: set[NodeAddress], home: list[NodeAddress] | None
    ) -> list[NodeAddress]:
        """Answering nodes that should get a copy of ``chunk_id`` (``home``:
        its placement, None with ``random`` placement)."""
        backend = self.backend
        if home is None:
            need = backend.replication_factor - len(have)
            if need <= 0:
                return []
            candidates = [node for node in backend.read_order(chunk_id) if node in answering and node not in have]
            return candidates[:need]
        return [node for node in home if node in answering and node not in have]

    @defer.inlineCallbacks
    def _survey(self, chunk_id: str, nodes: Iterable[NodeAddress]) -> Any:
        """Deferred[{node: (length, CRC32C) | _MISSING | _CORRUPT | _UNKNOWN}]:
        each node's copy of ``chunk_id``, verified on the node."""
        ordered = _by_address(nodes)
        results = yield defer.DeferredList(
            [self.backend.call(node, "verify", chunk_id) for node in ordered], consumeErrors=True
        )
        survey: dict[NodeAddress, Any] = {}
        for node, (ok, value) in zip(ordered, results, strict=True):
            if ok:
                survey[node] = tuple(value)
            elif value.check(ChunkNotFound):
                survey[node] = _MISSING
            elif value.check(ChunkCorrupted):
                survey[node] = _CORRUPT
                log.warn("Repair: the copy of chunk {chunk_id} on {node} fails its check: {error}",
                         chunk_id=chunk_id, node=node.address, error=value.value)
            else:
                survey[node] = _UNKNOWN
                log.info("Repair: cannot verify chunk {chunk_id} on {node}: {error}",
                         chunk_id=chunk_id, node=node.address, error=value.value)
        return survey

    @defer.inlineCallbacks
    def _agree(self, chunk_id: str, survey: Mapping[NodeAddress, Any], report: RepairReport) -> Any:
        """Deferred[(length, CRC32C) | None]: the copy to keep and copy.

        When the copies that passed their check disagree and the chunk's
        record is known, the record's; None if no copy matches it.  Else
        the strict majority's (:func:`_agreed`).  The record is looked up
        only for a disagreement: a metadata read per surveyed chunk would
        cost a large re-replication (a replaced disk) for nothing.
        """
        held = {value for value in survey.values() if isinstance(value, tuple)}
        if len(held) > 1 and self.recorded is not None:
            try:
                expected = yield self.recorded(chunk_id)
            except Exception as e:
                log.warn("Repair: cannot read the record of chunk {chunk_id}: {error}", chunk_id=chunk_id, error=e)
                expected = None
            if expected is not None:
                expected = tuple(expected)
                if expected not in held:
                    log.warn("Repair: no copy of chunk {chunk_id} holds the {what} its record lists",
                             chunk_id=chunk_id, what=_describe(expected))
                    return None
                log.info("Repair: the copies of chunk {chunk_id} disagree; keeping the one its record lists "
                         "({what})", chunk_id=chunk_id, what=_describe(expected))
                report.disputes_resolved += 1
                return expected
        return _agreed(survey)

    def _disputed(self, chunk_id: str, survey: Mapping[NodeAddress, Any], report: RepairReport) -> None:
        report.copies_disputed += 1
        found = ", ".join(f"{node.address}={_describe(value)}" for node, value in survey.items())
        log.warn("Repair: not copying or trimming chunk {chunk_id}: no majority of good copies agrees ({found})",
                 chunk_id=chunk_id, found=found)

    @defer.inlineCallbacks
    def _copy(
        self,
        chunk_id: str,
        sources: set[NodeAddress],
        targets: list[NodeAddress],
        full: set[NodeAddress],
        agreed: tuple[int, int],
        divergent: Mapping[NodeAddress, int] | None = None,
    ) -> Any:
        """Read ``chunk_id`` from a source whose copy has the ``agreed``
        (length, CRC32C), checking the bytes against it, and write it to
        ``targets`` (which check them again); Deferred[set] of the targets
        that now hold it.  Targets that refuse for lack of space are added
        to ``full``.  ``divergent``: the CRC32C of the intact but wrong copy
        a target holds, which the node replaces only when named (a node
        keeps an intact copy otherwise, see lightningstor.node.servicer)."""
        size, checksum = agreed
        data = None
        for source in sorted(sources, key=lambda node: node.address):
            try:
                data = yield self.backend.call(source, "get_checked", chunk_id, 0, None, size, checksum)
                break
            except Exception as e:
                log.warn("Repair: cannot read chunk {chunk_id} from {node}: {error}",
                         chunk_id=chunk_id, node=source.address, error=e)
        if data is None:
            return set()
        results = yield defer.DeferredList(
            [self.backend.call(target, "put", chunk_id, data, checksum, (divergent or {}).get(target))
             for target in targets],
            consumeErrors=True,
        )
        done: set[NodeAddress] = set()
        for target, (ok, value) in zip(targets, results, strict=True):
            if ok:
                done.add(target)
            elif value.check(StorageFull):
                full.add(target)
        return done

    # -- trimming ----------------------------------------------------------------

    def _why_not_trim(self, report: RepairReport) -> str | None:
        """Why this run may trim nothing at all, or None if it may."""
        if not self.trim:
            return "trimming is off"
        if self.backend.placement_strategy == "random":
            return "random placement has no fixed home"
        if report.nodes_skipped:
            return "node(s) did not answer the listing: " + ", ".join(report.nodes_skipped)
        return None

    @defer.inlineCallbacks
    def _trim(
        self,
        report: RepairReport,
        holders: dict[str, set[NodeAddress]],
        received: dict[str, set[NodeAddress]],
        extras: list[tuple[str, list[NodeAddress]]],
    ) -> Any:
        """Delete the extra copies that are provably redundant (see the
        module docstring); remember those seen for the first time.
        ``extras``: the chunks with a copy outside their placement, in
        order, with that placement.  Every node answered the listing when
        this gets that far, so the copies listed are every copy."""
        report.trim_skipped = self._why_not_trim(report)
        if report.trim_skipped is not None:
            self._extra_seen = set()  # two clean runs in a row are needed again
            return
        backend = self.backend
        previous = self._extra_seen
        seen: set[tuple[str, NodeAddress]] = set()
        remember = self.max_trims * _REMEMBER_PER_TRIM
        deletes = 0  # asked for this run, whatever their outcome
        for chunk_id, placed in extras:
            home = set(placed)
            extra = holders[chunk_id] - home
            have = holders[chunk_id] | received.get(chunk_id, set())
            if not home <= have or len(home) < backend.replication_factor:
                continue  # not (yet) N copies on the placement: every copy counts
            due = _by_address(node for node in extra if (chunk_id, node) in previous)
            for node in _by_address(extra):
                if (chunk_id, node) not in previous and len(seen) < remember:
                    seen.add((chunk_id, node))
                    report.trims_pending += 1
            if not due:
                continue
            if deletes + len(due) > self.max_trims:
                report.trims_truncated = True
                seen.update((chunk_id, node) for node in due)  # still due next run
                continue
            confirmed = yield self._confirm(chunk_id, home, have, report)
            if not confirmed:
                report.trims_unconfirmed += 1
                continue
            deletes += len(due)
            yield self._delete_extra(chunk_id, due, report, seen)
        self._extra_seen = seen

    @defer.inlineCallbacks
    def _confirm(
        self, chunk_id: str, home: set[NodeAddress], have: set[NodeAddress], report: RepairReport
    ) -> Any:
        """Deferred[bool]: every copy of ``chunk_id`` (``home`` and ``have``)
        verified now, and every node of ``home`` holds the copy a strict
        majority of the good copies agrees on.  Otherwise False, and the
        placement copies found missing, corrupt or divergent are rewritten
        from a good copy when there is an agreed one (this run trims nothing
        of that chunk: the next runs check again)."""
        survey = yield self._survey(chunk_id, home | have)
        agreed = yield self._agree(chunk_id, survey, report)
        if agreed is None:
            self._disputed(chunk_id, survey, report)
            return False
        wrong = [node for node in _by_address(home) if survey[node] != agreed]
        if not wrong:
            return True
        for node in wrong:
            log.info("Repair: not trimming chunk {chunk_id}: its placement copy on {node} is {what}",
                     chunk_id=chunk_id, node=node.address, what=_describe(survey[node], agreed))
        # A copy gone since the listing is not rewritten here (its object may
        # be being deleted); the next run's listing decides.
        damaged = [node for node in wrong if _damaged(survey[node], agreed)]
        report.copies_damaged += len(damaged)
        if damaged:
            sources = {node for node, value in survey.items() if value == agreed}
            done = yield self._copy(chunk_id, sources, damaged, set(), agreed, _divergent(survey))
            if len(done) == len(damaged):
                report.copies_made += 1
            else:
                report.copies_failed += 1
        return False

    @defer.inlineCallbacks
    def _delete_extra(
        self, chunk_id: str, nodes: list[NodeAddress], report: RepairReport, seen: set[tuple[str, NodeAddress]]
    ) -> Any:
        """Delete ``chunk_id`` on ``nodes`` (its confirmed extra copies); a
        failed delete stays remembered, so the next run may retry it."""
        results = yield defer.DeferredList(
            [self.backend.call(node, "delete", chunk_id) for node in nodes], consumeErrors=True
        )
        for node, (ok, value) in zip(nodes, results, strict=True):
            if ok:
                # False: gone already (its object was deleted meanwhile).
                report.copies_trimmed += int(value is True)
                log.debug("Repair: trimmed the extra copy of chunk {chunk_id} on {node}",
                          chunk_id=chunk_id, node=node.address)
            else:
                report.trims_failed += 1
                seen.add((chunk_id, node))  # still extra: try again next run
                log.warn("Repair: trimming the extra copy of chunk {chunk_id} on {node} failed: {error}",
                         chunk_id=chunk_id, node=node.address, error=value.value)


# What _survey found on a node besides a good copy's (length, CRC32C).
_MISSING = "missing"
_CORRUPT = "corrupt"
_UNKNOWN = "unknown"  # the node did not answer: neither a source nor a target


def _agreed(survey: Mapping[NodeAddress, Any]) -> tuple[int, int] | None:
    """The (length, CRC32C) held by a strict majority of the copies that
    passed their check, or None (no such copy, or no majority)."""
    counts = Counter(value for value in survey.values() if isinstance(value, tuple))
    if not counts:
        return None
    (value, count), *_ = counts.most_common(1)
    return value if 2 * count > sum(counts.values()) else None


def _damaged(value: Any, agreed: tuple[int, int]) -> bool:
    """A copy that failed its check or holds other bytes than ``agreed``."""
    return value == _CORRUPT or (isinstance(value, tuple) and value != agreed)


def _divergent(survey: Mapping[NodeAddress, Any]) -> dict[NodeAddress, int]:
    """The CRC32C of each copy that passed its check (for ``_copy``: only
    the damaged targets among them are rewritten)."""
    return {node: value[1] for node, value in survey.items() if isinstance(value, tuple)}


def _describe(value: Any, agreed: tuple[int, int] | None = None) -> str:
    if isinstance(value, tuple):
        text = f"{value[0]} bytes, CRC32C {value[1]:08x}"
        return text if agreed is None else f"divergent ({text})"
    return str(value)


def _by_address(nodes: Iterable[NodeAddress]) -> list[NodeAddress]:
    """``nodes`` in a stable order (runs and logs are reproducible)."""
    return sorted(nodes, key=lambda node: node.address)

"""Restoring the replica count of the distributed backend's chunks.

Every ``interval`` seconds (a ``LoopingCall`` on the injected reactor) the
repairer lists the chunks of every node that answers, and for each chunk
makes sure every node of its current placement holds a copy, copying from a
node that has it.  That covers a node that was down during a write, a node
that came back empty (disk replaced), and nodes added to the cluster (the
chunk's new placement gets its copy; the old copy stays, harmless, and is
still found by reads).  With ``random`` placement there is no fixed
placement, so a chunk with fewer than N copies gets new ones on random nodes.

Nodes that do not answer the listing are left alone: they may come back with
their data.  A run copies at most ``max_copies`` chunks, so one run is
bounded and the next picks up where this one stopped.  Copies read the whole
chunk through the source node (which verifies its block CRCs) before writing.

A node whose disk is full answers the listing (it is not down) but refuses
copies with ``StorageFull``.  After its first refusal the run sends it no
more copies (each would read the chunk from a source only to be refused);
those chunks are counted as ``copies_deferred``, outside ``max_copies``, so
a full node cannot use up a run that other nodes' repairs need.  The next
run tries the node again, so repair resumes by itself once space is freed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from lightningstor.errors import StorageFull
from lightningstor.storage.placement import NodeAddress

log = Logger()


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


class Repairer:
    """Periodic re-replication for a :class:`DistributedBackend`."""

    def __init__(self, backend: Any, reactor: Any, *, interval: float = 60.0, max_copies: int = 1000) -> None:
        self.backend = backend
        self.reactor = reactor
        self.interval = interval
        self.max_copies = max_copies
        self.last_report: RepairReport | None = None
        self._loop = LoopingCall(self._tick)
        self._loop.clock = reactor
        self._running: defer.Deferred[Any] | None = None

    def start(self) -> None:
        if not self._loop.running:
            # First run after one interval: let the nodes come up.
            self._loop.start(self.interval, now=False).addErrback(
                lambda f: log.failure("chunk repair loop stopped", f)
            )

    @defer.inlineCallbacks
    def stop(self) -> Any:
        if self._loop.running:
            self._loop.stop()
        if self._running is not None:
            yield self._running

    def _tick(self) -> defer.Deferred[Any]:
        # A failed run is logged, never fatal: the loop keeps going.
        d = self.run_once()
        d.addErrback(lambda f: log.failure("chunk repair run failed", f))
        self._running = d
        return d

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
        for chunk_id in sorted(holders):
            have = holders[chunk_id]
            missing = self._missing(chunk_id, have, set(by_node))
            if not missing:
                continue
            targets = [node for node in missing if node not in full]
            if len(targets) < len(missing):
                report.copies_deferred += 1  # the next run tries the full node again
            if not targets:
                continue
            if report.copies_made + report.copies_failed >= self.max_copies:
                report.truncated = True
                break
            ok = yield self._copy(chunk_id, have, targets, full)
            if ok:
                report.copies_made += 1
            else:
                report.copies_failed += 1
        report.nodes_full = sorted(node.address for node in full)
        if full:
            log.warn("Chunk repair: node(s) {nodes} refused copies, disk full", nodes=", ".join(report.nodes_full))
        self.last_report = report
        if report.copies_made or report.copies_failed:
            log.info(
                "Chunk repair: {made} chunks re-replicated, {failed} failed, {seen} chunks seen",
                made=report.copies_made,
                failed=report.copies_failed,
                seen=report.chunks_seen,
            )
        return report

    def _missing(self, chunk_id: str, have: set[NodeAddress], answering: set[NodeAddress]) -> list[NodeAddress]:
        """Answering nodes that should get a copy of ``chunk_id``."""
        backend = self.backend
        if backend.placement_strategy == "random":
            need = backend.replication_factor - len(have)
            if need <= 0:
                return []
            candidates = [node for node in backend.read_order(chunk_id) if node in answering and node not in have]
            return candidates[:need]
        return [node for node in backend.placement(chunk_id) if node in answering and node not in have]

    @defer.inlineCallbacks
    def _copy(
        self, chunk_id: str, sources: set[NodeAddress], targets: list[NodeAddress], full: set[NodeAddress]
    ) -> Any:
        """Read ``chunk_id`` from a good source and write it to ``targets``;
        targets that refuse for lack of space are added to ``full``."""
        data = None
        for source in sorted(sources, key=lambda node: node.address):
            try:
                data = yield self.backend.call(source, "get", chunk_id)
                break
            except Exception as e:
                log.warn("Repair: cannot read chunk {chunk_id} from {node}: {error}",
                         chunk_id=chunk_id, node=source.address, error=e)
        if data is None:
            return False
        results = yield defer.DeferredList(
            [self.backend.call(target, "put", chunk_id, data) for target in targets], consumeErrors=True
        )
        for target, (ok, value) in zip(targets, results, strict=True):
            if not ok and value.check(StorageFull):
                full.add(target)
        return all(ok for ok, _ in results)

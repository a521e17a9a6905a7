"""The ``distributed`` storage backend: chunks replicated over storage nodes.

Each chunk goes to ``replication_factor`` (N) nodes chosen by the placement
strategy (:mod:`lightningstor.storage.placement`); a write is acknowledged
once ``write_quorum`` (default: a majority) of them hold it durably, and the
copies that failed are left to :class:`~lightningstor.storage.repair.Repairer`.
Reads ask the chunk's placement first (while a write of the same id is in
flight, the nodes it has already reached before the others, so an
overwrite acknowledged at its quorum is read back) and then every other node, moving on
after a missing, corrupted (the node verifies its block CRCs) or unreachable
replica; the ChunkManager verifies the chunk's CRC over full reads on top.

End-to-end integrity (docs/scaling.md, "Chunk integrity"): a chunk's
CRC32C as the ChunkManager computed it (the one its record keeps) travels
with every copy written (:class:`CheckedChunkWriter`, ``put_chunk``), and
the node refuses bytes that do not match.  Reads go through
:meth:`DistributedBackend.get_chunk_range_checked` with the record's size
and CRC: a replica whose whole chunk differs (a divergent copy, its block
CRCs self-consistent) is skipped before any of its bytes is used, ranged
reads included, and the damaged copies are rewritten in the background
(read repair).  Chunk ids are immutable: a node keeps an intact copy against
a write of other bytes (``ChunkExists``), so read repair and scrub name the
CRC32C of the divergent copy they replace (``NodeClient.put``'s ``replace``).
Deletes go to every node (a chunk may sit off its placement after nodes were
added, until repair trims that copy); an unreachable node keeps its copy
until repair/GC.

A node whose disk is full refuses writes with RESOURCE_EXHAUSTED, which the
node client raises as ``StorageFull`` (:class:`~lightningstor.storage.nodeclient.NodeFull`);
it still serves reads, deletes and listings, so it is not "down".  A copy
refused by a full node goes to a spare instead: the next node of the chunk's
rendezvous ranking that is not in its placement and takes it (spares are
shared by the chunk's copies, so two copies never land on one node).  Reads
already fall back to the ranking, so they find it, and repair copies the
chunk to its placement node once that node has room again; the spare's copy
is then extra, like the old copies after nodes are added, and repair
deletes ("trims") it once every placement node holds the chunk (the rules
are in :mod:`lightningstor.storage.repair`; ``trim_extra_copies = false``
keeps extra copies).  With ``zone_aware`` placement a
spare may share a zone with another copy: space beats zone spread.  So with
more nodes than replicas a full node no longer refuses the chunks placed on
it while others have room.  A write whose quorum is lost because of full
nodes (the node and every spare it tried full) fails with ``StorageFull``
(507, not retried by clients) only if the full copies alone cost it the
quorum, otherwise with a retryable ``StorageError`` (503): the rule and its
reasons are in :mod:`lightningstor.storage.quorum`.

Node calls are blocking gRPC calls with deadlines, run in the server's
bounded io pool (``context.io_pool``), so the reactor never waits on the
network.  ``open_chunk`` buffers one chunk (at most ``max_chunk_size``,
normally ``[storage] chunk_size_bytes``) in memory and replicates it on
``commit``: a chunk is small and bounded, and whole-chunk puts keep the
quorum logic in one place.

A node that hangs (accepts connections, never answers) must not stall the
others (docs/scaling.md, "A slow or hung node"): every call goes through
:class:`~lightningstor.storage.health.NodeHealth`, which lets one node hold
at most half the pool, marks a node that did not answer *suspect* (asked
last by reads, probed in the background until it answers) and refuses calls
to a suspect node whose slots are all busy, so a write's straggler to it
fails at once instead of queueing.  The write is acknowledged by the copies
that succeeded, never fewer than its quorum, and repair restores the
missing copy.  A read that has other replicas left waits ``read_timeout``
(a few seconds) for a replica instead of the full deadline; the replicas
that only timed out are asked again with the full deadline when no other
one served the chunk.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from zope.interface import implementer

from lightningstor.checksums import crc32c
from lightningstor.deferreds import Running, settled
from lightningstor.errors import ChunkCorrupted, ChunkNotFound, ConfigError
from lightningstor.interfaces.chunkwriter import BufferedChunkWriter
from lightningstor.interfaces.storage import (
    BackendCapabilities,
    ChunkInfo,
    DurabilityLevel,
    IReplicaScrub,
    IStorageBackend,
    IStorageBackendFactory,
    PluginContext,
    ReplicaCheck,
)
from lightningstor.storage import placement
from lightningstor.storage.health import NodeHealth
from lightningstor.storage.nodeclient import (
    NodeClient,
    NodeFull,
    NodeTimeout,
    NodeTls,
    NodeUnavailable,
    load_node_tls,
)
from lightningstor.storage.placement import NodeAddress
from lightningstor.storage.quorum import gather_quorum

log = Logger()

MiB = 1 << 20
MAX_CHUNK_SIZE = 64 * MiB
DEFAULT_REPAIR_INTERVAL = 60.0
DEFAULT_READ_TIMEOUT = 2.0
"""Seconds a read waits for one replica while other replicas are left."""
# The ids the nodes' local backends accept (they check again): rejecting a
# bad id here gives the caller a ValueError rather than a failed quorum.
_CHUNK_ID = re.compile(r"[0-9a-f][0-9a-f-]{0,127}")


def _check_id(chunk_id: str) -> None:
    if not isinstance(chunk_id, str) or not _CHUNK_ID.fullmatch(chunk_id):
        raise ValueError(f"invalid chunk id {chunk_id!r}: must be [0-9a-f-], 1..128 chars")


class _Spares:
    """The nodes outside a chunk's placement, best ranked first, handed out
    once each to the copies of one write whose node was full.  Ranked on
    the first ``take`` only: a node is rarely full, and every chunk write
    makes one of these."""

    __slots__ = ("_chunk_id", "_home", "_left", "_nodes")

    def __init__(self, chunk_id: str, nodes: list[NodeAddress], home: list[NodeAddress]) -> None:
        self._chunk_id = chunk_id
        self._nodes = nodes
        self._home = home
        self._left: list[NodeAddress] | None = None

    def take(self) -> NodeAddress | None:
        if self._left is None:
            ranked = placement.ranking(self._chunk_id, self._nodes)
            self._left = [node for node in ranked if node not in self._home][::-1]  # popped from the end
        return self._left.pop() if self._left else None


class CheckedChunkWriter(BufferedChunkWriter):
    """A :class:`BufferedChunkWriter` that also carries the chunk's CRC32C
    as the ChunkManager computed it (:meth:`expect_crc32c`, before
    ``commit``) to ``put_chunk``, which sends it to every node: a node
    refuses bytes that do not match, so damage between the hashing and the
    node's disk fails that copy instead of storing a divergent replica."""

    def __init__(self, chunk_id: str, put_chunk: Callable[..., Any], max_size: int) -> None:
        super().__init__(chunk_id, self._put, max_size)
        self._put_checked = put_chunk
        self._checksum: int | None = None

    def expect_crc32c(self, checksum: int) -> None:
        self._checksum = checksum

    def _put(self, chunk_id: str, data: bytes) -> Any:
        return self._put_checked(chunk_id, data, self._checksum)


def parse_node(url: str, zone: str | None = None) -> NodeAddress:
    """A ``NodeAddress`` from a configured node URL (``http://host:port``).

    Without a zone, each node is its own zone, so ``zone_aware`` still
    spreads replicas over distinct nodes.
    """
    parts = urlsplit(url if "//" in url else f"http://{url}")
    if not parts.hostname or parts.port is None:
        raise ConfigError(f"storage.distributed.nodes: {url!r} needs a host and a port")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return NodeAddress(url, f"{host}:{parts.port}", zone if zone else url, parts.scheme == "https")


@implementer(IStorageBackend, IReplicaScrub)
class DistributedBackend:
    """Chunks replicated over storage nodes; see the module docstring."""

    name = "distributed"

    def __init__(
        self,
        nodes: Sequence[NodeAddress],
        reactor: Any,
        pool: Any,
        *,
        replication_factor: int = 3,
        placement_strategy: str = "consistent_hash",
        write_quorum: int | None = None,
        max_chunk_size: int = MAX_CHUNK_SIZE,
        client_factory: Callable[[NodeAddress], Any] = NodeClient,
        rng: random.Random | None = None,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        node_concurrency: int | None = None,
    ) -> None:
        if not nodes:
            raise ValueError("at least one node is needed")
        if not 1 <= replication_factor <= len(nodes):
            raise ValueError("replication_factor must be 1..number of nodes")
        if placement_strategy not in placement.STRATEGIES:
            raise ValueError(f"unknown placement strategy {placement_strategy!r}")
        quorum = placement.majority(replication_factor) if write_quorum is None else write_quorum
        if not 1 <= quorum <= replication_factor:
            raise ValueError("write_quorum must be 1..replication_factor")
        if not read_timeout > 0:
            raise ValueError("read_timeout must be positive")
        self.nodes = list(nodes)
        self.replication_factor = replication_factor
        self.placement_strategy = placement_strategy
        self.write_quorum = quorum
        self.max_chunk_size = max_chunk_size
        self.clients = {node: client_factory(node) for node in self.nodes}
        self._reactor = reactor
        self._pool = pool
        self._rng = rng or random.Random()
        self._running = Running()
        # Each write in flight: every replica write, stragglers included, and
        # the nodes whose copy is already written (reads try those first,
        # see _first_replica).
        self._writing: dict[str, tuple[defer.Deferred[Any], set[NodeAddress]]] = {}
        self.repairer: Any = None
        # Chunks whose damaged copies a read is rewriting (see _read_repair).
        self._read_repairs: set[str] = set()
        # Told the address of each node whose copy a read repair rewrote (see observe).
        self.on_read_repair: Callable[[str], None] | None = None
        self.read_timeout = read_timeout
        if node_concurrency is None:
            # Half the pool per node (all of it for a single node): a hung
            # node leaves the other half to the nodes that answer.
            threads = int(getattr(pool, "max", 8))
            node_concurrency = max(1, threads // 2) if len(self.nodes) > 1 else threads
        self.health = NodeHealth(reactor, self.nodes, self._probe, limit=node_concurrency, stall=read_timeout)

    # -- helpers ---------------------------------------------------------------

    def observe(
        self, *, read_repaired: Callable[[str], None], suspect: Callable[[NodeAddress, bool], None]
    ) -> None:
        """Report each copy rewritten by read repair (the node's address)
        and each change of a node's suspect state (the server's metrics,
        ``lightningstor_storage_read_repairs_total`` and
        ``lightningstor_storage_node_suspect``)."""
        self.on_read_repair = read_repaired
        self.health.on_suspect = suspect

    def call(self, node: NodeAddress, method: str, *args: Any, timeout: float | None = None) -> defer.Deferred[Any]:
        """Run ``NodeClient.<method>(*args)`` for ``node`` in the pool, once
        the node has a free call slot (:class:`NodeHealth`; fails at once
        with ``NodeSuspect`` when the node is suspect and has none);
        ``timeout`` overrides the client's deadline and bounds the wait for
        a slot (reads with other replicas left; ``NodeBusy`` after it).

        Calls still running after their quorum decided (stragglers) are
        tracked so that ``close`` waits for them before the pool stops.
        """
        function = getattr(self.clients[node], method)
        if timeout is not None:
            function = partial(function, timeout=timeout)
        return self._running.track(
            self.health.run(node, lambda: deferToThreadPool(self._reactor, self._pool, function, *args), timeout)
        )

    def _probe(self, node: NodeAddress) -> defer.Deferred[Any]:
        """A ``Health`` call outside the node's slots (for :class:`NodeHealth`)."""
        return self._running.track(deferToThreadPool(self._reactor, self._pool, self.clients[node].health))

    def placement(self, chunk_id: str) -> list[NodeAddress]:
        """Where a new copy of ``chunk_id`` goes (random: a fresh sample)."""
        return placement.place(chunk_id, self.nodes, self.replication_factor, self.placement_strategy, self._rng)

    def read_order(self, chunk_id: str) -> list[NodeAddress]:
        return placement.read_order(chunk_id, self.nodes, self.replication_factor, self.placement_strategy)

    @defer.inlineCallbacks
    def _first_replica(
        self, chunk_id: str, method: str, *args: Any, bad: list[NodeAddress] | None = None
    ) -> Any:
        """The first successful ``method`` answer among the chunk's replicas.

        Missing, corrupted and unreachable replicas are skipped (the
        corrupted ones are appended to ``bad``); the error raised when none
        answers says which kind was seen.  Suspect nodes are asked last; a
        replica with others left after it gets ``read_timeout`` seconds,
        and the ones that timed out are asked again with the full deadline
        only if no other replica served the chunk.
        """
        _check_id(chunk_id)
        corrupted: list[str] = []
        unavailable: list[str] = []
        order = self.health.order(self.read_order(chunk_id))
        writing = self._writing.get(chunk_id)
        acked = writing[1] if writing is not None else None
        if acked:
            # A write of this id is still in flight (acknowledged at its
            # quorum, stragglers still running): a node it has not reached
            # yet may hold an older copy under the same id, so the copies
            # already written are read first (read-your-writes).
            order = [n for n in order if n in acked] + [n for n in order if n not in acked]
        attempts = [(node, self.read_timeout if i < len(order) - 1 else None) for i, node in enumerate(order)]
        while attempts:
            slow: list[NodeAddress] = []  # timed out on the short deadline
            for node, timeout in attempts:
                try:
                    value = yield self.call(node, method, chunk_id, *args, timeout=timeout)
                except ChunkNotFound:
                    continue
                except ValueError:
                    raise  # a bad request is bad on every replica
                except ChunkCorrupted as e:
                    log.warn("Replica of chunk {chunk_id} is corrupted: {error}", chunk_id=chunk_id, error=e)
                    corrupted.append(str(e))
                    if bad is not None:
                        bad.append(node)
                    continue
                except NodeTimeout as e:
                    if timeout is None:
                        unavailable.append(str(e))
                    else:
                        slow.append(node)
                    continue
                except defer.CancelledError:
                    raise  # the caller went away: no other replica is wanted
                except Exception as e:
                    unavailable.append(str(e))
                    continue
                return value
            # No other replica served it: a slow one may still have it.
            attempts = [(node, None) for node in slow]
        if unavailable:
            raise NodeUnavailable(
                f"chunk {chunk_id}: no readable replica ({'; '.join(unavailable + corrupted)})"
            )
        if corrupted:
            raise ChunkCorrupted(f"chunk {chunk_id}: every replica is corrupted ({'; '.join(corrupted)})")
        raise ChunkNotFound(f"chunk {chunk_id} not found on any node")

    # -- IStorageBackend -----------------------------------------------------

    def put_chunk(self, chunk_id: str, data: bytes, checksum: int | None = None) -> defer.Deferred[Any]:
        """Send to every placement node at once; fire at the write quorum.

        ``checksum`` is the chunk's CRC32C as the ChunkManager computed it
        (computed by the node client when None); every node checks the bytes
        it received against it before storing them."""
        try:
            _check_id(chunk_id)
        except ValueError:
            return defer.fail()
        if len(data) > self.max_chunk_size:
            return defer.fail(ValueError(f"chunk {chunk_id}: exceeds max_chunk_size"))
        payload = data if isinstance(data, bytes) else bytes(data)
        previous = self._writing.get(chunk_id)
        if previous is not None:
            # An overwrite waits for the previous write's stragglers, which
            # would otherwise land late and leave the old bytes on a replica.
            return settled(previous[0]).addCallback(lambda _: self.put_chunk(chunk_id, payload, checksum))
        home = self.placement(chunk_id)
        spares = _Spares(chunk_id, self.nodes, home)
        acked: set[NodeAddress] = set()
        calls = [self._put_copy(node, chunk_id, payload, checksum, spares).addCallback(acked.add) for node in home]
        # Every replica write, stragglers included, for delete_chunk to wait on:
        # a late copy landing after a delete would bring the chunk back.
        everything = defer.DeferredList(list(calls), consumeErrors=False)
        entry = (everything, acked)
        self._writing[chunk_id] = entry

        def written(result: Any) -> Any:
            if self._writing.get(chunk_id) is entry:
                del self._writing[chunk_id]
            return result

        everything.addBoth(written)
        d = gather_quorum(calls, self.write_quorum, f"write of chunk {chunk_id}")
        d.addCallback(lambda _: None)
        return d

    def _put_copy(
        self, node: NodeAddress, chunk_id: str, payload: bytes, checksum: int | None, spares: _Spares
    ) -> defer.Deferred[Any]:
        """One copy of a chunk: on ``node``, or, if it is full, on the next
        spare that takes it.  Fails with the node's ``NodeFull`` when every
        spare tried was full too (or none is left), and with the first other
        error a spare gave if one did (a spare that is down might have taken
        the copy: that is not a lack of space).  Fires with the node that
        holds the copy."""
        d = self.call(node, "put", chunk_id, payload, checksum).addCallback(lambda _: node)

        def full(failure: Failure) -> Any:
            failure.trap(NodeFull)
            return self._spill(chunk_id, payload, checksum, spares, failure, None)

        return d.addErrback(full)

    def _spill(
        self,
        chunk_id: str,
        payload: bytes,
        checksum: int | None,
        spares: _Spares,
        full: Failure,
        other: Failure | None,
    ) -> Any:
        spare = spares.take()
        if spare is None:
            return other if other is not None else full
        log.info("Chunk {chunk_id}: a placement node is full, writing the copy to spare {node}",
                 chunk_id=chunk_id, node=spare.address)
        d = self.call(spare, "put", chunk_id, payload, checksum).addCallback(lambda _: spare)

        def refused(failure: Failure) -> Any:
            if failure.check(NodeFull):
                return self._spill(chunk_id, payload, checksum, spares, full, other)
            return self._spill(chunk_id, payload, checksum, spares, full, other or failure)

        return d.addErrback(refused)

    def open_chunk(self, chunk_id: str) -> CheckedChunkWriter:
        _check_id(chunk_id)
        return CheckedChunkWriter(chunk_id, self.put_chunk, self.max_chunk_size)

    def get_chunk(self, chunk_id: str) -> defer.Deferred[bytes]:
        return self._first_replica(chunk_id, "get")

    def get_chunk_range(self, chunk_id: str, offset: int, length: int) -> defer.Deferred[bytes]:
        if offset < 0 or length < 0:
            return defer.fail(ValueError("offset and length must be >= 0"))
        return self._first_replica(chunk_id, "get", offset, length)

    @defer.inlineCallbacks
    def get_chunk_range_checked(self, chunk_id: str, offset: int, length: int, size: int, checksum: int) -> Any:
        """Deferred[bytes]: like :meth:`get_chunk_range`, from the first
        replica that holds the chunk the record describes (``size`` bytes,
        CRC32C ``checksum``): a replica with other bytes, even with valid
        block CRCs, is skipped like a corrupt one, before any of its bytes is
        used (the node sends its whole-chunk CRC with the first piece; see
        ``NodeClient.get_checked``).

        When a replica was skipped as corrupt or divergent and another one
        answered, the damaged copies are rewritten in the background from a
        copy that matches the record (read repair, :meth:`_read_repair`).
        """
        if offset < 0 or length < 0:
            raise ValueError("offset and length must be >= 0")
        bad: list[NodeAddress] = []
        data = yield self._first_replica(chunk_id, "get_checked", offset, length, size, checksum, bad=bad)
        if bad:
            self._read_repair(chunk_id, size, checksum)
        return data

    def _read_repair(self, chunk_id: str, size: int, checksum: int) -> None:
        """Rewrite the corrupt or divergent copies of ``chunk_id`` from a copy
        matching its record, in the background (one at a time per chunk)."""
        if chunk_id in self._read_repairs:
            return
        self._read_repairs.add(chunk_id)
        d = self._running.track(self.scrub_chunk(chunk_id, size, checksum, rewrite_missing=False))

        def done(result: Any) -> None:
            self._read_repairs.discard(chunk_id)
            if isinstance(result, Failure):
                log.warn("Read repair of chunk {chunk_id} failed: {error}", chunk_id=chunk_id, error=result.value)
            elif result.repaired:
                log.info("Read repair: rewrote chunk {chunk_id} on {nodes}",
                         chunk_id=chunk_id, nodes=", ".join(result.repaired))
                if self.on_read_repair is not None:
                    for node in result.repaired:
                        self.on_read_repair(node)

        d.addBoth(done)

    @defer.inlineCallbacks
    def delete_chunk(self, chunk_id: str) -> Any:
        """Delete on every node; True if any had it.

        Unreachable nodes keep their copy (repair or GC meets it later); only
        when no node answers does the delete fail.
        """
        _check_id(chunk_id)
        writing = self._writing.get(chunk_id)
        if writing is not None:
            yield settled(writing[0])
        results = yield defer.DeferredList(
            [self.call(node, "delete", chunk_id) for node in self.nodes], consumeErrors=True
        )
        answered = [value for ok, value in results if ok]
        for ok, failure in results:
            if not ok:
                log.warn("Delete of chunk {chunk_id} skipped a node: {error}", chunk_id=chunk_id, error=failure.value)
        if not answered:
            raise NodeUnavailable(f"delete of chunk {chunk_id}: no node answered")
        return any(answered)

    @defer.inlineCallbacks
    def chunk_exists(self, chunk_id: str) -> Any:
        _check_id(chunk_id)
        answered = False
        for node in self.health.order(self.read_order(chunk_id)):
            try:
                exists = yield self.call(node, "has", chunk_id)
            except Exception:
                continue
            if exists:
                return True
            answered = True
        if not answered:
            raise NodeUnavailable(f"chunk {chunk_id}: no node answered")
        return False

    @defer.inlineCallbacks
    def list_chunks_by_node(self) -> Any:
        """{node: [ChunkInfo]} of the nodes that answered (for repair)."""
        results = yield defer.DeferredList([self.call(node, "list") for node in self.nodes], consumeErrors=True)
        found: dict[NodeAddress, list[ChunkInfo]] = {}
        for node, (ok, value) in zip(self.nodes, results, strict=True):
            if ok:
                found[node] = value
            else:
                log.warn("Listing chunks skipped node {node}: {error}", node=node.address, error=value.value)
        return found

    @defer.inlineCallbacks
    def list_chunks(self) -> Any:
        """Every chunk any answering node holds, once; fails if none answers."""
        by_node = yield self.list_chunks_by_node()
        if not by_node:
            raise NodeUnavailable("list chunks: no node answered")
        merged: dict[str, ChunkInfo] = {}
        for infos in by_node.values():
            for info in infos:
                merged.setdefault(info.chunk_id, info)
        return sorted(merged.values(), key=lambda info: info.chunk_id)

    # -- IReplicaScrub ---------------------------------------------------------

    @defer.inlineCallbacks
    def scrub_chunk(self, chunk_id: str, size: int, checksum: int, *, rewrite_missing: bool = True) -> Any:
        """Read every node's copy of ``chunk_id``, check its size and CRC32C,
        and rewrite each corrupt copy, and each placement node's missing
        copy (unless ``rewrite_missing`` is false: read repair), from a good one.

        Every node is asked, not only the placement: after nodes were added
        a good copy may sit off its current placement, and a rotten one
        anywhere would be served by a read that falls back to it.  With
        ``random`` placement there is no fixed home, so only corrupt copies
        are rewritten; lost ones are the :class:`Repairer`'s job.
        """
        _check_id(chunk_id)
        home = set() if self.placement_strategy == "random" else set(self.placement(chunk_id))
        good: list[NodeAddress] = []
        missing: list[NodeAddress] = []
        corrupt: list[NodeAddress] = []
        unreachable: list[NodeAddress] = []
        divergent: dict[NodeAddress, int] = {}
        data: bytes | None = None
        for node in self.read_order(chunk_id):
            try:
                copy = yield self.call(node, "get", chunk_id)
            except ChunkNotFound:
                if node in home and rewrite_missing:
                    missing.append(node)
                continue
            except ChunkCorrupted:
                corrupt.append(node)
                continue
            except Exception as e:
                log.warn("Scrub: cannot read chunk {chunk_id} from {node}: {error}",
                         chunk_id=chunk_id, node=node.address, error=e)
                unreachable.append(node)
                continue
            found = yield deferToThreadPool(self._reactor, self._pool, crc32c, copy)  # whole chunks: off the reactor
            if len(copy) != size or found != checksum:
                corrupt.append(node)
                divergent[node] = found  # intact, other bytes: the node replaces it only if named
                continue
            good.append(node)
            if data is None:
                data = copy
        repaired: list[NodeAddress] = []
        targets = corrupt + missing
        if data is not None and targets:
            results = yield defer.DeferredList(
                [self.call(node, "put", chunk_id, data, checksum, divergent.get(node)) for node in targets],
                consumeErrors=True,
            )
            for node, (ok, value) in zip(targets, results, strict=True):
                if ok:
                    repaired.append(node)
                else:
                    log.warn("Scrub: rewriting chunk {chunk_id} on {node} failed: {error}",
                             chunk_id=chunk_id, node=node.address, error=value.value)

        def names(found: list[NodeAddress]) -> tuple[str, ...]:
            return tuple(node.address for node in found)

        return ReplicaCheck(names(good), names(missing), names(corrupt), names(unreachable), names(repaired))

    def capabilities(self) -> BackendCapabilities:
        return BackendCapabilities(
            self.max_chunk_size, True, True, DurabilityLevel.REPLICATED, self.replication_factor, checked_reads=True
        )

    def check(self) -> defer.Deferred[Any]:
        """Healthy when at least a write quorum of nodes serves."""
        d = gather_quorum([self.call(node, "health") for node in self.nodes], self.write_quorum, "health check")
        d.addCallback(lambda _: None)
        return d

    @defer.inlineCallbacks
    def close(self) -> Any:
        if self.repairer is not None:
            yield self.repairer.stop()
        # Replica writes still finishing after their quorum: let them land.
        self.health.close()
        yield self._running.settled()
        for client in self.clients.values():
            client.close()



# -- plugin factory --------------------------------------------------------------


@implementer(IPlugin, IStorageBackendFactory)
class DistributedStorageFactory:
    """Builds :class:`DistributedBackend` from ``[storage.distributed]``
    (validated by :mod:`lightningstor.config`) and starts its repair loop
    (which also trims extra copies unless ``trim_extra_copies`` is false).
    ``https://`` nodes get mutual TLS with the ``tls_*_file`` settings."""

    name = "distributed"
    description = "Chunks replicated over storage nodes (twistd lightningstor-node)"

    def create(self, options: Mapping[str, Any], context: PluginContext) -> DistributedBackend:
        from lightningstor.storage.repair import Repairer

        section = options.get("distributed")
        if not isinstance(section, Mapping) or not section.get("nodes"):
            raise ConfigError("storage.distributed.nodes: required when storage.backend is 'distributed'")
        urls = list(section["nodes"])
        zones = list(section.get("zones") or [None] * len(urls))
        if len(zones) != len(urls):
            raise ConfigError("storage.distributed.zones: must name one zone per node")
        nodes = [parse_node(url, zone) for url, zone in zip(urls, zones, strict=True)]
        tls = _node_tls(section, nodes)
        try:
            backend = DistributedBackend(
                nodes,
                context.reactor,
                context.io_pool,
                replication_factor=int(section.get("replication_factor", 3)),
                placement_strategy=str(section.get("placement_strategy", "consistent_hash")),
                write_quorum=section.get("write_quorum"),
                max_chunk_size=MAX_CHUNK_SIZE,
                client_factory=partial(NodeClient, tls=tls),
                read_timeout=float(section.get("read_timeout_seconds", DEFAULT_READ_TIMEOUT)),
            )
        except ValueError as e:
            raise ConfigError(f"storage.distributed: {e}") from None
        interval = float(section.get("repair_interval_seconds", DEFAULT_REPAIR_INTERVAL))
        trim = section.get("trim_extra_copies", True)
        if not isinstance(trim, bool):
            raise ConfigError(f"storage.distributed.trim_extra_copies: expected true or false, got {trim!r}")
        if interval > 0:
            # Started by the server once it has the repair lease set up
            # (lightningstor.server); a backend an admin command opens
            # (collect, scrub) never repairs or trims outside that lease.
            backend.repairer = Repairer(backend, context.reactor, interval=interval, trim=trim)
        return backend


def _node_tls(section: Mapping[str, Any], nodes: Sequence[NodeAddress]) -> NodeTls | None:
    """The client side of the nodes' mutual TLS, read from the files
    ``tls_cert_file``/``tls_key_file``/``tls_ca_file`` name, or None when no
    node URL is ``https://``.

    :mod:`lightningstor.config` already rejects incomplete settings; they
    are checked again here for callers that build the options themselves.
    Reads the files (start-up, before the reactor runs) so that a wrong
    path or a key not matching its certificate stops start-up, naming the
    key, instead of failing every chunk call later.  The client certificate
    is not reloaded on SIGHUP: restart the API server after renewing it.
    """
    if not any(node.secure for node in nodes):
        return None
    files = {key: section.get(key) for key in ("tls_cert_file", "tls_key_file", "tls_ca_file")}
    missing = [key for key, value in files.items() if not value]
    if missing:
        raise ConfigError(
            f"storage.distributed.{missing[0]}: required when a node URL is https:// "
            "(nodes require a client certificate and are verified against the CA)"
        )
    return load_node_tls(str(files["tls_cert_file"]), str(files["tls_key_file"]), str(files["tls_ca_file"]))


distributedStorageFactory = DistributedStorageFactory()

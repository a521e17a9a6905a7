"""A storage node whose disk is full, in process over real gRPC on loopback:
the node answers RESOURCE_EXHAUSTED marked ``storage-full``, the node client
raises StorageFull, and a write whose quorum full nodes cost fails with
StorageFull (507) while a quorum lost to a node that is down stays a
retryable StorageError (503).  Also the quorum rule on its own, the
client's reading of gRPC's own RESOURCE_EXHAUSTED, and repair around a full
node.  (tests/integration/test_distributed_full.py fills real tmpfs disks.)

Runs on the real reactor through pytest-twisted (``--reactor=default``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from lightningstor.checksums import crc32c
from lightningstor.errors import (
    InsufficientStorage,
    ServiceUnavailable,
    StorageError,
    StorageFull,
    below_core,
)
from lightningstor.interfaces.storage import ChunkInfo
from lightningstor.node.service import NodeGrpcService
from lightningstor.node.servicer import ChunkServicer, NodeIdentity
from lightningstor.storage.distributed import DistributedBackend, parse_node
from lightningstor.storage.local import LocalFsBackend
from lightningstor.storage.nodeclient import NodeClient, NodeUnavailable, _translate
from lightningstor.storage.quorum import QuorumNotReached, gather_quorum
from lightningstor.storage.repair import Repairer
from tests.contract.storage_contract import failure_of

ENOSPC = "local storage: [Errno 28] No space left on device"


class _FullWriter:
    def write(self, data: bytes) -> defer.Deferred[None]:
        return defer.fail(StorageFull(ENOSPC))

    def commit(self) -> defer.Deferred[None]:
        return defer.fail(StorageFull(ENOSPC))

    def abort(self) -> defer.Deferred[None]:
        return defer.succeed(None)


class Node:
    """A chunk service on a loopback port over a real local backend;
    ``fill()`` makes its writes (and its health probe's write) fail the way
    a full disk makes the local backend fail."""

    def __init__(self, base: Path, name: str, reactor: Any) -> None:
        self.pool = ThreadPool(1, 4, f"{name}-disk")
        self.pool.start()
        self.backend = LocalFsBackend(str(base / name), reactor, self.pool, fsync=False)
        self.servicer = ChunkServicer(self.backend, reactor, self.pool, NodeIdentity(name, name, str(base)))
        self.service = NodeGrpcService(self.servicer, reactor, "127.0.0.1:0", grace_seconds=0.5)
        self.service.startService()
        self.address = parse_node(f"http://127.0.0.1:{self.service.bound_port}")

    def fill(self) -> None:
        backend: Any = self.backend
        backend.open_chunk = lambda chunk_id: _FullWriter()
        backend.check = lambda: defer.fail(StorageFull(ENOSPC))

    def stop(self) -> None:
        if self.service.running:
            pytest_twisted.blockon(self.service.stopService())
        if self.pool.started:
            self.pool.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[list[Node], ThreadPool]]:
    from twisted.internet import reactor

    nodes = [Node(tmp_path, f"n{i}", reactor) for i in range(3)]
    calls = ThreadPool(1, 8, "node-calls")
    calls.start()
    yield nodes, calls
    for node in nodes:
        node.stop()
    calls.stop()


def _in_pool(calls: ThreadPool, f: Any, *args: Any) -> Any:
    from twisted.internet import reactor

    return deferToThreadPool(reactor, calls, f, *args)  # type: ignore[arg-type]


@pytest_twisted.ensureDeferred
async def test_a_full_node_answers_resource_exhausted_and_the_client_raises_storage_full(cluster: Any) -> None:
    """The write is refused as StorageFull (not NodeUnavailable), naming the
    node and the cause; the node still serves reads, deletes and health."""
    nodes, calls = cluster
    node = nodes[0]
    client = NodeClient(node.address, timeout=10)
    try:
        await _in_pool(calls, client.put, "aa01", b"kept" * 1000)
        node.fill()
        failure = await failure_of(_in_pool(calls, client.put, "aa02", b"x" * 3_000_000))
        assert failure.check(StorageFull), failure
        assert not failure.check(NodeUnavailable)
        assert node.address.address in str(failure.value) and "out of disk space" in str(failure.value)
        assert "No space left on device" in str(failure.value)
        assert isinstance(below_core(failure.value), InsufficientStorage)
        # Not down: reads, listings, deletes and the health probe still work.
        assert await _in_pool(calls, client.get, "aa01") == b"kept" * 1000
        assert [i.chunk_id for i in await _in_pool(calls, client.list)] == ["aa01"]
        await _in_pool(calls, client.health)
        assert await _in_pool(calls, client.delete, "aa01") is True
    finally:
        client.close()


class _RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str, trailing: Any = ()) -> None:
        self._code, self._details, self._trailing = code, details, trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:
        return self._trailing


def test_grpcs_own_resource_exhausted_is_not_a_full_disk() -> None:
    """gRPC answers RESOURCE_EXHAUSTED itself for an oversized message or a
    concurrency limit: without the node's marker that is an unavailable
    (overloaded) node, worth another try, not a full disk."""
    node = parse_node("http://127.0.0.1:9")
    own = _translate(node, _RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "Concurrent RPC limit exceeded!"))
    assert isinstance(own, NodeUnavailable) and not isinstance(own, StorageFull)
    marked = _translate(node, _RpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "node out of disk space: x",
                                        (("lightningstor-error", "storage-full"),)))
    assert isinstance(marked, StorageFull)


def _backend(nodes: list[Any], calls: ThreadPool, *, addresses: list[Any] | None = None) -> DistributedBackend:
    from twisted.internet import reactor

    return DistributedBackend(
        addresses or [n.address for n in nodes], reactor, calls, replication_factor=3,
        client_factory=lambda address: NodeClient(address, timeout=10, small_timeout=5),
    )


@pytest_twisted.ensureDeferred
async def test_full_nodes_that_cost_the_quorum_make_the_write_storage_full(cluster: Any) -> None:
    """N=3, quorum 2.  One full node: the write still succeeds.  Two full:
    StorageFull (507).  One full and one down: a retryable StorageError
    (503), since the write succeeds again once the down node returns."""
    nodes, calls = cluster
    backend = _backend(nodes, calls)
    try:
        nodes[0].fill()
        await backend.put_chunk("c001", b"one full node is tolerated")
        assert await backend.get_chunk("c001") == b"one full node is tolerated"
        nodes[1].fill()
        failure = await failure_of(backend.put_chunk("c002", b"x" * 100))
        assert failure.check(StorageFull) and failure.check(QuorumNotReached), failure
        assert "2 of 3 replicas are out of space" in str(failure.value)
        assert isinstance(below_core(failure.value), InsufficientStorage)
        assert await backend.get_chunk("c001") == b"one full node is tolerated"  # reads still work
        await backend.check()  # full nodes are not down: the backend stays ready
    finally:
        await backend.close()

    down = parse_node("http://127.0.0.1:1")  # nothing listens there
    mixed = _backend(nodes, calls, addresses=[nodes[0].address, nodes[2].address, down])
    try:
        failure = await failure_of(mixed.put_chunk("c003", b"y" * 100))
        assert failure.check(QuorumNotReached) and not failure.check(StorageFull), failure
        assert isinstance(below_core(failure.value), ServiceUnavailable)
    finally:
        await mixed.close()


@pytest_twisted.ensureDeferred
async def test_a_full_placement_node_s_copy_goes_to_a_spare(tmp_path: Path) -> None:
    """Four nodes, three copies, every copy required (quorum 3).  With one
    node full, every chunk still gets its three copies: a copy placed on the
    full node goes to the next node of the chunk's ranking, and reads find
    it.  With two full, a chunk placed on both has one spare for two copies:
    507, since no retry can help until space is freed."""
    from twisted.internet import reactor

    nodes = [Node(tmp_path, f"s{i}", reactor) for i in range(4)]
    calls = ThreadPool(1, 8, "node-calls")
    calls.start()
    backend = DistributedBackend(
        [n.address for n in nodes], reactor, calls, replication_factor=3, write_quorum=3,
        client_factory=lambda address: NodeClient(address, timeout=10, small_timeout=5),
    )
    try:
        nodes[0].fill()
        chunk_ids = [f"d{i:03d}" for i in range(12)]
        placed_on_full = [c for c in chunk_ids if nodes[0].address in backend.placement(c)]
        assert placed_on_full  # three of four nodes: most chunks
        for chunk_id in chunk_ids:
            await backend.put_chunk(chunk_id, chunk_id.encode() * 10)
        for chunk_id in chunk_ids:
            assert await backend.get_chunk(chunk_id) == chunk_id.encode() * 10
            holders = [n for n in nodes if await n.backend.chunk_exists(chunk_id)]
            assert len(holders) == 3 and nodes[0] not in holders, chunk_id

        nodes[1].fill()
        both = next(f"e{i:03d}" for i in range(100)
                    if {nodes[0].address, nodes[1].address} <= set(backend.placement(f"e{i:03d}")))
        failure = await failure_of(backend.put_chunk(both, b"no room for two copies"))
        assert failure.check(StorageFull), failure
        assert isinstance(below_core(failure.value), InsufficientStorage)
    finally:
        await backend.close()
        for node in nodes:
            await node.service.stopService()
            node.pool.stop()
        calls.stop()


# -- the rule alone ------------------------------------------------------------------


def _outcome(d: defer.Deferred[Any]) -> Any:
    box: list[Any] = []
    d.addBoth(box.append)
    return box[0] if box else None


def test_quorum_rule_full_alone_decides_at_once() -> None:
    ds: list[defer.Deferred[Any]] = [defer.Deferred() for _ in range(3)]
    result = gather_quorum(ds, 2, "write")
    ds[0].errback(StorageFull("node a full"))
    ds[1].errback(StorageFull("node b full"))
    outcome = _outcome(result)  # decided without waiting for the third
    assert outcome is not None and outcome.check(StorageFull) and outcome.check(QuorumNotReached)
    ds[2].callback(None)


def test_quorum_rule_mixed_failures_wait_for_the_outstanding_reply() -> None:
    """Down first, then full: the third reply decides.  Full as well: the
    full nodes alone sink the quorum (507).  A success: the down node
    would have saved it (503)."""
    for third, full in ((StorageFull("c full"), True), (None, False), (NodeUnavailable("c down"), False)):
        ds: list[defer.Deferred[Any]] = [defer.Deferred() for _ in range(3)]
        result = gather_quorum(ds, 2, "write")
        ds[0].errback(NodeUnavailable("a down"))
        ds[1].errback(StorageFull("b full"))
        assert not result.called  # a full third reply would make it a 507: wait for it
        if third is None:
            ds[2].callback(None)
        else:
            ds[2].errback(third)
        outcome = _outcome(result)
        assert outcome is not None and outcome.check(QuorumNotReached), outcome
        assert bool(outcome.check(StorageFull)) is full, (third, outcome)


def test_quorum_rule_down_nodes_alone_do_not_wait() -> None:
    ds: list[defer.Deferred[Any]] = [defer.Deferred() for _ in range(5)]
    result = gather_quorum(ds, 3, "write")  # tolerates 2 failures
    ds[0].errback(NodeUnavailable("a down"))
    ds[1].errback(NodeUnavailable("b down"))
    ds[2].errback(StorageFull("c full"))
    # 1 full + 2 outstanding could still be 3 full (> 2 tolerated): wait.
    assert not result.called
    ds[3].errback(NodeUnavailable("d down"))
    outcome = _outcome(result)  # 1 full + 1 outstanding can no longer exceed 2
    assert outcome is not None and outcome.check(QuorumNotReached) and not outcome.check(StorageFull)
    ds[4].callback(None)
    assert isinstance(StorageFull("x"), StorageError)


# -- repair ------------------------------------------------------------------------------


class _RepairBackend:
    """What Repairer uses of DistributedBackend: node ``full`` holds nothing
    and refuses every copy for lack of space."""

    placement_strategy = "consistent_hash"
    replication_factor = 2

    def __init__(self, chunks: int) -> None:
        self.nodes = [parse_node(f"http://node-{i}:9002") for i in range(3)]
        self.full = self.nodes[2]
        self.ids = [f"{i:04x}" for i in range(chunks)]
        self.puts: list[tuple[str, str]] = []
        self.gets = 0

    def placement(self, chunk_id: str) -> list[Any]:
        return [self.nodes[0], self.full]

    def read_order(self, chunk_id: str) -> list[Any]:
        return list(self.nodes)

    def list_chunks_by_node(self) -> defer.Deferred[Any]:
        infos = [ChunkInfo(c, 4, 0.0) for c in self.ids]
        return defer.succeed({self.nodes[0]: infos, self.nodes[1]: [], self.full: []})

    def call(self, node: Any, method: str, chunk_id: str, *args: Any) -> defer.Deferred[Any]:
        if method == "verify":
            return defer.succeed((4, crc32c(b"data")))
        if method == "get_checked":
            self.gets += 1
            return defer.succeed(b"data")
        self.puts.append((node.address, chunk_id))
        if node is self.full:
            return defer.fail(StorageFull(f"node {node.address}: node out of disk space"))
        return defer.succeed(None)


@pytest_twisted.ensureDeferred
async def test_repair_stops_copying_to_a_full_node_for_the_rest_of_the_run() -> None:
    """The full node answers its listing, so it is not skipped as down; its
    first refusal marks it full for this run (no more reads and refused
    writes for it), and the next run tries it again."""
    backend = _RepairBackend(chunks=5)
    repairer = Repairer(backend, Clock(), interval=10)
    report = await repairer.run_once()
    assert report.nodes_skipped == [] and report.nodes_full == [backend.full.address]
    assert (report.copies_made, report.copies_failed, report.copies_deferred) == (0, 1, 4)
    assert backend.puts == [(backend.full.address, backend.ids[0])] and backend.gets == 1
    again = await repairer.run_once()
    assert again.nodes_full == [backend.full.address] and len(backend.puts) == 2


@pytest_twisted.ensureDeferred
async def test_a_full_node_does_not_use_up_the_runs_copy_budget() -> None:
    """Chunks deferred for a full node do not count against max_copies: the
    run still reaches the chunks another node needs."""
    backend = _RepairBackend(chunks=6)
    healthy = parse_node("http://node-3:9002")
    backend.nodes.append(healthy)
    late = backend.ids[-1]  # only this chunk's placement is the healthy node
    backend.placement = lambda chunk_id: [backend.nodes[0], healthy if chunk_id == late else backend.full]  # type: ignore[method-assign]
    listed = backend.list_chunks_by_node

    def with_healthy() -> defer.Deferred[Any]:
        return listed().addCallback(lambda found: {**found, healthy: []})

    backend.list_chunks_by_node = with_healthy  # type: ignore[method-assign]
    report = await Repairer(backend, Clock(), max_copies=2).run_once()
    assert not report.truncated
    assert (report.copies_made, report.copies_failed, report.copies_deferred) == (1, 1, 4)
    assert (healthy.address, late) in backend.puts

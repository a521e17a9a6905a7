"""Repair trims the copies that sit outside a chunk's placement (left by an
expansion, or by a write that spilled to a spare while a placement node was
full), and only when they are provably redundant: every placement node
holds the chunk and confirms it right before the delete, every node
answered the listing, the copy was extra in two consecutive runs, the
placement is not ``random``, at most ``max_trims`` deletions per run, and
never below ``replication_factor`` copies.

In-process fake nodes over real local backends (as in
test_distributed_backend.py); runs on the real reactor (pytest-twisted).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.threadpool import ThreadPool

from lightningstor.errors import ConfigError
from lightningstor.interfaces.storage import ChunkInfo, PluginContext
from lightningstor.storage.distributed import DistributedBackend, distributedStorageFactory, parse_node
from lightningstor.storage.nodeclient import NodeFull
from lightningstor.storage.placement import NodeAddress
from lightningstor.storage.repair import Repairer
from tests.contract.storage_contract import payload
from tests.unit.test_distributed_backend import _OPEN, FakeNode, make_backend
from tests.unit.test_distributed_backend import holders as copies


class FullableNode(FakeNode):
    """A fake node that refuses writes as a full disk does while ``full``."""

    full = False

    def put(self, chunk_id: str, data: bytes, checksum: int | None = None, replace: int | None = None) -> None:
        if self.full:
            with self._lock:
                self.calls += 1
            raise NodeFull(f"node {self.node.address}: node out of disk space")
        super().put(chunk_id, data, checksum)


@pytest.fixture
def pool() -> Iterator[ThreadPool]:
    """A started pool; the backends made on it (make_backend) are closed
    first, even when the test failed."""
    pool = ThreadPool(minthreads=1, maxthreads=8, name="test-trim")
    pool.start()
    yield pool
    while _OPEN:
        pytest_twisted.blockon(_OPEN.pop().close())
    pool.stop()


def backend_over(tmp_path: Path, pool: ThreadPool, count: int, **kwargs: Any) -> DistributedBackend:
    """``count`` fullable fake nodes, two copies per chunk unless told."""
    from twisted.internet import reactor

    kwargs.setdefault("replication_factor", 2)
    return make_backend(tmp_path, reactor, pool, count, node_class=FullableNode, **kwargs)


async def extra_copies(backend: DistributedBackend, ids: list[str]) -> int:
    total = 0
    for chunk_id in ids:
        total += len(await copies(backend, chunk_id) - set(backend.placement(chunk_id)))
    return total


async def grown_cluster(tmp_path: Path, pool: ThreadPool, chunks: int = 24, **kwargs: Any) -> tuple[
    DistributedBackend, dict[str, bytes]
]:
    """Chunks written to 3 nodes (N=2), then a backend over 4: the chunks
    whose placement now includes node-3 have an extra copy once repaired."""
    small = backend_over(tmp_path, pool, 3)
    written = {}
    for i in range(chunks):
        chunk_id = f"{i:04x}cc"
        written[chunk_id] = payload(2000 + i, i)
        await small.put_chunk(chunk_id, written[chunk_id])
    _OPEN.remove(small)
    await small.close()
    return backend_over(tmp_path, pool, 4, **kwargs), written


@pytest_twisted.ensureDeferred
async def test_trims_the_old_copies_after_a_node_is_added(tmp_path: Path, pool: ThreadPool) -> None:
    """After a node is added, the first run copies the moved chunks to the
    new node and only notes the old copies as extra (two-run rule); the
    second run deletes them: every chunk ends with exactly N copies, all on
    its placement, and reads back.  No run ever leaves fewer than N copies;
    a third run has nothing to do."""
    backend, written = await grown_cluster(tmp_path, pool)
    moved = [c for c in written if backend.nodes[3] in backend.placement(c)]
    assert moved
    repairer = Repairer(backend, Clock(), interval=10)
    first = await repairer.run_once()
    assert first.copies_made == len(moved) and first.trim_skipped is None
    assert first.copies_trimmed == 0 and first.trims_pending == len(moved)
    assert await extra_copies(backend, list(written)) == len(moved)

    second = await repairer.run_once()
    assert (second.copies_made, second.copies_trimmed, second.trims_failed) == (0, len(moved), 0)
    for chunk_id, data in written.items():
        assert await copies(backend, chunk_id) == set(backend.placement(chunk_id)), chunk_id
        assert await backend.get_chunk(chunk_id) == data
    third = await repairer.run_once()
    assert (third.copies_made, third.copies_trimmed, third.trims_pending) == (0, 0, 0)


@pytest_twisted.ensureDeferred
async def test_a_restarted_repairer_waits_for_two_runs_again(tmp_path: Path, pool: ThreadPool) -> None:
    """What a run saw extra is remembered by that process only: a new
    repairer (a restarted API server, perhaps with a new node list) trims
    nothing in its first run."""
    backend, written = await grown_cluster(tmp_path, pool)
    await Repairer(backend, Clock(), interval=10).run_once()
    before = await extra_copies(backend, list(written))
    assert before > 0
    restarted = Repairer(backend, Clock(), interval=10)
    report = await restarted.run_once()
    assert report.copies_trimmed == 0 and report.trims_pending == before
    assert await extra_copies(backend, list(written)) == before
    assert (await restarted.run_once()).copies_trimmed == before


@pytest_twisted.ensureDeferred
async def test_trims_the_spare_copy_once_the_full_node_holds_the_chunk(tmp_path: Path, pool: ThreadPool) -> None:
    """A copy refused by a full placement node goes to a spare.  Once the
    node has room, repair copies the chunk there (the copy it made counts
    as held), and the next run deletes the spare's copy."""
    backend = backend_over(tmp_path, pool, 4)
    full = backend.nodes[1]
    backend.clients[full].full = True
    ids = [f"{i:04x}dd" for i in range(16)]
    for i, chunk_id in enumerate(ids):
        await backend.put_chunk(chunk_id, payload(1500, i))
    spilled = [c for c in ids if full in backend.placement(c)]
    assert spilled
    for chunk_id in spilled:
        held = await copies(backend, chunk_id)
        assert full not in held and len(held) == 2

    repairer = Repairer(backend, Clock(), interval=10)
    while_full = await repairer.run_once()  # the node is still full: nothing to trim
    assert while_full.copies_trimmed == 0 and while_full.nodes_full == [full.address]
    backend.clients[full].full = False
    first = await repairer.run_once()
    assert first.copies_made == len(spilled) and first.copies_trimmed == 0
    assert first.trims_pending == len(spilled)
    second = await repairer.run_once()
    assert second.copies_trimmed == len(spilled)
    for chunk_id in ids:
        assert await copies(backend, chunk_id) == set(backend.placement(chunk_id))


@pytest_twisted.ensureDeferred
async def test_no_trim_while_a_placement_node_lacks_the_chunk(tmp_path: Path, pool: ThreadPool) -> None:
    """The added node is full: the moved chunks cannot reach it, so their
    old copies are the only second copy and must stay, run after run."""
    backend, written = await grown_cluster(tmp_path, pool)
    backend.clients[backend.nodes[3]].full = True
    before = await extra_copies(backend, list(written))
    repairer = Repairer(backend, Clock(), interval=10)
    for _ in range(3):
        report = await repairer.run_once()
        assert report.copies_trimmed == 0 and report.trims_pending == 0
    assert await extra_copies(backend, list(written)) == before
    for chunk_id in written:
        assert len(await copies(backend, chunk_id)) == 2


@pytest_twisted.ensureDeferred
async def test_no_trim_when_a_placement_node_no_longer_confirms(tmp_path: Path, pool: ThreadPool) -> None:
    """The listing is a snapshot: a placement node that lost the chunk since
    (here: right after listing) fails the ``has`` check made just before
    the delete, and the extra copy, now one of only two, is kept."""
    backend, written = await grown_cluster(tmp_path, pool)
    new = backend.nodes[3]
    moved = sorted(c for c in written if new in backend.placement(c))
    repairer = Repairer(backend, Clock(), interval=10)
    await repairer.run_once()
    victim = moved[0]
    listed = backend.list_chunks_by_node

    def stale_listing() -> defer.Deferred[Any]:
        def lose(found: Any) -> Any:
            return backend.clients[new].backend.delete_chunk(victim).addCallback(lambda _: found)

        return listed().addCallback(lose)

    backend.list_chunks_by_node = stale_listing  # type: ignore[method-assign]
    report = await repairer.run_once()
    assert report.trims_unconfirmed == 1 and report.copies_trimmed == len(moved) - 1
    held = await copies(backend, victim)
    assert new not in held and len(held) == 2  # the extra copy stayed
    del backend.list_chunks_by_node
    # Repair restores the placement; the extra copy needs two runs again.
    again = await repairer.run_once()
    assert again.copies_made == 1 and again.copies_trimmed == 0 and again.trims_pending == 1
    assert (await repairer.run_once()).copies_trimmed == 1
    assert await copies(backend, victim) == set(backend.placement(victim))


@pytest_twisted.ensureDeferred
async def test_no_trim_while_any_node_is_unreachable(tmp_path: Path, pool: ThreadPool) -> None:
    """A node that does not answer the listing may hold or lack anything: the
    run trims nothing at all, says why, and forgets what it had seen, so
    two clean runs are needed after the node returns."""
    backend, written = await grown_cluster(tmp_path, pool)
    repairer = Repairer(backend, Clock(), interval=10)
    first = await repairer.run_once()
    pending = first.trims_pending
    assert pending > 0
    down = backend.nodes[0]
    backend.clients[down].down = True
    report = await repairer.run_once()
    assert report.copies_trimmed == 0 and report.nodes_skipped == [down.address]
    assert report.trim_skipped is not None and down.address in report.trim_skipped
    assert await extra_copies(backend, list(written)) == pending
    backend.clients[down].down = False
    back = await repairer.run_once()
    assert back.copies_trimmed == 0 and back.trims_pending == pending
    assert (await repairer.run_once()).copies_trimmed == pending


@pytest_twisted.ensureDeferred
async def test_random_placement_never_trims(tmp_path: Path, pool: ThreadPool) -> None:
    """With ``random`` placement no copy is "extra": a chunk with more than
    N copies keeps them all."""
    backend = backend_over(tmp_path, pool, 4, placement_strategy="random")
    ids = [f"{i:04x}ee" for i in range(8)]
    for i, chunk_id in enumerate(ids):
        for node in backend.nodes[:3]:  # three copies, N=2
            await backend.clients[node].backend.put_chunk(chunk_id, payload(100, i))
    repairer = Repairer(backend, Clock(), interval=10)
    for _ in range(3):
        report = await repairer.run_once()
        assert report.copies_trimmed == 0 and report.trim_skipped == "random placement has no fixed home"
    for chunk_id in ids:
        assert len(await copies(backend, chunk_id)) == 3


@pytest_twisted.ensureDeferred
async def test_trims_at_most_max_trims_per_run(tmp_path: Path, pool: ThreadPool) -> None:
    """max_trims caps the deletions of one run; the report says so and the
    next run goes on."""
    backend, written = await grown_cluster(tmp_path, pool, chunks=40)
    repairer = Repairer(backend, Clock(), interval=10, max_trims=3)
    await repairer.run_once()
    total = await extra_copies(backend, list(written))
    assert total > 6
    second = await repairer.run_once()
    assert second.copies_trimmed == 3 and second.trims_truncated
    assert await extra_copies(backend, list(written)) == total - 3
    third = await repairer.run_once()
    assert third.copies_trimmed == 3
    assert await extra_copies(backend, list(written)) == total - 6


@pytest_twisted.ensureDeferred
async def test_trimming_off_keeps_extra_copies(tmp_path: Path, pool: ThreadPool) -> None:
    """trim=False (``trim_extra_copies = false``): repair still copies, never deletes."""
    backend, written = await grown_cluster(tmp_path, pool)
    repairer = Repairer(backend, Clock(), interval=10, trim=False)
    for _ in range(3):
        report = await repairer.run_once()
        assert report.copies_trimmed == 0 and report.trim_skipped == "trimming is off"
    for chunk_id in written:
        assert set(backend.placement(chunk_id)) <= await copies(backend, chunk_id)
    assert await extra_copies(backend, list(written)) > 0


class _ShortPlacement:
    """What Repairer uses of DistributedBackend, with a placement shorter
    than ``replication_factor`` (as a buggy or inconsistent placement would
    be): two copies, one of them "extra"."""

    placement_strategy = "consistent_hash"
    replication_factor = 2

    def __init__(self) -> None:
        self.nodes = [parse_node(f"http://node-{i}:9002") for i in range(2)]
        self.deleted: list[str] = []

    def placement(self, chunk_id: str) -> list[NodeAddress]:
        return [self.nodes[0]]

    def list_chunks_by_node(self) -> defer.Deferred[Any]:
        return defer.succeed({node: [ChunkInfo("ab01", 4, 0.0)] for node in self.nodes})

    def call(self, node: NodeAddress, method: str, chunk_id: str, *args: Any) -> defer.Deferred[Any]:
        if method == "verify":
            return defer.succeed((4, 1234))
        if method == "delete":
            self.deleted.append(node.address)
            return defer.succeed(True)
        raise AssertionError(f"unexpected call {method}")


@pytest_twisted.ensureDeferred
async def test_never_trims_below_replication_factor() -> None:
    """Even when every placement node confirms the chunk, a trim that would
    leave fewer than replication_factor copies is not made."""
    backend = _ShortPlacement()
    repairer = Repairer(backend, Clock(), interval=10)
    for _ in range(3):
        report = await repairer.run_once()
        assert report.copies_trimmed == 0
    assert backend.deleted == []
    backend.replication_factor = 1  # one copy is enough: now the extra one may go
    await repairer.run_once()
    assert (await repairer.run_once()).copies_trimmed == 1 and backend.deleted == ["node-1:9002"]


# -- configuration -----------------------------------------------------------------------


def test_trim_extra_copies_is_read_and_validated(tmp_path: Path, pool: ThreadPool) -> None:
    """``[storage.distributed] trim_extra_copies`` is a boolean (default: on)
    and reaches the repairer."""
    from lightningstor.config import load_settings

    path = tmp_path / "c.toml"
    base = '[storage]\nbackend = "distributed"\n[storage.distributed]\nnodes = ["http://a:1", "http://b:2"]\nreplication_factor = 2\n'
    path.write_text(base + 'trim_extra_copies = "no"\n')
    with pytest.raises(ConfigError, match="storage.distributed.trim_extra_copies: expected a boolean"):
        load_settings(str(path), env={})
    path.write_text(base + "trim_extra_copies = false\n")
    section = load_settings(str(path), env={}).storage.options["distributed"]
    assert section["trim_extra_copies"] is False

    context = PluginContext(reactor=MemoryReactorClock(), io_pool=pool, data_dir="/nonexistent")
    options = {"nodes": ("http://a:1", "http://b:2"), "replication_factor": 2}
    off = distributedStorageFactory.create({"distributed": {**options, "trim_extra_copies": False}}, context)
    on = distributedStorageFactory.create({"distributed": options}, context)
    assert off.repairer.trim is False and on.repairer.trim is True
    # Making the backend schedules no repair: the server starts it with its
    # lease set; an admin command that opens the backend never repairs.
    assert context.reactor.whenRunningHooks == []
    with pytest.raises(ConfigError, match="trim_extra_copies"):
        distributedStorageFactory.create({"distributed": {**options, "trim_extra_copies": "yes"}}, context)


# -- copies are verified, not just listed -------------------------------------------------


async def _damage(backend: DistributedBackend, node: NodeAddress, chunk_id: str, data: bytes, how: str) -> None:
    """Rot (a flipped byte: block CRC fails) or divergence (other bytes, CRCs
    the node computed itself) on ``node``'s copy."""
    local = backend.clients[node].backend
    path = local._locate(chunk_id)[1]
    if how == "rotten":
        with open(path, "r+b") as f:
            f.write(b"J")
    else:
        await local.put_chunk(chunk_id, b"WRONG" + data[5:])


@pytest_twisted.ensureDeferred
async def test_a_rotten_placement_copy_is_rewritten_before_the_extra_copy_goes(
    tmp_path: Path, pool: ThreadPool
) -> None:
    """The placement copy that stays is rotten, the extra copy is good:
    repair verifies the copies, copies only the good bytes (to the new node
    and over the rotten copy) and trims the extra copy only once every
    placement copy verified good.  (A divergent copy against a single good
    one has no majority: see the next test.)"""
    backend, written = await grown_cluster(tmp_path, pool)
    chunk_id = next(c for c in written if backend.nodes[3] in backend.placement(c))
    stay = next(n for n in backend.placement(chunk_id) if n != backend.nodes[3])
    await _damage(backend, stay, chunk_id, written[chunk_id], "rotten")
    repairer = Repairer(backend, Clock(), interval=10)
    first = await repairer.run_once()
    assert first.copies_damaged >= 1 and first.copies_disputed == 0
    for _ in range(2):
        await repairer.run_once()
    assert await copies(backend, chunk_id) == set(backend.placement(chunk_id))
    for node in backend.placement(chunk_id):
        assert await backend.call(node, "get", chunk_id) == written[chunk_id], node


@pytest_twisted.ensureDeferred
async def test_copies_that_disagree_without_a_majority_are_neither_spread_nor_trimmed(
    tmp_path: Path, pool: ThreadPool
) -> None:
    """Two copies, two CRCs: repair cannot tell the right one (a read or
    scrub can, from the record), so it copies and trims nothing of that
    chunk; the other chunks are repaired and trimmed as usual."""
    backend, written = await grown_cluster(tmp_path, pool)
    moved = [c for c in written if backend.nodes[3] in backend.placement(c)]
    chunk_id = moved[0]
    stay = next(n for n in backend.placement(chunk_id) if n != backend.nodes[3])
    before = await copies(backend, chunk_id)
    await _damage(backend, stay, chunk_id, written[chunk_id], "divergent")
    repairer = Repairer(backend, Clock(), interval=10)
    reports = [await repairer.run_once() for _ in range(3)]
    assert all(report.copies_disputed >= 1 for report in reports)
    assert await copies(backend, chunk_id) == before  # nothing copied to node-3, nothing trimmed
    assert sum(report.copies_trimmed for report in reports) == len(moved) - 1

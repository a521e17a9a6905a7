"""The storage node in process: ``twistd lightningstor-node`` options, and
the chunk service over a real local backend reached through NodeClient on
loopback (status codes become the backend's error types).

Runs on the real reactor through pytest-twisted (``--reactor=default``).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThreadPool
from twisted.python import usage
from twisted.python.threadpool import ThreadPool

from lightningstor.checksums import crc32c
from lightningstor.errors import ChunkCorrupted, ChunkNotFound
from lightningstor.node.gen import lightningstor_node_pb2 as pb
from lightningstor.node.gen import lightningstor_node_pb2_grpc as pb_grpc
from lightningstor.node.service import NodeGrpcService
from lightningstor.node.servicer import ChunkServicer, NodeIdentity
from lightningstor.node.tap import Options
from lightningstor.storage.distributed import parse_node
from lightningstor.storage.local import LocalFsBackend
from lightningstor.storage.nodeclient import ChunkDiverged, NodeClient, NodeUnavailable
from tests.contract.storage_contract import failure_of, payload


def test_options_defaults_and_validation(tmp_path: Path) -> None:
    """--listen defaults to 0.0.0.0:9002; a bad address or thread count is a UsageError."""
    options = Options()
    options.parseOptions(["--data-dir", str(tmp_path), "--zone", "z1", "--node-id", "n1"])
    assert options["listen"] == "0.0.0.0:9002" and options["zone"] == "z1" and options["node-id"] == "n1"
    with pytest.raises(usage.UsageError):
        Options().parseOptions(["--listen", "nonsense"])
    with pytest.raises(usage.UsageError):
        Options().parseOptions(["--io-threads", "0"])


class _OlderServicer(ChunkServicer):
    """A node from before end-to-end checks: GetChunk sends no chunk info
    and VerifyChunk is not implemented (grpc answers UNIMPLEMENTED)."""

    VerifyChunk = pb_grpc.ChunkServiceServicer.VerifyChunk

    def GetChunk(self, request: Any, context: Any) -> Iterator[Any]:
        for message in super().GetChunk(request, context):
            yield pb.GetChunkResponse(data=message.data)


@pytest.fixture(params=[ChunkServicer])
def node(tmp_path: Path, request: Any) -> Iterator[tuple[NodeClient, LocalFsBackend, ThreadPool]]:
    """A chunk service on a loopback port plus a client and a pool to call it from."""
    from twisted.internet import reactor

    disk = ThreadPool(1, 4, "node-disk")
    calls = ThreadPool(1, 4, "node-calls")
    disk.start()
    calls.start()
    backend = LocalFsBackend(str(tmp_path / "chunks"), reactor, disk, fsync=False)
    servicer = request.param(backend, reactor, disk, NodeIdentity("n1", "z1", str(tmp_path)))
    service = NodeGrpcService(servicer, reactor, "127.0.0.1:0", grace_seconds=0.5)
    service.startService()
    client = NodeClient(parse_node(f"http://127.0.0.1:{service.bound_port}"), timeout=10)
    yield client, backend, calls
    client.close()
    pytest_twisted.blockon(service.stopService())
    calls.stop()
    disk.stop()


@pytest_twisted.ensureDeferred
async def test_chunk_service_round_trip(node: Any) -> None:
    """Put (streamed in 1 MiB pieces), full and ranged gets, has, paged list,
    stat, health and delete all behave like the local backend underneath."""
    from twisted.internet import reactor

    client, backend, calls = node

    def call(f: Any, *args: Any) -> Any:
        return deferToThreadPool(reactor, calls, f, *args)

    data = payload(2_500_000, 3)
    await call(client.put, "aa01", data)
    for i in range(4):
        await call(client.put, f"bb0{i}", b"x" * i)
    assert await call(client.get, "aa01") == data
    assert await call(client.get, "aa01", 1_048_570, 20) == data[1_048_570:1_048_590]
    assert await call(client.get, "bb00") == b""
    assert await call(client.has, "aa01") and not await call(client.has, "cc00")
    listed = await call(client.list, 2)
    assert sorted(info.chunk_id for info in listed) == ["aa01", "bb00", "bb01", "bb02", "bb03"]
    stat = await call(client.stat)
    assert (stat.node_id, stat.zone, stat.chunk_count) == ("n1", "z1", 5)
    assert stat.chunk_bytes == len(data) + 6 and stat.free_bytes > 0
    await call(client.health)
    assert await call(client.delete, "aa01") is True
    assert await call(client.delete, "aa01") is False


@pytest_twisted.ensureDeferred
async def test_errors_map_to_backend_exceptions(node: Any) -> None:
    """Missing -> ChunkNotFound, bad block CRC -> ChunkCorrupted, bad id ->
    ValueError, and a node that is gone -> NodeUnavailable."""
    from twisted.internet import reactor

    client, backend, calls = node

    def call(f: Any, *args: Any) -> Any:
        return deferToThreadPool(reactor, calls, f, *args)

    assert (await failure_of(call(client.get, "dd00"))).check(ChunkNotFound)
    await call(client.put, "dd01", b"hello" * 1000)
    with open(backend._locate("dd01")[1], "r+b") as f:
        f.write(b"J")
    assert (await failure_of(call(client.get, "dd01"))).check(ChunkCorrupted)
    assert (await failure_of(call(client.put, "../etc", b"x"))).check(ValueError)
    gone = NodeClient(parse_node("http://127.0.0.1:1"), timeout=2, small_timeout=2)
    assert (await failure_of(call(gone.health))).check(NodeUnavailable)
    gone.close()


@pytest_twisted.ensureDeferred
async def test_put_is_checked_against_the_writers_crc(node: Any) -> None:
    """Bytes that do not match the CRC32C sent with them are refused
    (ChunkCorrupted) and never stored; matching bytes are."""
    from twisted.internet import reactor

    client, backend, calls = node

    def call(f: Any, *args: Any) -> Any:
        return deferToThreadPool(reactor, calls, f, *args)

    data = payload(1_500_000, 5)
    assert (await failure_of(call(client.put, "ee01", data, crc32c(data) ^ 1))).check(ChunkCorrupted)
    assert not await call(client.has, "ee01")
    await call(client.put, "ee01", data, crc32c(data))
    assert await call(client.get, "ee01") == data


@pytest.mark.parametrize("node", [ChunkServicer, _OlderServicer], indirect=True)
@pytest_twisted.ensureDeferred
async def test_checked_reads_serve_only_the_recorded_chunk(node: Any) -> None:
    """get_checked returns the range only from a copy whose whole chunk has
    the recorded length and CRC32C (ChunkDiverged otherwise), and verify
    reports them after checking every block, also on a node that predates
    both (the client then reads the whole chunk and checks it itself)."""
    from twisted.internet import reactor

    client, backend, calls = node

    def call(f: Any, *args: Any) -> Any:
        return deferToThreadPool(reactor, calls, f, *args)

    data = payload(1_200_000, 7)
    size, crc = len(data), crc32c(data)
    await call(client.put, "ff01", data)
    assert await call(client.get_checked, "ff01", 65_000, 2_000, size, crc) == data[65_000:67_000]
    assert await call(client.get_checked, "ff01", 0, None, size, crc) == data
    assert await call(client.verify, "ff01") == (size, crc)
    for record in ((size, crc ^ 1), (size - 1, crc)):
        assert (await failure_of(call(client.get_checked, "ff01", 10, 10, *record))).check(ChunkDiverged)
    with open(backend._locate("ff01")[1], "r+b") as f:
        f.seek(700_000)
        f.write(b"J")
    assert (await failure_of(call(client.verify, "ff01"))).check(ChunkCorrupted)
    assert (await failure_of(call(client.verify, "ff02"))).check(ChunkNotFound)


@pytest_twisted.ensureDeferred
async def test_an_unreadable_copy_is_data_loss_and_replaced(node: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stored copy the node's disk cannot read (EIO) is answered DATA_LOSS
    (``ChunkCorrupted``: the copy is damaged), not UNAVAILABLE (the node
    taken for down, the copy never repaired), and a new copy of the same
    bytes replaces it, as repair writes one."""
    from twisted.internet import reactor

    from tests.unit.test_local_backend import failing_reads

    client, backend, calls = node

    def call(f: Any, *args: Any) -> Any:
        return deferToThreadPool(reactor, calls, f, *args)

    data = payload(300_000, 9)
    await call(client.put, "ab01", data)
    failing_reads(monkeypatch, Path(backend._locate("ab01")[1]), errno.EIO)
    for read in (call(client.get, "ab01"), call(client.verify, "ab01")):
        failure = await failure_of(read)
        assert failure.check(ChunkCorrupted) and not failure.check(NodeUnavailable), failure
    await call(client.health)  # the node still answers
    await call(client.put, "ab01", data, crc32c(data))
    assert await call(client.get, "ab01") == data

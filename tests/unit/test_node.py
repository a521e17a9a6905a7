"""The storage node in process: ``twistd lightningstor-node`` options, and
the chunk service over a real local backend reached through NodeClient on
loopback (status codes become the backend's error types).

Runs on the real reactor through pytest-twisted (``--reactor=default``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThreadPool
from twisted.python import usage
from twisted.python.threadpool import ThreadPool

from lightningstor.errors import ChunkCorrupted, ChunkNotFound
from lightningstor.node.service import NodeGrpcService
from lightningstor.node.servicer import ChunkServicer, NodeIdentity
from lightningstor.node.tap import Options
from lightningstor.storage.distributed import parse_node
from lightningstor.storage.local import LocalFsBackend
from lightningstor.storage.nodeclient import NodeClient, NodeUnavailable
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


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[NodeClient, LocalFsBackend, ThreadPool]]:
    """A chunk service on a loopback port plus a client and a pool to call it from."""
    from twisted.internet import reactor

    disk = ThreadPool(1, 4, "node-disk")
    calls = ThreadPool(1, 4, "node-calls")
    disk.start()
    calls.start()
    backend = LocalFsBackend(str(tmp_path / "chunks"), reactor, disk, fsync=False)
    servicer = ChunkServicer(backend, reactor, disk, NodeIdentity("n1", "z1", str(tmp_path)))
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

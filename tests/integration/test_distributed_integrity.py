"""End-to-end chunk integrity on a real cluster (``twistd lightningstor-node``
processes behind a ``twistd lightningstor`` API server).

A copy of a chunk can be *rotten* (its bytes fail the node's block CRCs) or
*divergent* (other bytes whose block CRCs the node computed itself, so the
node's own checks pass).  These tests damage one copy on a node's disk and
check that:

* repair never counts a damaged copy as a good one: it neither trims the
  last good extra copy after an expansion nor copies the damaged bytes to
  the chunk's new node, and a damaged placement copy is rewritten;
* a node refuses a chunk whose bytes do not match the CRC32C the writer
  sent with it;
* a read, ranged or whole, never serves a divergent copy's bytes: it moves
  on to the next replica and the damaged copy is rewritten (read repair).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from lightningstor.checksums import crc32c
from lightningstor.node.gen import lightningstor_node_pb2 as pb
from lightningstor.storage import placement
from lightningstor.storage.distributed import parse_node
from lightningstor.storage.local import LocalFsBackend, _ChunkFile
from lightningstor.storage.placement import NodeAddress
from tests.integration.cluster import NodeProcess, api_server, distributed_config, make_nodes
from tests.integration.conftest import make_client

KiB = 1 << 10
MiB = 1 << 20


def _ring(nodes: list[NodeProcess]) -> list[NodeAddress]:
    return [parse_node(node.url, node.zone) for node in nodes]


def _get(node: NodeProcess, chunk_id: str) -> bytes | str:
    """The node's copy of the chunk, or the gRPC status name it answered."""
    channel, stub = node.stub()
    with channel:
        try:
            return b"".join(m.data for m in stub.GetChunk(pb.GetChunkRequest(chunk_id=chunk_id), timeout=10))
        except grpc.RpcError as e:
            return str(e.code().name)


def _put_raw(node: NodeProcess, chunk_id: str, data: bytes, crc: int | None = None) -> None:
    """Store ``data`` on one node directly.  Without ``crc`` this is how a
    divergent copy arises: the node computes its block CRCs over whatever
    arrived (as an older writer, or a copy damaged before it was checked)."""
    channel, stub = node.stub()
    with channel:
        first = pb.PutChunkRequest(chunk_id=chunk_id, data=data)
        if crc is not None:
            first.crc32c, first.size, first.has_crc32c = crc, len(data), True
        stub.PutChunk(iter([first]), timeout=10)


def _rot(node: NodeProcess, chunk_id: str) -> None:
    """Flip one data byte of the chunk's file (bitrot): its block CRC fails."""
    path = next((node.data_dir / "chunks").rglob(chunk_id))
    raw = bytearray(path.read_bytes())
    raw[10] ^= 0xFF
    path.write_bytes(bytes(raw))


def _diverge(node: NodeProcess, chunk_id: str, good: bytes) -> None:
    """Replace the node's copy, on its disk behind its back, with other bytes
    in a well-formed chunk file (block CRCs computed over the wrong bytes):
    the node's own checks pass.  A PutChunk cannot do this any more: the
    node keeps an intact copy (lightningstor.node.servicer)."""
    bad = bytearray(good)
    bad[0:16] = b"WRONG-BYTES-HERE"
    path = next((node.data_dir / "chunks").rglob(chunk_id))
    scratch = LocalFsBackend(str(node.data_dir / "scratch"), None, None, shard_depth=0, fsync=False)  # type: ignore[arg-type]
    writer = _ChunkFile(scratch, chunk_id)
    writer.append(bytes(bad))
    writer.commit()
    os.replace(node.data_dir / "scratch" / "chunks" / chunk_id, path)


def _wait(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.2)


@pytest.fixture
def started() -> Iterator[list[Any]]:
    """Processes to stop at the end, newest first."""
    procs: list[Any] = []
    yield procs
    for proc in reversed(procs):
        proc.stop()


# -- a node refuses bytes that do not match the writer's CRC ---------------------------------


def test_a_node_refuses_a_chunk_whose_bytes_do_not_match_the_crc_sent(tmp_path: Path, started: list[Any]) -> None:
    """The CRC32C and length the writer computed travel with PutChunk; a
    node that received other bytes answers DATA_LOSS and never stores them.
    GetChunk and VerifyChunk report the stored chunk's length and CRC32C."""
    (node,) = make_nodes(tmp_path, 1)
    started.append(node.start())
    data = os.urandom(200 * KiB)
    with pytest.raises(grpc.RpcError) as caught:
        _put_raw(node, "aa" * 16, data, crc=crc32c(data) ^ 1)
    assert caught.value.code() == grpc.StatusCode.DATA_LOSS
    assert node.chunk_ids() == set()
    _put_raw(node, "bb" * 16, data, crc=crc32c(data))
    assert _get(node, "bb" * 16) == data
    channel, stub = node.stub()
    with channel:
        request = pb.GetChunkRequest(chunk_id="bb" * 16, offset=70 * KiB, length=10, has_length=True)
        first = next(iter(stub.GetChunk(request, timeout=10)))
        assert first.data == data[70 * KiB : 70 * KiB + 10]
        assert first.has_chunk_info and (first.chunk_size, first.chunk_crc32c) == (len(data), crc32c(data))
        verified = stub.VerifyChunk(pb.VerifyChunkRequest(chunk_id="bb" * 16), timeout=10)
        assert (verified.size, verified.crc32c) == (len(data), crc32c(data))
    _rot(node, "bb" * 16)
    channel, stub = node.stub()
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.VerifyChunk(pb.VerifyChunkRequest(chunk_id="bb" * 16), timeout=10)
    assert caught.value.code() == grpc.StatusCode.DATA_LOSS


# -- repair and trim after an expansion ------------------------------------------------------


def _config(nodes: list[NodeProcess], interval: float) -> str:
    return distributed_config(nodes, repair_interval_seconds=interval, replication_factor=2,
                              placement_strategy="consistent_hash")


@pytest.mark.parametrize("damage", ["rotten", "divergent"])
def test_repair_after_expansion_never_keeps_a_damaged_copy_over_a_good_one(
    tmp_path: Path, started: list[Any], damage: str
) -> None:
    """Two nodes, two copies of each chunk; the cluster grows to three.  For
    a chunk whose new placement keeps old node ``stay`` and adds node 2,
    ``stay``'s copy is damaged before the restart.  The good copy on the
    other old node (now extra) must not be trimmed while ``stay`` holds bad
    bytes, node 2 must never receive bad bytes, and in the end both
    placement nodes hold the right bytes: losing node 2 loses nothing."""
    nodes = make_nodes(tmp_path, 3)
    for node in nodes:
        started.append(node.start())
    server = api_server(tmp_path, _config(nodes[:2], 0))
    started.append(server.start())
    s3: Any = make_client(server.endpoint)
    s3.create_bucket(Bucket="grow")
    bodies = {f"obj-{i}": os.urandom(100 * KiB + i) for i in range(12)}  # one chunk each
    for key, body in bodies.items():
        s3.put_object(Bucket="grow", Key=key, Body=body)
    ring = _ring(nodes)
    picked = None
    for chunk_id in sorted(nodes[0].chunk_ids()):
        home = {ring.index(n) for n in placement.place(chunk_id, ring, 2, "consistent_hash")}
        if 2 in home:
            stay = (home - {2}).pop()
            picked = (chunk_id, stay, 1 - stay)
            break
    assert picked, "no chunk moves to the new node"
    chunk_id, stay, leave = picked
    good = _get(nodes[leave], chunk_id)
    assert isinstance(good, bytes)
    key = next(k for k, body in bodies.items() if body == good)
    if damage == "rotten":
        _rot(nodes[stay], chunk_id)
        assert _get(nodes[stay], chunk_id) == "DATA_LOSS"
    else:
        _diverge(nodes[stay], chunk_id, good)
        assert _get(nodes[stay], chunk_id) not in (good, "DATA_LOSS")

    Path(server.config).write_text(_config(nodes, 0.3))
    server.restart()
    s3 = make_client(server.endpoint)

    def healed() -> bool:
        copies = [_get(node, chunk_id) for node in nodes]
        # Never a bad copy on the new node, never the good extra copy gone
        # while a placement copy is still bad.
        assert copies[2] in (good, "NOT_FOUND"), f"node 2 received {copies[2]!r:.40}"
        if copies[leave] == "NOT_FOUND":
            assert copies[stay] == good and copies[2] == good, "the good extra copy was trimmed too early"
        return copies[stay] == good and copies[2] == good and copies[leave] == "NOT_FOUND"

    if damage == "divergent":
        # Two copies that disagree: repair keeps the one the object's record
        # lists; a read, which checks the record too, serves the good one
        # whether or not repair got there first.
        time.sleep(1.5)
        healed()
        assert s3.get_object(Bucket="grow", Key=key)["Body"].read() == good
    _wait(healed, 20, "the damaged placement copy is rewritten and the extra copy trimmed")
    assert any("corrupt or divergent" in line or "Read repair" in line for line in server.output)

    nodes[2].stop()  # one node failure: every object is still whole
    for k, body in bodies.items():
        assert s3.get_object(Bucket="grow", Key=k)["Body"].read() == body, k


def test_repair_keeps_the_copy_the_record_lists_when_two_copies_disagree(
    tmp_path: Path, started: list[Any]
) -> None:
    """Three copies of a chunk: one lost, one divergent (other bytes with
    valid node CRCs, written on the node's disk behind its back), one good.
    The two copies left disagree one against one, so no majority tells them
    apart; repair reads the CRC32C the object's record lists (through the
    chunk index) and copies the good one over the divergent copy and to
    the node that lost it, without any read of the object."""
    nodes = make_nodes(tmp_path, 3)
    for node in nodes:
        started.append(node.start())
    server = api_server(tmp_path, distributed_config(nodes, repair_interval_seconds=0.5, replication_factor=3,
                                                     placement_strategy="consistent_hash"))
    started.append(server.start())
    s3: Any = make_client(server.endpoint)
    s3.create_bucket(Bucket="disagree")
    good = os.urandom(200 * KiB)  # one chunk
    s3.put_object(Bucket="disagree", Key="k", Body=good)
    # Acknowledged at two copies: let the third land before damaging them.
    _wait(lambda: all(len(node.chunk_ids()) == 1 for node in nodes), 10, "every node holds the chunk")
    (chunk_id,) = nodes[0].chunk_ids()
    _diverge(nodes[1], chunk_id, good)
    channel, stub = nodes[2].stub()
    with channel:
        assert stub.DeleteChunk(pb.DeleteChunkRequest(chunk_id=chunk_id), timeout=10).existed
    assert _get(nodes[1], chunk_id) not in (good, "DATA_LOSS")

    _wait(lambda: all(_get(node, chunk_id) == good for node in nodes), 20,
          "repair restores the good copy on every node")
    assert any("keeping the one its record lists" in line for line in server.output)
    assert not any("Read repair" in line for line in server.output)
    assert s3.get_object(Bucket="disagree", Key="k")["Body"].read() == good


# -- reads never serve a divergent copy ------------------------------------------------------


@pytest.mark.parametrize("first_read", ["ranged", "full"])
def test_reads_skip_a_divergent_replica_and_repair_it(tmp_path: Path, started: list[Any], first_read: str) -> None:
    """Three copies; the copy a read asks first holds other bytes with valid
    node CRCs.  A ranged GET inside that chunk and a full GET both return
    the acknowledged bytes (from another replica; a full GET used to fail
    with 500, a ranged one to return the wrong bytes), and the divergent
    copy is rewritten by the first read."""
    nodes = make_nodes(tmp_path, 3)
    for node in nodes:
        started.append(node.start())
    server = api_server(tmp_path, distributed_config(nodes, repair_interval_seconds=0, replication_factor=3,
                                                     placement_strategy="consistent_hash"))
    started.append(server.start())
    s3: Any = make_client(server.endpoint)
    s3.create_bucket(Bucket="reads")
    body = os.urandom(MiB + 300 * KiB)  # two chunks
    s3.put_object(Bucket="reads", Key="k", Body=body)
    # The PUT is acknowledged once a write quorum stored each chunk: the
    # third copy (on any node) may land a moment later.
    found: list[str] = []
    _wait(lambda: bool(found.extend(c for c in nodes[0].chunk_ids() if _get(nodes[0], c) == body[:MiB]) or found),
          10, "node 0 holds the first chunk")  # fmt: skip
    first = found[0]
    ring = _ring(nodes)
    target = nodes[ring.index(placement.read_order(first, ring, 3, "consistent_hash")[0])]
    _diverge(target, first, body[:MiB])

    if first_read == "full":
        assert s3.get_object(Bucket="reads", Key="k")["Body"].read() == body
    ranged = s3.get_object(Bucket="reads", Key="k", Range="bytes=0-31")
    assert ranged["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert ranged["Body"].read() == body[:32]
    assert s3.get_object(Bucket="reads", Key="k", Range="bytes=1000-1048575")["Body"].read() == body[1000:MiB]
    assert s3.get_object(Bucket="reads", Key="k")["Body"].read() == body
    _wait(lambda: _get(target, first) == body[:MiB], 10, "the divergent copy is rewritten")
    # Logged once the rewrite has answered: the node may hold the bytes first.
    _wait(lambda: any("Read repair" in line for line in server.output), 10, "the read repair is logged")

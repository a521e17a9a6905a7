"""Full storage nodes, for real: three ``twistd lightningstor-node``
processes whose data dirs are small tmpfs mounts, each in a private mount
namespace (``unshare --mount``, as tests/integration/test_disk_full.py does
for the server), behind an API server on the ``distributed`` backend.

What a user must see when the nodes fill up: the PUT that no longer fits is
refused with 507 InsufficientStorage (gRPC RESOURCE_EXHAUSTED), which SDKs
do not retry, rather than a 503 they would retry in vain; every object
acknowledged before reads back whole; deletes still work on the full nodes.

The tests need root for the mounts; without it they are skipped, or fail
under LIGHTNINGSTOR_REQUIRE_TOOLS=1 (CI).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.cluster import NodeProcess, distributed_config, free_port
from tests.integration.conftest import make_client
from tests.integration.full import assert_grpc_put_refused, assert_insufficient_storage, fill_until_refused
from tests.integration.server import ServerProcess
from tests.integration.tools import require_mount_namespaces, tmpfs_wrapper

MiB = 1 << 20
NODE_TMPFS_MIB = 20
OBJECT_MIB = 3
SMALL_NODE_MIB = 8


def _cluster(
    tmp_path: Path, tmpfs_mib: list[int | None], write_quorum: int | None = None
) -> Iterator[tuple[ServerProcess, list[NodeProcess]]]:
    """Storage nodes (node-i on a ``tmpfs_mib[i]`` MiB tmpfs, or on the
    test's own disk for None) behind an API server on the distributed backend."""
    require_mount_namespaces()
    nodes = []
    for i, size in enumerate(tmpfs_mib):
        data = tmp_path / f"node-{i}"
        data.mkdir()
        wrapper = tmpfs_wrapper(data, size) if size is not None else None
        nodes.append(NodeProcess(data, free_port(), zone=f"zone-{i}", node_id=f"node-{i}", wrapper=wrapper))
    started: list[Any] = []
    try:
        for node in nodes:
            started.append(node.start())
        config = tmp_path / "api.toml"
        config.write_text(distributed_config(nodes, repair_interval_seconds=0, write_quorum=write_quorum))
        data = tmp_path / "api" / "data"
        data.mkdir(parents=True)
        server = ServerProcess(data, config=str(config))
        started.append(server.start())
        yield server, nodes
    finally:
        for proc in reversed(started):
            proc.stop()


@pytest.fixture
def full_cluster(tmp_path: Path) -> Iterator[tuple[ServerProcess, list[NodeProcess]]]:
    """Three nodes, each on a small tmpfs."""
    yield from _cluster(tmp_path, [NODE_TMPFS_MIB] * 3)


def _refusing(nodes: list[NodeProcess]) -> list[NodeProcess]:
    """The nodes that logged a chunk write refused for lack of space."""
    return [n for n in nodes if any("node out of disk space" in line for line in list(n.output))]


def test_full_nodes_refuse_with_507_and_keep_what_was_acknowledged(
    full_cluster: tuple[ServerProcess, list[NodeProcess]],
) -> None:
    server, nodes = full_cluster
    s3: Any = make_client(server.endpoint)
    s3.create_bucket(Bucket="full")
    objects = ((f"big/{i}", os.urandom(OBJECT_MIB * MiB)) for i in range(2 * NODE_TMPFS_MIB // OBJECT_MIB))
    stored, refused = fill_until_refused(s3, "full", objects)
    assert_insufficient_storage(refused)
    assert len(stored) >= NODE_TMPFS_MIB // OBJECT_MIB - 2  # the nodes' disks, not something else, were the limit
    # Enough nodes to lose the quorum (2 of 3) said why they refused.  Not
    # necessarily all three: each node judges its own free space, so one may
    # still take the chunk the other two refused.  Their lines are read from
    # the nodes' output by threads, so give them a moment to arrive.
    deadline = time.monotonic() + 10
    while len(_refusing(nodes)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_refusing(nodes)) >= 2, [n.node_id for n in _refusing(nodes)]
    for node in nodes:  # and all of them are full
        assert node.stat().free_bytes < 2 * MiB, node.node_id

    # Every acknowledged object reads back whole; the refused one does not exist.
    for key, body in stored.items():
        assert s3.get_object(Bucket="full", Key=key)["Body"].read() == body
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket="full", Key=f"big/{len(stored)}")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    # The gRPC API names the same refusal RESOURCE_EXHAUSTED.
    assert_grpc_put_refused(server.grpc_endpoint, "full", "big/grpc", os.urandom(OBJECT_MIB * MiB))

    # A full node is not down: deletes reach it (the metadata is on the API
    # server's own disk), and the objects are gone.
    for key in list(stored)[:2]:
        s3.delete_object(Bucket="full", Key=key)
        with pytest.raises(ClientError) as gone:
            s3.head_object(Bucket="full", Key=key)
        assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="full")["Contents"]] == sorted(list(stored)[2:])


@pytest.fixture
def one_small_node(tmp_path: Path) -> Iterator[tuple[ServerProcess, list[NodeProcess]]]:
    """Four nodes, three copies of every chunk, all three required (write
    quorum 3); node-0's disk is a small tmpfs, the others have room."""
    yield from _cluster(tmp_path, [SMALL_NODE_MIB, None, None, None], write_quorum=3)



def test_a_full_node_s_copies_go_to_the_other_nodes(one_small_node: tuple[ServerProcess, list[NodeProcess]]) -> None:
    """Three times the small node's disk is written: once it is full, the
    copies placed on it go to the fourth node, so every PUT still gets its
    three copies and succeeds, and every object reads back whole."""
    server, nodes = one_small_node
    s3: Any = make_client(server.endpoint)
    s3.create_bucket(Bucket="spill")
    stored = {}
    for i in range(3 * SMALL_NODE_MIB // OBJECT_MIB):
        body = os.urandom(OBJECT_MIB * MiB)
        s3.put_object(Bucket="spill", Key=f"big/{i}", Body=body)
        stored[f"big/{i}"] = body
    assert any("node out of disk space" in line for line in nodes[0].output)  # it did fill up
    assert nodes[0].stat().free_bytes < 2 * MiB
    assert any("writing the copy to spare" in line for line in server.output)
    for key, body in stored.items():
        assert s3.get_object(Bucket="spill", Key=key)["Body"].read() == body

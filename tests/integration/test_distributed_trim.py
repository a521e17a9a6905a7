"""Growing a cluster for real: objects written to two ``twistd
lightningstor-node`` processes (two copies of every chunk), then the API
server restarted with a third node.  Repair copies each chunk whose
placement now includes the new node there and then trims the old copy, so
every chunk ends with exactly two copies, both on its placement, and every
object still reads back byte-identical."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from lightningstor.storage import placement
from lightningstor.storage.distributed import parse_node
from tests.integration.cluster import NodeProcess, distributed_config, free_port
from tests.integration.conftest import make_client
from tests.integration.server import ServerProcess

MiB = 1 << 20
REPLICAS = 2


def _listed(node: NodeProcess) -> set[str]:
    return node.chunk_ids(timeout=10)


def _config(nodes: list[NodeProcess]) -> str:
    return distributed_config(nodes, repair_interval_seconds=0.5, replication_factor=REPLICAS,
                              placement_strategy="consistent_hash")


def test_adding_a_node_moves_chunks_and_trims_the_old_copies(tmp_path: Path) -> None:
    """Every chunk ends on exactly its N placement nodes; while repair works,
    no chunk is ever seen with fewer than N copies (the nodes are asked in
    order old, old, new: a copy leaves an old node only after the new one
    has it, so a non-atomic look never undercounts)."""
    nodes = [NodeProcess(tmp_path / f"node-{i}", free_port(), zone=f"zone-{i}", node_id=f"node-{i}")
             for i in range(3)]
    started: list[Any] = []
    try:
        for node in nodes:
            node.data_dir.mkdir()
            started.append(node.start())
        config = tmp_path / "api.toml"
        config.write_text(_config(nodes[:2]))
        data = tmp_path / "api"
        data.mkdir()
        server = ServerProcess(data, config=str(config))
        started.append(server.start())
        s3: Any = make_client(server.endpoint)
        s3.create_bucket(Bucket="grow")
        bodies = {f"obj-{i}": os.urandom(MiB * (i % 3) + 1000 * i + 1) for i in range(10)}
        for key, body in bodies.items():
            s3.put_object(Bucket="grow", Key=key, Body=body)
        chunks = _listed(nodes[0])
        assert len(chunks) >= 15 and _listed(nodes[1]) == chunks and not _listed(nodes[2])

        # The third node joins: the API server restarts with it.
        config.write_text(_config(nodes))
        server.restart()
        s3 = make_client(server.endpoint)  # a new port
        ring = [parse_node(node.url, node.zone) for node in nodes]
        expected = {
            chunk_id: {i for i, address in enumerate(ring)
                       if address in placement.place(chunk_id, ring, REPLICAS, "consistent_hash")}
            for chunk_id in chunks
        }
        moving = [c for c, home in expected.items() if 2 in home]
        assert moving  # about a third of them

        deadline = time.monotonic() + 20
        while True:
            on_node = [node.has(sorted(chunks)) for node in nodes]  # old nodes first, then the new one
            held = {c: {i for i, found in enumerate(on_node) if c in found} for c in chunks}
            short = {c: h for c, h in held.items() if len(h) < REPLICAS}
            assert not short, f"chunks below {REPLICAS} copies: {short}"
            if held == expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        wrong = {c: (held[c], expected[c]) for c in chunks if held[c] != expected[c]}
        assert not wrong, f"{len(wrong)} of {len(chunks)} chunks not on exactly their placement: {wrong}"
        assert any("extra copies trimmed" in line for line in server.output)

        for key, body in bodies.items():
            assert s3.get_object(Bucket="grow", Key=key)["Body"].read() == body, key
    finally:
        for proc in reversed(started):
            proc.stop()

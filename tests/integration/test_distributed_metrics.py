"""The distributed backend's metrics on a real cluster: read repairs per
node (``lightningstor_storage_read_repairs_total``) and suspect nodes
(``lightningstor_storage_node_suspect``), read from ``/metrics`` of the API
server while ``twistd lightningstor-node`` processes are damaged, stopped
and restarted."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lightningstor.storage import placement
from tests.integration.cluster import NodeProcess, three_nodes_and_api_server
from tests.integration.conftest import make_client
from tests.integration.server import ServerProcess
from tests.integration.test_distributed_integrity import _get, _ring, _rot, _wait
from tests.integration.test_metrics import Samples, _samples, _scrape_text, _value

KiB = 1 << 10
READ_REPAIRS = "lightningstor_storage_read_repairs_total"
SUSPECT = "lightningstor_storage_node_suspect"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[list[NodeProcess], ServerProcess]]:
    with three_nodes_and_api_server(tmp_path) as running:
        yield running


def _address(node: NodeProcess) -> str:
    return f"127.0.0.1:{node.port}"


def _scrape(server: ServerProcess) -> Samples:
    return _samples(_scrape_text(f"{server.endpoint}/metrics"))


def _wait_for(server: ServerProcess, check: Callable[[Samples], bool], what: str, seconds: float = 15) -> Samples:
    deadline = time.monotonic() + seconds
    while True:
        samples = _scrape(server)
        if check(samples):
            return samples
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


def test_read_repairs_and_suspect_nodes_are_counted_per_node(
    cluster: tuple[list[NodeProcess], ServerProcess]
) -> None:
    nodes, server = cluster
    samples = _scrape(server)
    for node in nodes:  # every node is exposed from the start
        assert (READ_REPAIRS, frozenset({("node", _address(node))})) in samples
        assert samples[(SUSPECT, frozenset({("node", _address(node))}))] == 0

    s3: Any = make_client(server.endpoint)
    s3.create_bucket(Bucket="repairs")
    body = os.urandom(200 * KiB)  # one chunk
    s3.put_object(Bucket="repairs", Key="k", Body=body)
    # Acknowledged at two copies: let the third land before damaging one.
    _wait(lambda: all(len(node.chunk_ids()) == 1 for node in nodes), 10, "every node holds the chunk")
    (chunk_id,) = nodes[0].chunk_ids()
    ring = _ring(nodes)
    first = nodes[ring.index(placement.read_order(chunk_id, ring, 3, "consistent_hash")[0])]
    _rot(first, chunk_id)  # the copy a read asks first fails its block CRCs

    assert s3.get_object(Bucket="repairs", Key="k")["Body"].read() == body
    samples = _wait_for(server, lambda s: _value(s, READ_REPAIRS, node=_address(first)) == 1,
                        "the read repair is counted")
    assert _get(first, chunk_id) == body
    assert all(_value(samples, READ_REPAIRS, node=_address(n)) == 0 for n in nodes if n is not first)

    # A node that stops answering is suspect until it answers again.
    down = nodes[2]
    down.stop()
    s3.put_object(Bucket="repairs", Key="while-down", Body=os.urandom(10 * KiB))  # two copies of three
    samples = _wait_for(server, lambda s: _value(s, SUSPECT, node=_address(down)) == 1, "the stopped node is suspect")
    assert all(_value(samples, SUSPECT, node=_address(n)) == 0 for n in nodes if n is not down)
    down.start()
    s3.put_object(Bucket="repairs", Key="after", Body=os.urandom(10 * KiB))  # reaches it (or its probe does)
    _wait_for(server, lambda s: _value(s, SUSPECT, node=_address(down)) == 0, "the restarted node is no longer suspect")

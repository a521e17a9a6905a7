"""One hung storage node (SIGSTOP: it accepts connections and never
answers, a gray failure) on a real cluster of ``twistd lightningstor-node``
processes behind a ``twistd lightningstor`` API server.

Node calls have a 30 s deadline.  Without per-node health a GET waited that
long for every chunk whose placement starts with the hung node, and the
writes' stragglers to it held the server's io pool until a PUT stalled for
the full deadline.  With it, a read waits a couple of seconds for the hung
node once, then asks it last; stragglers hold only the hung node's own call
slots and then fail at once; and the node is used again as soon as it
answers.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lightningstor.storage import placement
from lightningstor.storage.distributed import parse_node
from tests.integration.cluster import NodeProcess, three_nodes_and_api_server
from tests.integration.conftest import make_client
from tests.integration.server import ServerProcess

KiB = 1 << 10
MiB = 1 << 20
# Well below the 30 s node deadline, well above the expected ~2 s.
PROMPT = 10.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[list[NodeProcess], ServerProcess]]:
    with three_nodes_and_api_server(tmp_path) as running:
        yield running


def _timed(call: Any) -> tuple[Any, float]:
    start = time.monotonic()
    value = call()
    return value, time.monotonic() - start


def _wait_for_log(server: ServerProcess, text: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not any(text in line for line in server.output):
        assert time.monotonic() < deadline, f"the server never logged {text!r}"
        time.sleep(0.2)


@pytest.mark.parametrize("first", ["reads", "writes"])
def test_a_hung_node_stalls_neither_reads_nor_writes(
    cluster: tuple[list[NodeProcess], ServerProcess], first: str
) -> None:
    """With one of three nodes hung, GETs of an object whose chunks' reads
    start on it and a series of one-chunk PUTs all answer within seconds,
    whether the server first meets the hung node in a read (a short read
    deadline) or in writes (the stragglers fill its call slots, further
    calls fail at once); once resumed the node is used again and every
    object reads back."""
    nodes, server = cluster
    # A client read timeout below the node deadline: a stall fails the test
    # quickly instead of waiting it out.
    s3: Any = make_client(server.endpoint, read_timeout=15, connect_timeout=5)
    s3.create_bucket(Bucket="hung")
    body = os.urandom(6 * MiB)  # six 1 MiB chunks
    s3.put_object(Bucket="hung", Key="big", Body=body)
    ring = [parse_node(node.url, node.zone) for node in nodes]
    firsts = Counter(ring.index(placement.read_order(chunk_id, ring, 3, "consistent_hash")[0])
                     for chunk_id in nodes[0].chunk_ids())
    victim, chunks_first_on_victim = firsts.most_common(1)[0]
    assert chunks_first_on_victim >= 2
    hung = nodes[victim]
    assert hung.proc is not None
    small = {f"small-{i}": os.urandom(200 * KiB) for i in range(12)}  # one chunk each

    def read() -> None:
        got, seconds = _timed(lambda: s3.get_object(Bucket="hung", Key="big")["Body"].read())
        assert got == body
        assert seconds < PROMPT, f"GET with a hung node took {seconds:.1f}s"

    def write() -> None:
        # Every PUT is acknowledged by the two live copies, none waiting for
        # an io-pool thread held by a straggler to the hung node.
        for key, data in small.items():
            _, seconds = _timed(lambda key=key, data=data: s3.put_object(Bucket="hung", Key=key, Body=data))
            assert seconds < PROMPT, f"PUT {key} with a hung node took {seconds:.1f}s"

    os.kill(hung.proc.pid, signal.SIGSTOP)
    try:
        for step in (read, write) if first == "reads" else (write, read):
            step()
        _wait_for_log(server, "is not answering", 15)
        _, seconds = _timed(read)
        assert seconds < PROMPT / 2, f"a GET once the node is suspect took {seconds:.1f}s"
    finally:
        os.kill(hung.proc.pid, signal.SIGCONT)

    # The node answers again: it is used again, and nothing was lost.
    _wait_for_log(server, "answers again", 20)
    for key, data in small.items():
        assert s3.get_object(Bucket="hung", Key=key)["Body"].read() == data, key
    assert s3.get_object(Bucket="hung", Key="big")["Body"].read() == body
    other = nodes[(victim + 1) % 3]
    before = other.chunk_ids()
    s3.put_object(Bucket="hung", Key="after", Body=os.urandom(100 * KiB))
    new = other.chunk_ids() - before
    assert len(new) == 1 and new <= hung.chunk_ids(), "the resumed node did not get the next write's copy"

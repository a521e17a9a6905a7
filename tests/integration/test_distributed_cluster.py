"""Three storage nodes and an API server on the ``distributed`` backend, as
real processes on loopback, driven with boto3: replicated PUT/GET/ranges/
multipart, a node SIGKILLed during a stream of PUTs, and repair of a node
that comes back empty (a replaced disk)."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.cluster import NodeProcess, distributed_config, free_port
from tests.integration.conftest import make_client
from tests.integration.server import ServerProcess

MiB = 1 << 20


class Cluster:
    def __init__(self, nodes: list[NodeProcess], server: ServerProcess) -> None:
        self.nodes = nodes
        self.server = server
        self.s3: Any = make_client(server.endpoint)

    def chunk_ids(self) -> set[str]:
        """Every chunk id any live node lists."""
        found: set[str] = set()
        for node in self.nodes:
            if node.proc is not None:
                found |= node.chunk_ids(timeout=10)
        return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("cluster")
    nodes = [
        NodeProcess(base / f"node-{i}", free_port(), zone=f"zone-{i}", node_id=f"node-{i}") for i in range(3)
    ]
    started: list[Any] = []
    try:
        for node in nodes:
            node.data_dir.mkdir()
            started.append(node.start())
        config = base / "api.toml"
        config.write_text(distributed_config(nodes, repair_interval_seconds=1.0))
        data = base / "api"
        data.mkdir()
        server = ServerProcess(data, config=str(config))
        started.append(server.start())
        yield Cluster(nodes, server)
    finally:
        for proc in reversed(started):
            proc.stop()


def body(size: int, seed: int) -> bytes:
    return hashlib.shake_256(f"{seed}".encode()).digest(size) if size <= 65536 else os.urandom(size)


def test_put_get_ranges_and_multipart_are_replicated(cluster: Cluster) -> None:
    """Objects spanning several chunks read back whole and by range, a
    multipart upload completes, and every chunk lands on all three nodes."""
    s3 = cluster.s3
    s3.create_bucket(Bucket="dist")
    data = os.urandom(3 * MiB + 12345)
    s3.put_object(Bucket="dist", Key="big", Body=data)
    assert s3.get_object(Bucket="dist", Key="big")["Body"].read() == data
    got = s3.get_object(Bucket="dist", Key="big", Range="bytes=1048000-2100000")["Body"].read()
    assert got == data[1048000:2100001]
    upload = s3.create_multipart_upload(Bucket="dist", Key="mp")
    parts = [os.urandom(5 * MiB), os.urandom(MiB + 7)]
    etags = [
        s3.upload_part(Bucket="dist", Key="mp", UploadId=upload["UploadId"], PartNumber=i + 1, Body=p)["ETag"]
        for i, p in enumerate(parts)
    ]
    s3.complete_multipart_upload(
        Bucket="dist", Key="mp", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]},
    )
    assert s3.get_object(Bucket="dist", Key="mp")["Body"].read() == b"".join(parts)
    ids = cluster.chunk_ids()
    assert len(ids) >= 4 + 6
    for node in cluster.nodes:
        assert node.has(sorted(ids)) == ids, f"{node.node_id} lacks replicas"
        stat = node.stat()
        assert stat.chunk_count == len(ids) and stat.free_bytes > 0 and stat.zone == node.zone


def test_sigkill_a_node_during_puts_then_repair_a_replaced_node(cluster: Cluster) -> None:
    """SIGKILL one node during a stream of PUTs: every acknowledged object
    reads back byte-identical.  The node then returns with an empty data dir
    and repair copies every chunk back onto it."""
    s3 = cluster.s3
    bucket = f"kill-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    acknowledged: dict[str, bytes] = {}
    failures: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            key = f"obj-{i}"
            data = os.urandom(200_000 + i)
            try:
                s3.put_object(Bucket=bucket, Key=key, Body=data)
            except Exception as e:  # not acknowledged: allowed to be lost
                failures.append(f"{key}: {e}")
            else:
                acknowledged[key] = data
            i += 1

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    victim = cluster.nodes[0]
    deadline = time.monotonic() + 20
    while len(acknowledged) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.kill()
    before = len(acknowledged)
    while len(acknowledged) < before + 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(30)
    assert len(acknowledged) >= before + 10, failures[-5:]
    for key, data in acknowledged.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data, key

    # The node comes back with a new, empty disk.
    shutil.rmtree(victim.data_dir)
    victim.data_dir.mkdir()
    victim.start()
    expected = cluster.chunk_ids()
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if victim.has(sorted(expected)) == expected:
            break
        time.sleep(0.5)
    missing = expected - victim.has(sorted(expected))
    assert not missing, f"{len(missing)} of {len(expected)} chunks not repaired"
    for node in cluster.nodes:
        assert node.stat().chunk_count >= len(expected)


def test_admin_scrub_rewrites_a_rotten_replica_from_a_good_one(cluster: Cluster) -> None:
    """Bitrot in one node's copy of a chunk: ``lightningstor-admin scrub``
    against the API server's configuration names the damaged replica,
    rewrites it from a good copy and exits 0 (nothing is left broken); the
    node's copy verifies after, and GET returns the right bytes.  (No GET
    before the scrub: a read that meets the damaged copy repairs it itself,
    test_distributed_integrity.py, and the scrub would find nothing.)"""
    import subprocess
    import sys

    s3 = cluster.s3
    bucket = f"scrub-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    before = cluster.chunk_ids()
    data = os.urandom(MiB + 100)
    s3.put_object(Bucket=bucket, Key="rotting", Body=data)
    new = sorted(cluster.chunk_ids() - before)
    assert len(new) == 2
    victim = cluster.nodes[1]
    address = victim.url.split("//", 1)[1]
    # The object's 1 MiB chunk (its other one holds the last 100 bytes).
    files = [p for chunk_id in new for p in victim.data_dir.rglob(chunk_id) if p.is_file()]
    path = max(files, key=lambda p: p.stat().st_size)
    rotten = path.name
    with open(path, "r+b") as f:
        f.seek(4096)
        original = f.read(3)
        assert len(original) == 3
        f.seek(4096)
        f.write(bytes(b ^ 0xFF for b in original))

    config = cluster.server.config
    result = subprocess.run(
        [sys.executable, "-m", "lightningstor.admin", "scrub", "--config", str(config),
         "--data-dir", str(cluster.server.data_dir)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines() if line.startswith("replica\t")]
    assert [(line[1], line[2], line[3]) for line in lines] == [
        (rotten, f"damaged={address}", f"repaired={address}")
    ]
    with open(path, "rb") as f:
        f.seek(4096)
        assert f.read(3) == original
    again = subprocess.run(
        [sys.executable, "-m", "lightningstor.admin", "scrub", "--config", str(config),
         "--data-dir", str(cluster.server.data_dir)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == 0 and "replica\t" not in again.stdout, again.stdout
    assert s3.get_object(Bucket=bucket, Key="rotting")["Body"].read() == data

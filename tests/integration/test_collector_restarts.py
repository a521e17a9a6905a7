"""The orphan collector's observed age survives server restarts (real servers).

A server restarted more often than the collector's grace period (rolling
deploys, nightly restarts, a crash loop), or a collector lease moving from
server to server, must still collect orphans: the collector keeps what it
has seen in the metadata store (core/sightings.py).

A server (1 MiB chunks) is killed in the middle of a PUT, leaving orphan
chunks.  Servers are then started one at a time, again and again, with
``[collector] interval_seconds = 1`` and ``grace_seconds = 4``, each
stopped after two collector passes: one process observes about 1 s of
unreferenced time, far less than the grace.  The orphans are gone after a
few starts, once the observed time adds up to the grace, and not during
the first ones (downtime is not counted); the committed object stays whole.

* SQLite + local backend: one server restarted;
* etcd (shared) + one local chunk directory: two servers taking turns, so
  the ``collector`` lease moves at every start (skipped where
  /usr/bin/etcd is missing, unless LIGHTNINGSTOR_REQUIRE_TOOLS=1).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.etcd_cluster import EtcdCluster, etcd_binary
from tests.integration.conftest import make_client
from tests.integration.server import ServerProcess
from tests.integration.test_collector_clock import CONFIG, MiB, SlowUpload, chunk_files, wait_for
from tests.integration.test_etcd_server import config as etcd_config

# Follows a [storage] table: freed chunks wait at most half the grace
# (config.py refuses more; nothing is freed here anyway).  A grace of four
# observed seconds needs four starts (each observes about 1 s), one more
# than the test asks for; counting the downtime (1.5 s, plus the server's
# start) would collect at the second.
COLLECTOR = """free_delay_seconds = 2

[collector]
interval_seconds = 1
grace_seconds = 4

[limits]
max_write_seconds = 2
"""
WAITING = "waiting out the grace period"
COLLECTED = "Collected "
MAX_STARTS = 12


def passes(server: ServerProcess, first_line: int) -> int:
    """Collector passes this start logged (each logs one of these lines
    while there is something unreferenced)."""
    return sum(1 for line in server.output[first_line:] if WAITING in line or COLLECTED in line)


def leave_orphans(server: ServerProcess, chunks: Path) -> tuple[bytes, set[str]]:
    """Store an object, then SIGKILL ``server`` during a 3 MiB PUT after its
    first chunk was stored: (the object's body, the chunk files that stay)."""
    server.start()
    s3: Any = make_client(server.endpoint)
    s3.create_bucket(Bucket="bkt")
    kept = os.urandom(2 * MiB)
    s3.put_object(Bucket="bkt", Key="kept", Body=kept)
    live = chunk_files(chunks)
    upload = SlowUpload(s3, "put_object", {"Bucket": "bkt", "Key": "cut"}, os.urandom(3 * MiB))
    upload.send_first(2 * MiB + 1)
    wait_for(lambda: len(chunk_files(chunks)) > len(live))
    server.kill()
    upload.conn.close()
    assert chunk_files(chunks) - live
    return kept, live


def run_two_passes(server: ServerProcess) -> None:
    """Start ``server`` and stop it once its collector made two passes (or
    collected something)."""
    first_line = len(server.output)
    server.start()
    try:
        wait_for(lambda: passes(server, first_line) >= 2 or COLLECTED in "".join(server.output[first_line:]))
    finally:
        server.stop()


def start_until_collected(servers: Sequence[ServerProcess], chunks: Path, live: set[str]) -> int:
    """Start the servers in turn, each for two collector passes, until only
    ``live`` chunk files are left; how many starts it took."""
    starts = 0
    while chunk_files(chunks) != live:
        assert starts < MAX_STARTS, f"orphans still there after {starts} starts"
        run_two_passes(servers[starts % len(servers)])
        starts += 1
        time.sleep(1.5)  # downtime, which must not count
    return starts


def test_orphans_are_collected_across_restarts_shorter_than_the_grace(tmp_path: Path) -> None:
    """SQLite: one server restarted after every two passes (about 1 s of
    observed time each, 1.5 s down in between) collects a SIGKILLed PUT's
    orphans once the starts add up to the 4 s grace, after at least three
    starts; the committed object reads back whole."""
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "base.toml").write_text(CONFIG)
    (tmp_path / "collector.toml").write_text(CONFIG + COLLECTOR)
    server = ServerProcess(data, config=str(tmp_path / "base.toml"))
    try:
        kept, live = leave_orphans(server, data)
        server.config = str(tmp_path / "collector.toml")
        # Each start observes about 1 s; the 4 s grace needs several.
        assert start_until_collected([server], data, live) >= 3
        server.start()
        s3: Any = make_client(server.endpoint)
        assert s3.get_object(Bucket="bkt", Key="kept")["Body"].read() == kept
    finally:
        server.stop()


def test_observed_age_follows_the_lease_between_servers_on_etcd(tmp_path: Path) -> None:
    """etcd: two servers sharing one chunk directory take turns (each start
    takes the ``collector`` lease the previous one released), each for two
    passes; both run passes, and the orphans go once their observed time,
    shared through etcd, adds up to the grace."""
    etcd_binary()
    etcd = EtcdCluster(tmp_path / "etcd").start()
    chunks = tmp_path / "shared"
    storage = f'[storage]\ndata_dir = "{chunks / "data"}"\nchunk_size_bytes = 1048576\ninline_threshold_bytes = 1024\n'
    base = etcd_config(tmp_path / "base.toml", etcd.endpoints, "gc/", storage=storage)
    collecting = etcd_config(tmp_path / "collector.toml", etcd.endpoints, "gc/", storage=storage + COLLECTOR)
    servers = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        servers.append(ServerProcess(tmp_path / name, config=base))
    try:
        kept, live = leave_orphans(servers[0], chunks)
        for server in servers:
            server.config = collecting
        assert start_until_collected(servers, chunks, live) >= 3
        assert all(passes(server, 0) >= 2 for server in servers)
        servers[1].start()
        s3: Any = make_client(servers[1].endpoint)
        assert s3.get_object(Bucket="bkt", Key="kept")["Body"].read() == kept
    finally:
        for server in servers:
            server.stop()
        etcd.stop()

"""Leases of background jobs on real etcd (lightningstor.core.leases).

* The lease logic (:class:`tests.unit.test_leases.LeaseContract`: racing
  holders, renewal, expiry takeover, release) on a real etcd member, each
  test in its own namespace.
* Two real API servers on one etcd with the scrub and the lifecycle run
  every second: each job runs on one server only (its log lines and its
  ``lightningstor_background_job_lease`` gauge), and moves to the other
  server when the holder is stopped.

Skipped where /usr/bin/etcd is missing, unless LIGHTNINGSTOR_REQUIRE_TOOLS=1.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from prometheus_client.parser import text_string_to_metric_families

from tests.etcd_cluster import EtcdCluster, etcd_binary, post
from tests.integration.server import ServerProcess, wait_until
from tests.integration.test_etcd_server import config, start_server
from tests.integration.test_etcd_store import make_store
from tests.unit.test_leases import LeaseContract

JOBS = ("scrub", "lifecycle")


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    etcd_binary()
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd")).start()
    yield cluster
    cluster.stop()


class TestEtcdLeases(LeaseContract):
    """The lease logic against a real etcd member."""

    @pytest.fixture
    def store(self, etcd: EtcdCluster) -> Iterator[Any]:
        s = make_store(etcd.endpoints)
        yield s
        pytest_twisted.blockon(s.close())


# -- two servers -----------------------------------------------------------------


def held_jobs(server: ServerProcess) -> set[str]:
    """The jobs whose lease ``server`` says (in /metrics) it holds."""
    with urllib.request.urlopen(f"{server.endpoint}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    held = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "lightningstor_background_job_lease" and sample.value == 1:
                held.add(sample.labels["job"])
    return held


def lease_holder(etcd: EtcdCluster, namespace: str, job: str) -> str | None:
    """The holder named in ``leases/{job}``, read past the server."""
    key = f"{namespace}d/lightningstor/leases/{job}".encode()
    answer = post(etcd.endpoints[0] + "/v3/kv/range", {"key": base64.b64encode(key).decode()})
    kvs: Any = answer.get("kvs")
    if not kvs:
        return None
    holder: str = json.loads(base64.b64decode(kvs[0]["value"]))["holder"]
    return holder


def scrub_lines(server: ServerProcess) -> int:
    return sum("Scrub checked" in line for line in list(server.output))


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    return wait_until(condition, what, timeout=timeout)


def test_jobs_run_on_one_server_and_move_when_it_stops(etcd: EtcdCluster, tmp_path: Path) -> None:
    """Scrub and lifecycle every second on two servers: one server holds
    both leases and only it scrubs; stopped, it releases them and the other
    server takes both at its next run."""
    namespace = "leases-e2e/"
    cfg = config(
        tmp_path / "server.toml",
        etcd.endpoints,
        namespace,
        storage="[storage]\nscrub_interval_seconds = 1\n[lifecycle]\ninterval_seconds = 1",
    )
    a = start_server(tmp_path, "a", cfg)
    b = start_server(tmp_path, "b", cfg)
    try:
        servers = [a, b]
        wait_for(lambda: all(lease_holder(etcd, namespace, job) for job in JOBS), 15, "both leases taken")
        first = wait_for(
            lambda: next((s for s in servers if held_jobs(s) == set(JOBS)), None), 15, "one server holding both"
        )
        other = b if first is a else a
        assert f"pid={first.proc.pid} " in (lease_holder(etcd, namespace, "scrub") or "")
        # Over three more seconds (three intervals) only the holder scrubs.
        before = scrub_lines(other)
        time.sleep(3.0)
        assert held_jobs(other) == set()
        assert scrub_lines(other) == before == 0
        assert scrub_lines(first) >= 2
        first.stop()
        # Released at the stop: the other server takes over within a few intervals, not the 30 s ttl.
        started = time.monotonic()
        wait_for(lambda: held_jobs(other) == set(JOBS), 10, "takeover by the other server")
        assert time.monotonic() - started < 10
        assert other.proc is not None and f"pid={other.proc.pid} " in (lease_holder(etcd, namespace, "scrub") or "")
        wait_for(lambda: scrub_lines(other) >= 1, 10, "a scrub on the new holder")
    finally:
        for s in (a, b):
            s.stop()

"""The operations examples stay true: the cluster config loads, the dashboard and the
systemd unit match what the server exposes and does."""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from lightningstor.config import ServerSettings, load_settings
from lightningstor.interfaces.metadata import IPointReadCache
from lightningstor.metrics import S3Metrics
from lightningstor.s3.summary import RequestSummary
from lightningstor.storage.distributed import DistributedBackend
from lightningstor.storage.local import LocalFsBackend
from lightningstor.storage.placement import NodeAddress
from lightningstor.storage.retired import RetiredChunks

DOCS = Path(__file__).resolve().parents[2] / "docs"
SPEC_METRICS = {
    "lightningstor_requests_total", "lightningstor_request_duration_seconds",
    "lightningstor_object_size_bytes", "lightningstor_objects_total", "lightningstor_storage_bytes",
    "lightningstor_multipart_uploads_active", "lightningstor_s3_errors_total",
}  # fmt: skip
# Series that only the ``distributed`` storage backend has (S3Metrics.watch_storage registers
# them for a backend with storage nodes): the dashboard may query them on panels whose
# description says so; a server on the ``local`` backend shows no data there.
# test_dashboard_queries_only_metrics_the_server_exposes checks this list against the code.
DISTRIBUTED_ONLY = {"lightningstor_storage_read_repairs_total", "lightningstor_storage_node_suspect"}


@implementer(IPointReadCache)
class _CachedStore:
    """A metadata store with a read cache that answered one read (as SQLite's does)."""

    class cache:
        hits, misses, bypassed, bytes = 1, 0, 0, 100


def _exposed(metrics: S3Metrics) -> set[str]:
    """The series /metrics shows (prometheus-client's ``*_created`` ones are left out)."""
    return {s.name for m in metrics.registry.collect() for s in m.samples if not s.name.endswith("_created")}


def _server_metrics() -> S3Metrics:
    """The metrics of a server on one node (SQLite, ``local`` storage) once every family it
    registers has had something to count: an S3 request, a read from the metadata cache, a
    freed chunk waiting (the copies run at start)."""
    clock = Clock()
    metrics = S3Metrics()
    metrics.request_finished(RequestSummary(  # one request touching every labelled metric
        request_id="R", principal="-", operation="PutObject", method="PUT", uri="/b/k",
        bucket="b", key="k", status=500, completed=True, error_code="InternalError", bytes_in=1,
        bytes_out=0, duration=0.1, remote="-", object_size=1,
    ))  # fmt: skip
    retired = RetiredChunks(clock, lambda ids: succeed(None), 60.0)
    retired.retire(["c"])
    cache = metrics.watch_read_cache(_CachedStore(), clock)
    assert cache is not None
    for service in (cache, metrics.watch_retired(retired, clock)):
        service.startService()
        service.stopService()
    return metrics


def test_cluster_example_is_a_valid_config() -> None:
    """docs/examples/cluster.toml passes validation and sets up etcd metadata, distributed
    storage, TLS, a metrics listener and JSON logs."""
    s = load_settings(str(DOCS / "examples" / "cluster.toml"), env={})
    assert s.metadata.backend == "etcd" and len(s.metadata.chainfire_endpoints) == 3
    assert s.storage.backend == "distributed"
    assert s.storage.options["distributed"]["replication_factor"] == 3
    assert s.server.tls is not None and s.server.tls.ca_file is not None
    assert s.server.metrics_addr is not None
    assert (s.logging.format, s.logging.access_log) == ("json", True)


def test_dashboard_queries_only_metrics_the_server_exposes() -> None:
    """Every lightningstor_* series the Grafana dashboard queries exists in the metrics
    registry of a one-node server, or is one of DISTRIBUTED_ONLY: exactly the series the
    registry gains from a distributed backend (and never from a local one), queried only by
    panels that say "distributed"; every SPEC §10.2 metric appears on the dashboard."""
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = set(re.findall(r"lightningstor_[a-z0-9_]+", " ".join(exprs)))
    metrics = _server_metrics()
    exposed = _exposed(metrics)
    assert used and used <= exposed | DISTRIBUTED_ONLY, used - exposed - DISTRIBUTED_ONLY
    assert not hasattr(LocalFsBackend, "observe")  # watch_storage registers nothing for it
    node = NodeAddress(url="http://10.0.0.1:9002", address="10.0.0.1:9002", zone="a")
    metrics.watch_storage(DistributedBackend([node], Clock(), None, replication_factor=1,
                                             client_factory=lambda _node: None))  # fmt: skip
    assert _exposed(metrics) - exposed == DISTRIBUTED_ONLY
    for panel in dashboard["panels"]:
        text = " ".join(t["expr"] for t in panel.get("targets", []))
        if any(name in text for name in DISTRIBUTED_ONLY):
            assert "distributed" in panel["title"] and "distributed" in panel["description"], panel["title"]
    covered = {name for name in SPEC_METRICS if any(name in e for e in exprs)}
    assert covered == SPEC_METRICS
    assert any("histogram_quantile(0.99" in e for e in exprs)


def test_systemd_unit_reloads_with_sighup_and_outlasts_the_drain() -> None:
    """The unit reloads with SIGHUP, stops with SIGTERM, runs twistd in the foreground and
    waits longer than the default shutdown drain before killing."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DOCS / "examples" / "lightningstor.service")
    service = unit["Service"]
    assert "-HUP" in service["ExecReload"]
    assert service["KillSignal"] == "SIGTERM"
    assert " -n " in service["ExecStart"] and "lightningstor" in service["ExecStart"]
    assert float(service["TimeoutStopSec"]) > ServerSettings().shutdown_timeout_seconds

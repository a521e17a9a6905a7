"""The operations examples stay true: the cluster config loads, the dashboard and the
systemd unit match what the server exposes and does."""

from __future__ import annotations

import configparser
import json
import re
from pathlib import Path

from lightningstor.config import ServerSettings, load_settings
from lightningstor.metrics import S3Metrics
from lightningstor.s3.summary import RequestSummary

DOCS = Path(__file__).resolve().parents[2] / "docs"
SPEC_METRICS = {
    "lightningstor_requests_total", "lightningstor_request_duration_seconds",
    "lightningstor_object_size_bytes", "lightningstor_objects_total", "lightningstor_storage_bytes",
    "lightningstor_multipart_uploads_active", "lightningstor_s3_errors_total",
}  # fmt: skip


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
    registry, and every SPEC §10.2 metric appears on the dashboard."""
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = set(re.findall(r"lightningstor_[a-z0-9_]+", " ".join(exprs)))
    metrics = S3Metrics()
    metrics.request_finished(RequestSummary(  # one request touching every labelled metric
        request_id="R", principal="-", operation="PutObject", method="PUT", uri="/b/k",
        bucket="b", key="k", status=500, completed=True, error_code="InternalError", bytes_in=1,
        bytes_out=0, duration=0.1, remote="-", object_size=1,
    ))  # fmt: skip
    exposed = {s.name for m in metrics.registry.collect() for s in m.samples}
    assert used and used <= exposed, used - exposed
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

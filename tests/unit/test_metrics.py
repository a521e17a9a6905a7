"""Metrics in-process: request accounting, store gauges, exposition, request summaries."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.python.threadpool import ThreadPool
from twisted.web.test.requesthelper import DummyRequest

from lightningstor.core import keys, records
from lightningstor.core.types import ObjectRecord
from lightningstor.interfaces.metadata import KeyValue, Put
from lightningstor.metadata.sqlite import SqliteMetadataStore
from lightningstor.metrics import MetricsResource, S3Metrics, StoreGauges, StoreTotals, count_store
from lightningstor.s3.addressing import Target
from lightningstor.s3.app import S3Call
from lightningstor.s3.summary import CLIENT_CLOSED, RequestSummary, redacted_uri, summarize


def _summary(**overrides: Any) -> RequestSummary:
    values: dict[str, Any] = dict(
        request_id="R", principal="AK", operation="PutObject", method="PUT", uri="/b/k",
        bucket="b", key="k", status=200, completed=True, error_code=None, bytes_in=5,
        bytes_out=0, duration=0.25, remote="127.0.0.1", object_size=5,
    )  # fmt: skip
    values.update(overrides)
    return RequestSummary(**values)


def _value(metrics: S3Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_request_finished_counts_each_request_once_by_operation_and_status() -> None:
    """Every summary adds one to requests_total{operation,status} and one duration
    observation; errors count by code and status; object sizes only when known."""
    metrics = S3Metrics()
    metrics.request_finished(_summary())
    metrics.request_finished(_summary(operation="GetObject", status=404, error_code="NoSuchKey",
                                      object_size=None))
    metrics.request_finished(_summary(operation="GetObject", status=304, error_code="NotModified",
                                      object_size=None))
    assert _value(metrics, "lightningstor_requests_total", operation="PutObject", status="200") == 1
    assert _value(metrics, "lightningstor_requests_total", operation="GetObject", status="404") == 1
    assert _value(metrics, "lightningstor_s3_errors_total", code="NoSuchKey", status="404") == 1
    # 304 Not Modified is not an error even though it is sent like one.
    assert _value(metrics, "lightningstor_s3_errors_total", code="NotModified", status="304") == 0
    assert _value(metrics, "lightningstor_request_duration_seconds_count", operation="GetObject") == 2
    assert _value(metrics, "lightningstor_request_duration_seconds_sum", operation="PutObject") == 0.25
    assert _value(metrics, "lightningstor_object_size_bytes_count", operation="PutObject") == 1
    assert _value(metrics, "lightningstor_object_size_bytes_count", operation="GetObject") == 0


def test_metrics_use_a_private_registry() -> None:
    """Two S3Metrics never share samples, and nothing lands in prometheus-client's global registry."""
    a, b = S3Metrics(), S3Metrics()
    a.request_finished(_summary())
    assert _value(b, "lightningstor_requests_total", operation="PutObject", status="200") == 0
    assert REGISTRY.get_sample_value("lightningstor_requests_total",
                                     {"operation": "PutObject", "status": "200"}) is None


def test_resource_renders_text_format_without_created_series() -> None:
    """GET /metrics renders the given registry in the Prometheus text format, with no
    *_created families; OpenMetrics when the scraper asks for it."""
    metrics = S3Metrics(CollectorRegistry())
    metrics.request_finished(_summary())
    resource = MetricsResource(metrics.registry)
    request = DummyRequest([b""])
    body = resource.render_GET(request).decode()
    assert request.responseHeaders.getRawHeaders(b"content-type")[0].startswith(b"text/plain")
    names = {f.name for f in text_string_to_metric_families(body)}
    assert "lightningstor_requests" in names
    assert not [n for n in names if n.endswith("_created")]
    request = DummyRequest([b""])
    request.requestHeaders.setRawHeaders(b"accept", [b"application/openmetrics-text; version=1.0.0"])
    body = resource.render_GET(request).decode()
    assert request.responseHeaders.getRawHeaders(b"content-type")[0].startswith(b"application/openmetrics-text")
    assert body.rstrip().endswith("# EOF")


@pytest.fixture
def cpu_pool() -> Any:
    pool = ThreadPool(1, 2, "test-metrics")
    pool.start()
    yield pool
    pool.stop()


def _record(key: str, size: int, *, marker: bool = False) -> bytes:
    return records.encode_object(ObjectRecord(key=key, size=size, etag="e", created_at=0, delete_marker=marker))


@pytest_twisted.inlineCallbacks
def test_count_store_pages_through_objects_versions_and_uploads(tmp_path: Any, cpu_pool: Any) -> Any:
    """count_store counts current objects (not delete markers), bytes of current and
    noncurrent versions and upload keys, across scan pages smaller than the data."""
    store = SqliteMetadataStore(str(tmp_path / "meta.db"), reactor)
    try:
        ops = [Put(keys.object_key("b1", f"k{i}"), _record(f"k{i}", 10 * i)) for i in range(5)]
        ops.append(Put(keys.object_key("b2", "gone"), _record("gone", 0, marker=True)))
        ops.append(Put(keys.version_key("b2", "gone", 1), _record("gone", 7)))
        ops += [Put(keys.upload_key("b1", f"u{i}", f"id{i}"), b"{}") for i in range(3)]
        ops.append(Put(keys.bucket_key("org", None, "b1"), b"{}"))  # other key spaces are ignored
        result = yield store.txn([], ops)
        assert result.succeeded
        totals = yield count_store(store, reactor, cpu_pool, page=2)
        assert totals == StoreTotals(objects=5, bytes=10 * (0 + 1 + 2 + 3 + 4) + 7, uploads=3)
    finally:
        yield store.close()


class _FakeStore:
    """Object scans return ``rows`` (or fail while ``broken``); other key spaces are empty."""

    def __init__(self) -> None:
        self.rows: list[KeyValue] = []
        self.broken = False

    def scan(self, start: bytes, end: bytes, limit: int = 0) -> Any:
        if self.broken:
            return fail(RuntimeError("store down"))
        if start.startswith(keys.OBJECTS):
            return succeed(list(self.rows))
        return succeed([])


class _Reactor(Clock):
    """A Clock that also runs ``callFromThread`` work at once (what
    ``deferToThreadPool`` needs to deliver a result)."""

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


class _InlinePool:
    """Stands in for a thread pool: deferToThreadPool runs the work at once."""

    def callInThreadWithCallback(self, onResult: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        onResult(True, f(*args, **kwargs))


def test_store_gauges_refresh_at_start_and_every_interval_keep_values_on_failure() -> None:
    """The gauges are set at start, recounted only once the interval has passed, and keep
    their last values when a count fails."""
    clock, store, metrics = _Reactor(), _FakeStore(), S3Metrics()
    store.rows = [KeyValue(keys.object_key("b", "a"), _record("a", 3), 1)]
    gauges = StoreGauges(metrics, store, clock, _InlinePool(), interval=60)
    gauges.startService()
    assert _value(metrics, "lightningstor_objects_total") == 1
    assert _value(metrics, "lightningstor_storage_bytes") == 3
    store.rows.append(KeyValue(keys.object_key("b", "b"), _record("b", 4), 2))
    clock.advance(59)
    assert _value(metrics, "lightningstor_objects_total") == 1
    clock.advance(1)
    assert _value(metrics, "lightningstor_objects_total") == 2
    assert _value(metrics, "lightningstor_storage_bytes") == 7
    store.broken = True
    clock.advance(60)
    assert _value(metrics, "lightningstor_objects_total") == 2
    stopped = gauges.stopService()
    assert stopped.called
    clock.advance(600)
    assert not clock.getDelayedCalls()


def test_summary_redacts_query_values() -> None:
    """The logged URI keeps query parameter names only."""
    assert redacted_uri(b"/b/k?X-Amz-Signature=abc&X-Amz-Credential=AK%2Fx&uploads") == (
        "/b/k?X-Amz-Signature&X-Amz-Credential&uploads"
    )
    assert redacted_uri(b"/b/k") == "/b/k"


def _request(op: str, headers: dict[str, str], *, code: int = 200, started_writing: bool = False) -> Any:
    request = DummyRequest([b""])
    request.code = code
    request.startedWriting = started_writing
    request.sentLength = 0
    target = Target("b", "k", "/b/k", "partNumber=1&uploadId=SECRET")
    request.s3call = S3Call(request, op, target, headers, {}, "RID", "PUT", started=0.0)
    return request


def test_summarize_reports_status_size_and_client_closed() -> None:
    """A finished upload reports its status and the decoded body size as the object size;
    a request cut off before any response is status 499, not completed, without a size."""
    request = _request("PutObject", {"x-amz-decoded-content-length": "123", "content-length": "200"})
    done = summarize(request, True, bytes_in=200, now=2.0)
    assert (done.status, done.completed, done.object_size, done.bytes_in, done.duration) == (200, True, 123, 200, 2.0)
    assert done.uri == "/b/k?partNumber&uploadId" and done.principal == "-"
    cut = summarize(_request("PutObject", {"content-length": "200"}), False, bytes_in=50, now=1.0)
    assert (cut.status, cut.completed, cut.object_size) == (CLIENT_CLOSED, False, None)
    failed = summarize(_request("PutObject", {"content-length": "9"}, code=403), True, bytes_in=9, now=1.0)
    assert failed.object_size is None

"""Metrics in-process: request accounting, store gauges, exposition, request summaries."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import fail, inlineCallbacks, succeed
from twisted.internet.task import Clock
from twisted.python.threadpool import ThreadPool
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from lightningstor.core import keys, records
from lightningstor.core.objects import PutAttrs
from lightningstor.core.quotas import QuotaManager, Usage, encode_usage
from lightningstor.core.service import Core
from lightningstor.core.types import Bucket, ObjectRecord, Principal
from lightningstor.interfaces.metadata import IPointReadCache, KeyValue, Put, prefix_end
from lightningstor.metadata.sqlite import SqliteMetadataStore
from lightningstor.metrics import (
    COPY_SECONDS,
    MetricsResource,
    S3Metrics,
    StoreGauges,
    StoreTotals,
    count_store,
)
from lightningstor.s3.addressing import Target
from lightningstor.s3.app import S3Call
from lightningstor.s3.summary import CLIENT_CLOSED, RequestSummary, redacted_uri, summarize
from lightningstor.storage.retired import BATCH_SECONDS, RetiredChunks
from lightningstor.threads import CountingThreadPool
from tests.unit.core_helpers import put_object, put_part


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


def _usage_prefix(bucket_id: str, project: str | None = None) -> bytes:
    return keys.usage_bucket_prefix("org", project, bucket_id)


def _delta(bucket_id: str, n: int) -> bytes:
    return keys.usage_delta_key(_usage_prefix(bucket_id), f"{n:04d}")


@pytest_twisted.inlineCallbacks
def test_count_store_sums_usage_rows_and_counts_uploads_across_pages(tmp_path: Any, cpu_pool: Any) -> Any:
    """count_store sums every bucket's base and delta rows (negative deltas included) and
    counts upload keys, across scan pages smaller than the data: a bucket with more rows
    than a page, buckets split by a page boundary, a project bucket.  Object and version
    records are not what it counts: an object record without a usage row adds nothing."""
    store = SqliteMetadataStore(str(tmp_path / "meta.db"), reactor)
    try:
        ops = [Put(keys.usage_base_key(_usage_prefix("b1")), encode_usage(Usage(100, 4, 9)))]
        ops += [Put(_delta("b1", i), encode_usage(Usage(10, 1))) for i in range(4)]  # 5 rows > page
        ops.append(Put(_delta("b1", 9), encode_usage(Usage(-30, -2))))
        ops.append(Put(keys.usage_base_key(_usage_prefix("b2")), encode_usage(Usage(7, 1))))
        ops.append(Put(keys.usage_base_key(_usage_prefix("b3", "proj")), encode_usage(Usage(1000, 3))))
        ops.append(Put(keys.usage_delta_key(_usage_prefix("b3", "proj"), "x"), encode_usage(Usage(1, 1))))
        ops += [Put(keys.upload_key("b1", f"u{i}", f"id{i}"), b"{}") for i in range(3)]
        ops.append(Put(keys.object_key("b9", "untracked"), _record("untracked", 55)))
        ops.append(Put(keys.bucket_key("org", None, "b1"), b"{}"))  # other key spaces are ignored
        result = yield store.txn([], ops)
        assert result.succeeded
        for page in (2, 3, 1000):
            totals = yield count_store(store, reactor, cpu_pool, page=page)
            assert totals == StoreTotals(objects=4 + 4 - 2 + 1 + 3 + 1, bytes=100 + 40 - 30 + 7 + 1001,
                                         uploads=3), page  # fmt: skip
    finally:
        yield store.close()


class _FoldingStore:
    """Folds one bucket's usage right after the first scan of the usage rows
    returns: a fold landing between two pages of a count."""

    def __init__(self, store: Any, fold: Any) -> None:
        self.store = store
        self.fold = fold
        self.folded = False

    @inlineCallbacks
    def scan(self, start: bytes, end: bytes, limit: int = 0) -> Any:
        rows = yield self.store.scan(start, end, limit)
        if start.startswith(keys.USAGE) and not self.folded:
            self.folded = True
            yield self.fold()
        return rows


@pytest_twisted.inlineCallbacks
def test_count_store_reads_each_bucket_in_one_scan(tmp_path: Any, cpu_pool: Any) -> Any:
    """A fold between two pages does not hide deltas: a page's first rows of a bucket
    (its base) are never summed without the rest of that bucket's rows from the same
    scan.  With pages of 3, b1's two rows and b2's base fill the first page; b2 is then
    folded (deltas moved into the base, which sorts before them) before the next page."""
    store = SqliteMetadataStore(str(tmp_path / "meta.db"), reactor)
    try:
        ops = [Put(keys.usage_base_key(_usage_prefix("b1")), encode_usage(Usage(1, 1))),
               Put(_delta("b1", 0), encode_usage(Usage(2, 1))),
               Put(keys.usage_base_key(_usage_prefix("b2")), encode_usage(Usage(10, 1))),
               Put(_delta("b2", 0), encode_usage(Usage(20, 1))),
               Put(_delta("b2", 1), encode_usage(Usage(40, 1)))]  # fmt: skip
        result = yield store.txn([], ops)
        assert result.succeeded
        quotas = QuotaManager(store, lambda: 0.0)
        folding = _FoldingStore(store, lambda: quotas.fold_bucket(_usage_prefix("b2")))
        totals = yield count_store(folding, reactor, cpu_pool, page=3)
        assert folding.folded
        rows = yield store.scan(_usage_prefix("b2"), prefix_end(_usage_prefix("b2")))
        assert [kv.key for kv in rows] == [keys.usage_base_key(_usage_prefix("b2"))]  # it did fold
        assert totals == StoreTotals(objects=5, bytes=73, uploads=0)
    finally:
        yield store.close()


_FORBIDDEN = (keys.OBJECTS, keys.VERSIONS, keys.PARTS, keys.MANIFESTS)


class _NoRecordReads:
    """A metadata store that fails the test if an object, version, part or manifest
    key is read; it records the scans it is asked for."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.scans: list[bytes] = []

    def _check(self, start: bytes, end: bytes) -> None:
        for prefix in _FORBIDDEN:
            if start < prefix_end(prefix) and (not end or end > prefix):
                pytest.fail(f"scan of [{start!r}, {end!r}) reads {prefix!r} records")

    def get(self, key: bytes) -> Any:
        self._check(key, key + b"\x00")
        return self.store.get(key)

    def scan(self, start: bytes, end: bytes, limit: int = 0) -> Any:
        self._check(start, end)
        self.scans.append(start)
        return self.store.scan(start, end, limit)


ALICE = Principal("alice", "org-a")
BOB = Principal("bob", "org-a", project_id="p1")


@inlineCallbacks
def _stored_versions(core: Core, bucket: Bucket) -> Any:
    """(versions, bytes) from a listing of every version (the ground truth)."""
    count = size = 0
    marker: dict[str, Any] = {}
    while True:
        page = yield core.list_object_versions(bucket, max_keys=1000, **marker)
        for e in page.entries:
            if not e.delete_marker:
                count += 1
                size += e.size
        if not page.is_truncated:
            return count, size
        marker = {"key_marker": page.next_key_marker, "version_id_marker": page.next_version_id_marker}


@pytest_twisted.inlineCallbacks
def test_count_store_follows_writes_without_reading_object_records(make_core: Any, pools: Any) -> Any:
    """On the real core: puts, an unversioned overwrite, a versioned overwrite (two
    versions, both counted), a delete marker (counts nothing), deletes of an object and
    of a version by id, and multipart uploads in progress (counted as uploads; their
    parts are not storage bytes).  The totals equal a listing of every stored version,
    before and after folding, and no object, version, part or manifest key is read."""
    core = make_core(fsync=False, chunk_size=4096, piece_size=1024, inline_threshold=512)
    cpu = pools[1]
    plain = yield core.buckets.create(ALICE, "plain")
    yield put_object(core, plain, "a", b"x" * 100)
    yield put_object(core, plain, "b", b"x" * 5000)  # chunked, not inline
    yield put_object(core, plain, "a", b"x" * 40)  # replaces a
    yield put_object(core, plain, "c", b"x" * 3)
    yield core.objects.delete(plain, "c")
    versioned = yield core.buckets.create(BOB, "versioned")
    versioned = yield core.set_bucket_versioning(versioned, "Enabled")
    yield put_object(core, versioned, "k", b"x" * 100)
    yield put_object(core, versioned, "k", b"x" * 50)  # a second version of k
    marker = yield core.objects.delete(versioned, "k")
    assert marker.delete_marker
    gone = yield put_object(core, versioned, "j", b"x" * 7)
    yield core.objects.delete(versioned, "j", gone.version_id)
    upload = yield core.multipart.create(plain, "big", PutAttrs(), initiator=ALICE)
    yield put_part(core, upload, 1, b"p" * 2000)
    yield core.multipart.create(versioned, "other", PutAttrs(), initiator=BOB)

    expected = StoreTotals(objects=2 + 2, bytes=40 + 5000 + 100 + 50, uploads=2)
    in_plain = yield _stored_versions(core, plain)
    in_versioned = yield _stored_versions(core, versioned)
    assert (in_plain, in_versioned) == ((2, 5040), (2, 150))
    assert (in_plain[0] + in_versioned[0], in_plain[1] + in_versioned[1]) == (expected.objects, expected.bytes)
    guarded = _NoRecordReads(core.store)
    for page in (1, 1000):
        totals = yield count_store(guarded, reactor, cpu, page=page)
        assert totals == expected, page
    assert any(start.startswith(keys.USAGE) for start in guarded.scans)
    yield core.quotas.fold_all()
    assert (yield count_store(guarded, reactor, cpu)) == expected


class _FakeStore:
    """Usage scans return ``rows`` (or fail while ``broken``); other key spaces are empty."""

    def __init__(self) -> None:
        self.rows: list[KeyValue] = []
        self.broken = False

    def scan(self, start: bytes, end: bytes, limit: int = 0) -> Any:
        if self.broken:
            return fail(RuntimeError("store down"))
        if start.startswith(keys.USAGE):
            return succeed([kv for kv in self.rows if start <= kv.key < end][: limit or None])
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
    store.rows = [KeyValue(keys.usage_base_key(_usage_prefix("b")), encode_usage(Usage(3, 1)), 1)]
    gauges = StoreGauges(metrics, store, clock, _InlinePool(), interval=60)
    gauges.startService()
    assert _value(metrics, "lightningstor_objects_total") == 1
    assert _value(metrics, "lightningstor_storage_bytes") == 3
    store.rows.append(KeyValue(_delta("b", 0), encode_usage(Usage(4, 1)), 2))
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


def test_freed_chunk_queue_is_copied_into_its_metrics() -> None:
    """The delayed-free queue's numbers are copied every COPY_SECONDS: nothing is
    registered before a chunk was freed; then the chunks waiting and those deleted early
    because the queue was full (a counter that only grows), and 0 waiting once the delay
    has passed."""
    clock, metrics, deleted = Clock(), S3Metrics(), []
    retired = RetiredChunks(clock, lambda ids: succeed(deleted.extend(ids)), 30.0, max_pending=3)
    service = metrics.watch_retired(retired, clock)
    service.startService()
    waiting = "lightningstor_storage_freed_chunks_waiting"
    early = "lightningstor_storage_freed_chunks_deleted_early_total"
    assert metrics.registry.get_sample_value(waiting) is None  # not registered
    retired.retire(["a", "b"])
    assert _value(metrics, waiting) == 0  # until the next copy
    clock.advance(COPY_SECONDS)
    assert (_value(metrics, waiting), _value(metrics, early)) == (2, 0)
    retired.retire(["c", "d", "e", "f"])  # two more than max_pending: the oldest go early
    clock.advance(COPY_SECONDS)
    assert (_value(metrics, waiting), _value(metrics, early)) == (3, 3)
    assert deleted == ["a", "b", "c"]
    clock.advance(30.0 + BATCH_SECONDS)  # both batches due, then the next copy
    clock.advance(COPY_SECONDS)
    assert sorted(deleted) == ["a", "b", "c", "d", "e", "f"]
    assert (_value(metrics, waiting), _value(metrics, early)) == (0, 3)
    service.stopService()


def test_thread_pools_busy_and_queued_are_sampled() -> None:
    """Each pool's busy threads, queued jobs, size and jobs are sampled every
    COPY_SECONDS once a pool ran a job: a job holding the only thread of a
    pool shows as busy with the jobs behind it queued, and both fall back to
    0; jobs only grow."""
    import threading

    clock, metrics = Clock(), S3Metrics()
    io = CountingThreadPool(minthreads=1, maxthreads=1, name="t-io")
    cpu = CountingThreadPool(minthreads=1, maxthreads=2, name="t-cpu")
    service = metrics.watch_thread_pools({"io": io, "cpu": cpu}, clock)
    service.startService()
    busy, queued, jobs = (f"lightningstor_thread_pool_{n}" for n in ("busy_threads", "queued_jobs", "jobs_total"))
    io.start()
    cpu.start()
    clock.advance(COPY_SECONDS)
    assert metrics.registry.get_sample_value(busy, {"pool": "io"}) is None  # no job yet: not registered
    release, running = threading.Event(), threading.Event()

    def hold() -> None:
        running.set()
        release.wait(30)

    try:
        io.callInThread(hold)
        assert running.wait(30)
        for _ in range(3):
            io.callInThread(lambda: None)
        clock.advance(COPY_SECONDS)
        assert (_value(metrics, busy, pool="io"), _value(metrics, queued, pool="io")) == (1, 3)
        assert (_value(metrics, busy, pool="cpu"), _value(metrics, queued, pool="cpu")) == (0, 0)
        assert (_value(metrics, jobs, pool="io"), _value(metrics, jobs, pool="cpu")) == (4, 0)
        assert _value(metrics, "lightningstor_thread_pool_size", pool="cpu") == 2
        release.set()
        for _ in range(300):
            if not io.working and not io.q.qsize():
                break
            threading.Event().wait(0.01)
        cpu.callInThread(lambda: None)
        clock.advance(COPY_SECONDS)
        assert (_value(metrics, busy, pool="io"), _value(metrics, queued, pool="io")) == (0, 0)
        assert (_value(metrics, jobs, pool="io"), _value(metrics, jobs, pool="cpu")) == (4, 1)
    finally:
        release.set()
        service.stopService()
        io.stop()
        cpu.stop()


@pytest_twisted.ensureDeferred
async def test_metadata_queues_are_sampled(tmp_path: Any) -> None:
    """The SQLite store's writer queue is sampled every COPY_SECONDS once the
    store has committed: transactions waiting while another process holds the
    writer lock show, and the gauge falls to 0 once they are committed."""
    import fcntl
    import os

    from twisted.internet.task import deferLater

    path = str(tmp_path / "metadata.db")
    store = SqliteMetadataStore(path, reactor)
    clock, metrics = Clock(), S3Metrics()
    service = metrics.watch_metadata_queues(store, clock)
    assert service is not None
    service.startService()
    waiting = "lightningstor_metadata_queued_transactions"
    lock = os.open(os.path.realpath(path) + "-writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        clock.advance(COPY_SECONDS)
        assert metrics.registry.get_sample_value(waiting) is None  # nothing committed yet
        await store.txn([], [Put(b"lightningstor/first", b"1")])
        fcntl.flock(lock, fcntl.LOCK_EX)  # as another worker's writer committing
        pending = [store.txn([], [Put(f"lightningstor/k{i}".encode(), b"v")]) for i in range(5)]
        for _ in range(500):  # the writer takes the first, then waits for the lock
            if store.queue_depths()["transactions"] == 4:
                break
            await deferLater(reactor, 0.01, lambda: None)
        clock.advance(COPY_SECONDS)
        assert _value(metrics, waiting) == 4
        assert _value(metrics, "lightningstor_metadata_queued_read_batches") == 0
        fcntl.flock(lock, fcntl.LOCK_UN)
        for d in pending:
            await d
        clock.advance(COPY_SECONDS)
        assert _value(metrics, waiting) == 0
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
        service.stopService()
        await store.close()


def test_read_cache_reads_are_copied_into_their_metric_by_result() -> None:
    """The read cache's counts are copied every COPY_SECONDS, one ``result``
    each: ``unchanged`` (a read that only a write of another key sharing
    the entry's counter slot made) apart from ``miss``; a plugin's cache
    without an ``unchanged`` count shows 0 there."""

    @implementer(IPointReadCache)
    class Store:
        class cache:
            hits, misses, unchanged, bypassed, bytes = 7, 3, 2, 1, 100

    @implementer(IPointReadCache)
    class PluginStore:
        class cache:
            hits, misses, bypassed, bytes = 5, 1, 0, 10

    reads = "lightningstor_metadata_cache_reads_total"
    for store, expected in ((Store(), (7, 3, 2, 1)), (PluginStore(), (5, 1, 0, 0))):
        clock, metrics = Clock(), S3Metrics()
        service = metrics.watch_read_cache(store, clock)
        assert service is not None
        service.startService()
        clock.advance(COPY_SECONDS)
        results = ("hit", "miss", "unchanged", "bypass")
        assert tuple(_value(metrics, reads, result=r) for r in results) == expected
        service.stopService()


def test_read_cache_misses_are_copied_before_any_hit() -> None:
    """A worker whose cache has only missed so far (its first requests)
    shows those misses at the next copy: they were held back until a first
    hit, and then surfaced in a later window (a multi-worker test saw four
    misses appear during reads that all hit).  A cache not read yet shows
    nothing."""

    @implementer(IPointReadCache)
    class Store:
        class cache:
            hits, misses, unchanged, bypassed, bytes = 0, 0, 0, 0, 0

    reads = "lightningstor_metadata_cache_reads_total"
    clock, metrics, store = Clock(), S3Metrics(), Store()
    service = metrics.watch_read_cache(store, clock)
    assert service is not None
    service.startService()
    clock.advance(COPY_SECONDS)
    assert reads not in {m.name for m in metrics.registry.collect()} | {
        s.name for m in metrics.registry.collect() for s in m.samples
    }
    store.cache.misses = 4
    clock.advance(COPY_SECONDS)
    assert _value(metrics, reads, result="miss") == 4
    service.stopService()


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
    """A finished upload reports its status and the size its handler stored as the
    object size (not a header's: a plain chunked body states none); a request cut
    off before any response is status 499, not completed, without a size."""
    request = _request("PutObject", {"x-amz-decoded-content-length": "123", "content-length": "200"})
    request.s3call.object_size = 123
    done = summarize(request, True, bytes_in=200, now=2.0)
    assert (done.status, done.completed, done.object_size, done.bytes_in, done.duration) == (200, True, 123, 200, 2.0)
    assert done.uri == "/b/k?partNumber&uploadId" and done.principal == "-"
    cut = summarize(_request("PutObject", {"content-length": "200"}), False, bytes_in=50, now=1.0)
    assert (cut.status, cut.completed, cut.object_size) == (CLIENT_CLOSED, False, None)
    failed = _request("PutObject", {"content-length": "9"}, code=403)
    failed.s3call.object_size = 9
    assert summarize(failed, True, bytes_in=9, now=1.0).object_size is None


def test_summarize_reports_a_response_the_connection_layer_wrote() -> None:
    """A body that stopped coming is answered 400 RequestTimeout by the
    connection layer, below the request: the summary says so (it said 499,
    "client closed", and counted no error)."""
    request = _request("PutObject", {"content-length": "200"})
    request.answered_early = (400, "RequestTimeout")
    cut = summarize(request, False, bytes_in=50, now=1.0)
    assert (cut.status, cut.completed, cut.error_code, cut.object_size) == (400, False, "RequestTimeout", None)

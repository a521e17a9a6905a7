"""Prometheus metrics (SPEC §10.2) and where they are served.

The names and types are the spec's:

======================================================  =========  ================
name                                                    type       labels
======================================================  =========  ================
lightningstor_requests_total                            Counter    operation, status
lightningstor_request_duration_seconds                  Histogram  operation
lightningstor_object_size_bytes                         Histogram  operation
lightningstor_objects_total                             Gauge
lightningstor_storage_bytes                             Gauge
lightningstor_multipart_uploads_active                  Gauge
lightningstor_s3_errors_total                           Counter    code, status
lightningstor_scrub_errors_total                        Counter    kind
lightningstor_lifecycle_actions_total                   Counter    action
lightningstor_grpc_requests_total                       Counter    method, code
lightningstor_grpc_request_duration_seconds             Histogram  method
lightningstor_storage_read_repairs_total                Counter    node
lightningstor_storage_node_suspect                      Gauge      node
lightningstor_metadata_cache_reads_total                Counter    result
lightningstor_metadata_cache_bytes                      Gauge
lightningstor_storage_freed_chunks_waiting              Gauge
lightningstor_storage_freed_chunks_deleted_early_total  Counter
======================================================  =========  ================

All but the first seven are not in the spec's list, which counts S3
requests: each is registered only once there is something to count (a scrub
report, a lifecycle run, a gRPC call, a ``distributed`` storage backend, a
cache hit, a freed chunk waiting), so a server without them exposes exactly
the spec's families.  The read-repair and node-suspect ones
(:meth:`S3Metrics.watch_storage`) exist for the ``distributed`` backend
only, one series per configured node from the start.

Every metric lives in a private ``CollectorRegistry`` owned by
:class:`S3Metrics` (never the process-global one), and every consumer takes
the registry as a parameter: the request counters are fed by one S3 finish
hook (:meth:`S3Metrics.request_finished`), the gauges by
:class:`StoreGauges`, and exposition (:class:`MetricsResource`) renders
whatever registry it is given.  Running several worker processes later
needs only a different registry for exposition (prometheus-client's
``MultiProcessCollector``, :func:`multiprocess_registry`) and a
multiprocess mode on the gauges: that is what ``[server] workers`` does.

The three gauges describe the whole store, so they are not computed per
scrape: :class:`StoreGauges` refreshes them every ``interval`` seconds.
Objects and bytes come from the per-bucket usage rows that
:mod:`lightningstor.core.quotas` keeps in every write's transaction (a base
row plus pending deltas per bucket), so a refresh costs O(buckets), not
O(objects): scanning and decoding every object record once a minute took
~15 s of CPU per minute on a million objects and slowed requests while it
ran (docs/performance.md).  Upload records are few, so they are still
counted row by row.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from twisted.application.internet import TimerService
from twisted.application.service import Service
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web import resource, server

from lightningstor.core import keys, scans
from lightningstor.core.quotas import ZERO, Usage, decode_usage, usage_row_bucket
from lightningstor.interfaces.metadata import IQueueDepths, has_point_read_cache, prefix_end
from lightningstor.s3.summary import RequestSummary
from lightningstor.tcp import listen_now
from lightningstor.threads import CountingThreadPool

__all__ = [
    "COPY_SECONDS",
    "DURATION_BUCKETS",
    "SIZE_BUCKETS",
    "MetricsResource",
    "MetricsService",
    "S3Metrics",
    "StoreGauges",
    "StoreTotals",
    "attach_metrics",
    "count_store",
    "multiprocess_registry",
]

log = Logger()

# Seconds: small-object calls take milliseconds, multi-GiB uploads minutes.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# Bytes: 1 KiB .. 5 GiB (the largest single PUT), roughly x4 per step.
SIZE_BUCKETS = tuple(float(1 << n) for n in range(10, 33, 2)) + (5.0 * (1 << 30),)
# With several worker processes only the primary sets the store gauges (the
# others hold zeros stamped at time 0): the most recent value is the truth.
# Ignored in a single process.
_GAUGE_MODE: Final = "mostrecent"
# The operation label of a connection refused above limits.max_connections.
TOO_MANY_CONNECTIONS: Final = "TooManyConnections"
# Seconds between copies of a worker's plain counters (read cache, freed
# chunks) into its metrics: keeps metric updates (a lock, and a file write
# in multiprocess mode) off the request path.
COPY_SECONDS: Final = 5.0


def _copier(
    reactor: Any,
    register: Callable[[], dict[str, Any]],
    sample: Callable[[bool], tuple[dict[str, int], dict[str, int]] | None],
) -> Service:
    """A service that copies numbers a worker keeps in plain integers (a
    metric update per event would cost more than the event) into metrics
    every :data:`COPY_SECONDS`.  ``sample(registered)`` gives running totals
    for counters and current values for gauges, by name, or None while there
    is nothing to show yet; ``register()`` makes the metrics (by the same
    names) at the first copy that has something, so a server that never
    had such an event exposes only the spec's families."""
    metrics: dict[str, Any] = {}
    seen: dict[str, int] = {}

    def copy() -> None:
        found = sample(bool(metrics))
        if found is None:
            return
        if not metrics:
            metrics.update(register())
        totals, levels = found
        for name, total in totals.items():
            if total > seen.get(name, 0):
                metrics[name].inc(total - seen.get(name, 0))
                seen[name] = total
        for name, value in levels.items():
            metrics[name].set(value)

    service = TimerService(COPY_SECONDS, copy)
    service.clock = reactor
    return service


class S3Metrics:
    """The server's metrics, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "lightningstor_requests_total",
            "S3 requests by operation and HTTP status.",
            ["operation", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "lightningstor_request_duration_seconds",
            "Time from the request's headers to the end of its response.",
            ["operation"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.object_size = Histogram(
            "lightningstor_object_size_bytes",
            "Sizes of objects (and parts) written, by operation.",
            ["operation"],
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.objects = Gauge(
            "lightningstor_objects_total",
            "Stored object versions, current and noncurrent (delete markers excluded).",
            registry=r,
            multiprocess_mode=_GAUGE_MODE,
        )
        self.storage_bytes = Gauge(
            "lightningstor_storage_bytes",
            "Bytes of stored object versions, current and noncurrent (parts of unfinished "
            "multipart uploads excluded).",
            registry=r,
            multiprocess_mode=_GAUGE_MODE,
        )
        self.multipart_uploads_active = Gauge(
            "lightningstor_multipart_uploads_active",
            "Multipart uploads initiated and not yet completed or aborted.",
            registry=r,
            multiprocess_mode=_GAUGE_MODE,
        )
        self.s3_errors = Counter(
            "lightningstor_s3_errors_total",
            "S3 error responses by error code and HTTP status.",
            ["code", "status"],
            registry=r,
        )
        # Registered by the first scrub report, so a server without the
        # background scrub exposes exactly the spec's families.
        self.scrub_errors: Counter | None = None
        # Registered by the first connection a limit refuses or closes (the same reason).
        self.connection_limits: Counter | None = None
        # Registered by the first lifecycle run (the same reason).
        self.lifecycle_actions: Counter | None = None
        # Registered by the first lease change (servers on a shared store only).
        self.job_leases: Gauge | None = None
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        # The gRPC API's calls, registered at the first one (grpc_finished
        # runs on gRPC's handler threads; prometheus_client is thread-safe).
        self._grpc_lock = threading.Lock()
        self.grpc_requests: Counter | None = None
        self.grpc_duration: Histogram | None = None
        # The distributed backend's, registered by watch_storage.
        self.read_repairs: Counter | None = None
        self.node_suspect: Gauge | None = None

    def grpc_finished(self, method: str, code: str, seconds: float) -> None:
        """Count and time one gRPC call by method and status code name."""
        if self.grpc_requests is None or self.grpc_duration is None:
            with self._grpc_lock:
                if self.grpc_requests is None:
                    self.grpc_duration = Histogram(
                        "lightningstor_grpc_request_duration_seconds",
                        "Time from a gRPC call's start to its end, by method.",
                        ["method"],
                        buckets=DURATION_BUCKETS,
                        registry=self.registry,
                    )
                    self.grpc_requests = Counter(
                        "lightningstor_grpc_requests_total",
                        "gRPC calls by method and status code.",
                        ["method", "code"],
                        registry=self.registry,
                    )
        assert self.grpc_requests is not None and self.grpc_duration is not None
        self.grpc_requests.labels(method, code).inc()
        self.grpc_duration.labels(method).observe(seconds)

    def request_finished(self, summary: RequestSummary) -> None:
        """The S3 finish hook: count and time one request, exactly once."""
        operation = summary.operation
        status = str(summary.status)
        # ``labels()`` validates and locks on every call; the label sets are
        # few (operations x statuses), so their children are kept.
        children = self._children.get((operation, status))
        if children is None:
            children = (self.requests.labels(operation, status), self.request_duration.labels(operation))
            self._children[(operation, status)] = children
        children[0].inc()
        children[1].observe(summary.duration)
        if summary.error_code is not None and summary.status >= 400:
            self.s3_errors.labels(summary.error_code, status).inc()
        if summary.object_size is not None:
            self.object_written(operation, summary.object_size)

    def connection_limited(self, limit: str) -> None:
        """A connection limit (s3/limits.py) refused or closed a connection.
        A refusal is also a request answered 503 SlowDown (its request is
        never read: operation ``TooManyConnections``), so that the 5xx
        ratio of the requests shows an overloaded server."""
        if self.connection_limits is None:
            self.connection_limits = Counter(
                "lightningstor_connection_limit_closes_total",
                "S3 connections refused or closed by a connection limit, by limit.",
                ["limit"],
                registry=self.registry,
            )
        self.connection_limits.labels(limit).inc()
        if limit == "max_connections":
            self.requests.labels(TOO_MANY_CONNECTIONS, "503").inc()
            self.request_duration.labels(TOO_MANY_CONNECTIONS).observe(0.0)
            self.s3_errors.labels("SlowDown", "503").inc()

    def object_written(self, operation: str, size: int) -> None:
        """One object (or part) of ``size`` bytes stored by ``operation``
        (an S3 operation or a gRPC method of the same name)."""
        self.object_size.labels(operation).observe(size)

    def scrub_finished(self, report: Any) -> None:
        """The ScrubService hook: count each problem of a ``ScrubReport``
        (``lightningstor_scrub_errors_total{kind}``; kinds are ``missing``,
        ``corrupt`` and ``index``, each exposed from the first report on, and
        ``replica`` for each damaged replica of a replicated backend, found
        and rewritten from a good copy)."""
        if self.scrub_errors is None:
            self.scrub_errors = Counter(
                "lightningstor_scrub_errors_total",
                "Problems found by the background scrub: missing or corrupt chunks, "
                "chunk-index entries that disagree with the records (index), and damaged "
                "replicas of a replicated backend (replica; rewritten from a good copy).",
                ["kind"],
                registry=self.registry,
            )
            for kind in ("missing", "corrupt", "index", "replica"):
                self.scrub_errors.labels(kind)
        for problem in report.problems:
            self.scrub_errors.labels(problem.kind).inc()
        damaged = sum(len(r.damaged) for r in getattr(report, "replica_repairs", ()))
        if damaged:
            self.scrub_errors.labels("replica").inc(damaged)

    def lifecycle_finished(self, counts: Any) -> None:
        """The LifecycleService hook: count what each run did
        (``lightningstor_lifecycle_actions_total{action}``: ``expired``,
        ``noncurrent``, ``markers``, ``aborted``, and ``skipped`` / ``failed``
        for actions that lost a race or failed), every label exposed from the
        first run on."""
        if self.lifecycle_actions is None:
            self.lifecycle_actions = Counter(
                "lightningstor_lifecycle_actions_total",
                "Lifecycle rule actions: current versions expired, noncurrent versions and "
                "expired delete markers deleted, multipart uploads aborted; skipped (the object "
                "changed since it was read) and failed.",
                ["action"],
                registry=self.registry,
            )
        for action in _LIFECYCLE_ACTIONS:
            self.lifecycle_actions.labels(action).inc(getattr(counts, action))

    def lease_changed(self, job: str, held: bool) -> None:
        """The leases' hook (lightningstor.core.leases): 1 for each background
        job whose deployment-wide lease this server holds, 0 for the others,
        so a dashboard shows which server runs what."""
        if self.job_leases is None:
            self.job_leases = Gauge(
                "lightningstor_background_job_lease",
                "1 if this server holds the lease of the background job (runs it), 0 if another server does.",
                ["job"],
                registry=self.registry,
                multiprocess_mode="livemax",
            )
        self.job_leases.labels(job).set(1 if held else 0)

    def watch_storage(self, backend: Any) -> None:
        """Count the ``distributed`` backend's read repairs per node
        (``lightningstor_storage_read_repairs_total{node}``: copies a read
        found corrupt or divergent and rewrote from a good one) and show
        which nodes it finds suspect (``lightningstor_storage_node_suspect
        {node}``, 1 while calls to the node fail as unavailable, until it
        answers again); ``node`` is the node's ``host:port``.  A backend
        without ``observe`` (``local``) registers nothing.

        With several workers each has its own backend: the counter is the
        sum over them, and the gauge the highest value of a live worker
        (1 if any worker finds the node suspect)."""
        observe = getattr(backend, "observe", None)
        if observe is None:
            return
        read_repairs = Counter(
            "lightningstor_storage_read_repairs_total",
            "Replicas of the distributed backend that a read found corrupt or divergent and rewrote "
            "from a good copy (read repair), by node.",
            ["node"],
            registry=self.registry,
        )
        suspect = Gauge(
            "lightningstor_storage_node_suspect",
            "1 while a storage node is suspect (its calls failed as unavailable; reads ask it last "
            "and it is probed until it answers), else 0.",
            ["node"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        for node in backend.nodes:
            read_repairs.labels(node.address)
            suspect.labels(node.address).set(0)
        self.read_repairs, self.node_suspect = read_repairs, suspect

        def suspect_changed(node: Any, is_suspect: bool) -> None:
            suspect.labels(node.address).set(1 if is_suspect else 0)

        observe(read_repaired=lambda address: read_repairs.labels(address).inc(), suspect=suspect_changed)

    def watch_read_cache(self, store: Any, reactor: Any) -> Service | None:
        """Count the SQLite store's cached point reads
        (``lightningstor_metadata_cache_reads_total{result}``: ``hit``,
        ``miss``, ``unchanged``, a read of a held entry that a write of
        another key sharing its counter slot made stale, answered as the
        entry held (metadata/readcache.py), and ``bypass``, a read made while
        a write of its key was under way; a ``bypass`` share that stays high
        means counters left odd) and the memory the cache holds
        (``lightningstor_metadata_cache_bytes``, summed over workers).  The
        cache counts in plain integers (a metric update per read would cost
        more than the hit saves); the returned service copies them every
        five seconds, registering both once a read was answered from the
        cache.  A store without a cache (etcd) registers nothing."""
        if not has_point_read_cache(store):
            return None
        results = ("hit", "miss", "unchanged", "bypass")

        def register() -> dict[str, Any]:
            reads = Counter(
                "lightningstor_metadata_cache_reads_total",
                "Point reads of the SQLite metadata store: answered from the read cache (hit), read from the "
                "database (miss), read from the database with the answer the cache held, made stale by a write "
                "of another key sharing its counter slot (unchanged), or read from the database while a write "
                "of the key was under way (bypass).",
                ["result"],
                registry=self.registry,
            )
            size = Gauge(
                "lightningstor_metadata_cache_bytes",
                "Memory held by the SQLite metadata store's read cache, summed over worker processes.",
                registry=self.registry,
                multiprocess_mode="livesum",
            )
            return {**{result: reads.labels(result) for result in results}, "bytes": size}

        def sample(registered: bool) -> tuple[dict[str, int], dict[str, int]] | None:
            cache = store.cache
            if cache is None:
                return None  # not open, or turned off
            # ``unchanged`` is optional for a plugin's cache (IPointReadCache).
            counts = (cache.hits, cache.misses, getattr(cache, "unchanged", 0), cache.bypassed)
            if not (registered or any(counts)):
                # Nothing read through it yet.  (Waiting for a first hit
                # hid a worker's misses until then: they surfaced late.)
                return None
            return dict(zip(results, counts)), {"bytes": cache.bytes}

        return _copier(reactor, register, sample)

    def watch_retired(self, retired: Any, reactor: Any) -> Service:
        """Show the delayed-free queue (storage/retired.py ``RetiredChunks``):
        ``lightningstor_storage_freed_chunks_waiting``, chunks freed by
        overwrites and deletes that wait out ``storage.free_delay_seconds``
        (summed over live workers, each has its own queue), and
        ``lightningstor_storage_freed_chunks_deleted_early_total``, those
        deleted before the delay because the queue was full (its reads in
        flight may fail).  The returned service copies the queue's own
        numbers every :data:`COPY_SECONDS`, so a retire costs nothing more;
        both families are registered at the first copy that finds a chunk
        waiting or deleted early (never with ``free_delay_seconds = 0``)."""

        def register() -> dict[str, Any]:
            waiting = Gauge(
                "lightningstor_storage_freed_chunks_waiting",
                "Chunks of overwritten or deleted versions waiting out storage.free_delay_seconds before "
                "deletion, summed over worker processes.",
                registry=self.registry,
                multiprocess_mode="livesum",
            )
            early = Counter(
                "lightningstor_storage_freed_chunks_deleted_early_total",
                "Freed chunks deleted before storage.free_delay_seconds because too many were waiting "
                "(reads of them still in flight fail).",
                registry=self.registry,
            )
            return {"waiting": waiting, "early": early}

        def sample(registered: bool) -> tuple[dict[str, int], dict[str, int]] | None:
            pending, deleted_early = len(retired), retired.deleted_early
            if not (registered or pending or deleted_early):
                return None  # nothing freed yet
            return {"early": deleted_early}, {"waiting": pending}

        return _copier(reactor, register, sample)

    def watch_thread_pools(self, pools: Mapping[str, CountingThreadPool], reactor: Any) -> Service:
        """Show how busy the server's thread pools are (``io`` reads, writes
        and fsyncs chunk files, ``cpu`` hashes and encrypts), each summed over
        live workers: ``lightningstor_thread_pool_busy_threads``,
        ``lightningstor_thread_pool_queued_jobs`` (handed to the pool, taken
        by no thread yet), ``lightningstor_thread_pool_size`` (its most
        threads) and ``lightningstor_thread_pool_jobs_total``.  Sampled every
        :data:`COPY_SECONDS`: a pool whose queue is often above zero is the
        bottleneck of the requests waiting on it.  Registered at the first
        sample after a pool ran a job (small objects inline in their records
        may never need one)."""
        gauges = (
            ("busy_threads", "Threads of the pool running a job"),
            ("queued_jobs", "Jobs handed to the pool that no thread has taken yet"),
            ("size", "Most threads the pool runs"),
        )

        def register() -> dict[str, Any]:
            found: dict[str, Any] = {}
            what = "io: chunk file reads, writes and fsyncs; cpu: hashing and encryption"
            for family, meaning in gauges:
                gauge = Gauge(
                    f"lightningstor_thread_pool_{family}",
                    f"{meaning} ({what}), sampled every {COPY_SECONDS:g} s and summed over worker processes.",
                    ["pool"],
                    registry=self.registry,
                    multiprocess_mode="livesum",
                )
                found.update({f"{family}:{name}": gauge.labels(name) for name in pools})
            jobs = Counter(
                "lightningstor_thread_pool_jobs_total",
                f"Jobs handed to the pool ({what}).",
                ["pool"],
                registry=self.registry,
            )
            found.update({f"jobs:{name}": jobs.labels(name) for name in pools})
            return found

        def sample(registered: bool) -> tuple[dict[str, int], dict[str, int]] | None:
            if not (registered or any(pool.jobs for pool in pools.values())):
                return None
            levels: dict[str, int] = {}
            for name, pool in pools.items():
                # ThreadPool's public view of its team's statistics.
                levels[f"busy_threads:{name}"] = len(pool.working)
                levels[f"queued_jobs:{name}"] = pool.q.qsize()
                levels[f"size:{name}"] = pool.max
            return {f"jobs:{name}": pool.jobs for name, pool in pools.items()}, levels

        return _copier(reactor, register, sample)

    def watch_metadata_queues(self, store: Any, reactor: Any) -> Service | None:
        """Show the work waiting for the metadata store's threads, for a store
        that reports it (:class:`~lightningstor.interfaces.metadata.IQueueDepths`:
        the SQLite store):
        ``lightningstor_metadata_queued_transactions`` (waiting for the
        writer: a queue that stays above zero means commits, and so PUTs,
        wait for the disk or for other processes' commits) and
        ``lightningstor_metadata_queued_read_batches``, each summed over live
        workers and sampled every :data:`COPY_SECONDS`.  Registered once the
        store has committed.  None for a store without the interface (etcd)."""
        if not IQueueDepths.implementedBy(type(store)):
            return None
        families = {
            "transactions": "Metadata transactions waiting for the SQLite writer thread",
            "read_batches": "Batches of metadata reads waiting for a SQLite reader thread",
        }

        def register() -> dict[str, Any]:
            return {
                name: Gauge(
                    f"lightningstor_metadata_queued_{name}",
                    f"{meaning}, sampled every {COPY_SECONDS:g} s and summed over worker processes.",
                    registry=self.registry,
                    multiprocess_mode="livesum",
                )
                for name, meaning in families.items()
            }

        def sample(registered: bool) -> tuple[dict[str, int], dict[str, int]] | None:
            if not (registered or store.commit_count):
                return None
            found = store.queue_depths()
            return {}, {name: int(found.get(name, 0)) for name in families}

        return _copier(reactor, register, sample)

    def set_store_totals(self, totals: StoreTotals) -> None:
        self.objects.set(totals.objects)
        self.storage_bytes.set(totals.bytes)
        self.multipart_uploads_active.set(totals.uploads)


_LIFECYCLE_ACTIONS = ("expired", "noncurrent", "markers", "aborted", "skipped", "failed")


class _WithoutCreated:
    """A registry view without prometheus-client's ``*_created`` samples.

    The client library adds a creation timestamp to every counter and
    histogram, which the text format exposes as extra ``*_created`` gauge
    families: clutter that is not among the spec's metrics.  Dropping them
    here keeps the registry itself untouched (its global switch,
    ``disable_created_metrics``, would change every registry in the process).
    """

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        for metric in self.registry.collect():
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric


class MetricsResource(resource.Resource):
    """``GET /metrics``: the registry in Prometheus text format (or
    OpenMetrics when the scraper asks for it)."""

    isLeaf = True

    def __init__(self, registry: Any) -> None:
        super().__init__()
        self.registry = registry
        self._view = _WithoutCreated(registry)

    def render_GET(self, request: Any) -> bytes:
        accept = request.getHeader(b"accept")
        encoder, content_type = choose_encoder(accept.decode("latin-1") if accept else "")
        request.setHeader(b"content-type", content_type.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        body: bytes = encoder(self._view)
        return body


class _MetricsSite(server.Site):
    """The metrics listener's site: no access-log line per scrape."""

    noisy = False

    def log(self, request: Any) -> None:
        return None


class MetricsService(Service):
    """Serves ``/metrics`` on its own listener (``server.metrics_addr``), so
    scrapes need not share the S3 port or be exposed where S3 is."""

    def __init__(
        self, registry: Any, description: str, reactor: Any, *, adopt_fd: int | None = None
    ) -> None:
        self.description = description
        self.adopt_fd = adopt_fd  # a worker listens on its supervisor's socket
        self.reactor = reactor
        root = resource.Resource()
        root.putChild(b"metrics", MetricsResource(registry))
        self.site = _MetricsSite(root)
        self.port: Any = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        # Before twistd switches user (--uid/--gid), as S3Service does.
        if self.adopt_fd is None and self.port is None:
            self._listen()

    def startService(self) -> None:
        super().startService()
        if self.adopt_fd is not None:
            from lightningstor.workers import adopt_port

            fd, self.adopt_fd = self.adopt_fd, None
            self.port = adopt_port(self.reactor, fd, self.site)
        elif self.port is None:
            self._listen()
        if self.port is not None:
            addr = self.port.getHost()
            log.info("Metrics listening on {host}:{port}", host=addr.host, port=addr.port)

    def _listen(self) -> None:
        self.port = listen_now(self.reactor, self.description, self.site, key="server.metrics_addr")

    def stopService(self) -> Any:
        super().stopService()
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()
        return None


@dataclass(frozen=True)
class StoreTotals:
    objects: int = 0  # stored object versions, delete markers excluded
    bytes: int = 0  # their logical sizes (parts of unfinished uploads excluded)
    uploads: int = 0  # multipart upload records


def _sum_usage(values: list[bytes]) -> Usage:
    """The sum of encoded usage rows (runs in the CPU pool)."""
    total = ZERO
    for value in values:
        total += decode_usage(value)
    return total


@inlineCallbacks
def _usage_total(store: Any, reactor: Any, pool: Any, page: int) -> Any:
    """Deferred[Usage]: every bucket's usage rows summed, by paged scans.

    Each bucket's rows are summed from one scan.  A fold moves deltas into
    the base row, which sorts first: had a page ended inside a bucket, a fold
    before the next page would hide the deltas it folded (the base was read
    before them).  So a page's last bucket is left for the next page, and a
    bucket whose rows fill a whole page is read alone with one unbounded scan
    (what :meth:`QuotaManager.read_usage` does for quota checks).
    """
    total = ZERO
    start, end = keys.USAGE, prefix_end(keys.USAGE)
    while True:
        rows = yield store.scan(start, end, page)
        if not rows:
            return total
        more = len(rows) >= page
        complete = rows
        if more:
            last = usage_row_bucket(rows[-1].key) or rows[-1].key
            complete = [kv for kv in rows if not kv.key.startswith(last)]
            if complete:
                start = last
            else:
                complete = yield store.scan(last, prefix_end(last))
                start = prefix_end(last)
        if complete:
            total += yield deferToThreadPool(reactor, pool, _sum_usage, [kv.value for kv in complete])
        if not more:
            return total


@inlineCallbacks
def _count_rows(store: Any, prefix: bytes, page: int) -> Any:
    """Deferred[int]: keys under ``prefix``, counted ``page`` at a time."""
    count = 0

    def visit(_kv: Any) -> None:
        nonlocal count
        count += 1

    yield scans.scan_prefix(store, prefix, page, visit)
    return count


@inlineCallbacks
def count_store(store: Any, reactor: Any, pool: Any, *, page: int = 1000) -> Any:
    """Deferred[StoreTotals]: stored object versions, their bytes and the
    multipart uploads in progress.

    Objects and bytes are the sums of the usage rows (O(buckets)); no object
    or version record is read.  Stored versions count, current and
    noncurrent (like CloudWatch's NumberOfObjects); delete markers do not.
    Usage rows are decoded in ``pool`` so that many buckets do not hold the
    reactor thread; between pages the reactor serves requests.  Objects
    written by a release older than usage accounting are not counted.
    """
    usage = yield _usage_total(store, reactor, pool, page)
    uploads = yield _count_rows(store, keys.UPLOADS, page)
    return StoreTotals(objects=usage.objects, bytes=usage.bytes, uploads=uploads)


class StoreGauges(Service):
    """Refreshes the object, byte and upload gauges every ``interval``
    seconds (first at start).  A failed count is logged and the gauges keep
    their last values; runs never overlap."""

    def __init__(
        self, metrics: S3Metrics, store: Any, reactor: Any, pool: Any, *, interval: float = 60.0
    ) -> None:
        self.metrics = metrics
        self.store = store
        self.reactor = reactor
        self.pool = pool
        self.interval = interval
        self._loop = LoopingCall(self.refresh)
        self._loop.clock = reactor
        self._done: Any = None

    def refresh(self) -> Any:
        d = count_store(self.store, self.reactor, self.pool)
        d.addCallback(self.metrics.set_store_totals)
        d.addErrback(lambda f: log.failure("Counting objects for the metrics failed", f))
        return d

    def startService(self) -> None:
        super().startService()
        self._done = self._loop.start(self.interval, now=True)

    def stopService(self) -> Any:
        """Deferred that fires once a count in flight has ended: it must not
        scan a store that the services stopped after this one close."""
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        return self._done


def attach_metrics(
    parent: Any,
    api: Any,
    store: Any,
    *,
    metrics_addr: str | None,
    reactor: Any,
    pool: Any,
    registry: CollectorRegistry | None = None,
    gauges: bool = True,
    multiprocess_dir: str | None = None,
    adopt_fd: int | None = None,
) -> S3Metrics:
    """Wire the metrics into a server: count every S3 request (a finish hook
    on ``api``), refresh the store gauges, and serve ``/metrics`` on its own
    listener when ``metrics_addr`` is set, else on the S3 port.

    In a worker process (:mod:`lightningstor.workers`), ``gauges`` is False
    except in the primary worker, ``multiprocess_dir`` is the directory where
    every worker's samples are written (prometheus-client multiprocess mode,
    which needs ``PROMETHEUS_MULTIPROC_DIR`` set before the library is
    imported): ``/metrics`` then renders the sum over all workers, whichever
    answers it.  ``adopt_fd`` is the supervisor's metrics socket.
    """
    from lightningstor.config import endpoint_description, parse_address

    metrics = S3Metrics(registry)
    api.finish_hooks.append(metrics.request_finished)
    if gauges:
        StoreGauges(metrics, store, reactor, pool).setServiceParent(parent)
    exposed: Any = metrics.registry
    if multiprocess_dir is not None:
        exposed = multiprocess_registry(multiprocess_dir)
    if metrics_addr is None:
        api.metrics_resource = MetricsResource(exposed)
    else:
        host, port = parse_address(metrics_addr, key="server.metrics_addr")
        MetricsService(exposed, endpoint_description(host, port), reactor, adopt_fd=adopt_fd).setServiceParent(
            parent
        )
    return metrics


def multiprocess_registry(path: str) -> CollectorRegistry:
    """A registry that, when collected, aggregates the samples every worker
    process wrote under ``path`` (counters and histograms summed, the store
    gauges' most recent value)."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    return registry

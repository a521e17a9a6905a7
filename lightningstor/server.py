"""Assembling one LightningStor process from its settings.

``build`` creates the plugins (metadata store, storage backend), the core and
the protocol services and returns the ``MultiService`` twistd runs.  Start-up
problems that can be detected synchronously (bad plugin name, port in use)
raise before the reactor runs, so ``twistd`` exits with the message.
"""

from __future__ import annotations

import gc
import os
import time
import weakref
from functools import partial
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from lightningstor import errors, plugins
from lightningstor.audit import WAKE_SLOTS, AuditLog, AuditService, s3_record
from lightningstor.config import GRPC_HANDLER_THREADS, Settings, endpoint_description, parse_address
from lightningstor.core import chunkindex, freedchunks
from lightningstor.core.buckets import NameIndexService
from lightningstor.core.collector import CollectorService
from lightningstor.core.credentials import (
    DEFAULT_ORG,
    ROOT_PRINCIPAL,
    CredentialStore,
    MasterKeyMismatch,
    open_master_key,
)
from lightningstor.core.expiry import UploadExpiryService
from lightningstor.core.freedchunks import FreedChunksService
from lightningstor.core.leases import HEARTBEAT_TTL_SECONDS, Holder, Lease, server_holder
from lightningstor.core.lifecycle_service import LifecycleService, LifecycleWorker, reactor_pause
from lightningstor.core.principals import PrincipalRecord
from lightningstor.core.quotas import UsageFoldService
from lightningstor.core.scrub import ScrubService
from lightningstor.core.service import Core
from lightningstor.core.types import Principal
from lightningstor.errors import ConfigError
from lightningstor.metrics import attach_metrics
from lightningstor.s3.accesslog import AccessLog
from lightningstor.s3.app import S3Api, S3Options, S3Site
from lightningstor.s3.channel import S3Channel
from lightningstor.s3.limits import ConnectionLimits
from lightningstor.storage.chunks import ChunkManager
from lightningstor.tcp import listen_now, prepare_s3_port
from lightningstor.threads import ThreadPools
from lightningstor.tls import ReloadableServerTls, SignalReloadService, attach_tls
from lightningstor.workers import WORKER_HEADER, WorkerRole, prepare_worker_process, stop_signals_once

log = Logger()

# How long a clean stop spends deleting freed chunks still waiting out
# ``[storage] free_delay_seconds``; the orphan collector takes the rest.
# With the 30 s drain it stays inside the systemd unit's 45 s stop timeout.
FLUSH_SECONDS = 10.0

ROOT = Principal(principal_id=ROOT_PRINCIPAL, org_id=DEFAULT_ORG, display_name="admin")


class SequentialMultiService(MultiService):
    """Stops children one at a time, last started first, waiting for each.

    ``MultiService`` stops all children at once, so the stores would close
    while the S3 service is still draining requests in flight.
    """

    def startService(self) -> None:
        try:
            super().startService()
        except BaseException:
            # A listener that cannot bind fails start-up; the thread pools
            # already started are not daemons and would keep the process alive.
            for child in reversed(list(self)):
                if child.running:
                    try:
                        child.stopService()
                    except Exception:
                        log.failure("Stopping {svc} after a failed start failed", svc=child)
            raise

    @inlineCallbacks
    def stopService(self) -> Any:
        Service.stopService(self)
        for child in reversed(list(self)):
            try:
                yield child.stopService()
            except Exception:
                log.failure("Stopping {svc} failed", svc=child)


class S3Service(Service):
    """Listens for S3 HTTP; on stop, refuses new connections and waits
    (bounded) for requests in flight before the stores close."""

    def __init__(
        self,
        site: S3Site,
        description: str,
        reactor: Any,
        drain_timeout: float,
        tls: ReloadableServerTls | None = None,
        adopt_fd: int | None = None,
        limits: Any = None,
    ) -> None:
        self.site = site
        # Called with the site, returns the factory to listen with
        # (s3/limits.py: header deadline, connection cap); None: the site.
        self.limits = limits
        # A worker process (lightningstor.workers) listens on the socket its
        # supervisor bound instead of binding ``description``.
        self.adopt_fd = adopt_fd
        self.tls = tls  # TLS 1.3 only, certificate reloaded on SIGHUP (lightningstor.tls)
        self.description = description
        self.reactor = reactor
        self.drain_timeout = drain_timeout
        self.port: Any = None
        self._connections: WrappingFactory | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        # Bound here, before twistd switches user (--uid/--gid), as twistd's
        # own listening services do: a port under 1024 works after the switch.
        if self.adopt_fd is None and self.port is None:
            self._listen()

    def startService(self) -> None:
        super().startService()
        self.reactor.callWhenRunning(freeze_startup_heap)
        if self.adopt_fd is not None:
            from lightningstor.workers import adopt_port

            fd, self.adopt_fd = self.adopt_fd, None
            self.port = adopt_port(self.reactor, fd, self._factory(), s3=True)
        elif self.port is None:
            self._listen()  # started without privilegedStartService (not by twistd)
        self._log_listening()

    def _factory(self) -> Any:
        factory: Any = self.site if self.limits is None else self.limits(self.site)
        # The open connections (a WrappingFactory's ``protocols``), which a
        # stop closes once their answers are sent.
        self._connections = factory if isinstance(factory, WrappingFactory) else None
        if self.tls is not None:
            factory = TLSMemoryBIOFactory(self.tls, False, factory, clock=self.reactor)
        return factory

    def _listen(self) -> None:
        self.port = listen_now(self.reactor, self.description, self._factory())
        # Alone on its port: Twisted's accept loop, nobody to balance with.
        prepare_s3_port(self.port, one_accept=False)

    def _log_listening(self) -> None:
        if self.port is not None:
            addr = self.port.getHost()
            log.info(
                "S3 API listening on {host}:{port} ({scheme})",
                host=addr.host,
                port=addr.port,
                scheme="https" if self.tls is not None else "http",
            )

    @inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()
        if self.port is not None:
            yield self.port.stopListening()
        # No new requests on the connections already open either: idle
        # ones close now, busy ones after their answers (s3/channel.py).
        connections = self._connections
        if connections is not None:
            for connection in list(connections.protocols):
                wrapped = getattr(connection, "wrappedProtocol", None)
                if isinstance(wrapped, S3Channel):
                    wrapped.end_keep_alive()
        deadline = time.monotonic() + self.drain_timeout
        while (self.site.api.inflight or _receiving(connections)) and time.monotonic() < deadline:
            d: Deferred[None] = Deferred()
            self.reactor.callLater(0.05, d.callback, None)
            yield d
        if self.site.api.inflight:
            log.warn("{n} requests still in flight at shutdown", n=len(self.site.api.inflight))
        # A request is done once its last bytes are in the connection's send
        # buffer, not once they are sent: a slow reader of a large GET still
        # had hundreds of KiB to receive, which the reactor's stop would
        # drop.  Closing each connection gracefully sends what it holds
        # first (idle keep-alive connections just close); wait for that, in
        # the same bound.
        if connections is not None:
            for connection in list(connections.protocols):
                # The HTTP channel's own close: it unregisters itself as its
                # transport's producer first (a paused producer would keep
                # the transport from ever closing), then the transport sends
                # what it holds and closes.
                channel: Any = getattr(connection, "wrappedProtocol", None)
                (channel if hasattr(channel, "loseConnection") else connection).loseConnection()
            # A TLS connection stays open after its close_notify until the
            # peer answers, which an idle client may never do: wait only
            # until no connection has bytes left to hand to the kernel.
            while any(_unsent(c) for c in list(connections.protocols)) and time.monotonic() < deadline:
                d = Deferred()
                self.reactor.callLater(0.05, d.callback, None)
                yield d


def _receiving(connections: WrappingFactory | None) -> bool:
    """Whether an open S3 connection has a request whose head is still
    arriving: the S3 layer counts a request in flight only once its head is
    in, and a stop answers it too (``S3Channel.end_keep_alive``)."""
    if connections is None:
        return False
    for connection in list(connections.protocols):
        channel = getattr(connection, "wrappedProtocol", None)
        if isinstance(channel, S3Channel) and channel.requests:
            return True
    return False


def _unsent(connection: Any) -> bool:
    """Whether ``connection`` (and the TLS and TCP transports under it)
    still holds bytes it has not handed to the kernel."""
    layer = getattr(connection, "transport", None)
    while layer is not None:
        if getattr(layer, "_appSendBuffer", None):  # TLS: application data not yet encrypted
            return True
        if getattr(layer, "dataBuffer", None) or getattr(layer, "_tempDataLen", 0):  # TCP
            return True
        layer = getattr(layer, "transport", None)
    return False


# Net allocations of container objects between two collections of the
# youngest generation (Python's default is 700): see freeze_startup_heap.
YOUNG_COLLECTION_THRESHOLD = 5000


def freeze_startup_heap() -> None:
    """Exempt what start-up built from cyclic garbage collection.

    The modules, plugins, caches and services that exist once the server is
    up (about 75,000 tracked objects) live as long as the process.  Each
    full collection walked all of them again: ~75 ms each, about half of the
    collector's time under load.  ``gc.freeze`` moves them to a permanent
    generation that collections skip; what requests allocate is collected
    as before.

    Then the youngest generation is collected after 5,000 net allocations
    of container objects instead of Python's 700.  A small request
    allocates a few hundred and frees them by reference counting (a request
    leaves no reference cycle: tests/unit/test_request_cycles.py), but 16
    requests in flight hold a few thousand at once.  At 700, 3,000 PUTs of
    4 KiB at c=16 ran 419 young and 39 middle collections, each walking
    objects about to be freed anyway (the young ones moving them to the
    middle generation, whose collections walked them again); at 5,000 they
    run none.  What it may hold back is cyclic garbage (none on the
    request paths) of at most 5,000 objects, about a MiB.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])


class WorkerS3Site(S3Site):
    """The S3 site of a worker process: every response names the worker's
    pid (``x-lightningstor-worker``), so load spreading is observable."""

    def __init__(self, api: S3Api, **kwargs: Any) -> None:
        super().__init__(api, **kwargs)
        self.worker_tag = str(os.getpid()).encode("ascii")

    def begin_request(self, request: Any, command: bytes, path: bytes, length: int | None) -> None:
        request.responseHeaders.put(WORKER_HEADER, self.worker_tag)
        super().begin_request(request, command, path, length)


class CoreService(Service):
    """Owns the stores: bootstraps the root credential, closes them last."""

    def __init__(
        self,
        core: Core,
        settings: Settings,
        reactor: Any,
        env: dict[str, str],
        *,
        bootstrap: bool = True,
        on_ready: Any = None,
        shared_store: bool = False,
    ) -> None:
        self.core = core
        self.settings = settings
        self.reactor = reactor
        self.env = env
        # Worker processes other than the primary skip the root-credential
        # bootstrap: the primary did it before they were started.
        self.bootstrap = bootstrap
        self.on_ready = on_ready
        # Other API servers may share the store (JobLeases.shared), and with
        # it the chunks this one frees: a stop leaves those to the collector.
        self.shared_store = shared_store

    def startService(self) -> None:
        super().startService()
        self.reactor.callWhenRunning(self._bootstrap)

    def _bootstrap(self) -> None:
        # Every worker checks the key file: a restarted one reads it again.
        d = self.core.credentials.check_master_key()
        if self.bootstrap:
            d.addCallback(lambda _: bootstrap_root(self.core, self.env))
        if self.on_ready is not None:
            d.addCallback(lambda _: self.on_ready())

        def failed(f: Failure) -> None:
            if f.check(MasterKeyMismatch):
                log.error(
                    "Start-up failed: the master key file {path} does not open this metadata store ({why}). "
                    "It is not the key the stored secrets and SSE-S3 objects were written under: restore the "
                    "file from a backup, or copy it from another server of this deployment",
                    path=self.settings.security.master_key_file, why=f.getErrorMessage(),
                )
            else:
                log.failure("Start-up failed", f)
            # twistd has no exit-status API; make the failure visible to
            # supervisors as a non-zero status once the reactor has stopped.
            self.reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
            self.reactor.stop()

        d.addErrback(failed)

    @inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()
        try:
            if self.shared_store:
                # Another server's (or worker's) GET may still stream a chunk
                # this one freed (storage/retired.py): recorded with its due
                # time for a running server to delete (core/freedchunks.py).
                yield self._record_freed()
            else:
                # Requests have drained: nobody here reads freed chunks any
                # more.  Deleted now, within a bound; the rest is the collector's.
                yield self.core.chunks.flush_retired(FLUSH_SECONDS)
            yield self.core.access.authorizer.close()
            yield self.core.backend.close()
        finally:
            yield self.core.store.close()

    @inlineCallbacks
    def _record_freed(self) -> Any:
        deadline = self.reactor.seconds() + FLUSH_SECONDS
        waiting = recorded = 0
        # Again for what was freed while the first batches were written (a
        # background pass still finishing): a few rounds, within the time.
        for _round in range(RECORD_ROUNDS):
            if self.reactor.seconds() >= deadline:
                break
            batches = self.core.chunks.take_retired()
            count = sum(len(ids) for _wait, ids in batches)
            if not count:
                break
            waiting += count
            now = time.time()
            done = yield freedchunks.record(
                self.core.store, [(now + wait, ids) for wait, ids in batches], now=now,
                deadline=deadline, reactor=self.reactor,
            )  # fmt: skip
            recorded += done
            if done < count:
                break
        if recorded:
            log.info("Recorded {n} freed chunks for deletion when their delay is over", n=recorded)
        if recorded < waiting:
            # Unreferenced, so nothing is lost: the collector takes them.
            log.warn("Stop left {n} freed chunks unrecorded; the orphan collector removes them after its grace",
                     n=waiting - recorded)  # fmt: skip


RECORD_ROUNDS = 3
"""Takes of the freed-chunk queue a stop records (CoreService._record_freed)."""


@inlineCallbacks
def bootstrap_root(core: Core, env: dict[str, str]) -> Any:
    """Ensure the admin credential: from LIGHTNINGSTOR_ROOT_ACCESS_KEY /
    LIGHTNINGSTOR_ROOT_SECRET_KEY if set, else created once and printed once."""
    access = env.get("LIGHTNINGSTOR_ROOT_ACCESS_KEY")
    secret = env.get("LIGHTNINGSTOR_ROOT_SECRET_KEY")
    if bool(access) != bool(secret):
        raise RuntimeError(
            "set both LIGHTNINGSTOR_ROOT_ACCESS_KEY and LIGHTNINGSTOR_ROOT_SECRET_KEY, or neither"
        )
    # The root principal administers its org (role admin, local authorizer).
    yield core.principals.ensure(
        PrincipalRecord(ROOT.principal_id, ROOT.org_id, None, ROOT.display_name, ("admin",))
    )
    if access and secret:
        root = Principal(ROOT.principal_id, ROOT.org_id, None, access, ROOT.display_name)
        yield core.credentials.ensure(root, access, secret)
        log.info("Root access key {ak} configured from the environment", ak=access)
        return
    exists = yield core.credentials.any_exist()
    if exists:
        return
    cred = yield core.credentials.create(ROOT)
    # Printed once, on first start: the secret is stored only encrypted.
    print(
        "\n=== LightningStor first start: admin credential (shown once) ===\n"
        f"  access key: {cred.access_key_id}\n"
        f"  secret key: {cred.secret}\n"
        "================================================================\n",
        flush=True,
    )


def build(
    settings: Settings, reactor: Any, env: dict[str, str] | None = None, worker: WorkerRole | None = None
) -> MultiService:
    """The whole server as one MultiService (one worker of several when
    ``worker`` is given: see :mod:`lightningstor.workers`)."""
    env = dict(os.environ if env is None else env)
    # Owner only, as the chunk directories and key files: small objects live
    # in the metadata database under it (an existing directory keeps its mode).
    os.makedirs(settings.data_dir, mode=0o700, exist_ok=True)
    store_factory = plugins.find_metadata_factory(settings.metadata.backend)
    backend_factory = plugins.find_storage_factory(settings.storage.backend)
    top = SequentialMultiService()
    pools = ThreadPools(reactor)
    pools.setServiceParent(top)
    try:
        if worker is not None:
            prepare_worker_process(worker)
            reactor.callWhenRunning(stop_signals_once, reactor)
        _assemble(top, pools, settings, reactor, env, store_factory, backend_factory, worker)
    except BaseException:
        # Pool threads are not daemons: without this a failed start hangs.
        pools.stopService()
        raise
    return top


def _assemble(
    top: MultiService,
    pools: ThreadPools,
    settings: Settings,
    reactor: Any,
    env: dict[str, str],
    store_factory: Any,
    backend_factory: Any,
    worker: WorkerRole | None = None,
) -> None:
    store, backend = plugins.open_plugins(settings, reactor, pools.io, store_factory, backend_factory)
    chunks = ChunkManager(
        backend,
        reactor,
        pools.cpu,
        chunk_size=settings.storage.chunk_size_bytes,
        inline_threshold=settings.storage.inline_threshold_bytes,
        # Bounds how long a write's chunks stay unreferenced (core/collector.py).
        max_write_seconds=settings.limits.max_write_seconds,
        # Freed chunks outlive their record by this long (storage/retired.py).
        free_delay_seconds=settings.storage.free_delay_seconds,
    )
    # A worker's supervisor made the key file before starting it (workers.py).
    master_key = open_master_key(settings.security.master_key_file, create=worker is None)
    core = Core(
        store=store,
        backend=backend,
        chunks=chunks,
        credentials=CredentialStore(store, master_key, cache_ttl=settings.iam.cache_seconds),
        authorizer=plugins.open_authorizer(settings, reactor, store),
        clock=time.time,
        region=settings.s3.region,
        max_metadata_bytes=settings.limits.max_metadata_bytes,
        max_keys_per_list=settings.limits.max_keys_per_list,
        max_multipart_parts=settings.limits.max_multipart_parts,
        max_object_size=settings.limits.max_object_size_bytes,
        chunks_per_record=settings.metadata.chunks_per_record,
        # Also the root of SSE-S3's keys (core/sse.py).
        master_key=master_key,
    )
    core.access.block_public_access = settings.s3.block_public_access
    core.buckets.default_object_ownership = settings.s3.default_object_ownership
    # Background services run once per server: in the primary worker only.
    primary = worker is None or worker.primary
    # One lease per background job when several servers may share the store.
    leases = JobLeases(store, settings.server.s3_addr, reactor)
    CoreService(
        core,
        settings,
        reactor,
        env,
        bootstrap=primary,
        on_ready=None if worker is None else worker.report_ready,
        # Worker processes share the SQLite file and the chunk directory:
        # a sibling's GET may still stream a chunk this worker freed, so a
        # worker leaves its freed chunks to the collector, as a server whose
        # store other servers share does.
        shared_store=leases.shared or worker is not None,
    ).setServiceParent(top)
    if primary:
        # Its grace period is measured on a clock that never jumps (core/collector.py).
        collector = CollectorService(
            store, backend, time.monotonic, reactor,
            interval_seconds=settings.collector.interval_seconds, grace_seconds=settings.collector.grace_seconds,
        )  # fmt: skip
        leases.periodic(collector, "collector").setServiceParent(top)
        # Deletes what stopped servers and workers recorded, once due.
        leases.periodic(
            FreedChunksService(store, chunks.delete_chunks, reactor,
                               free_delay_seconds=settings.storage.free_delay_seconds, clock=time.time),
            "freed-chunks",
        ).setServiceParent(top)  # fmt: skip
        # Folds usage deltas (core/quotas.py) so usage reads stay short.
        leases.periodic(UsageFoldService(core.quotas, reactor), "usage-fold").setServiceParent(top)
        leases.periodic(
            UploadExpiryService(
                core.multipart, reactor, max_age_seconds=settings.limits.multipart_upload_timeout_hours * 3600.0
            ),
            "upload-expiry",
        ).setServiceParent(top)
        # Brings the bucket name index in line with the bucket records.
        NameIndexService(core.buckets, reactor).setServiceParent(top)
    options = S3Options(
        region=settings.s3.region,
        domain=settings.s3.domain,
        website_domain=settings.s3.website_domain,
        max_clock_skew_seconds=settings.s3.max_clock_skew_seconds,
        max_presign_seconds=settings.s3.presigned_url_ttl_seconds,
        signature_versions=frozenset({"v2", "v4"}) if settings.s3.signature_version == "both"
        else frozenset({settings.s3.signature_version}),
        max_xml_body_bytes=settings.limits.max_xml_body_bytes,
        max_header_bytes=settings.limits.max_header_bytes,
        max_metadata_bytes=settings.limits.max_metadata_bytes,
        max_object_size_bytes=settings.limits.max_object_size_bytes,
        max_delete_keys=settings.limits.max_delete_keys,
        max_inflight_upload_bytes=settings.limits.max_inflight_upload_bytes,
        lifecycle_day_seconds=settings.lifecycle.day_seconds,
    )
    api = S3Api(core, options)
    metrics = attach_metrics(
        top,
        api,
        store,
        metrics_addr=settings.server.metrics_addr,
        reactor=reactor,
        pool=pools.cpu,
        gauges=primary,
        multiprocess_dir=None if worker is None else worker.multiprocess_dir,
        adopt_fd=None if worker is None else worker.metrics_fd,
    )
    leases.on_change = metrics.lease_changed if primary else None
    metrics.watch_storage(backend)
    cache_metrics = metrics.watch_read_cache(store, reactor)
    if cache_metrics is not None:
        cache_metrics.setServiceParent(top)
    # Every worker has its own delayed-free queue (storage/retired.py).
    metrics.watch_retired(chunks.retired, reactor).setServiceParent(top)
    metrics.watch_thread_pools({"io": pools.io, "cpu": pools.cpu}, reactor).setServiceParent(top)
    queue_metrics = metrics.watch_metadata_queues(store, reactor)
    if queue_metrics is not None:
        queue_metrics.setServiceParent(top)
    repairer = getattr(backend, "repairer", None)
    if repairer is not None:
        # Every worker's backend has a repairer; one process of the deployment
        # repairs: the lease holder on a shared store, else the primary worker.
        repairer.lease = leases.lease("repair", repairer.interval)
        # Replicas that disagree are settled by the chunk's record.
        repairer.recorded = partial(chunkindex.recorded, store)
        if leases.shared or primary:
            reactor.callWhenRunning(repairer.start)
    if primary and settings.lifecycle.interval_seconds:
        # Applies buckets' lifecycle rules, next to the upload expiry above.
        lifecycle = LifecycleService(
            LifecycleWorker(
                store,
                core.objects,
                core.multipart,
                time.time,
                day_seconds=settings.lifecycle.day_seconds,
                max_actions=settings.lifecycle.max_actions_per_run,
                pause=reactor_pause(reactor),
            ),
            reactor,
            interval_seconds=settings.lifecycle.interval_seconds,
            on_run=metrics.lifecycle_finished,
        )
        leases.periodic(lifecycle, "lifecycle").setServiceParent(top)
    if primary and settings.storage.scrub_interval_seconds:
        ScrubService(
            store,
            backend,
            reactor,
            interval_seconds=settings.storage.scrub_interval_seconds,
            on_report=metrics.scrub_finished,
            lease=leases.lease("scrub", settings.storage.scrub_interval_seconds),
        ).setServiceParent(top)
    if settings.logging.access_log:
        api.finish_hooks.append(AccessLog().emit)
    tls = attach_tls(top, settings.server.tls, reactor, pools.io)
    audit = _attach_audit(top, settings, reactor, api, metrics.registry)
    site_class = S3Site if worker is None else WorkerS3Site
    site = site_class(api, timeout=settings.limits.idle_timeout_seconds)
    host, port = parse_address(settings.server.s3_addr, key="server.s3_addr")
    # The APIs stop together (a plain MultiService stops its children at
    # once): the S3 port closes as the stop begins, and both drain within
    # the one shutdown_timeout_seconds, before the services above them
    # (audit, background jobs, the stores) stop.
    listeners = MultiService()
    listeners.setServiceParent(top)
    S3Service(
        site,
        endpoint_description(host, port),
        reactor,
        settings.server.shutdown_timeout_seconds,
        tls,
        adopt_fd=None if worker is None else worker.s3_fd,
        limits=lambda site: ConnectionLimits(
            site,
            reactor,
            max_connections=settings.limits.max_connections,
            header_timeout=settings.limits.header_timeout_seconds,
            body_timeout=settings.limits.body_timeout_seconds,
            # A response the client stopped reading is a connection without traffic.
            send_timeout=settings.limits.idle_timeout_seconds,
            on_limit=metrics.connection_limited,
        ),
    ).setServiceParent(listeners)
    if settings.server.grpc_enabled:
        # Imported here: a server with the gRPC API off never loads grpcio.
        from lightningstor.grpc.service import grpc_service_from_settings

        grpc_service_from_settings(
            core, settings, reactor, tls, reuse_port=worker is not None, audit=audit, metrics=metrics
        ).setServiceParent(listeners)


class JobLeases:
    """Makes the deployment-wide lease of each background job
    (lightningstor.core.leases), or none at all on a store that only one
    server can use: a SQLite file belongs to one server process, whose jobs
    then run exactly as they did before leases existed (no lease writes, no
    wait for a lease after a crash).  Any other store (etcd, a third-party
    plugin) may be shared by several API servers, so its jobs are leased."""

    def __init__(self, store: Any, s3_addr: str, reactor: Any) -> None:
        self.store = store
        self.reactor = reactor
        self.s3_addr = s3_addr
        self.shared = getattr(store, "name", None) != "sqlite"
        self.holder: Holder | None = server_holder(s3_addr) if self.shared else None
        self._leases: list[Lease] = []
        # Called with (job, held) when this server takes or gives up a lease (metrics).
        self.on_change: Any = None
        if self.shared:
            me = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _forked(me()))

    def forked(self) -> None:
        """This process is a fork of the one that built the server: twistd
        daemonizes after ``build()``, and the holder named the parent's
        pid, which exits at once.  Another server on this host then found
        the lease's holder dead and took it at every look, and both ran
        every job: the holder (and every lease's) names this process now."""
        self.holder = server_holder(self.s3_addr)
        for lease in self._leases:
            lease.holder = self.holder

    def lease(self, job: str, interval_seconds: float) -> Lease | None:
        """The lease of ``job``: :data:`HEARTBEAT_TTL_SECONDS` long, renewed by
        its heartbeat between runs, so a dead holder's job moves within a
        minute plus one ``interval_seconds``; None when the store is not
        shared."""
        if self.holder is None:
            return None
        lease = Lease(self.store, job, self.holder, ttl_seconds=HEARTBEAT_TTL_SECONDS, reactor=self.reactor)
        lease.on_change = lambda job, held: self.on_change(job, held) if self.on_change is not None else None
        self._leases.append(lease)
        return lease

    def periodic(self, service: Any, job: str) -> Any:
        """``service`` (a PeriodicService) with the lease of ``job`` set."""
        service.lease = self.lease(job, service.interval_seconds)
        return service


def _forked(leases: JobLeases | None) -> None:
    if leases is not None:
        leases.forked()


def _attach_audit(top: MultiService, settings: Settings, reactor: Any, api: S3Api, registry: Any) -> AuditLog | None:
    """The audit log (``[audit]``), or None when disabled: opened now (an
    unwritable path fails start-up), fed by an S3 finish hook, reopened on
    SIGHUP, and added to ``top`` before the protocol services so it stops
    after them, once their last records are queued."""
    if not settings.audit.enabled:
        return None
    audit = AuditLog(
        settings.audit.path,
        reactor,
        fsync=settings.audit.fsync,
        max_queued_records=settings.audit.max_queued_records,
        registry=registry,
    )
    try:
        audit.open()
    except OSError as exc:
        raise ConfigError(f"audit.path: cannot open {settings.audit.path}: {exc.strerror or exc}") from None
    AuditService(audit).setServiceParent(top)

    def record(summary: Any, call: Any) -> None:
        if call is not None and call.unaudited:
            return  # refused by the admission below, before it did anything
        entry = s3_record(summary, call)
        if entry is not None:
            audit.submit(entry)

    api.call_hooks.append(record)
    if settings.audit.when_full == "refuse":
        # Room for every S3 request in flight, and for the records of gRPC
        # calls (each holds a handler thread) and the writer's wake-ups.
        reserved = (GRPC_HANDLER_THREADS if settings.server.grpc_enabled else 0) + WAKE_SLOTS

        def admission() -> errors.S3Error | None:
            return None if audit.admits(len(api.inflight), reserved) else errors.SlowDown()

        api.admission = admission
    for service in top:
        if isinstance(service, SignalReloadService):
            service.add_hook(audit.reopen)
    log.info("Audit log: {path}", path=settings.audit.path)
    return audit

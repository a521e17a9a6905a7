"""The gRPC server as a Twisted service: starts and stops with the process.

grpcio runs its own threads (a ``ThreadPoolExecutor`` for handlers plus the
C core's I/O threads), so the server object is built in ``startService``,
after twistd has daemonized (forking a process with live gRPC threads breaks
them), and stopped in ``stopService`` with a grace period: new calls are
refused at once, calls in flight get ``grace_seconds`` to finish, and the
service waits (without blocking the reactor, which those calls still need)
until every handler has returned, before the stores close after it.

The standard health service (``grpc.health.v1.Health``) reports SERVING
while the metadata store and storage backend are ready (the same check as
``GET /ready``), and server reflection lets ``grpcurl`` and friends discover
the API without the proto file.  Both run on a small pool of their own
(grpcio allows one per method), so API calls that hold every API thread do
not delay a health check; reflection streams, which need no token, may hold
at most half of that pool and are timed like API streams.  The handler
threads are shared fairly (:mod:`lightningstor.grpc.limits`): a cap per
principal, a bound on calls waiting for a thread, and a watchdog that ends
idle streams.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from lightningstor.grpc.accesslog import GrpcAccessLog
from lightningstor.grpc.base import PROBE_WORKERS, GrpcOptions, Rpc, Undecodable
from lightningstor.grpc.buckets import BucketServicer
from lightningstor.grpc.gen import lightningstor_pb2 as pb
from lightningstor.grpc.gen import lightningstor_pb2_grpc as pb_grpc
from lightningstor.grpc.limits import TOO_MANY_CALLS_STATUS, CallLimiter, StreamWatchdog, own_pool
from lightningstor.grpc.objects import ObjectServicer

log = Logger()

SERVICE_NAMES = tuple(service.full_name for service in pb.DESCRIPTOR.services_by_name.values())
# The call paths of those services (``/lightningstor.v1.ObjectService/...``).
_OWN_PREFIX = f"/{pb.DESCRIPTOR.package}."
# The names the health service reports: the server ("") and each API service.
_HEALTH_NAMES = ("", *SERVICE_NAMES)
HEALTH_INTERVAL_SECONDS = 5.0
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class _LenientDecoding(grpc.ServerInterceptor):
    """Hands the LightningStor services' handlers an :class:`Undecodable`
    for a request message that does not decode, so that the call answers
    it (INVALID_ARGUMENT, in the access log and the audit record) rather
    than grpcio (INTERNAL, "Exception deserializing request!", unrecorded)."""

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = continuation(details)
        if handler is None or handler.request_deserializer is None or not details.method.startswith(_OWN_PREFIX):
            return handler
        decode = handler.request_deserializer

        def lenient(data: bytes) -> Any:
            try:
                return decode(data)
            except DecodeError as e:
                return Undecodable(str(e))

        return handler._replace(request_deserializer=lenient)

class GrpcService(Service):
    """Serves ``lightningstor.v1`` on ``address`` (``host:port``; port 0 picks one).

    ``credentials`` are ``grpc.ServerCredentials`` for TLS, or None for
    plain-text HTTP/2.  ``bound_port`` is the port actually listened on.
    """

    def __init__(
        self,
        core: Any,
        reactor: Any,
        address: str,
        options: GrpcOptions | None = None,
        *,
        credentials: grpc.ServerCredentials | None = None,
        reuse_port: bool = False,
        audit: Any = None,
        metrics: Any = None,
        access_log: bool = True,
    ) -> None:
        self.core = core
        # Worker processes (lightningstor.workers) share the port on purpose;
        # the supervisor holds it so that no other server can take it.
        self.reuse_port = reuse_port
        self.reactor = reactor
        self.address = address
        self.options = options or GrpcOptions()
        self.credentials = credentials
        self.rpc = Rpc(core, reactor, self.options)
        self.rpc.secure = credentials is not None
        self.rpc.audit = audit  # an AuditLog: every call is recorded (lightningstor.audit)
        self.rpc.metrics = metrics  # S3Metrics: every call is counted (lightningstor.metrics)
        # One access event per call, as the S3 API logs ([logging] access_log).
        self.rpc.access_log = GrpcAccessLog() if access_log else None
        self.server: grpc.Server | None = None
        self.health = health.HealthServicer()
        self._probe: _Probe | None = None
        self.bound_port: int | None = None
        self._health_loop: LoopingCall | None = None
        self._watchdog_loop: LoopingCall | None = None
        self._executors: list[ThreadPoolExecutor] = []
        self._bound: tuple[grpc.Server, int] | None = None  # bound, not yet started

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        # Bound here, before twistd switches user (--uid/--gid): a port under
        # 1024 works after the switch.  Served from startService.  A worker
        # binds beside its supervisor in startService, as that user.
        if not self.reuse_port:
            self._bind()

    def startService(self) -> None:
        super().startService()
        if self._bound is None:
            self._bind()
        assert self._bound is not None
        server, port = self._bound
        self._bound = None
        server.start()
        self.server = server
        self.bound_port = port
        host = self.address.rpartition(":")[0]
        log.info(
            "gRPC API listening on {host}:{port} ({scheme})",
            host=host,
            port=port,
            scheme="tls" if self.credentials is not None else "plaintext",
        )
        self._set_health(_SERVING)
        self._health_loop = LoopingCall(self._check_health)
        self._health_loop.clock = self.reactor
        self._health_loop.start(HEALTH_INTERVAL_SECONDS, now=True).addErrback(
            lambda f: log.failure("gRPC health checks stopped", f)
        )
        watchdog = self.rpc.watchdog
        self._watchdog_loop = LoopingCall(watchdog.sweep)
        self._watchdog_loop.clock = self.reactor
        self._watchdog_loop.start(watchdog.interval, now=False).addErrback(
            lambda f: log.failure("gRPC stream watchdog stopped", f)
        )

    def _bind(self) -> None:
        """The server with its services and its port bound, not started yet."""
        executor = ThreadPoolExecutor(max_workers=self.options.max_workers, thread_name_prefix="lightningstor-grpc")
        probes = ThreadPoolExecutor(max_workers=PROBE_WORKERS, thread_name_prefix="lightningstor-grpc-probe")
        self._executors = [executor, probes]
        limit = self.options.max_receive_message_bytes
        server = grpc.server(
            executor,
            interceptors=[_LenientDecoding()],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                # grpc sets SO_REUSEPORT by default: a second server on the
                # same port would then share it silently instead of failing.
                ("grpc.so_reuseport", 1 if self.reuse_port else 0),
                # Clients ping to find a server that vanished without a
                # reset (LightningStor's after 30 s without a byte; grpc-go
                # and grpc-java clients at their keepalive time): allow it
                # every min_ping_interval_seconds, where grpc's default
                # (five minutes) ends a connection, and the uploads on it,
                # after its third early ping.
                (
                    "grpc.http2.min_ping_interval_without_data_ms",
                    int(self.options.min_ping_interval_seconds * 1000),
                ),
            ],
            # Calls beyond it fail at once (RESOURCE_EXHAUSTED) rather than
            # wait without bound for a thread.
            maximum_concurrent_rpcs=self.options.max_concurrent_rpcs,
        )
        pb_grpc.add_ObjectServiceServicer_to_server(ObjectServicer(self.rpc), server)
        pb_grpc.add_BucketServiceServicer_to_server(BucketServicer(self.rpc), server)
        self._probe = _Probe(self.health, probes)
        health_pb2_grpc.add_HealthServicer_to_server(self._probe, server)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            _Reflection(
                reflection.ReflectionServicer((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME)),
                probes,
                self.rpc.watchdog,
            ),
            server,
        )
        try:
            if self.credentials is not None:
                port = server.add_secure_port(self.address, self.credentials)
            else:
                port = server.add_insecure_port(self.address)
        except RuntimeError as e:  # grpcio raises when it cannot bind
            self._shutdown_executors()
            raise RuntimeError(f"gRPC API cannot listen on {self.address}: {e}") from e
        if not port:
            self._shutdown_executors()
            raise RuntimeError(f"gRPC API cannot listen on {self.address}")
        self._bound = (server, port)

    def _shutdown_executors(self) -> None:
        for pool in self._executors:
            pool.shutdown(wait=False)
        self._executors = []

    def _set_health(self, status: int) -> None:
        for name in _HEALTH_NAMES:
            self.health.set(name, status)

    @inlineCallbacks
    def _check_health(self) -> Any:
        status = yield self.core.readiness()
        ok = all(problem is None for problem in status.values())
        if self.running:
            self._set_health(_SERVING if ok else _NOT_SERVING)

    @inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()
        if self._health_loop is not None and self._health_loop.running:
            self._health_loop.stop()
        server, self.server = self.server, None
        if server is None:
            return
        # Health first, so load balancers stop sending new calls; a watcher
        # gets its NOT_SERVING, then the end of its stream.
        self.health.enter_graceful_shutdown()
        if self._probe is not None:
            self._probe.end_watches()
        grace = self.options.grace_seconds
        stopped = server.stop(grace)
        deadline = time.monotonic() + grace + 1.0
        while (not stopped.is_set() or self.rpc.active) and time.monotonic() < deadline:
            d: Deferred[None] = Deferred()
            self.reactor.callLater(0.05, d.callback, None)
            yield d
        if self.rpc.active:
            log.warn("{n} gRPC calls still running at shutdown", n=self.rpc.active)
        # The watchdog runs until the calls are gone: an idle stream would
        # otherwise hold the drain for the whole grace period.
        if self._watchdog_loop is not None and self._watchdog_loop.running:
            self._watchdog_loop.stop()
        self._shutdown_executors()
        log.info("gRPC API stopped")


class _Probe:
    """The health servicer with ``Check`` and ``List`` on the probe pool.

    ``Watch`` does not hold a thread (grpcio's health servicer answers it by
    callback), and its streams are ended when the server stops
    (:meth:`end_watches`): they would otherwise stay open after their final
    NOT_SERVING and hold the stop for its whole grace period.  ``List``,
    which grpcio's servicer leaves unimplemented, answers what ``Check``
    answers for each service the server reports.
    """

    def __init__(self, servicer: health.HealthServicer, pool: ThreadPoolExecutor) -> None:
        self._servicer = servicer
        self._lock = threading.Lock()
        self._watches: set[Callable[[Any], None]] = set()
        self.Check = own_pool(servicer.Check, pool)
        self.List = own_pool(self._list, pool)

    def _list(self, request: Any, context: grpc.ServicerContext) -> health_pb2.HealthListResponse:
        statuses = {}
        for name in _HEALTH_NAMES:
            answer = self._servicer.Check(health_pb2.HealthCheckRequest(service=name), context)
            statuses[name] = health_pb2.HealthCheckResponse(status=answer.status)
        return health_pb2.HealthListResponse(statuses=statuses)

    def Watch(self, request: Any, context: grpc.ServicerContext, send_response_callback: Callable[[Any], None]) -> None:
        with self._lock:
            self._watches.add(send_response_callback)
        context.add_callback(lambda: self._forget(send_response_callback))
        self._servicer.Watch(request, context, send_response_callback)

    # grpcio hands a method with this attribute a callback to send with,
    # instead of taking its answers from an iterator on a pool thread.
    Watch.experimental_non_blocking = True  # type: ignore[attr-defined]

    def _forget(self, send: Callable[[Any], None]) -> None:
        with self._lock:
            self._watches.discard(send)

    def end_watches(self) -> None:
        """End every open ``Watch`` stream (status OK, after the statuses it was sent)."""
        with self._lock:
            watches, self._watches = self._watches, set()
        for send in watches:
            send(None)


class _Reflection:
    """Server reflection on the probe pool: it needs no token, so its
    streams are capped (half the pool, the rest stays free for health
    checks) and timed like API streams."""

    def __init__(self, servicer: Any, pool: ThreadPoolExecutor, watchdog: StreamWatchdog) -> None:
        self._servicer = servicer
        self._watchdog = watchdog
        self._limiter = CallLimiter(max(1, PROBE_WORKERS // 2))
        self.ServerReflectionInfo = own_pool(self._info, pool)

    def _info(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        if not self._limiter.acquire(""):
            context.abort(TOO_MANY_CALLS_STATUS, "Too many concurrent reflection streams; retry later")
        watch = self._watchdog.watch(context)
        try:
            yield from self._servicer.ServerReflectionInfo(watch.wrap(requests), context)
        finally:
            watch.close()
            self._limiter.release("")


def grpc_service_from_settings(
    core: Any,
    settings: Any,
    reactor: Any,
    tls: Any = None,
    *,
    reuse_port: bool = False,
    audit: Any = None,
    metrics: Any = None,
) -> GrpcService:
    """The GrpcService a server with ``settings`` runs (``server.grpc_addr``,
    ``[limits]``, and the S3 listener's certificate when ``[server.tls]`` is
    set: TLS, or mTLS with ``ca_file``)."""
    from lightningstor.config import format_address, parse_address

    host, port = parse_address(settings.server.grpc_addr, key="server.grpc_addr")
    options = GrpcOptions(
        max_put_object_bytes=settings.limits.max_grpc_put_object_bytes,
        max_metadata_bytes=settings.limits.max_metadata_bytes,
        max_delete_keys=settings.limits.max_delete_keys,
        # It drains while the S3 listener does (server.py: they stop
        # together), both within server.shutdown_timeout_seconds.
        grace_seconds=settings.server.shutdown_timeout_seconds,
        max_calls_per_principal=settings.limits.max_grpc_calls_per_principal,
        stream_idle_timeout_seconds=settings.limits.grpc_stream_idle_timeout_seconds,
        min_ping_interval_seconds=settings.limits.grpc_min_ping_interval_seconds,
    )
    credentials = tls.grpc_server_credentials() if tls is not None else None
    return GrpcService(
        core,
        reactor,
        format_address(host, port),
        options,
        credentials=credentials,
        reuse_port=reuse_port,
        audit=audit,
        metrics=metrics,
        access_log=settings.logging.access_log,
    )

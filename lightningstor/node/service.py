"""The storage node's gRPC server as a Twisted service.

Same shape as :class:`lightningstor.grpc.service.GrpcService`: the grpcio
server (and its own handler thread pool) is built in ``startService``, after
twistd has daemonized, and stopped with a grace period in ``stopService``
without blocking the reactor that in-flight handlers still need.

With ``credentials`` (``grpc.ServerCredentials``, in practice
:meth:`lightningstor.tls.ReloadableServerTls.grpc_server_credentials`) the
port speaks TLS with client certificates required; without them it is
plaintext and unauthenticated, which start-up logs as a warning so that it
is never a silent default on a network someone else can reach.

grpcio has no setting for the minimum TLS version; the port is TLS 1.3
only because ``makeService`` gives grpc a TLS 1.2 cipher list no handshake
can use (:func:`lightningstor.tls.refuse_tls12_on_grpc`).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from lightningstor.node.gen import lightningstor_node_pb2_grpc as pb_grpc
from lightningstor.node.servicer import ChunkServicer

log = Logger()

MiB = 1 << 20
MAX_MESSAGE_BYTES = 4 * MiB
"""gRPC message limit: PutChunk/GetChunk pieces are 1 MiB; room to spare."""


class NodeGrpcService(Service):
    """Serves ``lightningstor.node.v1.ChunkService`` on ``address`` (port 0 picks one)."""

    def __init__(self, servicer: ChunkServicer, reactor: Any, address: str, *,
                 max_workers: int = 16, grace_seconds: float = 5.0,
                 credentials: grpc.ServerCredentials | None = None) -> None:
        self.servicer = servicer
        self.credentials = credentials
        self.reactor = reactor
        self.address = address
        self.max_workers = max_workers
        self.grace_seconds = grace_seconds
        self.server: grpc.Server | None = None
        self.bound_port: int | None = None

    def startService(self) -> None:
        super().startService()
        executor = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="lightningstor-node")
        server = grpc.server(
            executor,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                # Fail loudly on a port in use instead of sharing it.
                ("grpc.so_reuseport", 0),
            ],
        )
        pb_grpc.add_ChunkServiceServicer_to_server(self.servicer, server)
        try:
            if self.credentials is not None:
                port = server.add_secure_port(self.address, self.credentials)
            else:
                port = server.add_insecure_port(self.address)
        except RuntimeError as e:
            executor.shutdown(wait=False)
            raise RuntimeError(f"chunk service cannot listen on {self.address}: {e}") from e
        if not port:
            executor.shutdown(wait=False)
            raise RuntimeError(f"chunk service cannot listen on {self.address}")
        server.start()
        self.server = server
        self.bound_port = port
        # Announced once the reactor runs: the handlers need it (they call
        # into it), and the SIGHUP handler, installed by an earlier sibling's
        # callWhenRunning, is in place by then; so the line that tools wait
        # for means "serving, and safe to reload".
        self.reactor.callWhenRunning(self._announce, port)

    def _announce(self, port: int) -> None:
        identity = self.servicer.identity
        # The warning first: whoever waits for the listening line has seen it.
        if self.credentials is None:
            log.warn(
                "Chunk service on port {port} is UNAUTHENTICATED plaintext gRPC: anyone who can reach "
                "it can read, overwrite and delete chunks. Start the node with --tls-cert, --tls-key "
                "and --tls-ca (mutual TLS), or firewall the port so that only the API servers reach it.",
                port=port,
            )
        log.info(
            "Chunk service listening on {host}:{port} (node {node_id}, zone {zone}, {scheme})",
            host=self.address.rpartition(":")[0],
            port=port,
            node_id=identity.node_id,
            zone=identity.zone or "-",
            scheme="mTLS" if self.credentials is not None else "plaintext",
        )

    @inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()
        server, self.server = self.server, None
        if server is None:
            return
        stopped = server.stop(self.grace_seconds)
        deadline = time.monotonic() + self.grace_seconds + 1.0
        while not stopped.is_set() and time.monotonic() < deadline:
            d: Deferred[None] = Deferred()
            self.reactor.callLater(0.05, d.callback, None)
            yield d
        log.info("Chunk service stopped")

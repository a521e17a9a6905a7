"""A blocking client for one storage node's ``ChunkService``.

Every method blocks (with a deadline) and is meant to run in a bounded thread
pool, never on the reactor thread: :mod:`lightningstor.storage.distributed`
calls them through ``deferToThreadPool``.  The channel is created on first use
because a gRPC channel does not survive twistd's daemonizing fork.

gRPC status codes become the backend's error types here, in one place:
NOT_FOUND is ``ChunkNotFound``, DATA_LOSS ``ChunkCorrupted`` (the node's
block checksums failed), ALREADY_EXISTS ``ChunkExists`` (the node holds
other, intact bytes under that id and keeps them), INVALID_ARGUMENT
``ValueError`` (a bad chunk id),
RESOURCE_EXHAUSTED marked by the node as ``storage-full`` (its disk is full)
``StorageFull``, DEADLINE_EXCEEDED ``NodeTimeout`` (a ``NodeUnavailable``),
anything else ``NodeUnavailable`` (including gRPC's own
RESOURCE_EXHAUSTED, such as a concurrency limit: an overloaded node, worth
another try).

End-to-end integrity (docs/scaling.md, "Chunk integrity"): ``put`` sends
the chunk's CRC32C and length, which the node checks before the chunk
becomes visible; ``get_checked`` reads only from a replica whose whole-chunk
CRC32C matches the caller's record; ``verify`` asks the node to check a copy
in place.  The checks run in the calling pool thread, never on the reactor.

``https://`` nodes are reached over TLS with ``tls`` (:class:`NodeTls`, from
``[storage.distributed]``'s client certificate and the CA of the nodes'
certificates; the nodes require the client certificate: mutual TLS).  The
node's certificate must name the host of its URL (IP or DNS SAN): grpc
checks it like any TLS client.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from lightningstor.checksums import crc32c
from lightningstor.errors import (
    ChunkCorrupted,
    ChunkExists,
    ChunkNotFound,
    ConfigError,
    StorageError,
    StorageFull,
)
from lightningstor.interfaces.storage import ChunkInfo
from lightningstor.node import ERROR_KIND_KEY, STORAGE_FULL
from lightningstor.node.gen import lightningstor_node_pb2 as pb
from lightningstor.node.gen import lightningstor_node_pb2_grpc as pb_grpc
from lightningstor.storage.placement import NodeAddress

MiB = 1 << 20
PIECE = 1 * MiB
"""Bytes per PutChunk message."""
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 4 * MiB),
    ("grpc.max_send_message_length", 4 * MiB),
    # Notice a returning node within seconds, not grpc's default minutes.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


class NodeUnavailable(StorageError):
    """The node did not answer (down, unreachable, overloaded, timed out)."""


class NodeTimeout(NodeUnavailable):
    """The node did not answer within the call's deadline (it may be hung,
    or only slow: a read moves on to another replica)."""


class ChunkDiverged(ChunkCorrupted):
    """The node's copy passes its own block checks but is not the chunk the
    record describes (other length or CRC32C): a divergent replica."""


class NodeFull(StorageFull):
    """The node refused a write because its disk is full (answered as 507
    when it costs a write its quorum: see :mod:`lightningstor.storage.quorum`)."""


def _error_kind(error: grpc.RpcError) -> str | None:
    """The node's ``lightningstor-error`` trailing metadata, if any."""
    try:
        trailing = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    except Exception:  # not a call object: no metadata
        return None
    for key, value in trailing or ():
        if key == ERROR_KIND_KEY:
            return value if isinstance(value, str) else value.decode("ascii", "replace")
    return None


def _translate(node: NodeAddress, error: grpc.RpcError) -> Exception:
    code = error.code() if hasattr(error, "code") else None
    detail = error.details() if hasattr(error, "details") else str(error)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and _error_kind(error) == STORAGE_FULL:
        return NodeFull(f"node {node.address}: {detail}")
    if code == grpc.StatusCode.NOT_FOUND:
        return ChunkNotFound(f"node {node.address}: {detail}")
    if code == grpc.StatusCode.DATA_LOSS:
        return ChunkCorrupted(f"node {node.address}: {detail}")
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return ChunkExists(f"node {node.address}: {detail}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return ValueError(f"node {node.address}: {detail}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return NodeTimeout(f"node {node.address}: DEADLINE_EXCEEDED: {detail}")
    return NodeUnavailable(f"node {node.address}: {code.name if code else 'error'}: {detail}")


@dataclass(frozen=True)
class NodeTls:
    """PEM bytes for mTLS to the nodes: the client certificate chain and key
    the nodes verify, and the CA(s) the nodes' certificates are checked
    against (never the system store: the nodes' CA is private).

    Kept as bytes and turned into ``grpc.ChannelCredentials`` only when a
    channel is made, after twistd's daemonizing fork, like the channel.
    """

    root_certificates: bytes
    private_key: bytes = field(repr=False)
    certificate_chain: bytes

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )


def load_node_tls(cert_file: str, key_file: str, ca_file: str, *, prefix: str = "storage.distributed.") -> NodeTls:
    """Read and check the client-side TLS files.  Blocking: for start-up.

    The files are checked the way the server's own are
    (:func:`lightningstor.tls.load_tls_material`: PEM parses, key matches
    certificate), so a mistake fails start-up with the ``prefix``-ed key
    named instead of failing every handshake later.
    """
    from lightningstor.config import TlsSettings
    from lightningstor.tls import load_tls_material

    names = {"cert_file": f"{prefix}tls_cert_file", "key_file": f"{prefix}tls_key_file",
             "ca_file": f"{prefix}tls_ca_file"}
    material = load_tls_material(TlsSettings(cert_file, key_file, ca_file), names=names)
    roots = material.root_certificates
    if roots is None:  # cannot happen: ca_file is given; keeps the types honest
        raise ConfigError(f"{names['ca_file']}: required")
    return NodeTls(roots, material.private_key, material.certificate_chain)


class NodeClient:
    """Blocking calls to one node; thread-safe (gRPC channels are).

    ``tls`` is used for an ``https://`` node; without it such a node is
    reached with grpc's default TLS (system CAs, no client certificate),
    which a node running mutual TLS refuses.
    """

    def __init__(
        self,
        node: NodeAddress,
        *,
        timeout: float = 30.0,
        small_timeout: float = 5.0,
        tls: NodeTls | None = None,
    ) -> None:
        self.node = node
        self.timeout = timeout
        self.small_timeout = small_timeout
        self.tls = tls
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stub: Any = None

    def _client(self) -> Any:
        with self._lock:
            if self._stub is None:
                if self.node.secure:
                    tls = self.tls
                    credentials = tls.channel_credentials() if tls is not None else grpc.ssl_channel_credentials()
                    channel = grpc.secure_channel(self.node.address, credentials, _CHANNEL_OPTIONS)
                else:
                    channel = grpc.insecure_channel(self.node.address, _CHANNEL_OPTIONS)
                self._channel = channel
                self._stub = pb_grpc.ChunkServiceStub(channel)
            return self._stub

    def close(self) -> None:
        with self._lock:
            channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            channel.close()

    def put(self, chunk_id: str, data: bytes, checksum: int | None = None, replace: int | None = None) -> None:
        """Store ``data``; ``checksum`` is its CRC32C as the writer computed it
        (computed here when None).  The node refuses bytes that do not match
        it (``ChunkCorrupted``), so the copy fails like any failed replica.

        A node already holding the chunk keeps an intact copy with other
        bytes (``ChunkExists``) unless ``replace`` is that copy's CRC32C:
        repair rewriting a copy it found divergent from the record."""
        crc = crc32c(data) if checksum is None else checksum

        def messages() -> Iterator[pb.PutChunkRequest]:
            view = memoryview(data)
            first = pb.PutChunkRequest(
                chunk_id=chunk_id, data=bytes(view[:PIECE]), crc32c=crc, size=len(view), has_crc32c=True
            )
            if replace is not None:
                first.replace_crc32c, first.has_replace_crc32c = replace, True
            yield first
            for start in range(PIECE, len(view), PIECE):
                yield pb.PutChunkRequest(data=bytes(view[start : start + PIECE]))

        try:
            self._client().PutChunk(messages(), timeout=self.timeout)
        except grpc.RpcError as e:
            raise _translate(self.node, e) from None

    def get(self, chunk_id: str, offset: int = 0, length: int | None = None, *, timeout: float | None = None) -> bytes:
        """The chunk's bytes (a range of them); ``timeout`` overrides the
        client's deadline (a read with other replicas left uses a short one)."""
        request = pb.GetChunkRequest(chunk_id=chunk_id, offset=offset)
        if length is not None:
            request.length = length
            request.has_length = True
        try:
            deadline = self.timeout if timeout is None else timeout
            return b"".join(m.data for m in self._client().GetChunk(request, timeout=deadline))
        except grpc.RpcError as e:
            raise _translate(self.node, e) from None

    def get_checked(
        self, chunk_id: str, offset: int, length: int | None, size: int, checksum: int, *,
        timeout: float | None = None,
    ) -> bytes:
        """Like :meth:`get`, but only from a replica holding the chunk the
        caller's record describes: ``size`` bytes with CRC32C ``checksum``.

        The node sends the whole chunk's length and CRC32C (from its
        verified footer) with the first piece; a replica that disagrees
        raises :class:`ChunkDiverged` before any byte is used.  A node too
        old to send them is checked by reading the whole chunk (its CRC
        computed here) and cutting the range out of it: slower, but never
        unverified.  ``timeout`` overrides the client's deadline, as for :meth:`get`.
        """
        request = pb.GetChunkRequest(chunk_id=chunk_id, offset=offset)
        if length is not None:
            request.length = length
            request.has_length = True
        parts: list[bytes] = []
        try:
            call = self._client().GetChunk(request, timeout=self.timeout if timeout is None else timeout)
            for message in call:
                if not parts and message.has_chunk_info:
                    if message.chunk_size != size or message.chunk_crc32c != checksum:
                        call.cancel()
                        raise ChunkDiverged(
                            f"node {self.node.address}: chunk {chunk_id} holds {message.chunk_size} bytes with "
                            f"CRC32C {message.chunk_crc32c:08x}, its record says {size} with {checksum:08x}"
                        )
                    parts.append(message.data)
                    continue
                if not parts:  # a node that sends no chunk info
                    call.cancel()
                    return self._get_whole_checked(chunk_id, offset, length, size, checksum, timeout)
                parts.append(message.data)
        except grpc.RpcError as e:
            raise _translate(self.node, e) from None
        return b"".join(parts)

    def _get_whole_checked(
        self, chunk_id: str, offset: int, length: int | None, size: int, checksum: int, timeout: float | None
    ) -> bytes:
        whole = self.get(chunk_id, timeout=timeout)
        if len(whole) != size or crc32c(whole) != checksum:
            raise ChunkDiverged(
                f"node {self.node.address}: chunk {chunk_id} does not match its record ({len(whole)} bytes)"
            )
        if offset == 0 and (length is None or length >= size):
            return whole
        return whole[offset : None if length is None else offset + length]

    def verify(self, chunk_id: str) -> tuple[int, int]:
        """(length, CRC32C) of the node's copy, every block checked on the
        node (``ChunkCorrupted`` if one fails).  A node without the
        ``VerifyChunk`` call sends the chunk instead and the CRC is
        computed here."""
        try:
            reply = self._client().VerifyChunk(pb.VerifyChunkRequest(chunk_id=chunk_id), timeout=self.timeout)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise _translate(self.node, e) from None
            data = self.get(chunk_id)
            return len(data), crc32c(data)
        return int(reply.size), int(reply.crc32c)

    def delete(self, chunk_id: str) -> bool:
        try:
            reply = self._client().DeleteChunk(pb.DeleteChunkRequest(chunk_id=chunk_id), timeout=self.small_timeout)
        except grpc.RpcError as e:
            raise _translate(self.node, e) from None
        return bool(reply.existed)

    def has(self, chunk_id: str) -> bool:
        try:
            reply = self._client().HasChunk(pb.HasChunkRequest(chunk_id=chunk_id), timeout=self.small_timeout)
        except grpc.RpcError as e:
            raise _translate(self.node, e) from None
        return bool(reply.exists)

    def list(self, page: int = 1000) -> list[ChunkInfo]:
        found: list[ChunkInfo] = []
        after = ""
        try:
            while True:
                reply = self._client().ListChunks(
                    pb.ListChunksRequest(start_after=after, limit=page), timeout=self.timeout
                )
                found.extend(ChunkInfo(c.chunk_id, c.size, c.created_at) for c in reply.chunks)
                if not reply.next_start_after:
                    return found
                after = reply.next_start_after
        except grpc.RpcError as e:
            raise _translate(self.node, e) from None

    def stat(self) -> pb.StatResponse:
        try:
            return self._client().Stat(pb.StatRequest(), timeout=self.timeout)
        except grpc.RpcError as e:
            raise _translate(self.node, e) from None

    def health(self) -> None:
        """Returns if the node serves; raises ``NodeUnavailable`` otherwise."""
        try:
            reply = self._client().Health(pb.HealthRequest(), timeout=self.small_timeout)
        except grpc.RpcError as e:
            raise _translate(self.node, e) from None
        if not reply.serving:
            raise NodeUnavailable(f"node {self.node.address}: not serving: {reply.detail}")

"""The storage-backend plugin contract (SPEC §5.1 plus what streaming needs).

A backend stores opaque *chunks* named by id.  It knows nothing of buckets,
keys or S3: the :class:`~lightningstor.storage.chunks.ChunkManager` splits
objects into chunks and keeps the per-chunk checksums in object metadata.

Every method that touches the medium returns a ``Deferred`` and must not block
the reactor thread (use a thread pool for file or socket I/O).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping

from zope.interface import Attribute, Interface


class DurabilityLevel(enum.Enum):
    LOCAL = "local"
    REPLICATED = "replicated"
    ERASURE_CODED = "erasure_coded"


@dataclass(frozen=True)
class BackendCapabilities:
    """What a backend can do; ``replicas`` is N for ``REPLICATED``."""

    max_chunk_size: int
    supports_range_reads: bool = True
    supports_streaming: bool = True
    durability: DurabilityLevel = DurabilityLevel.LOCAL
    replicas: int = 1
    #: The backend knows its chunks' CRC32C without another pass over the
    #: bytes: its chunk writers have a ``crc32c`` property (of everything
    #: written so far) and it has ``get_chunk_range_crc(chunk_id, offset,
    #: length, crc)`` returning ``(data, crc32c(data, crc))``.  The chunk
    #: manager then skips its own CRC32C passes on writes and reads.
    chunk_crc32c: bool = False
    #: The backend keeps several copies that may differ (storage nodes) and
    #: has ``get_chunk_range_checked(chunk_id, offset, length, size,
    #: checksum)``: like ``get_chunk_range``, but served only from a copy
    #: whose whole chunk is ``size`` bytes with CRC32C ``checksum`` (the
    #: record's ChunkRef), falling back to the next copy otherwise, so a
    #: ranged read never returns a divergent replica's bytes.
    checked_reads: bool = False


@dataclass(frozen=True)
class ChunkInfo:
    """One stored chunk as listed by :meth:`IStorageBackend.list_chunks`."""

    chunk_id: str
    size: int
    created_at: float  # Unix seconds


@dataclass
class PluginContext:
    """What the server hands a plugin factory besides its own config section.

    ``reactor`` is the running reactor, ``io_pool`` a started
    ``twisted.python.threadpool.ThreadPool`` for blocking I/O, ``data_dir`` the
    server's data directory, ``settings`` the whole validated configuration
    (read-only) for plugins that need global values.
    """

    reactor: Any
    io_pool: Any
    data_dir: str
    settings: Mapping[str, Any] = field(default_factory=dict)


class IChunkWriter(Interface):
    """Streams one chunk into the backend.

    Bytes written are not visible (``get_chunk`` fails) until ``commit``'s
    Deferred fires; after that they are durable.  ``abort`` discards
    everything.  Calls are made one at a time: the caller waits for each
    Deferred before the next call.
    """

    def write(data: bytes) -> Any:
        """Append ``data``; returns a Deferred firing with None."""

    def commit() -> Any:
        """Make the chunk durable and visible; Deferred firing with None.

        A writer may also have ``expect_crc32c(checksum)``: the chunk
        manager then calls it before ``commit`` with the CRC32C it computed
        over the chunk (the one its record keeps), and the backend refuses
        to store bytes that do not match it.
        """

    def abort() -> Any:
        """Discard the partial chunk; Deferred firing with None; never fails."""


class IStorageBackend(Interface):
    """A place to keep chunks (local disk, storage nodes, RADOS...)."""

    name = Attribute("The plugin name this backend was created from (str).")

    def put_chunk(chunk_id: str, data: bytes) -> Any:
        """Store a whole chunk durably; Deferred[None].  Overwrites, except
        that the ``distributed`` backend's storage nodes keep an intact copy
        that holds other bytes and fail that copy with ``ChunkExists``: the
        ChunkManager draws a fresh id for every chunk, so the same id with
        other bytes is never a legitimate write (docs/scaling.md)."""

    def open_chunk(chunk_id: str) -> IChunkWriter:
        """Begin streaming a chunk; see :class:`IChunkWriter`."""

    def get_chunk(chunk_id: str) -> Any:
        """Deferred[bytes]: the whole chunk.

        Fails with ``ChunkNotFound`` if missing and ``ChunkCorrupted`` if the
        backend's own integrity check fails.
        """

    def get_chunk_range(chunk_id: str, offset: int, length: int) -> Any:
        """Deferred[bytes]: ``length`` bytes from ``offset`` (clipped at end)."""

    def delete_chunk(chunk_id: str) -> Any:
        """Deferred[bool]: True if it existed.  Idempotent."""

    def chunk_exists(chunk_id: str) -> Any:
        """Deferred[bool]."""

    def list_chunks() -> Any:
        """Deferred[list[ChunkInfo]] of every stored chunk (for collection and scrub)."""

    def capabilities() -> BackendCapabilities:
        """Static facts about this backend (no I/O)."""

    def check() -> Any:
        """Deferred[None] if the backend is reachable and writable; fails otherwise."""

    def close() -> Any:
        """Deferred[None]: release resources at shutdown."""


@dataclass(frozen=True)
class ReplicaCheck:
    """Every replica of one chunk, read back and verified (size and CRC32C).

    Node fields hold node addresses.  ``missing`` lists only nodes of the
    chunk's placement that lack it (a copy elsewhere is not expected).
    ``repaired`` are the missing or corrupt replicas rewritten from a good
    copy; damaged replicas not in it could not be rewritten (their node
    failed the write) and are found again by the next scrub.
    """

    good: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    corrupt: tuple[str, ...] = ()
    unreachable: tuple[str, ...] = ()
    repaired: tuple[str, ...] = ()

    @property
    def damaged(self) -> tuple[str, ...]:
        return self.missing + self.corrupt


class IReplicaScrub(Interface):
    """Optional, for backends that keep several copies of a chunk.

    The scrub (``core/scrub.py``) normally reads a chunk once through the
    backend, which on a replicated backend returns the first good copy and
    so never notices a rotten or lost replica.  A backend providing this
    interface is asked to verify each replica instead, and to rewrite the
    damaged ones from a good copy.
    """

    def scrub_chunk(chunk_id: str, size: int, checksum: int) -> Any:
        """Deferred[ReplicaCheck] for the chunk expected to hold ``size``
        bytes with CRC32C ``checksum``."""


class IStorageBackendFactory(Interface):
    """A plugin that makes storage backends; found with ``getPlugins``."""

    name = Attribute("The name the config's ``[storage] backend`` selects (str).")
    description = Attribute("One line for humans (str).")

    def create(options: Mapping[str, Any], context: PluginContext) -> IStorageBackend:
        """Build a backend from its config section (``[storage]`` as a dict,
        including the sub-table named like the plugin, e.g. ``options['local']``).

        Raise ``lightningstor.errors.ConfigError`` naming the key for bad options.
        """
